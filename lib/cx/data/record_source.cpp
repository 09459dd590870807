#include "cx/data/record_source.hpp"

#include <filesystem>
#include <fstream>

#include "cx/cli/error.hpp"
#include "cx/cli/log.hpp"
#include "cx/data/adapters.hpp"
#include "cx/data/ingest.hpp"
#include "cx/io/image_file.hpp"

namespace cx::data {

namespace fs = std::filesystem;

bool is_image_input(const std::string& path) {
  if (path == "-") return false;
  std::error_code ec;
  if (fs::is_directory(path, ec)) return true;
  std::ifstream f(path, std::ios::binary);
  if (!f) return looks_like_image_file(path);
  std::string head(132, '\0');
  f.read(head.data(), static_cast<std::streamsize>(head.size()));
  head.resize(static_cast<std::size_t>(f.gcount()));
  if (head.size() >= 132 && head.compare(128, 4, "DICM") == 0) return true;
  if (head.size() >= 8 && io::sniff_image_format(head) != io::ImageFormat::unknown) return true;
  // By name: a damaged scan.dcm is a bad DICOM file ("not a DICOM file"), not a stream.
  return looks_like_image_file(path);
}

namespace {

class StreamSource : public RecordSource {
 public:
  explicit StreamSource(std::vector<std::string> inputs) : inputs_(std::move(inputs)) {
    reader_ = io::StreamReader::open(inputs_[0]);
    header_ = reader_->header();
  }
  const nlohmann::json& header() const override { return header_; }
  bool next(io::Record& record) override {
    for (;;) {
      if (reader_->next(record)) return true;
      if (++index_ >= inputs_.size()) return false;
      reader_ = io::StreamReader::open(inputs_[index_]);
      const auto& h = reader_->header();
      if (h.value("labels", nlohmann::json::array()) != header_.value("labels", nlohmann::json::array()))
        throw Error(at(inputs_[index_], "its labels differ from those of " + inputs_[0] + "; streams are concatenated only when their labels agree"));
    }
  }

 private:
  std::vector<std::string> inputs_;
  std::size_t index_ = 0;
  std::unique_ptr<io::StreamReader> reader_;
  nlohmann::json header_;
};

class ImageSource : public RecordSource {
 public:
  ImageSource(const std::vector<std::string>& inputs, bool keep_rgb, BadImage on_bad)
      : items_(open_files(inputs)), on_bad_(std::move(on_bad)) {
    options_.keep_rgb = keep_rgb;
    header_ = io::new_stream_header();
    header_["fields"] = ingest_fields(8, *items_);
  }
  const nlohmann::json& header() const override { return header_; }
  bool next(io::Record& record) override {
    IngestItem item;
    while (items_->next(item)) {
      try {
        record = ingest_item(item, options_).record;
        return true;
      } catch (const Error& e) {
        if (!on_bad_) throw;
        on_bad_(e.what());
      }
    }
    return false;
  }

 private:
  std::unique_ptr<ItemSource> items_;
  BadImage on_bad_;
  IngestOptions options_;
  nlohmann::json header_;
};

}  // namespace

std::unique_ptr<RecordSource> RecordSource::open(const std::vector<std::string>& inputs, bool keep_rgb, BadImage on_bad) {
  if (inputs.empty()) throw UsageError("no input");
  std::size_t images = 0;
  for (const auto& in : inputs) images += is_image_input(in) ? 1 : 0;
  if (images != 0 && images != inputs.size())
    throw UsageError("give either cx streams or image files and folders, not both in one call");
  if (images) return std::make_unique<ImageSource>(inputs, keep_rgb, std::move(on_bad));
  return std::make_unique<StreamSource>(inputs);
}

}  // namespace cx::data
