#include "cx/text/tokenizer.hpp"


#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "cx/cli/error.hpp"
#include "cx/cli/output.hpp"
#include "cx/io/file_bytes.hpp"
#include "cx/io/sha256.hpp"
#include "cx/text/spm_runtime.hpp"

namespace cx::text {

namespace {

namespace fs = std::filesystem;
using nlohmann::json;

const std::string kSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's visible space

// --- the few protobuf bits needed to edit a serialized ModelProto (its header is not installed) ---

struct PbField {
  std::uint32_t number = 0;
  int wire = 0;
  std::string_view whole;    // tag + value
  std::string_view payload;  // length-delimited contents (wire type 2)
  std::uint64_t varint = 0;  // wire type 0
};

bool read_varint(std::string_view s, std::size_t& i, std::uint64_t& v) {
  v = 0;
  for (int shift = 0; shift < 64 && i < s.size(); shift += 7) {
    const auto c = static_cast<unsigned char>(s[i++]);
    v |= static_cast<std::uint64_t>(c & 0x7F) << shift;
    if (c < 0x80) return true;
  }
  return false;
}

void put_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7F) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}

// Throws std::runtime_error on malformed input (the caller names the file).
std::vector<PbField> pb_fields(std::string_view msg) {
  std::vector<PbField> out;
  std::size_t i = 0;
  while (i < msg.size()) {
    const std::size_t start = i;
    std::uint64_t key = 0;
    if (!read_varint(msg, i, key)) throw std::runtime_error("bad protobuf tag");
    PbField f;
    f.number = static_cast<std::uint32_t>(key >> 3);
    f.wire = static_cast<int>(key & 7);
    if (f.wire == 0) {
      if (!read_varint(msg, i, f.varint)) throw std::runtime_error("bad protobuf varint");
    } else if (f.wire == 1 || f.wire == 5) {
      const std::size_t n = f.wire == 1 ? 8 : 4;
      if (msg.size() - i < n) throw std::runtime_error("protobuf field cut");
      i += n;
    } else if (f.wire == 2) {
      std::uint64_t len = 0;
      if (!read_varint(msg, i, len) || len > msg.size() - i) throw std::runtime_error("protobuf field cut");
      f.payload = msg.substr(i, len);
      i += len;
    } else {
      throw std::runtime_error("unsupported protobuf wire type");
    }
    f.whole = msg.substr(start, i - start);
    out.push_back(f);
  }
  return out;
}

void put_bytes_field(std::string& out, std::uint32_t number, std::string_view payload) {
  put_varint(out, (static_cast<std::uint64_t>(number) << 3) | 2);
  put_varint(out, payload.size());
  out.append(payload.data(), payload.size());
}

// `msg` with its length-delimited field `number` replaced by edit(old payload) (first occurrence;
// appended when absent).
template <class Edit>
std::string edit_submessage(std::string_view msg, std::uint32_t number, Edit edit) {
  std::string out;
  bool done = false;
  for (const PbField& f : pb_fields(msg)) {
    if (!done && f.number == number && f.wire == 2) {
      put_bytes_field(out, number, edit(f.payload));
      done = true;
    } else {
      out.append(f.whole.data(), f.whole.size());
    }
  }
  if (!done) put_bytes_field(out, number, edit(std::string_view()));
  return out;
}

// `msg` with varint field `number` set to `value` (every occurrence replaced; appended when absent).
std::string set_varint(std::string_view msg, std::uint32_t number, std::uint64_t value) {
  std::string out;
  bool done = false;
  for (const PbField& f : pb_fields(msg)) {
    if (f.number == number && f.wire == 0) {
      if (done) continue;
      put_varint(out, static_cast<std::uint64_t>(number) << 3);
      put_varint(out, value);
      done = true;
    } else {
      out.append(f.whole.data(), f.whole.size());
    }
  }
  if (!done) {
    put_varint(out, static_cast<std::uint64_t>(number) << 3);
    put_varint(out, value);
  }
  return out;
}

// ModelProto: 2 trainer_spec, 3 normalizer_spec. NormalizerSpec: 3 add_dummy_prefix.
// TrainerSpec: 1 input, 2 model_prefix.
constexpr std::uint32_t kTrainerSpec = 2, kNormalizerSpec = 3, kAddDummyPrefix = 3;

