// lib/cx/image/resize: Pillow-compatible resampling.
// The reference is Pillow itself: the test writes its inputs to a temporary folder, runs Debian's
// /usr/bin/python3 with PIL (9.4 on this system) once over all cases, and requires equality:
// exact for 8-bit ("L", "RGB"), 16-bit (Pillow "I" then clamped to 0..65535) and float ("F").
// Without /usr/bin/python3 + PIL + numpy these comparisons skip with a message.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "cx/cli/error.hpp"
#include "cx/image/resize.hpp"

namespace fs = std::filesystem;
using cx::Image;
using cx::image::Filter;

namespace {

const char* kPython = "/usr/bin/python3";

const char* kPillowScript = R"PY(
import sys
import numpy as np
from PIL import Image
for line in open(sys.argv[1]):
    mode, w, h, ow, oh, flt, src, dst = line.split()
    w, h, ow, oh, flt = int(w), int(h), int(ow), int(oh), int(flt)
    if mode == "L":
        im = Image.fromarray(np.fromfile(src, np.uint8).reshape(h, w), "L")
    elif mode == "RGB":
        im = Image.fromarray(np.fromfile(src, np.uint8).reshape(h, w, 3), "RGB")
    elif mode == "I":
        im = Image.fromarray(np.fromfile(src, "<u2").reshape(h, w).astype(np.int32), "I")
    elif mode == "F":
        im = Image.fromarray(np.fromfile(src, "<f4").reshape(h, w), "F")
    else:
        raise SystemExit("unknown mode " + mode)
    assert im.mode == ("I" if mode == "I" else mode), im.mode
    out = np.asarray(im.resize((ow, oh), resample=flt))
    if mode == "I":
        out = np.clip(out, 0, 65535).astype("<u2")
    elif mode == "F":
        out = out.astype("<f4")
    out.tofile(dst)
)PY";

struct Rng {
  std::uint64_t s;
  std::uint32_t next() {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<std::uint32_t>(s >> 33);
  }
};

// Noise, full-range steps and a ramp: steps drive the negative lobes of bicubic and lanczos into
// the clipping range, noise exercises every rounding path.
Image test_image(int w, int h, int channels, int bits, std::uint64_t seed) {
  Image im = Image::make(w, h, channels, bits);
  Rng rng{seed};
  const int maxv = bits == 8 ? 255 : 65535;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < channels; ++c) {
        int v;
        const int region = (x * 7 + y * 3 + c) / 11 % 4;
        if (region == 0) v = static_cast<int>(rng.next() % (maxv + 1));
        else if (region == 1) v = ((x / 3 + y / 2) % 2) ? maxv : 0;
        else if (region == 2) v = (x * maxv) / std::max(1, w - 1);
        else v = rng.next() % 2 ? maxv - static_cast<int>(rng.next() % 8) : static_cast<int>(rng.next() % 8);
        std::size_t i = (static_cast<std::size_t>(y) * w + x) * channels + c;
        if (bits == 8) im.u8()[i] = static_cast<std::uint8_t>(v);
        else im.u16()[i] = static_cast<std::uint16_t>(v);
      }
  return im;
}

void write_bytes(const fs::path& p, const void* data, std::size_t n) {
  std::ofstream f(p, std::ios::binary);
  f.write(static_cast<const char*>(data), static_cast<std::streamsize>(n));
}

std::string read_bytes(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

bool pillow_available() {
  if (!fs::exists(kPython)) return false;
  std::string cmd = std::string(kPython) + " -c 'import PIL, numpy' >/dev/null 2>&1";
  return std::system(cmd.c_str()) == 0;
}

struct Shape {
  int w, h, ow, oh;
};

// Scale factors the brief names: down x2, down x3.7, up x1.5, mixed non-square, one axis only,
// 1-pixel-wide strips, a single pixel, and the fixture's 300x240 -> 80x64.
const std::vector<Shape> kShapes = {
    {97, 83, 48, 41},  {200, 150, 54, 40}, {64, 48, 96, 72}, {37, 23, 61, 97}, {1, 40, 1, 17},
    {40, 1, 7, 1},     {1, 1, 5, 3},       {50, 30, 50, 71}, {50, 30, 13, 30}, {300, 240, 80, 64},
    {5, 300, 3, 11},   {23, 17, 22, 18}, {2, 2, 3, 3},
    // cx-ingest --size 512 of a Shenzhen PNG, and long rows with 9 to 25 taps: the 8-bit gray
    // pass takes 8 taps at a time, four outputs at once, the row's last outputs one at a time.
    {750, 730, 526, 512}, {1024, 6, 512, 3}, {999, 4, 131, 4}, {61, 3, 19, 3},
};

const std::vector<Filter> kFilters = {Filter::bicubic, Filter::bilinear, Filter::box,
                                      Filter::lanczos, Filter::hamming,  Filter::nearest};

class PillowReference : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!pillow_available()) GTEST_SKIP() << "no /usr/bin/python3 with PIL and numpy: Pillow comparison skipped";
    dir_ = fs::temp_directory_path() / ("cx_resize_test_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  // Queue one case; the input is written now, the output read after run().
  std::string add(const std::string& mode, int w, int h, int ow, int oh, int filter, const void* data,
                  std::size_t n) {
    const std::string id = std::to_string(count_++);
    const fs::path src = dir_ / (id + ".in"), dst = dir_ / (id + ".out");
    write_bytes(src, data, n);
    manifest_ << mode << ' ' << w << ' ' << h << ' ' << ow << ' ' << oh << ' ' << filter << ' '
              << src.string() << ' ' << dst.string() << '\n';
    return dst.string();
  }
  void run() {
    const fs::path script = dir_ / "ref.py", man = dir_ / "manifest.txt", err = dir_ / "stderr.txt";
    write_bytes(script, kPillowScript, std::strlen(kPillowScript));
    const std::string m = manifest_.str();
    write_bytes(man, m.data(), m.size());
    const std::string cmd = std::string(kPython) + " " + script.string() + " " + man.string() + " 2>" + err.string();
    ASSERT_EQ(std::system(cmd.c_str()), 0) << "Pillow reference failed: " << read_bytes(err);
  }
  fs::path dir_;
  std::ostringstream manifest_;
  int count_ = 0;
};

