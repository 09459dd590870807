// lib/cx/image/window and equalize: the display pipeline worked by hand at the boundaries of
// PS3.3 C.11.2.1.2 (the standard's own examples), the real samples against the pydicom-based
// goldens (tests/data/make_dicom_goldens.py), and equalisation against Pillow's ImageOps.equalize.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cx/cli/error.hpp"
#include "cx/dicom/dicom.hpp"
#include "cx/image/equalize.hpp"
#include "cx/image/window.hpp"
#include "cx/io/sha256.hpp"

namespace fs = std::filesystem;
using cx::Image;
using cx::dicom::DicomImage;
using cx::image::render_dicom;
using cx::image::voi_transform;
using cx::image::VoiFunction;
using cx::image::WindowOptions;

namespace {

const nlohmann::json& goldens() {
  static const nlohmann::json g = [] {
    std::ifstream f(fs::path(CX_TEST_DATA_DIR) / "dicom_goldens.json");
    if (!f) throw std::runtime_error("tests/data/dicom_goldens.json missing: run tests/data/make_dicom_goldens.py");
    return nlohmann::json::parse(f);
  }();
  return g;
}

fs::path samples_dir() {
  const char* env = std::getenv("CX_SHARED");
  return fs::path(env && *env ? env : CX_SHARED_DIR) / "samples";
}

// A one-row monochrome image of the given stored values.
DicomImage row(std::vector<std::int32_t> v, const std::string& photometric = "MONOCHROME2") {
  DicomImage im;
  im.width = static_cast<int>(v.size());
  im.height = 1;
  im.bits_allocated = 16;
  im.bits_stored = 16;
  im.photometric = photometric;
  im.stored = std::move(v);
  return im;
}

std::vector<int> pixels(const Image& im) {
  std::vector<int> out;
  for (std::size_t i = 0; i < im.samples(); ++i) out.push_back(im.bits == 8 ? im.u8()[i] : im.u16()[i]);
  return out;
}

// The synthetic 8-bit image of make_dicom_goldens.py's synthetic8().
Image synthetic8(int w, int h) {
  Image im = Image::gray8(w, h);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const long v = ((static_cast<long>(x) * x + 3L * y * y + static_cast<long>(x) * y) * 7) % 97 + (x > 40 ? 150 : 0);
      im.u8()[y * w + x] = static_cast<std::uint8_t>(v);
    }
  return im;
}