// HF's get_spm_processor for legacy=false: the same model without the dummy prefix.
std::string without_dummy_prefix(const std::string& model) {
  return edit_submessage(model, kNormalizerSpec,
                         [](std::string_view spec) { return set_varint(spec, kAddDummyPrefix, 0); });
}

// Trained from an iterator, the spec has no input / model_prefix; record the names spm_train run in
// the output folder would (fields 1 and 2 come first in a serialized TrainerSpec).
std::string with_training_names(const std::string& model) {
  return edit_submessage(model, kTrainerSpec, [](std::string_view spec) {
    std::string out;
    put_bytes_field(out, 1, "corpus.txt");
    put_bytes_field(out, 2, "tokenizer");
    for (const PbField& f : pb_fields(spec))
      if (f.number != 1 && f.number != 2) out.append(f.whole.data(), f.whole.size());
    return out;
  });
}

// --- configuration ---

struct AddedToken {
  std::string content;
  std::int64_t id = -1;
  bool special = true;
  bool lstrip = false, rstrip = false;
};

json read_json(const std::string& path) {
  const std::string text = io::read_file_bytes(path);
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw Error(at(path, std::string("not valid JSON: ") + e.what()));
  }
}

bool get_bool(const json& j, const char* key, bool fallback, const std::string& where) {
  if (!j.is_object() || !j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_boolean()) throw Error(at(where, std::string(key) + " is not true or false"));
  return j[key].get<bool>();
}

// A token given as a string or an AddedToken dict {"content": ...}; null / absent -> not set.
bool token_string(const json& j, const char* key, std::string& out, const std::string& where) {
  if (!j.is_object() || !j.contains(key) || j[key].is_null()) return false;
  const json& v = j[key];
  if (v.is_string()) {
    out = v.get<std::string>();
    return true;
  }
  if (v.is_object() && v.contains("content") && v["content"].is_string()) {
    out = v["content"].get<std::string>();
    return true;
  }
  throw Error(at(where, std::string(key) + " is neither a string nor a token with \"content\""));
}



}  // namespace

struct Tokenizer::Impl {
  std::string model_path;
  std::string sha;
  detail::SpProcessor sp;         // the model as written (sp.encode / sp.decode)
  detail::SpProcessor sp_plain;   // without the dummy prefix (HF legacy=false)
  std::int64_t n_pieces = 0;
  std::vector<int> types;  // ModelProto.SentencePiece.Type per piece (1 normal ... 6 byte)
  std::vector<AddedToken> added;  // longest content first, for leftmost-longest matching
  std::unordered_map<std::int64_t, std::size_t> added_by_id;
  std::int64_t size = 0;
  bool add_bos = true, add_eos = false, legacy = true, add_prefix_space = true;
  std::string unk_token = "<unk>";
  std::int64_t bos = -1, eos = -1, unk = -1, pad = -1;
  std::size_t unk_length = 0;

  std::vector<int> sp_encode(const detail::SpProcessor& p, const std::string& text) const {
    std::vector<int> ids;
    const auto st = p.Encode(text, &ids);
    if (!st.ok()) throw Error(at(model_path, "cannot encode text: " + std::string(st.message())));
    return ids;
  }

  std::string sp_decode(const detail::SpProcessor& p, const std::vector<int>& ids) const {
    std::string out;
    const auto st = p.Decode(ids, &out);
    if (!st.ok()) throw Error(at(model_path, "cannot decode ids: " + std::string(st.message())));
    return out;
  }

  std::int64_t token_id(const std::string& content) const {
    for (const auto& a : added)
      if (a.content == content) return a.id;
    const int id = sp.PieceToId(content);
    return id;  // SentencePiece answers unk for an unknown piece, as HF's convert_tokens_to_ids does
  }

  const AddedToken* added_token(std::int64_t id) const {
    auto it = added_by_id.find(id);
    return it == added_by_id.end() ? nullptr : &added[it->second];
  }

