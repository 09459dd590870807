// cx-report: radiology report generation on encoder tokens: a SentencePiece tokenizer trained on
// report text, a small transformer decoder trained from scratch, LLaVA-1.5's recipe on a Llama
// language model, the nearest-neighbour retrieval baseline, and reports as the TSV cx-eval scores.
//   cx-report tokenizer -o tok/ NLMCXR_reports.tgz
//   cx-report train --tokenizer tok/ --val val.cx -o dec/ train.cx
//   cx-report generate dec/ test.cx > generated.tsv
//   cx-report references test.cx > refs.tsv && cx-eval report refs.tsv generated.tsv
// See man/cx-report.1.
#include <algorithm>
#include <cmath>

#include "cx/cli/error.hpp"
#include "cx/cli/log.hpp"
#include "cx/cli/names.hpp"
#include "cx/cli/options.hpp"
#include "cx/cli/output.hpp"
#include "cx/cli/progress.hpp"
#include "cx/cli/tool.hpp"
#include "cx/data/record_source.hpp"
#include "cx/data/table.hpp"
#include "cx/model/runtime.hpp"
#include "cx/text/reports.hpp"
#include "cx/text/tokenizer.hpp"
#include "cx/train/checkpoint.hpp"
#include "cx/train/finetune_cli.hpp"
#include "cx/train/head.hpp"
#include "cx/train/llava.hpp"
#include "cx/train/report_decoder.hpp"
#include "cx/train/report_io.hpp"
#include "cx/train/report_retrieve.hpp"

