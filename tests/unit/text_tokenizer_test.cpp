// cx::text::Tokenizer against ../shared/fixtures/llm/tokenizer (made with Python sentencepiece
// 0.1.97, see its README), and train_tokenizer reproducing that fixture's tokenizer.model from the
// Open-i reports archive.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include <nlohmann/json.hpp>

#include "cx/cli/error.hpp"
#include "cx/io/file_bytes.hpp"
#include "cx/io/sha256.hpp"
#include "cx/text/reports.hpp"
#include "cx/text/tokenizer.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using cx::text::Tokenizer;
using nlohmann::json;

namespace {

std::string fixture_dir() { return cx_test::shared_dir() + "/fixtures/llm/tokenizer"; }
std::string reports_tgz() { return cx_test::shared_dir() + "/samples/reports/NLMCXR_reports.tgz"; }

json cases_json() { return json::parse(cx::io::read_file_bytes(fixture_dir() + "/tokenizer_cases.json")); }

std::vector<std::int64_t> ids_of(const json& j) { return j.get<std::vector<std::int64_t>>(); }

void write(const std::string& path, const std::string& data) {
  std::ofstream f(path, std::ios::binary);
  f << data;
}

#define NEED_FIXTURE()                                                              \
  if (!fs::exists(fixture_dir() + "/tokenizer.model"))                                \
    GTEST_SKIP() << fixture_dir() << "/tokenizer.model not found (../shared absent)";

}  // namespace

TEST(TextTokenizer, FixtureCasesExactly) {
  NEED_FIXTURE();
  const Tokenizer tok = Tokenizer::load(fixture_dir());
  const json cases = cases_json();
  ASSERT_EQ(cases["sentencepiece_version"], "0.1.97");
  int n = 0;
  for (const char* group : {"cases", "extra_cases_synthetic"}) {
    for (const json& c : cases[group]) {
      const std::string text = c["text"].get<std::string>();
      SCOPED_TRACE(group + std::string(": ") + text);
      EXPECT_EQ(tok.encode_plain(text), ids_of(c["ids"]));
      EXPECT_EQ(tok.pieces(text), c["pieces"].get<std::vector<std::string>>());
      EXPECT_EQ(tok.decode(ids_of(c["ids"])), c["decoded"].get<std::string>());
      EXPECT_EQ(tok.decode(tok.encode_plain(text)), text);  // roundtrip_equal is true for all
      // ids_with_bos = [1] + sp.encode(text): HF's LlamaTokenizer for text without special-token
      // strings; the literal "<s>...</s>" extra is checked against HF's splitting below.
      std::vector<std::int64_t> plain_bos = {1};
      for (auto id : tok.encode_plain(text)) plain_bos.push_back(id);
      EXPECT_EQ(plain_bos, ids_of(c["ids_with_bos"]));
      if (text.find("<s>") == std::string::npos && text.find("</s>") == std::string::npos &&
          text.find("<unk>") == std::string::npos) {
        EXPECT_EQ(tok.encode(text, true), ids_of(c["ids_with_bos"]));
        EXPECT_EQ(tok.encode(text), ids_of(c["ids_with_bos"]));  // config: add_bos true, add_eos false
        EXPECT_EQ(tok.encode(text, false), ids_of(c["ids"]));
      }
      ++n;
    }
  }
  EXPECT_EQ(n, 17);
}

TEST(TextTokenizer, SpecialTokenStringsSplitLikeHuggingFace) {
  NEED_FIXTURE();
  const Tokenizer tok = Tokenizer::load(fixture_dir());
  ASSERT_FALSE(tok.legacy());
  // sp.encode keeps "<s>"/"</s>" as text (the fixture's extra)...
  EXPECT_EQ(tok.encode_plain("<s>No acute disease.</s>"),
            (std::vector<std::int64_t>{444, 63, 452, 65, 466, 448, 337, 388, 459, 63, 492, 452, 65}));
  // ...HF splits them out as ids 1 and 2 and, legacy=false, encodes what follows a special token
  // without the dummy "▁": "No" is 'N','o' (466, 448) instead of the prefixed pieces; the "▁"
  // before the leading <s> is dropped (tokenization_llama.py tokenize()).
  EXPECT_EQ(tok.encode("<s>No acute disease.</s>", false),
            (std::vector<std::int64_t>{1, 466, 448, 337, 388, 459, 2}));
  EXPECT_EQ(tok.encode("<s>No acute disease.</s>", true),
            (std::vector<std::int64_t>{1, 1, 466, 448, 337, 388, 459, 2}));
  // A space after the special token is kept as the "▁" of the next word: " Heart" -> ▁Heart.
  EXPECT_EQ(tok.encode("</s> Heart size normal.", false), (std::vector<std::int64_t>{2, 420, 365, 307, 459}));
  // Text before a special token keeps its dummy prefix; <unk> is split out too.
  EXPECT_EQ(tok.encode("Heart size normal.</s><unk>", false), (std::vector<std::int64_t>{420, 365, 307, 459, 2, 0}));
  EXPECT_EQ(tok.encode("", true), (std::vector<std::int64_t>{1}));
  EXPECT_EQ(tok.encode("", false), (std::vector<std::int64_t>{}));
  // decode: special tokens skipped by default, written out on request (text after them keeps its space).
  EXPECT_EQ(tok.decode({1, 420, 365, 307, 459, 2}), "Heart size normal.");
  EXPECT_EQ(tok.decode({1, 420, 365, 307, 459, 2}, false), "<s> Heart size normal.</s>");
  EXPECT_EQ(tok.decode({0}, true), "");
}

