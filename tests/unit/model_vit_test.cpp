// The ViT against the Hugging Face reference fixtures (../shared/fixtures/hf): every case of the
// registers model (GELU and SwiGLU) and of Dinov2Model, final outputs and intermediate tensors.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <string>

#include "cx/cli/error.hpp"
#include "cx/io/safetensors.hpp"
#include "cx/model/hf_loader.hpp"
#include "cx/model/vit.hpp"
#include "test_support.hpp"

namespace {
namespace fs = std::filesystem;
using cx::model::VitModel;

// The fixtures were computed in float32; the same model in float64 differs from them by ~3e-6
// (fixture README), and our float32 kernels sum in a different order, so agreement is expected at
// the 1e-5 level. 1e-4 leaves headroom for that rounding while any real mistake (wrong key, kernel,
// token order, interpolation mode) moves outputs by 1e-2 or more.
constexpr double kTolerance = 1e-4;

std::string fixture_dir(const std::string& name) { return cx_test::shared_dir() + "/fixtures/hf/" + name; }

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  EXPECT_EQ(a.sizes(), b.sizes());
  if (a.sizes() != b.sizes()) return 1e30;
  return (a.to(torch::kFloat64) - b.to(torch::kFloat64)).abs().max().item<double>();
}

struct Case {
  std::string fixture;
  std::string name;
  cx::model::AttentionKernel kernel;
};

std::ostream& operator<<(std::ostream& os, const Case& c) {
  return os << c.fixture << "/" << c.name << (c.kernel == cx::model::AttentionKernel::reference ? " reference" : " fused");
}

class FixtureCase : public ::testing::TestWithParam<Case> {};

TEST_P(FixtureCase, MatchesHuggingFace) {
  const Case& c = GetParam();
  const std::string dir = fixture_dir(c.fixture);
  if (!fs::exists(dir + "/cases.safetensors")) GTEST_SKIP() << "fixture absent: " << dir;
  at::set_num_threads(2);
  torch::NoGradGuard no_grad;

  cx::model::LoadOptions options;
  options.hash = false;
  auto loaded = cx::model::load_hf_vit(dir, options);
  VitModel& model = *loaded.model;
  model.set_attention(c.kernel);  // fused: forced, it throws rather than fall back
  auto cases = cx::io::SafetensorsFile::open(dir + "/cases.safetensors");
  auto expected = [&](const std::string& what) {
    return cx::model::tensor_from_view(cases.at(what + "_" + c.name), cases.where());
  };

  const torch::Tensor pixels = expected("pixel_values");
  const std::int64_t H = pixels.size(2), W = pixels.size(3);

  // Intermediate tensors first: when the final output is off, these say where.
  const double pos_err = max_abs_diff(model.position_embeddings_for(H, W), expected("pos_embed"));
  const torch::Tensor emb = model.embeddings(pixels);
  const double emb_err = max_abs_diff(emb, expected("embeddings"));
  const double layer0_err = max_abs_diff(model.block(0, emb), expected("layer0_output"));

  cx::model::VitForwardOptions fo;
  fo.hidden_layers = {0};
  fo.norm_hidden_states = false;
  const auto out = model.forward(pixels, fo);
  const double lhs_err = max_abs_diff(out.last_hidden_state, expected("last_hidden_state"));
  const double pool_err = max_abs_diff(out.pooler, expected("pooler_output"));
  const double hidden0_err = max_abs_diff(out.hidden_states.at(0), expected("layer0_output"));

  std::cout << "[ max-abs ] " << c << ": last_hidden_state " << lhs_err << ", pooler " << pool_err << ", pos_embed "
            << pos_err << ", embeddings " << emb_err << ", layer0 " << layer0_err << "\n";
  EXPECT_LT(pos_err, kTolerance);
  EXPECT_LT(emb_err, kTolerance);
  EXPECT_LT(layer0_err, kTolerance);
  EXPECT_LT(hidden0_err, kTolerance);
  EXPECT_LT(lhs_err, kTolerance);
  EXPECT_LT(pool_err, kTolerance);
  EXPECT_EQ(out.grid_h, H / 14);
  EXPECT_EQ(out.grid_w, W / 14);
}

