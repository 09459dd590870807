// generate(): greedy and beam search over decoders with known next-token probabilities (worked
// by hand below, following Hugging Face's BeamSearchScorer), and over the tiny-llama fixture.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <functional>
#include <map>

#include "cx/model/generate.hpp"
#include "cx/model/llama.hpp"
#include "test_support.hpp"

namespace {

using namespace cx::model;
using Ids = std::vector<std::int64_t>;
using Rows = std::vector<Ids>;

constexpr std::int64_t A = 0, B = 1, EOS = 2, Cc = 3;  // a 4-token vocabulary

// A decoder whose next-token probabilities are a function of (input row, tokens so far): each row
// keeps its history; select_rows reorders the rows as a cache would. Logits are log(p), so
// log_softmax gives back log(p).
class TableDecoder : public CausalDecoder {
 public:
  using Table = std::function<std::vector<double>(std::int64_t input, const Ids& tokens)>;
  TableDecoder(Table table, std::int64_t inputs) : table_(std::move(table)) {
    for (std::int64_t i = 0; i < inputs; ++i) rows_.push_back({i, {}});
  }
  torch::Tensor logits() const {
    std::vector<float> out;
    for (const auto& [input, tokens] : rows_)
      for (double p : table_(input, tokens)) out.push_back(static_cast<float>(std::log(p)));
    const auto n = static_cast<std::int64_t>(rows_.size());
    return torch::tensor(out).view({n, static_cast<std::int64_t>(out.size()) / std::max<std::int64_t>(n, 1)});
  }
  torch::Tensor step(const torch::Tensor& ids) override {
    EXPECT_EQ(ids.numel(), static_cast<std::int64_t>(rows_.size()));
    for (std::size_t r = 0; r < rows_.size(); ++r) rows_[r].second.push_back(ids[static_cast<std::int64_t>(r)].item<std::int64_t>());
    row_counts.push_back(static_cast<std::int64_t>(rows_.size()));
    return logits();
  }
  void select_rows(const torch::Tensor& index) override {
    std::vector<std::pair<std::int64_t, Ids>> next;
    for (std::int64_t i = 0; i < index.numel(); ++i) next.push_back(rows_.at(static_cast<std::size_t>(index[i].item<std::int64_t>())));
    rows_ = std::move(next);
  }
  std::vector<std::int64_t> row_counts;  // rows at each step()

