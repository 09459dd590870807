#include "cx/io/safetensors.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <set>

#include <nlohmann/json.hpp>

#include "cx/cli/error.hpp"
#include "cx/cli/output.hpp"

namespace cx::io {

namespace {

// The Rust safetensors crate refuses headers above 100 MB; so do we, before allocating anything.
constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;

std::string errno_text() { return std::strerror(errno); }

std::string name_q(const std::string& name) { return "'" + name + "'"; }

std::string offsets_text(std::uint64_t b, std::uint64_t e) {
  return "[" + std::to_string(b) + ", " + std::to_string(e) + "]";
}

// nlohmann's messages start with "[json.exception.parse_error.101] "; the rest is the useful part.
std::string json_error_text(const std::exception& e) {
  std::string s = e.what();
  if (!s.empty() && s[0] == '[') {
    auto close = s.find("] ");
    if (close != std::string::npos) s = s.substr(close + 2);
  }
  return s;
}

std::string json_type_text(const nlohmann::json& j) {
  return std::string(j.type_name());
}

// A JSON integer >= 0, as JSON numbers come from nlohmann (unsigned, or signed when negative).
bool as_size(const nlohmann::json& j, std::uint64_t& out) {
  if (j.is_number_unsigned()) {
    out = j.get<std::uint64_t>();
    return true;
  }
  if (j.is_number_integer()) {
    auto v = j.get<std::int64_t>();
    if (v < 0) return false;
    out = static_cast<std::uint64_t>(v);
    return true;
  }
  return false;
}

}  // namespace

struct SafetensorsFile::Storage {
  std::string bytes;  // from_bytes, or a non-regular file read whole
  void* map = nullptr;
  std::size_t map_size = 0;
  const std::uint8_t* data = nullptr;
  std::size_t size = 0;

  Storage() = default;
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;
  ~Storage() {
    if (map) ::munmap(map, map_size);
  }
};

std::int64_t TensorView::numel() const {
  std::int64_t n = 1;
  for (auto d : shape) n *= d;
  return n;
}

NdArray TensorView::copy() const {
  NdArray a;
  a.dtype = dtype;
  a.shape = shape;
  a.data.assign(data, data + nbytes);
  return a;
}

SafetensorsFile SafetensorsFile::open(const std::string& path) {
  SafetensorsFile f;
  f.where_ = path;
  auto storage = std::make_shared<Storage>();
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw Error(cx::at(path, "cannot open: " + errno_text()));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    int err = errno;
    ::close(fd);
    throw Error(cx::at(path, std::string("cannot stat: ") + std::strerror(err)));
  }
  if (S_ISREG(st.st_mode) && st.st_size > 0) {
    storage->map_size = static_cast<std::size_t>(st.st_size);
    void* m = ::mmap(nullptr, storage->map_size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (m == MAP_FAILED) {
      int err = errno;
      ::close(fd);
      throw Error(cx::at(path, std::string("cannot map: ") + std::strerror(err)));
    }
    storage->map = m;
    storage->data = static_cast<const std::uint8_t*>(m);
    storage->size = storage->map_size;
  } else {
    // A pipe or device (e.g. /dev/stdin) cannot be mapped: read it whole.
    char buf[1 << 16];
    for (;;) {
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        int err = errno;
        ::close(fd);
        throw Error(cx::at(path, std::string("read error: ") + std::strerror(err)));
      }
      if (n == 0) break;
      storage->bytes.append(buf, static_cast<std::size_t>(n));
    }
    storage->data = reinterpret_cast<const std::uint8_t*>(storage->bytes.data());
    storage->size = storage->bytes.size();
  }
  ::close(fd);  // the mapping stays valid after close
  f.storage_ = std::move(storage);
  f.parse();
  return f;
}

SafetensorsFile SafetensorsFile::from_bytes(std::string bytes, const std::string& where) {
  SafetensorsFile f;
  f.where_ = where;
  auto storage = std::make_shared<Storage>();
  storage->bytes = std::move(bytes);
  storage->data = reinterpret_cast<const std::uint8_t*>(storage->bytes.data());
  storage->size = storage->bytes.size();
  f.storage_ = std::move(storage);
  f.parse();
  return f;
}

const TensorView& SafetensorsFile::at(const std::string& name) const {
  auto it = tensors_.find(name);
  if (it == tensors_.end()) throw Error(cx::at(where_, "no tensor " + name_q(name)));
  return it->second;
}

