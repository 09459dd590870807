#include "cx/train/report_io.hpp"

#include <filesystem>

#include <unistd.h>

#include "cx/cli/error.hpp"
#include "cx/cli/log.hpp"
#include "cx/text/reports.hpp"
#include "cx/train/head.hpp"
#include "cx/train/llava.hpp"

namespace cx::train {

namespace {

class SmallWriter : public ReportWriter {
 public:
  SmallWriter(const std::string& folder, const torch::Device& device)
      : decoder_(load_report_decoder(folder, device)),
        tokenizer_(text::Tokenizer::load((std::filesystem::path(folder) / decoder_.config.tokenizer).string())) {}
  MemoryLayout layout_of(const io::Record&, const std::string&) const override { return decoder_.config.memory; }
  nlohmann::json encoder() const override { return decoder_.config.encoder; }
  std::vector<std::string> write(const torch::Tensor& memory, const model::SearchOptions& search) override {
    model::SearchOptions s = search;
    s.eos_id = decoder_.config.tokens.eos;
    const std::int64_t limit = decoder_.config.shape.max_len - 1;
    if (s.max_new_tokens > limit) s.max_new_tokens = static_cast<int>(limit);
    ReportDecoderCache cache(decoder_);
    const torch::Tensor first = cache.start(memory);
    std::vector<std::string> out;
    for (const auto& ids : model::generate(cache, first, s)) out.push_back(tokenizer_.decode(ids, true));
    return out;
  }

 private:
  ReportDecoder decoder_;
  text::Tokenizer tokenizer_;
};

class LlavaWriter : public ReportWriter {
 public:
  LlavaWriter(const std::string& folder, const torch::Device& device) : m_(load_llava(folder, device)) {}
  MemoryLayout layout_of(const io::Record& record, const std::string& where) const override {
    MemoryOptions patches_only;
    patches_only.registers = false;
    const MemoryLayout layout = record_memory_layout(record, patches_only, where);
    if (layout.dim != m_.projector->in())
      throw Error(where + ": patch tokens of " + std::to_string(layout.dim) + " channels, the projector takes " +
                  std::to_string(m_.projector->in()));
    return layout;
  }
  nlohmann::json encoder() const override { return m_.info.contains("encoder") ? m_.info["encoder"] : nlohmann::json(); }
  std::vector<std::string> write(const torch::Tensor& memory, const model::SearchOptions& search) override {
    return llava_generate(m_, memory, search);
  }

