// lib/cx/io/png: round trips, every PNG colour type and bit depth (files made at test time by Pillow
// or by a minimal independent PNG writer in Python, for the layouts Pillow cannot write: 2/4-bit
// gray, 16-bit RGB, interlaced), the real NIH and Shenzhen samples against Pillow's decoding, and
// broken files refused by name. Every comparison is exact: PNG is lossless. The row filters of our
// own reader and writer (cx/io/png_rows.hpp) against the standard's formulas, Paeth for every byte
// triple, and files our reader hands to libpng (odd chunk layouts) decoded all the same.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <zlib.h>

#include "cx/cli/error.hpp"
#include "cx/io/npy.hpp"
#include "cx/io/png.hpp"
#include "peak_rss.hpp"
#include "cx/io/png_rows.hpp"
#include "io_python_helper.hpp"

namespace fs = std::filesystem;

namespace {

fs::path shared_dir() {
  if (const char* e = std::getenv("CX_SHARED")) return e;
  return CX_SHARED_DIR;
}

fs::path temp_dir() {
  fs::path d = fs::temp_directory_path() / ("cx_png_test_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

cx::Image random_image(int w, int h, int channels, int bits, unsigned seed) {
  cx::Image im = cx::Image::make(w, h, channels, bits);
  std::mt19937 rng(seed);
  for (auto& b : im.data) b = static_cast<std::uint8_t>(rng());
  return im;
}

// Python writes each input NAME.png and the pixels it must decode to, NAME.npy (uint8 or native
// uint16; H x W or H x W x 3), using Pillow's decoding or the source array of a handmade file.
constexpr const char* kPngMaker = R"PY(
import os, struct, sys, zlib
try:
    import numpy as np
    from PIL import Image
except ImportError:
    sys.exit(77)
d = sys.argv[1]
rng = np.random.default_rng(3)

def save_ref(name, a):
    np.save(os.path.join(d, name + '.npy'), np.ascontiguousarray(a))

def pillow(name, im, convert=None, **kw):
    p = os.path.join(d, name + '.png')
    im.save(p, **kw)
    back = Image.open(p)
    if convert:
        back = back.convert(convert)
    save_ref(name, np.asarray(back))

# Pillow-made: palette (2-bit, 8-bit with transparency), gray+alpha, RGBA, 1-bit, 16-bit gray, RGB.
pal = Image.fromarray(rng.integers(0, 4, (13, 17), dtype=np.uint8), 'P')
pal.putpalette([10, 20, 30, 200, 100, 0, 0, 255, 0, 255, 255, 255])
pillow('palette2', pal, 'RGB')
pal8 = Image.fromarray(rng.integers(0, 200, (21, 19), dtype=np.uint8), 'P')
pal8.putpalette(list(rng.integers(0, 256, 600, dtype=np.uint8)))
pillow('palette8_trns', pal8, 'RGB', transparency=5)
pillow('gray_alpha', Image.fromarray(rng.integers(0, 256, (9, 11, 2), dtype=np.uint8), 'LA'), 'L')
pillow('rgba', Image.fromarray(rng.integers(0, 256, (10, 7, 4), dtype=np.uint8), 'RGBA'), 'RGB')
pillow('gray1', Image.fromarray(rng.integers(0, 2, (15, 21), dtype=np.uint8) * 255).convert('1'), 'L')
g16 = rng.integers(0, 65536, (12, 14), dtype=np.uint16)
Image.fromarray(g16.astype(np.int32), 'I').save(os.path.join(d, 'gray16.png'))  # Pillow writes 'I' as 16-bit
back = np.asarray(Image.open(os.path.join(d, 'gray16.png'))).astype(np.uint16)
assert (back == g16).all()
save_ref('gray16', back)
pillow('rgb8', Image.fromarray(rng.integers(0, 256, (8, 5, 3), dtype=np.uint8), 'RGB'))

# Handmade: a minimal PNG writer (filter 0 rows, one IDAT), with Adam7 interlacing on request.
def chunk(tag, data):
    return struct.pack('>I', len(data)) + tag + data + struct.pack('>I', zlib.crc32(tag + data) & 0xffffffff)

def pack_rows(a, bits):
    h, w = a.shape[:2]
    rows = []
    for y in range(h):
        if bits < 8:
            v = a[y].astype(np.uint32)
            per = 8 // bits
            row = bytearray((w + per - 1) // per)
            for x in range(w):
                row[x // per] |= int(v[x]) << (8 - bits * (x % per + 1))
            rows.append(b'\0' + bytes(row))
        else:
            rows.append(b'\0' + a[y].astype('>u2' if bits == 16 else 'u1').tobytes())
    return b''.join(rows)

ADAM7 = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]

def handmade(name, a, bits, color, interlace=False):
    h, w = a.shape[:2]
    if interlace:
        raw = b''.join(pack_rows(a[y0::dy, x0::dx], bits) for x0, y0, dx, dy in ADAM7
                       if a[y0::dy, x0::dx].size)
    else:
        raw = pack_rows(a, bits)
    ihdr = struct.pack('>IIBBBBB', w, h, bits, color, 0, 0, 1 if interlace else 0)
    with open(os.path.join(d, name + '.png'), 'wb') as f:
        f.write(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', ihdr) + chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))

for bits in (2, 4):
    a = rng.integers(0, 1 << bits, (7, 13), dtype=np.uint8)
    handmade('gray%d' % bits, a, bits, 0)
    save_ref('gray%d' % bits, (a.astype(np.uint32) * 255 // ((1 << bits) - 1)).astype(np.uint8))
rgb16 = rng.integers(0, 65536, (6, 9, 3), dtype=np.uint16)
handmade('rgb16', rgb16, 16, 2)
save_ref('rgb16', rgb16)
for name, a, bits, color in [('interlaced_gray8', rng.integers(0, 256, (37, 29), dtype=np.uint8), 8, 0),
                             ('interlaced_gray16', rng.integers(0, 65536, (19, 23), dtype=np.uint16), 16, 0),
                             ('interlaced_rgb8', rng.integers(0, 256, (11, 10, 3), dtype=np.uint8), 8, 2)]:
    handmade(name, a, bits, color, interlace=True)
    # Pillow decodes the handmade file too, as a check on the handmade writer.
    assert (np.asarray(Image.open(os.path.join(d, name + '.png'))).astype(a.dtype) == a).all(), name
    save_ref(name, a)

# Real samples as Pillow decodes them.
for name, p in [('nih', sys.argv[2]), ('shenzhen', sys.argv[3])]:
    if os.path.exists(p):
        save_ref(name, np.asarray(Image.open(p)))
)PY";

fs::path python_dir(std::string& why) {
  static fs::path dir;
  static std::string reason;
  static bool done = false;
  if (!done) {
    done = true;
    fs::path d = temp_dir() / "made";
    fs::create_directories(d);
    auto r = cx_test::run_python(kPngMaker, {d.string(), (shared_dir() / "samples/nih/00000001_000.png").string(),
                                             (shared_dir() / "samples/shenzhen/images/CHNCXR_0001_0.png").string()});
    if (!r.ran) reason = r.why_not;
    else if (r.status != 0) reason = "python PNG maker failed: " + r.output;
    else dir = d;
  }
  why = reason;
  return dir;
}

// The reference pixels as an Image-shaped comparison.
void expect_pixels(const cx::Image& im, const fs::path& npy, int channels, int bits) {
  cx::io::NdArray ref = cx::io::read_npy(slurp(npy), npy.string());
  ASSERT_GE(ref.shape.size(), 2u) << npy;
  EXPECT_EQ(im.height, ref.shape[0]) << npy;
  EXPECT_EQ(im.width, ref.shape[1]) << npy;
  EXPECT_EQ(im.channels, channels) << npy;
  EXPECT_EQ(im.bits, bits) << npy;
  EXPECT_EQ(ref.dtype, bits == 8 ? cx::io::DType::u8 : cx::io::DType::u16) << npy;
  EXPECT_EQ(ref.shape.size() == 3 ? ref.shape[2] : 1, channels) << npy;
  ASSERT_EQ(im.data.size(), ref.data.size()) << npy;
  std::size_t differ = 0;
  for (std::size_t i = 0; i < im.data.size(); ++i) differ += im.data[i] != ref.data[i];
  EXPECT_EQ(differ, 0u) << npy << ": bytes that differ from the reference";
}

std::string error_of(const std::string& bytes, const std::string& where = "scan.png") {
  try {
    cx::io::decode_png(bytes, where);
  } catch (const cx::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Png, RoundTripGrayAndRgb) {
  for (auto [channels, bits] : std::vector<std::pair<int, int>>{{1, 8}, {1, 16}, {3, 8}, {3, 16}}) {
    for (auto [w, h] : std::vector<std::pair<int, int>>{{1, 1}, {17, 5}, {64, 33}}) {
      cx::Image im = random_image(w, h, channels, bits, static_cast<unsigned>(w * 31 + channels * 7 + bits));
      std::string png = cx::io::encode_png(im);
      cx::Image back = cx::io::decode_png(png, "rt.png");
      EXPECT_EQ(back.width, w);
      EXPECT_EQ(back.height, h);
      EXPECT_EQ(back.channels, channels);
      EXPECT_EQ(back.bits, bits);
      EXPECT_EQ(back.data, im.data) << channels << "x" << bits << " " << w << "x" << h;
    }
  }
}

TEST(Png, SixteenBitSamplesAreNativeIntegers) {
  cx::Image im = cx::Image::gray16(3, 1);
  im.u16()[0] = 0x0102;
  im.u16()[1] = 65535;
  im.u16()[2] = 1000;
  std::string png = cx::io::encode_png(im);
  cx::Image back = cx::io::decode_png(png, "x.png");
  EXPECT_EQ(back.u16()[0], 0x0102);
  EXPECT_EQ(back.u16()[1], 65535);
  EXPECT_EQ(back.u16()[2], 1000);
}

TEST(Png, EncodingIsDeterministicAndHasNoTimeChunk) {
  cx::Image im = random_image(40, 30, 1, 8, 5);
  std::string a = cx::io::encode_png(im), b = cx::io::encode_png(im);
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.find("tIME"), std::string::npos);
  EXPECT_EQ(a.substr(12, 4), "IHDR");
  EXPECT_EQ(a.substr(a.size() - 8, 4), "IEND");
}

TEST(Png, EncoderRefusesBadImages) {
  cx::Image bad = cx::Image::gray8(4, 4);
  bad.data.resize(15);
  EXPECT_THROW(cx::io::encode_png(bad), cx::Error);
  EXPECT_THROW(cx::io::encode_png(cx::Image::make(2, 2, 2, 8)), cx::Error);
  EXPECT_THROW(cx::io::encode_png(cx::Image::make(2, 2, 1, 12)), cx::Error);
  EXPECT_THROW(cx::io::encode_png(cx::Image::gray8(0, 3)), cx::Error);
}

TEST(Png, FileRoundTripIsAtomic) {
  fs::path dir = temp_dir() / "files";
  fs::create_directories(dir);
  cx::Image im = random_image(9, 7, 3, 8, 11);
  cx::io::write_png_file((dir / "a.png").string(), im);
  EXPECT_EQ(cx::io::read_png_file((dir / "a.png").string()).data, im.data);
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator()), 1) << "no temporary left behind";
  try {
    cx::io::read_png_file((dir / "missing.png").string());
    FAIL();
  } catch (const cx::Error& e) {
    EXPECT_EQ(std::string(e.what()), (dir / "missing.png").string() + ": cannot open: No such file or directory");
  }
  fs::remove_all(dir);
}

TEST(Png, EveryColourTypeAndDepthMatchesTheReference) {
  std::string why;
  fs::path d = python_dir(why);
  if (d.empty() && why.find("failed") != std::string::npos) FAIL() << why;
  if (d.empty()) GTEST_SKIP() << why;
  struct Case {
    const char* name;
    int channels, bits;
  };
  for (Case c : {Case{"palette2", 3, 8}, Case{"palette8_trns", 3, 8}, Case{"gray_alpha", 1, 8}, Case{"rgba", 3, 8},
                 Case{"gray1", 1, 8}, Case{"gray2", 1, 8}, Case{"gray4", 1, 8}, Case{"gray16", 1, 16},
                 Case{"rgb8", 3, 8}, Case{"rgb16", 3, 16}, Case{"interlaced_gray8", 1, 8},
                 Case{"interlaced_gray16", 1, 16}, Case{"interlaced_rgb8", 3, 8}}) {
    SCOPED_TRACE(c.name);
    fs::path png = d / (std::string(c.name) + ".png");
    cx::Image im = cx::io::read_png_file(png.string());
    expect_pixels(im, d / (std::string(c.name) + ".npy"), c.channels, c.bits);
  }
}

TEST(Png, RealSamplesMatchPillow) {
  std::string why;
  fs::path d = python_dir(why);
  if (d.empty() && why.find("failed") != std::string::npos) FAIL() << why;
  if (d.empty()) GTEST_SKIP() << why;
  fs::path nih = shared_dir() / "samples/nih/00000001_000.png";
  fs::path shenzhen = shared_dir() / "samples/shenzhen/images/CHNCXR_0001_0.png";
  if (!fs::exists(nih) || !fs::exists(shenzhen)) GTEST_SKIP() << "real samples not found under " << shared_dir();
  cx::Image a = cx::io::read_png_file(nih.string());
  EXPECT_EQ(a.width, 512);
  EXPECT_EQ(a.height, 512);
  expect_pixels(a, d / "nih.npy", 1, 8);
  cx::Image b = cx::io::read_png_file(shenzhen.string());
  EXPECT_EQ(b.width, 750);
  EXPECT_EQ(b.height, 730);
  expect_pixels(b, d / "shenzhen.npy", 1, 8);
  // Re-encoding the real image loses nothing.
  EXPECT_EQ(cx::io::decode_png(cx::io::encode_png(b), "re.png").data, b.data);
}

// --- our own reader and writer (png_rows, and decode_png's fast path) ---

namespace {

using namespace cx::io::png_rows;

// The standard's filters (PNG spec 9.2), byte by byte.
std::vector<std::uint8_t> reference_filter(int type, const std::vector<std::uint8_t>& row,
                                           const std::vector<std::uint8_t>* prior, int bpp) {
  std::vector<std::uint8_t> out(row.size());
  for (std::size_t i = 0; i < row.size(); ++i) {
    const int a = i >= static_cast<std::size_t>(bpp) ? row[i - bpp] : 0, b = prior ? (*prior)[i] : 0,
              c = prior && i >= static_cast<std::size_t>(bpp) ? (*prior)[i - bpp] : 0;
    const int pred = type == kNone ? 0 : type == kSub ? a : type == kUp ? b : type == kAverage ? (a + b) / 2 : paeth_reference(a, b, c);
    out[i] = static_cast<std::uint8_t>(row[i] - pred);
  }
  return out;
}

// A PNG's chunks, and a PNG made of chunks.
std::vector<std::pair<std::string, std::string>> chunks_of(const std::string& png) {
  std::vector<std::pair<std::string, std::string>> out;
  for (std::size_t pos = 8; pos + 12 <= png.size();) {
    const auto* p = reinterpret_cast<const unsigned char*>(png.data() + pos);
    const std::size_t n = (std::size_t{p[0]} << 24) | (p[1] << 16) | (p[2] << 8) | p[3];
    out.emplace_back(png.substr(pos + 4, 4), png.substr(pos + 8, n));
    pos += 12 + n;
  }
  return out;
}

std::string chunk(const std::string& type, const std::string& data, bool good_crc = true) {
  std::string out;
  for (int i = 3; i >= 0; --i) out.push_back(static_cast<char>(data.size() >> (8 * i)));
  out += type + data;
  std::uint32_t crc = static_cast<std::uint32_t>(::crc32(0L, reinterpret_cast<const Bytef*>(out.data() + 4), static_cast<uInt>(data.size() + 4)));
  if (!good_crc) crc ^= 1;
  for (int i = 3; i >= 0; --i) out.push_back(static_cast<char>(crc >> (8 * i)));
  return out;
}

}  // namespace

TEST(PngRows, PaethMatchesTheStandardForEveryByteTriple) {
  // For each (c, b): the row above alternates c, b, c, b ... and the row itself takes every value
  // a at the even places, so every odd place i reconstructs from (a, b, c) = (out[i-1], b, c).
  // Rows of 513 bytes go through the vectorised path as well as the tail.
  const std::size_t n = 513;
  std::vector<std::uint8_t> prior(n), row(n), back(n), forward(n);
  std::size_t wrong = 0;
  for (int c = 0; c < 256; ++c)
    for (int b = 0; b < 256; ++b) {
      for (std::size_t i = 0; i < n; ++i) {
        prior[i] = static_cast<std::uint8_t>(i % 2 ? b : c);
        row[i] = static_cast<std::uint8_t>(i % 2 ? (b * 7 + c + i) : i / 2);
      }
      const auto filtered = reference_filter(kPaeth, row, &prior, 1);
      ASSERT_TRUE(unfilter_row(kPaeth, filtered.data(), prior.data(), back.data(), n, 1));
      wrong += back != row;
      paeth_filter_row(row.data(), prior.data(), forward.data(), n, 1);  // and the writer's side
      wrong += forward != filtered;
    }
  EXPECT_EQ(wrong, 0u);
}

TEST(PngRows, EveryFilterAndPixelSizeInvertsTheStandardsFilter) {
  std::mt19937 rng(7);
  for (int bpp : {1, 2, 3, 4, 6, 8}) {
    for (std::size_t n : {std::size_t(bpp), std::size_t(bpp) * 2, std::size_t(bpp) * 37}) {
      std::vector<std::uint8_t> prior(n), row(n);
      for (int trial = 0; trial < 20; ++trial) {
        // smooth rows with noise, and pure noise: both sides of every Paeth choice
        for (std::size_t i = 0; i < n; ++i) {
          prior[i] = static_cast<std::uint8_t>(trial % 2 ? rng() : 100 + i % 7 + rng() % 5);
          row[i] = static_cast<std::uint8_t>(trial % 2 ? rng() : prior[i] + rng() % 9 - 4);
        }
        for (int type = kNone; type <= kPaeth; ++type)
          for (bool first : {false, true}) {
            const auto filtered = reference_filter(type, row, first ? nullptr : &prior, bpp);
            std::vector<std::uint8_t> back(n);
            ASSERT_TRUE(unfilter_row(type, filtered.data(), first ? nullptr : prior.data(), back.data(), n, bpp));
            ASSERT_EQ(back, row) << "type " << type << " bpp " << bpp << " n " << n << (first ? " first row" : "");
          }
        std::vector<std::uint8_t> paeth(n);
        paeth_filter_row(row.data(), prior.data(), paeth.data(), n, bpp);
        EXPECT_EQ(paeth, reference_filter(kPaeth, row, &prior, bpp));
        paeth_filter_row(row.data(), nullptr, paeth.data(), n, bpp);
        EXPECT_EQ(paeth, reference_filter(kPaeth, row, nullptr, bpp));
      }
    }
  }
  std::uint8_t out[4];
  const std::uint8_t in[4] = {};
  EXPECT_FALSE(unfilter_row(5, in, nullptr, out, 4, 1));
}

TEST(Png, EveryLevelAndLayoutRoundTripsThroughBothWriters) {
  // Level 1-3: our writer (Paeth rows); 0 and 4-9: libpng's (adaptive filters: every filter type
  // appears in a smooth image with noise), read back by our reader.
  for (auto [channels, bits] : std::vector<std::pair<int, int>>{{1, 8}, {1, 16}, {3, 8}, {3, 16}}) {
    cx::Image im = cx::Image::make(61, 47, channels, bits);
    std::mt19937 rng(channels * 16 + bits);
    for (std::size_t i = 0; i < im.data.size(); ++i) im.data[i] = static_cast<std::uint8_t>((i / 7) % 200 + rng() % 6);
    for (int level : {0, 1, 2, 3, 6, 9}) {
      const std::string png = cx::io::encode_png(im, level);
      EXPECT_EQ(cx::io::decode_png(png, "x.png").data, im.data) << channels << "x" << bits << " level " << level;
    }
  }
}

TEST(Png, LabelMapsStaySmallAndNoiseRoundTripsAtTheFastLevels) {
  // A two-class map is runs (run-length matching), a radiograph-like image noise (Huffman only).
  cx::Image map = cx::Image::gray8(512, 512);
  for (int y = 0; y < 512; ++y)
    for (int x = 0; x < 512; ++x) map.u8()[y * 512 + x] = (x - 256) * (x - 256) + (y - 256) * (y - 256) < 150 * 150;
  const std::string small = cx::io::encode_png(map, 1);
  EXPECT_LT(small.size(), 4000u);
  EXPECT_EQ(cx::io::decode_png(small, "m.png").data, map.data);
  cx::Image noise = random_image(300, 200, 1, 8, 9);
  EXPECT_EQ(cx::io::decode_png(cx::io::encode_png(noise, 1), "n.png").data, noise.data);
}

TEST(Png, OddChunkLayoutsDecodeAsLibpngDecodesThem) {
  cx::Image im = random_image(40, 30, 1, 8, 4);
  for (std::size_t i = 0; i < im.data.size(); ++i) im.data[i] = static_cast<std::uint8_t>(im.data[i] % 16 + i / 40);
  const auto parts = chunks_of(cx::io::encode_png(im, 1));
  ASSERT_EQ(parts.size(), 3u);  // IHDR IDAT IEND
  const std::string sig("\x89PNG\r\n\x1a\n", 8), ihdr = chunk("IHDR", parts[0].second), iend = chunk("IEND", "");
  const std::string& z = parts[1].second;
  // The stream split over several IDATs, one empty; ancillary chunks before them.
  std::string split = sig + ihdr + chunk("tEXt", std::string("Comment\0x", 9)) + chunk("IDAT", z.substr(0, 5)) +
                      chunk("IDAT", "") + chunk("IDAT", z.substr(5, 100)) + chunk("IDAT", z.substr(105)) + iend;
  EXPECT_EQ(cx::io::decode_png(split, "split.png").data, im.data);
  // An ancillary chunk with a bad CRC: libpng skips it (a warning), so do we, through libpng.
  std::string bad_text = sig + ihdr + chunk("tEXt", std::string("Comment\0x", 9), false) + chunk("IDAT", z) + iend;
  EXPECT_EQ(cx::io::decode_png(bad_text, "t.png").data, im.data);
  // Bytes after IEND are not read.
  EXPECT_EQ(cx::io::decode_png(sig + ihdr + chunk("IDAT", z) + iend + "junk", "j.png").data, im.data);
  // A bad IDAT CRC is an error, as libpng reports it.
  EXPECT_EQ(error_of(sig + ihdr + chunk("IDAT", z, false) + iend), "scan.png: corrupt PNG: IDAT: CRC error");
  // The stream cut short, with the file complete: libpng's message.
  EXPECT_EQ(error_of(sig + ihdr + chunk("IDAT", z.substr(0, z.size() / 2)) + iend).rfind("scan.png: ", 0), 0u);
}

// --- broken input: one line naming the source ---

TEST(PngBroken, NotAPng) {
  EXPECT_EQ(error_of("GIF89a......"), "scan.png: not a PNG file (bad signature)");
  EXPECT_EQ(error_of(""), "scan.png: truncated PNG: file ends after 0 bytes");
  EXPECT_EQ(error_of("\x89PNG"), "scan.png: truncated PNG: file ends after 4 bytes");
}

TEST(PngBroken, TruncatedAnywhere) {
  std::string png = cx::io::encode_png(random_image(50, 40, 1, 8, 2));
  for (std::size_t cut : {std::size_t{8}, std::size_t{20}, std::size_t{40}, png.size() / 2, png.size() - 12, png.size() - 1}) {
    std::string got = error_of(png.substr(0, cut));
    EXPECT_EQ(got, "scan.png: truncated PNG: file ends after " + std::to_string(cut) + " bytes") << "cut at " << cut;
    EXPECT_THROW(cx::io::decode_png(png.substr(0, cut), "x"), cx::TruncatedError);
  }
  // The same through a file: the error names the path.
  fs::path dir = temp_dir() / "trunc";
  fs::create_directories(dir);
  fs::path p = dir / "cut.png";
  std::ofstream(p, std::ios::binary) << png.substr(0, png.size() / 2);
  try {
    cx::io::read_png_file(p.string());
    FAIL();
  } catch (const cx::TruncatedError& e) {
    EXPECT_EQ(std::string(e.what()).rfind(p.string() + ": truncated PNG", 0), 0u) << e.what();
  }
  fs::remove_all(dir);
}

TEST(PngBroken, CorruptData) {
  std::string png = cx::io::encode_png(random_image(50, 40, 1, 8, 2));
  std::string bad_crc = png;
  bad_crc[29] ^= 0x55;  // inside IHDR's CRC (8 signature + 8 chunk head + 13 data = 29)
  std::string got = error_of(bad_crc);
  EXPECT_EQ(got, "scan.png: corrupt PNG: IHDR: CRC error");
  std::string bad_data = png;
  for (std::size_t i = 60; i < 90; ++i) bad_data[i] = static_cast<char>(i);  // inside the deflate stream
  got = error_of(bad_data);
  EXPECT_EQ(got.rfind("scan.png: corrupt PNG: ", 0), 0u) << got;
  EXPECT_EQ(got.find('\n'), std::string::npos);
}

// Hostile headers (issue 08, defect 4): chunk lengths are checked against the bytes present,
// and a declared size against the image limit and against what the image data can inflate to,
// before any decoder allocates. Each case runs in a child whose peak RSS is measured.
namespace {

std::string ihdr_data(std::uint32_t w, std::uint32_t h, int depth, int color) {
  std::string d;
  for (std::uint32_t v : {w, h})
    for (int i = 3; i >= 0; --i) d.push_back(static_cast<char>(v >> (8 * i)));
  d += {static_cast<char>(depth), static_cast<char>(color), 0, 0, 0};
  return d;
}

// Refusing takes well under a MiB; each hostile file below claims from 100 MiB to 2 GiB.
constexpr long kHostileGrowthKib = 16 * 1024;

void expect_refused_small(const std::string& bytes, const std::string& want, const char* label) {
  const cx_test::ChildRun r = cx_test::run_in_child([&] { cx::io::decode_png(bytes, "hostile.png"); });
  EXPECT_EQ(r.status, 1) << label << ": " << r.what;
  EXPECT_EQ(r.what, want) << label;
  EXPECT_GE(r.growth_kib, 0) << label;
  EXPECT_LT(r.growth_kib, kHostileGrowthKib) << label << ": peak RSS grew " << r.growth_kib << " KiB";
  std::printf("peak RSS refusing %s (%zu bytes): +%ld KiB\n", label, bytes.size(), r.growth_kib);
}

}  // namespace

TEST(PngHostile, ChunkLengthsBeyondTheFileAndHugeSizesAreRefusedBeforeAllocating) {
  const std::string sig("\x89PNG\r\n\x1a\n", 8);
  const std::string ihdr = chunk("IHDR", ihdr_data(64, 64, 8, 0));
  // A tEXt chunk whose length field says 2^31-1 bytes, in a 44-byte file.
  std::string text = sig + ihdr + chunk("tEXt", "");
  text[33] = 0x7f;
  text[34] = text[35] = text[36] = static_cast<char>(0xff);
  ASSERT_EQ(text.size(), 45u);
  expect_refused_small(text.substr(0, 44), "hostile.png: truncated PNG: file ends after 44 bytes", "tEXt 2^31-1");
  // ... and 2^31, which PNG forbids outright.
  text[33] = static_cast<char>(0x80);
  text[34] = text[35] = text[36] = 0;
  expect_refused_small(text.substr(0, 44), "hostile.png: corrupt PNG: chunk length 2147483648 at byte 33 exceeds 2^31-1",
                       "tEXt 2^31");
  // 32000 x 32000 in 68 bytes: beyond the image limit.
  const std::string tiny_idat = chunk("IDAT", std::string("\x78\x9c\x03\x00\x00\x00\x00\x01", 8));
  const std::string huge = sig + chunk("IHDR", ihdr_data(32000, 32000, 8, 0)) + tiny_idat + chunk("IEND", "");
  expect_refused_small(huge, "hostile.png: PNG of 32000x32000 exceeds the image size limit of 134217728 samples "
                             "(CX_MAX_IMAGE_PIXELS raises it)", "32000x32000");
  // 10000 x 10000 is within the limit, but 8 bytes of image data cannot inflate to 100 MB.
  const std::string big = sig + chunk("IHDR", ihdr_data(10000, 10000, 8, 0)) + tiny_idat + chunk("IEND", "");
  expect_refused_small(big, "hostile.png: corrupt PNG: 8 bytes of image data cannot hold a 10000x10000 image",
                       "10000x10000");
  // The same through libpng's path (interlaced: our reader hands it over).
  const std::string big_interlaced =
      sig + chunk("IHDR", ihdr_data(10000, 10000, 8, 0).substr(0, 12) + std::string(1, '\1')) + tiny_idat + chunk("IEND", "");
  expect_refused_small(big_interlaced, "hostile.png: corrupt PNG: 8 bytes of image data cannot hold a 10000x10000 image",
                       "10000x10000 interlaced");
}