  // HF's _tokenize of one piece of text between added tokens.
  void tokenize_chunk(const std::string& chunk, std::vector<std::int64_t>& out) const {
    std::vector<int> ids;
    if (legacy) {
      ids = sp_encode(sp, chunk);
    } else if (chunk.compare(0, kSpace.size(), kSpace) == 0 || chunk[0] == ' ') {
      // A leading space must survive: encode behind the unk token's text, then drop its pieces.
      ids = sp_encode(sp_plain, unk_token + chunk);
      if (ids.size() >= unk_length) ids.erase(ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(unk_length));
    } else {
      ids = sp_encode(sp_plain, chunk);
    }
    out.insert(out.end(), ids.begin(), ids.end());
  }

  std::vector<std::int64_t> tokenize(const std::string& input) const {
    std::vector<std::int64_t> ids;
    if (input.empty()) return ids;
    std::string text;
    if (!legacy) {
      if (add_prefix_space) text = kSpace;
      for (std::size_t i = 0; i < input.size();) {
        if (input.compare(i, kSpace.size(), kSpace) == 0) {
          text += ' ';
          i += kSpace.size();
        } else {
          text += input[i++];
        }
      }
    } else {
      text = input;
    }
    // Split at added tokens (leftmost, then longest), keeping which chunks are tokens.
    struct Chunk {
      std::string text;
      const AddedToken* token = nullptr;
    };
    std::vector<Chunk> chunks;
    std::size_t start = 0;
    for (std::size_t i = 0; i < text.size();) {
      const AddedToken* hit = nullptr;
      for (const auto& a : added)
        if (!a.content.empty() && text.compare(i, a.content.size(), a.content) == 0) {
          hit = &a;
          break;
        }
      if (!hit) {
        ++i;
        continue;
      }
      if (i > start) chunks.push_back({text.substr(start, i - start), nullptr});
      chunks.push_back({hit->content, hit});
      i += hit->content.size();
      start = i;
    }
    if (start < text.size()) chunks.push_back({text.substr(start), nullptr});
    auto is_ws = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'; };
    for (std::size_t i = 0; i < chunks.size(); ++i) {
      const AddedToken* t = chunks[i].token;
      if (!t) continue;
      if (t->rstrip && i + 1 < chunks.size() && !chunks[i + 1].token) {
        std::string& r = chunks[i + 1].text;
        std::size_t k = 0;
        while (k < r.size() && is_ws(r[k])) ++k;
        r.erase(0, k);
      }
      if (t->lstrip && i > 0 && !chunks[i - 1].token) {
        std::string& l = chunks[i - 1].text;
        while (!l.empty() && is_ws(l.back())) l.pop_back();
      }
    }
    std::vector<bool> from_added;
    for (const auto& c : chunks) {
      if (c.text.empty()) continue;
      if (c.token) {
        ids.push_back(c.token->id);
        from_added.push_back(true);
      } else {
        const std::size_t before = ids.size();
        tokenize_chunk(c.text, ids);
        from_added.resize(from_added.size() + (ids.size() - before), false);
      }
    }
    if (!legacy && ids.size() > 1 && !from_added[0] && ids[0] < n_pieces && sp.IdToPiece(static_cast<int>(ids[0])) == kSpace &&
        from_added[1] && added_token(ids[1]) && added_token(ids[1])->special)
      ids.erase(ids.begin());
    return ids;
  }
};

Tokenizer::Tokenizer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;
Tokenizer::~Tokenizer() = default;

