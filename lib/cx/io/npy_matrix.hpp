#pragma once
// An N x D float32 .npy written row by row when N is not known in advance: the header reserves
// room for any N and is rewritten in place at the end (the file must be seekable), so memory
// stays one row. Written atomically through cx::cli::OutputFile.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace cx::io {

class NpyMatrixWriter {
 public:
  explicit NpyMatrixWriter(const std::string& path);
  ~NpyMatrixWriter();
  void append(const std::vector<float>& row);  // every row the same length
  void commit();                               // rewrites the header, renames into place
  std::int64_t rows() const { return rows_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::int64_t rows_ = 0;
  std::int64_t cols_ = -1;
};

// The v1 .npy header (magic to '\n') for a C-order array, padded to `total` bytes (0: the
// smallest multiple of 64, as NumPy does).
std::string npy_header(const std::string& descr, const std::vector<std::int64_t>& shape, std::size_t total = 0);

}  // namespace cx::io