TEST(TextTokenizer, VocabularyTableAndIds) {
  NEED_FIXTURE();
  const Tokenizer tok = Tokenizer::load(fixture_dir());
  const json vocab = cases_json()["vocab"];
  ASSERT_EQ(tok.vocab_size(), 512);
  ASSERT_EQ(vocab.size(), 512u);
  EXPECT_EQ(tok.size(), 512);
  for (std::int64_t id = 0; id < 512; ++id) {
    const json& v = vocab[static_cast<std::size_t>(id)];
    ASSERT_EQ(tok.id_to_piece(id), v[0].get<std::string>()) << id;
    ASSERT_EQ(tok.score(id), v[1].get<float>()) << id;
    ASSERT_EQ(tok.piece_type(id), v[2].get<std::string>()) << id;
    ASSERT_EQ(tok.piece_to_id(v[0].get<std::string>()), id);
  }
  EXPECT_EQ(tok.unk_id(), 0);
  EXPECT_EQ(tok.bos_id(), 1);
  EXPECT_EQ(tok.eos_id(), 2);
  EXPECT_EQ(tok.pad_id(), -1);
  EXPECT_EQ(tok.piece_to_id("no such piece"), -1);
  EXPECT_TRUE(tok.is_special(1));
  EXPECT_FALSE(tok.is_special(444));
  EXPECT_EQ(tok.sha256(), "bde356c19d1a01633dcdda67582771bb63d37597a5c42d853b8e4c691dec7005");  // sha256sum
  EXPECT_EQ(Tokenizer::load(fixture_dir() + "/tokenizer.model").sha256(), tok.sha256());
  // Case C of the model fixture: lone bytes 0x8E, 0xA6, 0xBD decode to one U+FFFD each.
  EXPECT_EQ(tok.decode({145, 169, 192}), "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(cx_test::error_of([&] { tok.decode({512}); }), "token id 512 is outside the vocabulary (0..511)");
  EXPECT_EQ(cx_test::error_of([&] { tok.decode({-1}); }), "token id -1 is outside the vocabulary (0..511)");
}

TEST(TextTokenizer, ConfigVariants) {
  NEED_FIXTURE();
  cx_test::TempDir t("cx_text_tok");
  fs::copy_file(fixture_dir() + "/tokenizer.model", t / "tokenizer.model");
  // A bare model: HF's defaults (add_bos_token true, legacy true: every chunk gets the dummy prefix).
  Tokenizer bare = Tokenizer::load(t.path());
  EXPECT_TRUE(bare.legacy());
  EXPECT_TRUE(bare.add_bos_token());
  // legacy: the chunk after </s> is sp.encode("No") = "▁No" (285), not 'N','o' (466, 448).
  EXPECT_EQ(bare.encode("</s>No", false), (std::vector<std::int64_t>{2, 285}));
  // An added token beyond the model (LLaVA's "<image>") and an EOS appended per config.
  json cfg = json::parse(cx::io::read_file_bytes(fixture_dir() + "/tokenizer_config.json"));
  cfg["add_eos_token"] = true;
  cfg["added_tokens_decoder"]["512"] = {{"content", "<image>"}, {"special", true}};
  cfg["pad_token"] = "<unk>";
  write(t / "tokenizer_config.json", cfg.dump());
  Tokenizer tok = Tokenizer::load(t.path());
  EXPECT_EQ(tok.size(), 513);
  EXPECT_EQ(tok.vocab_size(), 512);
  EXPECT_EQ(tok.pad_id(), 0);
  // BOS, <image>, then "\nHeart" without dummy prefix: <0x0A> 'H' 'e' 'art' (13 474 445 352), EOS.
  EXPECT_EQ(tok.encode("<image>\nHeart"), (std::vector<std::int64_t>{1, 512, 13, 474, 445, 352, 2}));
  EXPECT_EQ(tok.id_to_piece(512), "<image>");
  EXPECT_EQ(tok.decode({1, 512, 420}), "Heart");
  EXPECT_EQ(tok.decode({1, 512, 420}, false), "<s><image> Heart");
}

TEST(TextTokenizer, ErrorsNameTheFile) {
  NEED_FIXTURE();
  cx_test::TempDir t("cx_text_tok");
  EXPECT_EQ(cx_test::error_of([&] { Tokenizer::load(t.path()); }),
            t / "tokenizer.model" + ": no tokenizer.model in this folder (a SentencePiece tokenizer is needed)");
  EXPECT_EQ(cx_test::error_of([&] { Tokenizer::load(t / "missing.model"); }).rfind(t / "missing.model: cannot open", 0), 0u);
  write(t / "tokenizer.model", "this is not a protobuf model at all");
  const std::string corrupt = cx_test::error_of([&] { Tokenizer::load(t.path()); });
  EXPECT_EQ(corrupt.rfind(t / "tokenizer.model: not a SentencePiece model", 0), 0u) << corrupt;
  const std::string model = cx::io::read_file_bytes(fixture_dir() + "/tokenizer.model");
  write(t / "tokenizer.model", model.substr(0, model.size() / 2));  // cut in the middle
  const std::string cut = cx_test::error_of([&] { Tokenizer::load(t.path()); });
  EXPECT_EQ(cut.rfind(t / "tokenizer.model: not a SentencePiece model", 0), 0u) << cut;
  write(t / "tokenizer.model", "");
  EXPECT_EQ(cx_test::error_of([&] { Tokenizer::load(t.path()); }),
            t / "tokenizer.model" + ": empty file, not a SentencePiece model");
  write(t / "tokenizer.model", model);
  write(t / "tokenizer_config.json", "{\"add_bos_token\": ");
  EXPECT_EQ(cx_test::error_of([&] { Tokenizer::load(t.path()); }).rfind(t / "tokenizer_config.json: not valid JSON", 0), 0u);
  write(t / "tokenizer_config.json", "{\"add_bos_token\": \"yes\"}");
  EXPECT_EQ(cx_test::error_of([&] { Tokenizer::load(t.path()); }),
            t / "tokenizer_config.json" + ": add_bos_token is not true or false");
  write(t / "tokenizer_config.json", "{\"added_tokens_decoder\": {\"7\": {\"content\": \"<s>\"}}}");
  EXPECT_EQ(cx_test::error_of([&] { Tokenizer::load(t.path()); }),
            t / "tokenizer.model" + ": added token 7 \"<s>\" differs from the model's piece \"<0x04>\"");
}

// The Open-i corpus of the fixture README, built with for_each_report + corpus_lines.
std::vector<std::string> open_i_corpus() {
  std::vector<std::string> lines;
  cx::text::for_each_report(reports_tgz(), [&](const std::string&, const cx::text::ReportSections& s) {
    for (auto& l : cx::text::corpus_lines(s)) lines.push_back(std::move(l));
  });
  return lines;
}

TEST(TextTokenizer, TrainingReproducesTheFixtureModel) {
  NEED_FIXTURE();
  if (!fs::exists(reports_tgz())) GTEST_SKIP() << reports_tgz() << " not found (../shared/samples absent)";
  const std::vector<std::string> lines = open_i_corpus();
  ASSERT_EQ(lines.size(), 7346u);
  cx_test::TempDir t("cx_text_train");
  cx::text::TokenizerTrainOptions o;
  o.vocab_size = 512;
  o.placeholders.clear();  // the fixture's spec: Meta's Llama trainer spec, nothing added
  const std::string out = t / "tok";
  cx::text::train_tokenizer(lines, out, o);
  // Byte-identical: same sentencepiece (0.1.97) and spec; the model records input "corpus.txt"
  // and model_prefix "tokenizer" as the fixture's spm run did.
  EXPECT_EQ(cx::io::sha256_file_hex(out + "/tokenizer.model"),
            "bde356c19d1a01633dcdda67582771bb63d37597a5c42d853b8e4c691dec7005");
  EXPECT_EQ(cx::io::read_file_bytes(out + "/tokenizer_config.json"),
            cx::io::read_file_bytes(fixture_dir() + "/tokenizer_config.json"));
  EXPECT_EQ(cx::io::read_file_bytes(out + "/special_tokens_map.json"),
            cx::io::read_file_bytes(fixture_dir() + "/special_tokens_map.json"));
  const Tokenizer back = Tokenizer::load(out);
  EXPECT_EQ(back.vocab_size(), 512);
  EXPECT_FALSE(back.legacy());
  EXPECT_TRUE(back.add_bos_token());
  EXPECT_EQ(back.encode("XXXX XXXX right pleural effusion.", true),
            (std::vector<std::int64_t>{1, 309, 309, 414, 343, 332, 459}));
  // No temporary folder is left beside the output.
  int entries = 0;
  for (const auto& e : fs::directory_iterator(t.path())) entries += e.path().filename() == "tok" ? 0 : 1;
  EXPECT_EQ(entries, 0);
}

TEST(TextTokenizer, PlaceholdersAreOneTokenEach) {
  // A small MIMIC/Open-i-like corpus; "XXXX" and "___" are placeholders (the default), so they are
  // single pieces wherever they stand: alone, at the start, after punctuation, in runs.
  std::vector<std::string> lines;
  const char* base[] = {"No acute cardiopulmonary process.", "Heart size is normal. Lungs are clear.",
                        "Dr. ___ was notified on ___ at 10:30.", "XXXX XXXX right pleural effusion.",
                        "Comparison: ___.", "Normal chest x-XXXX.", "The ___ tube is in place.",
                        "Stable 2.6 cm nodule in the left upper lobe."};
  for (int r = 0; r < 40; ++r)
    for (const char* b : base) lines.push_back(b);
  cx_test::TempDir t("cx_text_train");
  cx::text::TokenizerTrainOptions o;
  o.vocab_size = 330;  // 3 specials + 4 placeholder pieces + 256 bytes + the characters
  cx::text::train_tokenizer(lines, t / "tok", o);
  const Tokenizer tok = Tokenizer::load(t / "tok");
  const std::string sp = "\xE2\x96\x81";  // ▁
  const std::int64_t xxxx = tok.piece_to_id("XXXX"), blank = tok.piece_to_id("___");
  const std::int64_t word_xxxx = tok.piece_to_id(sp + "XXXX"), word_blank = tok.piece_to_id(sp + "___");
  // User-defined pieces come right after unk/bos/eos, bare forms first; bytes follow them.
  ASSERT_EQ(xxxx, 3);
  ASSERT_EQ(blank, 4);
  ASSERT_EQ(word_xxxx, 5);
  ASSERT_EQ(word_blank, 6);
  EXPECT_EQ(tok.piece_type(xxxx), "user_defined");
  EXPECT_EQ(tok.piece_type(word_blank), "user_defined");
  EXPECT_EQ(tok.id_to_piece(7), "<0x00>");
  auto count = [&](const std::string& text, std::int64_t id) {
    int n = 0;
    for (auto i : tok.encode_plain(text)) n += i == id;
    return n;
  };
  // After a space (or at the start, with the dummy prefix): the word-initial piece, one token.
  EXPECT_EQ(count("Dr. ___ was notified on ___ at ___.", word_blank), 3);
  EXPECT_EQ(tok.encode_plain("___"), (std::vector<std::int64_t>{word_blank}));
  EXPECT_EQ(tok.encode_plain("XXXX XXXX"), (std::vector<std::int64_t>{word_xxxx, word_xxxx}));
  // Glued to punctuation or another placeholder: the bare piece, still one token, never merged.
  EXPECT_EQ(count("(___)", blank), 1);
  EXPECT_EQ(count("x-XXXX.", xxxx), 1);
  EXPECT_EQ(tok.encode_plain("XXXXXXXX"), (std::vector<std::int64_t>{word_xxxx, xxxx}));
  const auto p = tok.pieces("Dr. ___ at x-XXXX.");
  EXPECT_EQ(std::count(p.begin(), p.end(), sp + "___"), 1);
  EXPECT_EQ(std::count(p.begin(), p.end(), "XXXX"), 1);
  EXPECT_EQ(p.back(), ".");
  // HF encoding: after a special token (no dummy prefix) the bare form.
  EXPECT_EQ(tok.encode("</s>XXXX", false), (std::vector<std::int64_t>{2, xxxx}));
  EXPECT_EQ(tok.decode(tok.encode("Dr. ___ at XXXX.")), "Dr. ___ at XXXX.");
  // Same lines, same options: same bytes.
  cx::text::train_tokenizer(lines, t / "tok2", o);
  EXPECT_EQ(cx::io::read_file_bytes(t / "tok/tokenizer.model"), cx::io::read_file_bytes(t / "tok2/tokenizer.model"));
  // Training over an existing folder replaces it; errors name the folder.
  cx::text::train_tokenizer(lines, t / "tok", o);
  EXPECT_EQ(cx_test::error_of([&] { cx::text::train_tokenizer({"a\nb"}, t / "bad", o); }),
            t / "bad" + ": training line 1 holds a line break");
  o.vocab_size = 100000;
  const std::string big = cx_test::error_of([&] { cx::text::train_tokenizer(lines, t / "bad", o); });
  EXPECT_EQ(big.rfind(t / "bad" + ": tokenizer training failed: ", 0), 0u) << big;
  EXPECT_FALSE(fs::exists(t / "bad"));
}
