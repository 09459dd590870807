#pragma once
// The behaviour every cx tool shares, declared once (see CONVENTIONS.md, "Every tool"):
// shared flags (-o -q -v --threads --device --seed --no-provenance --version), the
// usage-on-terminal rule for inputs, exception -> exit code mapping, quiet SIGPIPE and a checked
// close of stdout. A tool's main builds a Tool, adds its own options and calls run().
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace cx::cli {

// --threads above this is a usage error (exit 2): no machine cx runs on has more cores, and a
// typo like 100000 would otherwise try to start that many threads.
inline constexpr int kMaxThreads = 1024;

struct CommonOptions {
  std::string output = "-";
  int threads = 0;  // 0: all cores
  std::string device = "cpu";
  std::uint64_t seed = 0;
  bool no_provenance = false;
  bool skip_bad = false;
  bool quiet = false;
  bool verbose = false;
};

class Tool {
 public:
  Tool(std::string name, std::string description);

  CLI::App& app() { return app_; }
  const std::string& name() const { return name_; }
  CommonOptions& common() { return common_; }
  const CommonOptions& common() const { return common_; }

  // Opt-in shared flags, each with its CX_ environment fallback.
  void add_output_option(CLI::App* where = nullptr);      // -o,--output (CX_OUTPUT not used: explicit only)
  void add_threads_option(CLI::App* where = nullptr);     // --threads, CX_THREADS
  void add_device_option(CLI::App* where = nullptr);      // --device, CX_DEVICE
  void add_seed_option(std::uint64_t default_seed = 0, CLI::App* where = nullptr);  // --seed, CX_SEED
  void add_provenance_option(CLI::App* where = nullptr);  // --no-provenance
  // --skip-bad into `flag` (the policy itself: cx/cli/bad_inputs.hpp).
  void add_skip_bad_option(bool& flag, CLI::App* where = nullptr);
  // --skip-bad into common().skip_bad.
  void add_skip_bad_option(CLI::App* where = nullptr) { add_skip_bad_option(common_.skip_bad, where); }

  // Several shared flags at once, for one (sub)command, in one order every tool shares
  // (as samtools' sam_opts): e.g. add_shared_options(kOutput | kThreads | kProvenance, train).
  enum Shared : unsigned { kOutput = 1, kThreads = 2, kDevice = 4, kSeed = 8, kProvenance = 16, kSkipBad = 32 };
  void add_shared_options(unsigned which, CLI::App* where = nullptr);

  // Parses the command line and runs body; maps exceptions to exit codes and checks that stdout
  // was written and closed without error. Returns the process exit code.
  int run(int argc, char** argv, const std::function<int()>& body);

  // The usage-on-terminal rule: names as given; none -> "-" when stdin is not a terminal;
  // none and a terminal -> prints usage to stderr and throws a UsageError (exit 2).
  std::vector<std::string> inputs_or_stdin(const std::vector<std::string>& names) const;

  // --threads resolved: 0 means every core the process may use.
  int threads() const;

  // One provenance entry for the stream header: tool, version, git revision, arguments, and the
  // details added below (e.g. the model an embedder ran).
  nlohmann::json provenance_entry() const;
  void add_provenance_detail(const std::string& key, nlohmann::json value) { provenance_details_[key] = std::move(value); }

  // The help text of the app (or the selected subcommand).
  std::string usage() const;

 private:
  std::string name_;
  CLI::App app_;
  CommonOptions common_;
  std::vector<std::string> argv_;
  nlohmann::json provenance_details_ = nlohmann::json::object();
};

// "cx 0.1.0 (git abc1234)".
std::string version_string();

}  // namespace cx::cli