std::vector<Case> all_cases() {
  std::vector<Case> cases;
  for (const char* fixture : {"tiny", "tiny-swiglu", "tiny-dinov2"})
    for (const char* name : {"A", "B", "C", "D", "E"})
      for (auto kernel : {cx::model::AttentionKernel::reference, cx::model::AttentionKernel::fused})
        cases.push_back({fixture, name, kernel});
  return cases;
}

INSTANTIATE_TEST_SUITE_P(Hf, FixtureCase, ::testing::ValuesIn(all_cases()), [](const auto& info) {
  std::string s = info.param.fixture + "_" + info.param.name +
                  (info.param.kernel == cx::model::AttentionKernel::reference ? "_reference" : "_fused");
  for (auto& ch : s)
    if (ch == '-') ch = '_';
  return s;
});

// The two position-embedding kernels differ: using the registers model's antialiased kernel for
// Dinov2Model (or the reverse) moves the result well past the tolerance (README: 0.05-0.28).
TEST(Vit, InterpolationKernelsDiffer) {
  const std::string dir = fixture_dir("tiny");
  if (!fs::exists(dir)) GTEST_SKIP() << "fixture absent: " << dir;
  cx::model::LoadOptions options;
  options.hash = false;
  auto reg = cx::model::load_hf_vit(dir, options);
  torch::NoGradGuard no_grad;
  cx::model::VitConfig plain = reg.config;
  plain.model_type = "dinov2";
  plain.num_register_tokens = 0;
  VitModel dinov2(plain);
  dinov2.parameter("embeddings.position_embeddings").copy_(reg.model->parameter("embeddings.position_embeddings"));
  // Case C (8x8 from 4x4): upsampling, where the two cubic kernels (a = -0.5 vs -0.75) differ.
  const double diff = max_abs_diff(reg.model->position_embeddings_for(112, 112), dinov2.position_embeddings_for(112, 112));
  EXPECT_GT(diff, 1e-2);
}

TEST(Vit, Cx5FeatureIsNormedClsOfLastBlocksAndMeanPatch) {
  const std::string dir = fixture_dir("tiny");
  if (!fs::exists(dir)) GTEST_SKIP() << "fixture absent: " << dir;
  cx::model::LoadOptions options;
  options.hash = false;
  auto loaded = cx::model::load_hf_vit(dir, options);
  VitModel& model = *loaded.model;
  torch::NoGradGuard no_grad;
  auto cases = cx::io::SafetensorsFile::open(dir + "/cases.safetensors");
  const torch::Tensor pixels = cx::model::tensor_from_view(cases.at("pixel_values_A"), "A");
  const torch::Tensor layer0 = cx::model::tensor_from_view(cases.at("layer0_output_A"), "A");
  const torch::Tensor last = cx::model::tensor_from_view(cases.at("last_hidden_state_A"), "A");

  cx::model::VitForwardOptions fo;
  fo.hidden_layers = cx::model::cx5_layers(model.config());
  ASSERT_EQ(fo.hidden_layers, (std::vector<std::int64_t>{0, 1}));  // a 2-layer model has 2 blocks to take
  const auto out = model.forward(pixels, fo);
  const torch::Tensor feature = cx::model::cx5_features(model, out);
  ASSERT_EQ(feature.sizes(), (std::vector<std::int64_t>{2, 3 * 48}));

  // Built from the HF fixture tensors: LN(block 0)[CLS], LN(block 1)[CLS], mean of LN(block 1) patches
  // (tokens 5.. : after CLS and the 4 registers).
  const torch::Tensor ln_w = model.parameter("layernorm.weight"), ln_b = model.parameter("layernorm.bias");
  const torch::Tensor cls0 = torch::layer_norm(layer0, {48}, ln_w, ln_b, 1e-6).select(1, 0);
  const torch::Tensor reference = torch::cat({cls0, last.select(1, 0), last.narrow(1, 5, 16).mean(1)}, -1);
  EXPECT_LT(max_abs_diff(feature, reference), kTolerance);

  fo.hidden_layers = {};
  EXPECT_THROW(cx::model::cx5_features(model, model.forward(pixels, fo)), cx::Error);
}

