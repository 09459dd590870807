#include "cx/io/npy_matrix.hpp"

#include <cstdio>

#include "cx/cli/error.hpp"
#include "cx/cli/output.hpp"

namespace cx::io {

std::string npy_header(const std::string& descr, const std::vector<std::int64_t>& shape, std::size_t total) {
  std::string s = "(";
  for (std::size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  if (shape.size() == 1) s += ",";
  s += ")";
  std::string dict = "{'descr': '" + descr + "', 'fortran_order': False, 'shape': " + s + ", }";
  std::size_t min_total = 10 + dict.size() + 1;
  if (total == 0) total = (min_total + 63) / 64 * 64;
  if (total < min_total || total - 10 > 65535) throw Error("npy header does not fit");
  std::string header = "\x93NUMPY";
  header += '\x01';
  header += '\x00';
  std::size_t hlen = total - 10;
  header += static_cast<char>(hlen & 0xff);
  header += static_cast<char>((hlen >> 8) & 0xff);
  header += dict;
  header.append(total - header.size() - 1, ' ');
  header += '\n';
  return header;
}

namespace {
// Room for any row count: the header of the largest shape we could write.
std::size_t reserved_total(std::int64_t cols) {
  return npy_header("<f4", {999999999999999LL, cols}).size();
}
}  // namespace

struct NpyMatrixWriter::Impl {
  cli::OutputFile out;
  std::size_t header_size = 0;
  explicit Impl(const std::string& path) : out(path) {}
};

NpyMatrixWriter::NpyMatrixWriter(const std::string& path) : impl_(std::make_unique<Impl>(path)) {
  if (impl_->out.is_stdout()) throw UsageError("--format npy writes files: give -o PREFIX");
}

NpyMatrixWriter::~NpyMatrixWriter() = default;

void NpyMatrixWriter::append(const std::vector<float>& row) {
  if (cols_ < 0) {
    cols_ = static_cast<std::int64_t>(row.size());
    impl_->header_size = reserved_total(cols_);
    impl_->out.write(std::string(impl_->header_size, ' '));
  }
  if (static_cast<std::int64_t>(row.size()) != cols_)
    throw Error(at(impl_->out.path(), "rows of different lengths (" + std::to_string(cols_) + " then " +
                                          std::to_string(row.size()) + ")"));
  impl_->out.write(row.data(), row.size() * sizeof(float));
  ++rows_;
}

void NpyMatrixWriter::commit() {
  if (cols_ < 0) {
    cols_ = 0;
    impl_->header_size = reserved_total(0);
    impl_->out.write(std::string(impl_->header_size, ' '));
  }
  std::string header = npy_header("<f4", {rows_, cols_}, impl_->header_size);
  std::FILE* f = impl_->out.file();
  if (std::fflush(f) != 0 || std::fseek(f, 0, SEEK_SET) != 0)
    throw Error(at(impl_->out.path(), "cannot rewrite the header"));
  impl_->out.write(header);
  if (std::fseek(f, 0, SEEK_END) != 0) throw Error(at(impl_->out.path(), "cannot seek"));
  impl_->out.commit();
}

}  // namespace cx::io
