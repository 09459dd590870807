// lib/cx/image/preprocess: Hugging Face BitImageProcessor and CXformer preprocessing.
// References:
//  - ../shared/fixtures/hf/preproc: every step of the slow BitImageProcessor (Pillow 9.4) on three
//    PNGs (8-bit gray, 16-bit gray, RGB). uint8 steps must be exact; pixel_values within 1e-5.
//  - Pillow at test time (Debian's /usr/bin/python3): convert("L"), the 16-bit clamps, a
//    transcription of transformers' center_crop (with its zero padding), and the CXformer pipeline
//    (ImageOps.equalize, bicubic resize, crop, ImageNet normalisation). Skipped with a message
//    when Python, PIL or numpy are missing.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cx/cli/error.hpp"
#include "cx/image/equalize.hpp"
#include "cx/image/preprocess.hpp"
#include "cx/image/resize.hpp"
#include "cx/io/safetensors.hpp"

namespace fs = std::filesystem;
using cx::Image;
using cx::image::Filter;
using cx::image::PreprocessConfig;

namespace {

fs::path shared_dir() {
  if (const char* e = std::getenv("CX_SHARED")) return e;
  return CX_SHARED_DIR;
}

fs::path preproc_dir() { return shared_dir() / "fixtures" / "hf" / "preproc"; }

// An HWC uint8 tensor of the fixture as an Image.
Image image_from_u8(const cx::io::TensorView& t) {
  EXPECT_EQ(t.dtype, cx::io::DType::u8);
  const int h = static_cast<int>(t.shape.at(0)), w = static_cast<int>(t.shape.at(1));
  const int c = t.shape.size() == 3 ? static_cast<int>(t.shape[2]) : 1;
  Image im = Image::make(w, h, c, 8);
  std::memcpy(im.data.data(), t.data, im.data.size());
  return im;
}

// The PNG's pixels as the fixture stored them: uint8, or float32 holding uint16 values.
Image source_image(const cx::io::SafetensorsFile& f, const std::string& name) {
  const auto& t = f.at("source_" + name);
  if (t.dtype == cx::io::DType::u8) return image_from_u8(t);
  EXPECT_EQ(t.dtype, cx::io::DType::f32);
  const int h = static_cast<int>(t.shape.at(0)), w = static_cast<int>(t.shape.at(1));
  Image im = Image::gray16(w, h);
  std::vector<float> v = t.copy().to_floats();
  for (std::size_t i = 0; i < v.size(); ++i) im.u16()[i] = static_cast<std::uint16_t>(v[i]);
  return im;
}

// Counts differing samples; the fixture's uint8 steps must match exactly.
std::size_t count_diff(const Image& a, const Image& b) {
  if (a.width != b.width || a.height != b.height || a.channels != b.channels || a.bits != b.bits)
    return static_cast<std::size_t>(-1);
  std::size_t n = 0;
  for (std::size_t i = 0; i < a.data.size(); ++i) n += a.data[i] != b.data[i];
  return n;
}

double max_abs_diff(const std::vector<float>& a, const float* b, std::size_t n) {
  if (a.size() != n) return INFINITY;
  double m = 0;
  for (std::size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(static_cast<double>(a[i]) - b[i]));
  return m;
}

class Fixture : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!fs::exists(preproc_dir() / "expected.safetensors"))
      GTEST_SKIP() << "fixture " << preproc_dir() << " absent";
  }
};

}  // namespace

