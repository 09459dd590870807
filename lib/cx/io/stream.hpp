#pragma once
// The cx record stream (man 5 cx-stream): a WebDataset-compatible POSIX tar.
//   __cx__            JSON header: format, version, fields, labels, provenance
//   <key>.<field>...  consecutive members sharing a key form one record
//   __end__           JSON trailer: {"records": N}
//   two zero blocks   the tar's end of archive
// Readers also take plain WebDataset tars (no __cx__/__end__); then the end-of-archive blocks
// must be present. A stream that stops early is reported as truncated wherever the cut fell.
// Memory is bounded by one record; input is read sequentially (pipes work).
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace cx::io {

inline constexpr const char* kStreamFormat = "cx-stream";
inline constexpr int kStreamVersionMajor = 1;
inline constexpr int kStreamVersionMinor = 0;

struct Field {
  std::string name;  // the extension after the key: "json", "png", "mask.png", "cls.npy"
  std::string data;
};

struct Record {
  std::string key;
  std::vector<Field> fields;  // in stream order

  const Field* find(const std::string& name) const;
  Field* find(const std::string& name);
  bool has(const std::string& name) const { return find(name) != nullptr; }
  // The record's image: the first of the fields png, jpg, jpeg present; nullptr when none.
  const Field* image() const;
  // Replaces the field's data or appends a new field.
  void set(const std::string& name, std::string data);
  void erase(const std::string& name);
};

// A new header: {"format":"cx-stream","version":"1.0","fields":{},"labels":[],"provenance":[]}.
nlohmann::json new_stream_header();

// WebDataset's key rule (base_plus_ext): key = the member name up to the first '.' of its base
// name (directory kept), field = the rest, lowercased (ASCII). False when the name has no such
// split (WebDataset skips those members): "train/p1/view1.png" -> ("train/p1/view1", "png"),
// "0001.mask.png" -> ("0001", "mask.png"), "README" -> false.
bool split_member_name(const std::string& name, std::string& key, std::string& field);
// Names WebDataset treats as metadata, never records: "__cx__", "__end__", "__x__/...".
bool is_meta_member(const std::string& name);

class StreamWriter {
 public:
  // Writes the __cx__ member at once, with this writer's "format" and "version" (other header
  // keys as given). `where` names the destination in errors.
  StreamWriter(std::FILE* out, const nlohmann::json& header, std::string where = "standard output");
  ~StreamWriter();
  StreamWriter(const StreamWriter&) = delete;
  StreamWriter& operator=(const StreamWriter&) = delete;

  // Throws cx::Error for a record that would not read back as itself (empty, a '.' in the key's
  // last component, a field not lowercase or with '/', a field twice, a "__x__" name), a key
  // written before, or a failed write (naming `where`).
  void write(const Record& record);
  // Writes __end__ and the end-of-archive blocks. A writer destroyed unfinished writes neither,
  // so the output reads as truncated.
  void finish();
  std::int64_t records() const { return records_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::int64_t records_ = 0;
};

class StreamReader {
 public:
  // Reads from an open FILE (not closed by the reader). `where` names the source in errors.
  StreamReader(std::FILE* in, std::string where);
  // Opens a path, or standard input for "-". gzip and zstd input is read transparently.
  static std::unique_ptr<StreamReader> open(const std::string& path);
  ~StreamReader();

  // The __cx__ header; for a plain WebDataset tar, a header with no fields and provenance.
  const nlohmann::json& header() const;
  bool is_cx() const;  // true when the stream began with __cx__
  // Reads the next record; false at a complete end. Throws TruncatedError on a cut stream and
  // cx::Error on a malformed one (a name with ".." or a leading '/', a key repeated out of order,
  // a field twice in a record, a bad tar checksum, __end__ count mismatch, newer major version;
  // the constructor throws these too, for the first member).
  bool next(Record& record);
  std::int64_t records() const;
  const std::string& where() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cx::io
