// CheXmask (Gaggion et al. 2024): one CSV per source dataset, one row per image, with an image
// id column whose name depends on the dataset (Path for CheXpert, dicom_id for MIMIC-CXR-JPG,
// Image Index for ChestX-ray8, ImageID for PadChest, image_id for VinDr-CXR: the first column
// that is not one of CheXmask's own), then `Dice RCA (Mean)`, `Dice RCA (Max)`, `Landmarks`,
// `Left Lung`, `Right Lung`, `Heart` (RLE, cx/data/rle.hpp) and `Height`, `Width` of the mask.
// The mask becomes a label map (0 background, 1 left lung, 2 right lung, 3 heart, heart painted
// last), written as <key>.mask.png at the size of the written image (nearest neighbour).
// Images: an id holding a '/' is a path under the root; any other id is looked up by file name,
// then by stem, among the image files found under the root (walked once, recursively). The root
// defaults to the CSV's folder.
#include <memory>
#include <set>
#include <unordered_map>

#include "cx/cli/error.hpp"
#include "cx/data/adapter_common.hpp"
#include "cx/util/strings.hpp"

namespace cx::data::detail {

namespace {

class ChexmaskSource : public ItemSource {
 public:
  explicit ChexmaskSource(const AdapterOptions& o) : csv_(o.label_file) {
    root_ = o.root.empty() ? parent_folder(o.label_file) : o.root;
    left_ = csv_.require_column("Left Lung");
    right_ = csv_.require_column("Right Lung");
    heart_ = csv_.require_column("Heart");
    height_ = csv_.require_column("Height");
    width_ = csv_.require_column("Width");
    dice_mean_ = csv_.find_column("Dice RCA (Mean)");
    dice_max_ = csv_.find_column("Dice RCA (Max)");
    static const std::set<std::string> own = {"Dice RCA (Mean)", "Dice RCA (Max)", "Landmarks", "Left Lung",
                                              "Right Lung", "Heart", "Height", "Width"};
    for (std::size_t i = 0; i < csv_.columns().size(); ++i) {
      const std::string& c = csv_.columns()[i];
      // pandas' unnamed index column ("" or "Unnamed: 0") is not an id either
      if (own.count(c) || util::trim(c).empty() || util::starts_with(c, "Unnamed")) continue;
      id_ = static_cast<int>(i);
      break;
    }
    if (id_ < 0) throw Error(at(o.label_file, "no image id column (expected e.g. Path, dicom_id, Image Index, ImageID, image_id)"));
  }

  bool next(IngestItem& item) override {
    if (!csv_.next(row_)) return false;
    const std::string where = csv_.where();
    item = IngestItem{};
    const std::string id = util::trim(row_[id_]);
    if (id.empty()) throw Error(at(where, "empty " + csv_.columns()[id_]));
    inside_root(id, where, csv_.columns()[id_]);
    item.origin = where;
    auto& m = item.meta;
    m["dataset"] = "chexmask";
    m["origin"] = where;
    m["source"] = id;
    if (id.find('/') != std::string::npos) {
      item.image_path = join_path(root_, id);
      item.key = sanitize_key(strip_extension(id), where);
    } else {
      item.image_path = locate(id);
      item.key = sanitize_key(file_stem(id) == id ? id : file_stem(id), where);
    }
    MaskRle mask;
    auto h = parse_optional_number(row_[height_], where + ": Height");
    auto w = parse_optional_number(row_[width_], where + ": Width");
    if (!h || !w || *h < 1 || *w < 1 || *h > 65535 || *w > 65535 || *h != static_cast<int>(*h) || *w != static_cast<int>(*w))
      throw Error(at(where, "Height/Width '" + row_[height_] + "'/'" + row_[width_] + "' is not a mask size"));
    mask.height = static_cast<int>(*h);
    mask.width = static_cast<int>(*w);
    mask.left_lung = std::move(row_[left_]);
    mask.right_lung = std::move(row_[right_]);
    mask.heart = std::move(row_[heart_]);
    item.mask = ItemMask{std::move(mask), classes_};
    if (dice_mean_ >= 0) {
      if (auto d = parse_optional_number(row_[dice_mean_], where + ": Dice RCA (Mean)")) m["dice_rca_mean"] = *d;
    }
    if (dice_max_ >= 0) {
      if (auto d = parse_optional_number(row_[dice_max_], where + ": Dice RCA (Max)")) m["dice_rca_max"] = *d;
    }
    return true;
  }

  std::string dataset() const override { return "chexmask"; }
  bool has_masks() const override { return true; }
  std::vector<std::string> mask_classes() const override { return *classes_; }

 private:
  std::string locate(const std::string& id) {
    if (std::string p = join_path(root_, id); is_file(p)) return p;
    if (!indexed_) {
      indexed_ = true;
      if (is_dir(root_)) {
        for (auto& f : list_image_files(root_)) {
          std::string name = f.substr(f.find_last_of('/') + 1);
          by_name_.emplace(name, f);
          by_stem_.emplace(file_stem(name), f);
        }
      }
    }
    if (auto it = by_name_.find(id); it != by_name_.end()) return it->second;
    if (auto it = by_stem_.find(id); it != by_stem_.end()) return it->second;
    return join_path(root_, id);  // named in the decoder's error
  }

  CsvReader csv_;
  std::string root_;
  int id_ = -1, left_, right_, heart_, height_, width_, dice_mean_, dice_max_;
  bool indexed_ = false;
  std::unordered_map<std::string, std::string> by_name_, by_stem_;
  std::vector<std::string> row_;
  // The values of chexmask_label_map (cx/data/rle.hpp).
  std::shared_ptr<const std::vector<std::string>> classes_ =
      std::make_shared<const std::vector<std::string>>(std::vector<std::string>{"background", "left lung", "right lung", "heart"});
};

}  // namespace

std::unique_ptr<ItemSource> open_chexmask(const AdapterOptions& options) {
  return std::make_unique<ChexmaskSource>(options);
}

}  // namespace cx::data::detail
