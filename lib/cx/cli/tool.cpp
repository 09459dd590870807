#include "cx/cli/tool.hpp"

#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <thread>

#include "cx/cli/error.hpp"
#include "cx/cli/log.hpp"
#include "cx/version.hpp"

namespace cx::cli {

std::string version_string() {
  return std::string("cx ") + CX_VERSION + " (git " + CX_GIT_REVISION + ")";
}

Tool::Tool(std::string name, std::string description) : name_(std::move(name)), app_(std::move(description), name_) {
  log::set_tool_name(name_);
  app_.set_version_flag("--version", [this] { return name_ + " " + version_string(); });
  app_.add_flag("-q,--quiet", common_.quiet, "Print nothing but errors on stderr");
  app_.add_flag("-v,--verbose", common_.verbose, "Print more detail on stderr");
  // Subcommands inherit this: -q and -v are accepted after the subcommand too (cx-model init -q).
  app_.fallthrough();
  // Exit 3 exists only where --skip-bad does (add_skip_bad_option extends this line).
  app_.footer("Exit status: 0 success, 1 data or runtime failure, 2 usage error.");
}

void Tool::add_output_option(CLI::App* where) {
  (where ? where : &app_)->add_option("-o,--output", common_.output, "Write to FILE instead of standard output (atomically: a temporary name, then a rename)")
      ->type_name("FILE");
}

void Tool::add_threads_option(CLI::App* where) {
  (where ? where : &app_)->add_option("--threads", common_.threads, "Worker threads; 0 uses every core")
      ->envname("CX_THREADS")
      ->check(CLI::Range(0, kMaxThreads))
      ->type_name("N")
      ->capture_default_str();
}

void Tool::add_device_option(CLI::App* where) {
  (where ? where : &app_)->add_option("--device", common_.device, "Compute device: cpu, cuda or cuda:N")
      ->envname("CX_DEVICE")
      ->type_name("DEV")
      ->capture_default_str();
}

void Tool::add_seed_option(std::uint64_t default_seed, CLI::App* where) {
  common_.seed = default_seed;
  (where ? where : &app_)->add_option("--seed", common_.seed, "Random seed; the same seed gives the same bytes")
      ->envname("CX_SEED")
      ->type_name("N")
      ->capture_default_str();
}

void Tool::add_provenance_option(CLI::App* where) {
  (where ? where : &app_)->add_flag("--no-provenance", common_.no_provenance,
                     "Leave this tool out of the stream header's provenance chain");
}

void Tool::add_skip_bad_option(bool& flag, CLI::App* where) {
  (where ? where : &app_)->add_flag("--skip-bad", flag,
                                    "Skip inputs that cannot be read, naming each on stderr; exit 3 when any was skipped");
  app_.footer(
      "Exit status: 0 success, 1 data or runtime failure, 2 usage error, 3 partial success "
      "(inputs skipped with --skip-bad).");
}

void Tool::add_shared_options(unsigned which, CLI::App* where) {
  if (which & kOutput) add_output_option(where);
  if (which & kThreads) add_threads_option(where);
  if (which & kDevice) add_device_option(where);
  if (which & kSeed) add_seed_option(common_.seed, where);
  if (which & kProvenance) add_provenance_option(where);
  if (which & kSkipBad) add_skip_bad_option(where);
}

int Tool::threads() const {
  if (common_.threads > 0) return common_.threads;
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

std::string Tool::usage() const {
  // The deepest selected subcommand's help, as CLI11 would print it for --help.
  const CLI::App* app = &app_;
  for (;;) {
    auto subs = app->get_subcommands();
    if (subs.empty()) break;
    app = subs.front();
  }
  return app->help();
}

std::vector<std::string> Tool::inputs_or_stdin(const std::vector<std::string>& names) const {
  if (!names.empty()) return names;
  if (isatty(STDIN_FILENO)) {
    std::fputs(usage().c_str(), stderr);
    throw UsageError("no input given and standard input is a terminal");
  }
  return {"-"};
}

nlohmann::json Tool::provenance_entry() const {
  nlohmann::json args = nlohmann::json::array();
  for (size_t i = 1; i < argv_.size(); ++i) args.push_back(argv_[i]);
  nlohmann::json entry = {{"tool", name_}, {"version", CX_VERSION}, {"git", CX_GIT_REVISION}, {"args", args}};
  for (const auto& [k, v] : provenance_details_.items()) entry[k] = v;
  return entry;
}

namespace {
// A failed write or close of stdout is an error (exit 1); a broken pipe has already ended us
// quietly through SIGPIPE's default action.
// `report`: print the failure (false when the run already failed and said why: a second line
// about the same full disk would only repeat it).
bool close_stdout_checked(bool report) {
  bool ok = true;
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) ok = false;
  int saved = ok ? 0 : errno;
  if (std::fclose(stdout) != 0 && ok) {
    ok = false;
    saved = errno;
  }
  if (!ok && report) log::error(std::string("standard output: write error: ") + std::strerror(saved));
  return ok;
}
}  // namespace

namespace {
// When CLI11 reports a missing requirement ("--model is required", "A subcommand is required"), an
// unknown option or command on the line is the real mistake: name it instead.
std::string first_unknown_argument(CLI::App& app, int argc, char** argv) {
  CLI::App* current = &app;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--") break;
    if (arg.size() > 1 && arg[0] == '-' && !(arg[1] >= '0' && arg[1] <= '9') && arg[1] != '.') {
      const std::string name = arg.substr(0, arg.find('='));
      // "-abc": short flags bundled; checked by their first letter.
      const std::string key = name.size() > 2 && name[1] != '-' ? name.substr(0, 2) : name;
      const CLI::Option* opt = current->get_option_no_throw(key);
      if (!opt && current != &app) opt = app.get_option_no_throw(key);
      if (!opt) return "unknown option " + name;
      if (opt->get_type_size_max() > 0 && name == arg && key == name) ++i;  // its value follows
      continue;
    }
    bool found = false;
    for (CLI::App* sub : current->get_subcommands([](CLI::App*) { return true; }))
      if (sub->check_name(arg)) {
        current = sub;
        found = true;
        break;
      }
    if (!found && current->get_subcommands([](CLI::App*) { return true; }).size() > 0 && current == &app &&
        current->get_required() == false && current->get_require_subcommand_min() > 0) {
      std::string names;
      for (CLI::App* sub : current->get_subcommands([](CLI::App*) { return true; }))
        names += (names.empty() ? "" : ", ") + sub->get_name();
      return "unknown command '" + arg + "' (expected one of: " + names + ")";
    }
  }
  return "";
}

// --help and --version print to stdout; a failed write (>/dev/full) is exit 1, not 0.
template <class E>
int help_or_version_impl(CLI::App& app, const E& e) {
  const int code = app.exit(e);
  std::cout.flush();
  const bool ok = static_cast<bool>(std::cout);
  return close_stdout_checked(true) && ok ? code : kExitFailure;
}
}  // namespace

