// Pretraining data (lib/cx/train/multicrop, ssl_data): DINOv2's multi-crops on gray images (shapes,
// value ranges, the documented draw order, crop-scale ranges, solarisation / blur / jitter rates) and
// the streaming loader (crop-major collation, purity of a record's crops in (seed, pass, index),
// identical batches for any thread count, position()/seek() into a fresh loader, sharding by rank,
// a pipe read once, bad records named).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <set>
#include <thread>

#include "cx/cli/error.hpp"
#include "cx/io/png.hpp"
#include "cx/io/stream.hpp"
#include "cx/train/multicrop.hpp"
#include "cx/train/ssl_data.hpp"
#include "test_support.hpp"

namespace {
using namespace cx::train;
using cx::Image;

Image pattern(int w, int h, int seed) {
  Image im = Image::gray8(w, h);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      im.data[static_cast<std::size_t>(y * w + x)] = static_cast<std::uint8_t>((x * 13 + y * 7 + seed * 29 + (x * y) % 17) % 256);
  return im;
}

MultiCropOptions small_crops() {
  MultiCropOptions o;
  o.global_size = 16;
  o.local_size = 8;
  o.local_number = 2;
  return o;
}

std::string key_of(int i) {
  char b[16];
  std::snprintf(b, sizeof b, "r%03d", i);
  return b;
}

// A stream of n records with PNGs of a few sizes; record `no_image` has only a .json, record
// `garbage` a .png that is not one.
void write_stream(const std::string& path, int n, int no_image = -1, int garbage = -1) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr);
  {
    cx::io::StreamWriter w(f, cx::io::new_stream_header(), path);
    for (int i = 0; i < n; ++i) {
      cx::io::Record r;
      r.key = key_of(i);
      r.set("json", "{\"id\": " + std::to_string(i) + "}");
      if (i == garbage) r.set("png", "not a png");
      else if (i != no_image) r.set("png", cx::io::encode_png(pattern(20 + i % 5, 24 + i % 3, i)));
      w.write(r);
    }
    w.finish();
  }
  std::fclose(f);
}

SslLoaderOptions loader_options(int threads) {
  SslLoaderOptions o;
  o.batch_size = 4;
  o.shuffle_buffer = 5;
  o.seed = 7;
  o.threads = threads;
  o.crops = small_crops();
  return o;
}

std::vector<SslBatch> take(SslLoader& l, int n) {
  std::vector<SslBatch> out;
  for (int i = 0; i < n; ++i) {
    SslBatch b;
    if (!l.next(b)) break;
    out.push_back(std::move(b));
  }
  return out;
}

void expect_same(const SslBatch& a, const SslBatch& b, const std::string& what) {
  EXPECT_EQ(a.keys, b.keys) << what;
  EXPECT_EQ(a.pass, b.pass) << what;
  EXPECT_TRUE(torch::equal(a.global, b.global)) << what;
  EXPECT_TRUE(torch::equal(a.local, b.local)) << what;
}

// ---- multicrop ----

TEST(MultiCrop, ShapesRangesAndDeterminism) {
  const torch::Tensor gray = gray_to_unit(pattern(37, 29, 1));
  MultiCropOptions o = small_crops();
  o.local_number = 3;
  o.global_affine = true;
  CounterRng r1(5, 22, 0, 1), r2(5, 22, 0, 1), r3(5, 22, 0, 2);
  MultiCrops a = multicrop(gray, o, r1), b = multicrop(gray, o, r2), c = multicrop(gray, o, r3);
  EXPECT_EQ(a.global.sizes().vec(), (std::vector<std::int64_t>{2, 3, 16, 16}));
  EXPECT_EQ(a.local.sizes().vec(), (std::vector<std::int64_t>{3, 3, 8, 8}));
  EXPECT_EQ(a.global.dtype(), torch::kFloat32);
  EXPECT_TRUE(torch::equal(a.global, b.global));
  EXPECT_TRUE(torch::equal(a.local, b.local));
  EXPECT_FALSE(torch::equal(a.global, c.global));
  for (const torch::Tensor& t : {a.global, a.local}) {
    for (int ch = 0; ch < 3; ++ch) {
      // Undo channel ch's normalisation: a gray value in [0, 1] (float rounding: 1e-5).
      torch::Tensor g = t.select(1, ch) * o.std[ch] + o.mean[ch];
      EXPECT_GE(g.min().item<double>(), -1e-5);
      EXPECT_LE(g.max().item<double>(), 1 + 1e-5);
      // All three channels carry the same gray.
      torch::Tensor g0 = t.select(1, 0) * o.std[0] + o.mean[0];
      EXPECT_LT((g - g0).abs().max().item<double>(), 1e-5);
    }
  }
  // The 8-bit overload crops the same image identically.
  CounterRng r4(5, 22, 0, 1);
  MultiCrops d = multicrop(pattern(37, 29, 1), o, r4);
  EXPECT_TRUE(torch::equal(a.global, d.global));
  EXPECT_TRUE(torch::equal(a.local, d.local));
  // No local crops: an empty [0, 3, L, L].
  o.local_number = 0;
  CounterRng r5(5, 22, 0, 1);
  EXPECT_EQ(multicrop(gray, o, r5).local.sizes().vec(), (std::vector<std::int64_t>{0, 3, 8, 8}));
}

