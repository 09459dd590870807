// NIH ChestX-ray14 (Wang et al. 2017): Data_Entry_2017*.csv with pipe-joined `Finding Labels`
// ("Cardiomegaly|Effusion", "No Finding"). Labels are binary: a finding not listed is negative,
// since the NLP labeler reports every finding it found. Images are looked up, in this order, in
// the root, root/images, root/images_NNN and root/images_NNN/images (the Kaggle and Box layouts).
// Beside the label file, train_val_list.txt / test_list.txt give the split and
// BBox_List_2017.csv(.gz) the boxes of the 984 annotated images.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <unordered_map>
#include <unordered_set>

#include "cx/cli/error.hpp"
#include "cx/data/adapter_common.hpp"
#include "cx/util/strings.hpp"

namespace cx::data::detail {

namespace {

namespace fs = std::filesystem;

std::unordered_set<std::string> read_name_list(const std::string& path) {
  std::unordered_set<std::string> names;
  std::ifstream f(path);
  std::string line;
  while (std::getline(f, line)) {
    std::string t = util::trim(line);
    if (!t.empty()) names.insert(t);
  }
  return names;
}

class NihSource : public ItemSource {
 public:
  explicit NihSource(const AdapterOptions& o) : csv_(o.label_file), set_(load_label_set("nih14")) {
    const std::string dir = parent_folder(o.label_file);
    root_ = o.root.empty() ? dir : o.root;
    image_ = csv_.require_column("Image Index");
    findings_ = csv_.require_column("Finding Labels");
    patient_ = csv_.find_column("Patient ID");
    age_ = csv_.find_column("Patient Age");
    sex_ = csv_.find_column("Patient Gender");
    view_ = csv_.find_column("View Position");
    follow_ = csv_.find_column("Follow-up #");
    // The header's "OriginalImage[Width,Height]" is unquoted, so it spans two columns.
    width_ = csv_.find_column("OriginalImage[Width");
    height_ = csv_.find_column("Height]");
    spacing_x_ = csv_.find_column("OriginalImagePixelSpacing[x");
    spacing_y_ = csv_.find_column("y]");

    search_.push_back(root_);
    std::vector<std::string> extra;
    std::error_code ec;
    if (is_dir(root_)) {
      for (fs::directory_iterator it(root_, ec), end; !ec && it != end; it.increment(ec)) {
        std::string name = it->path().filename().string();
        if (util::starts_with(name, "images") && it->is_directory(ec)) {
          extra.push_back(it->path().string());
          if (is_dir(join_path(it->path().string(), "images"))) extra.push_back(join_path(it->path().string(), "images"));
        }
      }
    }
    std::sort(extra.begin(), extra.end());
    search_.insert(search_.end(), extra.begin(), extra.end());

    if (std::string tv = join_path(dir, "train_val_list.txt"), te = join_path(dir, "test_list.txt");
        is_file(tv) && is_file(te)) {
      train_ = read_name_list(tv);
      test_ = read_name_list(te);
      have_split_ = true;
    }
    if (std::string bb = find_sibling(dir, "BBox_List_2017.csv"); !bb.empty()) read_boxes(bb);
  }

