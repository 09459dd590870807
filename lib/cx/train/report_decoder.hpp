#pragma once
// The small report decoder of cx-report (--decoder small): a transformer decoder trained from scratch
// that writes a report while cross-attending to a frozen encoder's tokens.
//
// Memory (the encoder side): a record's tokens in the layout of report_decoder_config.hpp (CLS when
// asked, register tokens when present and asked, then the patch tokens), standardised per channel
// with the training set's mean and standard deviation (saved with the model), projected linearly to
// d_model, plus a learned embedding per memory slot, then LayerNorm'd.
// Decoder: learned token and position embeddings; `layers` pre-LayerNorm blocks of causal
// self-attention, cross-attention to the memory and a GELU feed-forward layer, each added to the
// residual stream; a final LayerNorm; the output head is the token embedding (tied weights).
// Dropout (training only) on the embedded tokens, the projected memory and each residual branch,
// drawn from counter-based generators (seed, step), so training is a pure function of the step.
// Initialisation as GPT-2's: N(0, 0.02) weights and embeddings, residual output projections
// N(0, 0.02 / sqrt(3 layers)), zero biases, unit LayerNorms; from the seed alone.
//
// Sequences: a record's ids are the report's tokens without BOS or EOS. The decoder reads
// [BOS, t1 .. tn] and is taught [t1 .. tn, EOS], both cut at max_len positions (a cut report loses
// its EOS). Padding past the end is never attended to (causal mask) and never scored.
//
// Weights (decoder.safetensors), d = d_model:
//   memory.proj.weight [d, D], memory.proj.bias [d], memory.position [S, d], memory.norm.weight/.bias [d]
//   embed.tokens [V, d], embed.positions [max_len, d]
//   layers.<i>.{self_norm,cross_norm,ffn_norm}.{weight,bias} [d]
//   layers.<i>.{self_attn,cross_attn}.{q,k,v,out}.weight [d, d], .bias [d]
//   layers.<i>.ffn.fc1.weight [F, d], .bias [F]; layers.<i>.ffn.fc2.weight [d, F], .bias [d]
//   final_norm.weight/.bias [d]; standardize.mean/.std [D] when standardising
#include <cmath>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "cx/data/record_source.hpp"
#include "cx/io/stream.hpp"
#include "cx/model/generate.hpp"
#include "cx/train/report_decoder_config.hpp"
#include "cx/train/schedule.hpp"

namespace cx::train {

// --- memories from records ----------------------------------------------------------------------

struct MemoryOptions {
  bool registers = true;  // use reg.npy when the records have it
  bool cls = false;       // put cls.npy first (then every record must have it)
};

// The layout of a record's memory under `options` (patch.npy required). Errors name `where`
// (the record) and the problem.
MemoryLayout record_memory_layout(const io::Record& record, const MemoryOptions& options, const std::string& where);

// A record's memory [S, D] in `layout` (float16 when its patch tokens are float16, float32 otherwise;
// the other fields are converted to that). A record without a field the layout needs, or with tokens
// of another shape, throws cx::Error naming `where`.
torch::Tensor record_memory(const io::Record& record, const MemoryLayout& layout, const std::string& where);

// Training or validation data: memories in memory, the report text of each record (.txt), and the
// token ids that the caller fills in (tokenisation is the caller's).
struct ReportSet {
  std::vector<std::string> keys;
  torch::Tensor memory;                        // [N, S, D] float16 or float32
  std::vector<std::string> texts;              // the .txt field ("" where absent and not required)
  std::vector<std::vector<std::int64_t>> ids;  // per record, without BOS/EOS; empty until filled
  MemoryLayout layout;
  nlohmann::json header;                       // the first stream's header ("model" names the encoder)
  std::int64_t rows() const { return static_cast<std::int64_t>(keys.size()); }
};

// Reads every record. The layout comes from the first record (or `layout` when given: a validation
// set must match the training set's). `require_text`: a record without .txt throws. Errors name
// `where`, then the record. An empty stream is an error.
ReportSet load_report_set(data::RecordSource& source, const MemoryOptions& options, bool require_text,
                          const std::string& where, const MemoryLayout* layout = nullptr);

// --- the model ----------------------------------------------------------------------------------

class ReportDecoderModule : public torch::nn::Module {
 public:
  ReportDecoderModule(const ReportDecoderShape& shape, const MemoryLayout& memory);
  const ReportDecoderShape& shape() const { return shape_; }
  std::int64_t slots() const { return slots_; }

  // Deterministic from the seed (see the file comment).
  void init(std::uint64_t seed);

