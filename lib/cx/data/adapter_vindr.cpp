// VinDr-CXR (Nguyen et al. 2022), the Kaggle train.csv (image_id,class_name,class_id,rad_id,
// x_min,y_min,x_max,y_max) or PhysioNet's annotations_*.csv (no class_id): one row per finding
// per radiologist, "No finding" rows without a box. One record per image_id, first-appearance
// order, with
//   votes:  {rad_id: [class names]} (each radiologist's image-level reading, kept as given),
//   labels: the majority label per class of the vindr set: positive when more than half of the
//           radiologists who read the image named it, else negative,
//   boxes:  every box with its class and rad_id (pixel coordinates of the original image).
// Or PhysioNet's image-level annotations/image_labels_{train,test}.csv: one row per image per
// radiologist (rad_ID; the test set's consensus rows may have none), a 0/1 column per label, the
// 22 local and 6 global labels (Tuberculosis, Pneumonia, COPD, ...) of VinDr-CXR 1.0.0. Then the
// label set is the file's own columns, votes hold each reading's positive labels, labels the
// majority per column, and there are no boxes.
// Images: <root>/<image_id>.dicom, .dcm or .png (first that exists); the root defaults to the
// split's folder (train/ or test/, by the file name) beside the label file or beside its folder
// (PhysioNet's annotations/ and train/), else the label file's folder.
#include <algorithm>
#include <map>
#include <memory>
#include <set>
#include <unordered_map>

#include "cx/cli/error.hpp"
#include "cx/cli/log.hpp"
#include "cx/data/adapter_common.hpp"
#include "cx/util/strings.hpp"

namespace cx::data::detail {

namespace {

struct VindrImage {
  std::string origin;
  std::map<std::string, std::set<std::string>> votes;  // rad_id -> classes
  nlohmann::json boxes = nlohmann::json::array();
};

class VindrSource : public ItemSource {
 public:
  explicit VindrSource(const AdapterOptions& o) : set_(load_label_set("vindr")) {
    const std::string dir = parent_folder(o.label_file);
    const std::string name = o.label_file.substr(o.label_file.find_last_of('/') + 1);
    const std::string split = name.find("test") != std::string::npos ? "test" : "train";
    const std::string base = dir.substr(dir.find_last_of('/') + 1);
    const std::string up = base == "." || base == ".." ? join_path(dir, "..") : parent_folder(dir);
    if (!o.root.empty()) root_ = o.root;
    else if (is_dir(join_path(dir, split))) root_ = join_path(dir, split);
    else if (is_dir(join_path(up, split))) root_ = join_path(up, split);
    else root_ = dir;
    CsvReader csv(o.label_file);
    if (csv.find_column("class_name") < 0 && csv.find_column("image_id") >= 0 && csv.find_column("x_min") < 0) {
      read_image_labels(csv);
      return;
    }
    int id = csv.require_column("image_id"), cls = csv.require_column("class_name");
    int rad = csv.find_column("rad_id");
    if (rad < 0) rad = csv.require_column("rad_ID");
    int x0 = csv.require_column("x_min"), y0 = csv.require_column("y_min"), x1 = csv.require_column("x_max"),
        y1 = csv.require_column("y_max");
    std::vector<std::string> r;
    std::set<std::string> unknown;
    while (csv.next(r)) {
      const std::string where = csv.where();
      VindrImage& im = image_of(r[id], where);
      std::string c = util::trim(r[cls]), rid = util::trim(r[rad]);
      if (rid.empty()) throw Error(at(where, "empty rad_id"));
      if (set_.index(c) < 0) unknown.insert(c);
      im.votes[rid].insert(c);
      auto a = parse_optional_number(r[x0], where + ": x_min"), b = parse_optional_number(r[y0], where + ": y_min"),
           cc = parse_optional_number(r[x1], where + ": x_max"), d = parse_optional_number(r[y1], where + ": y_max");
      if (a && b && cc && d) {
        im.boxes.push_back({{"label", c}, {"rad_id", rid}, {"x", *a}, {"y", *b}, {"width", *cc - *a}, {"height", *d - *b}});
      } else if (a || b || cc || d) {
        throw Error(at(where, "box with some of x_min, y_min, x_max, y_max blank"));
      }
    }
    for (const auto& u : unknown) log::debug(o.label_file + ": class '" + u + "' is not in the vindr label set: kept in votes only");
  }

