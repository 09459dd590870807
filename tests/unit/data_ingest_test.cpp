// cx-ingest's per-item pipeline (cx/data/ingest.hpp): intensity of PNG inputs, depth, windows,
// boxes, pixel spacing and masks following the resize; errors naming file and row; and the
// order-keeping parallel loop (order, bounded memory, errors).
#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <random>
#include <thread>

#include "cx/cli/error.hpp"
#include "cx/data/ingest.hpp"
#include "cx/data/rle.hpp"
#include "cx/io/png.hpp"
#include "test_support.hpp"

using cx_test::error_of;

namespace fs = std::filesystem;
using namespace cx::data;
using nlohmann::json;

namespace {

struct Tmp {
  fs::path dir = fs::temp_directory_path() / ("cx_ingest_" + std::to_string(::getpid()));
  Tmp() { fs::create_directories(dir); }
  ~Tmp() { fs::remove_all(dir); }
  std::string file(const std::string& name) const { return (dir / name).string(); }
};

std::string write_png(const Tmp& t, const std::string& name, const cx::Image& im) {
  std::string p = t.file(name);
  std::ofstream(p, std::ios::binary) << cx::io::encode_png(im);
  return p;
}

const std::string& field(const IngestResult& r, const std::string& name) {
  const cx::io::Field* f = r.record.find(name);
  if (!f) throw std::runtime_error("no field " + name);
  return f->data;
}

json meta_of(const IngestResult& r) { return json::parse(field(r, "json")); }
cx::Image png_of(const IngestResult& r, const std::string& name = "png") { return cx::io::decode_png(field(r, name), name); }

IngestItem item_for(const std::string& path, const std::string& key = "k") {
  IngestItem it;
  it.key = key;
  it.image_path = path;
  it.meta = {{"dataset", "test"}};
  return it;
}

}  // namespace

TEST(Ingest, EightBitPngIsKeptAsIsAndWidenedBy257) {
  Tmp t;
  cx::Image im = cx::Image::gray8(7, 5);
  for (std::size_t i = 0; i < im.samples(); ++i) im.u8()[i] = static_cast<std::uint8_t>(i * 7 + 3);
  auto path = write_png(t, "a.png", im);
  IngestOptions o;
  auto r = ingest_item(item_for(path), o);
  EXPECT_EQ(png_of(r).data, im.data);
  json m = meta_of(r);
  EXPECT_EQ(m["intensity"]["source"], "png");
  EXPECT_EQ(m["intensity"]["voi"]["source"], "none");
  EXPECT_EQ(m["image"]["width"], 7);
  EXPECT_EQ(m["key"], "k");
  o.depth = 16;
  auto r16 = ingest_item(item_for(path), o);
  cx::Image out = png_of(r16);
  ASSERT_EQ(out.bits, 16);
  for (std::size_t i = 0; i < im.samples(); ++i) EXPECT_EQ(out.u16()[i], im.u8()[i] * 257);
}

TEST(Ingest, SixteenBitPngIsWindowedMinMaxOrByTheOverride) {
  Tmp t;
  // 12-bit values in a 16-bit PNG, as radiograph PNGs often hold them.
  cx::Image im = cx::Image::gray16(64, 3);
  for (int i = 0; i < 192; ++i) im.u16()[i] = static_cast<std::uint16_t>(100 + i * 19);
  auto path = write_png(t, "b.png", im);
  auto r = ingest_item(item_for(path), IngestOptions{});
  cx::Image out = png_of(r);
  ASSERT_EQ(out.bits, 8);
  // PS3.3 C.11.2.1.2 LINEAR with c = (min+max+1)/2, w = max-min+1: min -> 0, max -> 255, linear
  // between; rounded half up. Exact integer arithmetic here, independent of the library's.
  const double lo = 100, hi = 100 + 191 * 19;
  for (int i = 0; i < 192; ++i) {
    double x = im.u16()[i];
    double c = (lo + hi + 1) / 2, w = hi - lo + 1;
    double y = ((x - (c - 0.5)) / (w - 1) + 0.5) * 255;
    y = std::min(255.0, std::max(0.0, y));
    EXPECT_EQ(out.u8()[i], static_cast<int>(std::floor(y + 0.5))) << i;
  }
  EXPECT_EQ(out.u8()[0], 0);
  EXPECT_EQ(out.u8()[191], 255);
  json m = meta_of(r);
  EXPECT_EQ(m["intensity"]["voi"]["source"], "minmax");
  EXPECT_EQ(m["intensity"]["input_bits"], 16);

  IngestOptions o;
  o.window = std::make_pair(1000.0, 501.0);  // [750, 1250] -> [0, 255]
  cx::Image w = png_of(ingest_item(item_for(path), o));
  for (int i = 0; i < 192; ++i) {
    double x = im.u16()[i];
    double expect = x <= 1000 - 0.5 - 250 ? 0 : x > 1000 - 0.5 + 250 ? 255 : ((x - 999.5) / 500 + 0.5) * 255;
    EXPECT_EQ(w.u8()[i], static_cast<int>(std::floor(expect + 0.5))) << i;
  }
}