void SafetensorsFile::parse() {
  const std::uint8_t* base = storage_->data;
  const std::uint64_t size = storage_->size;
  auto fail = [this](const std::string& what) { throw Error(cx::at(where_, what)); };

  if (size < 8)
    throw TruncatedError(cx::at(where_, "file is " + std::to_string(size) +
                                            " bytes, too short for a safetensors header length (8 bytes)"));
  std::uint64_t header_len = 0;
  for (int i = 7; i >= 0; --i) header_len = (header_len << 8) | base[i];
  if (header_len > kMaxHeaderBytes)
    fail("header length " + std::to_string(header_len) + " exceeds the limit of 100 MB");
  if (header_len > size - 8)
    throw TruncatedError(cx::at(where_, "header length " + std::to_string(header_len) +
                                            " past the end of the file (" + std::to_string(size) + " bytes)"));
  const char* header_begin = reinterpret_cast<const char*>(base + 8);
  const char* header_end = header_begin + header_len;
  const std::uint8_t* data = base + 8 + header_len;
  const std::uint64_t data_size = size - 8 - header_len;

  if (header_len == 0 || header_begin[0] != '{') fail("header is not a JSON object");

  // nlohmann keeps the last of repeated keys silently; a repeated tensor name must be refused.
  std::string repeated;
  std::set<std::string> seen;
  nlohmann::json::parser_callback_t on_event = [&](int depth, nlohmann::json::parse_event_t event,
                                                   nlohmann::json& parsed) {
    if (event == nlohmann::json::parse_event_t::key && depth == 1 && repeated.empty()) {
      const auto& key = parsed.get_ref<const std::string&>();
      if (!seen.insert(key).second) repeated = key;
    }
    return true;
  };
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(header_begin, header_end, on_event);
  } catch (const nlohmann::json::exception& e) {
    fail("header is not valid JSON: " + json_error_text(e));
  }
  if (!header.is_object()) fail("header is not a JSON object");
  if (!repeated.empty()) fail("header names " + name_q(repeated) + " twice");

  struct Entry {
    std::string name;
    std::uint64_t begin, end;
  };
  std::vector<Entry> entries;
  for (auto it = header.begin(); it != header.end(); ++it) {
    const std::string& name = it.key();
    const nlohmann::json& v = it.value();
    if (name == "__metadata__") {
      if (!v.is_object()) fail("__metadata__ must map strings to strings, it is " + json_type_text(v));
      for (auto m = v.begin(); m != v.end(); ++m) {
        if (!m.value().is_string())
          fail("__metadata__ must map strings to strings: " + name_q(m.key()) + " is " + json_type_text(m.value()));
        metadata_[m.key()] = m.value().get<std::string>();
      }
      continue;
    }
    const std::string what = "tensor " + name_q(name);
    if (!v.is_object()) fail(what + " is " + json_type_text(v) + ", not an object");
    for (const char* k : {"dtype", "shape", "data_offsets"})
      if (!v.contains(k)) fail(what + " has no " + k);

    const auto& jdtype = v["dtype"];
    if (!jdtype.is_string()) fail(what + " dtype is " + json_type_text(jdtype) + ", not a string");
    DType dtype = dtype_from_safetensors_name(jdtype.get<std::string>(), cx::at(where_, what));

    const auto& jshape = v["shape"];
    if (!jshape.is_array()) fail(what + " shape is " + json_type_text(jshape) + ", not an array");
    std::vector<std::int64_t> shape;
    // numel * size is computed with an overflow guard: no tensor may exceed the data buffer anyway.
    std::uint64_t nbytes = dtype_size(dtype);
    bool too_big = false;
    for (const auto& d : jshape) {
      std::uint64_t n = 0;
      if (!as_size(d, n) || n > static_cast<std::uint64_t>(INT64_MAX))
        fail(what + " shape " + jshape.dump() + " holds " + d.dump() + ", not a non-negative integer");
      shape.push_back(static_cast<std::int64_t>(n));
      if (n != 0 && nbytes > UINT64_MAX / n) too_big = true;
      else nbytes *= n;
    }
    if (too_big) {
      // Only a zero dimension elsewhere rescues an overflowing product.
      if (std::find(shape.begin(), shape.end(), 0) == shape.end())
        fail(what + " shape " + jshape.dump() + " is larger than the data (" + std::to_string(data_size) + " bytes)");
      nbytes = 0;
    }
    if (std::find(shape.begin(), shape.end(), 0) != shape.end()) nbytes = 0;

    const auto& joff = v["data_offsets"];
    std::uint64_t b = 0, e = 0;
    if (!joff.is_array() || joff.size() != 2 || !as_size(joff[0], b) || !as_size(joff[1], e))
      fail(what + " data_offsets " + joff.dump() + " are not two non-negative integers");
    if (b > e) fail(what + " data_offsets " + offsets_text(b, e) + " end before they begin");
    if (e > data_size)
      fail(what + " data_offsets " + offsets_text(b, e) + " past the end of the data (" +
           std::to_string(data_size) + " bytes)");
    if (e - b != nbytes)
      fail(what + " data_offsets " + offsets_text(b, e) + " hold " + std::to_string(e - b) +
           " bytes, but shape " + jshape.dump() + " of " + jdtype.get<std::string>() + " needs " +
           std::to_string(nbytes));

    TensorView view{dtype, std::move(shape), data + b, static_cast<std::size_t>(nbytes)};
    tensors_.emplace(name, std::move(view));
    entries.push_back({name, b, e});
  }

  // The data buffer must be indexed completely: tensors back to back from 0 to its end.
  std::sort(entries.begin(), entries.end(), [](const Entry& x, const Entry& y) {
    return x.begin != y.begin ? x.begin < y.begin : x.end < y.end;
  });
  std::uint64_t expected = 0;
  const Entry* previous = nullptr;
  for (const auto& en : entries) {
    if (en.begin < expected)
      fail("tensor " + name_q(en.name) + " data_offsets " + offsets_text(en.begin, en.end) + " overlap tensor " +
           name_q(previous->name) + " " + offsets_text(previous->begin, previous->end));
    if (en.begin > expected)
      fail("gap in the data: bytes [" + std::to_string(expected) + ", " + std::to_string(en.begin) +
           ") belong to no tensor (before tensor " + name_q(en.name) + ")");
    expected = en.end;
    previous = &en;
  }
  if (expected != data_size)
    fail("gap in the data: bytes [" + std::to_string(expected) + ", " + std::to_string(data_size) +
         ") at its end belong to no tensor");
}