  bool next(IngestItem& item) override {
    if (i_ >= order_.size()) return false;
    const std::string& image = order_[i_];
    VindrImage& im = images_[i_];
    ++i_;
    item = IngestItem{};
    item.key = sanitize_key(image, im.origin);
    item.image_path = locate(inside_root(image, im.origin, "image_id"));
    item.origin = im.origin;
    auto& m = item.meta;
    m["dataset"] = "vindr";
    m["source"] = item.image_path.substr(item.image_path.find_last_of('/') + 1);
    m["origin"] = im.origin;
    nlohmann::json votes = nlohmann::json::object();
    std::vector<int> count(set_.classes.size(), 0);
    for (const auto& [rid, classes] : im.votes) {
      votes[rid] = nlohmann::json(std::vector<std::string>(classes.begin(), classes.end()));
      for (const auto& c : classes)
        if (int k = set_.index(c); k >= 0) ++count[k];
    }
    const int readers = static_cast<int>(im.votes.size());
    std::vector<LabelValue> values(set_.classes.size());
    for (std::size_t k = 0; k < values.size(); ++k)
      values[k] = 2 * count[k] > readers ? LabelValue::positive : LabelValue::negative;
    m["votes"] = std::move(votes);
    m["readers"] = readers;
    m["labels"] = labels_json(set_, values);
    m["boxes"] = std::move(im.boxes);
    return true;
  }

  std::string dataset() const override { return "vindr"; }
  const LabelSet* label_set() const override { return &set_; }

 private:
  // The image of a row's image_id, added in first-seen order (its first row is where it is named).
  VindrImage& image_of(const std::string& cell, const std::string& where) {
    const std::string image = util::trim(cell);
    if (image.empty()) throw Error(at(where, "empty image_id"));
    auto [it, fresh] = index_.emplace(image, order_.size());
    if (fresh) {
      order_.push_back(image);
      images_.push_back(VindrImage{where, {}, nlohmann::json::array()});
    }
    return images_[it->second];
  }

  // The wide form: image_id, rad_ID (optional), then one 0/1 column per label.
  void read_image_labels(CsvReader& csv) {
    const int id = csv.require_column("image_id");
    int rad = csv.find_column("rad_ID");
    if (rad < 0) rad = csv.find_column("rad_id");
    std::vector<int> label_columns;
    set_ = LabelSet{};
    set_.name = "vindr-image";
    for (int c = 0; c < static_cast<int>(csv.columns().size()); ++c) {
      if (c == id || c == rad) continue;
      const std::string label = util::trim(csv.columns()[c]);
      if (label.empty()) throw Error(csv.path() + ": a label column without a name (column " + std::to_string(c + 1) + ")");
      if (set_.index(label) >= 0) throw Error(csv.path() + ": label column '" + label + "' appears twice");
      set_.classes.push_back(label);
      label_columns.push_back(c);
    }
    if (label_columns.empty()) throw Error(csv.path() + ": no label columns besides image_id");
    std::vector<std::string> r;
    while (csv.next(r)) {
      const std::string where = csv.where();
      VindrImage& im = image_of(r[id], where);
      const std::string rid = rad >= 0 ? util::trim(r[rad]) : std::string("consensus");
      if (rid.empty()) throw Error(at(where, "empty rad_ID"));
      auto& reading = im.votes[rid];  // a reading with no positive label is still a reader
      for (std::size_t k = 0; k < label_columns.size(); ++k) {
        const std::string v = util::trim(r[label_columns[k]]);
        if (v == "1" || v == "1.0") reading.insert(set_.classes[k]);
        else if (v != "0" && v != "0.0")
          throw Error(at(where, set_.classes[k] + ": '" + v + "' is not 0 or 1"));
      }
    }
  }

  std::string locate(const std::string& image) const {
    for (const char* ext : {".dicom", ".dcm", ".png"}) {
      std::string p = join_path(root_, image + ext);
      if (is_file(p)) return p;
    }
    return join_path(root_, image + ".dicom");
  }

  LabelSet set_;
  std::string root_;
  std::vector<std::string> order_;
  std::vector<VindrImage> images_;
  std::unordered_map<std::string, std::size_t> index_;
  std::size_t i_ = 0;
};

}  // namespace

std::unique_ptr<ItemSource> open_vindr(const AdapterOptions& options) { return std::make_unique<VindrSource>(options); }

}  // namespace cx::data::detail