TEST(MultiCrop, SameCropsForAnyIntraOpThreadCount) {
  // A 200 x 200 crop is large enough for ATen to split its reductions (the contrast's mean) over
  // intra-op threads; multicrop computes serially, so the count does not matter.
  const int before = at::get_num_threads();
  const torch::Tensor gray = gray_to_unit(pattern(260, 240, 5));
  MultiCropOptions o;
  o.global_size = 200;
  o.local_number = 0;
  o.jitter_p = 1;
  at::set_num_threads(1);
  CounterRng r1(6, 22);
  MultiCrops a = multicrop(gray, o, r1);
  at::set_num_threads(4);
  CounterRng r2(6, 22);
  MultiCrops b = multicrop(gray, o, r2);
  at::set_num_threads(before);
  EXPECT_TRUE(torch::equal(a.global, b.global));
}

TEST(MultiCrop, FirstGlobalCropIsTheDocumentedComposition) {
  // Crop 1 draws its box, its flip, whether to jitter, whether to blur (and sigma), in that order;
  // with jitter off and blur certain, it is exactly these primitives.
  const torch::Tensor gray = gray_to_unit(pattern(41, 33, 3));
  MultiCropOptions o = small_crops();
  o.jitter_p = 0;
  for (std::uint64_t k = 0; k < 6; ++k) {
    CounterRng rng(9, 22, 1, k), want(9, 22, 1, k);
    MultiCrops got = multicrop(gray, o, rng);
    const CropBox box = random_resized_crop_box(33, 41, o.global_scale_min, o.global_scale_max, 3.0 / 4.0, 4.0 / 3.0, want);
    torch::Tensor x = resized_crop(gray, box, 16, 16);
    if (want.chance(0.5)) x = hflip(x);
    ASSERT_FALSE(want.chance(0.0));  // the jitter draw
    ASSERT_TRUE(want.chance(1.0));   // the blur draw
    x = gaussian_blur(x, 9, want.uniform(0.1, 2.0));
    EXPECT_TRUE(torch::equal(got.global[0], normalize_gray3(x, o.mean, o.std))) << "draw " << k;
  }
}

TEST(MultiCrop, CropBoxesDrawAreaFractionsWithinTheirRanges) {
  // torchvision's box: target area uniform in [min, max) of the image, w and h rounded to pixels.
  // On 640 x 480 a rounding moves w or h by at most 0.5 pixel of at least sqrt(0.05 * 640 * 480 *
  // 3/4) ~ 107, so the fraction stays within 1% (relative) of its range.
  const std::int64_t H = 480, W = 640;
  MultiCropOptions o;
  struct Range {
    double lo, hi;
  };
  for (const Range r : {Range{o.global_scale_min, o.global_scale_max}, Range{o.local_scale_min, o.local_scale_max}}) {
    double seen_lo = 1, seen_hi = 0;
    CounterRng rng(3, 22);
    for (std::uint64_t k = 0; k < 2000; ++k) {
      const CropBox b = random_resized_crop_box(H, W, r.lo, r.hi, 3.0 / 4.0, 4.0 / 3.0, rng);
      ASSERT_GE(b.top, 0);
      ASSERT_GE(b.left, 0);
      ASSERT_LE(b.top + b.height, H);
      ASSERT_LE(b.left + b.width, W);
      const double f = static_cast<double>(b.height * b.width) / static_cast<double>(H * W);
      ASSERT_GE(f, r.lo * 0.99) << k;
      ASSERT_LE(f, r.hi * 1.01) << k;
      seen_lo = std::min(seen_lo, f);
      seen_hi = std::max(seen_hi, f);
    }
    // The whole range is used (2000 draws leave gaps far below 5% at either end).
    EXPECT_LT(seen_lo, r.lo + 0.05 * (r.hi - r.lo));
    EXPECT_GT(seen_hi, r.hi - 0.05 * (r.hi - r.lo));
  }
}

