#include "cx/cli/stream_output.hpp"

#include <unistd.h>

#include "cx/cli/error.hpp"

#include "cx/cli/names.hpp"
#include "cx/cli/tool.hpp"

namespace cx::cli {

StreamOutput::StreamOutput(const Tool& tool, nlohmann::json header)
    : StreamOutput(tool, std::move(header), tool.common().output) {}

StreamOutput::StreamOutput(const Tool& tool, nlohmann::json header, const std::string& path) {
  if (!tool.common().no_provenance) {
    if (!header.contains("provenance") || !header["provenance"].is_array()) header["provenance"] = nlohmann::json::array();
    header["provenance"].push_back(tool.provenance_entry());
  }
  if ((path.empty() || path == "-") && ::isatty(STDOUT_FILENO))
    throw UsageError("standard output is a terminal: a stream is binary; redirect it (> FILE, | cx-...) or use -o FILE");
  file_ = std::make_unique<OutputFile>(path);
  name_ = output_name(file_->path());
  writer_ = std::make_unique<io::StreamWriter>(file_->file(), header, name_);
}

void StreamOutput::finish() {
  writer_->finish();
  file_->commit();
}

}  // namespace cx::cli
