#pragma once
// Dataset adapters: a dataset's label file as it was downloaded (+ the image root) turned into a
// sequence of IngestItems, one per image, in label-file order. cx-ingest decodes each item's
// image and writes one record per item (man 1 cx-ingest lists every layout).
//
// Contract:
// - Sources are pulled one item at a time; label files are read sequentially (plain or .gz), so
//   memory grows with the label file only where a dataset must be grouped (rsna, vindr: per
//   image; mimic: the chexpert and split tables, joined by subject/study).
// - Record keys are unique within a dataset, contain no '.' or '/' (the stream's key rule) and
//   are stable: the same label file gives the same keys.
// - meta holds what the label file says: "dataset", "source" (the image path), "origin"
//   ("train.csv:12"), and when known "view" (upper case: PA, AP, LATERAL, LL ...), "sex" (M/F),
//   "age" (years), "split", "labels" (coded as cx/data/labels.hpp says), "boxes" (pixel
//   coordinates of the original image, [{"label", "x", "y", "width", "height"[, "rad_id"]}]).
// - A malformed label file (missing column, bad label cell) throws cx::Error naming file:line.
//   A missing image is not the adapter's business: the decoder reports it per item.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "cx/data/labels.hpp"
#include "cx/image/image.hpp"

namespace cx::data {

// A CheXmask row's three structures, kept encoded until a decode worker needs the label map.
struct MaskRle {
  int height = 0;
  int width = 0;
  std::string left_lung, right_lung, heart;
  Image decode(const std::string& where) const;  // chexmask_label_map (cx/data/rle.hpp)
};

// A mask image beside the radiograph (cx-ingest --masks), read by the decode worker: the first of
// `candidates` that exists. It must have the decoded image's size.
struct MaskFile {
  std::vector<std::string> candidates;
  std::optional<int> threshold;  // value >= threshold -> 1, else 0; none: the 8-bit gray values are the labels
  int max_label = -1;            // a value above it is an error (values named by the classes); -1: no check
};

// An item's label map, still encoded (a CheXmask row) or unread (a mask file).
struct ItemMask {
  std::variant<MaskRle, MaskFile> source;
  // Names of the values 0, 1, ... ("background" first), shared by every item of a source; null
  // when the values are not named.
  std::shared_ptr<const std::vector<std::string>> classes;
};

struct IngestItem {
  std::string key;         // record key
  std::string image_path;  // DICOM, PNG or JPEG file to decode
  std::string origin;      // where the item came from, for messages: "train.csv:12"
  nlohmann::json meta = nlohmann::json::object();
  std::optional<ItemMask> mask;       // written as <key>.mask.png
  std::optional<std::string> report;  // written as <key>.txt
};

// The label map of item.mask (which must be set), 8-bit, at the size the mask source gives it,
// with what the record's "mask" entry says about its source ("source", "threshold" for files).
// Errors name the item's image (a mask file: the paths tried, a 16-bit/RGB file without a
// threshold, a value no class names) or its label row (a bad RLE).
struct LabelMap {
  Image map;
  nlohmann::json about = nlohmann::json::object();
  bool sized_like_image = false;  // true: must match the decoded image's size (mask files)
};
LabelMap read_label_map(const IngestItem& item);

struct AdapterOptions {
  std::string label_file;  // the dataset's label file (folder and reports: a folder or file)
  std::string root;        // image root; empty: inferred from the label file's place
  std::string labels_tsv;  // folder: optional key<TAB>label... table
  std::string reports;     // mimic: a mimic-cxr-reports tree (files/pXX/pSUBJECT/sSTUDY.txt)
};

class ItemSource {
 public:
  virtual ~ItemSource() = default;
  // The next item; false at the end.
  virtual bool next(IngestItem& item) = 0;
  virtual std::string dataset() const = 0;
  // The label set of the records' "labels", or nullptr when there is none (or it is open, as
  // PadChest's is).
  virtual const LabelSet* label_set() const { return nullptr; }
  virtual bool has_masks() const { return false; }
  // Names of the mask values 0, 1, ... ("background" first); empty when they are not named.
  virtual std::vector<std::string> mask_classes() const { return {}; }
  virtual bool has_reports() const { return false; }
};

// chexpert, nih, mimic, rsna, vindr, padchest, chexmask, folder, reports.
const std::vector<std::string>& dataset_names();
// Throws cx::UsageError for an unknown name, cx::Error for an unreadable label file.
std::unique_ptr<ItemSource> open_dataset(const std::string& name, const AdapterOptions& options);
// Files and folders named on the command line: folders are walked recursively for DICOM, PNG
// and JPEG files (sorted by path); each file is one item keyed by its file-name stem (dots
// become '_'). Two inputs with the same key throw cx::Error naming both.
std::unique_ptr<ItemSource> open_files(const std::vector<std::string>& paths);

// cx-ingest --masks: every item of `source` gets the mask file named after its image file's stem
// in `dir`: <stem>_mask.png, <stem>.mask.png or <stem>.png, the first that exists (PNG only; looked
// up and read by the decode worker, so a missing one is that item's bad input).
struct MaskFileOptions {
  std::string dir;
  std::optional<int> threshold;      // binarise (value >= threshold -> 1) for anti-aliased 0/255 masks
  std::vector<std::string> classes;  // names of the values 1..n; empty: "foreground" with a
                                     // threshold, else the values are not named (nor checked)
};
// Throws cx::UsageError for a source with masks of its own (chexmask), for more than one class
// name with a threshold, and (from next) for an item read from standard input.
std::unique_ptr<ItemSource> with_mask_files(std::unique_ptr<ItemSource> source, const MaskFileOptions& options);
// The candidate mask paths for an image, in the order they are tried.
std::vector<std::string> mask_file_candidates(const std::string& dir, const std::string& image_path);

// Building blocks shared by the adapters (exposed for the tests).

// A record key from free text: '.', '/', '\\' and whitespace become '_'; throws on an empty key.
std::string sanitize_key(std::string key, const std::string& where);
// True for names cx-ingest decodes: .dcm .dicom .dic (any case), .png, .jpg, .jpeg, and
// extension-less files that start with a DICOM preamble ("DICM" at byte 128).
bool looks_like_image_file(const std::string& path);
// Every image file under `dir` (recursive, symlinks to files followed), sorted by path.
std::vector<std::string> list_image_files(const std::string& dir);
// The report text split into its FINDINGS and IMPRESSION sections: {"findings": ...,
// "impression": ...} (keys only for sections present). MIMIC-CXR free-text reports.
nlohmann::json mimic_report_sections(const std::string& text);
// The text cx-ingest stores in <key>.txt: "FINDINGS: ...\n\nIMPRESSION: ...\n" from the sections
// present, or the whole report (trimmed) when neither section is there.
std::string report_text(const nlohmann::json& sections, const std::string& whole);

}  // namespace cx::data