// Tolerances below: 3 binomial standard deviations of the observed rate over n draws.
double three_sd(double p, int n) { return 3 * std::sqrt(p * (1 - p) / n); }

TEST(MultiCrop, SolarisationAndJitterRates) {
  // A constant image stays constant through crop, flip and blur; solarisation (value >= 128/255)
  // turns 0.9 into 0.1, and only on global crop 2. On a constant 0.5 (below the threshold) contrast
  // does nothing and brightness multiplies by a factor in [0.6, 1.4): a local crop differs from 0.5
  // exactly when jittered.
  const int n = 400;
  MultiCropOptions o = small_crops();
  o.global_size = o.local_size = 8;
  o.jitter_p = 0;
  int solarized2 = 0, solarized1 = 0;
  const torch::Tensor bright = torch::full({12, 12}, 0.9f);
  // One generator drawn on through all images (the draws are independent).
  CounterRng rng(1, 22);
  for (int k = 0; k < n; ++k) {
    MultiCrops c = multicrop(bright, o, rng);
    const double g1 = c.global[0][0].mean().item<double>() * o.std[0] + o.mean[0];
    const double g2 = c.global[1][0].mean().item<double>() * o.std[0] + o.mean[0];
    solarized1 += g1 < 0.5;
    solarized2 += g2 < 0.5;
  }
  EXPECT_EQ(solarized1, 0);
  EXPECT_NEAR(solarized2 / double(n), 0.2, three_sd(0.2, n));

  o = small_crops();
  o.local_size = 8;
  o.local_number = 1;
  o.blur_p_local = 0;
  const torch::Tensor mid = torch::full({12, 12}, 0.5f);
  int jittered = 0;
  rng = CounterRng(2, 22);
  for (int k = 0; k < n; ++k) {
    MultiCrops c = multicrop(mid, o, rng);
    const double v = c.local[0][0].mean().item<double>() * o.std[0] + o.mean[0];
    jittered += std::abs(v - 0.5) > 1e-6;
    EXPECT_GE(v, 0.5 * 0.6 - 1e-6);
    EXPECT_LE(v, 0.5 * 1.4 + 1e-6);
  }
  EXPECT_NEAR(jittered / double(n), 0.8, three_sd(0.8, n));
}

TEST(MultiCrop, BlurRate) {
  // A 16 x 16 step edge cropped whole at 16 x 16 is resized exactly (bicubic at the same size); jitter
  // off, only a blur makes values strictly between 0 and 1. A blur shows (a neighbour weight above
  // 1e-4) when sigma > 1 / sqrt(2 ln 1e4) = 0.233, i.e. with probability (2 - 0.233) / 1.9 = 0.930 of
  // sigma's range: the rate seen is blur_p * 0.930.
  const int n = 400;
  torch::Tensor edge = torch::zeros({16, 16});
  edge.narrow(1, 8, 8).fill_(1.0f);
  MultiCropOptions o;
  o.global_size = o.local_size = 16;
  o.local_number = 1;
  o.global_scale_min = o.global_scale_max = o.local_scale_min = o.local_scale_max = 1.0;
  o.jitter_p = 0;
  o.solarize_p_global2 = 0;
  o.blur_p_global1 = 1.0;
  o.blur_p_global2 = 0.1;
  o.blur_p_local = 0.5;
  int blurred[3] = {0, 0, 0};
  auto is_blurred = [&](const torch::Tensor& t) {
    torch::Tensor g = t[0] * o.std[0] + o.mean[0];
    return torch::minimum(g, 1 - g).max().item<double>() > 1e-4;
  };
  CounterRng rng(4, 22);
  for (int k = 0; k < n; ++k) {
    MultiCrops c = multicrop(edge, o, rng);
    blurred[0] += is_blurred(c.global[0]);
    blurred[1] += is_blurred(c.global[1]);
    blurred[2] += is_blurred(c.local[0]);
  }
  const double shows = (2 - 1 / std::sqrt(2 * std::log(1e4))) / 1.9;
  EXPECT_NEAR(blurred[0] / double(n), 1.0 * shows, three_sd(shows, n));
  EXPECT_NEAR(blurred[1] / double(n), 0.1 * shows, three_sd(0.1 * shows, n));
  EXPECT_NEAR(blurred[2] / double(n), 0.5 * shows, three_sd(0.5 * shows, n));
}

