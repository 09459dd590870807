#include "cx/model/generate.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>

#include "cx/cli/error.hpp"

namespace cx::model {
namespace {

constexpr float kBarred = -std::numeric_limits<float>::infinity();

void check_options(const SearchOptions& o, const torch::Tensor& first_logits) {
  if (o.beams < 1 || o.beams > 1024) throw Error("generate: beams must be in 1-1024, got " + std::to_string(o.beams));
  if (o.max_new_tokens < 0) throw Error("generate: max_new_tokens must be >= 0");
  if (o.min_new_tokens < 0) throw Error("generate: min_new_tokens must be >= 0");
  if (o.no_repeat_ngram < 0) throw Error("generate: no_repeat_ngram must be >= 0");
  if (!std::isfinite(o.length_penalty)) throw Error("generate: length_penalty must be finite");
  if (first_logits.dim() != 2 || first_logits.size(1) < 1)
    throw Error("generate: first logits must be [rows, vocabulary]");
}

torch::Tensor index_tensor(const std::vector<std::int64_t>& v) {
  return torch::tensor(v.empty() ? std::vector<std::int64_t>{} : v, torch::kLong);
}

bool bans_active(const SearchOptions& o, std::int64_t generated) {
  return o.no_repeat_ngram > 0 || (o.eos_id >= 0 && generated < o.min_new_tokens);
}

// Sets the barred tokens of one row to -inf: EOS before min_new_tokens, and every token that would
// complete an n-gram already present in the row's generated tokens.
void apply_bans(const SearchOptions& o, const std::vector<std::int64_t>& tokens, float* row, std::int64_t vocab) {
  const auto generated = static_cast<std::int64_t>(tokens.size());
  if (o.eos_id >= 0 && o.eos_id < vocab && generated < o.min_new_tokens) row[o.eos_id] = kBarred;
  const std::int64_t n = o.no_repeat_ngram;
  if (n <= 0 || generated + 1 < n) return;
  const std::int64_t prefix = generated - (n - 1);  // start of the n-1 tokens the next one would follow
  for (std::int64_t s = 0; s + n <= generated; ++s) {
    bool same = true;
    for (std::int64_t j = 0; j < n - 1 && same; ++j) same = tokens[s + j] == tokens[prefix + j];
    const std::int64_t banned = tokens[s + n - 1];
    if (same && banned >= 0 && banned < vocab) row[banned] = kBarred;
  }
}

torch::Tensor host_floats(const torch::Tensor& t) {
  torch::Tensor c = t.detach().to(torch::kCPU, torch::kFloat32).contiguous();
  if (c.isnan().any().item<bool>()) throw Error("generate: the model's logits hold NaN");
  return c;
}

// Hugging Face's BeamHypotheses: the `beams` best finished sequences of one input row.
struct Finished {
  struct Hyp {
    double score;
    std::vector<std::int64_t> tokens;
  };
  std::vector<Hyp> hyps;
  double worst = 1e9;
  bool done = false;

  void add(const std::vector<std::int64_t>& tokens, double sum, std::int64_t length, const SearchOptions& o) {
    const double score = sum / std::pow(static_cast<double>(length), o.length_penalty);
    if (static_cast<int>(hyps.size()) < o.beams || score > worst) {
      hyps.push_back({score, tokens});
      if (static_cast<int>(hyps.size()) > o.beams) {
        std::size_t lowest = 0;  // the first of the lowest scores goes, as sorted() on (score, index)
        for (std::size_t i = 1; i < hyps.size(); ++i)
          if (hyps[i].score < hyps[lowest].score) lowest = i;
        hyps.erase(hyps.begin() + static_cast<std::ptrdiff_t>(lowest));
        worst = hyps.front().score;
        for (const auto& h : hyps) worst = std::min(worst, h.score);
      } else {
        worst = std::min(worst, score);
      }
    }
  }

  bool is_done(double best_sum, std::int64_t length, const SearchOptions& o) const {
    if (static_cast<int>(hyps.size()) < o.beams) return false;
    return worst >= best_sum / std::pow(static_cast<double>(length), o.length_penalty);
  }

