// cx-report's tokenizer (text/tokenizer.cpp, in cx_core): a tokenizer folder whose
// tokenizer_config.json is the input up to a line "#--text--", loaded as cx-report loads a Llama
// checkpoint's tokenizer (config, added tokens, special tokens), then the rest of the input
// encoded with the HF rules and SentencePiece's own, and decoded. The tokenizer.model is trained
// once per process (a few report lines, vocab 300: byte pieces, merges, "XXXX"/"___" symbols).
// Findings besides crashes: an id outside the vocabulary, pieces and ids disagreeing, or a
// valid UTF-8 text (without U+2581, which SentencePiece writes for a space) not decoding back to
// itself from sp.encode.
#include <filesystem>

#include "common.hpp"
#include "cx/text/tokenizer.hpp"

namespace {

const std::string& model_dir() {
  static const std::string dir = [] {
    const std::string d = cx::fuzz::scratch_dir() + "/tokenizer";
    std::vector<std::string> lines;
    const char* base[] = {"No acute cardiopulmonary process.", "Heart size is normal. Lungs are clear.",
                          "Dr. ___ was notified on ___ at 10:30.", "XXXX XXXX right pleural effusion.",
                          "Comparison: ___.", "Normal chest x-XXXX.", "The ___ tube is in place.",
                          "Stable 2.6 cm nodule in the left upper lobe, <s> and </s> as text."};
    for (int r = 0; r < 20; ++r)
      for (const char* b : base) lines.push_back(b);
    cx::text::TokenizerTrainOptions o;
    o.vocab_size = 330;
    cx::text::train_tokenizer(lines, d, o);
    return d;
  }();
  return dir;
}

bool valid_utf8(const std::string& s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
    if (n == 0 || i + n > s.size()) return false;
    std::uint32_t cp = n == 1 ? c : n == 2 ? (c & 0x1F) : n == 3 ? (c & 0x0F) : (c & 0x07);
    for (std::size_t k = 1; k < n; ++k) {
      const auto d = static_cast<unsigned char>(s[i + k]);
      if ((d >> 6) != 2) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
        (cp >= 0xD800 && cp <= 0xDFFF))
      return false;
    i += n;
  }
  return true;
}

void check_ids(const cx::text::Tokenizer& tok, const std::vector<std::int64_t>& ids, const char* what) {
  for (auto id : ids)
    if (id < 0 || id >= tok.size()) {
      CX_FUZZ_REPORT("%s gave id %lld outside 0..%lld\n", what, static_cast<long long>(id),
                     static_cast<long long>(tok.size() - 1));
      std::abort();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  const std::string mark = "#--text--\n";
  const std::size_t cut = input.find(mark);
  const std::string config = input.substr(0, cut);
  const std::string text = cut == std::string::npos ? std::string() : input.substr(cut + mark.size());
  const std::string& dir = model_dir();
  cx::fuzz::write_input("tokenizer/tokenizer_config.json", config);
  cx::fuzz::run([&] {
    const cx::text::Tokenizer tok = cx::text::Tokenizer::load(dir);
    const auto hf = tok.encode(text);
    check_ids(tok, hf, "encode");
    const auto hf_plain = tok.encode(text, false);
    check_ids(tok, hf_plain, "encode(add_bos=false)");
    (void)tok.decode(hf, true);
    (void)tok.decode(hf, false);
    // SentencePiece's own calls, through the model alone (no added tokens from the config).
    static const cx::text::Tokenizer bare = cx::text::Tokenizer::load(dir + "/tokenizer.model");
    const auto ids = bare.encode_plain(text);
    check_ids(bare, ids, "encode_plain");
    if (bare.pieces(text).size() != ids.size()) {
      CX_FUZZ_REPORT("pieces and ids differ in number\n");
      std::abort();
    }
    if (valid_utf8(text) && text.find("\xE2\x96\x81") == std::string::npos) {
      const std::string back = bare.decode(ids);
      if (back != text) {
        CX_FUZZ_REPORT("sp.encode/decode changed the text (%zu bytes -> %zu bytes)\n", text.size(), back.size());
        std::abort();
      }
    }
  });
  return 0;
}
