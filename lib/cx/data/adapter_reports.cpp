// Report text attached to images, from two layouts (told apart by the files found):
//  - Indiana University / Open-i (Demner-Fushman et al. 2016): ecgen-radiology/*.xml, one report
//    per file with <AbstractText Label="FINDINGS">, <AbstractText Label="IMPRESSION"> and one
//    <parentImage id="CXR1_1_IM-0001-3001"> per image. One record per image, keyed by that id;
//    the image is <root>/<id>.png (or .jpg, .dcm), root defaulting to the XML folder's parent
//    (where NLMCXR_png.tgz unpacks).
//  - MIMIC-CXR reports: files/pXX/pSUBJECT/sSTUDY.txt; one record per image of the study found
//    in <root>/files/pXX/pSUBJECT/sSTUDY/ (MIMIC-CXR-JPG .jpg or MIMIC-CXR .dcm), keyed by the
//    image's stem; root defaulting to the reports folder's parent.
// LABELFILE is the folder (walked recursively, sorted) or one .xml / .txt file. <key>.txt holds
// "FINDINGS: ...\n\nIMPRESSION: ...\n" (report_text), the .json the sections and their source.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <sstream>

#include "cx/cli/error.hpp"
#include "cx/cli/log.hpp"
#include "cx/data/adapter_common.hpp"
#include "cx/util/strings.hpp"

namespace cx::data::detail {

namespace {

namespace fs = std::filesystem;

std::string read_all(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(at(path, "cannot open"));
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string xml_unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '&') {
      out += s[i];
      continue;
    }
    std::size_t semi = s.find(';', i);
    if (semi == std::string::npos || semi - i > 10) {
      out += s[i];
      continue;
    }
    std::string_view ent = s.substr(i + 1, semi - i - 1);
    unsigned long cp = 0;
    bool ok = true;
    if (ent == "amp") out += '&';
    else if (ent == "lt") out += '<';
    else if (ent == "gt") out += '>';
    else if (ent == "quot") out += '"';
    else if (ent == "apos") out += '\'';
    else if (!ent.empty() && ent[0] == '#') {
      std::string num(ent.substr(1));
      char* end = nullptr;
      cp = (!num.empty() && (num[0] == 'x' || num[0] == 'X')) ? std::strtoul(num.c_str() + 1, &end, 16)
                                                              : std::strtoul(num.c_str(), &end, 10);
      ok = end && *end == '\0' && cp > 0 && cp < 0x110000;
      if (ok) {  // UTF-8
        if (cp < 0x80) out += static_cast<char>(cp);
        else if (cp < 0x800) { out += static_cast<char>(0xC0 | (cp >> 6)); out += static_cast<char>(0x80 | (cp & 0x3F)); }
        else if (cp < 0x10000) { out += static_cast<char>(0xE0 | (cp >> 12)); out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F)); out += static_cast<char>(0x80 | (cp & 0x3F)); }
        else { out += static_cast<char>(0xF0 | (cp >> 18)); out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F)); out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F)); out += static_cast<char>(0x80 | (cp & 0x3F)); }
      }
    } else {
      ok = false;
    }
    if (!ok) {
      out += s[i];
      continue;
    }
    i = semi;
  }
  return out;
}

// The value of attribute `name` inside the start tag `tag` (e.g. `<parentImage id="x">`).
std::string attribute(std::string_view tag, std::string_view name) {
  std::size_t p = 0;
  while ((p = tag.find(name, p)) != std::string::npos) {
    bool boundary = p > 0 && (tag[p - 1] == ' ' || tag[p - 1] == '\t' || tag[p - 1] == '\n' || tag[p - 1] == '\r');
    std::size_t q = p + name.size();
    while (q < tag.size() && tag[q] == ' ') ++q;
    if (boundary && q < tag.size() && tag[q] == '=') {
      ++q;
      while (q < tag.size() && tag[q] == ' ') ++q;
      if (q < tag.size() && (tag[q] == '"' || tag[q] == '\'')) {
        std::size_t e = tag.find(tag[q], q + 1);
        if (e != std::string::npos) return xml_unescape(tag.substr(q + 1, e - q - 1));
      }
    }
    p = q;
  }
  return "";
}

struct IuReport {
  std::string id;  // uId
  nlohmann::json sections = nlohmann::json::object();
  std::vector<std::string> images;
  std::vector<std::string> mesh;
};

IuReport parse_iu_xml(const std::string& xml, const std::string& where) {
  IuReport r;
  if (xml.find("<eCitation") == std::string::npos) throw Error(at(where, "not an Open-i report (no <eCitation>)"));
  std::size_t p = 0;
  while ((p = xml.find('<', p)) != std::string::npos) {
    std::size_t e = xml.find('>', p);
    if (e == std::string::npos) throw Error(at(where, "XML tag not closed at offset " + std::to_string(p)));
    std::string_view tag(xml.data() + p, e - p + 1);
    auto starts = [&](std::string_view name) {
      return tag.size() > name.size() + 1 && tag.substr(1, name.size()) == name &&
             (tag[name.size() + 1] == ' ' || tag[name.size() + 1] == '>' || tag[name.size() + 1] == '/');
    };
    if (starts("AbstractText")) {
      std::string label = util::upper(attribute(tag, "Label"));
      std::string text;
      std::size_t next = e + 1;
      if (tag[tag.size() - 2] != '/') {
        std::size_t close = xml.find("</AbstractText>", e);
        if (close == std::string::npos) throw Error(at(where, "<AbstractText> not closed"));
        text = util::collapse_space(xml_unescape(std::string_view(xml).substr(e + 1, close - e - 1)));
        next = close + 15;
      }
      std::string key = label == "FINDINGS" ? "findings" : label == "IMPRESSION" ? "impression" : "";
      if (!key.empty() && !text.empty()) r.sections[key] = text;
      p = next;
      continue;
    }
    if (starts("parentImage")) {
      std::string id = attribute(tag, "id");
      if (!id.empty()) r.images.push_back(id);
    } else if (starts("uId")) {
      r.id = attribute(tag, "id");
    } else if (starts("major")) {
      std::size_t close = xml.find("</major>", e);
      if (close != std::string::npos) {
        std::string t = util::collapse_space(xml_unescape(std::string_view(xml).substr(e + 1, close - e - 1)));
        if (!t.empty()) r.mesh.push_back(t);
      }
    }
    p = e + 1;
  }
  return r;
}

