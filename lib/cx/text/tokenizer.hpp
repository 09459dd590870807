#pragma once
// SentencePiece tokenizers (libsentencepiece) with the Hugging Face LlamaTokenizer rules on top:
// the tokenizer.model of a Llama checkpoint, or one trained here on report text. Encoding follows
// HF's slow LlamaTokenizer (tokenization_llama.py): added/special-token strings in the text
// ("<s>", "</s>", "<unk>", added_tokens_decoder entries) are split out as their ids; with
// legacy=false the text after such a token gets no dummy prefix "▁"; BOS (and EOS) per
// tokenizer_config.json. encode_plain / pieces / decode are SentencePiece's own calls.
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace cx::text {

class Tokenizer {
 public:
  // A folder holding tokenizer.model, with tokenizer_config.json / special_tokens_map.json /
  // added_tokens.json read when present (as HF writes them: add_bos_token, add_eos_token, legacy,
  // add_prefix_space, bos/eos/unk/pad tokens as strings or AddedToken dicts, added_tokens_decoder);
  // or a .model file alone (HF's defaults then: add_bos_token true, add_eos_token false, legacy
  // true). Throws cx::Error naming the file that is missing or broken.
  static Tokenizer load(const std::string& path);

  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  ~Tokenizer();

  // HF LlamaTokenizer(text, add_special_tokens) ids: BOS first when add_bos; no EOS.
  std::vector<std::int64_t> encode(const std::string& text, bool add_bos) const;
  // The same with the config's add_bos_token and add_eos_token.
  std::vector<std::int64_t> encode(const std::string& text) const;
  // sp.encode(text): no BOS/EOS, special-token strings are plain text.
  std::vector<std::int64_t> encode_plain(const std::string& text) const;
  // sp.encode(text, out_type=str).
  std::vector<std::string> pieces(const std::string& text) const;
  // sp.decode(ids): byte pieces joined and UTF-8 decoded, each invalid byte -> U+FFFD; control
  // pieces (<s>, </s>) give nothing. skip_special drops every special token (unk, bos, eos, pad,
  // added special tokens) first; otherwise added tokens appear as their strings, with the text
  // after them decoded keeping its leading space (as HF's convert_tokens_to_string does).
  // Throws cx::Error for an id outside [0, size()).
  std::string decode(const std::vector<std::int64_t>& ids, bool skip_special = true) const;

  std::int64_t bos_id() const;
  std::int64_t eos_id() const;
  std::int64_t unk_id() const;
  std::int64_t pad_id() const;      // -1: none (Llama's pad_token is null)
  std::int64_t vocab_size() const;  // pieces in tokenizer.model (HF's vocab_size)
  std::int64_t size() const;        // vocab_size() plus added tokens with ids beyond it (HF's len())
  bool add_bos_token() const;
  bool add_eos_token() const;
  bool legacy() const;
  std::string id_to_piece(std::int64_t id) const;  // the piece, or the added token's content
  std::int64_t piece_to_id(const std::string& piece) const;  // -1 when absent
  float score(std::int64_t id) const;                        // 0 for added tokens beyond the model
  // SentencePiece piece type: "normal", "unknown", "control", "user_defined", "byte", "unused";
  // "added" for added tokens beyond the model.
  std::string piece_type(std::int64_t id) const;
  bool is_special(std::int64_t id) const;
  std::string sha256() const;                  // of the tokenizer.model bytes
  const std::string& model_path() const;       // the tokenizer.model file read

 private:
  struct Impl;
  explicit Tokenizer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

struct TokenizerTrainOptions {
  int vocab_size = 4000;
  // Seeds SentencePiece's random generator (process-wide in libsentencepiece). BPE on all lines
  // with one thread draws nothing from it, so the model does not depend on it; set for any sampling.
  std::uint64_t seed = 0;
  // De-identification placeholders (Open-i "XXXX", MIMIC-CXR "___"), each made two user-defined
  // pieces: itself and its word-initial form "▁XXXX". A placeholder is then one token wherever it
  // stands (" XXXX" gives "▁XXXX" like any word; "x-XXXX" ends in the bare "XXXX") and is never
  // merged with its neighbours, however rare it is in the training text (BPE alone splits a rare
  // one, or learns "XXXXXXXX" from a frequent run). User-defined pieces take ids 3.. (bare forms
  // first), so byte pieces start after them. Empty: the plain Llama trainer spec (the fixture's).
  std::vector<std::string> placeholders = {"XXXX", "___"};
  double character_coverage = 0.99995;
  int max_sentence_length = 4192;  // bytes; SentencePiece skips longer lines
  int model_max_length = 256;      // written to tokenizer_config.json
};

// Trains a SentencePiece BPE model with the trainer/normalizer spec of Meta's Llama
// tokenizer.model (byte_fallback, split_digits, identity normalizer, add_dummy_prefix, no
// whitespace collapsing, allow_whitespace_only_pieces, unk/bos/eos 0/1/2, pad -1) on `lines` (one
// sentence or section per line; line breaks inside a line are an error), one thread, and writes
// tokenizer.model + tokenizer_config.json + special_tokens_map.json (HF LlamaTokenizer style:
// add_bos_token true, add_eos_token false, legacy false, pad_token null) into out_dir atomically
// (a temporary folder beside it, renamed; an existing out_dir is replaced only when complete).
// The model records input "corpus.txt" and model_prefix "tokenizer", as spm_train run with those
// names in the folder would, so the bytes do not depend on where it was trained.
// Throws cx::Error (naming out_dir) when training fails, e.g. vocab_size too large for the text.
void train_tokenizer(const std::vector<std::string>& lines, const std::string& out_dir,
                     const TokenizerTrainOptions& options);

}  // namespace cx::text