TEST_F(Fixture, EveryStepMatchesBitImageProcessor) {
  auto f = cx::io::SafetensorsFile::open((preproc_dir() / "expected.safetensors").string());
  const PreprocessConfig cfg = PreprocessConfig::from_file((preproc_dir() / "preprocessor_config.json").string());
  for (const std::string name : {"gray8", "gray16", "rgb"}) {
    SCOPED_TRACE(name);
    const Image src = source_image(f, name);
    const Image rgb = cx::image::to_rgb_u8(src);
    EXPECT_EQ(count_diff(rgb, image_from_u8(f.at("rgb_u8_" + name))), 0u) << "convert('RGB')";
    const Image resized = cx::image::resize_shortest_edge(rgb, cfg.shortest_edge, cfg.resample);
    EXPECT_EQ(count_diff(resized, image_from_u8(f.at("resized_u8_" + name))), 0u) << "bicubic resize";
    const Image cropped = cx::image::center_crop(resized, cfg.crop_height, cfg.crop_width);
    EXPECT_EQ(count_diff(cropped, image_from_u8(f.at("cropped_u8_" + name))), 0u) << "center crop";

    const auto& expected = f.at("pixel_values_" + name);
    ASSERT_EQ(expected.dtype, cx::io::DType::f32);
    const std::vector<float> want = expected.copy().to_floats();
    // Same float32 operations in the same order as numpy: 1e-5 is the brief's bound, the
    // observed difference is 0.
    const cx::image::PixelValues step = cx::image::rescale_normalize(cropped, cfg);
    EXPECT_LE(max_abs_diff(step.data, want.data(), want.size()), 1e-5) << "rescale + normalize";
    const cx::image::PixelValues all = cx::image::preprocess(src, cfg);
    EXPECT_EQ(all.height, 56);
    EXPECT_EQ(all.width, 56);
    EXPECT_LE(max_abs_diff(all.data, want.data(), want.size()), 1e-5) << "whole pipeline";
    EXPECT_EQ(all.data, step.data) << "the gray shortcut must not change a bit";
  }
}

TEST_F(Fixture, ConfigFileIsRead) {
  const PreprocessConfig c = PreprocessConfig::from_file((preproc_dir() / "preprocessor_config.json").string());
  EXPECT_EQ(c.processor_type, "BitImageProcessor");
  EXPECT_EQ(c.pipeline, cx::image::Pipeline::hf);
  EXPECT_TRUE(c.do_resize);
  EXPECT_EQ(c.shortest_edge, 64);
  EXPECT_EQ(c.resample, Filter::bicubic);
  EXPECT_TRUE(c.do_center_crop);
  EXPECT_EQ(c.crop_height, 56);
  EXPECT_EQ(c.crop_width, 56);
  EXPECT_DOUBLE_EQ(c.rescale_factor, 0.00392156862745098);
  EXPECT_DOUBLE_EQ(c.image_mean[1], 0.456);
  EXPECT_DOUBLE_EQ(c.image_std[2], 0.225);
}

TEST(PreprocessConfig, FormsAndDefaults) {
  using nlohmann::json;
  // size as an int is a shortest edge for Bit/CLIP, a square for ViT (transformers' get_size_dict).
  PreprocessConfig c = PreprocessConfig::from_json(json{{"size", 256}, {"crop_size", 224}}, "x.json");
  EXPECT_EQ(c.shortest_edge, 256);
  EXPECT_EQ(c.crop_height, 224);
  EXPECT_EQ(c.crop_width, 224);
  c = PreprocessConfig::from_json(json{{"image_processor_type", "ViTImageProcessor"}, {"size", 384}}, "x.json");
  EXPECT_EQ(c.shortest_edge, 0);
  EXPECT_EQ(c.resize_height, 384);
  EXPECT_EQ(c.resize_width, 384);
  EXPECT_FALSE(c.do_center_crop);
  EXPECT_EQ(c.resample, Filter::bilinear);
  EXPECT_DOUBLE_EQ(c.image_mean[0], 0.5);
  c = PreprocessConfig::from_json(json{{"size", {{"height", 30}, {"width", 40}}}, {"image_mean", 0.25}}, "x.json");
  EXPECT_EQ(c.shortest_edge, 0);
  EXPECT_EQ(c.resize_height, 30);
  EXPECT_EQ(c.resize_width, 40);
  EXPECT_DOUBLE_EQ(c.image_mean[2], 0.25);
  // Missing fields take BitImageProcessor's defaults.
  c = PreprocessConfig::from_json(json::object(), "x.json");
  EXPECT_EQ(c.shortest_edge, 224);
  EXPECT_EQ(c.resample, Filter::bicubic);
  EXPECT_DOUBLE_EQ(c.image_mean[0], 0.48145466);
  const PreprocessConfig x = PreprocessConfig::cxformer(true);
  EXPECT_EQ(x.pipeline, cx::image::Pipeline::cxformer);
  EXPECT_EQ(x.shortest_edge, 518);
  EXPECT_EQ(x.crop_height, 518);
  EXPECT_TRUE(x.equalize);
  EXPECT_DOUBLE_EQ(x.image_std[0], 0.229);
  EXPECT_EQ(cx::image::pipeline_from_name("cxformer"), cx::image::Pipeline::cxformer);
  EXPECT_EQ(cx::image::pipeline_from_name("hf"), cx::image::Pipeline::hf);
}

