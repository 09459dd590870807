#pragma once
// A dense, C-ordered, little-endian n-dimensional array: what .npy fields and safetensors
// tensors hold. Bytes are kept as they are on disk; typed views are for the caller.
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace cx::io {

enum class DType { f64, f32, f16, bf16, i64, i32, i16, i8, u64, u32, u16, u8, boolean };

std::size_t dtype_size(DType t);
// safetensors names: "F32", "F16", "BF16", "I64", "U8", "BOOL" ...
std::string dtype_safetensors_name(DType t);
DType dtype_from_safetensors_name(const std::string& name, const std::string& where);
// NumPy descr: "<f4", "<f2", "|u1", "<u2", "<i8" ... (bf16 has no NumPy descr: throws)
std::string dtype_npy_descr(DType t);
DType dtype_from_npy_descr(const std::string& descr, const std::string& where);

struct NdArray {
  DType dtype = DType::f32;
  std::vector<std::int64_t> shape;
  std::vector<std::uint8_t> data;  // numel * dtype_size bytes, C order, little-endian

  std::int64_t numel() const;
  template <class T>
  const T* as() const { return reinterpret_cast<const T*>(data.data()); }
  template <class T>
  T* as() { return reinterpret_cast<T*>(data.data()); }

  static NdArray zeros(DType dtype, std::vector<std::int64_t> shape);
  static NdArray from_floats(const std::vector<float>& values, std::vector<std::int64_t> shape);
  // Any float or integer dtype converted to float32 values.
  std::vector<float> to_floats() const;
};

// IEEE half and bfloat16 conversions (round to nearest even).
float half_to_float(std::uint16_t h);
std::uint16_t float_to_half(float f);
float bf16_to_float(std::uint16_t b);
std::uint16_t float_to_bf16(float f);

}  // namespace cx::io
