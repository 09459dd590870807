// libcx_spm: SentencePiece behind a C interface, loaded with dlopen by lib/cx/text/spm_runtime.cpp.
// Debian's libsentencepiece carries its own protobuf-lite 3.14 with exported symbols; linked into
// a process beside LibTorch (which brings libprotobuf 3.21), either library's static initialisers
// end up calling the other's protobuf and the process dies before main. Loaded later with
// RTLD_LOCAL, its symbols stay out of the global scope, and LibTorch's protobuf never sees them.
// This file is the only one that includes SentencePiece's headers.
#include <sentencepiece_processor.h>
#include <sentencepiece_trainer.h>

#include <cstring>
#include <string>
#include <unordered_map>
#include <vector>

#include "cx/text/spm/api.h"

namespace {

void set_error(char* err, size_t cap, const std::string& message) {
  if (!err || cap == 0) return;
  const size_t n = message.size() < cap - 1 ? message.size() : cap - 1;
  std::memcpy(err, message.data(), n);
  err[n] = '\0';
}

class LinesIterator : public sentencepiece::SentenceIterator {
 public:
  LinesIterator(const char* const* lines, const size_t* lengths, size_t n) : lines_(lines), lengths_(lengths), n_(n) {
    if (n_ > 0) value_.assign(lines_[0], lengths_[0]);
  }
  bool done() const override { return i_ >= n_; }
  void Next() override {
    ++i_;
    if (i_ < n_) value_.assign(lines_[i_], lengths_[i_]);
  }
  const std::string& value() const override { return value_; }
  sentencepiece::util::Status status() const override { return sentencepiece::util::Status(); }

 private:
  const char* const* lines_;
  const size_t* lengths_;
  size_t n_, i_ = 0;
  std::string value_;
};

sentencepiece::SentencePieceProcessor* sp(void* h) { return static_cast<sentencepiece::SentencePieceProcessor*>(h); }

void* load(const char* bytes, size_t n, char* err, size_t cap) {
  auto* p = new sentencepiece::SentencePieceProcessor();
  const auto st = p->LoadFromSerializedProto(std::string(bytes, n));
  if (!st.ok()) {
    set_error(err, cap, st.message());
    delete p;
    return nullptr;
  }
  return p;
}

void release(void* h) { delete sp(h); }

int encode(void* h, const char* text, size_t n, cxspm_push_id push, void* ctx, char* err, size_t cap) {
  std::vector<int> ids;
  const auto st = sp(h)->Encode(std::string(text, n), &ids);
  if (!st.ok()) {
    set_error(err, cap, st.message());
    return -1;
  }
  for (int id : ids) push(ctx, id);
  return 0;
}

int encode_pieces(void* h, const char* text, size_t n, cxspm_push_bytes push, void* ctx, char* err, size_t cap) {
  std::vector<std::string> pieces;
  const auto st = sp(h)->Encode(std::string(text, n), &pieces);
  if (!st.ok()) {
    set_error(err, cap, st.message());
    return -1;
  }
  for (const auto& p : pieces) push(ctx, p.data(), p.size());
  return 0;
}

int decode(void* h, const int* ids, size_t n, cxspm_push_bytes push, void* ctx, char* err, size_t cap) {
  std::string out;
  const auto st = sp(h)->Decode(std::vector<int>(ids, ids + n), &out);
  if (!st.ok()) {
    set_error(err, cap, st.message());
    return -1;
  }
  push(ctx, out.data(), out.size());
  return 0;
}

int piece_size(void* h) { return sp(h)->GetPieceSize(); }
int piece_to_id(void* h, const char* piece, size_t n) { return sp(h)->PieceToId(std::string(piece, n)); }
void id_to_piece(void* h, int id, cxspm_push_bytes push, void* ctx) {
  const std::string& p = sp(h)->IdToPiece(id);
  push(ctx, p.data(), p.size());
}
int is_unknown(void* h, int id) { return sp(h)->IsUnknown(id) ? 1 : 0; }
float score(void* h, int id) { return sp(h)->GetScore(id); }

int train(const char* const* keys, const char* const* values, size_t nargs, const char* const* lines, const size_t* lengths,
          size_t nlines, unsigned seed, cxspm_push_bytes push, void* ctx, char* err, size_t cap) {
  std::unordered_map<std::string, std::string> args;
  for (size_t i = 0; i < nargs; ++i) args[keys[i]] = values[i];
  sentencepiece::SetRandomGeneratorSeed(seed);
  LinesIterator it(lines, lengths, nlines);
  std::string model;
  const auto st = sentencepiece::SentencePieceTrainer::Train(args, &it, &model);
  if (!st.ok()) {
    set_error(err, cap, st.message());
    return -1;
  }
  push(ctx, model.data(), model.size());
  return 0;
}

const cxspm_api kApi = {CXSPM_API_VERSION, load,  release,    encode,     encode_pieces, decode, piece_size,
                        piece_to_id,       id_to_piece, is_unknown, score, train};

}  // namespace

extern "C" __attribute__((visibility("default"))) const cxspm_api* cxspm_get_api(void) { return &kApi; }