TEST(MultiCrop, HistogramEqualisationBeforeCropping) {
  // Equalising a dim image spreads it over [0, 1]: a full crop then reaches near 1.
  Image dim = Image::gray8(24, 24);
  for (std::size_t i = 0; i < dim.data.size(); ++i) dim.data[i] = static_cast<std::uint8_t>(i % 40);
  MultiCropOptions o = small_crops();
  o.global_scale_min = o.global_scale_max = 1.0;
  o.jitter_p = o.blur_p_global1 = o.blur_p_global2 = o.solarize_p_global2 = 0;
  CounterRng a(1, 22), b(1, 22);
  auto top = [&](const MultiCrops& c) { return (c.global[0][0] * o.std[0] + o.mean[0]).max().item<double>(); };
  EXPECT_LT(top(multicrop(dim, o, a)), 0.2);
  o.hist_equalize = true;
  EXPECT_GT(top(multicrop(dim, o, b)), 0.8);  // 0.88: the resize from 24 to 16 averages the top
}

TEST(MultiCrop, OptionsChecked) {
  MultiCropOptions o = small_crops();
  o.local_scale_min = 0.5;
  o.local_scale_max = 0.4;
  CounterRng rng(1, 1);
  EXPECT_THROW(multicrop(torch::zeros({8, 8}), o, rng), cx::UsageError);
  o = small_crops();
  o.solarize_p_global2 = 1.5;
  EXPECT_THROW(check_multicrop_options(o), cx::UsageError);
}

// ---- the loader ----

TEST(SslLoader, CollatesCropMajorAndCropsArePureInSeedPassIndex) {
  cx_test::TempDir d("cx_multicrop_test");
  const std::string s = d / "s.tar";
  write_stream(s, 24);
  SslLoader l({s}, loader_options(2));
  std::vector<SslBatch> bs = take(l, 8);  // 6 batches a pass: the last two are in pass 1
  ASSERT_EQ(bs.size(), 8u);
  std::set<std::string> pass0;
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(bs[i].pass, 0);
    pass0.insert(bs[i].keys.begin(), bs[i].keys.end());
  }
  EXPECT_EQ(pass0.size(), 24u) << "a pass gives every record once";
  EXPECT_EQ(bs[6].pass, 1);
  for (int i : {0, 7}) {
    const SslBatch& b = bs[i];
    EXPECT_EQ(b.global.sizes().vec(), (std::vector<std::int64_t>{8, 3, 16, 16}));
    EXPECT_EQ(b.local.sizes().vec(), (std::vector<std::int64_t>{8, 3, 8, 8}));
    for (std::int64_t k = 0; k < 4; ++k) {
      const int index = std::stoi(b.keys[k].substr(1));
      CounterRng rng = ssl_augment_rng(7, b.pass, index);
      MultiCrops want = multicrop(pattern(20 + index % 5, 24 + index % 3, index), small_crops(), rng);
      for (std::int64_t c = 0; c < 2; ++c) EXPECT_TRUE(torch::equal(b.global[c * 4 + k], want.global[c])) << i << " " << k;
      for (std::int64_t c = 0; c < 2; ++c) EXPECT_TRUE(torch::equal(b.local[c * 4 + k], want.local[c])) << i << " " << k;
    }
  }
  // The shuffle changes with the pass.
  std::vector<std::string> first0 = bs[0].keys, first1 = bs[6].keys;
  EXPECT_NE(first0, first1);
}

