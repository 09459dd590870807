// PadChest (Bustos et al. 2020): PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv(.gz) with
// ImageID, ImageDir (the numbered folder holding the PNG), Projection (PA, AP, L, AP_horizontal
// ...), PatientSex_DICOM, PatientBirth, StudyDate_DICOM and Labels, a Python list literal
// ("['pleural effusion', 'cardiomegaly']"). PadChest's 190+ findings are an open vocabulary:
// `labels` lists each mentioned finding as positive (1) and nothing else (missing = blank), and
// `findings` keeps the list as written. Images: <root>/<ImageDir>/<ImageID>, root defaulting to
// the label file's folder; when <root>/<ImageDir> does not exist, <root>/<ImageID>.
#include <memory>

#include "cx/cli/error.hpp"
#include "cx/data/adapter_common.hpp"
#include "cx/util/strings.hpp"

namespace cx::data::detail {

namespace {

// "['a', 'b']" or '["a", "b"]' -> {a, b}; "nan", "" and "[]" -> {}.
std::vector<std::string> parse_python_list(const std::string& cell, const std::string& where) {
  std::string t = util::trim(cell);
  std::vector<std::string> out;
  if (t.empty() || t == "nan" || t == "NaN" || t == "[]") return out;
  if (t.front() != '[' || t.back() != ']') throw Error(at(where, "Labels '" + t + "' is not a list like ['a', 'b']"));
  std::size_t i = 1;
  while (i < t.size() - 1) {
    char c = t[i];
    if (c == ' ' || c == ',') {
      ++i;
      continue;
    }
    if (c != '\'' && c != '"') throw Error(at(where, "Labels '" + t + "': expected a quoted string at offset " + std::to_string(i)));
    std::size_t e = t.find(c, i + 1);
    if (e == std::string::npos || e >= t.size() - 1) throw Error(at(where, "Labels '" + t + "': unterminated string"));
    std::string item = util::trim(std::string_view(t).substr(i + 1, e - i - 1));
    if (!item.empty()) out.push_back(item);
    i = e + 1;
  }
  return out;
}

class PadchestSource : public ItemSource {
 public:
  explicit PadchestSource(const AdapterOptions& o) : csv_(o.label_file) {
    root_ = o.root.empty() ? parent_folder(o.label_file) : o.root;
    image_ = csv_.require_column("ImageID");
    dir_ = csv_.find_column("ImageDir");
    projection_ = csv_.find_column("Projection");
    sex_ = csv_.find_column("PatientSex_DICOM");
    birth_ = csv_.find_column("PatientBirth");
    date_ = csv_.find_column("StudyDate_DICOM");
    patient_ = csv_.find_column("PatientID");
    study_ = csv_.find_column("StudyID");
    labels_ = csv_.require_column("Labels");
  }

  bool next(IngestItem& item) override {
    if (!csv_.next(row_)) return false;
    const std::string where = csv_.where();
    item = IngestItem{};
    const std::string name = util::trim(row_[image_]);
    if (name.empty()) throw Error(at(where, "empty ImageID"));
    item.key = sanitize_key(file_stem(name), where);
    item.origin = where;
    std::string rel = inside_root(name, where, "ImageID");
    if (dir_ >= 0) {
      std::string d = util::trim(row_[dir_]);
      if (!d.empty() && d.find('.') != std::string::npos) {  // pandas wrote 12.0
        if (auto v = parse_optional_number(d, where + ": ImageDir")) d = std::to_string(static_cast<long long>(*v));
      }
      if (!d.empty() && is_dir(join_path(root_, inside_root(d, where, "ImageDir")))) rel = d + "/" + name;
    }
    item.image_path = join_path(root_, rel);
    auto& m = item.meta;
    m["dataset"] = "padchest";
    m["source"] = rel;
    m["origin"] = where;
    if (patient_ >= 0 && !util::trim(row_[patient_]).empty()) m["patient"] = util::trim(row_[patient_]);
    if (study_ >= 0 && !util::trim(row_[study_]).empty()) m["study"] = util::trim(row_[study_]);
    if (projection_ >= 0) {
      std::string v = util::upper(util::trim(row_[projection_]));
      if (v == "L") v = "LATERAL";
      if (!v.empty()) m["view"] = v;
    }
    if (sex_ >= 0) {
      if (auto s = parse_sex(row_[sex_])) m["sex"] = *s;
    }
    if (birth_ >= 0 && date_ >= 0) {
      // Birth year (e.g. "1936.0") and study date YYYYMMDD: the age in years, to within one.
      auto b = parse_age_year(row_[birth_]);
      std::string d = util::trim(row_[date_]);
      if (b && d.size() >= 4) {
        int y = std::atoi(d.substr(0, 4).c_str());
        if (y > *b && y - *b < 130) m["age"] = y - *b;
      }
    }
    std::vector<std::string> findings = parse_python_list(row_[labels_], where);
    nlohmann::json labels = nlohmann::json::object();
    for (const auto& f : findings) labels[f] = 1;
    m["findings"] = findings;
    m["labels"] = labels;
    return true;
  }

  std::string dataset() const override { return "padchest"; }

 private:
  static std::optional<int> parse_age_year(const std::string& s) {
    std::string t = util::trim(s);
    if (t.empty()) return std::nullopt;
    char* end = nullptr;
    double v = std::strtod(t.c_str(), &end);
    if (end == t.c_str() || v < 1850 || v > 2100) return std::nullopt;
    return static_cast<int>(v);
  }

  CsvReader csv_;
  std::string root_;
  int image_, dir_, projection_, sex_, birth_, date_, patient_, study_, labels_;
  std::vector<std::string> row_;
};

}  // namespace

std::unique_ptr<ItemSource> open_padchest(const AdapterOptions& options) {
  return std::make_unique<PadchestSource>(options);
}

}  // namespace cx::data::detail
