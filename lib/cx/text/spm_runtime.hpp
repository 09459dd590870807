#pragma once
// SentencePiece for cx::text, through libcx_spm (lib/cx/text/spm/shim.cpp) opened with dlopen on
// first use. Debian's libsentencepiece exports its own protobuf-lite, which clashes with the
// protobuf LibTorch loads (a process linking both dies in its static initialisers); opened later
// and locally, it never meets LibTorch's. The library is looked for in $CX_SPM_LIBRARY, then beside
// the executable's folder as installed or built (<exe>/../lib/cx/libcx_spm.so), then by the
// dynamic loader's search path. The class mirrors the few SentencePieceProcessor calls cx makes.
#include <string>
#include <unordered_map>
#include <vector>

namespace cx::text::detail {

struct SpStatus {
  std::string error;  // empty: success
  bool ok() const { return error.empty(); }
  const std::string& message() const { return error; }
};

class SpProcessor {
 public:
  SpProcessor() = default;
  ~SpProcessor();
  SpProcessor(const SpProcessor&) = delete;
  SpProcessor& operator=(const SpProcessor&) = delete;

  SpStatus LoadFromSerializedProto(const std::string& bytes);
  SpStatus Encode(const std::string& text, std::vector<int>* ids) const;
  SpStatus Encode(const std::string& text, std::vector<std::string>* pieces) const;
  SpStatus Decode(const std::vector<int>& ids, std::string* text) const;
  int GetPieceSize() const;
  int PieceToId(const std::string& piece) const;
  std::string IdToPiece(int id) const;
  bool IsUnknown(int id) const;
  float GetScore(int id) const;

 private:
  void* handle_ = nullptr;
};

// SentencePieceTrainer::Train(args, sentences, &model) after SetRandomGeneratorSeed(seed).
SpStatus sp_train(const std::unordered_map<std::string, std::string>& args, const std::vector<std::string>& lines,
                  unsigned seed, std::string* model);

// Where libcx_spm is looked for first (see above).
std::string spm_library_path();

}  // namespace cx::text::detail
