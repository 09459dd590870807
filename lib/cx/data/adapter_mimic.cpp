// MIMIC-CXR-JPG 2.0 (Johnson et al. 2019): the label file is mimic-cxr-2.0.0-metadata.csv(.gz)
// (dicom_id, subject_id, study_id, ViewPosition, Rows, Columns ...); beside it
// mimic-cxr-2.0.0-chexpert.csv(.gz) (subject_id, study_id, 14 CheXpert labels) and
// mimic-cxr-2.0.0-split.csv(.gz) (dicom_id, study_id, subject_id, split) are joined on
// study_id and dicom_id. Images: <root>/files/pXX/pSUBJECT/sSTUDY/DICOM_ID.jpg, XX the first two
// digits of the subject id; the root defaults to the metadata file's folder. With a reports tree
// (mimic-cxr-reports: files/pXX/pSUBJECT/sSTUDY.txt) each record gets its study's report.
#include <fstream>
#include <memory>
#include <sstream>
#include <unordered_map>

#include "cx/cli/error.hpp"
#include "cx/cli/log.hpp"
#include "cx/data/adapter_common.hpp"
#include "cx/util/strings.hpp"

namespace cx::data::detail {

namespace {

std::string sibling_with_suffix(const std::string& dir, const std::string& label_file, const std::string& suffix) {
  // mimic-cxr-2.0.0-metadata.csv -> mimic-cxr-2.0.0-<suffix>.csv; else the plain release name.
  std::string name = label_file.substr(label_file.find_last_of('/') + 1);
  if (util::ends_with_ci(name, ".gz")) name.resize(name.size() - 3);
  std::string guess;
  if (auto p = name.rfind("metadata.csv"); p != std::string::npos) guess = name.substr(0, p) + suffix + ".csv";
  if (!guess.empty()) {
    if (std::string f = find_sibling(dir, guess); !f.empty()) return f;
  }
  return find_sibling(dir, "mimic-cxr-2.0.0-" + suffix + ".csv");
}

std::int64_t parse_id(const std::string& s, const std::string& where, const char* what) {
  std::string t = util::trim(s);
  char* end = nullptr;
  long long v = std::strtoll(t.c_str(), &end, 10);
  if (t.empty() || end != t.c_str() + t.size() || v < 0) throw Error(at(where, std::string(what) + " '" + t + "' is not an id"));
  return v;
}

class MimicSource : public ItemSource {
 public:
  explicit MimicSource(const AdapterOptions& o) : csv_(o.label_file), set_(load_label_set("chexpert14")) {
    const std::string dir = parent_folder(o.label_file);
    root_ = o.root.empty() ? dir : o.root;
    dicom_ = csv_.require_column("dicom_id");
    subject_ = csv_.require_column("subject_id");
    study_ = csv_.require_column("study_id");
    view_ = csv_.find_column("ViewPosition");
    rows_ = csv_.find_column("Rows");
    cols_ = csv_.find_column("Columns");
    date_ = csv_.find_column("StudyDate");

    if (std::string f = sibling_with_suffix(dir, o.label_file, "chexpert"); !f.empty()) {
      read_labels(f);
    } else {
      log::warn(dir + ": no mimic-cxr-2.0.0-chexpert.csv beside the metadata: records get no labels");
    }
    if (std::string f = sibling_with_suffix(dir, o.label_file, "split"); !f.empty()) read_split(f);
    if (!o.reports.empty()) {
      reports_ = is_dir(join_path(o.reports, "files")) ? join_path(o.reports, "files") : o.reports;
      if (!is_dir(reports_)) throw Error(at(o.reports, "reports folder not found"));
    }
  }

