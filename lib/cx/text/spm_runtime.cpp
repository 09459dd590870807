#include "cx/text/spm_runtime.hpp"

#include <dlfcn.h>

#include <cstdlib>
#include <filesystem>
#include <mutex>

#include "cx/cli/error.hpp"
#include "cx/text/spm/api.h"

namespace cx::text::detail {

namespace {

namespace fs = std::filesystem;

constexpr std::size_t kErrorCap = 1024;

// The sanitizer runtimes refuse RTLD_DEEPBIND (google/sanitizers#611: the library would bypass their
// interceptors). Sanitized builds (make fuzz, test-asan, test-tsan) load SentencePiece without it,
// which is right where LibTorch's protobuf is not in the process (the fuzz targets link cx_core
// alone); a sanitized tool that links LibTorch too cannot hold both protobufs.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr int kDeepBind = 0;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
constexpr int kDeepBind = 0;
#else
constexpr int kDeepBind = RTLD_DEEPBIND;
#endif
#else
constexpr int kDeepBind = RTLD_DEEPBIND;
#endif

const cxspm_api& api() {
  static const cxspm_api* loaded = nullptr;
  static std::string failure;
  static std::once_flag once;
  std::call_once(once, [] {
    const std::string path = spm_library_path();
    // SentencePiece first, each with RTLD_LOCAL (its protobuf symbols stay out of the global scope,
    // so LibTorch's protobuf never calls them) and RTLD_DEEPBIND (its own calls bind to its own
    // protobuf before LibTorch's, which is already global); the module then finds them loaded.
    for (const char* dep : {"libsentencepiece.so.0", "libsentencepiece_train.so.0"}) ::dlopen(dep, RTLD_NOW | RTLD_LOCAL | kDeepBind);
    void* lib = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
      const char* e = ::dlerror();
      failure = "cannot load the SentencePiece library " + path + " (" + (e ? e : "unknown error") +
                "); set CX_SPM_LIBRARY to libcx_spm.so of this build or installation";
      return;
    }
    auto get = reinterpret_cast<const cxspm_api* (*)()>(::dlsym(lib, "cxspm_get_api"));
    if (!get || !get() || get()->version != CXSPM_API_VERSION) {
      failure = path + ": not the libcx_spm of this cx (no cxspm_get_api of version " + std::to_string(CXSPM_API_VERSION) + ")";
      return;
    }
    loaded = get();
  });
  if (!loaded) throw Error(failure);
  return *loaded;
}

void push_id(void* ctx, int id) { static_cast<std::vector<int>*>(ctx)->push_back(id); }
void push_piece(void* ctx, const char* data, size_t size) { static_cast<std::vector<std::string>*>(ctx)->emplace_back(data, size); }
void push_string(void* ctx, const char* data, size_t size) { static_cast<std::string*>(ctx)->assign(data, size); }

SpStatus status(int rc, const char* err) { return rc == 0 ? SpStatus{} : SpStatus{err[0] ? err : "SentencePiece failed"}; }

}  // namespace

std::string spm_library_path() {
  if (const char* env = std::getenv("CX_SPM_LIBRARY"); env && *env) return env;
  std::error_code ec;
  const fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    for (const fs::path& candidate : {exe.parent_path().parent_path() / "lib" / "cx" / "libcx_spm.so", exe.parent_path() / "libcx_spm.so"})
      if (fs::exists(candidate, ec)) return candidate.string();
  }
  return "libcx_spm.so";
}

SpProcessor::~SpProcessor() {
  if (handle_) api().release(handle_);
}

SpStatus SpProcessor::LoadFromSerializedProto(const std::string& bytes) {
  const cxspm_api& a = api();
  char err[kErrorCap] = "";
  void* h = a.load(bytes.data(), bytes.size(), err, sizeof err);
  if (!h) return SpStatus{err[0] ? err : "cannot load the model"};
  if (handle_) a.release(handle_);
  handle_ = h;
  return {};
}

SpStatus SpProcessor::Encode(const std::string& text, std::vector<int>* ids) const {
  ids->clear();
  char err[kErrorCap] = "";
  return status(api().encode(handle_, text.data(), text.size(), push_id, ids, err, sizeof err), err);
}

SpStatus SpProcessor::Encode(const std::string& text, std::vector<std::string>* pieces) const {
  pieces->clear();
  char err[kErrorCap] = "";
  return status(api().encode_pieces(handle_, text.data(), text.size(), push_piece, pieces, err, sizeof err), err);
}

SpStatus SpProcessor::Decode(const std::vector<int>& ids, std::string* text) const {
  text->clear();
  char err[kErrorCap] = "";
  return status(api().decode(handle_, ids.data(), ids.size(), push_string, text, err, sizeof err), err);
}

int SpProcessor::GetPieceSize() const { return api().piece_size(handle_); }
int SpProcessor::PieceToId(const std::string& piece) const { return api().piece_to_id(handle_, piece.data(), piece.size()); }
std::string SpProcessor::IdToPiece(int id) const {
  std::string out;
  api().id_to_piece(handle_, id, push_string, &out);
  return out;
}
bool SpProcessor::IsUnknown(int id) const { return api().is_unknown(handle_, id) != 0; }
float SpProcessor::GetScore(int id) const { return api().score(handle_, id); }

SpStatus sp_train(const std::unordered_map<std::string, std::string>& args, const std::vector<std::string>& lines, unsigned seed,
                  std::string* model) {
  std::vector<const char*> keys, values, text;
  std::vector<size_t> lengths;
  for (const auto& [k, v] : args) {
    keys.push_back(k.c_str());
    values.push_back(v.c_str());
  }
  for (const auto& l : lines) {
    text.push_back(l.data());
    lengths.push_back(l.size());
  }
  model->clear();
  char err[kErrorCap] = "";
  return status(api().train(keys.data(), values.data(), keys.size(), text.data(), lengths.data(), text.size(), seed, push_string,
                            model, err, sizeof err),
                err);
}

}  // namespace cx::text::detail