std::string describe(const std::string& mode, const Shape& s, Filter f) {
  return mode + " " + std::to_string(s.w) + "x" + std::to_string(s.h) + " -> " + std::to_string(s.ow) + "x" +
         std::to_string(s.oh) + " " + cx::image::filter_name(f);
}

}  // namespace

TEST_F(PillowReference, EightAndSixteenBitAreBitExact) {
  struct Pending {
    std::string what, out_path;
    Image ours;
  };
  std::vector<Pending> pending;
  std::uint64_t seed = 1;
  for (const Shape& s : kShapes) {
    for (Filter f : kFilters) {
      for (int variant = 0; variant < 3; ++variant) {
        const int channels = variant == 1 ? 3 : 1;
        const int bits = variant == 2 ? 16 : 8;
        const std::string mode = variant == 0 ? "L" : variant == 1 ? "RGB" : "I";
        Image in = test_image(s.w, s.h, channels, bits, seed++);
        std::string out = add(mode, s.w, s.h, s.ow, s.oh, static_cast<int>(f), in.data.data(), in.data.size());
        pending.push_back({describe(mode, s, f), out, cx::image::resize(in, s.ow, s.oh, f)});
      }
    }
  }
  run();
  int failed_cases = 0;
  for (const Pending& p : pending) {
    const std::string ref = read_bytes(p.out_path);
    ASSERT_EQ(ref.size(), p.ours.data.size()) << p.what;
    std::size_t diff = 0;
    int max_abs = 0;
    const std::size_t samples = p.ours.samples();
    for (std::size_t i = 0; i < samples; ++i) {
      int a, b;
      if (p.ours.bits == 8) {
        a = p.ours.u8()[i];
        b = static_cast<std::uint8_t>(ref[i]);
      } else {
        std::uint16_t r;
        std::memcpy(&r, ref.data() + 2 * i, 2);
        a = p.ours.u16()[i];
        b = r;
      }
      if (a != b) {
        ++diff;
        max_abs = std::max(max_abs, std::abs(a - b));
      }
    }
    if (diff) ++failed_cases;
    EXPECT_EQ(diff, 0u) << p.what << ": " << diff << " of " << samples << " samples differ, max |diff| " << max_abs;
  }
  EXPECT_EQ(failed_cases, 0) << "of " << pending.size() << " cases";
}

TEST_F(PillowReference, FloatPlaneMatchesModeF) {
  struct Pending {
    std::string what, out_path;
    std::vector<float> ours;
  };
  std::vector<Pending> pending;
  Rng rng{99};
  for (const Shape& s : kShapes) {
    std::vector<float> in(static_cast<std::size_t>(s.w) * s.h);
    for (float& v : in) v = static_cast<float>(static_cast<int>(rng.next() % 20001) - 10000) / 37.0f;
    for (Filter f : kFilters) {
      std::string out = add("F", s.w, s.h, s.ow, s.oh, static_cast<int>(f), in.data(), in.size() * sizeof(float));
      pending.push_back({describe("F", s, f), out, cx::image::resize_plane_f32(in, s.w, s.h, s.ow, s.oh, f)});
    }
  }
  run();
  for (const Pending& p : pending) {
    const std::string ref = read_bytes(p.out_path);
    ASSERT_EQ(ref.size(), p.ours.size() * sizeof(float)) << p.what;
    // Same double sums in the same order, rounded to float once per pass: bitwise equal.
    EXPECT_EQ(std::memcmp(ref.data(), p.ours.data(), ref.size()), 0) << p.what;
  }
}