  bool next(IngestItem& item) override {
    if (!csv_.next(row_)) return false;
    const std::string where = csv_.where();
    item = IngestItem{};
    const std::string dicom_id = inside_root(util::trim(row_[dicom_]), where, "dicom_id");
    std::int64_t subject = parse_id(row_[subject_], where, "subject_id");
    std::int64_t study = parse_id(row_[study_], where, "study_id");
    const std::string subj = std::to_string(subject), stud = std::to_string(study);
    const std::string rel = "files/p" + subj.substr(0, 2) + "/p" + subj + "/s" + stud + "/" + dicom_id + ".jpg";
    item.key = sanitize_key(dicom_id, where);
    item.image_path = join_path(root_, rel);
    item.origin = where;
    auto& m = item.meta;
    m["dataset"] = "mimic";
    m["source"] = rel;
    m["origin"] = where;
    m["patient"] = subj;
    m["study"] = stud;
    if (view_ >= 0) {
      std::string v = util::upper(util::trim(row_[view_]));
      if (!v.empty()) m["view"] = v;
    }
    if (date_ >= 0 && !util::trim(row_[date_]).empty()) m["study_date"] = util::trim(row_[date_]);
    if (rows_ >= 0 && cols_ >= 0) {
      auto r = parse_optional_number(row_[rows_], where + ": Rows");
      auto c = parse_optional_number(row_[cols_], where + ": Columns");
      if (r && c) m["acquisition"] = {{"width", static_cast<int>(*c)}, {"height", static_cast<int>(*r)}};
    }
    if (auto it = split_.find(dicom_id); it != split_.end()) m["split"] = it->second;
    if (have_labels_) {
      auto it = labels_.find(study);
      std::vector<LabelValue> values(set_.classes.size(), LabelValue::blank);
      if (it != labels_.end()) {
        for (std::size_t i = 0; i < values.size(); ++i) values[i] = static_cast<LabelValue>(it->second[i]);
      } else {
        log::debug(where + ": study " + stud + " has no row in the chexpert labels: all blank");
      }
      m["labels"] = labels_json(set_, values);
    }
    if (!reports_.empty()) {
      std::string rp = join_path(reports_, "p" + subj.substr(0, 2) + "/p" + subj + "/s" + stud + ".txt");
      std::ifstream f(rp, std::ios::binary);
      if (f) {
        std::ostringstream ss;
        ss << f.rdbuf();
        nlohmann::json sections = mimic_report_sections(ss.str());
        item.report = report_text(sections, ss.str());
        sections["source"] = rp;
        m["report"] = sections;
      } else {
        log::debug(rp + ": no report for this study");
      }
    }
    return true;
  }

  std::string dataset() const override { return "mimic"; }
  const LabelSet* label_set() const override { return have_labels_ ? &set_ : nullptr; }
  bool has_reports() const override { return !reports_.empty(); }

 private:
  void read_labels(const std::string& path) {
    CsvReader t(path);
    int study = t.require_column("study_id");
    std::vector<int> cols;
    for (const auto& c : set_.classes) cols.push_back(t.require_column(c));
    std::vector<std::string> r;
    while (t.next(r)) {
      std::vector<std::int8_t> v(cols.size());
      for (std::size_t i = 0; i < cols.size(); ++i)
        v[i] = static_cast<std::int8_t>(parse_label_cell(r[cols[i]], t.where() + ": " + set_.classes[i]));
      std::int64_t id = parse_id(r[study], t.where(), "study_id");
      if (!labels_.emplace(id, std::move(v)).second) throw Error(at(t.where(), "study_id " + r[study] + " listed twice"));
    }
    have_labels_ = true;
  }
  void read_split(const std::string& path) {
    CsvReader t(path);
    int d = t.require_column("dicom_id"), s = t.require_column("split");
    std::vector<std::string> r;
    while (t.next(r)) split_[util::trim(r[d])] = util::trim(r[s]);
  }

  CsvReader csv_;
  LabelSet set_;
  std::string root_, reports_;
  int dicom_, subject_, study_, view_, rows_, cols_, date_;
  bool have_labels_ = false;
  std::unordered_map<std::int64_t, std::vector<std::int8_t>> labels_;
  std::unordered_map<std::string, std::string> split_;
  std::vector<std::string> row_;
};

}  // namespace

std::unique_ptr<ItemSource> open_mimic(const AdapterOptions& options) { return std::make_unique<MimicSource>(options); }

}  // namespace cx::data::detail
