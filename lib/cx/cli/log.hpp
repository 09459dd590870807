#pragma once
// Diagnostics on stderr, prefixed with the tool's name (`cx-ingest: ...`).
// The logger is the one piece of global state the library keeps.
#include <string>

namespace cx::log {

enum class Level { quiet = 0, normal = 1, verbose = 2 };

void set_tool_name(std::string name);
const std::string& tool_name();
void set_level(Level level);
Level level();

// error and always print even with -q (a failure, or a skipped input, is never silent); warn and
// info print unless -q; debug only with -v.
void error(const std::string& message);
void always(const std::string& message);
void warn(const std::string& message);
void info(const std::string& message);
void debug(const std::string& message);

// A number for messages and tables: fixed with `decimals` places, "NA" for NaN, "inf" / "-inf".
std::string number(double v, int decimals = 4);

}  // namespace cx::log