void expect_table(const Image& before, const Image& after, const nlohmann::json& table) {
  std::vector<int> lut(256, -1);
  for (const auto& pair : table) lut[pair[0].get<int>()] = pair[1].get<int>();
  for (std::size_t i = 0; i < before.samples(); ++i) {
    ASSERT_EQ(after.u8()[i], lut[before.u8()[i]]) << "input value " << int(before.u8()[i]) << " at " << i;
  }
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The VOI functions: PS3.3 C.11.2.1.2.1's worked examples (output range 0..255).

TEST(VoiTransform, LinearStandardExampleFullRange) {
  // c=2048, w=4096: x <= 0 -> 0; x > 4095 -> 255; else ((x - 2047.5) / 4095 + 0.5) * 255.
  EXPECT_EQ(voi_transform(VoiFunction::linear, -5, 2048, 4096, 255), 0);
  EXPECT_EQ(voi_transform(VoiFunction::linear, 0, 2048, 4096, 255), 0);
  EXPECT_DOUBLE_EQ(voi_transform(VoiFunction::linear, 1, 2048, 4096, 255), ((1 - 2047.5) / 4095 + 0.5) * 255);
  EXPECT_NEAR(voi_transform(VoiFunction::linear, 1, 2048, 4096, 255), 0.0622710622, 1e-9);
  EXPECT_DOUBLE_EQ(voi_transform(VoiFunction::linear, 2048, 2048, 4096, 255), (0.5 / 4095 + 0.5) * 255);
  EXPECT_DOUBLE_EQ(voi_transform(VoiFunction::linear, 4095, 2048, 4096, 255), 255);
  EXPECT_EQ(voi_transform(VoiFunction::linear, 4096, 2048, 4096, 255), 255);
}

TEST(VoiTransform, LinearStandardExampleWidthOneIsAThreshold) {
  // c=2048, w=1: x <= 2047.5 -> 0, else 255.
  EXPECT_EQ(voi_transform(VoiFunction::linear, 2047, 2048, 1, 255), 0);
  EXPECT_EQ(voi_transform(VoiFunction::linear, 2047.5, 2048, 1, 255), 0);
  EXPECT_EQ(voi_transform(VoiFunction::linear, 2048, 2048, 1, 255), 255);
}

TEST(VoiTransform, LinearStandardExampleCenteredOnZero) {
  // c=0, w=100: x <= -50 -> 0; x > 49 -> 255; else ((x + 0.5) / 99 + 0.5) * 255.
  EXPECT_EQ(voi_transform(VoiFunction::linear, -50, 0, 100, 255), 0);
  EXPECT_NEAR(voi_transform(VoiFunction::linear, -49, 0, 100, 255), (-48.5 / 99 + 0.5) * 255, 1e-12);  // 2.5757...
  EXPECT_NEAR(voi_transform(VoiFunction::linear, -49, 0, 100, 255), 2.5757575757, 1e-9);
  EXPECT_DOUBLE_EQ(voi_transform(VoiFunction::linear, 49, 0, 100, 255), 255);
  EXPECT_EQ(voi_transform(VoiFunction::linear, 50, 0, 100, 255), 255);
}

TEST(VoiTransform, LinearExactAndSigmoid) {
  // C.11.2.1.3.2: x <= c - w/2 -> 0; x > c + w/2 -> max; else ((x - c) / w + 0.5) * max.
  EXPECT_EQ(voi_transform(VoiFunction::linear_exact, -50, 0, 100, 255), 0);
  EXPECT_DOUBLE_EQ(voi_transform(VoiFunction::linear_exact, 0, 0, 100, 255), 127.5);
  EXPECT_DOUBLE_EQ(voi_transform(VoiFunction::linear_exact, 25, 0, 100, 255), 191.25);
  EXPECT_DOUBLE_EQ(voi_transform(VoiFunction::linear_exact, 50, 0, 100, 255), 255);
  EXPECT_EQ(voi_transform(VoiFunction::linear_exact, 51, 0, 100, 255), 255);
  // C.11.2.1.3.1: max / (1 + exp(-4 (x - c) / w)).
  EXPECT_DOUBLE_EQ(voi_transform(VoiFunction::sigmoid, 100, 100, 40, 255), 127.5);
  EXPECT_NEAR(voi_transform(VoiFunction::sigmoid, 110, 100, 40, 255), 186.4199, 1e-4);  // 255/(1+e^-1)
  EXPECT_NEAR(voi_transform(VoiFunction::sigmoid, 90, 100, 40, 255), 68.5801, 1e-4);  // 255/(1+e)
  EXPECT_EQ(cx::image::parse_voi_function("LINEAR_EXACT"), VoiFunction::linear_exact);
  EXPECT_EQ(cx::image::parse_voi_function(""), VoiFunction::linear);
  EXPECT_FALSE(cx::image::parse_voi_function("GAMMA"));
}

// ---------------------------------------------------------------------------------------------
// render_dicom: modality, VOI source, rounding, inversion, depth.

TEST(RenderDicom, HeaderWindowRoundsHalfUp8And16Bit) {
  DicomImage im = row({0, 2047, 2048, 4095});
  im.windows = {{2048, 4096}};
  const auto r8 = render_dicom(im);
  // 2047 -> 127.469 -> 127; 2048 -> 127.531 -> 128.
  EXPECT_EQ(pixels(r8.image), (std::vector<int>{0, 127, 128, 255}));
  EXPECT_EQ(r8.applied["voi"]["source"], "header");
  EXPECT_EQ(r8.applied["voi"]["center"], 2048);
  EXPECT_EQ(r8.applied["voi"]["width"], 4096);
  EXPECT_EQ(r8.applied["voi"]["function"], "LINEAR");
  EXPECT_EQ(r8.applied["bits"], 8);
  EXPECT_EQ(r8.applied["inverted"], false);
  WindowOptions o16;
  o16.bits = 16;
  const auto r16 = render_dicom(im, o16);
  EXPECT_EQ(r16.image.bits, 16);
  // 2047 -> (0.5 - 0.5/4095) * 65535 = 32759.498 -> 32759; 2048 -> 32775.502 -> 32776.
  EXPECT_EQ(pixels(r16.image), (std::vector<int>{0, 32759, 32776, 65535}));
}

TEST(RenderDicom, Monochrome1IsInvertedAfterRounding) {
  DicomImage im = row({0, 2047, 2048, 4095}, "MONOCHROME1");
  im.windows = {{2048, 4096}};
  const auto r = render_dicom(im);
  EXPECT_EQ(pixels(r.image), (std::vector<int>{255, 128, 127, 0}));
  EXPECT_EQ(r.applied["inverted"], true);
}

TEST(RenderDicom, RescaleSlopeInterceptBeforeTheWindow) {
  // CT-like: HU = stored - 1024, soft-tissue window 40/400 (window bounds -160 .. 239).
  DicomImage im = row({824, 865, 1064, 1263, 1264});
  im.rescale_intercept = -1024;
  im.windows = {{40, 400}};
  const auto r = render_dicom(im);
  // HU -200 -> 0; -159 -> 0.639 -> 1; 40 -> 127.82 -> 128; 239 -> 255; 240 -> 255.
  EXPECT_EQ(pixels(r.image), (std::vector<int>{0, 1, 128, 255, 255}));
  EXPECT_EQ(r.applied["modality"]["source"], "rescale");
  EXPECT_EQ(r.applied["modality"]["intercept"], -1024);
}

TEST(RenderDicom, MinMaxFallbackMapsTheRangeExactly) {
  DicomImage im = row({100, 150, 200, 300});
  const auto r = render_dicom(im);
  // c = 200.5, w = 201: 100 -> 0, 150 -> 63.75 -> 64, 200 -> 127.5 -> 128, 300 -> 255.
  EXPECT_EQ(pixels(r.image), (std::vector<int>{0, 64, 128, 255}));
  EXPECT_EQ(r.applied["voi"]["source"], "minmax");
  EXPECT_EQ(r.applied["voi"]["center"], 200.5);
  EXPECT_EQ(r.applied["voi"]["width"], 201);
  // A negative slope turns the range around: stored 300 is the minimum.
  im.rescale_slope = -1;
  EXPECT_EQ(pixels(render_dicom(im).image), (std::vector<int>{255, 191, 128, 0}));
  // A flat image: width 1, everything at the bottom.
  EXPECT_EQ(pixels(render_dicom(row({7, 7, 7})).image), (std::vector<int>{0, 0, 0}));
}

TEST(RenderDicom, OverrideWindowWinsAndIsValidated) {
  DicomImage im = row({100, 150, 200, 300});
  im.windows = {{1000, 10}};
  WindowOptions o;
  o.window = std::make_pair(150.0, 101.0);
  const auto r = render_dicom(im, o);
  // bounds 99.5 .. 199.5: 100 -> 1.275 -> 1, 150 -> 128.78 -> 129 , 200 -> 255.
  EXPECT_EQ(pixels(r.image), (std::vector<int>{1, 129, 255, 255}));
  EXPECT_EQ(r.applied["voi"]["source"], "override");
  o.window = std::make_pair(150.0, 0.5);
  EXPECT_THROW(render_dicom(im, o), cx::UsageError);  // LINEAR needs w >= 1
  o.override_function = VoiFunction::linear_exact;
  EXPECT_NO_THROW(render_dicom(im, o));
  WindowOptions bad;
  bad.bits = 12;
  EXPECT_THROW(render_dicom(im, bad), cx::UsageError);
}

TEST(RenderDicom, UnusableHeaderWindowFallsThrough) {
  DicomImage im = row({100, 300});
  im.windows = {{200, 0}};  // width 0 is not a LINEAR window
  const auto r = render_dicom(im);
  EXPECT_EQ(r.applied["voi"]["source"], "minmax");
  EXPECT_EQ(pixels(r.image), (std::vector<int>{0, 255}));
  ASSERT_EQ(r.applied["notes"].size(), 1u);
  EXPECT_NE(r.applied["notes"][0].get<std::string>().find("unusable width"), std::string::npos);
  // An unknown VOI LUT Function falls back to LINEAR, and says so.
  im.windows = {{200.5, 201}};  // LINEAR: x <= 100 -> 0, x = 300 -> 255
  im.voi_lut_function = "GAMMA";
  const auto g = render_dicom(im);
  EXPECT_EQ(g.applied["voi"]["function"], "LINEAR");
  EXPECT_EQ(pixels(g.image), (std::vector<int>{0, 255}));
  ASSERT_EQ(g.applied["notes"].size(), 1u);
}

TEST(RenderDicom, VoiLutSequenceAndPrecedence) {
  DicomImage im = row({0, 2, 3, 4, 5, 9});
  cx::dicom::Lut lut;
  lut.first_mapped = 2;
  lut.bits = 10;
  lut.data = {0, 100, 1023, 512};
  im.voi_lut = lut;
  const auto r = render_dicom(im);
  // Inputs clamp to the table ends; entries scale by 255/1023: 100 -> 24.93 -> 25, 512 -> 127.62 -> 128.
  EXPECT_EQ(pixels(r.image), (std::vector<int>{0, 0, 25, 255, 128, 128}));
  EXPECT_EQ(r.applied["voi"]["source"], "voi-lut");
  EXPECT_EQ(r.applied["voi"]["bits"], 10);
  // With a header window too, the window comes first unless prefer_voi_lut.
  im.windows = {{5, 4}};
  EXPECT_EQ(render_dicom(im).applied["voi"]["source"], "header");
  WindowOptions o;
  o.prefer_voi_lut = true;
  EXPECT_EQ(render_dicom(im, o).applied["voi"]["source"], "voi-lut");
  // A descriptor that understates the data's bits (8 for entries up to 1000) uses the data's.
  im.windows.clear();
  im.voi_lut->bits = 8;
  im.voi_lut->data = {0, 1000};
  EXPECT_EQ(render_dicom(im).applied["voi"]["bits"], 10);
}

TEST(RenderDicom, ModalityLutSequenceReplacesRescale) {
  DicomImage im = row({-2, -1, 0, 1, 2});
  im.is_signed = true;
  im.rescale_slope = 100;  // ignored: the sequence wins
  cx::dicom::Lut lut;
  lut.first_mapped = -1;
  lut.data = {10, 20, 30};
  im.modality_lut = lut;
  const auto r = render_dicom(im);
  // Modality values 10 10 20 30 30; min-max 10..30.
  EXPECT_EQ(pixels(r.image), (std::vector<int>{0, 0, 128, 255, 255}));
  EXPECT_EQ(r.applied["modality"]["source"], "modality-lut");
  EXPECT_EQ(r.applied["voi"]["min"], 10);
  EXPECT_EQ(r.applied["voi"]["max"], 30);
}

TEST(RenderDicom, RgbIsRescaledOnly) {
  DicomImage im;
  im.width = 2;
  im.height = 1;
  im.samples_per_pixel = 3;
  im.bits_stored = 12;
  im.bits_allocated = 16;
  im.photometric = "RGB";
  im.stored = {0, 4095, 2048, 1, 2, 3};
  const auto r = render_dicom(im);
  EXPECT_EQ(r.image.channels, 3);
  // x * 255 / 4095: 2048 -> 127.53 -> 128.
  EXPECT_EQ(pixels(r.image), (std::vector<int>{0, 255, 128, 0, 0, 0}));
  EXPECT_EQ(r.applied["color"], true);
}

// ---------------------------------------------------------------------------------------------
// The real samples: the pydicom reference pipeline, exactly (stored values are exact, the
// arithmetic is the same IEEE double expression in the same order).

TEST(RenderDicom, RealSamplesMatchReference) {
  if (!fs::exists(samples_dir())) GTEST_SKIP() << samples_dir() << " not found (shared samples absent)";
  for (const auto& g : goldens()["files"]) {
    const fs::path path = samples_dir() / g["path"].get<std::string>();
    SCOPED_TRACE(path.string());
    if (!fs::exists(path)) {
      ADD_FAILURE() << "missing sample";
      continue;
    }
    const DicomImage im = cx::dicom::read_dicom(path.string());
    for (int bits : {8, 16}) {
      const auto& want = g["render"][std::to_string(bits)];
      WindowOptions o;
      o.bits = bits;
      const auto r = render_dicom(im, o);
      EXPECT_EQ(r.applied["voi"]["source"], want["source"]);
      EXPECT_EQ(r.applied["voi"]["center"].get<double>(), want["center"].get<double>());
      EXPECT_EQ(r.applied["voi"]["width"].get<double>(), want["width"].get<double>());
      EXPECT_EQ(r.applied["inverted"], want["inverted"]);
      for (const auto& p : want["pixels"]) {
        const std::size_t i = p[0].get<std::size_t>() * im.width + p[1].get<std::size_t>();
        EXPECT_EQ(bits == 8 ? r.image.u8()[i] : r.image.u16()[i], p[2].get<int>()) << bits << "-bit pixel " << p;
      }
      // 16-bit samples are hashed as little-endian bytes, the host order here (x86-64/arm64).
      EXPECT_EQ(cx::io::sha256_hex(r.image.data.data(), r.image.data.size()), want["sha256"].get<std::string>())
          << bits << "-bit render";
    }
    // Equalisation of the 8-bit render, against Pillow.
    Image eq = render_dicom(im).image;
    const Image before = eq;
    cx::image::equalize(eq);
    expect_table(before, eq, g["equalize8"]["table"]);
    EXPECT_EQ(cx::io::sha256_hex(eq.data.data(), eq.data.size()), g["equalize8"]["sha256"].get<std::string>());
  }
}

// ---------------------------------------------------------------------------------------------
// Equalisation.

TEST(Equalize, SyntheticMatchesPillow) {
  const auto& g = goldens()["equalize_synthetic"];
  Image im = synthetic8(g["width"], g["height"]);
  const Image before = im;
  cx::image::equalize(im);
  expect_table(before, im, g["table"]);
  EXPECT_EQ(cx::io::sha256_hex(im.data.data(), im.data.size()), g["sha256"].get<std::string>());
}

TEST(Equalize, FewPixelsLeaveTheImageUnchangedAsPillowDoes) {
  const auto& g = goldens()["equalize_tiny"];  // 100 pixels: Pillow's integer step is 0
  Image im = synthetic8(g["width"], g["height"]);
  const Image before = im;
  cx::image::equalize(im);
  EXPECT_EQ(im.data, before.data);
  expect_table(before, im, g["table"]);
  Image flat = Image::gray8(30, 30);
  std::fill(flat.data.begin(), flat.data.end(), 77);
  cx::image::equalize(flat);
  EXPECT_EQ(flat.u8()[0], 77);  // one value used: unchanged
}

TEST(Equalize, RgbIsPerChannel) {
  Image rgb = Image::make(64, 48, 3, 8);
  const Image gray = synthetic8(64, 48);
  for (std::size_t i = 0; i < gray.samples(); ++i) {
    rgb.u8()[i * 3 + 0] = gray.u8()[i];
    rgb.u8()[i * 3 + 1] = 9;
    rgb.u8()[i * 3 + 2] = static_cast<std::uint8_t>(255 - gray.u8()[i]);
  }
  Image g0 = gray;
  cx::image::equalize(g0);
  Image g2 = gray;
  for (std::size_t i = 0; i < g2.samples(); ++i) g2.u8()[i] = static_cast<std::uint8_t>(255 - gray.u8()[i]);
  cx::image::equalize(g2);
  cx::image::equalize(rgb);
  for (std::size_t i = 0; i < gray.samples(); ++i) {
    ASSERT_EQ(rgb.u8()[i * 3 + 0], g0.u8()[i]);
    ASSERT_EQ(rgb.u8()[i * 3 + 1], 9);
    ASSERT_EQ(rgb.u8()[i * 3 + 2], g2.u8()[i]);
  }
}

TEST(Equalize, SixteenBitHandWorked) {
  // h[0]=2, h[1000]=1, h[5000]=1; step = (4 - 1) / 65535.
  // lut[0] = floor(0.5) = 0; lut[1000] = floor(0.5 + 2 * 65535 / 3) = 43690;
  // lut[5000] = floor(0.5 + 65535) clipped to 65535.
  Image im = Image::gray16(4, 1);
  const std::uint16_t v[] = {0, 0, 1000, 5000};
  std::copy(v, v + 4, im.u16());
  cx::image::equalize(im);
  EXPECT_EQ(pixels(im), (std::vector<int>{0, 0, 43690, 65535}));
  // Monotone and spread over the range on a larger ramp with a skewed histogram.
  Image ramp = Image::gray16(300, 200);
  for (std::size_t i = 0; i < ramp.samples(); ++i) ramp.u16()[i] = static_cast<std::uint16_t>((i * i) % 40000);
  Image out = ramp;
  cx::image::equalize(out);
  std::vector<int> lut(65536, -1);
  for (std::size_t i = 0; i < ramp.samples(); ++i) lut[ramp.u16()[i]] = out.u16()[i];
  int prev = -1;
  for (int x = 0; x < 65536; ++x) {
    if (lut[x] < 0) continue;
    ASSERT_GE(lut[x], prev) << "not monotone at " << x;
    prev = lut[x];
  }
  EXPECT_EQ(prev, 65535);
}
