#pragma once
// What cx-ingest does to one item, and the order-keeping parallel loop around it.
//
// ingest_item: reads the item's file (DICOM, PNG or JPEG, told apart by their magic bytes; "-"
// is standard input), renders it to 8- or 16-bit gray, optionally equalises and resizes it, and
// builds the record:
//   <key>.png       the image (8- or 16-bit gray)
//   <key>.json      the item's meta plus "image" (size written, original size, pixel spacing of
//                   the written pixels, resize filter, equalisation), "intensity" (what was
//                   applied: cx/image/window.hpp's record) and for DICOM "dicom" (header facts)
//   <key>.mask.png  the item's label map (read_label_map), nearest-neighbour resampled to the
//                   written size; a mask file must have the decoded image's size. The json then
//                   holds "mask" (source, threshold, original size, "labels" by value) and, when
//                   the values are named, "classes" (as cx-phantom writes it)
//   <key>.txt       the item's report text
// Intensity: DICOM through cx::image::render_dicom (modality LUT, VOI, MONOCHROME1 inversion).
// PNG/JPEG: 8-bit gray is kept as it is (x257 for 16-bit output); 16-bit gray is min-max
// windowed like a DICOM without a window (radiograph PNGs rarely use the full 16 bits); RGB is
// first converted to gray with Pillow's "L" weights. --window (options.window) applies to all.
// Boxes in meta are scaled with the image, so they stay in the written pixels' coordinates.
// Errors (missing file, corrupt data, unsupported transfer syntax) throw cx::Error whose message
// names the file and, when the item came from a label file, its row.
#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include "cx/data/adapters.hpp"
#include "cx/image/resize.hpp"
#include "cx/io/stream.hpp"

namespace cx::data {

struct IngestOptions {
  int depth = 8;                                    // 8 or 16
  bool equalize = false;                            // histogram equalisation (cx/image/equalize.hpp)
  int size = 0;                                     // shorter side after resizing; 0 keeps the size
  image::Filter filter = image::Filter::bicubic;    // resize filter (masks: always nearest)
  std::optional<std::pair<double, double>> window;  // (center, width) override
  int png_compression = 1;                          // zlib level of the written PNGs
  bool keep_rgb = false;                            // 8-bit RGB PNG/JPEG stay RGB (a model's own processor, e.g. HF's)
};

struct IngestResult {
  io::Record record;
  std::string view;  // the label file's view, else the DICOM header's ViewPosition; may be ""
};

IngestResult ingest_item(const IngestItem& item, const IngestOptions& options);

// The header's "fields" for a stream of ingested records from `source`: for masks their
// "classes" (the names of the values 0, 1, ...) when the source names them.
nlohmann::json ingest_fields(int depth, const ItemSource& source);

// Runs `work` on `threads` worker threads over the items `pull` yields and hands each finished
// item to `sink` in pull order. At most `window` items are in flight (pulled, not yet sunk), so
// memory does not grow with the input's length. An exception from pull or sink stops the
// workers (after the item each one is working on) and propagates; exceptions thrown by work are
// caught and handed to sink as `error`.
struct Outcome {
  IngestItem item;
  std::optional<IngestResult> result;
  std::string error;  // set when work threw
};
void run_ordered(int threads, std::size_t window, const std::function<bool(IngestItem&)>& pull,
                 const std::function<IngestResult(const IngestItem&)>& work,
                 const std::function<void(Outcome&)>& sink);

}  // namespace cx::data