TEST(Ingest, BoxesSpacingAndMaskFollowTheResize) {
  Tmp t;
  cx::Image im = cx::Image::gray8(200, 100);
  for (std::size_t i = 0; i < im.samples(); ++i) im.u8()[i] = static_cast<std::uint8_t>(i % 251);
  IngestItem it = item_for(write_png(t, "c.png", im), "c");
  it.origin = "labels.csv:7";
  it.meta["boxes"] = json::array({{{"label", "x"}, {"x", 20.0}, {"y", 10.0}, {"width", 40.0}, {"height", 30.0}}});
  it.meta["acquisition"] = {{"width", 2000}, {"height", 1000}, {"pixel_spacing", {0.15, 0.1}}};
  // A CheXmask row at twice the image's size: it is brought to the image's size first.
  MaskRle m;
  m.height = 200;
  m.width = 400;
  std::vector<std::uint8_t> left(200 * 400, 0), heart(200 * 400, 0);
  for (int y = 0; y < 200; ++y)
    for (int x = 0; x < 400; ++x) {
      // a lattice that only the right sampling phase sees: every output pixel of the left half
      // must land on it (Pillow's nearest: source = floor((x + 0.5) * 4) = 4x + 2)
      left[y * 400 + x] = x < 200 && x % 4 == 2 && y % 4 == 2;
      heart[y * 400 + x] = (x - 200) * (x - 200) + (y - 100) * (y - 100) < 50 * 50;
    }
  m.left_lung = rle_encode(left.data(), 200, 400);
  m.heart = rle_encode(heart.data(), 200, 400);
  it.mask = ItemMask{m, std::make_shared<const std::vector<std::string>>(
                            std::vector<std::string>{"background", "left lung", "right lung", "heart"})};
  it.report = "FINDINGS: none.\n";
  IngestOptions o;
  o.size = 50;  // 200x100 -> 100x50
  auto r = ingest_item(it, o);
  json meta = meta_of(r);
  EXPECT_EQ(meta["image"]["width"], 100);
  EXPECT_EQ(meta["image"]["height"], 50);
  EXPECT_EQ(meta["image"]["original_width"], 200);
  EXPECT_EQ(meta["image"]["resize_filter"], "bicubic");
  EXPECT_DOUBLE_EQ(meta["boxes"][0]["x"].get<double>(), 10.0);
  EXPECT_DOUBLE_EQ(meta["boxes"][0]["height"].get<double>(), 15.0);
  // (row, column) spacing of the written pixels: 0.15 mm * 1000 / 50 and 0.1 mm * 2000 / 100.
  EXPECT_DOUBLE_EQ(meta["image"]["pixel_spacing"][0].get<double>(), 3.0);
  EXPECT_DOUBLE_EQ(meta["image"]["pixel_spacing"][1].get<double>(), 2.0);
  cx::Image mask = png_of(r, "mask.png");
  ASSERT_EQ(mask.width, 100);
  ASSERT_EQ(mask.height, 50);
  // Nearest neighbour by pixel centres: output (x, y) samples input (4x+2, 4y+2) of the row's grid.
  for (int y = 0; y < 50; ++y)
    for (int x = 0; x < 100; ++x) {
      int sx = 4 * x + 2, sy = 4 * y + 2;
      int want = heart[sy * 400 + sx] ? 3 : left[sy * 400 + sx] ? 1 : 0;
      ASSERT_EQ(mask.u8()[y * 100 + x], want) << x << "," << y;
    }
  EXPECT_EQ(mask.u8()[10 * 100 + 10], 1);  // on the lattice, away from the heart
  EXPECT_EQ(meta["mask"]["original_width"], 400);
  EXPECT_EQ(meta["mask"]["labels"]["3"], "heart");
  EXPECT_EQ(meta["classes"], json({"background", "left lung", "right lung", "heart"}));
  EXPECT_EQ(field(r, "txt"), "FINDINGS: none.\n");
  // Fields in the order the stream documents.
  ASSERT_EQ(r.record.fields.size(), 4u);
  EXPECT_EQ(r.record.fields[0].name, "json");
  EXPECT_EQ(r.record.fields[1].name, "png");
  EXPECT_EQ(r.record.fields[2].name, "mask.png");
  EXPECT_EQ(r.record.fields[3].name, "txt");
}