TEST(SslLoader, SameBatchesForAnyThreadCount) {
  cx_test::TempDir d("cx_multicrop_test");
  const std::string s = d / "s.tar";
  write_stream(s, 24);
  SslLoader l0({s}, loader_options(0)), l1({s}, loader_options(1)), l2({s}, loader_options(2));
  auto a = take(l0, 8), b = take(l1, 8), c = take(l2, 8);
  ASSERT_EQ(a.size(), 8u);
  ASSERT_EQ(b.size(), 8u);
  ASSERT_EQ(c.size(), 8u);
  for (int i = 0; i < 8; ++i) {
    expect_same(a[i], b[i], "threads 0 vs 1, batch " + std::to_string(i));
    expect_same(a[i], c[i], "threads 0 vs 2, batch " + std::to_string(i));
  }
  // Another seed, other batches.
  SslLoaderOptions o = loader_options(2);
  o.seed = 8;
  SslLoader l3({s}, o);
  EXPECT_NE(take(l3, 1)[0].keys, a[0].keys);
}

TEST(SslLoader, SeekIntoAFreshLoaderContinuesExactly) {
  cx_test::TempDir d("cx_multicrop_test");
  const std::string s = d / "s.tar";
  write_stream(s, 22);  // a pass of 5.5 batches: batches straddle the passes
  SslLoader ref({s}, loader_options(2));
  std::vector<SslBatch> want;
  std::vector<nlohmann::json> pos{ref.position()};
  for (int i = 0; i < 13; ++i) {
    SslBatch b;
    ASSERT_TRUE(ref.next(b));
    want.push_back(std::move(b));
    pos.push_back(ref.position());
  }
  EXPECT_EQ(pos[13]["batches"], 13);
  EXPECT_EQ(pos[13]["pass"], 2);
  for (int k : {0, 1, 5, 6, 11, 12}) {
    // A fresh loader, another thread count, seeked to the position after batch k - 1.
    SslLoader fresh({s}, loader_options(k % 2 ? 1 : 0));
    fresh.seek(pos[static_cast<std::size_t>(k)]);
    SslBatch b;
    ASSERT_TRUE(fresh.next(b));
    expect_same(b, want[static_cast<std::size_t>(k)], "batch " + std::to_string(k));
    EXPECT_EQ(fresh.position(), pos[static_cast<std::size_t>(k + 1)]);
  }
  // Seeking back in a loader that has run ahead (its prefetched batches are dropped).
  SslLoader used({s}, loader_options(2));
  take(used, 4);
  used.seek(pos[2]);
  auto again = take(used, 2);
  ASSERT_EQ(again.size(), 2u);
  expect_same(again[0], want[2], "after seeking back");
  expect_same(again[1], want[3], "after seeking back, the next");
  // Positions of other loaders are refused by name.
  SslLoaderOptions other = loader_options(2);
  other.seed = 99;
  SslLoader wrong({s}, other);
  try {
    wrong.seek(pos[3]);
    FAIL();
  } catch (const cx::Error& e) {
    EXPECT_NE(std::string(e.what()).find("seed"), std::string::npos) << e.what();
  }
  // A position past the end of a shorter stream.
  const std::string shorter = d / "short.tar";
  write_stream(shorter, 6);
  SslLoader cut({shorter}, loader_options(0));
  nlohmann::json p = pos[4];
  p["pass"] = 0;
  EXPECT_THROW(cut.seek(p), cx::Error);
}

