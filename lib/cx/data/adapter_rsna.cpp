// RSNA Pneumonia Detection Challenge: stage_2_train_labels.csv (patientId,x,y,width,height,Target),
// one row per box or one row with blank box for negatives. One record per patientId (first
// appearance order) with all its boxes; label Pneumonia = Target. Images are <patientId>.dcm in
// the root, which defaults to the label file's folder's stage_2_train_images/ when that exists.
// stage_2_detailed_class_info.csv beside the labels adds the three-way "class".
#include <memory>
#include <unordered_map>

#include "cx/cli/error.hpp"
#include "cx/data/adapter_common.hpp"
#include "cx/util/strings.hpp"

namespace cx::data::detail {

namespace {

struct Patient {
  std::string origin;
  int target = -1;
  nlohmann::json boxes = nlohmann::json::array();
};

class RsnaSource : public ItemSource {
 public:
  explicit RsnaSource(const AdapterOptions& o) : set_(load_label_set("rsna")) {
    const std::string dir = parent_folder(o.label_file);
    if (!o.root.empty()) root_ = o.root;
    else if (is_dir(join_path(dir, "stage_2_train_images"))) root_ = join_path(dir, "stage_2_train_images");
    else root_ = dir;
    CsvReader csv(o.label_file);
    int id = csv.require_column("patientId"), x = csv.require_column("x"), y = csv.require_column("y"),
        w = csv.require_column("width"), h = csv.require_column("height"), t = csv.require_column("Target");
    std::vector<std::string> r;
    while (csv.next(r)) {
      const std::string where = csv.where();
      std::string pid = util::trim(r[id]);
      if (pid.empty()) throw Error(at(where, "empty patientId"));
      auto [it, fresh] = index_.emplace(pid, order_.size());
      if (fresh) {
        order_.push_back(pid);
        patients_.push_back(Patient{where});
      }
      Patient& p = patients_[it->second];
      std::string ts = util::trim(r[t]);
      int target = ts == "1" ? 1 : ts == "0" ? 0 : -1;
      if (target < 0) throw Error(at(where, "Target '" + ts + "' is not 0 or 1"));
      if (p.target >= 0 && p.target != target) throw Error(at(where, "patientId " + pid + " has Target 0 and 1"));
      p.target = target;
      auto bx = parse_optional_number(r[x], where + ": x"), by = parse_optional_number(r[y], where + ": y"),
           bw = parse_optional_number(r[w], where + ": width"), bh = parse_optional_number(r[h], where + ": height");
      if (bx && by && bw && bh) {
        if (target != 1) throw Error(at(where, "a box on a row with Target 0"));
        p.boxes.push_back({{"label", "Pneumonia"}, {"x", *bx}, {"y", *by}, {"width", *bw}, {"height", *bh}});
      } else if (bx || by || bw || bh) {
        throw Error(at(where, "box with some of x, y, width, height blank"));
      } else if (target == 1) {
        throw Error(at(where, "Target 1 without a box"));
      }
    }
    if (std::string f = find_sibling(dir, "stage_2_detailed_class_info.csv"); !f.empty()) {
      CsvReader c(f);
      int pid = c.require_column("patientId"), cls = c.require_column("class");
      while (c.next(r)) classes_[util::trim(r[pid])] = util::trim(r[cls]);
    }
  }

  bool next(IngestItem& item) override {
    if (i_ >= order_.size()) return false;
    const std::string& pid = order_[i_];
    Patient& p = patients_[i_];
    ++i_;
    item = IngestItem{};
    item.key = sanitize_key(pid, p.origin);
    item.image_path = join_path(root_, inside_root(pid, p.origin, "patientId") + ".dcm");
    item.origin = p.origin;
    auto& m = item.meta;
    m["dataset"] = "rsna";
    m["source"] = pid + ".dcm";
    m["origin"] = p.origin;
    m["patient"] = pid;
    m["labels"] = labels_json(set_, {p.target == 1 ? LabelValue::positive : LabelValue::negative});
    m["boxes"] = std::move(p.boxes);
    if (auto it = classes_.find(pid); it != classes_.end()) m["class"] = it->second;
    return true;
  }

  std::string dataset() const override { return "rsna"; }
  const LabelSet* label_set() const override { return &set_; }

 private:
  LabelSet set_;
  std::string root_;
  std::vector<std::string> order_;
  std::vector<Patient> patients_;
  std::unordered_map<std::string, std::size_t> index_;
  std::unordered_map<std::string, std::string> classes_;
  std::size_t i_ = 0;
};

}  // namespace

std::unique_ptr<ItemSource> open_rsna(const AdapterOptions& options) { return std::make_unique<RsnaSource>(options); }

}  // namespace cx::data::detail