TEST(Resize, ConstantImageStaysConstant) {
  // Weights are normalised to sum 1, so every filter reproduces a flat field exactly.
  for (Filter f : kFilters) {
    Image in = Image::make(31, 17, 3, 8);
    std::fill(in.data.begin(), in.data.end(), 200);
    for (auto [w, h] : std::vector<std::pair<int, int>>{{7, 5}, {64, 40}, {31, 3}, {1, 1}}) {
      Image out = cx::image::resize(in, w, h, f);
      ASSERT_EQ(out.width, w);
      ASSERT_EQ(out.height, h);
      for (std::uint8_t v : out.data) ASSERT_EQ(v, 200) << cx::image::filter_name(f) << " " << w << "x" << h;
    }
  }
}

TEST(Resize, BoxHalvingRoundsHalfUp) {
  // Two pixels into one with weights 1/2: (10 + 21) / 2 = 15.5 rounds to 16 in Pillow's fixed point.
  Image in = Image::gray8(2, 1);
  in.u8()[0] = 10;
  in.u8()[1] = 21;
  Image out = cx::image::resize(in, 1, 1, Filter::box);
  EXPECT_EQ(out.u8()[0], 16);
  Image in16 = Image::gray16(2, 1);
  in16.u16()[0] = 1000;
  in16.u16()[1] = 2001;
  EXPECT_EQ(cx::image::resize(in16, 1, 1, Filter::box).u16()[0], 1501);
}

TEST(Resize, SameSizeIsACopy) {
  Image in = test_image(13, 9, 1, 8, 5);
  Image out = cx::image::resize(in, 13, 9, Filter::lanczos);
  EXPECT_EQ(out.data, in.data);
}

TEST(Resize, SixteenBitOvershootIsClamped) {
  // A 0 / 65535 step: bicubic overshoots on both sides; Pillow "I" keeps -x and 65535+x, a uint16
  // image cannot, so the values clamp rather than wrap.
  Image in = Image::gray16(8, 1);
  for (int x = 0; x < 8; ++x) in.u16()[x] = x < 4 ? 0 : 65535;
  Image out = cx::image::resize(in, 13, 1, Filter::bicubic);
  bool saw_min = false, saw_max = false;
  for (int x = 0; x < 13; ++x) {
    saw_min |= out.u16()[x] == 0;
    saw_max |= out.u16()[x] == 65535;
  }
  EXPECT_TRUE(saw_min && saw_max);
  for (int x = 1; x < 13; ++x) EXPECT_GE(out.u16()[x], out.u16()[x - 1]) << "wrapped at " << x;
}

TEST(Resize, ShortestEdgeSizeTruncatesLikeHuggingFace) {
  auto s = cx::image::shortest_edge_size(300, 240, 64);  // the fixture's gray8 image
  EXPECT_EQ(s.width, 80);
  EXPECT_EQ(s.height, 64);
  s = cx::image::shortest_edge_size(200, 260, 64);  // 64 * 260 / 200 = 83.2
  EXPECT_EQ(s.width, 64);
  EXPECT_EQ(s.height, 83);
  s = cx::image::shortest_edge_size(3000, 2500, 518);  // 621.6 -> 621, not rounded
  EXPECT_EQ(s.width, 621);
  EXPECT_EQ(s.height, 518);
  s = cx::image::shortest_edge_size(64, 64, 56);
  EXPECT_EQ(s.width, 56);
  EXPECT_EQ(s.height, 56);
  Image big = cx::image::resize_shortest_edge(Image::gray8(30, 20), 10, Filter::bicubic);
  EXPECT_EQ(big.width, 15);
  EXPECT_EQ(big.height, 10);
}

TEST(Resize, RejectsBadArguments) {
  Image in = Image::gray8(4, 4);
  EXPECT_THROW(cx::image::resize(in, 0, 4, Filter::bicubic), cx::Error);
  EXPECT_THROW(cx::image::resize(Image{}, 4, 4, Filter::bicubic), cx::Error);
  Image two = Image::make(4, 4, 2, 8);
  EXPECT_THROW(cx::image::resize(two, 2, 2, Filter::bicubic), cx::Error);
  Image short_buffer = Image::gray8(4, 4);
  short_buffer.data.resize(3);
  EXPECT_THROW(cx::image::resize(short_buffer, 2, 2, Filter::bicubic), cx::Error);
  try {
    cx::image::filter_from_pillow(7, "model/preprocessor_config.json");
    FAIL() << "no throw";
  } catch (const cx::Error& e) {
    EXPECT_NE(std::string(e.what()).find("model/preprocessor_config.json: unknown Pillow resample filter 7"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(cx::image::filter_from_name("cubicspline"), cx::Error);
  EXPECT_EQ(cx::image::filter_from_name("area"), Filter::box);
  EXPECT_EQ(cx::image::filter_from_pillow(3), Filter::bicubic);
  EXPECT_EQ(cx::image::filter_from_pillow(1), Filter::lanczos);
}
