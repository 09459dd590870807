// lib/cx/io/npy: byte-exact against numpy.save (run at test time by /usr/bin/python3), NumPy's
// v2/v3 files read, half-float conversions against NumPy's, broken headers refused by name.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <sstream>

#include "cx/cli/error.hpp"
#include "cx/io/npy.hpp"
#include "io_python_helper.hpp"

namespace fs = std::filesystem;
using cx::io::DType;
using cx::io::NdArray;

namespace {

fs::path temp_dir() {
  fs::path d = fs::temp_directory_path() / ("cx_npy_test_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

template <class T>
NdArray filled(DType t, std::vector<std::int64_t> shape, const std::function<T(std::int64_t)>& value) {
  NdArray a = NdArray::zeros(t, std::move(shape));
  for (std::int64_t i = 0; i < a.numel(); ++i) a.as<T>()[i] = value(i);
  return a;
}

// The arrays both sides build from the same formulas; numpy.save's bytes must equal ours.
std::vector<std::pair<std::string, NdArray>> reference_arrays() {
  std::vector<std::pair<std::string, NdArray>> v;
  auto f32 = [](std::int64_t i) { return static_cast<float>(i) * 0.5f - 3.0f; };
  v.emplace_back("f32_1d", filled<float>(DType::f32, {7}, f32));
  v.emplace_back("f32_0d", filled<float>(DType::f32, {}, [](std::int64_t) { return 3.25f; }));
  v.emplace_back("f32_2d", filled<float>(DType::f32, {2, 3}, f32));
  v.emplace_back("f32_3d", filled<float>(DType::f32, {2, 1, 4}, f32));
  v.emplace_back("f32_empty", NdArray::zeros(DType::f32, {0, 3}));
  v.emplace_back("f16_1d", filled<std::uint16_t>(DType::f16, {5}, [](std::int64_t i) {
                   return cx::io::float_to_half(static_cast<float>(i) * 0.5f - 1.0f);
                 }));
  v.emplace_back("u8_2d", filled<std::uint8_t>(DType::u8, {3, 4}, [](std::int64_t i) { return static_cast<std::uint8_t>(i * 37 % 256); }));
  v.emplace_back("u8_long", filled<std::uint8_t>(DType::u8, {100000}, [](std::int64_t i) { return static_cast<std::uint8_t>(i % 251); }));
  v.emplace_back("u16_1d", filled<std::uint16_t>(DType::u16, {10}, [](std::int64_t i) { return static_cast<std::uint16_t>(i * 4099 % 65536); }));
  v.emplace_back("i64_1d", filled<std::int64_t>(DType::i64, {11}, [](std::int64_t i) { return (i - 5) * 1000000000000LL; }));
  v.emplace_back("i64_0d", filled<std::int64_t>(DType::i64, {}, [](std::int64_t) { return -7; }));
  v.emplace_back("f64_1d", filled<double>(DType::f64, {3}, [](std::int64_t i) { return 0.1 * static_cast<double>(i); }));
  v.emplace_back("i32_1d", filled<std::int32_t>(DType::i32, {4}, [](std::int64_t i) { return static_cast<std::int32_t>(-i * 100000); }));
  v.emplace_back("bool_1d", filled<std::uint8_t>(DType::boolean, {3}, [](std::int64_t i) { return static_cast<std::uint8_t>(i % 2); }));
  return v;
}

constexpr const char* kNumpyWriter = R"PY(
import io, os, sys
try:
    import numpy as np
except ImportError:
    sys.exit(77)
d = sys.argv[1]
def f32(n):
    return np.arange(n, dtype=np.float32) * np.float32(0.5) - np.float32(3.0)
arrays = {
    'f32_1d': f32(7),
    'f32_0d': np.array(3.25, dtype=np.float32),
    'f32_2d': f32(6).reshape(2, 3),
    'f32_3d': f32(8).reshape(2, 1, 4),
    'f32_empty': np.zeros((0, 3), dtype=np.float32),
    'f16_1d': (np.arange(5, dtype=np.float32) * 0.5 - 1).astype(np.float16),
    'u8_2d': (np.arange(12) * 37 % 256).astype(np.uint8).reshape(3, 4),
    'u8_long': (np.arange(100000) % 251).astype(np.uint8),
    'u16_1d': (np.arange(10) * 4099 % 65536).astype(np.uint16),
    'i64_1d': (np.arange(11, dtype=np.int64) - 5) * 10**12,
    'i64_0d': np.array(-7, dtype=np.int64),
    'f64_1d': np.arange(3) * 0.1,
    'i32_1d': (-np.arange(4) * 100000).astype(np.int32),
    'bool_1d': np.arange(3) % 2 == 1,
}
for name, a in arrays.items():
    np.save(os.path.join(d, name + '.npy'), a)
# Format 2.0 and 3.0 files, which numpy.save writes only for huge or non-latin1 headers.
for v in [(2, 0), (3, 0)]:
    with open(os.path.join(d, 'v%d.npy' % v[0]), 'wb') as f:
        np.lib.format.write_array(f, f32(6).reshape(3, 2), version=v)
# A header too long for format 1.0 (more dims than NumPy allows, so only the header writer can).
b = io.BytesIO()
np.lib.format._write_array_header(b, {'descr': '|u1', 'fortran_order': False, 'shape': (1,) * 22000})
with open(os.path.join(d, 'huge_header.npy'), 'wb') as f:
    f.write(b.getvalue() + b'\x2a')
# Half floats: every bit pattern widened, and float32 ties and near-ties narrowed.
h = np.arange(65536, dtype=np.uint32).astype(np.uint16)
np.save(os.path.join(d, 'half_bits.npy'), h)
np.save(os.path.join(d, 'half_as_f32.npy'), h.view(np.float16).astype(np.float32))
fin = h[:0x7c00].view(np.float16).astype(np.float64)
mid = ((fin[:-1] + fin[1:]) / 2).astype(np.float32)  # exact: 12 significant bits
up = np.nextafter(mid, np.float32(np.inf))
down = np.nextafter(mid, np.float32(0))
x = np.concatenate([mid, up, down, -mid, np.array([65519.996, 65520, 1e6, np.inf, -np.inf, 0.0, -0.0], dtype=np.float32)])
np.save(os.path.join(d, 'narrow_in.npy'), x.astype(np.float32))
np.save(os.path.join(d, 'narrow_out.npy'), x.astype(np.float32).astype(np.float16).view(np.uint16))
)PY";

// Runs kNumpyWriter once per test binary; returns the folder, or "" with `why` set to skip.
fs::path numpy_files(std::string& why) {
  static fs::path dir;
  static std::string reason;
  static bool done = false;
  if (!done) {
    done = true;
    fs::path d = temp_dir() / "numpy";
    fs::create_directories(d);
    auto r = cx_test::run_python(kNumpyWriter, {d.string()});
    if (!r.ran) reason = r.why_not;
    else if (r.status != 0) reason = "numpy writer failed: " + r.output;
    else dir = d;
  }
  why = reason;
  return dir;
}

#define NUMPY_FILES(var)                       \
  std::string why_##var;                       \
  fs::path var = numpy_files(why_##var);       \
  if (var.empty() && why_##var.find("failed") != std::string::npos) FAIL() << why_##var; \
  if (var.empty()) GTEST_SKIP() << why_##var

std::string error_of(const std::string& bytes, const std::string& where = "0001.cls.npy") {
  try {
    cx::io::read_npy(bytes, where);
  } catch (const cx::Error& e) {
    return e.what();
  }
  return "";
}

// A .npy file from a header dict text, padded as NumPy pads.
std::string handmade(const std::string& dict, const std::string& data, int major = 1) {
  std::size_t len_size = major == 1 ? 2 : 4;
  std::size_t hlen = dict.size() + 1;
  std::size_t pad = 64 - (8 + len_size + hlen) % 64;
  std::string out = "\x93NUMPY";
  out += static_cast<char>(major);
  out += '\0';
  std::uint64_t total = hlen + pad;
  for (std::size_t i = 0; i < len_size; ++i) out += static_cast<char>((total >> (8 * i)) & 0xFF);
  return out + dict + std::string(pad, ' ') + "\n" + data;
}

}  // namespace

TEST(Npy, ByteExactAgainstNumpySave) {
  NUMPY_FILES(dir);
  for (const auto& [name, array] : reference_arrays()) {
    std::string theirs = slurp(dir / (name + ".npy"));
    std::string ours = cx::io::write_npy(array);
    ASSERT_FALSE(theirs.empty()) << name;
    EXPECT_EQ(ours.size(), theirs.size()) << name;
    auto diff = std::mismatch(ours.begin(), ours.end(), theirs.begin(), theirs.end());
    EXPECT_TRUE(ours == theirs) << name << ": first difference at byte " << (diff.first - ours.begin())
                                << "\nours:   " << ours.substr(0, 128) << "\nnumpy:  " << theirs.substr(0, 128);
    NdArray back = cx::io::read_npy(theirs, name + ".npy");
    EXPECT_EQ(back.dtype, array.dtype) << name;
    EXPECT_EQ(back.shape, array.shape) << name;
    EXPECT_EQ(back.data, array.data) << name;
  }
}

TEST(Npy, ReadsNumpyVersion2And3) {
  NUMPY_FILES(dir);
  const auto expected = std::vector<float>{-3.0f, -2.5f, -2.0f, -1.5f, -1.0f, -0.5f};
  for (const char* name : {"v2.npy", "v3.npy"}) {
    std::string bytes = slurp(dir / name);
    ASSERT_EQ(bytes[6], name[1] - '0') << "numpy wrote the version asked for";
    NdArray a = cx::io::read_npy(bytes, name);
    EXPECT_EQ(a.dtype, DType::f32);
    EXPECT_EQ(a.shape, (std::vector<std::int64_t>{3, 2}));
    EXPECT_EQ(a.to_floats(), expected) << name;
  }
}

TEST(Npy, Version2WhenTheHeaderOutgrowsVersion1) {
  NUMPY_FILES(dir);
  std::string theirs = slurp(dir / "huge_header.npy");
  NdArray a = NdArray::zeros(DType::u8, std::vector<std::int64_t>(22000, 1));
  a.data[0] = 0x2a;
  std::string ours = cx::io::write_npy(a);
  EXPECT_EQ(ours[6], 2);
  EXPECT_TRUE(ours == theirs) << "sizes " << ours.size() << " vs " << theirs.size();
  NdArray back = cx::io::read_npy(theirs, "huge_header.npy");
  EXPECT_EQ(back.shape.size(), 22000u);
  EXPECT_EQ(back.data, a.data);
}

// Every half bit pattern widened, and float32 values at and next to every rounding tie narrowed,
// against NumPy's npy_half conversions. Exact: both are IEEE round-to-nearest-even.
TEST(Npy, HalfFloatConversionsMatchNumpy) {
  NUMPY_FILES(dir);
  NdArray bits = cx::io::read_npy(slurp(dir / "half_bits.npy"), "half_bits.npy");
  NdArray widened = cx::io::read_npy(slurp(dir / "half_as_f32.npy"), "half_as_f32.npy");
  ASSERT_EQ(bits.numel(), 65536);
  ASSERT_EQ(widened.dtype, DType::f32);
  for (int i = 0; i < 65536; ++i) {
    float ours = cx::io::half_to_float(bits.as<std::uint16_t>()[i]);
    std::uint32_t a, b;
    std::memcpy(&a, &ours, 4);
    std::memcpy(&b, &widened.as<float>()[i], 4);
    ASSERT_EQ(a, b) << "half bits 0x" << std::hex << i;
  }
  NdArray in = cx::io::read_npy(slurp(dir / "narrow_in.npy"), "narrow_in.npy");
  NdArray out = cx::io::read_npy(slurp(dir / "narrow_out.npy"), "narrow_out.npy");
  ASSERT_EQ(in.numel(), out.numel());
  ASSERT_GT(in.numel(), 90000);
  for (std::int64_t i = 0; i < in.numel(); ++i)
    ASSERT_EQ(cx::io::float_to_half(in.as<float>()[i]), out.as<std::uint16_t>()[i]) << "x = " << in.as<float>()[i];
  // f16 arrays reach float32 through to_floats with the same conversion.
  EXPECT_EQ(bits.dtype, DType::u16);
  NdArray as_half = bits;
  as_half.dtype = DType::f16;
  auto floats = as_half.to_floats();
  EXPECT_EQ(std::memcmp(floats.data(), widened.data.data(), widened.data.size()), 0);
}

TEST(Npy, RoundTripEveryDtype) {
  std::mt19937 rng(7);
  for (DType t : {DType::f64, DType::f32, DType::f16, DType::i64, DType::i32, DType::i16, DType::i8, DType::u64,
                  DType::u32, DType::u16, DType::u8, DType::boolean}) {
    for (auto shape : std::vector<std::vector<std::int64_t>>{{}, {1}, {5}, {3, 4}, {2, 0, 3}, {2, 3, 4, 5}}) {
      NdArray a = NdArray::zeros(t, shape);
      for (auto& byte : a.data) byte = static_cast<std::uint8_t>(rng());
      if (t == DType::boolean)
        for (auto& byte : a.data) byte &= 1;
      NdArray b = cx::io::read_npy(cx::io::write_npy(a), "rt.npy");
      EXPECT_EQ(b.dtype, a.dtype);
      EXPECT_EQ(b.shape, a.shape);
      EXPECT_EQ(b.data, a.data);
    }
  }
}

TEST(Npy, HeaderTextAndAlignment) {
  auto header_of = [](std::vector<std::int64_t> shape) {
    std::string s = cx::io::write_npy(NdArray::zeros(DType::f32, std::move(shape)));
    std::size_t len = static_cast<unsigned char>(s[8]) | (static_cast<unsigned char>(s[9]) << 8);
    EXPECT_EQ((10 + len) % 64, 0u);
    EXPECT_EQ(s[10 + len - 1], '\n');
    std::string h = s.substr(10, len);
    return h.substr(0, h.find('}') + 1);
  };
  EXPECT_EQ(header_of({}), "{'descr': '<f4', 'fortran_order': False, 'shape': (), }");
  EXPECT_EQ(header_of({3}), "{'descr': '<f4', 'fortran_order': False, 'shape': (3,), }");
  EXPECT_EQ(header_of({2, 3}), "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 3), }");
  EXPECT_THROW(cx::io::write_npy(NdArray::zeros(DType::bf16, {2})), cx::Error) << "NumPy has no bfloat16";
}

// Python 2 era and other writers: double quotes, no trailing comma, "L" integers, other key order.
TEST(Npy, ReadsOtherValidHeaderSpellings) {
  std::string data(12, '\0');
  NdArray a = cx::io::read_npy(handmade(R"({"shape": (3L,), "fortran_order": False, "descr": "<f4"})", data), "old.npy");
  EXPECT_EQ(a.shape, (std::vector<std::int64_t>{3}));
  EXPECT_EQ(cx::io::read_npy(handmade("{'descr': '<u1', 'fortran_order': False, 'shape': (2,3)}", "abcdef"), "x")
                .shape,
            (std::vector<std::int64_t>{2, 3}));
}

// --- broken files, each refused in one line naming the source ---

TEST(NpyBroken, BadMagic) {
  EXPECT_EQ(error_of("PK\x03\x04 this is a zip"), "0001.cls.npy: not a .npy file (bad magic)");
  EXPECT_EQ(error_of(""), "0001.cls.npy: truncated .npy header (0 bytes)");
  EXPECT_EQ(error_of("\x93NUM"), "0001.cls.npy: truncated .npy header (4 bytes)");
}

TEST(NpyBroken, TruncatedHeader) {
  std::string good = cx::io::write_npy(NdArray::from_floats({1, 2, 3, 4, 5, 6, 7}, {7}));
  EXPECT_EQ(error_of(good.substr(0, 9)), "0001.cls.npy: truncated .npy header (9 bytes)");
  EXPECT_EQ(error_of(good.substr(0, 40)), "0001.cls.npy: header length 118 past the end of the file (40 bytes)");
  EXPECT_THROW(cx::io::read_npy(good.substr(0, 40), "x"), cx::TruncatedError);
  std::string huge = good;
  huge[8] = '\xff';
  huge[9] = '\xff';
  EXPECT_EQ(error_of(huge), "0001.cls.npy: header length 65535 past the end of the file (156 bytes)");
}

TEST(NpyBroken, DataShorterOrLongerThanShape) {
  std::string good = cx::io::write_npy(NdArray::from_floats({1, 2, 3, 4, 5, 6, 7}, {7}));
  EXPECT_EQ(error_of(good.substr(0, good.size() - 8)), "0001.cls.npy: data holds 20 bytes, shape (7,) of <f4 needs 28");
  EXPECT_THROW(cx::io::read_npy(good.substr(0, good.size() - 1), "x"), cx::TruncatedError);
  EXPECT_EQ(error_of(good + "xx"), "0001.cls.npy: 2 unexpected bytes after the data of shape (7,) <f4");
  EXPECT_EQ(error_of(handmade("{'descr': '<f4', 'fortran_order': False, 'shape': (4294967296, 4294967296), }", "")),
            "0001.cls.npy: data holds 0 bytes, shape (4294967296, 4294967296) of <f4 needs more");
}

// Found by fuzz/npy: with a zero dimension the data check passed (0 bytes needed), and the other
// dimensions' product then overflowed int64 in numel() (UBSan: signed integer overflow) for
// every reader that asked the array its size.
TEST(NpyBroken, ZeroDimensionBesideAnOverflowingProduct) {
  EXPECT_EQ(error_of(handmade("{'descr': '<f4', 'fortran_order': False, 'shape': (5000000000, 0, 5000000000), }", "")),
            "0001.cls.npy: shape (5000000000, 0, 5000000000) has more than 2^63 elements besides its zero");
  const NdArray a = cx::io::read_npy(handmade("{'descr': '<f4', 'fortran_order': False, 'shape': (0, 4000000000), }", ""), "x");
  EXPECT_EQ(a.numel(), 0);
  EXPECT_TRUE(a.to_floats().empty());
}

TEST(NpyBroken, FortranOrder) {
  EXPECT_EQ(error_of(handmade("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 3), }", std::string(24, '\0'))),
            "0001.cls.npy: Fortran-order arrays are not supported (fortran_order: True)");
}

TEST(NpyBroken, BigEndianObjectAndStructuredDtypes) {
  EXPECT_EQ(error_of(handmade("{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", std::string(8, '\0'))),
            "0001.cls.npy: big-endian dtype '>f4' is not supported");
  EXPECT_EQ(error_of(handmade("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", std::string(16, '\0'))),
            "0001.cls.npy: object dtype '|O' is not supported (it would need pickle)");
  EXPECT_EQ(error_of(handmade("{'descr': [('a', '<f4'), ('b', '<i4')], 'fortran_order': False, 'shape': (1,), }",
                              std::string(8, '\0'))),
            "0001.cls.npy: structured dtype [('a', '<f4'), ('b', '<i4')] is not supported");
  EXPECT_EQ(error_of(handmade("{'descr': '<U8', 'fortran_order': False, 'shape': (1,), }", std::string(32, '\0'))),
            "0001.cls.npy: unsupported dtype '<U8'");
  // One-byte types carry no byte order; any marker is fine.
  EXPECT_EQ(error_of(handmade("{'descr': '>u1', 'fortran_order': False, 'shape': (1,), }", "a")), "");
}

TEST(NpyBroken, MalformedHeaders) {
  EXPECT_EQ(error_of(handmade("{'descr': '<f4', 'shape': (2,), }", std::string(8, '\0'))),
            "0001.cls.npy: malformed .npy header: no 'fortran_order' key");
  EXPECT_EQ(error_of(handmade("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", "")),
            "0001.cls.npy: negative dimension in shape (-2,)");
  EXPECT_EQ(error_of(handmade("{'descr': '<f4', 'fortran_order': False, 'shape': [2], }", std::string(8, '\0'))),
            "0001.cls.npy: malformed .npy header: 'shape' is not a tuple");
  EXPECT_EQ(error_of(handmade("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1}", "")),
            "0001.cls.npy: malformed .npy header: unexpected value at byte 65");
  EXPECT_EQ(error_of(handmade("{'descr': '<f4', 'fortran_order': 0, 'shape': (2,), }", "")),
            "0001.cls.npy: malformed .npy header: unexpected value at byte 34");
  EXPECT_EQ(error_of(handmade("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 'y'}", std::string(8, '\0'))),
            "0001.cls.npy: malformed .npy header: unexpected key 'x'");
  std::string v4 = handmade("{'descr': '<f4', 'fortran_order': False, 'shape': (), }", std::string(4, '\0'));
  v4[6] = 4;
  EXPECT_EQ(error_of(v4), "0001.cls.npy: unsupported .npy format version 4.0");
}
