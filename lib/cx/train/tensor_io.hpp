#pragma once
// Named tensors to and from safetensors files, for heads, optimizer states and checkpoints.
// Tensors are written as they are (float32 stays float32, bit for bit), from any device.
#include <map>
#include <string>

#include "cx/model/hf_loader.hpp"

namespace cx::train {

// Atomic (temporary name, then rename). Supported dtypes: float32, float64, float16, bfloat16, int64, int32, uint8.
void write_tensors(const std::string& path, const model::NamedTensors& tensors,
                   const std::map<std::string, std::string>& metadata = {});
// Every tensor of the file as an owning CPU tensor, in the file's (name-sorted) order.
model::NamedTensors read_tensors(const std::string& path);

}  // namespace cx::train