  const std::vector<std::int64_t>& best() const {
    std::size_t b = 0;
    for (std::size_t i = 1; i < hyps.size(); ++i)
      if (hyps[i].score >= hyps[b].score) b = i;
    return hyps[b].tokens;
  }
};

struct Beam {
  std::vector<std::int64_t> tokens;
  double sum = 0;
};

}  // namespace

std::vector<std::vector<std::int64_t>> greedy_search(CausalDecoder& decoder, const torch::Tensor& first_logits,
                                                     const SearchOptions& options) {
  check_options(options, first_logits);
  const std::int64_t rows = first_logits.size(0), vocab = first_logits.size(1);
  std::vector<std::vector<std::int64_t>> out(static_cast<std::size_t>(rows));
  std::vector<std::int64_t> live(static_cast<std::size_t>(rows));  // input row of each decoder row
  std::iota(live.begin(), live.end(), 0);
  torch::Tensor logits = first_logits;
  for (std::int64_t t = 0; t < options.max_new_tokens && !live.empty(); ++t) {
    std::vector<std::int64_t> next(live.size());
    // On the host, so that ties surely go to the first index (torch's argmax kernels do not
    // promise it on every path).
    torch::Tensor host = host_floats(logits);
    float* data = host.data_ptr<float>();
    const bool bans = bans_active(options, t);
    for (std::size_t r = 0; r < live.size(); ++r) {
      float* row = data + static_cast<std::int64_t>(r) * vocab;
      if (bans) apply_bans(options, out[static_cast<std::size_t>(live[r])], row, vocab);
      std::int64_t best = 0;
      for (std::int64_t v = 1; v < vocab; ++v)
        if (row[v] > row[best]) best = v;
      next[r] = best;
    }
    std::vector<std::int64_t> keep, keep_ids;
    for (std::size_t r = 0; r < live.size(); ++r) {
      if (options.eos_id >= 0 && next[r] == options.eos_id) continue;
      out[static_cast<std::size_t>(live[r])].push_back(next[r]);
      keep.push_back(static_cast<std::int64_t>(r));
      keep_ids.push_back(next[r]);
    }
    if (t + 1 == options.max_new_tokens || keep.empty()) break;
    if (keep.size() != live.size()) {
      decoder.select_rows(index_tensor(keep));
      std::vector<std::int64_t> still;
      for (auto r : keep) still.push_back(live[static_cast<std::size_t>(r)]);
      live = std::move(still);
    }
    logits = decoder.step(index_tensor(keep_ids));
  }
  return out;
}

std::vector<std::vector<std::int64_t>> beam_search(CausalDecoder& decoder, const torch::Tensor& first_logits,
                                                   const SearchOptions& options) {
  check_options(options, first_logits);
  const std::int64_t inputs = first_logits.size(0), vocab = first_logits.size(1);
  const int K = options.beams;
  std::vector<Finished> finished(static_cast<std::size_t>(inputs));
  std::vector<std::vector<Beam>> beams(static_cast<std::size_t>(inputs), std::vector<Beam>(static_cast<std::size_t>(K)));
  // Before the first step every beam of an input is the same row; HF gives all but the first a
  // score of -1e9 so that the first step draws its candidates from one copy.
  for (auto& b : beams)
    for (int k = 1; k < K; ++k) b[static_cast<std::size_t>(k)].sum = -1e9;
  std::vector<std::int64_t> active(static_cast<std::size_t>(inputs));  // input rows still searching
  std::iota(active.begin(), active.end(), 0);

  struct Candidate {
    double score;
    std::int64_t token;
    int beam;
  };
  std::vector<float> buffer(static_cast<std::size_t>(K * vocab));
  std::vector<std::int64_t> order(static_cast<std::size_t>(K * vocab));
  torch::Tensor logits = first_logits;
  for (std::int64_t t = 0; t < options.max_new_tokens && !active.empty(); ++t) {
    const bool expanded = t > 0;  // the decoder holds active.size() * K rows (else one per input)
    const torch::Tensor logprobs = host_floats(torch::log_softmax(logits.detach().to(torch::kFloat32), -1));
    const float* lp = logprobs.data_ptr<float>();
    std::vector<std::int64_t> next_active, parent_rows, next_tokens;
    for (std::size_t a = 0; a < active.size(); ++a) {
      const auto input = static_cast<std::size_t>(active[a]);
      std::vector<Beam>& current = beams[input];
      for (int k = 0; k < K; ++k) {
        const std::int64_t row = expanded ? static_cast<std::int64_t>(a) * K + k : static_cast<std::int64_t>(a);
        float* dst = buffer.data() + static_cast<std::int64_t>(k) * vocab;
        std::copy(lp + row * vocab, lp + (row + 1) * vocab, dst);
        apply_bans(options, current[static_cast<std::size_t>(k)].tokens, dst, vocab);
      }
      auto score_of = [&](std::int64_t i) {
        return static_cast<double>(buffer[static_cast<std::size_t>(i)]) + current[static_cast<std::size_t>(i / vocab)].sum;
      };
      const std::int64_t take = std::min<std::int64_t>(2 * K, K * vocab);
      std::iota(order.begin(), order.end(), 0);
      std::partial_sort(order.begin(), order.begin() + take, order.end(), [&](std::int64_t x, std::int64_t y) {
        const double sx = score_of(x), sy = score_of(y);
        if (sx != sy) return sx > sy;
        if (x % vocab != y % vocab) return x % vocab < y % vocab;
        return x < y;
      });
      const double best_candidate = score_of(order.front());
      std::vector<Beam> next;
      std::vector<std::int64_t> parents;
      for (std::int64_t rank = 0; rank < take && static_cast<int>(next.size()) < K; ++rank) {
        const std::int64_t i = order[static_cast<std::size_t>(rank)];
        const Candidate c{score_of(i), i % vocab, static_cast<int>(i / vocab)};
        const Beam& from = current[static_cast<std::size_t>(c.beam)];
        if (options.eos_id >= 0 && c.token == options.eos_id) {
          if (rank >= K) continue;  // an EOS below the first `beams` candidates is dropped
          finished[input].add(from.tokens, c.score, t + 1, options);
        } else {
          Beam b{from.tokens, c.score};
          b.tokens.push_back(c.token);
          next.push_back(std::move(b));
          parents.push_back(expanded ? static_cast<std::int64_t>(a) * K + c.beam : static_cast<std::int64_t>(a));
        }
      }
      if (static_cast<int>(next.size()) < K)
        throw Error("generate: fewer than " + std::to_string(K) + " continuing candidates (vocabulary of " +
                    std::to_string(vocab) + " for " + std::to_string(K) + " beams)");
      current = std::move(next);
      Finished& f = finished[input];
      f.done = f.done || f.is_done(best_candidate, t + 1, options);
      if (f.done) continue;
      next_active.push_back(active[a]);
      for (int k = 0; k < K; ++k) {
        parent_rows.push_back(parents[static_cast<std::size_t>(k)]);
        next_tokens.push_back(current[static_cast<std::size_t>(k)].tokens.back());
      }
    }
    active = std::move(next_active);
    if (t + 1 == options.max_new_tokens || active.empty()) break;
    decoder.select_rows(index_tensor(parent_rows));
    logits = decoder.step(index_tensor(next_tokens));
  }
  std::vector<std::vector<std::int64_t>> out(static_cast<std::size_t>(inputs));
  for (std::int64_t i = 0; i < inputs; ++i) {
    Finished& f = finished[static_cast<std::size_t>(i)];
    if (!f.done)
      for (const Beam& b : beams[static_cast<std::size_t>(i)])
        if (!b.tokens.empty()) f.add(b.tokens, b.sum, static_cast<std::int64_t>(b.tokens.size()), options);
    if (!f.hyps.empty()) out[static_cast<std::size_t>(i)] = f.best();
  }
  return out;
}

std::vector<std::vector<std::int64_t>> generate(CausalDecoder& decoder, const torch::Tensor& first_logits,
                                                const SearchOptions& options) {
  check_options(options, first_logits);
  return options.beams == 1 ? greedy_search(decoder, first_logits, options) : beam_search(decoder, first_logits, options);
}

}  // namespace cx::model
