// Loading and saving Hugging Face folders: config parsing, strict key and shape checks, sharded
// and classification checkpoints, F16/BF16 weights, provenance hashes, and the save round trip.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "cx/cli/error.hpp"
#include "cx/io/safetensors.hpp"
#include "cx/io/sha256.hpp"
#include "cx/model/hf_loader.hpp"
#include "test_support.hpp"

namespace {
namespace fs = std::filesystem;
using nlohmann::json;

using cx_test::TempDir;

std::string fixture_dir(const std::string& name) { return cx_test::shared_dir() + "/fixtures/hf/" + name; }

#define REQUIRE_FIXTURE(dir) \
  if (!fs::exists(std::string(dir) + "/model.safetensors")) GTEST_SKIP() << "fixture absent: " << (dir)

std::string read_text(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

json read_json(const std::string& path) { return json::parse(read_text(path)); }

// The fixture's tensors as owned arrays, to be edited and written back.
cx::io::NamedArrays fixture_arrays(const std::string& dir) {
  auto file = cx::io::SafetensorsFile::open(dir + "/model.safetensors");
  cx::io::NamedArrays arrays;
  for (const auto& [name, view] : file.tensors()) arrays.emplace_back(name, view.copy());
  return arrays;
}

// Runs `f`, expects a cx::Error whose message contains every one of `parts`; returns the message.
template <class F>
std::string expect_error(F&& f, std::initializer_list<std::string> parts) {
  try {
    f();
  } catch (const cx::Error& e) {
    std::string msg = e.what();
    for (const auto& part : parts) EXPECT_NE(msg.find(part), std::string::npos) << "\"" << part << "\" not in: " << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << "not one line: " << msg;
    return msg;
  }
  ADD_FAILURE() << "no cx::Error thrown";
  return "";
}

cx::model::LoadOptions no_hash() {
  cx::model::LoadOptions o;
  o.hash = false;
  return o;
}

torch::Tensor run(cx::model::VitModel& model, std::int64_t h = 84, std::int64_t w = 98) {
  torch::NoGradGuard no_grad;
  auto gen = at::detail::createCPUGenerator(3);
  return model.forward(torch::randn({1, 3, h, w}, gen, torch::kFloat32)).last_hidden_state;
}

void expect_same_parameters(const cx::model::VitModel& a, const cx::model::VitModel& b) {
  auto pb = b.named_parameters(true);
  for (const auto& item : a.named_parameters(true)) {
    ASSERT_TRUE(pb.contains(item.key())) << item.key();
    EXPECT_TRUE(torch::equal(item.value(), pb[item.key()])) << item.key();
  }
  EXPECT_EQ(a.named_parameters(true).size(), pb.size());
}

// --- config.json ---

TEST(Config, ParsesFixtureAndDefaults) {
  const std::string dir = fixture_dir("tiny");
  REQUIRE_FIXTURE(dir);
  auto c = cx::model::read_vit_config(dir + "/config.json");
  EXPECT_TRUE(c.registers_model());
  EXPECT_EQ(c.hidden_size, 48);
  EXPECT_EQ(c.num_hidden_layers, 2);
  EXPECT_EQ(c.num_attention_heads, 3);
  EXPECT_EQ(c.num_register_tokens, 4);
  EXPECT_EQ(c.mlp_hidden(), 192);
  EXPECT_EQ(c.num_positions(), 16);
  EXPECT_EQ(c.activation, cx::model::Activation::gelu_erf);
  EXPECT_EQ(c.dtype, "float32");
  EXPECT_TRUE(c.use_mask_token);  // absent in the registers config: HF's default

  auto d = cx::model::read_vit_config(fixture_dir("tiny-dinov2") + "/config.json");
  EXPECT_FALSE(d.registers_model());
  EXPECT_EQ(d.num_register_tokens, 0);
  auto s = cx::model::read_vit_config(fixture_dir("tiny-swiglu") + "/config.json");
  EXPECT_EQ(s.mlp_hidden(), 128);  // (int(192 * 2 / 3) + 7) // 8 * 8
}

TEST(Config, SwigluWidthFormula) {
  cx::model::VitConfig c;
  c.use_swiglu_ffn = true;
  c.hidden_size = 1536;  // ViT-g/14
  EXPECT_EQ(c.mlp_hidden(), 4096);
  c.hidden_size = 100;  // 400 -> int(266.67) = 266 -> 272
  EXPECT_EQ(c.mlp_hidden(), 272);
}

TEST(Config, KeysAndErrors) {
  json base = {{"model_type", "dinov2_with_registers"}, {"hidden_size", 64}, {"num_hidden_layers", 2},
               {"num_attention_heads", 4}, {"patch_size", 14}, {"image_size", 56}};
  auto c = cx::model::parse_vit_config(base, "cfg.json");
  EXPECT_EQ(c.num_register_tokens, 4);
  EXPECT_DOUBLE_EQ(c.layer_norm_eps, 1e-6);
  json j = base;
  j["dtype"] = "bfloat16";  // transformers >= 4.56
  EXPECT_EQ(cx::model::parse_vit_config(j, "cfg.json").dtype, "bfloat16");
  j = base;
  j["torch_dtype"] = "float16";
  EXPECT_EQ(cx::model::parse_vit_config(j, "cfg.json").dtype, "float16");
  j["use_mask_token"] = false;
  EXPECT_FALSE(cx::model::parse_vit_config(j, "cfg.json").use_mask_token);

  for (const auto& [name, act] : std::vector<std::pair<std::string, cx::model::Activation>>{
           {"gelu", cx::model::Activation::gelu_erf},
           {"gelu_new", cx::model::Activation::gelu_tanh},
           {"gelu_pytorch_tanh", cx::model::Activation::gelu_tanh},
           {"silu", cx::model::Activation::silu}}) {
    j = base;
    j["hidden_act"] = name;
    EXPECT_EQ(cx::model::parse_vit_config(j, "cfg.json").activation, act) << name;
  }
  j = base;
  j["hidden_act"] = "quick_gelu";
  expect_error([&] { cx::model::parse_vit_config(j, "cfg.json"); }, {"cfg.json: ", "quick_gelu"});

  j = base;
  j["model_type"] = "vit";
  expect_error([&] { cx::model::parse_vit_config(j, "m/config.json"); }, {"m/config.json: ", "model_type \"vit\""});
  j = base;
  j.erase("model_type");
  expect_error([&] { cx::model::parse_vit_config(j, "cfg.json"); }, {"cfg.json: ", "\"model_type\""});
  j = base;
  j.erase("hidden_size");
  expect_error([&] { cx::model::parse_vit_config(j, "cfg.json"); }, {"cfg.json: ", "missing", "\"hidden_size\""});
  j = base;
  j["num_attention_heads"] = 5;
  expect_error([&] { cx::model::parse_vit_config(j, "cfg.json"); }, {"not a multiple of num_attention_heads 5"});
  j = base;
  j["patch_size"] = "14";
  expect_error([&] { cx::model::parse_vit_config(j, "cfg.json"); }, {"\"patch_size\" must be an integer"});
}

// --- loading: provenance ---

TEST(Loader, FixtureProvenance) {
  const std::string dir = fixture_dir("tiny");
  REQUIRE_FIXTURE(dir);
  auto loaded = cx::model::load_hf_vit(dir);
  // What `sha256sum model.safetensors` printed for the fixture.
  EXPECT_EQ(loaded.weights_sha256, "cd69c5a6d1bc84bc333a9edab6a91714a57a7c7f56e49a20588108911180d5ae");
  ASSERT_EQ(loaded.weight_files.size(), 1u);
  EXPECT_EQ(loaded.weight_files[0].sha256, loaded.weights_sha256);
  EXPECT_EQ(loaded.model_id, "tiny");
  EXPECT_EQ(loaded.model->named_parameters(true).size(), 44u);
  EXPECT_FALSE(loaded.model->is_training());
  EXPECT_EQ(cx::model::load_hf_vit(dir + "/", no_hash()).model_id, "tiny");
}

TEST(Loader, ModelIdFromNameOrPath) {
  const std::string dir = fixture_dir("tiny");
  REQUIRE_FIXTURE(dir);
  TempDir tmp;
  fs::copy_file(dir + "/model.safetensors", tmp / "model.safetensors");
  json config = read_json(dir + "/config.json");
  config["_name_or_path"] = "someorg/cxformer-tiny";
  write_text(tmp / "config.json", config.dump());
  EXPECT_EQ(cx::model::load_hf_vit(tmp.path(), no_hash()).model_id, "someorg/cxformer-tiny");
  config["_name_or_path"] = "/home/someone/checkpoints/run3";  // a local path: the folder name is used
  write_text(tmp / "config.json", config.dump());
  EXPECT_EQ(cx::model::load_hf_vit(tmp.path(), no_hash()).model_id, fs::path(tmp.path()).filename().string());
}

// --- loading: bad folders and files ---

TEST(Loader, FolderErrors) {
  const std::string dir = fixture_dir("tiny");
  REQUIRE_FIXTURE(dir);
  TempDir tmp;
  expect_error([&] { cx::model::load_hf_vit(tmp / "absent"); }, {tmp / "absent", "no such directory"});
  fs::copy_file(dir + "/config.json", tmp / "config.json");
  expect_error([&] { cx::model::load_hf_vit(tmp.path()); },
               {tmp.path() + ": ", "no model.safetensors or model.safetensors.index.json"});
  write_text(tmp / "pytorch_model.bin", "pickle");
  expect_error([&] { cx::model::load_hf_vit(tmp.path()); }, {"pytorch_model.bin is a pickle and is never read"});
  TempDir no_config;
  fs::copy_file(dir + "/model.safetensors", no_config / "model.safetensors");
  expect_error([&] { cx::model::load_hf_vit(no_config.path()); }, {no_config / "config.json", "cannot open"});
}

TEST(Loader, UnknownModelTypeNamesConfig) {
  const std::string dir = fixture_dir("tiny");
  REQUIRE_FIXTURE(dir);
  TempDir tmp;
  fs::copy_file(dir + "/model.safetensors", tmp / "model.safetensors");
  json config = read_json(dir + "/config.json");
  config["model_type"] = "vit_mae";
  write_text(tmp / "config.json", config.dump());
  expect_error([&] { cx::model::load_hf_vit(tmp.path()); }, {tmp / "config.json", "unsupported model_type \"vit_mae\""});
}

TEST(Loader, WrongShapeNamesKeyAndShapes) {
  const std::string dir = fixture_dir("tiny");
  REQUIRE_FIXTURE(dir);
  TempDir tmp;
  fs::copy_file(dir + "/config.json", tmp / "config.json");
  auto arrays = fixture_arrays(dir);
  for (auto& [name, a] : arrays)
    if (name == "encoder.layer.1.mlp.fc1.weight") a = cx::io::NdArray::zeros(cx::io::DType::f32, {96, 48});
  cx::io::write_safetensors_file(tmp / "model.safetensors", arrays);
  expect_error([&] { cx::model::load_hf_vit(tmp.path()); },
               {tmp / "model.safetensors", "\"encoder.layer.1.mlp.fc1.weight\"", "[96, 48]", "expected [192, 48]"});
}

TEST(Loader, MissingAndUnexpectedKeysListedInOneLine) {
  const std::string dir = fixture_dir("tiny");
  REQUIRE_FIXTURE(dir);
  TempDir tmp;
  fs::copy_file(dir + "/config.json", tmp / "config.json");
  cx::io::NamedArrays kept;
  for (auto& [name, a] : fixture_arrays(dir))
    if (name != "embeddings.register_tokens" && name != "encoder.layer.0.norm2.bias") kept.emplace_back(name, a);
  kept.emplace_back("encoder.layer.0.attn.qkv.weight", cx::io::NdArray::zeros(cx::io::DType::f32, {144, 48}));
  cx::io::write_safetensors_file(tmp / "model.safetensors", kept);
  expect_error([&] { cx::model::load_hf_vit(tmp.path()); },
               {tmp.path() + ": ", "missing 2 key(s): embeddings.register_tokens, encoder.layer.0.norm2.bias",
                "unexpected 1 key(s): encoder.layer.0.attn.qkv.weight"});

  // A config deeper than the weights: 18 missing keys per layer, the list cut after 8 names.
  json config = read_json(dir + "/config.json");
  config["num_hidden_layers"] = 4;
  write_text(tmp / "config.json", config.dump());
  fs::copy_file(dir + "/model.safetensors", tmp / "model.safetensors", fs::copy_options::overwrite_existing);
  auto msg = expect_error([&] { cx::model::load_hf_vit(tmp.path()); }, {"missing 36 key(s): ", "... (28 more)"});
  EXPECT_EQ(msg.find("unexpected"), std::string::npos) << msg;
}

TEST(Loader, TruncatedSafetensors) {
  const std::string dir = fixture_dir("tiny");
  REQUIRE_FIXTURE(dir);
  TempDir tmp;
  fs::copy_file(dir + "/config.json", tmp / "config.json");
  const std::string bytes = read_text(dir + "/model.safetensors");
  // Cut inside the data, then inside the JSON header: either way one error naming the file.
  for (size_t keep : {bytes.size() - 100, size_t{200}}) {
    write_text(tmp / "model.safetensors", bytes.substr(0, keep));
    expect_error([&] { cx::model::load_hf_vit(tmp.path()); }, {tmp / "model.safetensors: "});
  }
  EXPECT_THROW(cx::model::load_hf_vit(tmp.path()), cx::TruncatedError);
}

// --- sharded and classification checkpoints ---

TEST(Loader, ShardedIndex) {
  const std::string dir = fixture_dir("tiny");
  REQUIRE_FIXTURE(dir);
  TempDir tmp;
  fs::copy_file(dir + "/config.json", tmp / "config.json");
  cx::io::NamedArrays first, second;
  json weight_map = json::object();
  for (auto& [name, a] : fixture_arrays(dir)) {
    const bool early = name.rfind("embeddings.", 0) == 0 || name.rfind("encoder.layer.0.", 0) == 0;
    const std::string shard = early ? "model-00001-of-00002.safetensors" : "model-00002-of-00002.safetensors";
    (early ? first : second).emplace_back(name, a);
    weight_map[name] = shard;
  }
  cx::io::write_safetensors_file(tmp / "model-00001-of-00002.safetensors", first);
  cx::io::write_safetensors_file(tmp / "model-00002-of-00002.safetensors", second);
  write_text(tmp / "model.safetensors.index.json",
             json{{"metadata", {{"total_size", 0}}}, {"weight_map", weight_map}}.dump(2));

  auto sharded = cx::model::load_hf_vit(tmp.path());
  auto single = cx::model::load_hf_vit(dir, no_hash());
  expect_same_parameters(*single.model, *sharded.model);
  EXPECT_TRUE(torch::equal(run(*single.model), run(*sharded.model)));
  ASSERT_EQ(sharded.weight_files.size(), 2u);
  const std::string manifest =
      cx::io::sha256_file_hex(tmp / "model-00001-of-00002.safetensors") + "  model-00001-of-00002.safetensors\n" +
      cx::io::sha256_file_hex(tmp / "model-00002-of-00002.safetensors") + "  model-00002-of-00002.safetensors\n";
  EXPECT_EQ(sharded.weights_sha256, cx::io::sha256_hex(manifest));

  // The index must agree with the shards, and may only name files beside it.
  json bad = weight_map;
  bad["layernorm.weight"] = "model-00001-of-00002.safetensors";
  write_text(tmp / "model.safetensors.index.json", json{{"weight_map", bad}}.dump());
  expect_error([&] { cx::model::load_hf_vit(tmp.path()); },
               {tmp / "model-00001-of-00002.safetensors", "no tensor \"layernorm.weight\""});
  bad = weight_map;
  bad["layernorm.weight"] = "../elsewhere.safetensors";
  write_text(tmp / "model.safetensors.index.json", json{{"weight_map", bad}}.dump());
  expect_error([&] { cx::model::load_hf_vit(tmp.path()); }, {"model.safetensors.index.json: ", "not a file in the folder"});
  fs::remove(tmp / "model-00002-of-00002.safetensors");
  write_text(tmp / "model.safetensors.index.json", json{{"weight_map", weight_map}}.dump());
  expect_error([&] { cx::model::load_hf_vit(tmp.path()); }, {tmp / "model-00002-of-00002.safetensors", "cannot open"});
}

TEST(Loader, ClassificationCheckpointPrefixes) {
  for (const auto& [fixture, prefix] : std::vector<std::pair<std::string, std::string>>{
           {"tiny", "dinov2_with_registers."}, {"tiny-dinov2", "dinov2."}}) {
    const std::string dir = fixture_dir(fixture);
    REQUIRE_FIXTURE(dir);
    TempDir tmp;
    fs::copy_file(dir + "/config.json", tmp / "config.json");
    cx::io::NamedArrays prefixed;
    for (auto& [name, a] : fixture_arrays(dir)) prefixed.emplace_back(prefix + name, a);
    prefixed.emplace_back("classifier.weight", cx::io::NdArray::zeros(cx::io::DType::f32, {3, 96}));
    prefixed.emplace_back("classifier.bias", cx::io::NdArray::zeros(cx::io::DType::f32, {3}));
    cx::io::write_safetensors_file(tmp / "model.safetensors", prefixed);
    auto loaded = cx::model::load_hf_vit(tmp.path(), no_hash());
    auto plain = cx::model::load_hf_vit(dir, no_hash());
    expect_same_parameters(*plain.model, *loaded.model);
    EXPECT_EQ(cx::model::read_hf_weights(tmp.path()).size(), plain.model->named_parameters(true).size());
  }
}

// --- saving ---

TEST(Saver, RandomWeightsRoundTrip) {
  cx::model::VitConfig c = cx::model::vit_small_registers_config();
  c.hidden_size = 32;
  c.num_attention_heads = 2;
  c.num_hidden_layers = 2;
  c.image_size = 42;
  c.use_swiglu_ffn = true;
  c.num_register_tokens = 2;
  auto weights = cx::model::random_vit_weights(c, 7);
  auto again = cx::model::random_vit_weights(c, 7);
  auto other = cx::model::random_vit_weights(c, 8);
  ASSERT_EQ(weights.size(), again.size());
  for (size_t i = 0; i < weights.size(); ++i) {
    EXPECT_EQ(weights[i].first, again[i].first);
    EXPECT_TRUE(torch::equal(weights[i].second, again[i].second)) << weights[i].first;
    EXPECT_FALSE(torch::equal(weights[i].second, other[i].second)) << weights[i].first;
  }

  TempDir tmp;
  const std::string folder = tmp / "vit";  // created by the save
  cx::model::save_hf_folder(folder, c, weights);
  auto loaded = cx::model::load_hf_vit(folder);
  for (const auto& [name, tensor] : weights) EXPECT_TRUE(torch::equal(loaded.model->parameter(name), tensor)) << name;
  EXPECT_EQ(loaded.model_id, "vit");
  EXPECT_EQ(loaded.weights_sha256, cx::io::sha256_file_hex(folder + "/model.safetensors"));

  json config = read_json(folder + "/config.json");
  EXPECT_EQ(config["model_type"], "dinov2_with_registers");
  EXPECT_EQ(config["architectures"], json::array({"Dinov2WithRegistersModel"}));
  EXPECT_EQ(config["hidden_size"], 32);
  EXPECT_EQ(config["num_register_tokens"], 2);
  EXPECT_EQ(config["use_swiglu_ffn"], true);
  EXPECT_TRUE(config["mlp_ratio"].is_number_integer());  // 4, as Python writes it
  EXPECT_EQ(config["torch_dtype"], "float32");
  auto header = cx::io::SafetensorsFile::open(folder + "/model.safetensors");
  EXPECT_EQ(header.metadata().at("format"), "pt");
  EXPECT_TRUE(header.has("encoder.layer.1.mlp.weights_in.weight"));

  // Same inputs, same bytes.
  const std::string first = read_text(folder + "/model.safetensors");
  cx::model::save_hf_folder(folder, *loaded.model);
  EXPECT_EQ(read_text(folder + "/model.safetensors"), first);
  size_t files = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(folder)) ++files;
  EXPECT_EQ(files, 2u);  // config.json and model.safetensors, no temporaries left behind
}

TEST(Saver, ResavedFixtureKeepsKeysBytesAndConfig) {
  const std::string dir = fixture_dir("tiny-dinov2");
  REQUIRE_FIXTURE(dir);
  TempDir tmp;
  auto loaded = cx::model::load_hf_vit(dir, no_hash());
  cx::model::save_hf_folder(tmp.path(), *loaded.model);
  auto original = cx::io::SafetensorsFile::open(dir + "/model.safetensors");
  auto resaved = cx::io::SafetensorsFile::open(tmp / "model.safetensors");
  ASSERT_EQ(original.tensors().size(), resaved.tensors().size());
  for (const auto& [name, view] : original.tensors()) {
    ASSERT_TRUE(resaved.has(name)) << name;
    const auto& r = resaved.at(name);
    EXPECT_EQ(r.shape, view.shape) << name;
    ASSERT_EQ(r.nbytes, view.nbytes) << name;
    EXPECT_EQ(std::memcmp(r.data, view.data, view.nbytes), 0) << name;
  }
  json a = read_json(dir + "/config.json"), b = read_json(tmp / "config.json");
  for (const auto& [key, value] : a.items()) {
    if (key == "torch_dtype") continue;
    EXPECT_EQ(b[key], value) << key;  // every key survives, unknown ones (stage_names ...) included
  }
  EXPECT_FALSE(b.contains("num_register_tokens"));
  EXPECT_EQ(b["use_mask_token"], true);
}

TEST(Saver, HalfAndBfloat16Weights) {
  const std::string dir = fixture_dir("tiny");
  REQUIRE_FIXTURE(dir);
  auto reference = cx::model::load_hf_vit(dir, no_hash());
  for (auto [dtype, name, config_name] : std::vector<std::tuple<torch::Dtype, std::string, std::string>>{
           {torch::kFloat16, "F16", "float16"}, {torch::kBFloat16, "BF16", "bfloat16"}}) {
    TempDir tmp;
    cx::model::save_hf_folder(tmp.path(), *reference.model, dtype);
    auto file = cx::io::SafetensorsFile::open(tmp / "model.safetensors");
    EXPECT_EQ(cx::io::dtype_safetensors_name(file.at("layernorm.weight").dtype), name);
    EXPECT_EQ(read_json(tmp / "config.json")["torch_dtype"], config_name);
    auto loaded = cx::model::load_hf_vit(tmp.path(), no_hash());
    for (const auto& item : reference.model->named_parameters(true)) {
      torch::Tensor rounded = item.value().to(dtype).to(torch::kFloat32);
      EXPECT_TRUE(torch::equal(loaded.model->parameter(item.key()), rounded)) << name << " " << item.key();
    }
    EXPECT_EQ(loaded.model->parameter("layernorm.weight").scalar_type(), torch::kFloat32);
  }
}

TEST(Saver, RejectsWeightsThatDoNotFitTheConfig) {
  cx::model::VitConfig c = cx::model::vit_small_registers_config();
  c.hidden_size = 32;
  c.num_attention_heads = 2;
  c.num_hidden_layers = 1;
  c.image_size = 28;
  auto weights = cx::model::random_vit_weights(c, 1);
  weights.pop_back();
  TempDir tmp;
  expect_error([&] { cx::model::save_hf_folder(tmp / "out", c, weights); }, {"missing 1 key(s): layernorm.bias"});
  EXPECT_FALSE(fs::exists(tmp / "out/model.safetensors"));
}

TEST(Loader, LoadWeightsIntoModel) {
  const std::string dir = fixture_dir("tiny");
  REQUIRE_FIXTURE(dir);
  auto reference = cx::model::load_hf_vit(dir, no_hash());
  auto weights = cx::model::read_hf_weights(dir);
  cx::model::VitModel model(reference.config);
  cx::model::load_weights(model, weights, dir);
  expect_same_parameters(*reference.model, model);
  weights.erase(weights.begin());
  cx::model::VitModel other(reference.config);
  expect_error([&] { cx::model::load_weights(other, weights, "mem"); }, {"mem: ", "missing 1 key(s)"});
}

}  // namespace
