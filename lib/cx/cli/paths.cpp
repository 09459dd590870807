#include "cx/cli/paths.hpp"

#include <unistd.h>

#include <cstdlib>
#include <filesystem>

#include "cx/build_paths.hpp"  // generated: CX_SOURCE_SHARE_DIR (kept out of every other TU so ccache hits)
#include "cx/cli/error.hpp"

namespace cx {

namespace fs = std::filesystem;

std::string share_dir() {
  if (const char* env = std::getenv("CX_SHARE_DIR"); env && *env) return env;
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    fs::path installed = exe.parent_path().parent_path() / "share" / "cx";
    if (fs::is_directory(installed, ec)) return installed.string();
  }
  return CX_SOURCE_SHARE_DIR;
}

std::string share_file(const std::string& relative) {
  std::string path = share_dir() + "/" + relative;
  std::error_code ec;
  if (!fs::exists(path, ec)) throw Error(at(path, "installed data file not found (set CX_SHARE_DIR?)"));
  return path;
}

}  // namespace cx
