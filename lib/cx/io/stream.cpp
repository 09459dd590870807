#include "cx/io/stream.hpp"

#include <cerrno>
#include <cstring>
#include <functional>
#include <string_view>

#include "cx/cli/error.hpp"
#include "cx/cli/log.hpp"
#include "cx/cli/names.hpp"
#include "cx/io/tar.hpp"
#include "cx/random/xoshiro.hpp"

namespace cx::io {

namespace {

constexpr const char* kHeaderMember = "__cx__";
constexpr const char* kTrailerMember = "__end__";

std::string version_string() {
  return std::to_string(kStreamVersionMajor) + "." + std::to_string(kStreamVersionMinor);
}

// The keys seen so far, to refuse a key that comes back after other records (A, B, A): such a
// stream would split one record in two for every reader. Only a 64-bit hash of each key is kept,
// in an open-addressing table at most half full: 16 to 32 bytes per record (a million records:
// 16-32 MB less than the keys themselves would cost). A hash collision would wrongly refuse a
// stream; with n keys its chance is about n^2 / 2^65 (1e-7 for a million records).
class KeySet {
 public:
  // Adds the key; false if it was there already.
  bool insert(std::string_view key) {
    std::uint64_t h = mix(std::hash<std::string_view>{}(key));
    if (h == 0) h = 1;  // 0 marks an empty slot
    if ((count_ + 1) * 2 > slots_.size()) grow();
    std::size_t mask = slots_.size() - 1;
    for (std::size_t i = h & mask;; i = (i + 1) & mask) {
      if (slots_[i] == h) return false;
      if (slots_[i] == 0) {
        slots_[i] = h;
        ++count_;
        return true;
      }
    }
  }

