// cx-phantom: synthetic PA chest radiographs with known findings, as a cx record stream
// (man 1 cx-phantom). It reads no input, so the usage-on-terminal rule does not apply.
#include <cstdint>
#include <string>

#include "cx/cli/error.hpp"
#include "cx/cli/log.hpp"
#include "cx/cli/options.hpp"
#include "cx/cli/progress.hpp"
#include "cx/cli/stream_output.hpp"
#include "cx/cli/tool.hpp"
#include "cx/phantom/phantom.hpp"
#include "cx/phantom/phantom_stream.hpp"

namespace {
// Keys are "phantom-" and the index; 10^12 records is more than any disk holds at 64 px.
constexpr std::int64_t kMaxCount = 1'000'000'000'000;
}  // namespace

int main(int argc, char** argv) {
  cx::cli::Tool tool("cx-phantom",
                     "Write N synthetic PA chest radiograph phantoms (image, lung/heart mask, labels, report) as a cx "
                     "record stream; deterministic from --seed.");
  CLI::App& app = tool.app();
  std::int64_t count = 16;
  cx::phantom::PhantomOptions options;
  app.add_option("-n,--count", count, "Number of records")
      ->type_name("N")
      ->check(cx::cli::count_range(0, kMaxCount))
      ->capture_default_str();
  app.add_option("--size", options.size, "Image width and height in pixels")
      ->type_name("PX")
      ->check(CLI::Range(cx::phantom::kMinSize, cx::phantom::kMaxSize))
      ->capture_default_str();
  const auto probability = CLI::Range(0.0, 1.0);
  app.add_option("--p-cardiomegaly", options.p_cardiomegaly, "Probability of an enlarged heart (CTR > 0.5)")
      ->type_name("P")->check(probability)->capture_default_str();
  app.add_option("--p-effusion", options.p_effusion, "Probability of a pleural effusion (one side or both)")
      ->type_name("P")->check(probability)->capture_default_str();
  app.add_option("--p-nodule", options.p_nodule, "Probability of a pulmonary nodule")
      ->type_name("P")->check(probability)->capture_default_str();
  app.add_option("--p-pneumothorax", options.p_pneumothorax, "Probability of a pneumothorax")
      ->type_name("P")->check(probability)->capture_default_str();
  tool.add_seed_option(0);
  tool.add_output_option();
  tool.add_threads_option();
  tool.add_provenance_option();

  return tool.run(argc, argv, [&]() -> int {
    const std::uint64_t seed = tool.common().seed;
    cx::cli::StreamOutput out(tool, cx::phantom::phantom_stream_header(options, seed, count));
    cx::cli::Progress progress("phantoms", count);
    cx::phantom::write_phantoms(out.writer(), options, seed, count, tool.threads(), [&](std::int64_t) { progress.add(); });
    progress.finish();
    out.finish();
    cx::log::debug(std::to_string(out.records()) + " records written (" + std::to_string(options.size) + " px, seed " +
                   std::to_string(seed) + ")");
    return cx::kExitOk;
  });
}