Tokenizer Tokenizer::load(const std::string& path) {
  auto impl = std::make_unique<Impl>();
  std::error_code ec;
  const bool folder = fs::is_directory(path, ec);
  impl->model_path = folder ? (fs::path(path) / "tokenizer.model").string() : path;
  if (folder && !fs::exists(impl->model_path, ec))
    throw Error(at(impl->model_path, "no tokenizer.model in this folder (a SentencePiece tokenizer is needed)"));
  const std::string bytes = io::read_file_bytes(impl->model_path);
  impl->sha = io::sha256_hex(bytes);
  if (bytes.empty()) throw Error(at(impl->model_path, "empty file, not a SentencePiece model"));
  {
    const auto st = impl->sp.LoadFromSerializedProto(bytes);
    if (!st.ok()) throw Error(at(impl->model_path, "not a SentencePiece model: " + std::string(st.message())));
  }
  impl->n_pieces = impl->sp.GetPieceSize();
  if (impl->n_pieces <= 0) throw Error(at(impl->model_path, "SentencePiece model without pieces"));
  try {
    // Piece types straight from the proto (the API has no IsUserDefined): field 1 pieces, each
    // {1 piece, 2 score, 3 type}, type NORMAL when absent.
    for (const PbField& f : pb_fields(bytes)) {
      if (f.number != 1 || f.wire != 2) continue;
      int type = 1;
      for (const PbField& g : pb_fields(f.payload))
        if (g.number == 3 && g.wire == 0) type = static_cast<int>(g.varint);
      impl->types.push_back(type);
    }
    const auto st = impl->sp_plain.LoadFromSerializedProto(without_dummy_prefix(bytes));
    if (!st.ok()) throw Error(at(impl->model_path, "not a SentencePiece model: " + std::string(st.message())));
  } catch (const std::runtime_error& e) {
    if (dynamic_cast<const Error*>(&e)) throw;
    throw Error(at(impl->model_path, std::string("not a SentencePiece model: ") + e.what()));
  }

  // HF LlamaTokenizer defaults, then the folder's files.
  std::string bos = "<s>", eos = "</s>", unk = "<unk>", pad;
  bool has_pad = false;
  std::vector<AddedToken> added;
  if (folder) {
    const std::string cfg_path = (fs::path(path) / "tokenizer_config.json").string();
    const std::string map_path = (fs::path(path) / "special_tokens_map.json").string();
    const std::string added_path = (fs::path(path) / "added_tokens.json").string();
    json cfg = json::object(), map = json::object();
    if (fs::exists(map_path, ec)) {
      map = read_json(map_path);
      if (!map.is_object()) throw Error(at(map_path, "not a JSON object"));
      token_string(map, "bos_token", bos, map_path);
      token_string(map, "eos_token", eos, map_path);
      token_string(map, "unk_token", unk, map_path);
      has_pad = token_string(map, "pad_token", pad, map_path);
    }
    if (fs::exists(cfg_path, ec)) {
      cfg = read_json(cfg_path);
      if (!cfg.is_object()) throw Error(at(cfg_path, "not a JSON object"));
      impl->add_bos = get_bool(cfg, "add_bos_token", true, cfg_path);
      impl->add_eos = get_bool(cfg, "add_eos_token", false, cfg_path);
      impl->legacy = get_bool(cfg, "legacy", true, cfg_path);
      impl->add_prefix_space = get_bool(cfg, "add_prefix_space", true, cfg_path);
      token_string(cfg, "bos_token", bos, cfg_path);
      token_string(cfg, "eos_token", eos, cfg_path);
      token_string(cfg, "unk_token", unk, cfg_path);
      if (cfg.contains("pad_token")) {
        has_pad = token_string(cfg, "pad_token", pad, cfg_path);
      }
      if (cfg.contains("added_tokens_decoder")) {
        const json& d = cfg["added_tokens_decoder"];
        if (!d.is_object()) throw Error(at(cfg_path, "added_tokens_decoder is not an object"));
        for (auto it = d.begin(); it != d.end(); ++it) {
          AddedToken a;
          const std::string& k = it.key();
          if (k.empty() || k.size() > 9 || !std::all_of(k.begin(), k.end(), [](char c) { return c >= '0' && c <= '9'; }))
            throw Error(at(cfg_path, "added_tokens_decoder key \"" + k + "\" is not a token id"));
          a.id = std::stoll(k);
          const json& v = it.value();
          if (!v.is_object() || !v.contains("content") || !v["content"].is_string())
            throw Error(at(cfg_path, "added token " + k + " has no \"content\" string"));
          a.content = v["content"].get<std::string>();
          if (a.content.empty()) throw Error(at(cfg_path, "added token " + k + " is empty"));
          a.special = get_bool(v, "special", false, cfg_path);
          a.lstrip = get_bool(v, "lstrip", false, cfg_path);
          a.rstrip = get_bool(v, "rstrip", false, cfg_path);
          added.push_back(a);
        }
      }
    }
    if (fs::exists(added_path, ec)) {
      const json j = read_json(added_path);
      if (!j.is_object()) throw Error(at(added_path, "not a JSON object {token: id}"));
      for (auto it = j.begin(); it != j.end(); ++it) {
        if (!it.value().is_number_integer() || it.value().get<std::int64_t>() < 0 ||
            it.value().get<std::int64_t>() > 999999999 || it.key().empty())
          throw Error(at(added_path, "token \"" + it.key() + "\" has no valid id"));
        const std::int64_t id = it.value().get<std::int64_t>();
        if (std::none_of(added.begin(), added.end(), [&](const AddedToken& a) { return a.id == id; }))
          added.push_back({it.key(), id, false, false, false});
      }
    }
  }
  // Added tokens that are pieces of the model must be those pieces (HF maps them through the model).
  for (const auto& a : added)
    if (a.id < impl->n_pieces && impl->sp.IdToPiece(static_cast<int>(a.id)) != a.content &&
        !(impl->sp.IsUnknown(static_cast<int>(a.id))))
      throw Error(at(impl->model_path, "added token " + std::to_string(a.id) + " \"" + a.content +
                                           "\" differs from the model's piece \"" +
                                           impl->sp.IdToPiece(static_cast<int>(a.id)) + "\""));
  impl->added = added;
  // The special tokens are added tokens too (HF splits them out of text), when the model has them.
  auto ensure_special = [&](const std::string& content) {
    if (content.empty()) return;
    for (auto& a : impl->added)
      if (a.content == content) {
        a.special = true;
        return;
      }
    const int id = impl->sp.PieceToId(content);
    if (impl->sp.IdToPiece(id) == content) impl->added.push_back({content, id, true, false, false});
  };
  ensure_special(unk);
  ensure_special(bos);
  ensure_special(eos);
  if (has_pad) ensure_special(pad);
  std::stable_sort(impl->added.begin(), impl->added.end(),
                   [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });
  impl->size = impl->n_pieces;
  for (std::size_t i = 0; i < impl->added.size(); ++i) {
    impl->added_by_id.emplace(impl->added[i].id, i);
    impl->size = std::max(impl->size, impl->added[i].id + 1);
  }
  impl->unk_token = unk;
  impl->unk = impl->token_id(unk);
  impl->bos = impl->token_id(bos);
  impl->eos = impl->token_id(eos);
  impl->pad = has_pad ? impl->token_id(pad) : -1;
  impl->unk_length = impl->sp_encode(impl->sp_plain, unk).size();
  return Tokenizer(std::move(impl));
}

