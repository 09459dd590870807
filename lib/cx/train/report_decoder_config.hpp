#pragma once
// decoder.json of a small report decoder folder (cx-report train --decoder small), torch-free so that
// any tool (and the fuzzer) can read it without LibTorch. The folder:
//   decoder.json         format "cx-report-decoder" 1.0: the decoder's shape, its token ids, the
//                        tokenizer file beside it, the memory layout (which embedding fields, in what
//                        order, of what size), whether memories are standardised, the encoder the
//                        memories must come from ({"id", "sha256"}, as head folders name it), the
//                        training settings and validation metrics
//   decoder.safetensors  the weights (report_decoder.hpp names them), plus standardize.mean/.std [D]
//   tokenizer.model      the SentencePiece model (copied beside by cx-report; "tokenizer" names it)
// Every value is bounded before anything is built from it (the file is outside data): vocab_size
// 2-2^21, d_model 1-8192 and a multiple of heads (1-256), layers 1-128, ffn 1-65536, max_len 2-65536,
// dropout in [0, 1), token ids inside the vocabulary (pad may be -1: none), grid sides 0-1024,
// registers 0-1024, dim 1-16384, at least one memory slot and at most 2^20, and the parameter count at
// most 2^31. Errors name the file and the key.
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace cx::train {

inline constexpr const char* kReportDecoderFormat = "cx-report-decoder";
inline constexpr int kReportDecoderVersionMajor = 1;
inline constexpr int kReportDecoderVersionMinor = 0;

struct ReportDecoderShape {
  std::int64_t vocab_size = 0;
  std::int64_t d_model = 256;
  std::int64_t layers = 3;
  std::int64_t heads = 4;
  std::int64_t ffn = 1024;
  std::int64_t max_len = 128;  // decoder positions, BOS included
  double dropout = 0.1;        // training only; recorded for the summary
};

struct ReportTokenIds {
  std::int64_t bos = 1;
  std::int64_t eos = 2;
  std::int64_t pad = 0;  // -1: the tokenizer has none (padding is then never looked at)
};

// What a record's memory is made of, in this order: CLS (cls.npy [D]) when `cls`, the `registers`
// register tokens (reg.npy [R, D]), then the grid_h x grid_w patch tokens (patch.npy [h, w, D])
// in row-major order.
struct MemoryLayout {
  std::string field = "patch";  // the patch-token field (cx-embed's patch.npy)
  std::int64_t grid_h = 0, grid_w = 0;
  std::int64_t registers = 0;
  bool cls = false;
  std::int64_t dim = 0;
  std::int64_t slots() const { return (cls ? 1 : 0) + registers + grid_h * grid_w; }
  bool operator==(const MemoryLayout& o) const {
    return field == o.field && grid_h == o.grid_h && grid_w == o.grid_w && registers == o.registers && cls == o.cls &&
           dim == o.dim;
  }
  bool operator!=(const MemoryLayout& o) const { return !(*this == o); }
  std::string describe() const;  // "cls + 4 registers + 16x16 patch tokens of 384"
};

struct ReportDecoderConfig {
  ReportDecoderShape shape;
  ReportTokenIds tokens;
  MemoryLayout memory;
  bool standardize = true;  // decoder.safetensors holds standardize.mean/.std [dim]
  std::string tokenizer = "tokenizer.model";
  nlohmann::json encoder = nlohmann::json::object();   // {"id", "sha256", ...} of the memories' encoder
  nlohmann::json training = nlohmann::json::object();  // settings and how the run went
  nlohmann::json metrics = nlohmann::json::object();   // validation metrics of the kept weights

  // Parameters of the module (weights only, standardisation excluded).
  std::int64_t parameter_count() const;
};

// The checks listed above; errors (cx::Error) name `where` and the key.
void validate_report_decoder_config(const ReportDecoderConfig& config, const std::string& where);

// From decoder.json's object; `where` names it in errors. Format and version are checked.
ReportDecoderConfig parse_report_decoder_config(const nlohmann::json& j, const std::string& where);
ReportDecoderConfig read_report_decoder_config(const std::string& path);
nlohmann::json report_decoder_config_to_json(const ReportDecoderConfig& config);

}  // namespace cx::train
