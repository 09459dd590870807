#include "cx/train/report_io.hpp"

#include <filesystem>

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

}  // namespace

std::int64_t keep_report_targets(ReportSet& set, const text::Tokenizer& tokenizer, const std::string& section) {
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
  return dropped;
}

ReportSet load_report_targets(data::RecordSource& source, const MemoryOptions& options, const text::Tokenizer& tokenizer,
                              const std::string& section, const std::string& where, const MemoryLayout* layout) {
  ReportSet set = load_report_set(source, options, false, where, layout);
  const std::int64_t dropped = keep_report_targets(set, tokenizer, section);
  if (dropped) log::warn(where + ": " + std::to_string(dropped) + " record(s) without a " + section + " report left out");
  if (set.rows() == 0) throw Error(where + ": no record has a " + section + " report (.txt)");
  return set;
}

std::vector<std::string> report_corpus(const ReportSet& set, const std::string& section) {
  std::vector<std::string> lines;
  for (const auto& t : set.texts)
    for (auto& l : text::corpus_lines(text::sections_only(text::parse_mimic_report(t), section))) lines.push_back(std::move(l));
  return lines;
}

std::unique_ptr<ReportWriter> load_report_writer(const std::string& folder, const torch::Device& device) {
  if (std::filesystem::exists(folder + "/llava.json")) return std::make_unique<LlavaWriter>(folder, device);
  return std::make_unique<SmallWriter>(folder, device);
}

std::int64_t generate_reports(data::RecordSource& source, ReportWriter& writer, std::int64_t batch,
                              const model::SearchOptions& search, const std::string& where, bool ignore_encoder,
                              const std::function<void(const std::string&, const std::string&)>& sink) {
  if (!ignore_encoder && !writer.encoder().is_null()) {
    HeadRecord rec;
    rec.encoder = writer.encoder();
    check_encoder(rec, source.header(), where, "decoder");
  }
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

}  // namespace cx::train