 private:
  LlavaModel m_;
};

void check_stream_encoder(const nlohmann::json& encoder, data::RecordSource& source, const std::string& where) {
  HeadRecord rec;
  rec.encoder = encoder;
  check_encoder(rec, source.header(), where, "decoder");
}

}  // namespace

std::int64_t keep_report_targets(ReportSet& set, const text::Tokenizer& tokenizer, const std::string& section,
                                 const std::string& where) {
  std::vector<std::int64_t> keep;
  for (std::int64_t i = 0; i < set.rows(); ++i) {
    const std::string t = text::report_section(set.texts[static_cast<std::size_t>(i)], section);
    if (t.empty()) continue;
    keep.push_back(i);
    set.ids.push_back(tokenizer.encode(t, false));
  }
  const std::int64_t dropped = set.rows() - static_cast<std::int64_t>(keep.size());
  if (dropped > 0) {
    std::vector<std::string> keys, texts;
    for (std::int64_t i : keep) {
      keys.push_back(set.keys[static_cast<std::size_t>(i)]);
      texts.push_back(set.texts[static_cast<std::size_t>(i)]);
    }
    set.keys = std::move(keys);
    set.texts = std::move(texts);
    set.memory = keep.empty() ? set.memory.slice(0, 0, 0) : set.memory.index_select(0, torch::tensor(keep, torch::kInt64));
  }
  if (dropped) log::warn(where + ": " + std::to_string(dropped) + " record(s) without a " + section + " report left out");
  if (set.rows() == 0) throw Error(where + ": no record has a " + section + " report (.txt)");
  return dropped;
}

ReportSet load_report_targets(data::RecordSource& source, const MemoryOptions& options, const text::Tokenizer& tokenizer,
                              const std::string& section, const std::string& where, const MemoryLayout* layout) {
  ReportSet set = load_report_set(source, options, false, where, layout);
  keep_report_targets(set, tokenizer, section, where);
  return set;
}

std::vector<std::string> report_corpus(const ReportSet& set, const std::string& section) {
  std::vector<std::string> lines;
  for (const auto& t : set.texts)
    for (auto& l : text::corpus_lines(text::sections_only(text::parse_mimic_report(t), section))) lines.push_back(std::move(l));
  return lines;
}

ReportSet load_validation_targets(const std::string& path, const MemoryOptions& options, const text::Tokenizer& tokenizer,
                                  const std::string& section, const ReportSet& train) {
  auto source = data::RecordSource::open({path});
  ReportSet val = load_report_targets(*source, options, tokenizer, section, path, &train.layout);
  check_same_encoder(train.header, val.header);
  return val;
}

DecoderTokenizer::DecoderTokenizer(const std::string& given, const ReportSet& train, const std::string& section, int vocab,
                                   std::uint64_t seed, const std::string& out, const std::string& where)
    : path_(given) {
  if (!path_.empty()) return;
  const auto lines = report_corpus(train, section);
  if (lines.empty()) throw Error(where + ": no record has a " + section + " report (.txt)");
  trained_ = std::filesystem::path(out).lexically_normal().string() + ".tokenizer.tmp." + std::to_string(::getpid());
  text::TokenizerTrainOptions o;
  o.vocab_size = vocab;
  o.seed = seed;
  text::train_tokenizer(lines, trained_, o);
  path_ = trained_;
  log::debug("trained a " + std::to_string(vocab) + "-piece tokenizer on " + std::to_string(lines.size()) + " report sections");
}

DecoderTokenizer::~DecoderTokenizer() {
  std::error_code ec;
  if (!trained_.empty()) std::filesystem::remove_all(trained_, ec);
}

void DecoderTokenizer::copy_into(const std::string& folder) const {
  namespace fs = std::filesystem;
  if (!fs::is_directory(path_)) {
    fs::copy_file(path_, fs::path(folder) / "tokenizer.model");
    return;
  }
  for (const char* f : {"tokenizer.model", "tokenizer_config.json", "special_tokens_map.json"})
    if (fs::exists(fs::path(path_) / f)) fs::copy_file(fs::path(path_) / f, fs::path(folder) / f);
}

std::pair<std::int64_t, std::int64_t> for_each_reference(data::RecordSource& source, const std::string& section,
                                                         const std::function<void(const std::string&, const std::string&)>& sink) {
  std::int64_t written = 0, left_out = 0;
  io::Record r;
  while (source.next(r)) {
    const io::Field* f = r.find("txt");
    const std::string t = f ? text::report_section(f->data, section) : "";
    if (t.empty()) {
      ++left_out;
      continue;
    }
    sink(r.key, t);
    ++written;
  }
  return {written, left_out};
}

std::unique_ptr<ReportWriter> load_report_writer(const std::string& folder, const torch::Device& device) {
  if (std::filesystem::exists(folder + "/llava.json")) return std::make_unique<LlavaWriter>(folder, device);
  return std::make_unique<SmallWriter>(folder, device);
}

std::int64_t generate_reports(data::RecordSource& source, ReportWriter& writer, std::int64_t batch,
                              const model::SearchOptions& search, const std::string& where, bool ignore_encoder,
                              const std::function<void(const std::string&, const std::string&)>& sink) {
  if (!ignore_encoder && !writer.encoder().is_null()) check_stream_encoder(writer.encoder(), source, where);
  std::int64_t n = 0;
  std::vector<std::string> keys;
  std::vector<torch::Tensor> rows;
  MemoryLayout layout;
  auto flush = [&] {
    if (keys.empty()) return;
    const auto texts = writer.write(torch::stack(rows), search);
    for (std::size_t i = 0; i < keys.size(); ++i) sink(keys[i], texts[i]);
    n += static_cast<std::int64_t>(keys.size());
    keys.clear();
    rows.clear();
  };
  io::Record r;
  while (source.next(r)) {
    const std::string name = where + ": " + r.key;
    const MemoryLayout l = writer.layout_of(r, name);
    if (!rows.empty() && l != layout) flush();  // a batch holds one memory layout
    layout = l;
    rows.push_back(record_memory(r, layout, name));
    keys.push_back(r.key);
    if (static_cast<std::int64_t>(keys.size()) == batch) flush();
  }
  flush();
  return n;
}

std::int64_t retrieve_reports(data::RecordSource& source, const RetrievalIndex& index, const std::string& where, bool ignore_encoder,
                              const std::function<void(const std::string&, const std::string&)>& sink) {
  if (!ignore_encoder) check_stream_encoder(index.encoder, source, where);
  std::int64_t n = 0;
  io::Record r;
  while (source.next(r)) {
    const Neighbour nb = nearest_report(index, r, where + ": " + r.key);
    sink(r.key, index.texts[static_cast<std::size_t>(nb.index)]);
    ++n;
  }
  return n;
}

}  // namespace cx::train
