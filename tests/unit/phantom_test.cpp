// lib/cx/phantom: the synthetic radiographs. Determinism from (seed, index) alone; each label tied
// to the pixels it claims (cardiothoracic ratio measured on the mask, fluid that shrinks the lung
// base, a nodule that brightens its disc, a pneumothorax that shrinks the lung and leaves a darker
// pleural space behind a visceral pleural line); mask classes in their places; the report's
// impression naming exactly the findings present; the stream writer's order and thread invariance.
//
// The anatomy, each finding and the noise draw from separate random streams, so rendering one
// (seed, index) with a finding's probability at 1 and at 0 gives two pictures that differ by that
// finding only: the tests below compare such pairs, which makes them causal and not statistical.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <set>
#include <stdexcept>
#include <string>

#include "cx/io/png.hpp"
#include "cx/io/stream.hpp"
#include "cx/phantom/phantom.hpp"
#include "cx/phantom/phantom_stream.hpp"

using cx::phantom::Phantom;
using cx::phantom::PhantomOptions;
using cx::phantom::render_phantom;
using nlohmann::json;

namespace {

PhantomOptions only(double cardiomegaly, double effusion, double nodule, double pneumothorax, int size = 256) {
  PhantomOptions o;
  o.size = size;
  o.p_cardiomegaly = cardiomegaly;
  o.p_effusion = effusion;
  o.p_nodule = nodule;
  o.p_pneumothorax = pneumothorax;
  return o;
}

std::uint8_t px(const cx::Image& im, int x, int y) { return im.u8()[static_cast<std::size_t>(y) * im.width + x]; }

struct Extent {
  long count = 0;
  int x0 = std::numeric_limits<int>::max(), x1 = -1, y0 = std::numeric_limits<int>::max(), y1 = -1;
  double sum_x = 0;
  int width() const { return x1 - x0 + 1; }
  double mean_x() const { return count ? sum_x / count : 0.0; }
};

Extent extent(const cx::Image& mask, std::set<int> labels) {
  Extent e;
  for (int y = 0; y < mask.height; ++y)
    for (int x = 0; x < mask.width; ++x)
      if (labels.count(px(mask, x, y))) {
        ++e.count;
        e.sum_x += x;
        e.x0 = std::min(e.x0, x);
        e.x1 = std::max(e.x1, x);
        e.y0 = std::min(e.y0, y);
        e.y1 = std::max(e.y1, y);
      }
  return e;
}

// Cardiothoracic ratio as a reader measures it on the mask: the heart's widest horizontal extent over
// the widest extent of the two lungs together (the inner thorax).
double mask_ctr(const cx::Image& mask) {
  return static_cast<double>(extent(mask, {cx::phantom::kHeart}).width()) /
         extent(mask, {cx::phantom::kLeftLung, cx::phantom::kRightLung}).width();
}

int lung_label(const std::string& side) { return side == "left" ? cx::phantom::kLeftLung : cx::phantom::kRightLung; }

const json* finding(const json& meta, const std::string& name) {
  for (const auto& f : meta["findings"])
    if (f["name"] == name) return &f;
  return nullptr;
}

double mean_where(const cx::Image& im, const std::function<bool(int, int)>& pred, long* n = nullptr) {
  double sum = 0;
  long count = 0;
  for (int y = 0; y < im.height; ++y)
    for (int x = 0; x < im.width; ++x)
      if (pred(x, y)) {
        sum += px(im, x, y);
        ++count;
      }
  if (n) *n = count;
  return count ? sum / count : 0.0;
}

}  // namespace

TEST(Phantom, SameSeedAndIndexGiveTheSameBytes) {
  const PhantomOptions o = only(0.5, 0.5, 0.5, 0.5, 192);
  for (std::int64_t i : {0, 7, 123456}) {
    const Phantom a = render_phantom(o, 42, i), b = render_phantom(o, 42, i);
    EXPECT_EQ(a.image.data, b.image.data) << i;
    EXPECT_EQ(a.mask.data, b.mask.data) << i;
    EXPECT_EQ(a.meta, b.meta) << i;
    EXPECT_EQ(a.report, b.report) << i;
  }
}

TEST(Phantom, IndexAndSeedChangeThePicture) {
  const PhantomOptions o = only(0.3, 0.2, 0.15, 0.1, 128);
  const Phantom a = render_phantom(o, 1, 0), b = render_phantom(o, 1, 1), c = render_phantom(o, 2, 0);
  EXPECT_NE(a.image.data, b.image.data);
  EXPECT_NE(a.image.data, c.image.data);
  EXPECT_NE(a.mask.data, b.mask.data);
  EXPECT_EQ(a.meta["index"], 0);
  EXPECT_EQ(b.meta["index"], 1);
  EXPECT_EQ(c.meta["seed"], 2u);
}

