#include "cx/train/finetune.hpp"

#include <filesystem>
#include <fstream>
#include <sstream>

#include "cx/cli/error.hpp"
#include "cx/cli/output.hpp"
#include "cx/image/equalize.hpp"
#include "cx/io/image_file.hpp"
#include "cx/io/sha256.hpp"
#include "cx/train/checkpoint.hpp"
#include "cx/train/loss.hpp"
#include "cx/train/probe.hpp"
#include "cx/random/rng.hpp"
#include "cx/train/tensor_io.hpp"

namespace cx::train {

namespace fs = std::filesystem;

namespace {

constexpr std::uint64_t kShufflePurpose = 2;
constexpr std::uint64_t kAugmentPurpose = 3;
constexpr const char* kCheckpointFormat = "cx-finetune-checkpoint";

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw Error(at(path, "cannot open"));
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::int64_t feature_width(const model::VitConfig& c, const std::string& feature) {
  if (feature == "cls") return c.hidden_size;
  if (feature == "cx5") return static_cast<std::int64_t>(model::cx5_layers(c).size() + 1) * c.hidden_size;
  throw UsageError("--feature " + feature + ": expected cx5 or cls");
}

}  // namespace

torch::Tensor preprocess_images(const std::vector<const std::string*>& images, const std::vector<std::string>& where,
                                const image::PreprocessConfig& config) {
  std::vector<torch::Tensor> xs(images.size());
  at::parallel_for(0, static_cast<std::int64_t>(images.size()), 1, [&](std::int64_t b, std::int64_t e) {
    for (std::int64_t i = b; i < e; ++i) {
      const auto k = static_cast<std::size_t>(i);
      Image im = image::scale_to_8bit(io::decode_image(*images[k], where[k]));
      image::PixelValues pv = image::preprocess(im, config);
      xs[k] = torch::from_blob(pv.data.data(), {3, pv.height, pv.width}, torch::kFloat32).clone();
    }
  });
  return torch::stack(xs);
}

ImageSet load_images(data::RecordSource& source, const std::vector<std::string>& labels, const std::string& where) {
  ImageSet set;
  set.header = source.header();
  std::vector<std::int8_t> truth;
  io::Record record;
  while (source.next(record)) {
    const io::Field* img = record.image();
    if (!img)
      throw Error(at(record.key, "no image field (png, jpg) to fine-tune on (keep images with cx-embed --keep-image, or give the "
                                 "stream cx-ingest wrote)"));
    for (auto v : record_labels(record, labels)) truth.push_back(v == data::LabelValue::blank ? kBlankCode : static_cast<std::int8_t>(v));
    set.keys.push_back(record.key);
    set.image_names.push_back(record.key + "." + img->name);
    set.images.push_back(img->data);
  }
  if (set.keys.empty()) throw Error(at(where, "no records"));
  set.truth = torch::from_blob(truth.data(), {set.rows(), static_cast<std::int64_t>(labels.size())}, torch::kInt8).clone();
  return set;
}

Image decode_gray8(const std::string& bytes, const std::string& where, bool equalize) {
  Image im = image::scale_to_8bit(io::decode_image(bytes, where));
  if (im.channels != 1) im = image::to_gray_u8(im);
  if (equalize) image::equalize(im);
  return im;
}

torch::Tensor encoder_features(model::VitModel& encoder, const torch::Tensor& pixels, const std::string& feature) {
  model::VitForwardOptions fo;
  if (feature == "cx5") {
    fo.hidden_layers = model::cx5_layers(encoder.config());
    fo.norm_hidden_states = true;
  }
  model::VitOutput out = encoder.forward(pixels, fo);
  return feature == "cx5" ? model::cx5_features(encoder, out) : out.pooler;
}

torch::Tensor predict_images(const Head& head, model::VitModel& encoder, const image::PreprocessConfig& preprocess,
                             const std::vector<const std::string*>& images, const std::vector<std::string>& where,
                             const torch::Device& device, model::Precision precision, std::int64_t batch) {
  torch::NoGradGuard no_grad;
  const bool was_training = encoder.is_training();
  encoder.eval();
  std::vector<torch::Tensor> parts;
  for (std::size_t b = 0; b < images.size(); b += static_cast<std::size_t>(batch)) {
    const std::size_t e = std::min(images.size(), b + static_cast<std::size_t>(batch));
    std::vector<const std::string*> chunk(images.begin() + static_cast<std::ptrdiff_t>(b), images.begin() + static_cast<std::ptrdiff_t>(e));
    std::vector<std::string> names(where.begin() + static_cast<std::ptrdiff_t>(b), where.begin() + static_cast<std::ptrdiff_t>(e));
    torch::Tensor x = preprocess_images(chunk, names, preprocess).to(device);
    torch::Tensor f;
    {
      model::AutocastGuard autocast(precision, device);
      f = encoder_features(encoder, x, head.info.feature);
    }
    parts.push_back(head.probabilities(f.to(torch::kFloat32)).to(torch::kCPU));
  }
  encoder.train(was_training);
  return torch::cat(parts);
}

AugmentOptions augment_options_for(const FinetuneOptions& o) {
  AugmentOptions aug = o.augment_options;
  const auto& p = o.preprocess;
  aug.height = p.do_center_crop ? p.crop_height : (p.shortest_edge > 0 ? p.shortest_edge : p.resize_height);
  aug.width = p.do_center_crop ? p.crop_width : (p.shortest_edge > 0 ? p.shortest_edge : p.resize_width);
  aug.mean = p.image_mean;
  aug.std = p.image_std;
  return aug;
}

FinetuneLoopResult finetune_loop(model::VitModel& encoder, const nlohmann::json& base_info, FinetuneTask& task,
                                 const FinetuneOptions& o, const std::function<void(const FinetuneProgress&)>& on_progress) {
  const std::int64_t N = task.records();
  if (o.batch < 1 || o.accum < 1 || o.epochs < 1 || o.steps < 0) throw UsageError("--batch, --accum and --epochs must be at least 1");
  if (o.stop_after > 0 && o.checkpoint_dir.empty()) throw UsageError("--stop-after needs a checkpoint folder (--checkpoint DIR)");
  if (N < 1) throw Error("no training records");

  const NamedParams enc_params = NamedParams::of(encoder, "encoder.");
  const NamedParams head_params = NamedParams::of(task.head(), "head.");
  AdamW opt({ParamGroup{enc_params.names, enc_params.tensors, o.lr_backbone, o.weight_decay},
             ParamGroup{head_params.names, head_params.tensors, o.lr_head, o.weight_decay}});

  const std::int64_t per_epoch = (N + o.batch - 1) / o.batch;
  const std::int64_t total = o.steps > 0 ? o.steps : (per_epoch * o.epochs + o.accum - 1) / o.accum;
  const LrSchedule lr_schedule = LrSchedule::with_warmup_fraction(o.schedule, total, o.warmup);
  const AugmentOptions aug = augment_options_for(o);

  nlohmann::json signature = task.signature();
  nlohmann::json loop = {{"records", N},
                         {"batch", o.batch},
                         {"accum", o.accum},
                         {"steps", total},
                         {"lr_backbone", o.lr_backbone},
                         {"lr_head", o.lr_head},
                         {"weight_decay", o.weight_decay},
                         {"schedule", schedule_name(o.schedule)},
                         {"warmup", o.warmup},
                         {"patience", o.patience},
                         {"augment", o.augment},
                         {"crop_scale_min", aug.scale_min},
                         {"input", {aug.height, aug.width}},
                         {"seed", o.seed},
                         {"validation_records", task.validation_records()}};
  signature.update(loop);

  // Early stopping over the encoder's and the head's parameters together (encoder first).
  EarlyStopping stopping(o.patience);
  std::vector<torch::Tensor> all_params = enc_params.tensors;
  all_params.insert(all_params.end(), head_params.tensors.begin(), head_params.tensors.end());
  const auto n_enc = static_cast<std::ptrdiff_t>(enc_params.tensors.size());
  std::int64_t start = 0;

  if (!o.resume.empty()) {
    const Checkpoint c = read_checkpoint(o.resume, kCheckpointFormat);
    check_signature(c.signature, signature, o.resume);
    if (c.state.value("base_encoder", nlohmann::json()) != base_info)
      throw Error(at(o.resume, "the checkpoint fine-tunes another encoder than " + o.encoder_folder));
    model::load_weights(encoder, model::read_hf_weights(o.resume + "/encoder"), o.resume + "/encoder");
    head_params.load(c.group("head"), o.resume + "/head.safetensors");
    opt.load_state(c.group("optimizer"), o.resume + "/optimizer.safetensors");
    start = c.step;
    stopping.load_state(c.state.value("early_stopping", nlohmann::json()), o.resume + "/state.json");
    if (c.has_group("best")) {
      std::vector<torch::Tensor> best_enc = snapshot(enc_params.tensors), best_head = snapshot(head_params.tensors);
      enc_params.load_into(best_enc, c.group("best"), o.resume + "/best.safetensors");
      head_params.load_into(best_head, c.group("best"), o.resume + "/best.safetensors");
      best_enc.insert(best_enc.end(), best_head.begin(), best_head.end());
      stopping.set_best(std::move(best_enc));
    }
    if (opt.steps() != start) throw Error(at(o.resume, "optimizer step count disagrees with state.json"));
  }

  auto write_checkpoint_at = [&](std::int64_t step) {
    Checkpoint c;
    c.format = kCheckpointFormat;
    c.step = step;
    c.signature = signature;
    c.state = {{"total_steps", total},
               {"micro_batches_done", step * o.accum},
               {"epoch", (step * o.accum) / per_epoch},
               {"base_encoder", base_info},
               {"early_stopping", stopping.state()}};
    c.rng = {{"kind", "counter (splitmix64 of seed, purpose, epoch, record)"}, {"seed", o.seed}};
    c.groups["head"] = head_params.current();
    c.groups["optimizer"] = opt.state();
    if (stopping.have_best()) {
      const std::vector<torch::Tensor>& saved = stopping.best();
      model::NamedTensors best = enc_params.with({saved.begin(), saved.begin() + n_enc});
      for (auto& t : head_params.with({saved.begin() + n_enc, saved.end()})) best.push_back(t);
      c.groups["best"] = std::move(best);
    }
    write_checkpoint(o.checkpoint_dir, c, [&](const std::string& tmp) { model::save_hf_folder(tmp + "/encoder", encoder); });
  };

  encoder.train();
  task.head().train();
  std::int64_t cached_epoch = -1;
  std::vector<std::int64_t> perm;
  FinetuneLoopResult result;
  std::int64_t step = start;
  for (; step < total; ++step) {
    opt.zero_grad();
    double step_loss = 0;
    bool epoch_ended = false;
    for (std::int64_t a = 0; a < o.accum; ++a) {
      const std::int64_t mb = step * o.accum + a;
      const std::int64_t epoch = mb / per_epoch, pos = mb % per_epoch;
      if (epoch != cached_epoch) {
        perm = random::permutation(N, random::training_rng(o.seed, kShufflePurpose, static_cast<std::uint64_t>(epoch)));
        cached_epoch = epoch;
      }
      if (pos == per_epoch - 1) epoch_ended = true;
      const std::int64_t begin = pos * o.batch, count = std::min(o.batch, N - begin);
      std::vector<std::int64_t> idx(perm.begin() + begin, perm.begin() + begin + count);
      std::vector<torch::Tensor> xs(static_cast<std::size_t>(count)), ts(static_cast<std::size_t>(count));
      at::parallel_for(0, count, 1, [&](std::int64_t b0, std::int64_t b1) {
        for (std::int64_t i = b0; i < b1; ++i) {
          FinetuneTask::Sample sample = task.input(idx[static_cast<std::size_t>(i)], epoch);
          xs[static_cast<std::size_t>(i)] = std::move(sample.pixels);
          ts[static_cast<std::size_t>(i)] = std::move(sample.target);
        }
      });
      torch::Tensor x = torch::stack(xs).to(o.device);
      torch::Tensor targets = ts.front().defined() ? torch::stack(ts) : torch::Tensor();
      torch::Tensor loss = task.loss(encoder, x, idx, targets) / static_cast<double>(o.accum);
      loss.backward();
      step_loss += loss.item<double>();
    }
    check_finite_loss(step_loss, "step " + std::to_string(step + 1));
    opt.step(lr_schedule(step));

    FinetuneProgress progress;
    progress.step = step + 1;
    progress.total = total;
    progress.loss = step_loss;
    if (task.validation_records() > 0 && (epoch_ended || step + 1 == total)) {
      nlohmann::json report;
      const double metric = task.validate(encoder, report);
      encoder.train();
      task.head().train();
      progress.epoch = stopping.validations() + 1;
      progress.val_metric = metric;
      progress.best = stopping.update(metric, progress.epoch, all_params, report);
    }
    if (on_progress) on_progress(progress);
    const std::int64_t done = step + 1;
    const bool stop_here = o.stop_after > 0 && done >= o.stop_after && done < total;
    const bool early = stopping.should_stop();
    if (!o.checkpoint_dir.empty() && ((o.checkpoint_every > 0 && done % o.checkpoint_every == 0) || stop_here))
      write_checkpoint_at(done);
    if (early) {
      result.stopped_early = true;
      ++step;
      break;
    }
    if (stop_here) {
      result.finished = false;
      result.steps_done = done;
      encoder.eval();
      task.head().eval();
      return result;
    }
  }

  stopping.restore_best(all_params);
  const bool have_best = stopping.have_best();
  encoder.eval();
  task.head().eval();
  result.finished = true;
  result.steps_done = step;
  result.have_best = have_best;
  result.best_epoch = stopping.best_epoch();
  result.best_report = stopping.best_report();
  result.training = signature;
  result.training["steps_done"] = step;
  result.training["stopped_early"] = result.stopped_early;
  result.training["best_epoch"] = have_best ? nlohmann::json(stopping.best_epoch()) : nlohmann::json();
  result.training["optimizer"] = "AdamW";
  result.training["precision"] = o.precision == model::Precision::bf16 ? "bf16" : o.precision == model::Precision::f16 ? "f16" : "f32";
  result.training["fine_tuned_from"] = base_info;
  return result;
}

namespace {

// Classification: a linear or MLP head on cx5 / cls, masked BCE (or softmax CE) under the label
// policy, validation by macro AUROC.
class ClassifyTask : public FinetuneTask {
 public:
  ClassifyTask(const ImageSet& train, const ImageSet* val, const std::vector<std::string>& labels,
               const FinetuneOptions& o, Head& head)
      : train_(train), val_(val), labels_(labels), o_(o), head_(head), aug_(augment_options_for(o)) {
    equalize_ = o.preprocess.pipeline == image::Pipeline::cxformer && o.preprocess.equalize;
    const auto L = static_cast<std::int64_t>(labels.size());
    make_targets(train.truth, o.policy, Y_, M_);
    if (o.task == Task::multiclass) {
      std::tie(cls_, row_mask_) = multiclass_targets(Y_, M_);
      if (row_mask_.sum().item<double>() == 0) throw Error("no training record has exactly one positive label (multiclass)");
      if (o.balanced) class_weight_ = balanced_class_weight(cls_, row_mask_, L);
    } else {
      if (M_.sum().item<double>() == 0) throw Error("no usable label cell in the training data under this label policy");
      if (o.balanced) pos_weight_ = balanced_pos_weight(Y_, M_);
    }
    if (val)
      for (const auto& s : val->images) val_images_.push_back(&s);
  }
  torch::nn::Module& head() override { return *head_.module; }
  std::int64_t records() const override { return train_.rows(); }
  nlohmann::json signature() const override {
    return {{"labels", labels_},
            {"task", task_name(o_.task)},
            {"head", head_type_name(o_.head)},
            {"hidden", head_.info.shape.hidden},
            {"feature", o_.feature},
            {"uncertain", policy_name(o_.policy.uncertain)},
            {"blank", policy_name(o_.policy.blank)},
            {"balanced", o_.balanced}};
  }
  Sample input(std::int64_t r, std::int64_t epoch) const override {
    const auto k = static_cast<std::size_t>(r);
    if (o_.augment) {
      Image g = decode_gray8(train_.images[k], train_.image_names[k], equalize_);
      CounterRng rng(o_.seed, kAugmentPurpose, static_cast<std::uint64_t>(epoch), static_cast<std::uint64_t>(r));
      return {augment_gray(gray_to_unit(g), aug_, rng), {}};
    }
    return {preprocess_images({&train_.images[k]}, {train_.image_names[k]}, o_.preprocess)[0], {}};
  }
  torch::Tensor loss(model::VitModel& encoder, const torch::Tensor& x, const std::vector<std::int64_t>& idx,
                     const torch::Tensor&) override {
    torch::Tensor index = torch::tensor(idx, torch::kInt64);
    torch::Tensor features;
    {
      model::AutocastGuard autocast(o_.precision, o_.device);
      features = encoder_features(encoder, x, o_.feature);
    }
    torch::Tensor logits = head_.module->forward(features.to(torch::kFloat32));
    if (o_.task == Task::multiclass)
      return masked_softmax_cross_entropy(logits, cls_.index_select(0, index).to(o_.device),
                                          row_mask_.index_select(0, index).to(o_.device),
                                          class_weight_.defined() ? class_weight_.to(o_.device) : class_weight_);
    return masked_bce_with_logits(logits, Y_.index_select(0, index).to(o_.device), M_.index_select(0, index).to(o_.device),
                                  pos_weight_.defined() ? pos_weight_.to(o_.device) : pos_weight_);
  }
  std::int64_t validation_records() const override { return val_ ? val_->rows() : 0; }
  double validate(model::VitModel& encoder, nlohmann::json& report) override {
    Evaluation e = evaluate_auroc(
        predict_images(head_, encoder, o_.preprocess, val_images_, val_->image_names, o_.device, o_.precision, o_.batch),
        val_->truth);
    report = evaluation_json(e, labels_, val_->rows());
    return e.macro;
  }