namespace {

// The items of `files` with --masks options `o`, each ingested with `io_`.
std::vector<IngestResult> ingest_with_masks(const std::vector<std::string>& files, const MaskFileOptions& o,
                                            const IngestOptions& io_, nlohmann::json* fields = nullptr) {
  auto src = with_mask_files(open_files(files), o);
  if (fields) *fields = ingest_fields(8, *src);
  std::vector<IngestResult> out;
  IngestItem it;
  while (src->next(it)) out.push_back(ingest_item(it, io_));
  return out;
}


}  // namespace

TEST(IngestMaskFiles, ThresholdedFoundByStemAndResizedNearestWithTheImage) {
  Tmp t;
  fs::create_directories(t.dir / "img");
  fs::create_directories(t.dir / "masks");
  cx::Image im = cx::Image::gray8(40, 30), mask = cx::Image::gray8(40, 30);
  // An anti-aliased 0/255 mask: values on both sides of the threshold, 127/128 at the edge.
  const std::uint8_t values[] = {0, 60, 127, 128, 200, 255};
  for (int y = 0; y < 30; ++y)
    for (int x = 0; x < 40; ++x) {
      im.u8()[y * 40 + x] = static_cast<std::uint8_t>(x * 6);
      mask.u8()[y * 40 + x] = values[(x * 7 + y * 3) % 6];
    }
  const std::string a = write_png(t, "img/a.png", im), b = write_png(t, "img/b.png", im);
  write_png(t, "masks/a_mask.png", mask);
  write_png(t, "masks/a.png", cx::Image::gray8(40, 30));  // a later candidate: not taken
  write_png(t, "masks/b.mask.png", mask);
  MaskFileOptions mo;
  mo.dir = t.file("masks");
  mo.threshold = 128;
  mo.classes = {"lung"};
  IngestOptions o;
  json fields;
  auto rs = ingest_with_masks({a, b}, mo, o, &fields);
  EXPECT_EQ(fields["mask.png"]["classes"], json({"background", "lung"}));
  ASSERT_EQ(rs.size(), 2u);
  for (const auto& r : rs) {
    cx::Image got = png_of(r, "mask.png");
    ASSERT_EQ(got.width, 40);
    for (std::size_t i = 0; i < got.samples(); ++i) ASSERT_EQ(got.u8()[i], mask.u8()[i] >= 128 ? 1 : 0) << i;
    json m = meta_of(r);
    EXPECT_EQ(m["classes"], json({"background", "lung"}));
    EXPECT_EQ(m["mask"]["threshold"], 128);
    EXPECT_EQ(m["mask"]["labels"]["1"], "lung");
  }
  EXPECT_EQ(meta_of(rs[0])["mask"]["source"], t.file("masks/a_mask.png"));
  EXPECT_EQ(meta_of(rs[1])["mask"]["source"], t.file("masks/b.mask.png"));

  // --size 15: 40x30 -> 20x15; nearest by pixel centres samples (2x+1, 2y+1).
  o.size = 15;
  auto r = ingest_with_masks({a}, mo, o).front();
  cx::Image got = png_of(r, "mask.png");
  ASSERT_EQ(got.width, 20);
  ASSERT_EQ(got.height, 15);
  for (int y = 0; y < 15; ++y)
    for (int x = 0; x < 20; ++x)
      ASSERT_EQ(got.u8()[y * 20 + x], mask.u8()[(2 * y + 1) * 40 + 2 * x + 1] >= 128 ? 1 : 0) << x << "," << y;
  EXPECT_EQ(meta_of(r)["mask"]["original_width"], 40);

  // Without --mask-classes a threshold names the one class "foreground".
  mo.classes.clear();
  EXPECT_EQ(meta_of(ingest_with_masks({a}, mo, IngestOptions{}).front())["classes"], json({"background", "foreground"}));
}

