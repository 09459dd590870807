#include "cx/train/report_decoder_config.hpp"

#include <cmath>
#include <sstream>

#include "cx/cli/error.hpp"
#include "cx/io/json_file.hpp"

namespace cx::train {
namespace {

using nlohmann::json;

constexpr std::int64_t kMaxVocab = std::int64_t{1} << 21;
constexpr std::int64_t kMaxSlots = std::int64_t{1} << 20;
constexpr std::int64_t kMaxParameters = std::int64_t{1} << 31;

std::string key_name(const std::string& section, const char* key) {
  return section.empty() ? std::string(key) : section + "." + key;
}

const json& member(const json& j, const char* key, const std::string& section, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) throw Error(at(where, "missing required key \"" + key_name(section, key) + "\""));
  return *it;
}

const json& object_member(const json& j, const char* key, const std::string& where) {
  const json& v = member(j, key, "", where);
  if (!v.is_object()) throw Error(at(where, std::string("\"") + key + "\" must be an object, got " + v.dump()));
  return v;
}

std::int64_t int_value(const json& v, const std::string& name, const std::string& where) {
  if (v.is_number_integer() || v.is_number_unsigned()) {
    // An unsigned value above int64's range would wrap; the range checks below refuse it by value.
    if (v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX))
      throw Error(at(where, "\"" + name + "\" is out of range, got " + v.dump()));
    return v.get<std::int64_t>();
  }
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (std::fabs(d) < 9.2e18 && d == std::trunc(d)) return static_cast<std::int64_t>(d);
  }
  throw Error(at(where, "\"" + name + "\" must be an integer, got " + v.dump()));
}

std::int64_t get_int(const json& j, const char* key, const std::string& section, const std::string& where,
                     std::int64_t lo, std::int64_t hi) {
  const std::int64_t v = int_value(member(j, key, section, where), key_name(section, key), where);
  if (v < lo || v > hi)
    throw Error(at(where, "\"" + key_name(section, key) + "\" must be in " + std::to_string(lo) + "-" + std::to_string(hi) +
                              ", got " + std::to_string(v)));
  return v;
}

bool get_bool(const json& j, const char* key, const std::string& section, const std::string& where) {
  const json& v = member(j, key, section, where);
  if (!v.is_boolean()) throw Error(at(where, "\"" + key_name(section, key) + "\" must be true or false, got " + v.dump()));
  return v.get<bool>();
}

std::string get_string(const json& j, const char* key, const std::string& section, const std::string& where) {
  const json& v = member(j, key, section, where);
  if (!v.is_string()) throw Error(at(where, "\"" + key_name(section, key) + "\" must be a string, got " + v.dump()));
  return v.get<std::string>();
}

void check_int(std::int64_t v, std::int64_t lo, std::int64_t hi, const std::string& name, const std::string& where) {
  if (v < lo || v > hi)
    throw Error(at(where, "\"" + name + "\" must be in " + std::to_string(lo) + "-" + std::to_string(hi) + ", got " +
                              std::to_string(v)));
}

// A file name inside the folder: no path, nothing hidden, nothing that leaves the folder.
bool plain_file_name(const std::string& s) {
  if (s.empty() || s.size() > 255 || s[0] == '.') return false;
  for (char c : s)
    if (c == '/' || c == '\\' || static_cast<unsigned char>(c) < 0x20) return false;
  return true;
}

}  // namespace

std::string MemoryLayout::describe() const {
  std::ostringstream s;
  if (cls) s << "cls + ";
  if (registers > 0) s << registers << (registers == 1 ? " register + " : " registers + ");
  s << grid_h << "x" << grid_w << " " << field << " tokens of " << dim;
  return s.str();
}

std::int64_t ReportDecoderConfig::parameter_count() const {
  // Bounded inputs (validate_report_decoder_config) keep every product below 2^63.
  const std::int64_t d = shape.d_model, f = shape.ffn, D = memory.dim;
  const std::int64_t memory_in = d * D + d + memory.slots() * d + 2 * d;
  const std::int64_t embeddings = shape.vocab_size * d + shape.max_len * d;
  const std::int64_t attention = 4 * (d * d + d);
  const std::int64_t layer = 2 * attention + (d * f + f) + (f * d + d) + 3 * 2 * d;
  return memory_in + embeddings + shape.layers * layer + 2 * d;
}

void validate_report_decoder_config(const ReportDecoderConfig& c, const std::string& where) {
  const auto& s = c.shape;
  check_int(s.vocab_size, 2, kMaxVocab, "decoder.vocab_size", where);
  check_int(s.d_model, 1, 8192, "decoder.d_model", where);
  check_int(s.heads, 1, 256, "decoder.heads", where);
  if (s.d_model % s.heads != 0)
    throw Error(at(where, "decoder.d_model " + std::to_string(s.d_model) + " is not a multiple of decoder.heads " +
                              std::to_string(s.heads)));
  check_int(s.layers, 1, 128, "decoder.layers", where);
  check_int(s.ffn, 1, 65536, "decoder.ffn", where);
  check_int(s.max_len, 2, 65536, "decoder.max_len", where);
  if (!std::isfinite(s.dropout) || s.dropout < 0 || s.dropout >= 1)
    throw Error(at(where, "\"decoder.dropout\" must be a finite number in [0, 1)"));
  check_int(c.tokens.bos, 0, s.vocab_size - 1, "tokens.bos", where);
  check_int(c.tokens.eos, 0, s.vocab_size - 1, "tokens.eos", where);
  check_int(c.tokens.pad, -1, s.vocab_size - 1, "tokens.pad", where);
  const auto& m = c.memory;
  if (m.field != "patch") throw Error(at(where, "\"memory.field\" must be \"patch\", got \"" + m.field + "\""));
  check_int(m.grid_h, 0, 1024, "memory.grid[0]", where);
  check_int(m.grid_w, 0, 1024, "memory.grid[1]", where);
  check_int(m.registers, 0, 1024, "memory.registers", where);
  check_int(m.dim, 1, 16384, "memory.dim", where);
  if (m.slots() < 1) throw Error(at(where, "the memory has no slots (no patch grid, registers or cls)"));
  check_int(m.slots(), 1, kMaxSlots, "memory.slots", where);
  if (!plain_file_name(c.tokenizer))
    throw Error(at(where, "\"tokenizer\" must name a file inside the folder, got \"" + c.tokenizer + "\""));
  const std::int64_t n = c.parameter_count();
  if (n > kMaxParameters)
    throw Error(at(where, "the decoder would have " + std::to_string(n) + " parameters (at most " +
                              std::to_string(kMaxParameters) + ")"));
}