 private:
  const ImageSet& train_;
  const ImageSet* val_;
  const std::vector<std::string>& labels_;
  const FinetuneOptions& o_;
  Head& head_;
  AugmentOptions aug_;
  bool equalize_ = false;
  torch::Tensor Y_, M_, cls_, row_mask_, pos_weight_, class_weight_;
  std::vector<const std::string*> val_images_;
};

}  // namespace

FinetuneResult finetune(const ImageSet& train, const ImageSet* val, const std::vector<std::string>& labels,
                        const FinetuneOptions& o, const std::function<void(const FinetuneProgress&)>& on_progress) {
  const auto L = static_cast<std::int64_t>(labels.size());
  if (o.task == Task::binary && L != 1) throw UsageError("--task binary takes one label, " + std::to_string(L) + " given");
  if (o.task == Task::multiclass && L < 2) throw UsageError("--task multiclass needs at least two labels");
  if (o.batch < 1 || o.accum < 1 || o.epochs < 1 || o.steps < 0) throw UsageError("--batch, --accum and --epochs must be at least 1");
  if (o.stop_after > 0 && o.checkpoint_dir.empty()) throw UsageError("--stop-after needs a checkpoint folder (--checkpoint DIR)");

  // The starting encoder, and what it was.
  model::LoadOptions lo;
  lo.device = o.device;
  model::LoadedVit base = model::load_hf_vit(o.encoder_folder, lo);
  nlohmann::json base_info = {{"id", base.model_id}, {"sha256", base.weights_sha256}};
  std::shared_ptr<model::VitModel> encoder = base.model;

  Head head;
  head.info.task = o.task;
  head.info.labels = labels;
  head.info.feature = o.feature;
  head.info.policy = o.policy;
  head.info.shape = {o.head, feature_width(base.config, o.feature), o.head == HeadType::mlp ? o.hidden : 0, L};
  head.module = std::make_shared<HeadModule>(head.info.shape);
  head.module->init(o.seed);
  head.module->to(o.device);

  ClassifyTask task(train, val, labels, o, head);
  FinetuneLoopResult loop = finetune_loop(*encoder, base_info, task, o, on_progress);
  FinetuneResult result;
  result.finished = loop.finished;
  result.steps_done = loop.steps_done;
  result.encoder = encoder;
  if (!loop.finished) {
    result.head = head;
    return result;
  }
  if (loop.have_best) head.info.metrics["val"] = loop.best_report;
  encoder->to(torch::kCPU);
  head.module->to(torch::kCPU);
  head.info.training = loop.training;
  head.info.encoder_folder = "encoder";
  head.info.preprocess = o.preprocess_record;
  result.head = head;
  return result;
}

HeadEncoder load_head_encoder(const std::string& head_dir, const HeadRecord& head, const torch::Device& device) {
  HeadEncoder e;
  if (head.encoder_folder.empty()) return e;
  const std::string folder = head_dir + "/" + head.encoder_folder;
  model::LoadOptions lo;
  lo.device = device;
  lo.hash = false;
  e.model = model::load_hf_vit(folder, lo).model;
  e.model->eval();
  const auto& pp = head.preprocess;
  if (pp.is_object() && pp.value("pipeline", "hf") == "cxformer")
    e.preprocess = image::PreprocessConfig::cxformer(pp.value("equalize", false));
  else
    e.preprocess = image::PreprocessConfig::from_file(folder + "/preprocessor_config.json");
  return e;
}

nlohmann::json save_finetuned_encoder(const std::string& folder, model::VitModel& encoder, const FinetuneOptions& options) {
  model::save_hf_folder(folder, encoder);
  const std::string pp = options.encoder_folder + "/preprocessor_config.json";
  if (fs::exists(pp)) cli::write_file_atomic(folder + "/preprocessor_config.json", read_text(pp));
  // The id and hash cx-embed will record for this folder (load_hf_vit's rules).
  model::LoadOptions lo;
  model::LoadedVit saved = model::load_hf_vit(folder, lo);
  return {{"id", saved.model_id},
          {"sha256", saved.weights_sha256},
          {"model_type", saved.config.model_type},
          {"hidden_size", saved.config.hidden_size},
          {"num_hidden_layers", saved.config.num_hidden_layers},
          {"patch_size", saved.config.patch_size},
          {"num_register_tokens", saved.config.num_register_tokens},
          {"preprocess", options.preprocess_record.value("pipeline", "hf")}};
}

void write_finetuned_head(const std::string& folder, FinetuneResult& result, const FinetuneOptions& options) {
  write_folder_atomic(folder, [&](const std::string& tmp) {
    result.head.info.encoder = save_finetuned_encoder(tmp + "/encoder", *result.encoder, options);
    write_head_files(tmp, result.head);
  });
}

}  // namespace cx::train
