#include "cx/io/ndarray.hpp"


#include "cx/cli/error.hpp"

namespace cx::io {

namespace {

struct DTypeInfo {
  DType type;
  std::size_t size;
  const char* safetensors;
  const char* npy;  // nullptr: no NumPy equivalent
};

constexpr DTypeInfo kDTypes[] = {
    {DType::f64, 8, "F64", "<f8"},  {DType::f32, 4, "F32", "<f4"},  {DType::f16, 2, "F16", "<f2"},
    {DType::bf16, 2, "BF16", nullptr}, {DType::i64, 8, "I64", "<i8"}, {DType::i32, 4, "I32", "<i4"},
    {DType::i16, 2, "I16", "<i2"},  {DType::i8, 1, "I8", "|i1"},    {DType::u64, 8, "U64", "<u8"},
    {DType::u32, 4, "U32", "<u4"},  {DType::u16, 2, "U16", "<u2"},  {DType::u8, 1, "U8", "|u1"},
    {DType::boolean, 1, "BOOL", "|b1"},
};

const DTypeInfo& info(DType t) {
  for (const auto& d : kDTypes)
    if (d.type == t) return d;
  throw Error("internal error: unknown dtype " + std::to_string(static_cast<int>(t)));
}

std::uint32_t float_bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

float bits_float(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

template <class T>
void widen(const NdArray& a, std::vector<float>& out) {
  const std::size_t n = out.size();
  for (std::size_t i = 0; i < n; ++i) {
    T v;
    std::memcpy(&v, a.data.data() + i * sizeof(T), sizeof(T));  // data may be unaligned
    out[i] = static_cast<float>(v);
  }
}

}  // namespace

std::size_t dtype_size(DType t) { return info(t).size; }

std::string dtype_safetensors_name(DType t) { return info(t).safetensors; }

DType dtype_from_safetensors_name(const std::string& name, const std::string& where) {
  for (const auto& d : kDTypes)
    if (name == d.safetensors) return d.type;
  throw Error(at(where, "unsupported dtype '" + name + "'"));
}

std::string dtype_npy_descr(DType t) {
  const auto& d = info(t);
  if (!d.npy) throw Error(std::string("dtype ") + d.safetensors + " has no NumPy equivalent");
  return d.npy;
}

DType dtype_from_npy_descr(const std::string& descr, const std::string& where) {
  if (descr == "O" || (descr.size() >= 2 && descr[1] == 'O'))
    throw Error(at(where, "object dtype '" + descr + "' is not supported (it would need pickle)"));
  if (descr.size() >= 2 && descr[0] == '>' && descr != ">u1" && descr != ">i1" && descr != ">b1")
    throw Error(at(where, "big-endian dtype '" + descr + "' is not supported"));
  for (const auto& d : kDTypes) {
    if (!d.npy) continue;
    if (descr == d.npy) return d.type;
    // Byte order is meaningless for one-byte types: NumPy writes '|', other writers '<' or '>'.
    if (d.size == 1 && descr.size() == 3 && (descr[0] == '<' || descr[0] == '>' || descr[0] == '=') &&
        descr.compare(1, 2, d.npy + 1) == 0)
      return d.type;
  }
  throw Error(at(where, "unsupported dtype '" + descr + "'"));
}

std::int64_t NdArray::numel() const {
  std::int64_t n = 1;
  for (auto d : shape) {
    if (d == 0) return 0;  // before any product of the others can overflow
    n *= d;
  }
  return n;
}

NdArray NdArray::zeros(DType dtype, std::vector<std::int64_t> shape) {
  NdArray a;
  a.dtype = dtype;
  a.shape = std::move(shape);
  for (auto d : a.shape)
    if (d < 0) throw Error("negative dimension in array shape");
  a.data.assign(static_cast<std::size_t>(a.numel()) * dtype_size(dtype), 0);
  return a;
}

NdArray NdArray::from_floats(const std::vector<float>& values, std::vector<std::int64_t> shape) {
  NdArray a = zeros(DType::f32, std::move(shape));
  if (static_cast<std::size_t>(a.numel()) != values.size())
    throw Error("from_floats: " + std::to_string(values.size()) + " values do not fill a shape of " +
                std::to_string(a.numel()) + " elements");
  if (!values.empty()) std::memcpy(a.data.data(), values.data(), values.size() * 4);
  return a;
}

std::vector<float> NdArray::to_floats() const {
  const std::size_t n = static_cast<std::size_t>(numel());
  if (data.size() != n * dtype_size(dtype))
    throw Error("array holds " + std::to_string(data.size()) + " bytes, its shape needs " +
                std::to_string(n * dtype_size(dtype)));
  std::vector<float> out(n);
  switch (dtype) {
    case DType::f64: widen<double>(*this, out); break;
    case DType::f32: widen<float>(*this, out); break;
    case DType::i64: widen<std::int64_t>(*this, out); break;
    case DType::i32: widen<std::int32_t>(*this, out); break;
    case DType::i16: widen<std::int16_t>(*this, out); break;
    case DType::i8: widen<std::int8_t>(*this, out); break;
    case DType::u64: widen<std::uint64_t>(*this, out); break;
    case DType::u32: widen<std::uint32_t>(*this, out); break;
    case DType::u16: widen<std::uint16_t>(*this, out); break;
    case DType::u8: widen<std::uint8_t>(*this, out); break;
    case DType::boolean:
      for (std::size_t i = 0; i < n; ++i) out[i] = data[i] ? 1.0f : 0.0f;
      break;
    case DType::f16:
    case DType::bf16:
      for (std::size_t i = 0; i < n; ++i) {
        std::uint16_t h;
        std::memcpy(&h, data.data() + 2 * i, 2);
        out[i] = dtype == DType::f16 ? half_to_float(h) : bf16_to_float(h);
      }
      break;
  }
  return out;
}

float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1F;
  std::uint32_t mant = h & 0x3FF;
  if (exp == 0x1F) return bits_float(sign | 0x7F800000 | (mant << 13));  // Inf, NaN (payload kept)
  if (exp != 0) return bits_float(sign | ((exp + 112) << 23) | (mant << 13));
  if (mant == 0) return bits_float(sign);
  // Subnormal half: normalise into a float exponent.
  int e = 113;
  while ((mant & 0x400) == 0) {
    mant <<= 1;
    --e;
  }
  return bits_float(sign | (static_cast<std::uint32_t>(e) << 23) | ((mant & 0x3FF) << 13));
}

std::uint16_t float_to_half(float f) {
  const std::uint32_t x = float_bits(f);
  const std::uint16_t sign = static_cast<std::uint16_t>((x >> 16) & 0x8000);
  const std::uint32_t a = x & 0x7FFFFFFF;
  if (a >= 0x7F800000) {
    if (a == 0x7F800000) return sign | 0x7C00;
    // NaN: keep the top payload bits and force the quiet bit so the result stays a NaN.
    return static_cast<std::uint16_t>(sign | 0x7E00 | ((a >> 13) & 0x3FF));
  }
  // 65520 is halfway between 65504 (the largest half, odd mantissa) and 2^16: ties go to Inf.
  if (a >= 0x477FF000) return sign | 0x7C00;
  if (a >= 0x38800000) {  // normal half (>= 2^-14)
    std::uint32_t base = (a - (112u << 23)) >> 13;
    const std::uint32_t rem = a & 0x1FFF;
    if (rem > 0x1000 || (rem == 0x1000 && (base & 1))) ++base;  // a carry rolls into the exponent
    return static_cast<std::uint16_t>(sign | base);
  }
  const std::uint32_t e = a >> 23;
  if (e < 102) return sign;  // below 2^-25: rounds to zero (2^-25 itself ties to even, zero)
  // Subnormal half: units of 2^-24; the value is mant * 2^(e-126) units.
  const std::uint32_t mant = (a & 0x7FFFFF) | 0x800000;
  const std::uint32_t shift = 126 - e;  // 14..24
  std::uint32_t result = mant >> shift;
  const std::uint32_t rem = mant & ((1u << shift) - 1);
  const std::uint32_t halfway = 1u << (shift - 1);
  if (rem > halfway || (rem == halfway && (result & 1))) ++result;  // may become the smallest normal
  return static_cast<std::uint16_t>(sign | result);
}

float bf16_to_float(std::uint16_t b) { return bits_float(static_cast<std::uint32_t>(b) << 16); }

std::uint16_t float_to_bf16(float f) {
  const std::uint32_t x = float_bits(f);
  if ((x & 0x7FFFFFFF) > 0x7F800000) return static_cast<std::uint16_t>((x >> 16) | 0x0040);  // quiet NaN
  const std::uint32_t rounded = x + 0x7FFF + ((x >> 16) & 1);  // overflow past the max rounds to Inf
  return static_cast<std::uint16_t>(rounded >> 16);
}

}  // namespace cx::io