  // Standardised memory [B, S, D] float32 -> encoded memory [B, S, d]. `dropout` (training mode
  // only, may be null: none) draws the masks.
  torch::Tensor encode(const torch::Tensor& memory, at::Generator* dropout = nullptr);
  // Teacher forcing: ids [B, T] (T <= max_len) against encoded memory [B, S, d] -> logits [B, T, V].
  torch::Tensor decode(const torch::Tensor& ids, const torch::Tensor& encoded, at::Generator* dropout = nullptr);
  torch::Tensor forward(const torch::Tensor& memory, const torch::Tensor& ids, at::Generator* dropout = nullptr) {
    return decode(ids, encode(memory, dropout), dropout);
  }

  // The pieces the cached decoder runs one position at a time.
  struct Attention {
    torch::Tensor q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b;
  };
  struct Layer {
    torch::Tensor self_norm_w, self_norm_b, cross_norm_w, cross_norm_b, ffn_norm_w, ffn_norm_b;
    Attention self_attn, cross_attn;
    torch::Tensor fc1_w, fc1_b, fc2_w, fc2_b;
  };
  const std::vector<Layer>& layers() const { return layers_; }
  const torch::Tensor& token_embedding() const { return tok_; }
  const torch::Tensor& position_embedding() const { return pos_; }
  const torch::Tensor& final_norm_weight() const { return final_w_; }
  const torch::Tensor& final_norm_bias() const { return final_b_; }

 private:
  ReportDecoderShape shape_;
  std::int64_t slots_ = 0, dim_ = 0;
  torch::Tensor mem_w_, mem_b_, mem_pos_, mem_norm_w_, mem_norm_b_;
  torch::Tensor tok_, pos_, final_w_, final_b_;
  std::vector<Layer> layers_;
};

// A trained decoder: config (decoder.json), module, standardisation. For bfloat16 generation (CUDA),
// convert the module (module->to(device, torch::kBFloat16)): memories are standardised in float32
// and cast to the weights' dtype, and the cache's logits are float32 either way.
struct ReportDecoder {
  ReportDecoderConfig config;
  std::shared_ptr<ReportDecoderModule> module;
  torch::Tensor mean, std;  // [D] float32; undefined: no standardisation

  torch::Device device() const;
  // Raw memories [B, S, D] (any float dtype, any device) -> standardised float32 on the module's device.
  torch::Tensor standardize(const torch::Tensor& memory) const;
  // Teacher-forced logits [B, T, V] for raw memories and ids [B, T], no grad.
  torch::Tensor logits(const torch::Tensor& memory, const torch::Tensor& ids) const;
};

// Writes decoder.json and decoder.safetensors into an existing folder (not atomic by itself;
// cx-report wraps the folder in cli::write_folder_atomic and copies tokenizer.model beside).
void write_report_decoder_files(const std::string& folder, const ReportDecoder& decoder);
// The whole folder, atomically (a temporary folder renamed into place).
void write_report_decoder(const std::string& folder, const ReportDecoder& decoder);
// Errors name the folder or file and the problem: no such folder, no decoder.json, another format
// or a newer version, bad values, a missing weights file, tensors missing or of other shapes than
// decoder.json says. The module is left in eval mode on `device`.
ReportDecoder load_report_decoder(const std::string& folder, const torch::Device& device = torch::kCPU);

// --- decoding -----------------------------------------------------------------------------------

// model::CausalDecoder over a trained decoder: the self-attention keys and values of every layer
// are kept per row (max_len positions, filled one by one), the cross-attention keys and values of
// the memory are computed once by start(). Rows follow select_rows() (beam search). No grad.
// The decoder must outlive the cache. Use: first = cache.start(memory); model::generate(cache,
// first, options) with options.max_new_tokens <= cache.max_new_tokens() and eos_id the decoder's.
class ReportDecoderCache : public model::CausalDecoder {
 public:
  explicit ReportDecoderCache(const ReportDecoder& decoder);
  // Primes the cache with raw memories [B, S, D] and BOS; returns the first logits [B, V] float32.
  torch::Tensor start(const torch::Tensor& memory);
  // One token per row; throws cx::Error once max_len positions are used.
  torch::Tensor step(const torch::Tensor& ids) override;
  void select_rows(const torch::Tensor& index) override;
  std::int64_t rows() const { return rows_; }
  std::int64_t positions() const { return length_; }  // positions filled (BOS included)
  // The most tokens generate() may ask for (max_len - 1): SearchOptions::max_new_tokens at most this.
  std::int64_t max_new_tokens() const { return max_len_ - 1; }

