#pragma once
// safetensors files (Hugging Face): an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets:[begin,end]}, "__metadata__": {str: str}}, then the data.
// The header is bounds-checked before any byte is trusted: offsets inside the file, in order
// without overlaps or gaps, size = numel * dtype size, known dtype.
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "cx/io/ndarray.hpp"

namespace cx::io {

struct TensorView {
  DType dtype;
  std::vector<std::int64_t> shape;
  const std::uint8_t* data;  // points into the file's mapping
  std::size_t nbytes;
  std::int64_t numel() const;
  NdArray copy() const;
};

class SafetensorsFile {
 public:
  // Maps the file read-only and validates the header.
  static SafetensorsFile open(const std::string& path);
  // Validates bytes held in memory (e.g. a stream field).
  static SafetensorsFile from_bytes(std::string bytes, const std::string& where);

  const std::map<std::string, TensorView>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  bool has(const std::string& name) const { return tensors_.count(name) != 0; }
  const TensorView& at(const std::string& name) const;  // throws naming the file and tensor
  const std::string& where() const { return where_; }

 private:
  struct Storage;
  std::shared_ptr<Storage> storage_;
  std::map<std::string, TensorView> tensors_;
  std::map<std::string, std::string> metadata_;
  std::string where_;
  void parse();
};

using NamedArrays = std::vector<std::pair<std::string, NdArray>>;
std::string write_safetensors(const NamedArrays& tensors, const std::map<std::string, std::string>& metadata = {});
void write_safetensors_file(const std::string& path, const NamedArrays& tensors,
                            const std::map<std::string, std::string>& metadata = {});  // atomic

}  // namespace cx::io
