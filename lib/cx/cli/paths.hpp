#pragma once
// Where installed data (label sets, recipes, phantom definitions) lives:
// $CX_SHARE_DIR, else <executable>/../share/cx when installed, else the source tree's share/cx.
#include <string>

namespace cx {

std::string share_dir();
// share_dir() + "/" + relative, throwing cx::Error naming the path when it does not exist.
std::string share_file(const std::string& relative);

}  // namespace cx