int Tool::run(int argc, char** argv, const std::function<int()>& body) {
  auto help_or_version = [this](const auto& e) { return help_or_version_impl(app_, e); };
  std::signal(SIGPIPE, SIG_DFL);
  argv_.assign(argv, argv + argc);
  try {
    app_.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return help_or_version(e);
  } catch (const CLI::CallForAllHelp& e) {
    return help_or_version(e);
  } catch (const CLI::CallForVersion& e) {
    return help_or_version(e);
  } catch (const CLI::ParseError& e) {
    std::string message = e.what();
    if (dynamic_cast<const CLI::RequiredError*>(&e)) {
      const std::string unknown = first_unknown_argument(app_, argc, argv);
      if (!unknown.empty()) message = unknown;
      // The first thing a new user meets: say where a model comes from.
      if (unknown.empty() && message.find("--model is required") != std::string::npos)
        message += ": give a Hugging Face encoder folder (config.json, model.safetensors, preprocessor_config.json), a name "
                   "found in $CX_MODEL_PATH or the Hugging Face cache (e.g. CXformer-small), or set CX_MODEL; "
                   "`cx-model init --preset tiny DIR` writes a small random one to try things";
    }
    log::error(message);
    std::fprintf(stderr, "Run with --help for usage.\n");
    return kExitUsage;
  }
  if (common_.quiet && common_.verbose) {
    log::error("-q and -v exclude each other");
    return kExitUsage;
  }
  log::set_level(common_.quiet ? log::Level::quiet : common_.verbose ? log::Level::verbose : log::Level::normal);

  int code = kExitFailure;
  try {
    code = body();
  } catch (const UsageError& e) {
    log::error(e.what());
    code = kExitUsage;
  } catch (const std::bad_alloc&) {
    log::error("out of memory");
    code = kExitFailure;
  } catch (const std::exception& e) {
    log::error(e.what());
    code = kExitFailure;
  }
  const bool succeeded = code == kExitOk || code == kExitPartial;
  if (!close_stdout_checked(succeeded) && succeeded) code = kExitFailure;
  return code;
}

}  // namespace cx::cli
