#include "cx/cli/bad_inputs.hpp"

#include "cx/cli/error.hpp"
#include "cx/cli/log.hpp"

namespace cx::cli {

void BadInputs::report(const std::string& where, const std::string& what) { report(at(where, what)); }

void BadInputs::report(const std::string& message) {
  if (!skip_) throw Error(message);
  ++count_;
  log::always(message + " (skipped)");
}

int BadInputs::exit_code() const { return count_.load() > 0 ? kExitPartial : kExitOk; }

int BadInputs::finish(std::int64_t total, std::int64_t written, const std::string& item, const std::string& output) const {
  const std::int64_t n = count_.load();
  if (n == 0) return kExitOk;
  auto plural = [](std::int64_t k, const std::string& word) { return std::to_string(k) + " " + word + (k == 1 ? "" : "s"); };
  log::always(std::to_string(n) + " of " + plural(total, item) + " skipped (bad input); " + plural(written, output) +
              " written");
  return kExitPartial;
}

}  // namespace cx::cli