 private:
  static std::uint64_t mix(std::uint64_t x) { return random::mix64(x); }  // spread bits for probing
  void grow() {
    std::vector<std::uint64_t> old = std::move(slots_);
    slots_.assign(old.empty() ? 1024 : old.size() * 2, 0);
    std::size_t mask = slots_.size() - 1;
    for (std::uint64_t h : old) {
      if (h == 0) continue;
      std::size_t i = h & mask;
      while (slots_[i] != 0) i = (i + 1) & mask;
      slots_[i] = h;
    }
  }
  std::vector<std::uint64_t> slots_;
  std::size_t count_ = 0;
};

std::string in_quotes(const std::string& s) { return "'" + s + "'"; }

// "1.0" -> 1; -1 when the version is not "<major>.<minor>".
int parse_major(const nlohmann::json& v) {
  if (!v.is_string()) return -1;
  const std::string& s = v.get_ref<const std::string&>();
  std::size_t dot = s.find('.');
  if (dot == 0 || dot == std::string::npos || dot + 1 == s.size() || dot > 6) return -1;
  for (std::size_t i = 0; i < s.size(); ++i)
    if (i != dot && (s[i] < '0' || s[i] > '9')) return -1;
  return std::stoi(s.substr(0, dot));
}

// A key the writer may use: reads back as the same key with the same field names.
void check_writable(const Record& r, const std::string& where) {
  auto refuse = [&](const std::string& why) {
    throw Error(at(where, "cannot write record " + in_quotes(r.key) + ": " + why));
  };
  if (r.key.empty()) refuse("empty key");
  if (r.fields.empty()) refuse("no fields");
  std::size_t start = 0;
  while (start <= r.key.size()) {
    std::size_t end = r.key.find('/', start);
    if (end == std::string::npos) end = r.key.size();
    std::string_view part(r.key.data() + start, end - start);
    if (part.empty() || part == "." || part == "..") refuse("bad path component in the key");
    start = end + 1;
  }
  for (std::size_t i = 0; i < r.fields.size(); ++i) {
    const std::string& f = r.fields[i].name;
    if (f.empty()) refuse("empty field name");
    for (std::size_t j = 0; j < i; ++j)
      if (r.fields[j].name == f) refuse("field " + in_quotes(f) + " appears twice");
    std::string member = r.key + "." + f;
    std::string key, field;
    if (!split_member_name(member, key, field) || key != r.key || field != f || is_meta_member(member) ||
        !tar::unsafe_name_reason(member).empty())
      refuse("member name " + in_quotes(member) +
             " would not read back as this key and field (keys have no '.' in their last "
             "component, fields are lowercase without '/')");
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------

const Field* Record::find(const std::string& name) const {
  for (const Field& f : fields)
    if (f.name == name) return &f;
  return nullptr;
}

const Field* Record::image() const {
  for (const char* name : {"png", "jpg", "jpeg"})
    if (const Field* f = find(name)) return f;
  return nullptr;
}

Field* Record::find(const std::string& name) {
  for (Field& f : fields)
    if (f.name == name) return &f;
  return nullptr;
}

void Record::set(const std::string& name, std::string data) {
  if (Field* f = find(name)) f->data = std::move(data);
  else fields.push_back(Field{name, std::move(data)});
}

void Record::erase(const std::string& name) {
  for (auto it = fields.begin(); it != fields.end(); ++it)
    if (it->name == name) {
      fields.erase(it);
      return;
    }
}

nlohmann::json new_stream_header() {
  return nlohmann::json{{"format", kStreamFormat},
                        {"version", version_string()},
                        {"fields", nlohmann::json::object()},
                        {"labels", nlohmann::json::array()},
                        {"provenance", nlohmann::json::array()}};
}

bool split_member_name(const std::string& name, std::string& key, std::string& field) {
  // WebDataset: re.match(r"^((?:.*/|)[^.]+)[.]([^/]*)$", name). The field has no '/', so the dot
  // lies in the base name; normally it is the base name's first dot. A base name that starts
  // with '.' still matches when the directory component before it has no dot: the regex then
  // takes "dir/" as the key ("a/.png" -> "a/", "png").
  std::size_t slash = name.rfind('/');
  std::size_t base = slash == std::string::npos ? 0 : slash + 1;
  std::size_t dot = name.find('.', base);
  if (dot == std::string::npos) return false;
  if (dot == base) {
    if (slash == std::string::npos) return false;
    std::size_t prev = slash == 0 ? std::string::npos : name.rfind('/', slash - 1);
    std::size_t comp = prev == std::string::npos ? 0 : prev + 1;
    if (name.find('.', comp) < slash) return false;
  }
  key = name.substr(0, dot);
  field = name.substr(dot + 1);
  for (char& c : field)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return true;
}

bool is_meta_member(const std::string& name) {
  // WebDataset's tar_file_iterator skips both: a name without '/' that starts and ends with
  // "__", and any name matching r"__[^/]*__($|/)" (a "__x__" first component).
  auto starts = [](std::string_view s) { return s.size() >= 2 && s.substr(0, 2) == "__"; };
  auto ends = [](std::string_view s) { return s.size() >= 2 && s.substr(s.size() - 2) == "__"; };
  std::size_t slash = name.find('/');
  if (slash == std::string::npos) return starts(name) && ends(name);
  std::string_view first(name.data(), slash);
  return first.size() >= 4 && starts(first) && ends(first);
}

// ---------------------------------------------------------------------------------------------
// Writer

struct StreamWriter::Impl {
  tar::Writer tar;
  std::string where;
  KeySet seen;
  bool finished = false;
  Impl(std::FILE* out, std::string w) : tar(out, w), where(std::move(w)) {}
};

StreamWriter::StreamWriter(std::FILE* out, const nlohmann::json& header, std::string where)
    : impl_(std::make_unique<Impl>(out, std::move(where))) {
  if (!header.is_object()) throw Error(at(impl_->where, "the stream header must be a JSON object"));
  nlohmann::json h = header;
  // The bytes that follow are this writer's format, whatever version the header came from.
  h["format"] = kStreamFormat;
  h["version"] = version_string();
  if (!h.contains("fields")) h["fields"] = nlohmann::json::object();
  if (!h.contains("labels")) h["labels"] = nlohmann::json::array();
  if (!h.contains("provenance")) h["provenance"] = nlohmann::json::array();
  // Invalid UTF-8 (say, a command-line argument in Latin-1) is replaced rather than thrown on.
  impl_->tar.add(kHeaderMember, h.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
}

StreamWriter::~StreamWriter() = default;

void StreamWriter::write(const Record& record) {
  if (impl_->finished) throw std::logic_error("StreamWriter::write after finish");
  check_writable(record, impl_->where);
  if (!impl_->seen.insert(record.key))
    throw Error(at(impl_->where, "cannot write record " + in_quotes(record.key) +
                                     ": the key was written before (keys must be unique)"));
  for (const Field& f : record.fields) impl_->tar.add(record.key + "." + f.name, f.data);
  ++records_;
}

void StreamWriter::finish() {
  if (impl_->finished) return;
  impl_->tar.add(kTrailerMember, nlohmann::json{{"records", records_}}.dump() + "\n");
  impl_->tar.finish();
  impl_->finished = true;
}

// ---------------------------------------------------------------------------------------------
// Reader

struct StreamReader::Impl {
  std::FILE* owned = nullptr;  // closed by the destructor when open() opened it
  tar::Reader tar;
  std::string where;
  nlohmann::json header;
  bool cx = false;
  bool started = false;   // the first member has been looked at
  bool saw_end = false;   // __end__ read
  bool done = false;      // next() returned false
  bool have_look = false; // `look` holds a member read ahead
  tar::Member look;
  std::int64_t records = 0;
  KeySet seen;

  Impl(std::FILE* in, std::string w) : tar(in, w), where(std::move(w)) {}

  // The next regular member; false at the end-of-archive blocks. Rephrases a cut tar in the
  // stream's terms: how many records came through, and what was missing.
  bool fetch(tar::Member& m) {
    try {
      return tar.next(m);
    } catch (const tar::Truncated& e) {
      std::string n = std::to_string(records) + (records == 1 ? " record" : " records");
      if (!started) throw TruncatedError(at(where, "truncated stream: " + e.detail()));
      if (cx && !saw_end)
        throw TruncatedError(at(where, "truncated stream: ended after " + n + " without __end__ (" + e.detail() + ")"));
      if (cx)
        throw TruncatedError(at(where, "truncated stream: cut after __end__ (" + e.detail() + ")"));
      throw TruncatedError(at(where, "truncated stream: ended after " + n +
                                         " without the tar end-of-archive blocks (" + e.detail() + ")"));
    }
  }

  void read_header(const std::string& text) {
    nlohmann::json h;
    try {
      h = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      throw Error(at(where, std::string("__cx__ is not valid JSON: ") + e.what()));
    }
    if (!h.is_object()) throw Error(at(where, "__cx__ is not a JSON object"));
    if (!h.contains("format") || h["format"] != kStreamFormat)
      throw Error(at(where, "__cx__ names format " + (h.contains("format") ? h["format"].dump() : std::string("(none)")) +
                                ", not " + kStreamFormat));
    int major = parse_major(h.contains("version") ? h["version"] : nlohmann::json());
    if (major < 1)
      throw Error(at(where, "__cx__ has no valid version (want \"<major>.<minor>\", got " +
                                (h.contains("version") ? h["version"].dump() : std::string("none")) + ")"));
    if (major > kStreamVersionMajor)
      throw Error(at(where, "written by a newer cx (version " + h["version"].get<std::string>() +
                                "); this reader knows " + std::to_string(kStreamVersionMajor) + ".x"));
    if (!h.contains("fields")) h["fields"] = nlohmann::json::object();
    if (!h.contains("labels")) h["labels"] = nlohmann::json::array();
    if (!h.contains("provenance")) h["provenance"] = nlohmann::json::array();
    header = std::move(h);
  }

  void read_trailer(const tar::Member& m) {
    nlohmann::json t;
    try {
      t = nlohmann::json::parse(m.data);
    } catch (const nlohmann::json::exception& e) {
      throw Error(at(where, std::string("__end__ is not valid JSON: ") + e.what()));
    }
    if (!t.is_object() || !t.contains("records") || !t["records"].is_number_integer())
      throw Error(at(where, "__end__ has no integer \"records\" count"));
    std::int64_t n = t["records"].get<std::int64_t>();
    if (n != records)
      throw Error(at(where, "__end__ counts " + std::to_string(n) + " records but the stream holds " +
                                std::to_string(records)));
  }
};

StreamReader::StreamReader(std::FILE* in, std::string where)
    : impl_(std::make_unique<Impl>(in, std::move(where))) {
  Impl& s = *impl_;
  if (s.fetch(s.look)) {
    if (s.look.name == kHeaderMember) {
      s.read_header(s.look.data);
      s.cx = true;
    } else {
      s.have_look = true;
      s.header = new_stream_header();
    }
  } else {
    s.header = new_stream_header();  // an empty plain tar: complete, no records
    s.done = true;
  }
  s.started = true;
}

std::unique_ptr<StreamReader> StreamReader::open(const std::string& path) {
  if (path == "-") return std::make_unique<StreamReader>(stdin, cli::input_name(path));
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw Error(at(path, std::strerror(errno)));
  try {
    auto reader = std::make_unique<StreamReader>(f, path);
    reader->impl_->owned = f;
    return reader;
  } catch (...) {
    std::fclose(f);
    throw;
  }
}

StreamReader::~StreamReader() {
  if (impl_ && impl_->owned) std::fclose(impl_->owned);
}

const nlohmann::json& StreamReader::header() const { return impl_->header; }
bool StreamReader::is_cx() const { return impl_->cx; }
std::int64_t StreamReader::records() const { return impl_->records; }
const std::string& StreamReader::where() const { return impl_->where; }

bool StreamReader::next(Record& record) {
  Impl& s = *impl_;
  record.key.clear();
  record.fields.clear();
  if (s.done) return false;
  auto finish_record = [&] {
    ++s.records;
    return true;
  };
  std::string key, field;
  for (;;) {
    if (!s.have_look) {
      if (!s.fetch(s.look)) {
        // The end-of-archive blocks.
        if (s.cx && !s.saw_end)
          throw TruncatedError(at(s.where, "truncated stream: ended after " + std::to_string(s.records) +
                                               " records without __end__ (the tar ends early)"));
        s.done = true;
        if (!record.fields.empty()) return finish_record();
        return false;
      }
      s.have_look = true;
    }
    if (s.saw_end)
      throw Error(at(s.where, "member " + in_quotes(s.look.name) + " follows __end__"));
    const std::string& name = s.look.name;
    if (is_meta_member(name)) {
      if (s.cx && name == kTrailerMember) {
        if (!record.fields.empty()) return finish_record();  // __end__ stays read ahead
        s.read_trailer(s.look);
        s.saw_end = true;
        s.have_look = false;
        continue;  // only the end-of-archive blocks may follow
      }
      if (s.cx && name == kHeaderMember)
        throw Error(at(s.where, "a second __cx__ header at byte offset " + std::to_string(s.look.offset) +
                                    " (concatenated streams?)"));
      if (log::level() >= log::Level::verbose)
        log::debug(at(s.where, "skipping metadata member " + in_quotes(name)));
      s.have_look = false;
      continue;
    }
    if (!split_member_name(name, key, field)) {
      // WebDataset skips members whose base name has no extension; so do we, but say so.
      if (log::level() >= log::Level::verbose)
        log::debug(at(s.where, "skipping member " + in_quotes(name) + ": no '.' in its base name, so no key"));
      s.have_look = false;
      continue;
    }
    if (record.fields.empty()) {
      if (!s.seen.insert(key))
        throw Error(at(s.where, "key " + in_quotes(key) + " repeats out of order (member " + in_quotes(name) +
                                    "): a record's members must be consecutive"));
      record.key = key;
    } else if (key != record.key) {
      return finish_record();  // the member starts the next record: keep it read ahead
    }
    if (record.find(field))
      throw Error(at(s.where, "record " + in_quotes(key) + " has field " + in_quotes(field) + " twice (member " +
                                  in_quotes(name) + ")"));
    record.fields.push_back(Field{std::move(field), std::move(s.look.data)});
    field.clear();
    s.have_look = false;
  }
}

}  // namespace cx::io
