#include "cx/cli/output.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "cx/cli/error.hpp"

namespace cx::cli {

namespace fs = std::filesystem;

namespace {
std::string errno_text() { return std::strerror(errno); }

std::string temp_name_for(const std::string& path) {
  auto slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "" : path.substr(0, slash + 1);
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  return dir + "." + base + ".tmp." + std::to_string(::getpid());
}
}  // namespace

OutputFile::OutputFile(std::string path, bool binary) : path_(std::move(path)) {
  if (path_.empty() || path_ == "-") {
    path_ = "-";
    is_stdout_ = true;
    file_ = stdout;
    return;
  }
  temp_ = temp_name_for(path_);
  file_ = std::fopen(temp_.c_str(), binary ? "wb" : "w");
  if (!file_) throw Error(at(path_, "cannot create: " + errno_text()));
}

OutputFile::~OutputFile() {
  if (!is_stdout_ && !committed_) {
    if (file_) std::fclose(file_);
    ::unlink(temp_.c_str());
  }
}

void OutputFile::write(const void* data, std::size_t size) {
  if (size == 0) return;
  if (std::fwrite(data, 1, size, file_) != size)
    throw Error(at(is_stdout_ ? "standard output" : path_, "write error: " + errno_text()));
}

void OutputFile::commit() {
  if (committed_) return;
  if (is_stdout_) {
    if (std::fflush(stdout) != 0) throw Error("standard output: write error: " + errno_text());
    committed_ = true;
    return;
  }
  if (std::fflush(file_) != 0 || std::ferror(file_)) throw Error(at(path_, "write error: " + errno_text()));
  ::fsync(fileno(file_));
  if (std::fclose(file_) != 0) {
    file_ = nullptr;
    throw Error(at(path_, "write error: " + errno_text()));
  }
  file_ = nullptr;
  if (std::rename(temp_.c_str(), path_.c_str()) != 0) throw Error(at(path_, "cannot rename into place: " + errno_text()));
  committed_ = true;
}

void write_file_atomic(const std::string& path, const std::string& bytes) {
  OutputFile out(path);
  out.write(bytes);
  out.commit();
}

void write_folder_atomic(const std::string& target, const std::function<void(const std::string& temp)>& fill) {
  fs::path t(target);
  while (!t.empty() && !t.has_filename()) t = t.parent_path();  // "head/" -> "head"
  if (t.empty()) throw Error(at(target, "not a folder name"));
  const std::string pid = std::to_string(::getpid());
  fs::path temp = t.parent_path() / ("." + t.filename().string() + ".tmp." + pid);
  fs::path aside = t.parent_path() / ("." + t.filename().string() + ".old." + pid);
  std::error_code ec;
  fs::remove_all(temp, ec);
  fs::create_directories(temp, ec);
  if (ec) throw Error(at(temp.string(), "cannot create folder: " + ec.message()));
  try {
    fill(temp.string());
  } catch (...) {
    fs::remove_all(temp, ec);
    throw;
  }
  const bool existed = fs::exists(t, ec);
  if (existed && !fs::is_directory(t, ec)) {
    fs::remove_all(temp, ec);
    throw Error(at(t.string(), "exists and is not a folder"));
  }
  if (existed) {
    fs::remove_all(aside, ec);
    fs::rename(t, aside, ec);
    if (ec) {
      fs::remove_all(temp, ec);
      throw Error(at(t.string(), "cannot move the old folder aside: " + ec.message()));
    }
  }
  fs::rename(temp, t, ec);
  if (ec) {
    std::error_code ec2;
    if (existed) fs::rename(aside, t, ec2);
    fs::remove_all(temp, ec2);
    throw Error(at(t.string(), "cannot rename into place: " + ec.message()));
  }
  if (existed) fs::remove_all(aside, ec);
}

}  // namespace cx::cli