 private:
  Table table_;
  std::vector<std::pair<std::int64_t, Ids>> rows_;
};

Rows run(const TableDecoder::Table& table, std::int64_t inputs, SearchOptions o, std::vector<std::int64_t>* counts = nullptr,
         bool force_beam = false) {
  TableDecoder d(table, inputs);
  const torch::Tensor first = d.logits();
  Rows out = force_beam ? beam_search(d, first, o) : generate(d, first, o);
  if (counts) *counts = d.row_counts;
  return out;
}

// The beam scenario worked by hand (probabilities of A, B, EOS, C after the tokens so far).
std::vector<double> scenario(std::int64_t, const Ids& t) {
  if (t.empty()) return {0.5, 0.4, 0.05, 0.05};
  if (t == Ids{A}) return {0.04, 0.03, 0.9, 0.03};
  if (t == Ids{B}) return {0.6, 0.2, 0.1, 0.1};
  if (t == Ids{B, A}) return {0.02, 0.02, 0.95, 0.01};
  return {0.25, 0.25, 0.25, 0.25};
}

TEST(Beam, LengthPenaltyPicksTheHandComputedHypothesis) {
  // Step 1: candidates A (log .5), B (log .4): both live. Step 2: "A EOS" (sum log .45 = -0.799)
  // ends at rank 0 with length 2; live: "B A" (-1.427), "B B" (-2.526). Step 3: "B A EOS"
  // (sum log .228 = -1.478, length 3) ends at rank 0.
  //   length_penalty 1: scores -0.3996 and -0.4927; done at once (worst -0.4927 >= -1.478 / 3):
  //   "A" wins.
  //   length_penalty 2: scores -0.1998 and -0.1642; not done (-0.1998 < -1.478 / 9); step 4 draws
  //   only from the uniform rows (best -5.298 / 16 = -0.331 <= worst): done, "B A" wins.
  SearchOptions o;
  o.beams = 2;
  o.max_new_tokens = 10;
  o.length_penalty = 1.0;
  std::vector<std::int64_t> counts;
  EXPECT_EQ(run(scenario, 1, o, &counts), (Rows{{A}}));
  EXPECT_EQ(counts, (std::vector<std::int64_t>{2, 2}));  // expanded to 2 beams before the first step
  o.length_penalty = 2.0;
  EXPECT_EQ(run(scenario, 1, o, &counts), (Rows{{B, A}}));
  EXPECT_EQ(counts, (std::vector<std::int64_t>{2, 2, 2}));
  o.length_penalty = 0.0;  // plain sums: -0.799 beats -1.478
  EXPECT_EQ(run(scenario, 1, o), (Rows{{A}}));
  // max_new_tokens 2 with length_penalty 2: finished "A" (-0.1998) beside the live beams "B A"
  // (-1.427 / 4 = -0.357) and "B B" (-0.63): "A".
  o.length_penalty = 2.0;
  o.max_new_tokens = 2;
  EXPECT_EQ(run(scenario, 1, o), (Rows{{A}}));
  // max_new_tokens 1: only live beams, "A" (log .5) over "B" (log .4).
  o.max_new_tokens = 1;
  EXPECT_EQ(run(scenario, 1, o), (Rows{{A}}));
}

TEST(Beam, MinNewTokensAndNoRepeatNgram) {
  // EOS barred for the first 3 tokens. Step 2: "A EOS" is barred, so after "A" the best is
  // -0.693 + log .04 = -3.912, below "B A" (-1.427) and "B B" (-2.526), which live. Step 3 (2
  // tokens, EOS still barred): "B A *" = -1.427 + log .02 = -5.339 < "B B *" = -3.912: "B B A",
  // "B B B" live. Step 4: every candidate is -5.298; ranked by token, then beam, "B B A A" and
  // "B B B A" take the two places and the EOS candidates (ranks 4-5, >= beams) are dropped. At
  // max_new_tokens 4 the two live beams tie (-5.298 / 4); the later added wins.
  SearchOptions o;
  o.beams = 2;
  o.max_new_tokens = 4;
  o.min_new_tokens = 3;
  EXPECT_EQ(run(scenario, 1, o), (Rows{{B, B, B, A}}));
  // no_repeat_ngram 1 bans every generated token: greedy over A .5 B .3 C .15 EOS .05 -> A B C, then EOS.
  auto fixed = [](std::int64_t, const Ids&) { return std::vector<double>{0.5, 0.3, 0.05, 0.15}; };
  SearchOptions g;
  g.max_new_tokens = 10;
  g.no_repeat_ngram = 1;
  EXPECT_EQ(run(fixed, 1, g), (Rows{{A, B, Cc}}));
  // bigrams: A A (A A seen -> B) A (A A, A B seen -> C) A (all after A seen -> EOS).
  g.no_repeat_ngram = 2;
  EXPECT_EQ(run(fixed, 1, g), (Rows{{A, A, B, A, Cc, A}}));
  g.no_repeat_ngram = 0;
  g.max_new_tokens = 4;
  EXPECT_EQ(run(fixed, 1, g), (Rows{{A, A, A, A}}));
  // EOS first: nothing generated; with min_new_tokens 2, two tokens then EOS.
  auto eager = [](std::int64_t, const Ids&) { return std::vector<double>{0.3, 0.1, 0.6}; };
  g.max_new_tokens = 10;
  EXPECT_EQ(run(eager, 1, g), (Rows{{}}));
  g.min_new_tokens = 2;
  EXPECT_EQ(run(eager, 1, g), (Rows{{A, A}}));
  g.eos_id = -1;  // no EOS: runs to max_new_tokens
  g.max_new_tokens = 3;
  EXPECT_EQ(run(eager, 1, g), (Rows{{EOS, EOS, EOS}}));
}

TEST(Beam, OneBeamEqualsGreedy) {
  // A history-dependent table with an EOS after a few tokens, min tokens and n-gram bans.
  auto table = [](std::int64_t input, const Ids& t) {
    std::vector<double> p(7, 0.05);
    std::size_t top = (t.size() * 3 + static_cast<std::size_t>(input)) % 7;
    if (top == EOS) top = 5;
    p[top] = 0.5;
    if (t.size() == 5) p[EOS] = 0.6;
    double s = 0;
    for (double v : p) s += v;
    for (double& v : p) v /= s;
    return p;
  };
  for (int min_tokens : {0, 6})
    for (int ngram : {0, 2}) {
      SearchOptions o;
      o.max_new_tokens = 9;
      o.min_new_tokens = min_tokens;
      o.no_repeat_ngram = ngram;
      const Rows greedy = run(table, 3, o);
      EXPECT_EQ(run(table, 3, o, nullptr, true), greedy) << min_tokens << " " << ngram;
      EXPECT_EQ(greedy[0].size(), min_tokens ? 9u : 5u);
    }
}

TEST(Beam, BatchedInputsSearchIndependently) {
  auto table = [](std::int64_t input, const Ids& t) {
    if (input == 0) return scenario(0, t);
    return std::vector<double>{0.1, 0.2, t.size() >= 2 ? 0.6 : 0.01, 0.3};
  };
  SearchOptions o;
  o.beams = 2;
  o.max_new_tokens = 10;
  o.length_penalty = 2.0;
  std::vector<std::int64_t> counts;
  const Rows both = run(table, 2, o, &counts);
  EXPECT_EQ(both[0], (Ids{B, A}));
  auto second = [&](std::int64_t, const Ids& t) { return table(1, t); };
  EXPECT_EQ(both[1], run(second, 1, o)[0]);
  EXPECT_EQ(counts.front(), 4);  // 2 inputs x 2 beams
}

TEST(Greedy, FinishedRowsLeaveTheDecoder) {
  auto table = [](std::int64_t input, const Ids& t) {
    std::vector<double> p = {0.4, 0.3, 0.1, 0.2};
    if (input == 1 && t.size() == 1) p = {0.1, 0.1, 0.7, 0.1};
    return p;
  };
  SearchOptions o;
  o.max_new_tokens = 4;
  std::vector<std::int64_t> counts;
  EXPECT_EQ(run(table, 3, o, &counts), (Rows{{A, A, A, A}, {A}, {A, A, A, A}}));
  EXPECT_EQ(counts, (std::vector<std::int64_t>{3, 2, 2}));
  o.max_new_tokens = 0;
  EXPECT_EQ(run(table, 2, o), (Rows{{}, {}}));
  o.beams = 0;
  EXPECT_EQ(cx_test::error_of([&] { run(table, 1, o); }), "generate: beams must be in 1-1024, got 0");
}

TEST(Greedy, TiesGoToTheLowerToken) {
  auto tie = [](std::int64_t, const Ids&) { return std::vector<double>{0.1, 0.35, 0.2, 0.35}; };
  SearchOptions o;
  o.max_new_tokens = 2;
  EXPECT_EQ(run(tie, 1, o), (Rows{{B, B}}));
  // Two beams: step 1 keeps "B" then "C" (lower token first); step 2's four candidates tie and
  // rank by token, then beam: "B B", "C B" live. At max_new_tokens both finish with equal scores;
  // HF's sorted-then-pop takes the later added: "C B".
  o.beams = 2;
  EXPECT_EQ(run(tie, 1, o), (Rows{{Cc, B}}));
}

// The tiny-llama fixture: one beam is greedy (ids of case C), and beams on the padded batch of
// case A give, per row, what the row gives alone.
TEST(LlamaBeam, FixtureOneBeamIsGreedyAndBatchedRowsMatchAlone) {
  const std::string dir = cx_test::shared_dir() + "/fixtures/llm/tiny-llama";
  if (!std::filesystem::exists(dir + "/model.safetensors")) GTEST_SKIP() << "fixture absent: " << dir;
  auto m = load_llama(dir);
  // Case A's rows: row 0 left-padded by 4, row 1 full.
  const torch::Tensor ids = torch::tensor({{0, 0, 0, 0, 1, 300, 301, 302, 303, 304, 305},
                                           {1, 310, 311, 312, 313, 314, 315, 316, 317, 318, 319}});
  const torch::Tensor mask = torch::tensor({{0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1}, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}});
  SearchOptions o;
  o.max_new_tokens = 8;
  LlamaDecoder g(*m);
  const Rows greedy = greedy_search(g, g.prefill(m->embed(ids), mask), o);
  LlamaDecoder b1(*m);
  EXPECT_EQ(beam_search(b1, b1.prefill(m->embed(ids), mask), o), greedy);

  o.beams = 3;
  o.length_penalty = 1.0;
  LlamaDecoder both(*m);
  const Rows batched = generate(both, both.prefill(m->embed(ids), mask), o);
  for (std::int64_t r = 0; r < 2; ++r) {
    const torch::Tensor keep = mask[r].nonzero().view({-1});
    const torch::Tensor row = ids[r].index_select(0, keep).unsqueeze(0);
    LlamaDecoder alone(*m);
    EXPECT_EQ(generate(alone, alone.prefill(m->embed(row), torch::ones_like(row)), o)[0], batched[static_cast<std::size_t>(r)]);
  }
}

}  // namespace
