#pragma once
// A small POSIX tar (ustar + pax) reader and writer for the record stream (man 5 cx-stream).
//
// Writer: ustar members with deterministic bytes (mode 0644, uid/gid 0, mtime 0, empty
// uname/gname); names over 100 bytes go to the ustar prefix field when a '/' split fits, else to a
// pax 'x' header with a `path` record; sizes of 8 GiB and more get a pax `size` record.
// Reader: sequential (fread only, pipes work), one member in memory at a time. Regular files
// ('0', '\0', '7') are returned; pax 'x' (path, size) and GNU 'L' long names are applied, pax 'g'
// is ignored; directories, links, devices, fifos and GNU 'K' are skipped with a debug message;
// sparse files ('S' or GNU.sparse pax keys) are refused. Header checksums are verified; sizes may
// be octal or base-256. Names with a ".." component or a leading '/' are refused. gzip and zstd
// input is decompressed transparently (cx/io/decompress.hpp); a cut compressed stream is Truncated.
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>

#include "cx/cli/error.hpp"
#include "cx/io/decompress.hpp"

namespace cx::io::tar {

inline constexpr std::size_t kBlock = 512;

// A cut tar: `detail` says where the input stopped ("cut inside the data of 0004.png"), so the
// record stream can phrase its own message around it. what() is "<where>: truncated tar: <detail>".
class Truncated : public TruncatedError {
 public:
  Truncated(const std::string& where, std::string detail);
  const std::string& detail() const { return detail_; }

 private:
  std::string detail_;
};

struct Member {
  std::string name;      // after pax `path` / GNU long name / ustar prefix
  std::string data;      // the whole contents
  std::uint64_t offset;  // byte offset of the member's (first) header in the tar
};

class Reader {
 public:
  Reader(std::FILE* in, std::string where);
  ~Reader();

  // Reads the next regular-file member. Returns false after the two end-of-archive zero blocks,
  // having checked that only zero bytes follow them (Python pads archives to 10240 bytes).
  // Throws Truncated when the input ends first, cx::Error on a malformed archive.
  bool next(Member& member);
  // How many members next() has returned.
  std::int64_t members() const { return members_; }
  const std::string& where() const { return where_; }

 private:
  std::size_t read(char* buf, std::size_t n);  // the input's read, a cut compressed input as Truncated
  bool read_block(char* block, const char* what_if_cut);
  void read_data(std::string& out, std::uint64_t size, const std::string& what);
  void skip_data(std::uint64_t size, const std::string& what);
  void check_trailer();

  DecompressingInput input_;
  std::string where_;
  std::int64_t members_ = 0;
  bool ended_ = false;
};

class Writer {
 public:
  // `where` names the destination in errors.
  Writer(std::FILE* out, std::string where);

  // Appends one regular-file member. Throws cx::Error when a write fails.
  void add(std::string_view name, std::string_view data);
  // Writes the two end-of-archive zero blocks and flushes.
  void finish();
  std::uint64_t bytes_written() const { return written_; }

 private:
  void put(const void* data, std::size_t size);

  std::FILE* out_;
  std::string where_;
  std::uint64_t written_ = 0;
};

// The 512-byte ustar header block we write for a regular file whose name fits the ustar
// name/prefix fields (exposed for tests); returns false when the name needs a pax header.
bool format_ustar_header(char block[kBlock], std::string_view name, std::uint64_t size, char type = '0');
// A member name that a reader must refuse: empty, absolute, or with a ".." component. Returns
// the reason, or an empty string when the name is acceptable.
std::string unsafe_name_reason(std::string_view name);

}  // namespace cx::io::tar
