#pragma once
// One decompressing input for every reader of files and streams (the record stream's tar, label
// CSVs, tables). The format is told by the first bytes, never by the name, and without seeking,
// so pipes work:
//   1f 8b        gzip (zlib); members back to back (`cat a.gz b.gz`) are one input
//   28 b5 2f fd  zstd (libzstd); frames back to back (`zstd -c a >> f`) are one input, skippable
//                frames are skipped
//   otherwise    read as it is
// xz and bzip2 input is refused by name (no decoder linked). Compressed data that ends before its
// end marker (a cut gzip member or zstd frame) throws TruncatedInput, whatever the bytes before
// it looked like; corrupt data throws cx::Error naming the input.
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "cx/cli/error.hpp"

namespace cx::io {

enum class Compression { none, gzip, zstd };
const char* compression_name(Compression c);  // "none", "gzip", "zstd"

// Compressed data cut before its end. what() is "<where>: truncated <format> data (<detail>)";
// detail() alone ("the gzip data ends before its end marker") lets a container reader (tar)
// phrase its own message around it.
class TruncatedInput : public TruncatedError {
 public:
  TruncatedInput(const std::string& where, Compression format, std::string detail);
  const std::string& detail() const { return detail_; }

 private:
  std::string detail_;
};

class DecompressingInput {
 public:
  // Reads an open FILE (not closed here). `where` names it in errors.
  DecompressingInput(std::FILE* in, std::string where);
  // Opens `path`, or standard input for "-" (named "standard input" in errors unless `where` is
  // given). Throws cx::Error "<where>: cannot open: <reason>".
  static std::unique_ptr<DecompressingInput> open(const std::string& path, std::string where = {});
  ~DecompressingInput();
  DecompressingInput(const DecompressingInput&) = delete;
  DecompressingInput& operator=(const DecompressingInput&) = delete;

  // Reads up to n bytes of the decompressed data; fewer only at its end (0 then). Throws
  // TruncatedInput on a cut compressed input, cx::Error on a read error or corrupt data.
  std::size_t read(char* buf, std::size_t n);
  Compression compression() const;
  bool compressed() const { return compression() != Compression::none; }
  std::uint64_t offset() const;  // decompressed bytes delivered so far
  const std::string& where() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// The whole decompressed contents of `path` ("-": standard input).
std::string read_decompressed(const std::string& path, std::string where = {});

}  // namespace cx::io
