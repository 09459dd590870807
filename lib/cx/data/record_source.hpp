#pragma once
// Records from what a user names on a tool's command line: cx streams (files or "-"), or image
// files and folders (DICOM, PNG, JPEG), each ingested on the fly as cx-ingest would with default
// options (one record per file, keyed by the file-name stem). Streams and images are not mixed in
// one call. Several streams are read one after the other; their label lists must agree.
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cx/io/stream.hpp"

namespace cx::data {

class RecordSource {
 public:
  // An image file that cannot be read, with its one-line error (naming the file); the file is then
  // skipped. Without one, the error is thrown. Streams do not skip: a bad stream ends the run.
  using BadImage = std::function<void(const std::string& message)>;
  // keep_rgb: image files in colour stay RGB (IngestOptions::keep_rgb), for a model's own processor.
  static std::unique_ptr<RecordSource> open(const std::vector<std::string>& inputs, bool keep_rgb = false,
                                            BadImage on_bad = nullptr);
  virtual ~RecordSource() = default;
  // The first stream's header (a fresh one for image inputs).
  virtual const nlohmann::json& header() const = 0;
  // False at a complete end; throws cx::Error / TruncatedError naming the input.
  virtual bool next(io::Record& record) = 0;
};

// True when the file looks like an image (DICOM, PNG or JPEG by content or extension), or is a
// folder; false for anything else (taken for a stream).
bool is_image_input(const std::string& path);

}  // namespace cx::data