ReportDecoderConfig parse_report_decoder_config(const json& j, const std::string& where) {
  if (!j.is_object()) throw Error(at(where, "not a JSON object"));
  io::check_format(j, where, kReportDecoderFormat, kReportDecoderVersionMajor);
  ReportDecoderConfig c;
  const json& d = object_member(j, "decoder", where);
  const std::string type = get_string(d, "type", "decoder", where);
  if (type != "small") throw Error(at(where, "\"decoder.type\" must be \"small\", got \"" + type + "\""));
  auto& s = c.shape;
  s.vocab_size = get_int(d, "vocab_size", "decoder", where, 2, kMaxVocab);
  s.d_model = get_int(d, "d_model", "decoder", where, 1, 8192);
  s.layers = get_int(d, "layers", "decoder", where, 1, 128);
  s.heads = get_int(d, "heads", "decoder", where, 1, 256);
  s.ffn = get_int(d, "ffn", "decoder", where, 1, 65536);
  s.max_len = get_int(d, "max_len", "decoder", where, 2, 65536);
  {
    const json& v = member(d, "dropout", "decoder", where);
    if (!v.is_number()) throw Error(at(where, "\"decoder.dropout\" must be a number, got " + v.dump()));
    s.dropout = v.get<double>();
  }

  const json& t = object_member(j, "tokens", where);
  c.tokens.bos = get_int(t, "bos", "tokens", where, 0, kMaxVocab);
  c.tokens.eos = get_int(t, "eos", "tokens", where, 0, kMaxVocab);
  c.tokens.pad = get_int(t, "pad", "tokens", where, -1, kMaxVocab);
  c.tokenizer = get_string(j, "tokenizer", "", where);

  const json& m = object_member(j, "memory", where);
  c.memory.field = get_string(m, "field", "memory", where);
  const json& grid = member(m, "grid", "memory", where);
  if (!grid.is_array() || grid.size() != 2) throw Error(at(where, "\"memory.grid\" must be [h, w], got " + grid.dump()));
  c.memory.grid_h = int_value(grid[0], "memory.grid[0]", where);
  c.memory.grid_w = int_value(grid[1], "memory.grid[1]", where);
  c.memory.registers = get_int(m, "registers", "memory", where, 0, 1024);
  c.memory.cls = get_bool(m, "cls", "memory", where);
  c.memory.dim = get_int(m, "dim", "memory", where, 1, 16384);
  c.standardize = get_bool(m, "standardize", "memory", where);
  validate_report_decoder_config(c, where);
  if (m.contains("slots") && !m["slots"].is_null() && int_value(m["slots"], "memory.slots", where) != c.memory.slots())
    throw Error(at(where, "\"memory.slots\" is " + m["slots"].dump() + " but the layout has " +
                              std::to_string(c.memory.slots())));

  auto optional_object = [&](const char* key, json& to) {
    auto it = j.find(key);
    if (it == j.end() || it->is_null()) return;
    if (!it->is_object()) throw Error(at(where, std::string("\"") + key + "\" must be an object, got " + it->dump()));
    to = *it;
  };
  optional_object("encoder", c.encoder);
  optional_object("training", c.training);
  optional_object("metrics", c.metrics);
  return c;
}

ReportDecoderConfig read_report_decoder_config(const std::string& path) {
  return parse_report_decoder_config(io::read_json_file(path), path);
}

json report_decoder_config_to_json(const ReportDecoderConfig& c) {
  const auto& s = c.shape;
  const auto& m = c.memory;
  json order = json::array();
  if (m.cls) order.push_back("cls");
  if (m.registers > 0) order.push_back("registers");
  if (m.grid_h * m.grid_w > 0) order.push_back(m.field);
  return {{"format", kReportDecoderFormat},
          {"version", std::to_string(kReportDecoderVersionMajor) + "." + std::to_string(kReportDecoderVersionMinor)},
          {"decoder",
           {{"type", "small"},
            {"vocab_size", s.vocab_size},
            {"d_model", s.d_model},
            {"layers", s.layers},
            {"heads", s.heads},
            {"ffn", s.ffn},
            {"max_len", s.max_len},
            {"dropout", s.dropout},
            {"norm", "pre-LayerNorm"},
            {"activation", "gelu"},
            {"tied_embeddings", true}}},
          {"tokens", {{"bos", c.tokens.bos}, {"eos", c.tokens.eos}, {"pad", c.tokens.pad}}},
          {"tokenizer", c.tokenizer},
          {"memory",
           {{"field", m.field},
            {"grid", {m.grid_h, m.grid_w}},
            {"registers", m.registers},
            {"cls", m.cls},
            {"dim", m.dim},
            {"slots", m.slots()},
            {"order", order},
            {"standardize", c.standardize}}},
          {"encoder", c.encoder},
          {"training", c.training},
          {"metrics", c.metrics}};
}

}  // namespace cx::train