TEST(PreprocessConfig, BadFieldsNameFileAndField) {
  using nlohmann::json;
  auto message = [](const json& j) {
    try {
      PreprocessConfig::from_json(j, "m/preprocessor_config.json");
    } catch (const cx::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(message(json{{"size", {{"longest_edge", 5}}}}).rfind("m/preprocessor_config.json: 'size' must hold", 0), 0u);
  EXPECT_NE(message(json{{"size", {{"shortest_edge", -3}}}}).find("'size.shortest_edge' must be a positive integer"),
            std::string::npos);
  EXPECT_NE(message(json{{"resample", 9}}).find("unknown Pillow resample filter 9"), std::string::npos);
  EXPECT_NE(message(json{{"do_resize", "yes"}}).find("'do_resize' must be true or false"), std::string::npos);
  EXPECT_NE(message(json{{"image_mean", {1, 2}}}).find("'image_mean' must be a number or a list of 3"),
            std::string::npos);
  EXPECT_NE(message(json{{"image_std", {0.2, 0, 0.2}}}).find("'image_std' holds a zero"), std::string::npos);
  EXPECT_NE(message(json::array()).find("must be a JSON object"), std::string::npos);
  EXPECT_THROW(cx::image::pipeline_from_name("timm"), cx::Error);

  const fs::path bad = fs::temp_directory_path() / ("cx_preproc_bad_" + std::to_string(::getpid()) + ".json");
  { std::ofstream(bad) << "{\"size\": "; }
  try {
    PreprocessConfig::from_file(bad.string());
    FAIL() << "no error";
  } catch (const cx::Error& e) {
    EXPECT_EQ(std::string(e.what()).rfind(bad.string() + ": not valid JSON", 0), 0u) << e.what();
  }
  fs::remove(bad);
  EXPECT_THROW(PreprocessConfig::from_file("/nonexistent/preprocessor_config.json"), cx::Error);
}

TEST(CenterCrop, OffsetsAndPaddingByHand) {
  // 3 rows x 5 cols, crop 4 x 4: top = (3-4)//2 = -1 (one zero row above), left = (5-4)//2 = 0.
  Image in = Image::gray8(5, 3);
  for (int i = 0; i < 15; ++i) in.u8()[i] = static_cast<std::uint8_t>(i + 1);
  Image out = cx::image::center_crop(in, 4, 4);
  const std::uint8_t want[16] = {0, 0, 0, 0, 1, 2, 3, 4, 6, 7, 8, 9, 11, 12, 13, 14};
  ASSERT_EQ(out.data.size(), 16u);
  for (int i = 0; i < 16; ++i) EXPECT_EQ(out.u8()[i], want[i]) << i;
  EXPECT_THROW(cx::image::center_crop(in, 0, 4), cx::Error);
}

TEST(Preprocess, RejectsWhatItCannotRead) {
  Image two = Image::make(4, 4, 2, 8);
  EXPECT_THROW(cx::image::preprocess(two, PreprocessConfig{}), cx::Error);
  EXPECT_THROW(cx::image::to_rgb_u8(Image{}), cx::Error);
  EXPECT_THROW(cx::image::rescale_normalize(Image::gray16(2, 2), PreprocessConfig{}), cx::Error);
}

// ---- against Pillow / a transcription of transformers at test time ----

namespace {

const char* kPython = "/usr/bin/python3";

const char* kReferenceScript = R"PY(
import sys, math, struct, zlib
import numpy as np
from PIL import Image, ImageOps

def hf_center_crop(image, size):
    # transformers.image_transforms.center_crop on a (C, H, W) array, transcribed.
    orig_height, orig_width = image.shape[-2:]
    crop_height, crop_width = size
    top = (orig_height - crop_height) // 2
    bottom = top + crop_height
    left = (orig_width - crop_width) // 2
    right = left + crop_width
    if top >= 0 and bottom <= orig_height and left >= 0 and right <= orig_width:
        return image[..., top:bottom, left:right]
    new_height = max(crop_height, orig_height)
    new_width = max(crop_width, orig_width)
    new_image = np.zeros_like(image, shape=image.shape[:-2] + (new_height, new_width))
    top_pad = math.ceil((new_height - orig_height) / 2)
    left_pad = math.ceil((new_width - orig_width) / 2)
    new_image[..., top_pad:top_pad + orig_height, left_pad:left_pad + orig_width] = image
    top += top_pad; bottom += top_pad; left += left_pad; right += left_pad
    return new_image[..., max(0, top):min(new_height, bottom), max(0, left):min(new_width, right)]

def png_rgb16(path, a):
    h, w, _ = a.shape
    raw = b"".join(b"\0" + a[y].astype(">u2").tobytes() for y in range(h))
    def chunk(t, d):
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xffffffff)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))