std::vector<std::int64_t> Tokenizer::encode(const std::string& text, bool add_bos) const {
  std::vector<std::int64_t> ids;
  if (add_bos && impl_->bos >= 0) ids.push_back(impl_->bos);
  const auto body = impl_->tokenize(text);
  ids.insert(ids.end(), body.begin(), body.end());
  return ids;
}

std::vector<std::int64_t> Tokenizer::encode(const std::string& text) const {
  auto ids = encode(text, impl_->add_bos);
  if (impl_->add_eos && impl_->eos >= 0) ids.push_back(impl_->eos);
  return ids;
}

std::vector<std::int64_t> Tokenizer::encode_plain(const std::string& text) const {
  const auto ids = impl_->sp_encode(impl_->sp, text);
  return std::vector<std::int64_t>(ids.begin(), ids.end());
}

std::vector<std::string> Tokenizer::pieces(const std::string& text) const {
  std::vector<std::string> out;
  const auto st = impl_->sp.Encode(text, &out);
  if (!st.ok()) throw Error(at(impl_->model_path, "cannot encode text: " + std::string(st.message())));
  return out;
}

std::string Tokenizer::decode(const std::vector<std::int64_t>& ids, bool skip_special) const {
  const Impl& m = *impl_;
  for (std::int64_t id : ids)
    if (id < 0 || id >= m.size)
      throw Error("token id " + std::to_string(id) + " is outside the vocabulary (0.." + std::to_string(m.size - 1) + ")");
  std::vector<std::int64_t> kept;
  for (std::int64_t id : ids) {
    const AddedToken* a = m.added_token(id);
    if (skip_special && a && a->special) continue;
    kept.push_back(id);
  }
  // Runs of model pieces go through SentencePiece; added tokens appear as their strings. The first
  // run drops the dummy-prefix space (sp.decode); later runs keep a leading space.
  std::string out;
  std::vector<int> run;
  bool first = true, prev_added = false;
  auto flush = [&] {
    if (run.empty()) return;
    out += m.sp_decode(first ? m.sp : m.sp_plain, run);
    run.clear();
  };
  for (std::size_t i = 0; i < kept.size(); ++i) {
    const std::int64_t id = kept[i];
    const AddedToken* a = m.added_token(id);
    if (a) {
      flush();
      if (m.legacy && !prev_added && i != 0) out += ' ';
      out += a->content;
      first = false;
      prev_added = true;
      continue;
    }
    if (prev_added && i == 1 && !m.legacy && m.add_prefix_space &&
        m.sp.IdToPiece(static_cast<int>(id)).compare(0, kSpace.size(), kSpace) != 0)
      out += ' ';
    run.push_back(static_cast<int>(id));
    prev_added = false;
  }
  flush();
  return out;
}

