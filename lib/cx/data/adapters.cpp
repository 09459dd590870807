#include "cx/data/adapters.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "cx/cli/error.hpp"
#include "cx/cli/log.hpp"
#include "cx/data/adapter_common.hpp"
#include "cx/data/rle.hpp"
#include "cx/text/reports.hpp"
#include "cx/util/strings.hpp"

namespace cx::data {

namespace fs = std::filesystem;

namespace detail {

std::string parent_folder(const std::string& path) {
  if (path == "-") return ".";
  fs::path p(path);
  fs::path parent = p.parent_path();
  return parent.empty() ? "." : parent.string();
}

std::string join_path(const std::string& a, const std::string& b) {
  if (a.empty() || a == ".") return b;
  if (!b.empty() && b.front() == '/') return b;
  return a.back() == '/' ? a + b : a + "/" + b;
}

const std::string& inside_root(const std::string& rel, const std::string& where, const std::string& what) {
  const fs::path p(rel);
  bool escapes = p.is_absolute() || p.has_root_name() || p.has_root_directory();
  int depth = 0;
  for (const auto& part : p) {
    if (escapes) break;
    if (part == "..") escapes = --depth < 0;
    else if (part != "." && !part.empty()) ++depth;
  }
  if (escapes)
    throw Error(at(where, what + " '" + rel + "' leaves the image root (an absolute path or '..' above it); label files name "
                                             "images inside --root"));
  return rel;
}

bool is_file(const std::string& path) {
  std::error_code ec;
  return fs::is_regular_file(path, ec);
}

bool is_dir(const std::string& path) {
  std::error_code ec;
  return fs::is_directory(path, ec);
}

std::string find_sibling(const std::string& dir, const std::string& name) {
  for (const std::string& candidate : {join_path(dir, name), join_path(dir, name + ".gz")})
    if (is_file(candidate)) return candidate;
  return "";
}

std::optional<std::string> parse_sex(std::string_view s) {
  std::string t = util::upper(util::trim(s));
  if (t == "M" || t == "MALE") return std::string("M");
  if (t == "F" || t == "FEMALE") return std::string("F");
  return std::nullopt;
}

std::optional<int> parse_age(std::string_view s) {
  std::string t = util::upper(util::trim(s));
  if (!t.empty() && t.back() == 'Y') t.pop_back();  // DICOM age string "068Y"
  if (t.empty()) return std::nullopt;
  char* end = nullptr;
  double v = std::strtod(t.c_str(), &end);
  if (end != t.c_str() + t.size() || !(v >= 0) || v > 150) return std::nullopt;
  return static_cast<int>(v);
}

std::optional<double> parse_optional_number(std::string_view s, const std::string& where) {
  std::string t = util::trim(s);
  if (t.empty()) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  double v = std::strtod(t.c_str(), &end);
  if (end != t.c_str() + t.size() || errno == ERANGE || !std::isfinite(v))
    throw Error(at(where, "'" + t + "' is not a number"));
  return v;
}

std::string file_stem(const std::string& path) {
  std::string name = fs::path(path).filename().string();
  auto dot = name.rfind('.');
  return (dot == std::string::npos || dot == 0) ? name : name.substr(0, dot);
}

std::string strip_extension(const std::string& path) {
  std::size_t dot = path.rfind('.');
  std::size_t slash = path.rfind('/');
  if (dot == std::string::npos || (slash != std::string::npos && dot < slash) || dot == slash + 1) return path;
  return path.substr(0, dot);
}

}  // namespace detail

using namespace detail;

Image MaskRle::decode(const std::string& where) const {
  return chexmask_label_map(left_lung, right_lung, heart, height, width, where);
}

const std::vector<std::string>& dataset_names() {
  static const std::vector<std::string> names = {"chexpert", "nih",      "mimic",  "rsna",   "vindr",
                                                 "padchest", "chexmask", "folder", "reports"};
  return names;
}

std::unique_ptr<ItemSource> open_dataset(const std::string& name, const AdapterOptions& options) {
  std::string n = util::lower(name);
  if (n == "chexpert") return open_chexpert(options);
  if (n == "nih" || n == "chestx-ray14" || n == "cxr14") return open_nih(options);
  if (n == "mimic" || n == "mimic-cxr") return open_mimic(options);
  if (n == "rsna") return open_rsna(options);
  if (n == "vindr" || n == "vindr-cxr") return open_vindr(options);
  if (n == "padchest") return open_padchest(options);
  if (n == "chexmask") return open_chexmask(options);
  if (n == "folder") return open_folder(options);
  if (n == "reports") return open_reports(options);
  std::string list;
  for (const auto& d : dataset_names()) list += (list.empty() ? "" : ", ") + d;
  throw UsageError("unknown dataset '" + name + "' (known: " + list + ")");
}

std::string sanitize_key(std::string key, const std::string& where) {
  for (char& c : key)
    if (c == '.' || c == '/' || c == '\\' || util::is_space(c)) c = '_';
  if (key.empty()) throw Error(at(where, "empty record key"));
  // "__name__" is reserved for the stream's own members.
  if (key.size() >= 4 && util::starts_with(key, "__") && util::ends_with(key, "__")) key = "x" + key;
  return key;
}

bool looks_like_image_file(const std::string& path) {
  for (const char* ext : {".dcm", ".dicom", ".dic", ".png", ".jpg", ".jpeg"})
    if (util::ends_with_ci(path, ext)) return true;
  std::string name = fs::path(path).filename().string();
  if (name.find('.') != std::string::npos) return false;  // another extension: not ours
  // Extension-less files, as PACS exports (DICOMDIR trees) name them: sniff the preamble.
  std::ifstream f(path, std::ios::binary);
  char magic[132];
  if (!f.read(magic, sizeof magic)) return false;
  return std::memcmp(magic + 128, "DICM", 4) == 0;
}

std::vector<std::string> list_image_files(const std::string& dir) {
  std::vector<std::string> files;
  std::error_code ec;
  fs::recursive_directory_iterator it(dir, fs::directory_options::follow_directory_symlink, ec), end;
  if (ec) throw Error(at(dir, "cannot read folder: " + ec.message()));
  // Symbolic links to folders are followed (datasets are often assembled from links), but each
  // folder is entered once: a link back up the tree would otherwise list the same images until
  // the path length gives out (41 times over for a loop to the root).
  std::set<std::pair<dev_t, ino_t>> entered;
  struct stat st {};
  if (::stat(dir.c_str(), &st) == 0) entered.insert({st.st_dev, st.st_ino});
  for (; it != end; it.increment(ec)) {
    if (ec) throw Error(at(dir, "cannot read folder: " + ec.message()));
    std::error_code e2;
    if (it->is_directory(e2)) {
      if (::stat(it->path().c_str(), &st) == 0 && !entered.insert({st.st_dev, st.st_ino}).second) {
        log::warn(at(it->path().string(), "a folder already listed (a symbolic link loop or a second link to it): not entered again"));
        it.disable_recursion_pending();
      }
      continue;
    }
    if (!it->is_regular_file(e2)) continue;
    std::string name = it->path().filename().string();
    if (!name.empty() && name[0] == '.') continue;  // hidden files (.DS_Store, ._x.png)
    if (name == "DICOMDIR") continue;               // an index, not an image
    std::string p = it->path().string();
    if (looks_like_image_file(p)) files.push_back(p);
  }
  std::sort(files.begin(), files.end());
  return files;
}

namespace {

// Items for image files named on the command line, keyed by file-name stem.
class FileSource : public ItemSource {
 public:
  explicit FileSource(const std::vector<std::string>& inputs) {
    std::map<std::string, std::string> owner;  // key -> path
    bool have_stdin = false;
    for (const auto& in : inputs) {
      std::vector<std::string> files;
      if (in == "-") {
        if (have_stdin) throw UsageError("standard input ('-') named twice");
        have_stdin = true;
        files.push_back("-");
      } else if (is_dir(in)) {
        files = list_image_files(in);
        if (files.empty()) log_empty_.push_back(in);
      } else {
        files.push_back(in);  // a missing or unreadable file is reported by the decoder
      }
      for (auto& f : files) {
        std::string key = f == "-" ? std::string("stdin") : sanitize_key(file_stem(f), f);
        auto [pos, fresh] = owner.emplace(key, f);
        if (!fresh)
          throw Error(at(f, "record key '" + key + "' is also the key of " + pos->second +
                                " (keys are file-name stems; rename one, or ingest the folders separately)"));
        files_.push_back({key, f});
      }
    }
  }
  bool next(IngestItem& item) override {
    if (i_ >= files_.size()) return false;
    item = IngestItem{};
    item.key = files_[i_].first;
    item.image_path = files_[i_].second;
    // No origin: the file itself is the input, there is no label row to name.
    item.meta["source"] = item.image_path;
    ++i_;
    return true;
  }
  std::string dataset() const override { return "files"; }
  const std::vector<std::string>& empty_folders() const { return log_empty_; }

 private:
  std::vector<std::pair<std::string, std::string>> files_;
  std::vector<std::string> log_empty_;
  std::size_t i_ = 0;
};

}  // namespace

std::unique_ptr<ItemSource> open_files(const std::vector<std::string>& paths) {
  auto src = std::make_unique<FileSource>(paths);
  if (!src->empty_folders().empty())
    throw Error(at(src->empty_folders().front(), "no DICOM, PNG or JPEG files in this folder"));
  return src;
}

nlohmann::json mimic_report_sections(const std::string& text) {
  const text::ReportSections r = text::parse_mimic_report(text);
  nlohmann::json out = nlohmann::json::object();
  if (!r.findings.empty()) out["findings"] = r.findings;
  if (!r.impression.empty()) out["impression"] = r.impression;
  return out;
}

std::string report_text(const nlohmann::json& sections, const std::string& whole) {
  text::ReportSections r;
  if (sections.contains("findings")) r.findings = sections["findings"].get<std::string>();
  if (sections.contains("impression")) r.impression = sections["impression"].get<std::string>();
  r.text = whole;
  return text::report_text(r);
}

}  // namespace cx::data