TEST(Phantom, SizesAndFormats) {
  for (int size : {64, 100, 333, 512}) {
    const Phantom p = render_phantom(PhantomOptions{size}, 3, 5);
    EXPECT_EQ(p.image.width, size);
    EXPECT_EQ(p.image.height, size);
    EXPECT_EQ(p.image.channels, 1);
    EXPECT_EQ(p.image.bits, 8);
    EXPECT_EQ(p.mask.width, size);
    EXPECT_EQ(p.mask.height, size);
    EXPECT_EQ(p.meta["size"], json({size, size}));
    for (std::uint8_t v : p.mask.data) ASSERT_LE(v, 3) << "mask values are class indices 0..3";
  }
}

TEST(Phantom, RefusesBadOptions) {
  EXPECT_THROW(render_phantom(PhantomOptions{63}, 0, 0), std::invalid_argument);
  EXPECT_THROW(render_phantom(PhantomOptions{cx::phantom::kMaxSize + 1}, 0, 0), std::invalid_argument);
  EXPECT_THROW(render_phantom(only(1.5, 0, 0, 0), 0, 0), std::invalid_argument);
  EXPECT_THROW(render_phantom(only(0, -0.1, 0, 0), 0, 0), std::invalid_argument);
  EXPECT_THROW(render_phantom(only(0, 0, std::nan(""), 0), 0, 0), std::invalid_argument);
}

TEST(Phantom, MaskClassesSitWhereAnatomySaysAndMatchTheImage) {
  // "Left" is the patient's left: the image's right half as radiographs are viewed.
  for (std::int64_t i = 0; i < 6; ++i) {
    const Phantom p = render_phantom(only(0, 0, 0, 0), 11, i);
    const int mid = p.mask.width / 2;
    const Extent left = extent(p.mask, {cx::phantom::kLeftLung}), right = extent(p.mask, {cx::phantom::kRightLung});
    const Extent heart = extent(p.mask, {cx::phantom::kHeart});
    ASSERT_GT(left.count, 0);
    ASSERT_GT(right.count, 0);
    ASSERT_GT(heart.count, 0);
    EXPECT_GT(left.mean_x(), mid) << i;
    EXPECT_LT(right.mean_x(), mid) << i;
    EXPECT_GT(heart.mean_x(), mid) << "the heart lies mostly on the patient's left, index " << i;
    EXPECT_GT(heart.y0, std::min(left.y0, right.y0)) << "heart below the lung apices";
    // Dark lungs, bright heart, black air in the top corners.
    const double lung = mean_where(p.image, [&](int x, int y) { return px(p.mask, x, y) == 1 || px(p.mask, x, y) == 2; });
    const double hrt = mean_where(p.image, [&](int x, int y) { return px(p.mask, x, y) == 3; });
    EXPECT_GT(hrt - lung, 80) << "heart vs lung contrast, index " << i;
    EXPECT_LT(px(p.image, 1, 1), 40) << i;
    EXPECT_LT(px(p.image, p.image.width - 2, 1), 40) << i;
  }
}

TEST(Phantom, CardiomegalyMeansAHeartWiderThanHalfTheThorax) {
  // Measured on the mask as a reader would. Tolerance 0.02 between the json's ratio (measured in
  // the upright frame) and the mask's (after the acquisition's rotation of up to 3 degrees and the
  // nearest-neighbour resampling): about 2 px in a 200 px thorax.
  for (std::int64_t i = 0; i < 12; ++i) {
    const Phantom big = render_phantom(only(1, 0, 0, 0), 5, i), normal = render_phantom(only(0, 0, 0, 0), 5, i);
    EXPECT_EQ(big.meta["labels"]["Cardiomegaly"], 1);
    EXPECT_EQ(normal.meta["labels"]["Cardiomegaly"], 0);
    const double r_big = mask_ctr(big.mask), r_normal = mask_ctr(normal.mask);
    EXPECT_GT(r_big, 0.52) << i;
    EXPECT_LT(r_normal, 0.48) << i;
    EXPECT_NEAR(r_big, big.meta["ctr"].get<double>(), 0.02) << i;
    EXPECT_NEAR(r_normal, normal.meta["ctr"].get<double>(), 0.02) << i;
    ASSERT_NE(finding(big.meta, "Cardiomegaly"), nullptr);
    EXPECT_EQ(finding(normal.meta, "Cardiomegaly"), nullptr);
  }
}