for line in open(sys.argv[1]):
    f = line.split()
    op, w, h, src, dst = f[0], int(f[1]), int(f[2]), f[3], f[4]
    if op == "rgb2l":
        im = Image.fromarray(np.fromfile(src, np.uint8).reshape(h, w, 3), "RGB")
        np.asarray(im.convert("L")).tofile(dst)
    elif op == "i2l":
        im = Image.fromarray(np.fromfile(src, "<u2").reshape(h, w).astype(np.int32), "I")
        np.asarray(im.convert("L")).tofile(dst)
    elif op == "rgb16":
        png_rgb16(dst + ".png", np.fromfile(src, "<u2").reshape(h, w, 3))
        im = Image.open(dst + ".png")
        np.asarray(im.convert("RGB")).tofile(dst)
    elif op == "crop":
        ch, cw = int(f[5]), int(f[6])
        a = np.fromfile(src, np.uint8).reshape(h, w, 3).transpose(2, 0, 1)
        np.ascontiguousarray(hf_center_crop(a, (ch, cw)).transpose(1, 2, 0)).tofile(dst)
    elif op == "cxformer":
        se, crop, eq = int(f[5]), int(f[6]), f[7] == "1"
        im = Image.fromarray(np.fromfile(src, np.uint8).reshape(h, w), "L")
        if eq:
            im = ImageOps.equalize(im)
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(se * long / short)
        size = (se, new_long) if w <= h else (new_long, se)
        a = np.asarray(im.resize(size, resample=Image.BICUBIC))[None]
        a = hf_center_crop(a, (crop, crop))
        a = np.repeat(a, 3, axis=0).transpose(1, 2, 0)
        x = (a.astype(np.float64) * (1 / 255)).astype(np.float32)
        x = (x - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
        np.ascontiguousarray(x.transpose(2, 0, 1)).astype("<f4").tofile(dst)
    else:
        raise SystemExit("unknown op " + op)
)PY";

struct Rng {
  std::uint64_t s;
  std::uint32_t next() {
    s = s * 6364136223846793005ULL + 1442695040888963407ULL;
    return static_cast<std::uint32_t>(s >> 33);
  }
};

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

class Reference : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string probe = std::string(kPython) + " -c 'import PIL, numpy' >/dev/null 2>&1";
    if (!fs::exists(kPython) || std::system(probe.c_str()) != 0)
      GTEST_SKIP() << "no /usr/bin/python3 with PIL and numpy: Pillow comparison skipped";
    dir_ = fs::temp_directory_path() / ("cx_preproc_test_" + std::to_string(::getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }
  std::string add(const std::string& op, int w, int h, const void* data, std::size_t n, const std::string& extra = "") {
    const std::string id = std::to_string(count_++);
    write_bytes(dir_ / (id + ".in"), data, n);
    manifest_ << op << ' ' << w << ' ' << h << ' ' << (dir_ / (id + ".in")).string() << ' '
              << (dir_ / (id + ".out")).string() << ' ' << extra << '\n';
    return (dir_ / (id + ".out")).string();
  }
  void run() {
    write_bytes(dir_ / "ref.py", kReferenceScript, std::strlen(kReferenceScript));
    const std::string m = manifest_.str();
    write_bytes(dir_ / "manifest.txt", m.data(), m.size());
    const std::string cmd = std::string(kPython) + " " + (dir_ / "ref.py").string() + " " +
                            (dir_ / "manifest.txt").string() + " 2>" + (dir_ / "err.txt").string();
    ASSERT_EQ(std::system(cmd.c_str()), 0) << read_bytes(dir_ / "err.txt");
  }
  fs::path dir_;
  std::ostringstream manifest_;
  int count_ = 0;
};

}  // namespace