namespace {

using cx::cli::Tool;
using cx::data::tsv_cell;
using cx::log::number;

// --- tokenizer -------------------------------------------------------------------------------------

struct TokenizerCli {
  std::vector<std::string> inputs;
  int vocab = 4000;
  std::string section = "both";
};

int run_tokenizer(Tool& tool, const TokenizerCli& c) {
  const std::string out = tool.common().output;
  if (out.empty() || out == "-") throw cx::UsageError("tokenizer: give the output folder with -o DIR");
  const auto inputs = tool.inputs_or_stdin(c.inputs);
  const cx::text::ReportCorpus corpus = cx::text::report_file_corpus(inputs, c.section);
  if (corpus.lines.empty()) throw cx::Error(cx::cli::input_name(inputs[0]) + ": no report text found");
  cx::text::TokenizerTrainOptions o;
  o.vocab_size = c.vocab;
  o.seed = tool.common().seed;
  cx::text::train_tokenizer(corpus.lines, out, o);
  cx::log::info("trained a " + std::to_string(c.vocab) + "-piece SentencePiece BPE tokenizer on " + std::to_string(corpus.lines.size()) +
                " sections of " + std::to_string(corpus.reports) + " reports -> " + out);
  return cx::kExitOk;
}

// --- references ------------------------------------------------------------------------------------

struct ReferencesCli {
  std::vector<std::string> inputs;
  std::string section = "findings";
};

int run_references(Tool& tool, const ReferencesCli& c) {
  auto inputs = tool.inputs_or_stdin(c.inputs);
  auto source = cx::data::RecordSource::open(inputs);
  cx::cli::OutputFile out(tool.common().output, false);
  out.write("key\treport\n");
  const auto [n, empty] = cx::train::for_each_reference(
      *source, c.section, [&](const std::string& key, const std::string& t) { out.write(key + "\t" + tsv_cell(t) + "\n"); });
  out.commit();
  cx::log::info("wrote " + std::to_string(n) + " " + c.section + " reference(s)" +
                (empty ? "; " + std::to_string(empty) + " record(s) without that section left out" : ""));
  return cx::kExitOk;
}

// --- train -----------------------------------------------------------------------------------------

struct TrainCli {
  std::vector<std::string> inputs;
  std::string decoder = "small", tokenizer, val, section = "findings";
  int vocab = 1000;            // small without --tokenizer: the tokenizer trained on the training reports
  bool no_registers = false;  // small: leave reg.npy out of the memory
  bool cls = false;           // small: the CLS token first in the memory
  int epochs = 0;           // 0: the decoder's default
  std::int64_t batch = 0;   // 0: the decoder's default
  double lr = 0;            // 0: the decoder's default
  double warmup = -1, weight_decay = -1;
  std::string checkpoint;
  std::int64_t checkpoint_every = 0, stop_after = 0;
  bool resume = false;
  // small
  std::int64_t d_model = 256, layers = 3, heads = 4, ffn = 1024, max_len = 128;
  double dropout = 0.1, label_smoothing = 0.1;
  int patience = 5;
  std::string early_stop = "loss";
  // llama
  int stage = 1;
  std::string init, template_name = "vicuna_v1", question;
  std::int64_t lora_rank = 8;
  double lora_alpha = 16, projector_lr = 0;
  std::string lora_targets = "q_proj,k_proj,v_proj,o_proj";
  bool full = false;
};

std::string llama_folder_of(const std::string& decoder) {
  if (decoder.rfind("llama:", 0) == 0 && decoder.size() > 6) return decoder.substr(6);
  return "";
}

int run_train_small(Tool& tool, const TrainCli& c, const std::string& out, const std::vector<std::string>& inputs) {
  const auto device = cx::model::parse_device(tool.common().device);
  const std::string where = cx::cli::input_name(inputs[0]);
  cx::train::MemoryOptions mo;
  mo.registers = !c.no_registers;
  mo.cls = c.cls;
  auto source = cx::data::RecordSource::open(inputs);
  cx::train::ReportSet train = cx::train::load_report_set(*source, mo, false, where);
  source.reset();
  // The tokenizer: given, or trained here on the training reports (then kept in DEC).
  const cx::train::DecoderTokenizer tok_files(c.tokenizer, train, c.section, c.vocab, tool.common().seed, out, where);
  const cx::text::Tokenizer tok = cx::text::Tokenizer::load(tok_files.path());
  cx::train::keep_report_targets(train, tok, c.section, where);
  std::unique_ptr<cx::train::ReportSet> val;
  if (!c.val.empty())
    val = std::make_unique<cx::train::ReportSet>(cx::train::load_validation_targets(c.val, mo, tok, c.section, train));
  cx::train::ReportTrainOptions o;
  o.shape.vocab_size = tok.size();
  o.shape.d_model = c.d_model;
  o.shape.layers = c.layers;
  o.shape.heads = c.heads;
  o.shape.ffn = c.ffn;
  o.shape.max_len = c.max_len;
  o.shape.dropout = c.dropout;
  o.tokens.bos = tok.bos_id();
  o.tokens.eos = tok.eos_id();
  o.tokens.pad = tok.pad_id();
  if (c.epochs > 0) o.epochs = c.epochs;
  if (c.batch > 0) o.batch = c.batch;
  if (c.lr > 0) o.lr = c.lr;
  if (c.warmup >= 0) o.warmup = c.warmup;
  if (c.weight_decay >= 0) o.weight_decay = c.weight_decay;
  o.label_smoothing = c.label_smoothing;
  o.patience = c.patience;
  o.stop_metric = cx::train::parse_stop_metric(c.early_stop);
  o.detokenize = [&tok](const std::vector<std::int64_t>& ids) { return tok.decode(ids, true); };
  o.seed = tool.common().seed;
  o.device = device;
  o.checkpoint_dir = c.checkpoint;
  o.checkpoint_every = c.checkpoint_every;
  o.stop_after = c.stop_after;
  if (c.resume) o.resume = cx::train::latest_checkpoint(c.checkpoint, "cx-report-decoder-checkpoint");
  if (c.resume && o.resume.empty()) cx::log::info("no checkpoint in " + c.checkpoint + " yet: starting from the beginning");
  cx::cli::Progress progress("updates");
  auto result = cx::train::train_report_decoder(train, val.get(), o, [&](const cx::train::ReportTrainProgress& p) {
    progress.add();
    if (p.epoch > 0)
      cx::log::debug("epoch " + std::to_string(p.epoch) + ": loss " + number(p.loss, 5) +
                     (val ? ", val loss " + number(p.val_loss, 5) : "") +
                     (std::isnan(p.val_bleu4) ? "" : ", val BLEU-4 " + number(p.val_bleu4, 4)) + (p.best ? " (best)" : ""));
  });
  progress.finish();
  if (!result.finished) {
    cx::train::log_stopped_for_resume(result.steps_done, "--resume --checkpoint " + c.checkpoint);
    return cx::kExitOk;
  }
  if (!tool.common().no_provenance) result.decoder.config.training["provenance"] = tool.provenance_entry();
  cx::cli::write_folder_atomic(out, [&](const std::string& tmp) {
    cx::train::write_report_decoder_files(tmp, result.decoder);
    tok_files.copy_into(tmp);
  });
  const auto& m = result.decoder.config.metrics;
  cx::log::info("trained a small report decoder (" + std::to_string(c.layers) + " layers, width " + std::to_string(c.d_model) + ") on " +
                std::to_string(train.rows()) + " " + c.section + " reports, " + std::to_string(result.steps_done) + " updates" +
                (m.contains("val_loss") ? ", validation loss " + m["val_loss"].dump() : "") + " -> " + out);
  return cx::kExitOk;
}

int run_train_llava(Tool& tool, const TrainCli& c, const std::string& out, const std::vector<std::string>& inputs) {
  const auto device = cx::model::parse_device(tool.common().device);
  const std::string lm = llama_folder_of(c.decoder);
  const std::string where = cx::cli::input_name(inputs[0]);
  cx::train::LlavaTemplate prompt = cx::train::llava_template(c.template_name);
  if (!c.question.empty()) prompt.question = c.question;
  // LLaVA projects the patch grid alone.
  cx::train::MemoryOptions mo;
  mo.registers = false;
  const cx::text::Tokenizer tok = cx::text::Tokenizer::load(c.tokenizer.empty() ? lm : c.tokenizer);
  auto source = cx::data::RecordSource::open(inputs);
  cx::train::ReportSet train = cx::train::load_report_targets(*source, mo, tok, c.section, where);
  source.reset();
  std::unique_ptr<cx::train::ReportSet> val;
  if (!c.val.empty())
    val = std::make_unique<cx::train::ReportSet>(cx::train::load_validation_targets(c.val, mo, tok, c.section, train));
  cx::train::LlavaModel m = cx::train::new_llava(lm, c.tokenizer, train.layout.dim, prompt, c.init, device, tool.common().seed);
  if (m.tokenizer->sha256() != tok.sha256())
    throw cx::UsageError("--tokenizer differs from the tokenizer the folder of --init " + c.init + " was trained with: leave it out");
  if (train.header.contains("model")) m.info["encoder"] = train.header["model"];
  cx::train::LlavaOptions o;
  o.stage = c.stage;
  o.full = c.full;
  o.lora.rank = c.lora_rank;
  o.lora.alpha = c.lora_alpha;
  o.lora.targets = cx::cli::parse_list(c.lora_targets, "--lora-targets");
  o.epochs = c.epochs > 0 ? c.epochs : 1;
  o.batch = c.batch > 0 ? c.batch : 4;
  o.lr = c.lr > 0 ? c.lr : (c.stage == 1 ? 1e-3 : (c.full ? 2e-5 : 2e-4));
  o.projector_lr = c.projector_lr;
  if (c.warmup >= 0) o.warmup = c.warmup;
  if (c.weight_decay >= 0) o.weight_decay = c.weight_decay;
  o.max_target_tokens = c.max_len;
  o.seed = tool.common().seed;
  o.device = device;
  o.checkpoint_dir = c.checkpoint;
  o.checkpoint_every = c.checkpoint_every;
  o.resume = c.resume;
  o.stop_after = c.stop_after;
  cx::cli::Progress progress("epochs", o.epochs);
  auto result = cx::train::train_llava(m, train, val.get(), o, [&](const cx::train::LlavaEpoch& e) {
    progress.add();
    cx::log::debug("epoch " + std::to_string(e.epoch) + ": train loss " + number(e.train_loss, 5) +
                   (val ? ", val loss " + number(e.val_loss, 5) : ""));
  });
  progress.finish();
  if (!result.finished) {
    cx::train::log_stopped_for_resume(result.steps_done, "--resume --checkpoint " + c.checkpoint);
    return cx::kExitOk;
  }
  if (!tool.common().no_provenance) m.info["training"]["provenance"] = tool.provenance_entry();
  cx::cli::write_folder_atomic(out, [&](const std::string& tmp) { cx::train::write_llava(tmp, m); });
  std::string losses;
  for (const auto& e : result.epochs) losses += (losses.empty() ? "" : " -> ") + number(e.train_loss, 4);
  cx::log::info("trained LLaVA stage " + std::to_string(c.stage) + " (" + m.info["tuning"].get<std::string>() + ") on " +
                std::to_string(train.rows()) + " reports, " + std::to_string(result.steps_done) + " updates; train loss by epoch " +
                losses + (val ? ", val loss " + number(result.epochs.back().val_loss, 4) : "") + " -> " + out);
  return cx::kExitOk;
}

int run_train(Tool& tool, const TrainCli& c) {
  cx::model::set_threads(tool.threads());
  const std::string out = cx::train::head_folder_output(tool.common().output, "train");
  auto inputs = tool.inputs_or_stdin(c.inputs);
  if (c.val == "-" && std::count(inputs.begin(), inputs.end(), "-")) throw cx::UsageError("standard input can feed one stream only");
  if (c.resume && c.checkpoint.empty()) throw cx::UsageError("--resume needs --checkpoint DIR");
  if (c.decoder == "small") return run_train_small(tool, c, out, inputs);
  if (llama_folder_of(c.decoder).empty()) throw cx::UsageError("--decoder " + c.decoder + ": give small or llama:HF_FOLDER");
  return run_train_llava(tool, c, out, inputs);
}

// --- generate --------------------------------------------------------------------------------------

struct GenerateCli {
  std::string decoder_dir;
  std::vector<std::string> inputs;
  std::int64_t batch = 8;
  cx::model::SearchOptions search;
  bool ignore_encoder = false;
};

int run_generate(Tool& tool, const GenerateCli& c) {
  cx::model::set_threads(tool.threads());
  const auto device = cx::model::parse_device(tool.common().device);
  auto inputs = tool.inputs_or_stdin(c.inputs);
  auto source = cx::data::RecordSource::open(inputs);
  const std::string where = cx::cli::input_name(inputs[0]);
  cx::cli::OutputFile out(tool.common().output, false);
  out.write("key\treport\n");
  cx::cli::Progress progress("reports");
  const auto writer = cx::train::load_report_writer(c.decoder_dir, device);
  const std::int64_t n = cx::train::generate_reports(*source, *writer, c.batch, c.search, where, c.ignore_encoder,
                                                     [&](const std::string& key, const std::string& report) {
                                                       out.write(key + "\t" + tsv_cell(report) + "\n");
                                                       progress.add();
                                                     });
  progress.finish();
  out.commit();
  cx::log::info("generated " + std::to_string(n) + " report(s)" +
                (c.search.beams > 1 ? " with beam search (" + std::to_string(c.search.beams) + " beams)" : " greedily"));
  return cx::kExitOk;
}

// --- retrieve --------------------------------------------------------------------------------------

struct RetrieveCli {
  std::vector<std::string> inputs;
  std::string train, index, save_index, section = "findings";
  bool ignore_encoder = false;
};

int run_retrieve(Tool& tool, const RetrieveCli& c) {
  if (c.train.empty() == c.index.empty()) throw cx::UsageError("retrieve: give the training reports with --train STREAM or a saved --index DIR");
  if (!c.save_index.empty() && c.train.empty()) throw cx::UsageError("--save-index needs --train");
  auto inputs = tool.inputs_or_stdin(c.inputs);
  if (c.train == "-" && std::count(inputs.begin(), inputs.end(), "-")) throw cx::UsageError("standard input can feed one stream only");
  cx::train::RetrievalIndex index;
  if (!c.train.empty()) {
    auto ts = cx::data::RecordSource::open({c.train});
    index = cx::train::build_retrieval_index(*ts, cx::cli::input_name(c.train), c.section);
    if (!c.save_index.empty()) cx::train::write_retrieval_index(c.save_index, index);
  } else {
    index = cx::train::load_retrieval_index(c.index);
  }
  auto source = cx::data::RecordSource::open(inputs);
  cx::cli::OutputFile out(tool.common().output, false);
  // The header once the encoder check has passed (retrieve_reports checks before the first record).
  bool started = false;
  auto start = [&] {
    if (!started) out.write("key\treport\n");
    started = true;
  };
  cx::cli::Progress progress("reports");
  const std::int64_t n = cx::train::retrieve_reports(*source, index, cx::cli::input_name(inputs[0]), c.ignore_encoder,
                                                     [&](const std::string& key, const std::string& report) {
                                                       start();
                                                       out.write(key + "\t" + tsv_cell(report) + "\n");
                                                       progress.add();
                                                     });
  start();
  progress.finish();
  out.commit();
  cx::log::info("retrieved " + std::to_string(n) + " report(s) from " + std::to_string(index.size()) + " training reports (" + index.feature + ")");
  return cx::kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  Tool tool("cx-report",
            "Radiology report generation on encoder tokens: a SentencePiece tokenizer, a small decoder, LLaVA-1.5 on a Llama model, "
            "retrieval; reports as TSV for cx-eval");
  auto& app = tool.app();
  app.require_subcommand(1, 1);
  app.fallthrough();

  TokenizerCli k;
  auto* tok = app.add_subcommand("tokenizer", "Train a SentencePiece BPE tokenizer (Llama's trainer settings) on report text");
  tok->add_option("inputs", k.inputs,
                  "Report text: cx streams (.txt fields), key<TAB>report TSV, the Open-i archive NLMCXR_reports.tgz, a folder of its XML, "
                  "or a MIMIC-CXR reports tree")
      ->type_name("REPORTS");
  tok->add_option("--vocab", k.vocab, "Pieces in the vocabulary (3 special and 256 byte pieces included)")->check(CLI::Range(300, 1000000))->capture_default_str();
  tok->add_option("--section", k.section, "Sections to learn from: findings, impression or both")
      ->check(CLI::IsMember({"findings", "impression", "both"}))
      ->capture_default_str();
  tool.add_shared_options(Tool::kOutput | Tool::kSeed, tok);

  ReferencesCli rf;
  auto* refs = app.add_subcommand("references", "The reference reports of a stream as the key<TAB>report TSV cx-eval reads");
  refs->add_option("inputs", rf.inputs, "Streams with .txt reports; - for standard input")->type_name("STREAM");
  refs->add_option("--section", rf.section, "findings, impression or both")
      ->check(CLI::IsMember({"findings", "impression", "both"}))
      ->capture_default_str();
  tool.add_shared_options(Tool::kOutput, refs);

  TrainCli t;
  auto* train = app.add_subcommand("train", "Train a report decoder on an embedding stream whose .txt fields are the targets");
  train->add_option("inputs", t.inputs, "Embedding streams with patch tokens (cx-embed --emit patch[,reg]) and .txt reports")->type_name("STREAM");
  train->add_option("--decoder", t.decoder, "small (a transformer decoder trained from scratch) or llama:HF_FOLDER (LLaVA-1.5)")
      ->capture_default_str()
      ->type_name("KIND");
  train->add_option("--tokenizer", t.tokenizer,
                    "Tokenizer folder (cx-report tokenizer) or tokenizer.model; small: default a 1000-piece one trained on the training "
                    "reports; llama: default the HF folder's")
      ->type_name("DIR");
  train->add_option("--val", t.val, "Validation stream (early stopping of the small decoder; validation loss of LLaVA)")->type_name("STREAM");
  train->add_option("--section", t.section, "The target: findings, impression or both")
      ->check(CLI::IsMember({"findings", "impression", "both"}))
      ->capture_default_str();
  train->add_option("--epochs", t.epochs, "Epochs at most (default: small 30, llama 1)")->check(CLI::PositiveNumber);
  train->add_option("--batch", t.batch, "Reports per update (default: small 32, llama 4)")->check(CLI::PositiveNumber);
  train->add_option("--lr", t.lr, "Peak learning rate (default: small 5e-4; llama 1e-3 stage 1, 2e-4 LoRA, 2e-5 full)")->check(CLI::PositiveNumber);
  train->add_option("--warmup", t.warmup, "Warm-up as a fraction of the updates (default: small 0.05, llama 0.03)")->check(CLI::Range(0.0, 1.0));
  train->add_option("--weight-decay", t.weight_decay, "AdamW weight decay (default: small 0.01, llama 0)")->check(CLI::NonNegativeNumber);
  train->add_option("--checkpoint", t.checkpoint, "Write checkpoints into DIR (resumable with --resume)")->type_name("DIR");
  train->add_option("--checkpoint-every", t.checkpoint_every, "Also checkpoint every N updates")->check(CLI::NonNegativeNumber);
  train->add_option("--stop-after", t.stop_after, "End this session after N updates in all, with a checkpoint")->check(CLI::NonNegativeNumber);
  train->add_flag("--resume", t.resume, "Continue from the latest checkpoint in --checkpoint DIR");
  train->add_option("--vocab", t.vocab, "small without --tokenizer: pieces of the tokenizer trained on the training reports")
      ->check(CLI::Range(300, 1000000))
      ->capture_default_str();
  train->add_flag("--no-registers", t.no_registers, "small: leave the register tokens (reg.npy) out of the memory");
  train->add_flag("--cls", t.cls, "small: put the CLS token (cls.npy) first in the memory");
  train->add_option("--d-model", t.d_model, "small: model width")->check(CLI::Range(8, 4096))->capture_default_str();
  train->add_option("--layers", t.layers, "small: decoder layers")->check(CLI::Range(1, 48))->capture_default_str();
  train->add_option("--heads", t.heads, "small: attention heads (divide --d-model)")->check(CLI::Range(1, 64))->capture_default_str();
  train->add_option("--ffn", t.ffn, "small: feed-forward width")->check(CLI::Range(8, 65536))->capture_default_str();
  train->add_option("--max-len", t.max_len, "small: decoder positions, BOS included (longer reports are cut); llama: target tokens at most")->check(CLI::Range(4, 4096))->capture_default_str();
  train->add_option("--dropout", t.dropout, "small: dropout")->check(CLI::Range(0.0, 0.9))->capture_default_str();
  train->add_option("--label-smoothing", t.label_smoothing, "small: label smoothing")->check(CLI::Range(0.0, 0.9))->capture_default_str();
  train->add_option("--patience", t.patience, "small: validations without improvement before stopping; 0: never")->check(CLI::NonNegativeNumber)->capture_default_str();
  train->add_option("--early-stop", t.early_stop, "small: loss (validation loss) or bleu (validation BLEU-4 of greedy reports)")
      ->check(CLI::IsMember({"loss", "bleu"}))
      ->capture_default_str();
  train->add_option("--stage", t.stage, "llama: 1 trains the projector; 2 adds LoRA (or --full)")->check(CLI::Range(1, 2))->capture_default_str();
  train->add_option("--init", t.init, "llama: start from an earlier stage's folder (its projector and adapters)")->type_name("DEC");
  train->add_option("--template", t.template_name, "llama: vicuna_v1 (LLaVA-1.5's conversation) or plain (image then report)")
      ->check(CLI::IsMember({"vicuna_v1", "plain"}))
      ->capture_default_str();
  train->add_option("--question", t.question, "llama: the instruction in the vicuna_v1 template")->type_name("TEXT");
  train->add_option("--lora-rank", t.lora_rank, "llama stage 2: LoRA rank")->check(CLI::Range(1, 4096))->capture_default_str();
  train->add_option("--lora-alpha", t.lora_alpha, "llama stage 2: LoRA alpha (scale alpha/rank)")->check(CLI::PositiveNumber)->capture_default_str();
  train->add_option("--lora-targets", t.lora_targets, "llama stage 2: projections that get adapters")->capture_default_str()->type_name("A,B");
  train->add_option("--projector-lr", t.projector_lr, "llama: the projector's learning rate (default --lr)")->check(CLI::PositiveNumber);
  train->add_flag("--full", t.full, "llama stage 2: tune every weight of the language model instead of LoRA");
  tool.add_shared_options(Tool::kOutput | Tool::kSeed | Tool::kThreads | Tool::kDevice | Tool::kProvenance, train);

  GenerateCli g;
  auto* gen = app.add_subcommand("generate", "Reports for an embedding stream, as key<TAB>report TSV");
  gen->add_option("decoder", g.decoder_dir, "Decoder folder (cx-report train)")->required()->type_name("DEC");
  gen->add_option("inputs", g.inputs, "Embedding streams; - for standard input")->type_name("STREAM");
  gen->add_option("--beams", g.search.beams, "Beam width (1: greedy)")->check(CLI::Range(1, 64))->capture_default_str();
  gen->add_option("--length-penalty", g.search.length_penalty, "Beam score = log-probability / length^P")->capture_default_str();
  gen->add_option("--no-repeat-ngram", g.search.no_repeat_ngram, "Never repeat an n-gram of this size (0: off)")->check(CLI::Range(0, 16))->capture_default_str();
  gen->add_option("--max-new-tokens", g.search.max_new_tokens, "Longest report in tokens")->check(CLI::Range(1, 4096))->capture_default_str();
  gen->add_option("--min-new-tokens", g.search.min_new_tokens, "No end of report before this many tokens")->check(CLI::Range(0, 4096))->capture_default_str();
  gen->add_option("--batch", g.batch, "Reports decoded together")->check(CLI::Range(1, 4096))->capture_default_str();
  gen->add_flag("--ignore-encoder", g.ignore_encoder, "Generate even when the stream's encoder is not the decoder's");
  tool.add_shared_options(Tool::kOutput | Tool::kThreads | Tool::kDevice, gen);

  RetrieveCli rt;
  auto* ret = app.add_subcommand("retrieve", "The retrieval baseline: each record gets the training report of its nearest embedding");
  ret->add_option("inputs", rt.inputs, "Query embedding streams; - for standard input")->type_name("STREAM");
  ret->add_option("--train", rt.train, "The training stream (embeddings with .txt reports)")->type_name("STREAM");
  ret->add_option("--index", rt.index, "A saved index (--save-index) instead of --train")->type_name("DIR");
  ret->add_option("--save-index", rt.save_index, "Also save the index built from --train")->type_name("DIR");
  ret->add_option("--section", rt.section, "findings, impression or both")
      ->check(CLI::IsMember({"findings", "impression", "both"}))
      ->capture_default_str();
  ret->add_flag("--ignore-encoder", rt.ignore_encoder, "Allow query and training streams from different encoders");
  tool.add_shared_options(Tool::kOutput | Tool::kThreads, ret);

  return tool.run(argc, argv, [&]() -> int {
    if (tok->parsed()) return run_tokenizer(tool, k);
    if (refs->parsed()) return run_references(tool, rf);
    if (train->parsed()) return run_train(tool, t);
    if (gen->parsed()) return run_generate(tool, g);
    return run_retrieve(tool, rt);
  });
}