TEST(SslLoader, RanksReadDisjointShardsThatCoverTheStream) {
  cx_test::TempDir d("cx_multicrop_test");
  const std::string s = d / "s.tar";
  write_stream(s, 24);
  for (std::int64_t buffer : {1, 5}) {
    std::vector<std::string> seen[2];
    std::vector<SslBatch> batches[2];
    for (int r = 0; r < 2; ++r) {
      SslLoaderOptions o = loader_options(2);
      o.batch_size = 3;
      o.shuffle_buffer = buffer;
      o.rank = r;
      o.world_size = 2;
      SslLoader l({s}, o);
      batches[r] = take(l, 4);  // 12 records a rank per pass
      for (const auto& b : batches[r]) {
        EXPECT_EQ(b.pass, 0);
        seen[r].insert(seen[r].end(), b.keys.begin(), b.keys.end());
      }
      for (const auto& k : seen[r]) EXPECT_EQ(std::stoi(k.substr(1)) % 2, r) << k;
    }
    std::set<std::string> all(seen[0].begin(), seen[0].end());
    all.insert(seen[1].begin(), seen[1].end());
    EXPECT_EQ(seen[0].size() + seen[1].size(), 24u);
    EXPECT_EQ(all.size(), 24u) << "buffer " << buffer;
    if (buffer == 1) {
      // Unshuffled, rank r's shard in stream order; crops as on one rank (they depend on the record
      // index, not on the shard).
      EXPECT_EQ(batches[1][0].keys, (std::vector<std::string>{"r001", "r003", "r005"}));
      SslLoaderOptions one = loader_options(0);
      one.shuffle_buffer = 1;
      one.batch_size = 6;
      SslLoader l({s}, one);
      SslBatch b;
      ASSERT_TRUE(l.next(b));  // r000 .. r005
      EXPECT_TRUE(torch::equal(b.global[1], batches[1][0].global[0]));  // r001's first global crop
      EXPECT_TRUE(torch::equal(b.local[6 + 3], batches[1][0].local[3 + 1]));  // r003's second local crop
    }
  }
  SslLoaderOptions bad = loader_options(0);
  bad.rank = 2;
  bad.world_size = 2;
  EXPECT_THROW(SslLoader({s}, bad), cx::UsageError);
}

TEST(SslLoader, APipeIsReadOnceAndEndsAfterTheLastFullBatch) {
  cx_test::TempDir d("cx_multicrop_test");
  const std::string s = d / "s.tar", fifo = d / "fifo";
  write_stream(s, 23);
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::thread writer([&] {
    std::ifstream in(s, std::ios::binary);
    std::ofstream out(fifo, std::ios::binary);
    out << in.rdbuf();
  });
  SslLoader l({fifo}, loader_options(2));
  auto bs = take(l, 10);
  writer.join();
  EXPECT_EQ(bs.size(), 5u);  // 23 records: 5 batches of 4, the last 3 records dropped
  SslBatch b;
  EXPECT_FALSE(l.next(b));
  // A later pass of a pipe cannot be sought.
  SslLoader again({fifo}, loader_options(0));
  nlohmann::json p = l.position();
  p["pass"] = 1;
  p["read"] = p["emitted"] = 0;
  EXPECT_THROW(again.seek(p), cx::Error);
}

TEST(SslLoader, BadRecordsAreErrorsNamingStreamAndRecord) {
  cx_test::TempDir d("cx_multicrop_test");
  const std::string s = d / "noimage.tar", g = d / "garbage.tar";
  write_stream(s, 16, 9);
  write_stream(g, 16, -1, 9);
  for (const std::string& path : {s, g}) {
    for (int threads : {0, 2}) {
      SslLoaderOptions o = loader_options(threads);
      o.shuffle_buffer = 1;
      SslLoader l({path}, o);
      SslBatch b;
      // Records 0-7 make two batches; record 9 fails the third, whatever the thread count.
      ASSERT_TRUE(l.next(b));
      ASSERT_TRUE(l.next(b));
      for (int again = 0; again < 2; ++again) {  // the failure is final: the second call throws it again
        try {
          l.next(b);
          FAIL() << path;
        } catch (const cx::Error& e) {
          const std::string m = e.what();
          EXPECT_NE(m.find(path), std::string::npos) << m;
          EXPECT_NE(m.find("r009"), std::string::npos) << m;
        }
      }
    }
  }
  // An empty stream, or a rank left without records, is an error, not an endless loop.
  const std::string empty = d / "empty.tar";
  write_stream(empty, 0);
  SslLoader l({empty}, loader_options(2));
  SslBatch b;
  EXPECT_THROW(l.next(b), cx::Error);
}

}  // namespace
