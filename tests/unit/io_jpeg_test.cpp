// lib/cx/io/jpeg and image_file: JPEG decoding against Pillow (files made and decoded by Pillow at test
// time, plus the real radiograph inside the SIIM DICOM sample, extracted by pydicom), truncated and
// unsupported files refused by name, and PNG/JPEG sniffing.
//
// Pixels must equal Pillow's exactly: Debian's Pillow links the same libjpeg-turbo shared library
// (checked below by version) and decodes with the same settings (islow integer IDCT, fancy
// upsampling, no draft mode); that decoding is deterministic integer arithmetic, SIMD or not.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include <jpeglib.h>

#include "cx/cli/error.hpp"
#include "cx/io/image_file.hpp"
#include "cx/io/jpeg.hpp"
#include "cx/io/npy.hpp"
#include "cx/io/png.hpp"
#include "io_python_helper.hpp"

namespace fs = std::filesystem;

namespace {

fs::path shared_dir() {
  if (const char* e = std::getenv("CX_SHARED")) return e;
  return CX_SHARED_DIR;
}

fs::path temp_dir() {
  fs::path d = fs::temp_directory_path() / ("cx_jpeg_test_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

// A smooth image with edges: JPEG-friendly but not trivial.
cx::Image test_image(int w, int h, int channels) {
  cx::Image im = cx::Image::make(w, h, channels, 8);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x)
      for (int c = 0; c < channels; ++c) {
        double v = 128 + 90 * std::sin(0.07 * x + 0.5 * c) * std::cos(0.05 * y) + ((x / 16 + y / 16) % 2 ? 20 : -20);
        im.data[(static_cast<std::size_t>(y) * w + x) * channels + c] =
            static_cast<std::uint8_t>(std::lround(std::min(255.0, std::max(0.0, v))));
      }
  return im;
}

// Python writes each NAME.jpg and Pillow's decoding of it as NAME.npy; ours.jpg (written by the test
// first) is decoded too; siim.jpg is the JPEG frame of the SIIM sample, when pydicom is there.
constexpr const char* kJpegMaker = R"PY(
import os, sys
try:
    import numpy as np
    from PIL import Image, features
except ImportError:
    sys.exit(77)
d, dcm = sys.argv[1], sys.argv[2]
print(features.version('libjpeg_turbo') or 'none')
y, x = np.mgrid[0:61, 0:83]
base = 128 + 90 * np.sin(0.07 * x) * np.cos(0.05 * y) + np.where(((x // 16) + (y // 16)) % 2 == 1, 20, -20)
gray = np.clip(np.round(base), 0, 255).astype(np.uint8)
rgb = np.stack([gray, np.roll(gray, 7, axis=1), 255 - gray], axis=2)

def ref(name):
    np.save(os.path.join(d, name + '.npy'), np.asarray(Image.open(os.path.join(d, name + '.jpg'))))

def save(name, im, **kw):
    im.save(os.path.join(d, name + '.jpg'), **kw)
    ref(name)

save('gray_baseline', Image.fromarray(gray, 'L'), quality=85)
save('rgb_420', Image.fromarray(rgb, 'RGB'), quality=85)
save('rgb_444', Image.fromarray(rgb, 'RGB'), quality=92, subsampling=0)
save('rgb_422', Image.fromarray(rgb, 'RGB'), quality=75, subsampling=1)
save('rgb_progressive', Image.fromarray(rgb, 'RGB'), quality=80, progressive=True)
save('gray_progressive', Image.fromarray(gray, 'L'), quality=80, progressive=True)
save('rgb_optimized_restart', Image.fromarray(rgb, 'RGB'), quality=70, optimize=True, restart_marker_rows=1)
Image.fromarray(np.stack([gray, gray, gray, gray], axis=2), 'CMYK').save(os.path.join(d, 'cmyk.jpg'))
if os.path.exists(os.path.join(d, 'ours.jpg')):
    ref('ours')
try:
    import pydicom
    from pydicom.encaps import generate_pixel_data_frame
    if os.path.exists(dcm):
        ds = pydicom.dcmread(dcm)
        frame = next(generate_pixel_data_frame(ds.PixelData))
        open(os.path.join(d, 'siim.jpg'), 'wb').write(frame)
        ref('siim')
except ImportError:
    pass
)PY";

struct Made {
  fs::path dir;
  std::string pillow_turbo_version;
  std::string why;
};

const Made& made() {
  static Made m;
  static bool done = false;
  if (!done) {
    done = true;
    fs::path d = temp_dir() / "made";
    fs::create_directories(d);
    std::ofstream(d / "ours.jpg", std::ios::binary) << cx::io::encode_jpeg(test_image(70, 45, 3), 88);
    auto r = cx_test::run_python(kJpegMaker, {d.string(), (shared_dir() / "samples/siim/siim_cr_jpeg_baseline.dcm").string()});
    if (!r.ran) m.why = r.why_not;
    else if (r.status != 0) m.why = "python JPEG maker failed: " + r.output;
    else {
      m.dir = d;
      m.pillow_turbo_version = r.output.substr(0, r.output.find('\n'));
    }
  }
  return m;
}

#define NEED_PYTHON(m)                                                   \
  const Made& m = made();                                                \
  if (m.dir.empty() && m.why.find("failed") != std::string::npos) FAIL() << m.why; \
  if (m.dir.empty()) GTEST_SKIP() << m.why

std::string our_turbo_version() {
  int v = LIBJPEG_TURBO_VERSION_NUMBER;  // e.g. 2001005
  return std::to_string(v / 1000000) + "." + std::to_string(v / 1000 % 1000) + "." + std::to_string(v % 1000);
}

void expect_same_as_pillow(const cx::Image& im, const fs::path& npy, int channels) {
  cx::io::NdArray ref = cx::io::read_npy(slurp(npy), npy.string());
  ASSERT_EQ(ref.dtype, cx::io::DType::u8);
  ASSERT_GE(ref.shape.size(), 2u);
  EXPECT_EQ(im.height, ref.shape[0]);
  EXPECT_EQ(im.width, ref.shape[1]);
  EXPECT_EQ(im.channels, channels);
  EXPECT_EQ(ref.shape.size() == 3 ? ref.shape[2] : 1, channels);
  ASSERT_EQ(im.data.size(), ref.data.size());
  std::size_t differ = 0;
  int worst = 0;
  for (std::size_t i = 0; i < im.data.size(); ++i) {
    int dlt = std::abs(int(im.data[i]) - int(ref.data[i]));
    differ += dlt != 0;
    worst = std::max(worst, dlt);
  }
  EXPECT_EQ(differ, 0u) << npy << ": samples differ from Pillow, worst by " << worst;
}

std::string error_of(const std::string& bytes, const std::string& where = "view.jpg") {
  try {
    cx::io::decode_jpeg(bytes, where);
  } catch (const cx::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Jpeg, SameLibjpegTurboAsPillow) {
  NEED_PYTHON(m);
  EXPECT_EQ(m.pillow_turbo_version, our_turbo_version())
      << "Pillow's libjpeg-turbo differs from ours: exact equality below may not hold";
}

TEST(Jpeg, DecodesLikePillow) {
  NEED_PYTHON(m);
  struct Case {
    const char* name;
    int channels;
  };
  for (Case c : {Case{"gray_baseline", 1}, Case{"rgb_420", 3}, Case{"rgb_444", 3}, Case{"rgb_422", 3},
                 Case{"rgb_progressive", 3}, Case{"gray_progressive", 1}, Case{"rgb_optimized_restart", 3},
                 Case{"ours", 3}}) {
    SCOPED_TRACE(c.name);
    cx::Image im = cx::io::read_jpeg_file((m.dir / (std::string(c.name) + ".jpg")).string());
    EXPECT_EQ(im.bits, 8);
    expect_same_as_pillow(im, m.dir / (std::string(c.name) + ".npy"), c.channels);
  }
}

TEST(Jpeg, RealRadiographFromTheSiimDicom) {
  NEED_PYTHON(m);
  if (!fs::exists(m.dir / "siim.jpg")) GTEST_SKIP() << "SIIM sample or pydicom not available";
  cx::Image im = cx::io::read_jpeg_file((m.dir / "siim.jpg").string());
  EXPECT_EQ(im.width, 1024);
  EXPECT_EQ(im.height, 1024);
  expect_same_as_pillow(im, m.dir / "siim.npy", 1);
}

TEST(Jpeg, CmykRefusedByName) {
  NEED_PYTHON(m);
  EXPECT_EQ(error_of(slurp(m.dir / "cmyk.jpg"), "cmyk.jpg"), "cmyk.jpg: CMYK JPEG is not supported (only gray and RGB/YCbCr)");
}

TEST(Jpeg, EncodeRoundTripIsCloseAndDeterministic) {
  for (int channels : {1, 3}) {
    cx::Image im = test_image(64, 48, channels);
    std::string a = cx::io::encode_jpeg(im, 95);
    EXPECT_EQ(a, cx::io::encode_jpeg(im, 95));
    cx::Image back = cx::io::decode_jpeg(a, "rt.jpg");
    ASSERT_EQ(back.width, 64);
    ASSERT_EQ(back.height, 48);
    ASSERT_EQ(back.channels, channels);
    double sum = 0;
    for (std::size_t i = 0; i < im.data.size(); ++i) sum += std::abs(int(im.data[i]) - int(back.data[i]));
    // Lossy: at quality 95 this smooth image comes back within ~1-2 levels on average (4:2:0 chroma
    // costs RGB a little more); 3 leaves margin while catching a swapped channel or a shifted row.
    EXPECT_LT(sum / im.data.size(), 3.0) << channels << " channels";
  }
  EXPECT_THROW(cx::io::encode_jpeg(cx::Image::gray16(4, 4), 90), cx::Error);
  EXPECT_THROW(cx::io::encode_jpeg(cx::Image::gray8(4, 4), 0), cx::Error);
}

TEST(JpegBroken, TruncatedAnywhere) {
  for (int channels : {1, 3}) {
    std::string jpg = cx::io::encode_jpeg(test_image(64, 48, channels), 90);
    ASSERT_EQ(jpg.substr(jpg.size() - 2), "\xFF\xD9");
    for (std::size_t cut : {std::size_t{3}, std::size_t{4}, std::size_t{30}, std::size_t{300}, jpg.size() / 2,
                            jpg.size() - 10, jpg.size() - 2}) {
      std::string got = error_of(jpg.substr(0, cut));
      EXPECT_EQ(got, "view.jpg: truncated JPEG: the file ends before its image data does") << "cut at " << cut;
      EXPECT_THROW(cx::io::decode_jpeg(jpg.substr(0, cut), "x"), cx::TruncatedError) << "cut at " << cut;
    }
    EXPECT_EQ(error_of(jpg.substr(0, 1)), "view.jpg: truncated JPEG: file ends after 1 bytes");
    EXPECT_EQ(error_of(jpg.substr(0, 2)), "view.jpg: truncated JPEG: file ends after 2 bytes");
  }
}

TEST(JpegBroken, NotAJpegOrCorrupt) {
  EXPECT_EQ(error_of("GIF89a"), "view.jpg: not a JPEG file (bad signature)");
  std::string jpg = cx::io::encode_jpeg(test_image(64, 48, 1), 90);
  std::string bad = jpg;
  const auto dht = bad.find("\xFF\xC4");
  ASSERT_NE(dht, std::string::npos);
  for (int i = 0; i < 16; ++i) bad[dht + 5 + i] = '\xFF';  // code counts summing past 256
  std::string got = error_of(bad);
  EXPECT_EQ(got, "view.jpg: corrupt JPEG: Bogus Huffman table definition");
  EXPECT_EQ(got.find('\n'), std::string::npos);
}

TEST(ImageFile, SniffsPngAndJpeg) {
  cx::Image gray = test_image(20, 10, 1);
  std::string png = cx::io::encode_png(gray);
  std::string jpg = cx::io::encode_jpeg(gray, 90);
  EXPECT_EQ(cx::io::sniff_image_format(png), cx::io::ImageFormat::png);
  EXPECT_EQ(cx::io::sniff_image_format(jpg), cx::io::ImageFormat::jpeg);
  EXPECT_EQ(cx::io::decode_image(png, "a").data, gray.data);
  EXPECT_EQ(cx::io::decode_image(jpg, "b").data, cx::io::decode_jpeg(jpg, "b").data);

  // The name does not matter: a PNG called .jpg is still decoded as PNG.
  fs::path dir = temp_dir() / "sniff";
  fs::create_directories(dir);
  std::ofstream(dir / "really_png.jpg", std::ios::binary) << png;
  EXPECT_EQ(cx::io::read_image_file((dir / "really_png.jpg").string()).data, gray.data);
  fs::remove_all(dir);
}

TEST(ImageFile, OtherContentRefused) {
  auto error_of_image = [](const std::string& bytes) {
    try {
      cx::io::decode_image(bytes, "scan.bin");
    } catch (const cx::Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(error_of_image("BM this is a bitmap"), "scan.bin: not a PNG or JPEG file");
  EXPECT_EQ(error_of_image(std::string(128, '\0') + "DICM" + std::string(40, 'x')),
            "scan.bin: not a PNG or JPEG file (it looks like DICOM)");
  EXPECT_EQ(error_of_image(""), "scan.bin: empty file, not a PNG or JPEG image");
  std::string png = cx::io::encode_png(test_image(20, 10, 1));
  EXPECT_THROW(cx::io::decode_image(png.substr(0, png.size() / 2), "x"), cx::TruncatedError);
}