TEST(Vit, RejectsImagesSmallerThanAPatchAndWrongChannels) {
  cx::model::VitConfig c = cx::model::vit_small_registers_config();
  c.hidden_size = 32;
  c.num_attention_heads = 2;
  c.num_hidden_layers = 1;
  c.image_size = 56;
  VitModel model(c);
  model.init_random(1);
  torch::NoGradGuard no_grad;
  try {
    model.forward(torch::zeros({1, 3, 13, 40}));
    FAIL() << "no error";
  } catch (const cx::Error& e) {
    EXPECT_NE(std::string(e.what()).find("smaller than one 14x14 patch"), std::string::npos) << e.what();
  }
  EXPECT_THROW(model.forward(torch::zeros({1, 1, 28, 28})), cx::Error);
  EXPECT_THROW(model.forward(torch::zeros({3, 28, 28})), cx::Error);
  auto out = model.forward(torch::zeros({2, 3, 14, 27}));  // 1x1 grid: 1 CLS + 4 registers + 1 patch
  EXPECT_EQ(out.last_hidden_state.sizes(), (std::vector<std::int64_t>{2, 6, 32}));
}

// Later training fine-tunes the encoder: every parameter used in inference must receive a gradient,
// through the interpolated position embeddings too. The mask token is unused without a mask.
TEST(Vit, TrainableThroughEveryUsedParameter) {
  const std::string dir = fixture_dir("tiny-swiglu");
  if (!fs::exists(dir)) GTEST_SKIP() << "fixture absent: " << dir;
  cx::model::LoadOptions options;
  options.hash = false;
  auto loaded = cx::model::load_hf_vit(dir, options);
  VitModel& model = *loaded.model;
  model.train();
  auto pixels = torch::randn({1, 3, 84, 98});
  auto out = model.forward(pixels);
  out.last_hidden_state.pow(2).mean().backward();
  for (const auto& item : model.named_parameters(true)) {
    if (item.key() == "embeddings.mask_token") {
      EXPECT_FALSE(item.value().grad().defined());
      continue;
    }
    ASSERT_TRUE(item.value().grad().defined()) << item.key();
    EXPECT_GT(item.value().grad().abs().sum().item<double>(), 0.0) << item.key();
  }
}

TEST(Vit, RunsOnCudaWhenPresent) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device";
  const std::string dir = fixture_dir("tiny");
  if (!fs::exists(dir)) GTEST_SKIP() << "fixture absent: " << dir;
  cx::model::LoadOptions options;
  options.hash = false;
  options.device = torch::kCUDA;
  auto loaded = cx::model::load_hf_vit(dir, options);
  torch::NoGradGuard no_grad;
  auto cases = cx::io::SafetensorsFile::open(dir + "/cases.safetensors");
  for (const char* name : {"A", "B", "E"}) {
    const auto pixels = cx::model::tensor_from_view(cases.at(std::string("pixel_values_") + name), name);
    const auto expected = cx::model::tensor_from_view(cases.at(std::string("last_hidden_state_") + name), name);
    auto out = loaded.model->forward(pixels);
    ASSERT_TRUE(out.last_hidden_state.is_cuda());
    // CUDA matmuls may use TF32 on Ampere and later: allow its ~1e-3 relative rounding.
    EXPECT_LT(max_abs_diff(out.last_hidden_state.cpu(), expected), 1e-2) << name;
  }
}

}  // namespace

namespace {

VitModel small_training_model() {
  cx::model::VitConfig c = cx::model::vit_small_registers_config();
  c.hidden_size = 32;
  c.num_attention_heads = 2;
  c.num_hidden_layers = 3;
  c.image_size = 28;
  VitModel model(c);
  model.init_random(7);
  return model;
}

}  // namespace

