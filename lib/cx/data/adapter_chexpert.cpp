// CheXpert (Irvin et al. 2019): train.csv / valid.csv as downloaded, e.g.
//   CheXpert-v1.0-small/train.csv with Path "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg"
// Path is relative to the folder holding the dataset folder, so the default root is the label
// file's folder's parent. 14 observations coded 1.0 / 0.0 / -1.0 / blank. Without a
// Frontal/Lateral column the view comes from the file name (view1_frontal.jpg).
#include <memory>

#include "cx/cli/error.hpp"
#include "cx/data/adapter_common.hpp"
#include "cx/util/strings.hpp"

namespace cx::data::detail {

namespace {

class ChexpertSource : public ItemSource {
 public:
  explicit ChexpertSource(const AdapterOptions& o)
      : csv_(o.label_file), set_(load_label_set("chexpert14")) {
    root_ = o.root.empty() ? parent_folder(parent_folder(o.label_file)) : o.root;
    path_ = csv_.require_column("Path");
    sex_ = csv_.find_column("Sex");
    age_ = csv_.find_column("Age");
    frontal_ = csv_.find_column("Frontal/Lateral");  // absent from some test-set releases
    appa_ = csv_.find_column("AP/PA");
    for (const auto& cls : set_.classes) label_cols_.push_back(csv_.require_column(cls));
  }

  bool next(IngestItem& item) override {
    if (!csv_.next(row_)) return false;
    const std::string where = csv_.where();
    item = IngestItem{};
    const std::string rel = util::trim(row_[path_]);
    if (rel.empty()) throw Error(at(where, "empty Path"));
    inside_root(rel, where, "Path");
    item.image_path = join_path(root_, rel);
    item.origin = where;

    // Path: <dataset folder>/<split>/<patient>/<study>/<view file>
    std::vector<std::string> parts;
    for (std::size_t b = 0;;) {
      std::size_t s = rel.find('/', b);
      parts.push_back(rel.substr(b, s == std::string::npos ? std::string::npos : s - b));
      if (s == std::string::npos) break;
      b = s + 1;
    }
    auto& m = item.meta;
    m["dataset"] = "chexpert";
    m["source"] = rel;
    m["origin"] = where;
    if (parts.size() >= 5) {
      const std::string& split = parts[parts.size() - 4];
      m["split"] = split;
      m["patient"] = parts[parts.size() - 3];
      m["study"] = parts[parts.size() - 2];
      item.key = sanitize_key(parts[parts.size() - 3] + "_" + parts[parts.size() - 2] + "_" +
                                  file_stem(parts.back()),
                              where);
    } else {
      item.key = sanitize_key(strip_extension(rel), where);
    }
    if (sex_ >= 0) {
      if (auto s = parse_sex(row_[sex_])) m["sex"] = *s;
    }
    if (age_ >= 0) {
      if (auto a = parse_age(row_[age_])) m["age"] = *a;
    }
    std::string fl = frontal_ >= 0 ? util::upper(util::trim(row_[frontal_])) : "";
    if (frontal_ < 0) {  // the file name says it: view1_frontal.jpg, view2_lateral.jpg
      const std::string name = util::lower(parts.back());
      fl = name.find("lateral") != std::string::npos ? "LATERAL" : name.find("frontal") != std::string::npos ? "FRONTAL" : "";
    }
    if (fl == "LATERAL") {
      m["view"] = "LATERAL";
    } else if (fl == "FRONTAL") {
      std::string v = appa_ >= 0 ? util::upper(util::trim(row_[appa_])) : "";
      m["view"] = v.empty() ? "FRONTAL" : v;
    } else if (!fl.empty()) {
      throw Error(at(where, "Frontal/Lateral is '" + row_[frontal_] + "', expected Frontal or Lateral"));
    }
    std::vector<LabelValue> values;
    values.reserve(label_cols_.size());
    for (std::size_t i = 0; i < label_cols_.size(); ++i)
      values.push_back(parse_label_cell(row_[label_cols_[i]], where + ": " + set_.classes[i]));
    m["labels"] = labels_json(set_, values);
    return true;
  }

  std::string dataset() const override { return "chexpert"; }
  const LabelSet* label_set() const override { return &set_; }

 private:
  CsvReader csv_;
  LabelSet set_;
  std::string root_;
  int path_, sex_, age_, frontal_, appa_;
  std::vector<int> label_cols_;
  std::vector<std::string> row_;
};

}  // namespace

std::unique_ptr<ItemSource> open_chexpert(const AdapterOptions& options) {
  return std::make_unique<ChexpertSource>(options);
}

}  // namespace cx::data::detail
