#include "cx/io/file_bytes.hpp"

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "cx/cli/error.hpp"

namespace cx::io {

std::string read_file_bytes(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw Error(at(path, std::string("cannot open: ") + std::strerror(errno)));
  std::string out;
  char buf[1 << 16];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
  const bool failed = std::ferror(f) != 0;
  const int err = errno;
  std::fclose(f);
  if (failed) throw Error(at(path, std::string("read error: ") + std::strerror(err)));
  return out;
}

}  // namespace cx::io