  bool next(IngestItem& item) override {
    if (!csv_.next(row_)) return false;
    const std::string where = csv_.where();
    item = IngestItem{};
    const std::string name = util::trim(row_[image_]);
    if (name.empty()) throw Error(at(where, "empty Image Index"));
    inside_root(name, where, "Image Index");
    item.key = sanitize_key(file_stem(name), where);
    item.origin = where;
    item.image_path = locate(name);
    auto& m = item.meta;
    m["dataset"] = "nih";
    m["source"] = name;
    m["origin"] = where;
    if (patient_ >= 0) m["patient"] = util::trim(row_[patient_]);
    if (follow_ >= 0) {
      if (auto f = parse_age(row_[follow_])) m["follow_up"] = *f;
    }
    if (sex_ >= 0) {
      if (auto s = parse_sex(row_[sex_])) m["sex"] = *s;
    }
    if (age_ >= 0) {
      if (auto a = parse_age(row_[age_])) m["age"] = *a;
    }
    if (view_ >= 0) {
      std::string v = util::upper(util::trim(row_[view_]));
      if (!v.empty()) m["view"] = v;
    }
    if (have_split_) {
      if (train_.count(name)) m["split"] = "train";
      else if (test_.count(name)) m["split"] = "test";
    }
    if (width_ >= 0 && height_ >= 0 && spacing_x_ >= 0 && spacing_y_ >= 0) {
      auto w = parse_optional_number(row_[width_], where + ": OriginalImage[Width");
      auto h = parse_optional_number(row_[height_], where + ": Height]");
      auto sx = parse_optional_number(row_[spacing_x_], where + ": OriginalImagePixelSpacing[x");
      auto sy = parse_optional_number(row_[spacing_y_], where + ": y]");
      if (w && h && sx && sy)
        m["acquisition"] = {{"width", static_cast<int>(*w)}, {"height", static_cast<int>(*h)},
                            {"pixel_spacing", {*sy, *sx}}};
    }

    std::vector<LabelValue> values(set_.classes.size(), LabelValue::negative);
    const std::string& f = row_[findings_];
    bool no_finding = false;
    for (std::size_t b = 0; b <= f.size();) {
      std::size_t e = f.find('|', b);
      if (e == std::string::npos) e = f.size();
      std::string cls = util::trim(std::string_view(f).substr(b, e - b));
      b = e + 1;
      if (cls.empty()) continue;
      if (cls == "No Finding") {
        no_finding = true;
        continue;
      }
      int i = set_.index(cls);
      if (i < 0) throw Error(at(where, "Finding Labels: unknown finding '" + cls + "' (not one of nih14)"));
      values[i] = LabelValue::positive;
    }
    if (no_finding && std::count(values.begin(), values.end(), LabelValue::positive) > 0)
      throw Error(at(where, "Finding Labels: 'No Finding' together with findings: " + f));
    m["labels"] = labels_json(set_, values);
    if (auto it = boxes_.find(name); it != boxes_.end()) m["boxes"] = it->second;
    return true;
  }

  std::string dataset() const override { return "nih"; }
  const LabelSet* label_set() const override { return &set_; }

 private:
  std::string locate(const std::string& name) const {
    for (const auto& dir : search_) {
      std::string p = join_path(dir, name);
      if (is_file(p)) return p;
    }
    return join_path(search_.size() > 1 ? search_[1] : root_, name);  // named in the error
  }

  void read_boxes(const std::string& path) {
    CsvReader bb(path);
    // Header: Image Index,Finding Label,Bbox [x,y,w,h],,, : the four numbers follow the label.
    int img = bb.require_column("Image Index"), lab = bb.require_column("Finding Label");
    int x = bb.require_column("Bbox [x");
    std::vector<std::string> r;
    while (bb.next(r)) {
      if (static_cast<std::size_t>(x + 3) >= r.size()) throw Error(at(bb.where(), "box row too short"));
      std::string label = util::trim(r[lab]);
      if (label == "Infiltrate") label = "Infiltration";  // the box file's spelling of the class
      nlohmann::json box = {{"label", label}};
      const char* names[] = {"x", "y", "width", "height"};
      for (int k = 0; k < 4; ++k) {
        auto v = parse_optional_number(r[x + k], bb.where());
        if (!v) throw Error(at(bb.where(), "box value missing"));
        box[names[k]] = *v;
      }
      boxes_[util::trim(r[img])].push_back(box);
    }
  }

  CsvReader csv_;
  LabelSet set_;
  std::string root_;
  std::vector<std::string> search_;
  int image_, findings_, patient_, age_, sex_, view_, follow_, width_, height_, spacing_x_, spacing_y_;
  bool have_split_ = false;
  std::unordered_set<std::string> train_, test_;
  std::unordered_map<std::string, nlohmann::json> boxes_;
  std::vector<std::string> row_;
};

}  // namespace

std::unique_ptr<ItemSource> open_nih(const AdapterOptions& options) { return std::make_unique<NihSource>(options); }

}  // namespace cx::data::detail
