// cx-segment's library (lib/cx/train/segment, image/preprocess input_window, image/overlay): the
// geometry that puts patch-grid logits back on the image (against torch's grid_sample), nearest
// target sampling, the 0.5 CE + 0.5 Dice loss against a direct formula, Dice evaluation, token
// layout of patch4, head folders, and training that learns linearly decodable tokens,
// deterministically.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "cx/cli/error.hpp"
#include "cx/image/overlay.hpp"
#include "cx/image/preprocess.hpp"
#include "cx/io/ndarray.hpp"
#include "cx/io/npy.hpp"
#include "cx/train/augment.hpp"
#include "cx/train/head.hpp"
#include "cx/train/segment.hpp"
#include "test_support.hpp"

namespace {
using namespace cx::train;
using cx::Image;

TEST(InputWindow, ShortestEdgeResizeThenCentreCrop) {
  cx::image::PreprocessConfig c;
  c.shortest_edge = 112;
  c.crop_height = c.crop_width = 112;
  // 300 x 200 -> 168 x 112 (HF truncates), crop left (168 - 112) // 2 = 28: x in [28, 140) of the
  // resized image, i.e. [28 * 300 / 168, 140 * 300 / 168) on the image.
  auto w = cx::image::input_window(300, 200, c);
  EXPECT_DOUBLE_EQ(w.x0, 28.0 * 300 / 168);
  EXPECT_DOUBLE_EQ(w.x1, 140.0 * 300 / 168);
  EXPECT_DOUBLE_EQ(w.y0, 0.0);
  EXPECT_DOUBLE_EQ(w.y1, 200.0);
  EXPECT_EQ(w.width, 112);
  EXPECT_EQ(w.height, 112);
  // A crop larger than the resized image is zero-padded: the box reaches outside the image.
  c.do_resize = false;
  c.crop_height = c.crop_width = 120;
  w = cx::image::input_window(100, 110, c);
  EXPECT_DOUBLE_EQ(w.x0, -10.0);  // floor((100 - 120) / 2)
  EXPECT_DOUBLE_EQ(w.x1, 110.0);
  EXPECT_DOUBLE_EQ(w.y0, -5.0);
  EXPECT_DOUBLE_EQ(w.y1, 115.0);
}

TEST(Segment, LabelMapEqualsGridSampleArgmax) {
  torch::manual_seed(3);
  torch::Tensor z = torch::randn({4, 6, 5});
  PatchGrid g;
  g.image_width = 90;
  g.image_height = 70;
  g.x0 = -7.5;  // the box overhangs the image on the left and ends inside it
  g.x1 = 80.25;
  g.y0 = 3.0;
  g.y1 = 71.0;
  const int W = 61, H = 47;  // the map at another resolution than the image
  Image got = logits_to_label_map(z, g, W, H);
  // Reference: torch's grid_sample at the pixel centres mapped into the box.
  namespace F = torch::nn::functional;
  torch::Tensor gx = ((torch::arange(W, torch::kFloat64) + 0.5) * (90.0 / W) - g.x0) / (g.x1 - g.x0) * 2 - 1;
  torch::Tensor gy = ((torch::arange(H, torch::kFloat64) + 0.5) * (70.0 / H) - g.y0) / (g.y1 - g.y0) * 2 - 1;
  torch::Tensor grid = torch::stack({gx.view({1, W}).expand({H, W}), gy.view({H, 1}).expand({H, W})}, 2).to(torch::kFloat32);
  torch::Tensor ref = F::grid_sample(z.unsqueeze(0), grid.unsqueeze(0),
                                     F::GridSampleFuncOptions().mode(torch::kBilinear).padding_mode(torch::kBorder).align_corners(false))
                          .squeeze(0)
                          .argmax(0)
                          .to(torch::kUInt8)
                          .contiguous();
  ASSERT_EQ(got.width, W);
  ASSERT_EQ(got.height, H);
  // Both blend in float32 in another order: a pixel whose top two classes are within rounding may
  // differ. With random logits that is rare; allow 0.2% of the pixels.
  int differ = 0;
  for (int i = 0; i < W * H; ++i) differ += got.data[static_cast<std::size_t>(i)] != ref.data_ptr<std::uint8_t>()[i];
  EXPECT_LE(differ, W * H / 500) << differ << " of " << W * H << " pixels differ";
}

TEST(Segment, TargetsSampleTheBoxNearest) {
  Image m = Image::gray8(4, 2);
  for (int i = 0; i < 8; ++i) m.data[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(i);
  PatchGrid g;
  g.image_width = 8;  // the map is stored at half the image's resolution
  g.image_height = 4;
  g.x0 = 0;
  g.x1 = 8;
  g.y0 = 0;
  g.y1 = 4;
  torch::Tensor y = sample_label_map(m, g, 4, 8);  // twice the map's resolution: each value repeated
  ASSERT_EQ(y.size(0), 4);
  ASSERT_EQ(y.size(1), 8);
  for (int r = 0; r < 4; ++r)
    for (int c = 0; c < 8; ++c) EXPECT_EQ(y[r][c].item<int>(), (r / 2) * 4 + c / 2);
  g.x0 = 4;  // the right half only, outside rows clamped
  g.y0 = -2;
  y = sample_label_map(m, g, 3, 2);
  EXPECT_EQ(y[0][0].item<int>(), 2);
  EXPECT_EQ(y[0][1].item<int>(), 3);
  EXPECT_EQ(y[2][1].item<int>(), 7);
}

TEST(Segment, LossIsHalfCrossEntropyHalfForegroundDice) {
  torch::manual_seed(1);
  torch::Tensor z = torch::randn({2, 3, 4, 5}, torch::kFloat64);
  torch::Tensor t = torch::randint(0, 3, {2, 4, 5}, torch::kInt64);
  t[0][0][0] = 2;
  torch::Tensor got = ce_dice_loss(z, t);
  // Direct: mean over pixels of -log softmax at the target; Dice per class over the batch.
  torch::Tensor p = torch::softmax(z, 1);
  double ce = 0, inter[3] = {0, 0, 0}, ps[3] = {0, 0, 0}, gs[3] = {0, 0, 0};
  for (int b = 0; b < 2; ++b)
    for (int y = 0; y < 4; ++y)
      for (int x = 0; x < 5; ++x) {
        const int c = t[b][y][x].item<int>();
        ce -= std::log(p[b][c][y][x].item<double>());
        for (int k = 0; k < 3; ++k) {
          const double pk = p[b][k][y][x].item<double>();
          ps[k] += pk;
          gs[k] += k == c;
          inter[k] += k == c ? pk : 0;
        }
      }
  ce /= 40;
  double dice = 0;
  for (int k = 1; k < 3; ++k) dice += (2 * inter[k] + 1) / (ps[k] + gs[k] + 1);
  EXPECT_NEAR(got.item<double>(), 0.5 * ce + 0.5 * (1 - dice / 2), 1e-12);
}

TEST(Segment, DiceLeavesOutImagesWhereAClassIsAbsentFromBoth) {
  torch::Tensor t = torch::zeros({2, 2, 2}, torch::kUInt8), p = torch::zeros({2, 2, 2}, torch::kUInt8);
  t[0][0][0] = 1;
  t[0][0][1] = 1;
  p[0][0][0] = 1;  // image 0, class 1: 2 * 1 / (1 + 2)
  p[1][1][1] = 1;  // image 1, class 1: predicted only: 0
  SegEvaluation e = evaluate_dice(p, t, 3);
  ASSERT_EQ(e.dice.size(), 2u);
  EXPECT_NEAR(e.dice[0], (2.0 / 3 + 0) / 2, 1e-12);
  EXPECT_TRUE(std::isnan(e.dice[1]));  // class 2 absent everywhere: undefined, not 1
  EXPECT_NEAR(e.macro, 1.0 / 3, 1e-12);
}

TEST(Segment, Patch4TokensAreLayersConcatenatedAlongChannels) {
  cx::io::NdArray a = cx::io::NdArray::zeros(cx::io::DType::f32, {2, 1, 3, 4});  // [n, h, w, D]
  for (int i = 0; i < 24; ++i) a.as<float>()[i] = static_cast<float>(i);
  cx::io::Record r;
  r.key = "k";
  r.set("patch4.npy", cx::io::write_npy(a));
  torch::Tensor t = record_tokens(r, "patch4");
  ASSERT_EQ(t.size(0), 8);
  ASSERT_EQ(t.size(1), 1);
  ASSERT_EQ(t.size(2), 3);
  // channel c of layer l at (0, x) = l * 12 + x * 4 + c
  EXPECT_EQ(t[5][0][2].item<float>(), 12 + 2 * 4 + 1);
  EXPECT_EQ(t[2][0][1].item<float>(), 0 + 1 * 4 + 2);
  EXPECT_FALSE(record_tokens(r, "patch").defined());
  r.set("patch.npy", cx::io::write_npy(a));  // a 4-d array is not [h, w, D]
  EXPECT_THROW(record_tokens(r, "patch"), cx::Error);
}

// Tokens from which the class of each grid cell is a linear function, targets the cells' classes at
// stride 4: a linear head must learn them nearly perfectly (bilinear upsampling blurs the
// boundaries between cells only).
SegSet separable_set(int n, std::uint64_t seed) {
  torch::manual_seed(0);
  torch::Tensor mix = torch::randn({8, 3});  // the same token code in every set
  torch::manual_seed(seed);
  SegSet s;
  s.classes = {"background", "a", "b"};
  const int h = 6, w = 6, C = 8, stride = 4;
  torch::Tensor labels = torch::zeros({n, h, w}, torch::kInt64);
  for (int i = 0; i < n; ++i) {
    const int x0 = i % 3, y0 = (i / 3) % 3;
    labels[i].slice(0, y0, y0 + 3).slice(1, x0, x0 + 2).fill_(1);
    labels[i].slice(0, 0, 2).slice(1, 4, 6).fill_(2);
  }
  torch::Tensor onehot = torch::one_hot(labels, 3).permute({0, 3, 1, 2}).to(torch::kFloat32);
  s.x = (torch::einsum("ck,nkhw->nchw", {mix, onehot}) + 0.05 * torch::randn({n, C, h, w})).to(torch::kHalf);
  s.y = labels.repeat_interleave(stride, 1).repeat_interleave(stride, 2).to(torch::kUInt8);
  for (int i = 0; i < n; ++i) s.keys.push_back("r" + std::to_string(i));
  s.header = {{"model", {{"id", "synthetic"}, {"sha256", "00"}}}};
  return s;
}

TEST(Segment, LinearHeadLearnsSeparableTokensDeterministically) {
  SegSet train = separable_set(24, 1), val = separable_set(9, 2);
  SegTrainOptions o;
  o.epochs = 40;
  o.batch = 8;
  o.lr = 3e-2;
  o.patience = 0;
  o.dropout = 0.0;
  o.seed = 5;
  SegHead a = train_seg_head(train, &val, "patch", 4, o);
  const double dice = a.info.metrics["val"]["mean_dice"].get<double>();
  EXPECT_GT(dice, 0.9);
  SegHead b = train_seg_head(train, &val, "patch", 4, o);
  auto pa = a.module->parameters(), pb = b.module->parameters();
  for (std::size_t i = 0; i < pa.size(); ++i) EXPECT_TRUE(torch::equal(pa[i], pb[i])) << "parameter " << i;

  // The folder round trip predicts the same logits, and each head type refuses the other tool.
  cx_test::TempDir d("cx_segment_test");
  write_folder_atomic(d / "seg", [&](const std::string& t) { write_seg_head_files(t, a); });
  SegHead c = load_seg_head(d / "seg");
  EXPECT_EQ(c.info.classes, train.classes);
  EXPECT_EQ(c.info.stride, 4);
  torch::Tensor x = train.x.slice(0, 0, 3);
  EXPECT_TRUE(torch::equal(a.logits(x), c.logits(x)));
  try {
    load_head(d / "seg");
    FAIL() << "a segmentation head loaded as a classification head";
  } catch (const cx::Error& e) {
    EXPECT_NE(std::string(e.what()).find("use it with cx-segment"), std::string::npos) << e.what();
  }
  {
    std::ofstream j(d / "seg/head.json");
    j << R"({"format": "cx-seghead", "version": "2.0"})";
  }
  try {
    load_seg_head(d / "seg");
    FAIL() << "a newer major version was read";
  } catch (const cx::Error& e) {
    EXPECT_NE(std::string(e.what()).find("newer"), std::string::npos) << e.what();
  }
}

TEST(Segment, ConvDecoderUpsamplesFourTimes) {
  SegHeadModule m({SegHeadType::conv, 8, 16, 3});
  m.init(0);
  torch::Tensor z = m.forward(torch::randn({2, 8, 5, 7}));
  EXPECT_EQ(z.sizes(), torch::IntArrayRef({2, 3, 20, 28}));
  EXPECT_THROW(SegHeadModule({SegHeadType::conv, 8, 10, 3}), cx::Error);  // hidden not a multiple of 4
}

TEST(Augment, TheMaskMovesWithTheImage) {
  // An image whose gray level encodes the label (0, 0.3, 0.6, 0.9): after the same crop, flip and
  // affine the label read back from the image must match the moved mask, but for the pixels that
  // bicubic/bilinear resampling blends at the boundaries.
  torch::Tensor labels = torch::zeros({90, 70}, torch::kUInt8);
  labels.slice(0, 10, 60).slice(1, 5, 30).fill_(1);
  labels.slice(0, 20, 80).slice(1, 40, 65).fill_(2);
  labels.slice(0, 45, 70).slice(1, 20, 50).fill_(3);
  torch::Tensor gray = labels.to(torch::kFloat32) * 0.3;
  AugmentOptions o;
  o.height = o.width = 48;
  o.jitter_p = o.blur_p = 0;  // photometric steps would change the code, not the geometry
  o.flip_p = 0.5;
  int agree = 0, total = 0;
  for (std::uint64_t r = 0; r < 8; ++r) {
    CounterRng a(7, 1, 0, r), b(7, 1, 0, r);
    torch::Tensor moved;
    torch::Tensor x = augment_gray_with_mask(gray, labels, o, a, 48, 48, moved);
    EXPECT_TRUE(torch::equal(x, augment_gray(gray, o, b))) << "the image differs from augment_gray's";
    torch::Tensor read = ((x[0] * o.std[0] + o.mean[0]) / 0.3).round().clamp(0, 3).to(torch::kUInt8);
    agree += (read == moved).sum().item<int>();
    total += 48 * 48;
  }
  EXPECT_GT(agree, total * 9 / 10) << agree << " of " << total;
  torch::Tensor moved;
  CounterRng c(7, 1, 0, 0);
  EXPECT_THROW(augment_gray_with_mask(gray, labels.slice(0, 1), o, c, 48, 48, moved), cx::Error);
}

TEST(Overlay, OutlinesInTheClassColourOverTheGrayImage) {
  Image img = Image::gray8(8, 6);
  for (auto& v : img.data) v = 100;
  Image labels = Image::gray8(8, 6);
  for (int y = 1; y < 5; ++y)
    for (int x = 1; x < 6; ++x) labels.data[static_cast<std::size_t>(y * 8 + x)] = 2;
  labels.data[2 * 8 + 3] = 0;  // a hole: its neighbours are boundary too
  Image o = cx::image::draw_contours(img, labels, 1);
  ASSERT_EQ(o.channels, 3);
  auto px = [&](int x, int y) {
    const std::uint8_t* p = &o.data[static_cast<std::size_t>(y * 8 + x) * 3];
    return std::array<std::uint8_t, 3>{p[0], p[1], p[2]};
  };
  const auto green = cx::image::class_colour(2);
  EXPECT_EQ(px(1, 1), green);                                  // corner of the region
  EXPECT_EQ(px(3, 1), green);                                  // above the hole
  EXPECT_EQ(px(4, 3), (std::array<std::uint8_t, 3>{100, 100, 100}));  // inside, away from the hole
  EXPECT_EQ(px(0, 0), (std::array<std::uint8_t, 3>{100, 100, 100}));  // background stays gray
  EXPECT_EQ(px(3, 2), (std::array<std::uint8_t, 3>{100, 100, 100}));  // the hole itself
}

}  // namespace