TEST(Phantom, EffusionFillsTheCostophrenicAngleAndShrinksTheLungBase) {
  for (std::int64_t i = 0; i < 8; ++i) {
    const Phantom wet = render_phantom(only(0, 1, 0, 0), 9, i), dry = render_phantom(only(0, 0, 0, 0), 9, i);
    EXPECT_EQ(wet.meta["labels"]["Effusion"], 1);
    EXPECT_EQ(dry.meta["labels"]["Effusion"], 0);
    std::set<int> sides;
    for (const auto& f : wet.meta["findings"])
      if (f["name"] == "Effusion") sides.insert(lung_label(f["side"]));
    ASSERT_FALSE(sides.empty()) << i;
    for (int label : {1, 2}) {
      const Extent w = extent(wet.mask, {label}), d = extent(dry.mask, {label});
      if (!sides.count(label)) {
        EXPECT_EQ(w.count, d.count) << "the dry side is untouched, index " << i;
        continue;
      }
      // The costophrenic angle: the lowest twelfth of the dry lung's height, in the lateral sixth
      // of its width. Fluid takes at least half of it, even a small effusion (the worst seen over
      // 120 records: a third left).
      const int base = d.y1 - (d.y1 - d.y0) / 12;
      const int quarter = d.width() / 6;
      const int xa = label == cx::phantom::kRightLung ? d.x0 : d.x1 - quarter;
      const int xb = label == cx::phantom::kRightLung ? d.x0 + quarter : d.x1;
      long wet_angle = 0, dry_angle = 0;
      for (int y = base; y < wet.mask.height; ++y)
        for (int x = xa; x <= xb; ++x) {
          wet_angle += px(wet.mask, x, y) == label;
          dry_angle += px(dry.mask, x, y) == label;
        }
      EXPECT_LT(wet_angle, 0.5 * dry_angle) << "label " << label << ", index " << i;
      EXPECT_LT(w.y1, d.y1) << "the lung's lowest point rises, index " << i;
      // Where lung became fluid the film is whiter: fluid stops the beam as soft tissue does. (The
      // meniscus is soft over a few pixels, so the margin is well below the lung/tissue contrast.)
      long n = 0;
      const double wet_mean = mean_where(wet.image, [&](int x, int y) { return px(dry.mask, x, y) == label && px(wet.mask, x, y) == 0; }, &n);
      const double dry_mean = mean_where(dry.image, [&](int x, int y) { return px(dry.mask, x, y) == label && px(wet.mask, x, y) == 0; });
      ASSERT_GT(n, 20) << i;
      EXPECT_GT(wet_mean - dry_mean, 25) << "label " << label << ", index " << i;
    }
  }
}

TEST(Phantom, NoduleIsABrightRoundSpotInsideALungAndNothingElseChanges) {
  for (std::int64_t i = 0; i < 8; ++i) {
    const Phantom with = render_phantom(only(0, 0, 1, 0), 21, i), without = render_phantom(only(0, 0, 0, 0), 21, i);
    EXPECT_EQ(with.meta["labels"]["Nodule"], 1);
    const json* f = finding(with.meta, "Nodule");
    ASSERT_NE(f, nullptr) << i;
    const double cx = (*f)["center"][0], cy = (*f)["center"][1], r = (*f)["radius_px"];
    EXPECT_GE(r, 1.5);
    EXPECT_EQ(px(with.mask, static_cast<int>(cx), static_cast<int>(cy)), lung_label((*f)["side"])) << i;
    // The nodule's disc is brighter with it than without; its core by a clear margin.
    auto in_core = [&](int x, int y) { return std::hypot(x + 0.5 - cx, y + 0.5 - cy) < 0.6 * r; };
    EXPECT_GT(mean_where(with.image, in_core) - mean_where(without.image, in_core), 25) << i;
    // And brighter than the lung around it (a ring out to 3 r), within the same picture.
    auto in_ring = [&](int x, int y) {
      const double d = std::hypot(x + 0.5 - cx, y + 0.5 - cy);
      return d > 1.5 * r && d < 3 * r && px(with.mask, x, y) != 0;
    };
    EXPECT_GT(mean_where(with.image, in_core) - mean_where(with.image, in_ring), 15) << i;
    // Beyond its reach (radius, the blur and the resampling) not one pixel differs.
    long changed_far = 0;
    for (int y = 0; y < with.image.height; ++y)
      for (int x = 0; x < with.image.width; ++x)
        if (std::hypot(x + 0.5 - cx, y + 0.5 - cy) > r + 5 && px(with.image, x, y) != px(without.image, x, y)) ++changed_far;
    EXPECT_EQ(changed_far, 0) << i;
    EXPECT_EQ(with.mask.data, without.mask.data) << "a nodule is not a mask class";
  }
}