class ReportsSource : public ItemSource {
 public:
  explicit ReportsSource(const AdapterOptions& o) {
    const std::string& in = o.label_file;
    if (is_dir(in)) {
      std::error_code ec;
      for (fs::recursive_directory_iterator it(in, ec), end; !ec && it != end; it.increment(ec)) {
        if (!it->is_regular_file()) continue;
        std::string p = it->path().string(), name = it->path().filename().string();
        if (util::ends_with_ci(name, ".xml")) xml_.push_back(p);
        else if (util::ends_with_ci(name, ".txt") && name.size() > 5 && name[0] == 's') txt_.push_back(p);
      }
      if (ec) throw Error(at(in, "cannot read folder: " + ec.message()));
    } else if (util::ends_with_ci(in, ".xml")) {
      xml_.push_back(in);
    } else if (util::ends_with_ci(in, ".txt")) {
      txt_.push_back(in);
    } else {
      throw Error(at(in, "expected a folder of Open-i XML or MIMIC-CXR sNNN.txt reports, or one such file"));
    }
    if (xml_.empty() && txt_.empty()) throw Error(at(in, "no Open-i .xml or MIMIC-CXR sNNN.txt reports found"));
    if (!xml_.empty() && !txt_.empty()) throw Error(at(in, "both Open-i .xml and MIMIC-CXR .txt reports found: ingest them separately"));
    std::sort(xml_.begin(), xml_.end());
    std::sort(txt_.begin(), txt_.end());
    std::string base = is_dir(in) ? in : parent_folder(in);
    while (base.size() > 1 && base.back() == '/') base.pop_back();
    root_ = o.root.empty() ? parent_folder(base) : o.root;
  }

  bool next(IngestItem& item) override {
    while (pending_.empty()) {
      if (f_ < xml_.size()) load_xml(xml_[f_++]);
      else if (f_ - xml_.size() < txt_.size()) load_txt(txt_[f_++ - xml_.size()]);
      else return false;
    }
    item = std::move(pending_.front());
    pending_.erase(pending_.begin());
    return true;
  }

  std::string dataset() const override { return "reports"; }
  bool has_reports() const override { return true; }

 private:
  void load_xml(const std::string& path) {
    IuReport r = parse_iu_xml(read_all(path), path);
    if (r.images.empty()) {
      log::debug(path + ": report names no image: skipped");
      return;
    }
    for (const auto& id : r.images) {
      inside_root(id, path, "image id");
      IngestItem item;
      item.key = sanitize_key(id, path);
      item.origin = path;
      item.image_path = join_path(root_, id + ".png");
      for (const char* ext : {".png", ".jpg", ".dcm"})
        if (std::string p = join_path(root_, id + ext); is_file(p)) {
          item.image_path = p;
          break;
        }
      item.report = report_text(r.sections, "");
      auto& m = item.meta;
      m["dataset"] = "iu-xray";
      m["source"] = item.image_path.substr(item.image_path.find_last_of('/') + 1);
      m["origin"] = path;
      nlohmann::json rep = r.sections;
      rep["source"] = path;
      if (!r.id.empty()) rep["id"] = r.id;
      if (!r.mesh.empty()) rep["mesh"] = r.mesh;
      m["report"] = rep;
      pending_.push_back(std::move(item));
    }
  }

  void load_txt(const std::string& path) {
    // .../pXX/pSUBJECT/sSTUDY.txt -> <root>/files/pXX/pSUBJECT/sSTUDY/
    fs::path p(path);
    std::string study = p.stem().string();
    std::string subject = p.parent_path().filename().string();
    std::string group = p.parent_path().parent_path().filename().string();
    std::string dir = join_path(root_, "files/" + group + "/" + subject + "/" + study);
    std::vector<std::string> images;
    if (is_dir(dir)) images = list_image_files(dir);
    if (images.empty()) {
      // A report whose images are missing: the item names the folder, so the run reports it.
      images.push_back(join_path(dir, "*.jpg"));
    }
    const std::string text = read_all(path);
    nlohmann::json sections = mimic_report_sections(text);
    for (const auto& img : images) {
      IngestItem item;
      item.key = sanitize_key(file_stem(img), path);
      item.origin = path;
      item.image_path = img;
      item.report = report_text(sections, text);
      auto& m = item.meta;
      m["dataset"] = "mimic";
      m["source"] = img;
      m["origin"] = path;
      if (subject.size() > 1) m["patient"] = subject.substr(1);
      if (study.size() > 1) m["study"] = study.substr(1);
      nlohmann::json rep = sections;
      rep["source"] = path;
      m["report"] = rep;
      pending_.push_back(std::move(item));
    }
  }

  std::vector<std::string> xml_, txt_;
  std::string root_;
  std::size_t f_ = 0;
  std::vector<IngestItem> pending_;
};

}  // namespace

std::unique_ptr<ItemSource> open_reports(const AdapterOptions& options) {
  return std::make_unique<ReportsSource>(options);
}

}  // namespace cx::data::detail