TEST_F(Reference, ConversionsMatchPillow) {
  Rng rng{7};
  Image rgb = Image::make(61, 37, 3, 8);
  for (auto& v : rgb.data) v = static_cast<std::uint8_t>(rng.next());
  const std::string l_out = add("rgb2l", 61, 37, rgb.data.data(), rgb.data.size());
  Image g16 = Image::gray16(29, 31);
  for (std::size_t i = 0; i < g16.samples(); ++i)
    g16.u16()[i] = static_cast<std::uint16_t>(i % 3 == 0 ? rng.next() % 300 : rng.next());
  const std::string i_out = add("i2l", 29, 31, g16.data.data(), g16.data.size());
  Image rgb16 = Image::make(17, 13, 3, 16);
  for (std::size_t i = 0; i < rgb16.samples(); ++i) rgb16.u16()[i] = static_cast<std::uint16_t>(rng.next());
  const std::string rgb16_out = add("rgb16", 17, 13, rgb16.data.data(), rgb16.data.size());
  run();

  const Image gray = cx::image::to_gray_u8(rgb);
  EXPECT_EQ(std::string(gray.data.begin(), gray.data.end()), read_bytes(l_out)) << "RGB -> L";
  const Image clamped = cx::image::to_gray_u8(g16);
  EXPECT_EQ(std::string(clamped.data.begin(), clamped.data.end()), read_bytes(i_out)) << "I -> L clamps";
  const Image rgb8 = cx::image::to_rgb_u8(rgb16);
  EXPECT_EQ(std::string(rgb8.data.begin(), rgb8.data.end()), read_bytes(rgb16_out)) << "16-bit RGB PNG -> RGB";
}

TEST_F(Reference, CenterCropMatchesTransformers) {
  // Larger, smaller, odd overhangs, one axis smaller than the crop.
  struct C {
    int w, h, cw, ch;
  };
  const std::vector<C> cases = {{80, 64, 56, 56}, {64, 83, 56, 56}, {50, 51, 56, 56},
                                {51, 50, 56, 55}, {7, 90, 12, 40}, {90, 7, 40, 12}, {3, 3, 8, 9}};
  Rng rng{3};
  std::vector<std::pair<std::string, Image>> pending;
  for (const C& c : cases) {
    Image in = Image::make(c.w, c.h, 3, 8);
    for (auto& v : in.data) v = static_cast<std::uint8_t>(1 + rng.next() % 255);  // 0 marks padding
    const std::string out = add("crop", c.w, c.h, in.data.data(), in.data.size(),
                                std::to_string(c.ch) + " " + std::to_string(c.cw));
    pending.emplace_back(out, cx::image::center_crop(in, c.ch, c.cw));
  }
  run();
  for (std::size_t i = 0; i < pending.size(); ++i) {
    const Image& ours = pending[i].second;
    EXPECT_EQ(std::string(ours.data.begin(), ours.data.end()), read_bytes(pending[i].first))
        << cases[i].w << "x" << cases[i].h << " crop " << cases[i].cw << "x" << cases[i].ch;
  }
}

TEST_F(Reference, CxformerPipelineMatchesPillow) {
  // A radiograph-like gray image: smooth ramp with noise, so equalisation has work to do.
  const int w = 300, h = 241;
  Image in = Image::gray8(w, h);
  Rng rng{11};
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      in.u8()[y * w + x] = static_cast<std::uint8_t>(40 + (x + y) * 120 / (w + h) + rng.next() % 30);
  std::vector<std::pair<std::string, cx::image::PixelValues>> pending;
  for (bool eq : {false, true}) {
    PreprocessConfig c = PreprocessConfig::cxformer(eq);
    c.shortest_edge = 64;  // small sizes keep the test fast; the steps are the same as at 518
    c.crop_height = c.crop_width = 56;
    const std::string out = add("cxformer", w, h, in.data.data(), in.data.size(), "64 56 " + std::string(eq ? "1" : "0"));
    pending.emplace_back(out, cx::image::preprocess(in, c));
  }
  run();
  for (const auto& [path, pv] : pending) {
    const std::string ref = read_bytes(path);
    ASSERT_EQ(ref.size(), pv.data.size() * sizeof(float));
    // Bit-identical uint8 steps and the same float32 arithmetic as numpy: 1e-5 as for the fixture.
    EXPECT_LE(max_abs_diff(pv.data, reinterpret_cast<const float*>(ref.data()), pv.data.size()), 1e-5);
  }
  // Equalisation changes the result (the hook is really called).
  EXPECT_NE(pending[0].second.data, pending[1].second.data);
}