TEST(Phantom, PneumothoraxShrinksTheLungAndLeavesADarkPleuralSpaceBehindALine) {
  for (std::int64_t i = 0; i < 8; ++i) {
    const Phantom ptx = render_phantom(only(0, 0, 0, 1), 33, i), ok = render_phantom(only(0, 0, 0, 0), 33, i);
    EXPECT_EQ(ptx.meta["labels"]["Pneumothorax"], 1);
    const json* f = finding(ptx.meta, "Pneumothorax");
    ASSERT_NE(f, nullptr) << i;
    const int label = lung_label((*f)["side"]), other = label == 1 ? 2 : 1;
    const Extent p = extent(ptx.mask, {label}), n = extent(ok.mask, {label});
    EXPECT_LT(p.count, 0.92 * n.count) << "the collapsed lung is smaller, index " << i;
    EXPECT_GT(p.y0, n.y0) << "its apex drops, index " << i;
    EXPECT_EQ(extent(ptx.mask, {other}).count, extent(ok.mask, {other}).count) << i;
    // The pleural space (lung before, not after) holds only air: darker than the lung it replaced.
    auto space = [&](int x, int y) { return px(ok.mask, x, y) == label && px(ptx.mask, x, y) != label; };
    long count = 0;
    const double dark = mean_where(ptx.image, space, &count), before = mean_where(ok.image, space);
    ASSERT_GT(count, 50);
    EXPECT_LT(dark, before - 4) << i;
    // The visceral pleural line: along the collapsed lung's lateral edge the film is brighter than
    // both the pleural air beside it and the lung inside it (a ridge, not just a step). Averaged
    // over the rows of the upper half where the gap is at least 6 px wide, so that ribs crossing
    // single rows even out.
    const int sgn = label == 1 ? 1 : -1;  // towards this side's chest wall, on the image
    auto lateral_most = [&](const cx::Image& mask, int y) {
      for (int x = sgn > 0 ? mask.width - 1 : 0; x >= 0 && x < mask.width; x -= sgn)
        if (px(mask, x, y) == label) return x;
      return -1;
    };
    double edge = 0, outside = 0, inside = 0;
    int rows = 0;
    for (int y = p.y0 + (p.y1 - p.y0) / 8; y < p.y0 + (p.y1 - p.y0) / 2; ++y) {
      const int xe = lateral_most(ptx.mask, y), xo = lateral_most(ok.mask, y);
      if (xe < 0 || xo < 0 || (xo - xe) * sgn < 6) continue;
      edge += std::max({px(ptx.image, xe, y), px(ptx.image, xe + sgn, y), px(ptx.image, xe - sgn, y)});
      outside += px(ptx.image, (xe + xo) / 2 + sgn, y);
      inside += px(ptx.image, xe - 4 * sgn, y);
      ++rows;
    }
    ASSERT_GT(rows, 5) << i;
    EXPECT_GT((edge - outside) / rows, 10) << i;
    EXPECT_GT((edge - inside) / rows, 4) << i;
  }
}

TEST(Phantom, LabelsFollowTheProbabilities) {
  int none = 0;
  for (std::int64_t i = 0; i < 10; ++i) {
    const Phantom all = render_phantom(only(1, 1, 1, 1), 4, i), zero = render_phantom(only(0, 0, 0, 0), 4, i);
    for (const char* name : cx::phantom::kFindings) {
      EXPECT_EQ(all.meta["labels"][name], 1) << name << " " << i;
      EXPECT_EQ(zero.meta["labels"][name], 0) << name << " " << i;
    }
    EXPECT_EQ(all.meta["labels"][cx::phantom::kNoFinding], 0);
    EXPECT_EQ(zero.meta["labels"][cx::phantom::kNoFinding], 1);
    EXPECT_TRUE(zero.meta["findings"].empty());
    const Phantom mixed = render_phantom(PhantomOptions{128}, 4, i);
    int positives = 0;
    for (const char* name : cx::phantom::kFindings) positives += mixed.meta["labels"][name].get<int>();
    EXPECT_EQ(mixed.meta["labels"][cx::phantom::kNoFinding], positives == 0 ? 1 : 0);
    none += positives == 0;
  }
  EXPECT_GT(none, 0) << "with the default probabilities some studies are normal";
}

