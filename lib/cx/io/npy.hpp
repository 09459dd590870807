#pragma once
// NumPy .npy files (format 1.0 and 2.0; 3.0 read too), little-endian, C order;
// dtypes f32, f16, f64, u8, u16, i32, i64, bool. Fortran order and big-endian are refused by name.
#include <string>

#include "cx/io/ndarray.hpp"

namespace cx::io {

// Parses .npy bytes; `where` names the source in errors ("0001.cls.npy: ...").
NdArray read_npy(const std::string& bytes, const std::string& where);
// Writes format 1.0 (2.0 when the header needs it), header padded to 64 bytes as NumPy does.
std::string write_npy(const NdArray& array);

}  // namespace cx::io