 private:
  torch::Tensor forward_position(const torch::Tensor& ids);
  const ReportDecoder& decoder_;
  std::int64_t max_len_ = 0, rows_ = 0, length_ = 0;
  std::vector<torch::Tensor> self_k_, self_v_;    // [rows, H, max_len, hd]
  std::vector<torch::Tensor> cross_k_, cross_v_;  // [rows, H, S, hd]
};

// Greedy decoding of raw memories [B, S, D] (what model::generate does with beams 1, written out so
// that validation needs nothing else): per row, the ids up to but without EOS, at most
// max_new_tokens (0 or beyond the decoder's limit: max_len - 1).
std::vector<std::vector<std::int64_t>> greedy_decode(const ReportDecoder& decoder, const torch::Tensor& memory,
                                                     std::int64_t max_new_tokens = 0);

// --- training -----------------------------------------------------------------------------------

// Mean over the positions whose target is not `ignore` of the label-smoothed cross-entropy
// (1 - eps) * -log p[target] + eps * mean over the V classes of -log p (torch's label_smoothing).
// logits [B, T, V], targets int64 [B, T].
torch::Tensor label_smoothed_loss(const torch::Tensor& logits, const torch::Tensor& targets, double smoothing,
                                  std::int64_t ignore = -100);

// Decoder inputs and targets of token-id sequences (see "Sequences" above): input [N, L] padded with
// pad (eos when pad is -1), target [N, L] padded with -100, L = the longest sequence + 1 capped at max_len.
void teacher_forcing_batch(const std::vector<std::vector<std::int64_t>>& ids, const ReportTokenIds& tokens,
                           std::int64_t max_len, torch::Tensor& input, torch::Tensor& target);

enum class StopMetric { loss, bleu };
StopMetric parse_stop_metric(const std::string& name);  // "loss" | "bleu"; else UsageError
std::string stop_metric_name(StopMetric m);

struct ReportTrainOptions {
  ReportDecoderShape shape;  // vocab_size: the tokenizer's
  ReportTokenIds tokens;
  std::string tokenizer = "tokenizer.model";
  int epochs = 30;
  std::int64_t batch = 32;
  double lr = 5e-4;
  double weight_decay = 0.01;  // on matrices and embeddings; none on biases and LayerNorms
  Schedule schedule = Schedule::cosine;
  double warmup = 0.05;        // fraction of the updates spent warming up linearly
  double label_smoothing = 0.1;
  double clip = 1.0;           // gradient norm clipping (0: none)
  int patience = 5;            // validations without improvement before stopping; 0: never
  StopMetric stop_metric = StopMetric::loss;
  std::int64_t val_max_new_tokens = 0;  // greedy decoding for BLEU; 0: max_len - 1
  // Report text of generated or reference ids for BLEU (coco_tokenize'd); empty: the ids themselves
  // are the BLEU tokens.
  std::function<std::string(const std::vector<std::int64_t>&)> detokenize;
  bool standardize = true;
  std::uint64_t seed = 0;
  torch::Device device = torch::kCPU;
  std::string checkpoint_dir;         // "": no checkpoints
  std::int64_t checkpoint_every = 0;  // updates; 0: only when stop_after ends the session
  std::string resume;                 // a checkpoint folder to continue from
  std::int64_t stop_after = 0;        // end this session after this many updates in all (0: run to the end)
};

struct ReportTrainProgress {
  std::int64_t step = 0, total = 0;  // updates done / planned
  double loss = 0;                   // this update's (label-smoothed) loss
  int epoch = 0;                     // 1-based epoch just validated; 0 when none ran at this step
  double val_loss = std::nan("");    // mean token cross-entropy on the validation set (no smoothing)
  double val_bleu4 = std::nan("");   // when stopping on BLEU
  bool best = false;
};

struct ReportTrainResult {
  ReportDecoder decoder;  // complete when finished (module in eval mode on CPU)
  bool finished = false;  // false: stopped by stop_after (a checkpoint holds the state)
  std::int64_t steps_done = 0;
};

// Trains on `train` (ids filled) with early stopping on `val` (may be null: the last epoch is kept).
// Each epoch is ceil(N / batch) updates over a permutation of the records drawn from
// random::training_rng(seed, ...); validation after each epoch; the best validation's weights are
// kept. Checkpoints (checkpoint.hpp, format "cx-report-decoder-checkpoint": model, optimizer, best
// weights, early-stopping state) every checkpoint_every updates and when stop_after ends a session;
// a resumed run gives the same weights, bit for bit, as one never interrupted (same threads).
// The result's config names the encoder from train.header's "model". Usage errors (bad options)
// throw cx::UsageError; data errors (ids outside the vocabulary, validation memories of another
// layout or encoder) cx::Error.
ReportTrainResult train_report_decoder(const ReportSet& train, const ReportSet* val, const ReportTrainOptions& options,
                                       const std::function<void(const ReportTrainProgress&)>& on_progress = {});

}  // namespace cx::train