std::int64_t Tokenizer::bos_id() const { return impl_->bos; }
std::int64_t Tokenizer::eos_id() const { return impl_->eos; }
std::int64_t Tokenizer::unk_id() const { return impl_->unk; }
std::int64_t Tokenizer::pad_id() const { return impl_->pad; }
std::int64_t Tokenizer::vocab_size() const { return impl_->n_pieces; }
std::int64_t Tokenizer::size() const { return impl_->size; }
bool Tokenizer::add_bos_token() const { return impl_->add_bos; }
bool Tokenizer::add_eos_token() const { return impl_->add_eos; }
bool Tokenizer::legacy() const { return impl_->legacy; }
std::string Tokenizer::sha256() const { return impl_->sha; }
const std::string& Tokenizer::model_path() const { return impl_->model_path; }

std::string Tokenizer::id_to_piece(std::int64_t id) const {
  if (const AddedToken* a = impl_->added_token(id); a && id >= impl_->n_pieces) return a->content;
  if (id < 0 || id >= impl_->n_pieces) throw Error("token id " + std::to_string(id) + " is outside the vocabulary");
  return impl_->sp.IdToPiece(static_cast<int>(id));
}

std::int64_t Tokenizer::piece_to_id(const std::string& piece) const {
  for (const auto& a : impl_->added)
    if (a.content == piece) return a.id;
  const int id = impl_->sp.PieceToId(piece);
  return impl_->sp.IdToPiece(id) == piece ? id : -1;
}

float Tokenizer::score(std::int64_t id) const {
  if (id >= impl_->n_pieces && id < impl_->size) return 0.0F;
  if (id < 0 || id >= impl_->n_pieces) throw Error("token id " + std::to_string(id) + " is outside the vocabulary");
  return impl_->sp.GetScore(static_cast<int>(id));
}

std::string Tokenizer::piece_type(std::int64_t id) const {
  if (id >= impl_->n_pieces && id < impl_->size) return "added";
  if (id < 0 || id >= impl_->n_pieces) throw Error("token id " + std::to_string(id) + " is outside the vocabulary");
  static const char* const names[] = {"normal", "normal", "unknown", "control", "user_defined", "unused", "byte"};
  const std::size_t i = static_cast<std::size_t>(id);
  const int t = i < impl_->types.size() ? impl_->types[i] : 1;
  return t >= 1 && t <= 6 ? names[t] : "normal";
}

bool Tokenizer::is_special(std::int64_t id) const {
  const AddedToken* a = impl_->added_token(id);
  return a && a->special;
}