// iBOT's masked image modelling (HF's bool_masked_pos): a masked patch's embedding is the mask token
// plus its position; unmasked ones and the prefix tokens are untouched.
TEST(Vit, MasksReplacePatchEmbeddingsWithTheMaskToken) {
  VitModel model = small_training_model();
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({2, 3, 28, 42});  // 2 x 3 grid
  auto masks = torch::zeros({2, 6}, torch::kBool);
  masks[0][1] = true;
  masks[1][4] = true;
  masks[1][5] = true;
  const auto plain = model.embeddings(x);
  const auto masked = model.embeddings(x, masks);
  const auto pos = model.position_embeddings_for(28, 42);  // [1, 1 + 6, D], CLS first
  const std::int64_t prefix = model.num_prefix_tokens();
  const auto token = model.parameter("embeddings.mask_token");
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t i = 0; i < 6; ++i) {
      const auto got = masked[b][prefix + i];
      if (masks[b][i].item<bool>())
        EXPECT_TRUE(torch::allclose(got, token[0] + pos[0][1 + i], 0, 1e-6)) << b << "," << i;
      else
        EXPECT_TRUE(torch::equal(got, plain[b][prefix + i])) << b << "," << i;
    }
  EXPECT_TRUE(torch::equal(masked.narrow(1, 0, prefix), plain.narrow(1, 0, prefix)));
  EXPECT_THROW(model.embeddings(x, torch::zeros({2, 5}, torch::kBool)), cx::Error);
}

// Stochastic depth: factor 1 everywhere changes nothing; factor 0 for a sample removes both residual
// branches of that block for it (its output is its input); 1/(1-p) scales the branches.
TEST(Vit, DropPathScalesEachSamplesResidualBranches) {
  VitModel model = small_training_model();
  torch::NoGradGuard no_grad;
  const auto x = torch::randn({3, 11, 32});
  const auto plain = model.block(1, x);
  EXPECT_TRUE(torch::allclose(model.block(1, x, torch::ones({3})), plain, 1e-6, 1e-6));
  const auto dropped = model.block(1, x, torch::tensor({1.0f, 0.0f, 2.0f}));
  EXPECT_TRUE(torch::allclose(dropped[0], plain[0], 1e-6, 1e-6));
  EXPECT_TRUE(torch::equal(dropped[1], x[1]));
  EXPECT_FALSE(torch::allclose(dropped[2], plain[2], 1e-3, 1e-3));
  cx::model::VitForwardOptions o;
  o.drop_path_scales = {torch::ones({3}), torch::ones({3})};  // 2 for 3 blocks
  EXPECT_THROW(model.forward(torch::randn({3, 3, 28, 28}), o), cx::Error);
}

// Activation checkpointing recomputes each block in the backward pass: the same outputs and the same
// gradients for every parameter (masks and drop path included) as the plain graph. Both sides run the
// same float32 kernels in the same order, so they agree to rounding (1e-6 relative).
TEST(Vit, ActivationCheckpointingGivesTheSameGradients) {
  const auto x = torch::randn({2, 3, 28, 28});
  auto masks = torch::zeros({2, 4}, torch::kBool);
  masks[1][2] = true;
  std::vector<torch::Tensor> grads[2];
  torch::Tensor outs[2];
  for (int checkpoint = 0; checkpoint < 2; ++checkpoint) {
    VitModel model = small_training_model();
    model.train();
    cx::model::VitForwardOptions o;
    o.masks = masks;
    o.drop_path_scales = {torch::tensor({1.25f, 0.0f}), torch::tensor({1.25f, 1.25f}), torch::tensor({0.0f, 1.25f})};
    o.checkpoint_blocks = checkpoint == 1;
    auto out = model.forward(x, o).last_hidden_state;
    out.pow(2).mean().backward();
    outs[checkpoint] = out.detach();
    for (const auto& p : model.parameters()) grads[checkpoint].push_back(p.grad().defined() ? p.grad().clone() : torch::Tensor());
  }
  EXPECT_TRUE(torch::allclose(outs[0], outs[1], 1e-6, 1e-7));
  ASSERT_EQ(grads[0].size(), grads[1].size());
  for (std::size_t i = 0; i < grads[0].size(); ++i) {
    ASSERT_EQ(grads[0][i].defined(), grads[1][i].defined()) << i;
    if (grads[0][i].defined()) {
      EXPECT_TRUE(torch::allclose(grads[0][i], grads[1][i], 1e-5, 1e-8)) << i;
    }
  }
}
