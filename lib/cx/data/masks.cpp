// Items' label maps (cx/data/adapters.hpp): CheXmask RLE rows and mask files found by cx-ingest
// --masks, both turned into an 8-bit label map by the decode worker (read_label_map).
#include <memory>
#include <sstream>
#include <utility>

#include "cx/cli/error.hpp"
#include "cx/cli/names.hpp"
#include "cx/data/adapter_common.hpp"
#include "cx/io/file_bytes.hpp"
#include "cx/io/png.hpp"

namespace cx::data {

using namespace detail;

namespace {

// A mask file's samples as labels: binarised at the threshold (RGB first made gray with Pillow's
// "L" weights), or the 8-bit gray values as they are.
Image mask_labels(const Image& in, const MaskFile& f, const std::string& path) {
  Image out = Image::gray8(in.width, in.height);
  std::uint8_t* d = out.u8();
  const std::size_t n = out.samples();
  if (!f.threshold) {
    if (in.bits != 8 || in.channels != 1)
      throw Error(at(path, std::string("mask is ") + (in.channels == 3 ? "RGB" : "16-bit gray") +
                               ": label values must be 8-bit gray (or binarise it with --mask-threshold)"));
    std::copy(in.u8(), in.u8() + n, d);
    if (f.max_label >= 0) {
      for (std::size_t i = 0; i < n; ++i)
        if (d[i] > f.max_label) {
          std::ostringstream m;
          m << "mask value " << int(d[i]) << " at (" << i % in.width << ", " << i / in.width << ") is not one of 0.."
            << f.max_label << " (the classes named; an anti-aliased 0/255 mask needs --mask-threshold)";
          throw Error(at(path, m.str()));
        }
    }
    return out;
  }
  const unsigned t = static_cast<unsigned>(*f.threshold);
  auto gray = [&](std::size_t i) -> unsigned {
    if (in.channels == 1) return in.bits == 8 ? in.u8()[i] : in.u16()[i];
    unsigned r, g, b;
    if (in.bits == 8) r = in.u8()[3 * i], g = in.u8()[3 * i + 1], b = in.u8()[3 * i + 2];
    else r = in.u16()[3 * i], g = in.u16()[3 * i + 1], b = in.u16()[3 * i + 2];
    return (19595u * r + 38470u * g + 7471u * b + 0x8000u) >> 16;
  };
  for (std::size_t i = 0; i < n; ++i) d[i] = gray(i) >= t;
  return out;
}

LabelMap read_mask_file(const MaskFile& f, const std::string& image) {
  std::string path;
  for (const auto& c : f.candidates)
    if (is_file(c)) {
      path = c;
      break;
    }
  if (path.empty()) {
    std::string tried;
    for (const auto& c : f.candidates) tried += (tried.empty() ? "" : ", ") + c;
    throw Error(at(image, "no mask file (tried " + tried + ")"));
  }
  LabelMap m;
  m.map = mask_labels(io::decode_png(io::read_file_bytes(path), path), f, path);
  m.about = {{"source", path}, {"threshold", f.threshold ? nlohmann::json(*f.threshold) : nlohmann::json(nullptr)}};
  m.sized_like_image = true;
  return m;
}

class MaskFileSource : public ItemSource {
 public:
  MaskFileSource(std::unique_ptr<ItemSource> inner, const MaskFileOptions& o) : inner_(std::move(inner)), o_(o) {
    if (inner_->has_masks())
      throw UsageError("--masks: the " + inner_->dataset() + " dataset brings its own masks");
    if (o.threshold && o.classes.size() > 1)
      throw UsageError("--mask-threshold makes 0/1 masks: --mask-classes names one class, not " +
                       std::to_string(o.classes.size()));
    if (!is_dir(o.dir)) throw Error(at(o.dir, "not a folder (--masks)"));
    if (!o.classes.empty() || o.threshold) {
      std::vector<std::string> names{"background"};
      if (o.classes.empty()) names.push_back("foreground");
      names.insert(names.end(), o.classes.begin(), o.classes.end());
      classes_ = std::make_shared<const std::vector<std::string>>(std::move(names));
    }
  }
  bool next(IngestItem& item) override {
    if (!inner_->next(item)) return false;
    if (item.image_path == "-") throw UsageError("--masks: an image read from standard input has no file name to find its mask by");
    MaskFile f;
    f.candidates = mask_file_candidates(o_.dir, item.image_path);
    f.threshold = o_.threshold;
    if (classes_ && !o_.threshold) f.max_label = static_cast<int>(classes_->size()) - 1;
    item.mask = ItemMask{std::move(f), classes_};
    return true;
  }
  std::string dataset() const override { return inner_->dataset(); }
  const LabelSet* label_set() const override { return inner_->label_set(); }
  bool has_masks() const override { return true; }
  std::vector<std::string> mask_classes() const override { return classes_ ? *classes_ : std::vector<std::string>{}; }
  bool has_reports() const override { return inner_->has_reports(); }

 private:
  std::unique_ptr<ItemSource> inner_;
  MaskFileOptions o_;
  std::shared_ptr<const std::vector<std::string>> classes_;
};

}  // namespace

std::vector<std::string> mask_file_candidates(const std::string& dir, const std::string& image_path) {
  const std::string stem = file_stem(image_path);
  return {join_path(dir, stem + "_mask.png"), join_path(dir, stem + ".mask.png"), join_path(dir, stem + ".png")};
}

std::unique_ptr<ItemSource> with_mask_files(std::unique_ptr<ItemSource> source, const MaskFileOptions& options) {
  return std::make_unique<MaskFileSource>(std::move(source), options);
}

LabelMap read_label_map(const IngestItem& item) {
  const std::string image = cli::input_name(item.image_path);
  if (const auto* f = std::get_if<MaskFile>(&item.mask->source)) return read_mask_file(*f, image);
  LabelMap m;
  m.map = std::get<MaskRle>(item.mask->source).decode(item.origin.empty() ? image : item.origin);
  return m;
}

}  // namespace cx::data
