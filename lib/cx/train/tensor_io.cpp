#include "cx/train/tensor_io.hpp"

#include <cstring>

#include "cx/cli/error.hpp"
#include "cx/io/safetensors.hpp"

namespace cx::train {

namespace {
io::DType file_dtype(torch::ScalarType t, const std::string& name) {
  switch (t) {
    case torch::kFloat32: return io::DType::f32;
    case torch::kFloat64: return io::DType::f64;
    case torch::kFloat16: return io::DType::f16;
    case torch::kBFloat16: return io::DType::bf16;
    case torch::kInt64: return io::DType::i64;
    case torch::kInt32: return io::DType::i32;
    case torch::kUInt8: return io::DType::u8;
    default: break;
  }
  throw Error("tensor " + name + ": dtype " + std::string(c10::toString(t)) + " cannot be saved");
}
}  // namespace

void write_tensors(const std::string& path, const model::NamedTensors& tensors,
                   const std::map<std::string, std::string>& metadata) {
  io::NamedArrays arrays;
  arrays.reserve(tensors.size());
  for (const auto& [name, tensor] : tensors) {
    torch::Tensor t = tensor.detach().to(torch::kCPU).contiguous();
    io::NdArray a;
    a.dtype = file_dtype(t.scalar_type(), name);
    a.shape = t.sizes().vec();
    const auto* bytes = static_cast<const std::uint8_t*>(t.data_ptr());
    a.data.assign(bytes, bytes + t.nbytes());
    arrays.emplace_back(name, std::move(a));
  }
  io::write_safetensors_file(path, arrays, metadata);
}

model::NamedTensors read_tensors(const std::string& path) {
  io::SafetensorsFile file = io::SafetensorsFile::open(path);
  model::NamedTensors out;
  for (const auto& [name, view] : file.tensors()) {
    if (view.dtype == io::DType::f32 || view.dtype == io::DType::f16 || view.dtype == io::DType::bf16 ||
        view.dtype == io::DType::f64) {
      torch::Tensor t = model::tensor_from_view(view, path);
      model::check_finite_weight(t, name, path);
      out.emplace_back(name, std::move(t));
      continue;
    }
    torch::ScalarType st;
    switch (view.dtype) {
      case io::DType::i64: st = torch::kInt64; break;
      case io::DType::i32: st = torch::kInt32; break;
      case io::DType::u8: st = torch::kUInt8; break;
      default: throw Error(at(path, "tensor " + name + ": unsupported dtype " + io::dtype_safetensors_name(view.dtype)));
    }
    torch::Tensor t = torch::empty(view.shape, st);
    std::memcpy(t.data_ptr(), view.data, view.nbytes);
    out.emplace_back(name, t);
  }
  return out;
}

}  // namespace cx::train