TEST(IngestMaskFiles, LabelValuesAsTheyAreOrErrorsNamingTheFiles) {
  Tmp t;
  fs::create_directories(t.dir / "masks");
  cx::Image im = cx::Image::gray8(8, 6), labels = cx::Image::gray8(8, 6);
  for (std::size_t i = 0; i < labels.samples(); ++i) labels.u8()[i] = static_cast<std::uint8_t>(i % 3);
  const std::string a = write_png(t, "a.png", im), b = write_png(t, "b.png", im), c = write_png(t, "c.png", im),
                    d = write_png(t, "d.png", im);
  write_png(t, "masks/a_mask.png", labels);
  write_png(t, "masks/b_mask.png", cx::Image::gray8(8, 7));  // not the image's size
  write_png(t, "masks/c_mask.png", cx::Image::make(8, 6, 3, 8));
  MaskFileOptions mo;
  mo.dir = t.file("masks");
  json fields;
  // No threshold, no names: the values are the labels, unnamed.
  auto r = ingest_with_masks({a}, mo, IngestOptions{}, &fields).front();
  EXPECT_EQ(png_of(r, "mask.png").data, labels.data);
  EXPECT_FALSE(fields["mask.png"].contains("classes"));
  EXPECT_FALSE(meta_of(r).contains("classes"));
  EXPECT_TRUE(meta_of(r)["mask"]["threshold"].is_null());
  // Named values: 0..2 pass with two names, not with one.
  mo.classes = {"left", "right"};
  EXPECT_EQ(meta_of(ingest_with_masks({a}, mo, IngestOptions{}).front())["mask"]["labels"]["2"], "right");
  mo.classes = {"lung"};
  EXPECT_NE(error_of([&] { ingest_with_masks({a}, mo, IngestOptions{}); })
                .find(t.file("masks/a_mask.png") + ": mask value 2 at (2, 0) is not one of 0..1"),
            std::string::npos);
  mo.classes.clear();
  EXPECT_EQ(error_of([&] { ingest_with_masks({b}, mo, IngestOptions{}); }),
            b + ": the image is 8x6 but its mask " + t.file("masks/b_mask.png") + " is 8x7");
  EXPECT_EQ(error_of([&] { ingest_with_masks({c}, mo, IngestOptions{}); }),
            t.file("masks/c_mask.png") +
                ": mask is RGB: label values must be 8-bit gray (or binarise it with --mask-threshold)");
  const std::string m = t.file("masks/");
  EXPECT_EQ(error_of([&] { ingest_with_masks({d}, mo, IngestOptions{}); }),
            d + ": no mask file (tried " + m + "d_mask.png, " + m + "d.mask.png, " + m + "d.png)");
  // An RGB mask is binarised through Pillow's "L" weights with a threshold.
  mo.threshold = 1;
  EXPECT_EQ(png_of(ingest_with_masks({c}, mo, IngestOptions{}).front(), "mask.png").data, cx::Image::gray8(8, 6).data);
  // Usage: two names with a threshold; a dataset with its own masks.
  mo.classes = {"a", "b"};
  EXPECT_THROW(with_mask_files(open_files({a}), mo), cx::UsageError);
  struct Masked : ItemSource {
    bool next(IngestItem&) override { return false; }
    std::string dataset() const override { return "chexmask"; }
    bool has_masks() const override { return true; }
  };
  mo.classes.clear();
  EXPECT_THROW(with_mask_files(std::make_unique<Masked>(), mo), cx::UsageError);
}

