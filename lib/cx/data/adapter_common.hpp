#pragma once
// Internal to the dataset adapters (adapter_*.cpp): the per-dataset openers and small helpers
// (string helpers are cx/util/strings.hpp's).
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cx/data/adapters.hpp"
#include "cx/data/csv_reader.hpp"

namespace cx::data::detail {

std::unique_ptr<ItemSource> open_chexpert(const AdapterOptions& options);
std::unique_ptr<ItemSource> open_nih(const AdapterOptions& options);
std::unique_ptr<ItemSource> open_mimic(const AdapterOptions& options);
std::unique_ptr<ItemSource> open_rsna(const AdapterOptions& options);
std::unique_ptr<ItemSource> open_vindr(const AdapterOptions& options);
std::unique_ptr<ItemSource> open_padchest(const AdapterOptions& options);
std::unique_ptr<ItemSource> open_chexmask(const AdapterOptions& options);
std::unique_ptr<ItemSource> open_folder(const AdapterOptions& options);
std::unique_ptr<ItemSource> open_reports(const AdapterOptions& options);

// The folder holding `path` ("." for a bare name; the working folder for "-").
std::string parent_folder(const std::string& path);
std::string join_path(const std::string& a, const std::string& b);
// A path or file name taken from a label file, checked to stay inside the image root: an absolute
// path, or one whose ".." parts climb out of the root ("../../etc/x.png"), is refused by name
// (cx::Error "<where>: <what> '<value>' leaves the image root ..."). Returns `rel` unchanged.
const std::string& inside_root(const std::string& rel, const std::string& where, const std::string& what);
bool is_file(const std::string& path);
bool is_dir(const std::string& path);
// `name` in `dir` with or without a trailing ".gz"; empty when neither exists.
std::string find_sibling(const std::string& dir, const std::string& name);
// "Male"/"M" -> "M", "Female"/"F" -> "F", anything else -> nullopt.
std::optional<std::string> parse_sex(std::string_view s);
// "68", "068Y", "68.0" -> 68; blank or not a number -> nullopt (no error: label files hold junk).
std::optional<int> parse_age(std::string_view s);
// A decimal number, or nullopt for blank; junk throws naming `where`.
std::optional<double> parse_optional_number(std::string_view s, const std::string& where);
// File-name stem: "a/b/c.d.png" -> "c.d".
std::string file_stem(const std::string& path);
// The path without its last extension: "a/b.c/d.png" -> "a/b.c/d".
std::string strip_extension(const std::string& path);

}  // namespace cx::data::detail
