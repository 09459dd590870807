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
#include "cx/text/reports.hpp"
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

// The adapter's view of an Open-i report: sections with white space collapsed (text/reports keeps
// them as written, for tokenizer corpora).
nlohmann::json iu_sections(const text::ReportSections& r) {
  nlohmann::json out = nlohmann::json::object();
  if (std::string t = text::clean_report(r.findings); !t.empty()) out["findings"] = t;
  if (std::string t = text::clean_report(r.impression); !t.empty()) out["impression"] = t;
  return out;
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
    const text::ReportSections r = text::parse_iu_xml(read_all(path), path);
    const nlohmann::json sections = iu_sections(r);
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
      item.report = report_text(sections, "");
      auto& m = item.meta;
      m["dataset"] = "iu-xray";
      m["source"] = item.image_path.substr(item.image_path.find_last_of('/') + 1);
      m["origin"] = path;
      nlohmann::json rep = sections;
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