TEST(Ingest, DicomHeaderFillsViewSexAgeAndSpacing) {
  const char* env = std::getenv("CX_SHARED");
  std::string path = std::string(env && *env ? env : CX_SHARED_DIR) + "/samples/siim/siim_cr_jpeg_baseline.dcm";
  if (!fs::exists(path)) GTEST_SKIP() << "sample not found: " << path;
  IngestOptions o;
  o.size = 256;
  auto r = ingest_item(item_for(path), o);
  json m = meta_of(r);
  EXPECT_EQ(r.view, "PA");
  EXPECT_EQ(m["view"], "PA");
  EXPECT_EQ(m["sex"], "M");
  EXPECT_EQ(m["age"], 62);  // "62" without the AS unit, as this file writes it
  // PixelSpacing 0.168 mm at 1024 -> 0.672 mm at 256
  EXPECT_NEAR(m["image"]["pixel_spacing"][0].get<double>(), 0.672, 1e-12);
  EXPECT_EQ(m["image"]["pixel_spacing_source"], "dicom");
  EXPECT_EQ(m["intensity"]["source"], "dicom");
  EXPECT_TRUE(m.contains("dicom"));
}

TEST(Ingest, ErrorsNameTheFileAndTheRow) {
  Tmp t;
  IngestItem it = item_for(t.file("missing.png"));
  it.origin = "train.csv:12";
  try {
    ingest_item(it, IngestOptions{});
    FAIL() << "no error";
  } catch (const cx::Error& e) {
    EXPECT_EQ(std::string(e.what()), t.file("missing.png") + ": cannot open: No such file or directory (row train.csv:12)");
  }
  std::ofstream(t.file("text.dcm")) << "plain text, not DICOM";
  EXPECT_THROW(ingest_item(item_for(t.file("text.dcm")), IngestOptions{}), cx::Error);
}

TEST(RunOrdered, KeepsPullOrderAndBoundsWhatIsInFlight) {
  const int n = 300;
  const std::size_t window = 6;
  int pulled = 0, sunk = 0;
  std::size_t max_in_flight = 0;
  std::vector<std::string> order;
  std::atomic<int> concurrent{0}, max_concurrent{0};
  run_ordered(
      3, window,
      [&](IngestItem& it) {
        if (pulled == n) return false;
        it.key = std::to_string(pulled++);
        max_in_flight = std::max<std::size_t>(max_in_flight, pulled - sunk);
        return true;
      },
      [&](const IngestItem& it) {
        int now = ++concurrent;
        int prev = max_concurrent.load();
        while (now > prev && !max_concurrent.compare_exchange_weak(prev, now)) {
        }
        // Later items often finish first: reordering is what run_ordered must undo.
        std::this_thread::sleep_for(std::chrono::microseconds((std::hash<std::string>{}(it.key) % 7) * 150));
        --concurrent;
        IngestResult r;
        r.record.key = it.key;
        if (std::stoi(it.key) % 50 == 49) throw cx::Error(it.key + ": bad");
        return r;
      },
      [&](Outcome& o) {
        ++sunk;
        order.push_back(o.error.empty() ? o.result->record.key : "E" + o.item.key);
      });
  ASSERT_EQ(order.size(), static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) EXPECT_EQ(order[i], (i % 50 == 49 ? "E" : "") + std::to_string(i));
  EXPECT_LE(max_in_flight, window);
  EXPECT_GE(max_concurrent.load(), 2);  // work really ran in parallel
  EXPECT_LE(max_concurrent.load(), 3);
}

TEST(RunOrdered, SinkAndPullErrorsStopTheRun) {
  int pulled = 0;
  auto pull = [&](IngestItem& it) {
    if (pulled == 1000) return false;
    it.key = std::to_string(pulled++);
    return true;
  };
  auto work = [](const IngestItem& it) {
    IngestResult r;
    r.record.key = it.key;
    return r;
  };
  EXPECT_THROW(run_ordered(2, 4, pull, work,
                           [](Outcome& o) {
                             if (o.item.key == "10") throw cx::Error("first bad input");
                           }),
               cx::Error);
  EXPECT_LT(pulled, 20);  // stopped soon after the failure, not after reading everything
  int n = 0;
  EXPECT_THROW(run_ordered(
                   2, 4,
                   [&](IngestItem& it) {
                     if (++n == 5) throw cx::Error("labels.csv:6: bad cell");
                     it.key = std::to_string(n);
                     return true;
                   },
                   work, [](Outcome&) {}),
               cx::Error);
}