TEST(Phantom, ImpressionNamesExactlyTheFindingsPresent) {
  const std::pair<const char*, const char*> words[] = {
      {"Cardiomegaly", "ardiomegaly"}, {"Effusion", "effusion"}, {"Nodule", "nodule"}, {"Pneumothorax", "pneumothorax"}};
  std::set<std::string> phrasings;
  for (std::int64_t i = 0; i < 40; ++i) {
    const Phantom p = render_phantom(only(0.4, 0.4, 0.4, 0.4, 64), 8, i);
    ASSERT_EQ(p.report.rfind("FINDINGS: ", 0), 0u) << p.report;
    const auto at = p.report.find("\nIMPRESSION: ");
    ASSERT_NE(at, std::string::npos) << p.report;
    const std::string impression = p.report.substr(at);
    for (auto [label, word] : words)
      EXPECT_EQ(impression.find(word) != std::string::npos, p.meta["labels"][label] == 1) << label << "\n" << p.report;
    phrasings.insert(p.report.substr(0, p.report.find('.')));
  }
  EXPECT_GT(phrasings.size(), 3u) << "the phrasing varies between records";
}

TEST(PhantomStream, RecordFieldsDecodeBackToThePhantom) {
  const Phantom p = render_phantom(PhantomOptions{96}, 1, 2);
  const cx::io::Record r = cx::phantom::phantom_record(p, 2);
  EXPECT_EQ(r.key, "phantom-000002");
  ASSERT_EQ(r.fields.size(), 4u);
  EXPECT_EQ(r.fields[0].name, "json");
  EXPECT_EQ(r.fields[1].name, "png");
  EXPECT_EQ(r.fields[2].name, "mask.png");
  EXPECT_EQ(r.fields[3].name, "txt");
  EXPECT_EQ(json::parse(r.fields[0].data), p.meta);
  EXPECT_EQ(p.meta["id"], "phantom-000002");
  EXPECT_EQ(cx::io::decode_png(r.fields[1].data, "png").data, p.image.data);
  EXPECT_EQ(cx::io::decode_png(r.fields[2].data, "mask").data, p.mask.data);
  EXPECT_EQ(r.fields[3].data, p.report);
}

namespace {
std::string stream_bytes(const PhantomOptions& o, std::uint64_t seed, std::int64_t n, int threads) {
  char* buf = nullptr;
  std::size_t size = 0;
  std::FILE* f = open_memstream(&buf, &size);
  {
    cx::io::StreamWriter w(f, cx::phantom::phantom_stream_header(o, seed, n), "memory");
    std::int64_t expected = 0;
    cx::phantom::write_phantoms(w, o, seed, n, threads, [&](std::int64_t i) { EXPECT_EQ(i, expected++); });
    w.finish();
  }
  std::fclose(f);
  std::string out(buf, size);
  std::free(buf);
  return out;
}
}  // namespace

TEST(PhantomStream, BytesDoNotDependOnThreadsOrCount) {
  const PhantomOptions o{80};
  const std::string one = stream_bytes(o, 6, 9, 1), three = stream_bytes(o, 6, 9, 3);
  EXPECT_EQ(one, three);
  // Record 4 of a 9-record stream is record 4 of a 5-record one.
  std::FILE* f = fmemopen(const_cast<char*>(three.data()), three.size(), "rb");
  cx::io::StreamReader reader(f, "memory");
  cx::io::Record r;
  std::int64_t n = 0;
  while (reader.next(r)) {
    EXPECT_EQ(r.key, cx::phantom::phantom_key(n));
    if (n == 4) {
      const Phantom p = render_phantom(o, 6, 4);
      EXPECT_EQ(cx::io::decode_png(r.find("png")->data, "png").data, p.image.data);
    }
    ++n;
  }
  std::fclose(f);
  EXPECT_EQ(n, 9);
  EXPECT_EQ(reader.header()["labels"], cx::phantom::phantom_labels());
}

TEST(PhantomStream, AWorkerErrorReachesTheCaller) {
  char* buf = nullptr;
  std::size_t size = 0;
  std::FILE* f = open_memstream(&buf, &size);
  {
    cx::io::StreamWriter w(f, cx::io::new_stream_header(), "memory");
    EXPECT_THROW(cx::phantom::write_phantoms(w, PhantomOptions{10}, 0, 20, 3), std::invalid_argument);
  }
  std::fclose(f);
  std::free(buf);
}