namespace {

void check_array(const std::string& name, const NdArray& a) {
  for (auto d : a.shape)
    if (d < 0) throw Error("safetensors: tensor " + name_q(name) + " has a negative dimension");
  const auto need = static_cast<std::uint64_t>(a.numel()) * dtype_size(a.dtype);
  if (a.data.size() != need)
    throw Error("safetensors: tensor " + name_q(name) + " holds " + std::to_string(a.data.size()) +
                " bytes, its shape needs " + std::to_string(need));
}

// The length prefix and the header, padded with spaces to a multiple of 8 bytes as the Rust crate
// does, so that the data buffer starts 8-aligned.
std::string make_header(const NamedArrays& tensors, const std::map<std::string, std::string>& metadata) {
  std::set<std::string> names;
  std::string json = "{";
  try {
    if (!metadata.empty()) {
      json += "\"__metadata__\":{";
      bool first = true;
      for (const auto& [k, v] : metadata) {
        if (!first) json += ',';
        first = false;
        json += nlohmann::json(k).dump() + ":" + nlohmann::json(v).dump();
      }
      json += "}";
    }
    std::uint64_t offset = 0;
    for (const auto& [name, array] : tensors) {
      if (name == "__metadata__") throw Error("safetensors: '__metadata__' cannot name a tensor");
      if (!names.insert(name).second) throw Error("safetensors: tensor " + name_q(name) + " given twice");
      check_array(name, array);
      if (json.size() > 1) json += ',';
      json += nlohmann::json(name).dump() + ":{\"dtype\":\"" + dtype_safetensors_name(array.dtype) + "\",\"shape\":[";
      for (std::size_t i = 0; i < array.shape.size(); ++i) {
        if (i) json += ',';
        json += std::to_string(array.shape[i]);
      }
      const std::uint64_t end = offset + array.data.size();
      json += "],\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(end) + "]}";
      offset = end;
    }
  } catch (const nlohmann::json::exception& e) {
    throw Error("safetensors: " + json_error_text(e));  // a name or value that is not UTF-8
  }
  json += "}";
  json.append((8 - json.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  std::uint64_t n = json.size();
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return out + json;
}

}  // namespace

std::string write_safetensors(const NamedArrays& tensors, const std::map<std::string, std::string>& metadata) {
  std::string out = make_header(tensors, metadata);
  for (const auto& [name, array] : tensors) out.append(array.data.begin(), array.data.end());
  return out;
}

void write_safetensors_file(const std::string& path, const NamedArrays& tensors,
                            const std::map<std::string, std::string>& metadata) {
  // Streamed tensor by tensor: a large model is not copied into one buffer first.
  const std::string header = make_header(tensors, metadata);
  cli::OutputFile out(path);
  out.write(header);
  for (const auto& [name, array] : tensors) out.write(array.data.data(), array.data.size());
  out.commit();
}

}  // namespace cx::io