void train_tokenizer(const std::vector<std::string>& lines, const std::string& out_dir,
                     const TokenizerTrainOptions& o) {
  for (std::size_t i = 0; i < lines.size(); ++i)
    if (lines[i].find('\n') != std::string::npos)
      throw Error(at(out_dir, "training line " + std::to_string(i + 1) + " holds a line break"));
  if (o.vocab_size < 1) throw Error(at(out_dir, "vocab_size must be positive"));
  std::string symbols;
  for (const auto& s : o.placeholders)
    if (s.empty() || s.find(',') != std::string::npos || s.find(' ') != std::string::npos)
      throw Error(at(out_dir, "placeholder \"" + s + "\" is empty or holds a ',' or a space"));
  for (const auto& s : o.placeholders) symbols += (symbols.empty() ? "" : ",") + s;
  for (const auto& s : o.placeholders) symbols += "," + kSpace + s;
  char coverage[32];
  std::snprintf(coverage, sizeof coverage, "%.17g", o.character_coverage);
  // Meta's Llama trainer spec (the fixture README), vocabulary size and threads aside.
  const std::unordered_map<std::string, std::string> args = {
      {"model_type", "bpe"},
      {"vocab_size", std::to_string(o.vocab_size)},
      {"character_coverage", coverage},
      {"byte_fallback", "true"},
      {"split_digits", "true"},
      {"allow_whitespace_only_pieces", "true"},
      {"normalization_rule_name", "identity"},
      {"add_dummy_prefix", "true"},
      {"remove_extra_whitespaces", "false"},
      {"max_sentencepiece_length", "16"},
      {"max_sentence_length", std::to_string(o.max_sentence_length)},
      {"split_by_unicode_script", "true"},
      {"split_by_whitespace", "true"},
      {"split_by_number", "true"},
      {"treat_whitespace_as_suffix", "false"},
      {"vocabulary_output_piece_score", "true"},
      {"hard_vocab_limit", "true"},
      {"unk_id", "0"},
      {"bos_id", "1"},
      {"eos_id", "2"},
      {"pad_id", "-1"},
      {"unk_piece", "<unk>"},
      {"bos_piece", "<s>"},
      {"eos_piece", "</s>"},
      {"num_threads", "1"},
      {"input_sentence_size", "0"},
      {"shuffle_input_sentence", "true"},
      {"self_test_sample_size", "0"},
      {"user_defined_symbols", symbols},
      {"minloglevel", "2"},
  };
  std::string model;
  const auto st = detail::sp_train(args, lines, static_cast<unsigned int>(o.seed % 0xFFFFFFFFULL), &model);
  if (!st.ok()) throw Error(at(out_dir, "tokenizer training failed: " + std::string(st.message())));
  model = with_training_names(model);

  // HF LlamaTokenizer's files, as save_pretrained writes them (sorted keys, 2-space indent).
  auto token = [](const std::string& content) {
    return json{{"content", content}, {"lstrip", false}, {"normalized", false}, {"rstrip", false}, {"single_word", false}};
  };
  json decoder = json::object();
  const char* specials[] = {"<unk>", "<s>", "</s>"};
  for (int i = 0; i < 3; ++i) {
    json t = token(specials[i]);
    t["special"] = true;
    decoder[std::to_string(i)] = t;
  }
  const json config = {
      {"add_bos_token", true},
      {"add_eos_token", false},
      {"added_tokens_decoder", decoder},
      {"bos_token", "<s>"},
      {"clean_up_tokenization_spaces", false},
      {"eos_token", "</s>"},
      {"legacy", false},
      {"model_max_length", o.model_max_length},
      {"pad_token", nullptr},
      {"padding_side", "right"},
      {"sp_model_kwargs", json::object()},
      {"spaces_between_special_tokens", false},
      {"tokenizer_class", "LlamaTokenizer"},
      {"unk_token", "<unk>"},
      {"use_default_system_prompt", false},
  };
  const json special_map = {{"bos_token", token("<s>")}, {"eos_token", token("</s>")}, {"unk_token", token("<unk>")}};

  // Written into a fresh folder beside out_dir, then renamed into place (cx's folder writer).
  cli::write_folder_atomic(out_dir, [&](const std::string& tmp) {
    cli::write_file_atomic(tmp + "/tokenizer.model", model);
    cli::write_file_atomic(tmp + "/tokenizer_config.json", config.dump(2) + "\n");
    cli::write_file_atomic(tmp + "/special_tokens_map.json", special_map.dump(2) + "\n");
  });
}

}  // namespace cx::text
