#pragma once
// Token-by-token decoding shared by every text decoder (cx-report's small decoder and the Llama
// language model): greedy and beam search over a model that keeps a key/value cache per row.
// The model side is CausalDecoder: the caller primes it (its own prefill: prompt, image prefix,
// encoder memory) and hands generate() the logits of each row's last position; generate() then
// appends one token per live row with step() and reorders rows with select_rows() (beam search keeps
// the best rows, duplicates them, drops finished ones). Deterministic: ties go to the lower token id
// (then the lower row), no sampling.
#include <cstdint>
#include <vector>

#include <torch/torch.h>

namespace cx::model {

class CausalDecoder {
 public:
  virtual ~CausalDecoder() = default;
  // Appends one token per row (ids int64 [rows], on any device) to every sequence and returns the
  // next-token logits [rows, V] (float32).
  virtual torch::Tensor step(const torch::Tensor& ids) = 0;
  // Row i of the new state is old row index[i] (int64 [rows'], rows' may differ from rows): the cache
  // and every per-row condition (encoder memory, attention mask, positions) follow.
  virtual void select_rows(const torch::Tensor& index) = 0;
};

struct SearchOptions {
  int beams = 1;                // 1: greedy
  int max_new_tokens = 128;     // tokens generated per row at most (EOS included)
  int min_new_tokens = 0;       // EOS is not allowed before this many tokens
  double length_penalty = 1.0;  // beam score = sum of log-probabilities / length^length_penalty
  int no_repeat_ngram = 0;      // > 0: a token that would repeat an n-gram of the row's generated tokens is barred
  std::int64_t eos_id = 2;      // < 0: none
};

// first_logits [B, V]: each row's logits after the caller's prefill (the decoder holds B rows).
// Returns, per input row, the generated ids without the EOS. With beams > 1 the decoder is expanded
// to B * beams rows (select_rows) before the first step().
std::vector<std::vector<std::int64_t>> generate(CausalDecoder& decoder, const torch::Tensor& first_logits,
                                                const SearchOptions& options);

// The two searches generate() chooses between (beams == 1: greedy_search, else beam_search).
// greedy_search: argmax of the logits after the bans (first index on ties); a row that emits EOS
// stops and leaves the decoder (select_rows keeps the others).
// beam_search follows Hugging Face's BeamSearchScorer (transformers >= 4.36, early_stopping=False):
// scores are log_softmax(logits) after the bans (barred tokens -inf) plus the beam's sum; the
// 2 * beams best (beam, token) candidates of each input row are taken in order (ties: lower token,
// then lower beam); an EOS candidate among the first `beams` ends a hypothesis scored
// sum / generated_length^length_penalty (EOS counted), the others continue until `beams` live ones;
// an input row is done once it holds `beams` finished hypotheses and the worst of them is >= the
// best candidate's sum / current_length^length_penalty (HF's heuristic); at max_new_tokens the live
// beams join the finished ones (their length without EOS), and the best score wins (on equal
// scores the later-added one, as HF's sort-and-pop). Before the first step the decoder is expanded
// to B * beams rows; rows of finished inputs leave it. With beams == 1 it gives greedy_search's ids.
// Bans: no_repeat_ngram over the row's generated tokens, and EOS before min_new_tokens.
std::vector<std::vector<std::int64_t>> greedy_search(CausalDecoder& decoder, const torch::Tensor& first_logits,
                                                     const SearchOptions& options);
std::vector<std::vector<std::int64_t>> beam_search(CausalDecoder& decoder, const torch::Tensor& first_logits,
                                                   const SearchOptions& options);

}  // namespace cx::model
