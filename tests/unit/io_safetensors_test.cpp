// lib/cx/io/safetensors: round trips, the shared tiny model checked against Python's reading of the
// same bytes, Python reading our files, and handcrafted broken headers refused by name.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cx/cli/error.hpp"
#include "cx/io/safetensors.hpp"
#include "io_python_helper.hpp"

namespace fs = std::filesystem;
using cx::io::DType;
using cx::io::NdArray;
using cx::io::SafetensorsFile;

namespace {

fs::path shared_dir() {
  if (const char* e = std::getenv("CX_SHARED")) return e;
  return CX_SHARED_DIR;
}

fs::path temp_dir() {
  fs::path d = fs::temp_directory_path() / ("cx_safetensors_test_" + std::to_string(::getpid()));
  fs::create_directories(d);
  return d;
}

// A file from a header length, header text and data bytes.
std::string raw_with_length(std::uint64_t n, const std::string& header, const std::string& data) {
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((n >> (8 * i)) & 0xFF);
  return out + header + data;
}

std::string raw(const std::string& header, const std::string& data) {
  return raw_with_length(header.size(), header, data);
}

// The error message of parsing `bytes` as "model.safetensors", or "" if it parsed.
std::string error_of(const std::string& bytes) {
  try {
    SafetensorsFile::from_bytes(bytes, "model.safetensors");
  } catch (const cx::Error& e) {
    return e.what();
  }
  return "";
}

void expect_refused(const std::string& bytes, const std::string& message) {
  std::string got = error_of(bytes);
  EXPECT_EQ(got, "model.safetensors: " + message);
  EXPECT_EQ(got.find('\n'), std::string::npos) << "one line";
}

NdArray make(DType t, std::vector<std::int64_t> shape, std::uint8_t seed) {
  NdArray a = NdArray::zeros(t, std::move(shape));
  for (std::size_t i = 0; i < a.data.size(); ++i) a.data[i] = static_cast<std::uint8_t>(seed + 7 * i);
  return a;
}

}  // namespace

TEST(Safetensors, RoundTripKeepsOrderDtypesShapesAndMetadata) {
  cx::io::NamedArrays arrays = {
      {"z.weight", NdArray::from_floats({1.5f, -2.0f, 0.25f, 1e-8f, 3.0f, 4.0f}, {2, 3})},
      {"a.half", make(DType::f16, {5}, 1)},
      {"b.bf16", make(DType::bf16, {1, 3}, 2)},
      {"ids", make(DType::i64, {3}, 3)},
      {"mask", make(DType::u8, {7}, 4)},
      {"flags", make(DType::boolean, {2}, 0)},
      {"scalar", make(DType::f64, {}, 5)},
      {"empty", make(DType::f32, {0, 4}, 6)},
  };
  std::map<std::string, std::string> meta = {{"format", "pt"}, {"encoder", "tiny \"vit\""}};
  std::string bytes = cx::io::write_safetensors(arrays, meta);

  std::uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);  // the test machine is little-endian, as the format is
  ASSERT_LE(8 + n, bytes.size());
  EXPECT_EQ((8 + n) % 8, 0u) << "data must start 8-aligned";
  std::string header = bytes.substr(8, n);
  // Exact bytes: metadata first, tensors in the given order, compact JSON, space padding.
  std::string expected =
      R"({"__metadata__":{"encoder":"tiny \"vit\"","format":"pt"},)"
      R"("z.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]},)"
      R"("a.half":{"dtype":"F16","shape":[5],"data_offsets":[24,34]},)"
      R"("b.bf16":{"dtype":"BF16","shape":[1,3],"data_offsets":[34,40]},)"
      R"("ids":{"dtype":"I64","shape":[3],"data_offsets":[40,64]},)"
      R"("mask":{"dtype":"U8","shape":[7],"data_offsets":[64,71]},)"
      R"("flags":{"dtype":"BOOL","shape":[2],"data_offsets":[71,73]},)"
      R"("scalar":{"dtype":"F64","shape":[],"data_offsets":[73,81]},)"
      R"("empty":{"dtype":"F32","shape":[0,4],"data_offsets":[81,81]}})";
  ASSERT_GE(header.size(), expected.size());
  EXPECT_EQ(header.substr(0, expected.size()), expected);
  EXPECT_EQ(header.substr(expected.size()), std::string(header.size() - expected.size(), ' '));
  EXPECT_LT(header.size() - expected.size(), 8u);

  fs::path dir = temp_dir();
  fs::path path = dir / "model.safetensors";
  cx::io::write_safetensors_file(path.string(), arrays, meta);
  std::ifstream f(path, std::ios::binary);
  std::stringstream s;
  s << f.rdbuf();
  EXPECT_EQ(s.str(), bytes) << "the file writer and the in-memory writer agree";

  for (const auto& st : {SafetensorsFile::from_bytes(bytes, "mem"), SafetensorsFile::open(path.string())}) {
    EXPECT_EQ(st.metadata(), meta);
    ASSERT_EQ(st.tensors().size(), arrays.size());
    for (const auto& [name, array] : arrays) {
      ASSERT_TRUE(st.has(name)) << name;
      NdArray back = st.at(name).copy();
      EXPECT_EQ(back.dtype, array.dtype) << name;
      EXPECT_EQ(back.shape, array.shape) << name;
      EXPECT_EQ(back.data, array.data) << name;
      EXPECT_EQ(st.at(name).numel(), array.numel()) << name;
    }
  }
  // The mapping outlives the object it came from: views stay valid while any copy is alive.
  SafetensorsFile kept = SafetensorsFile::open(path.string());
  std::vector<float> w;
  {
    SafetensorsFile copy = kept;
    kept = SafetensorsFile::from_bytes(bytes, "mem");
    w = copy.at("z.weight").copy().to_floats();
  }
  EXPECT_EQ(w, (std::vector<float>{1.5f, -2.0f, 0.25f, 1e-8f, 3.0f, 4.0f}));
  fs::remove_all(dir);
}

TEST(Safetensors, MissingTensorIsNamed) {
  auto st = SafetensorsFile::from_bytes(cx::io::write_safetensors({{"a", make(DType::u8, {1}, 0)}}), "head.safetensors");
  try {
    st.at("b");
    FAIL() << "expected an error";
  } catch (const cx::Error& e) {
    EXPECT_STREQ(e.what(), "head.safetensors: no tensor 'b'");
  }
}

TEST(Safetensors, WriterRefusesInconsistentArrays) {
  NdArray bad = NdArray::zeros(DType::f32, {2});
  bad.data.resize(7);
  EXPECT_THROW(cx::io::write_safetensors({{"x", bad}}), cx::Error);
  EXPECT_THROW(cx::io::write_safetensors({{"x", make(DType::u8, {1}, 0)}, {"x", make(DType::u8, {1}, 0)}}), cx::Error);
  EXPECT_THROW(cx::io::write_safetensors({{"__metadata__", make(DType::u8, {1}, 0)}}), cx::Error);
}

// Python (json + numpy, no safetensors package) reads what we write.
TEST(Safetensors, PythonReadsOurFile) {
  fs::path dir = temp_dir();
  fs::path path = dir / "out.safetensors";
  NdArray ids = NdArray::zeros(DType::i64, {2, 2});
  for (int i = 0; i < 4; ++i) ids.as<std::int64_t>()[i] = (i - 2) * 1000000000000LL;
  NdArray half = NdArray::zeros(DType::f16, {3});
  half.as<std::uint16_t>()[0] = cx::io::float_to_half(1.0f);
  half.as<std::uint16_t>()[1] = cx::io::float_to_half(-0.5f);
  half.as<std::uint16_t>()[2] = cx::io::float_to_half(65504.0f);
  cx::io::write_safetensors_file(path.string(),
                                 {{"w", NdArray::from_floats({0.5f, 1.25f, -3.0f}, {3})}, {"ids", ids}, {"h", half}},
                                 {{"note", "hello"}});
  auto r = cx_test::run_python(R"PY(
import json, struct, sys
try:
    import numpy as np
except ImportError:
    sys.exit(77)
b = open(sys.argv[1], 'rb').read()
n, = struct.unpack('<Q', b[:8])
assert (8 + n) % 8 == 0
h = json.loads(b[8:8 + n])
data = b[8 + n:]
types = {'F32': '<f4', 'I64': '<i8', 'F16': '<f2'}
out = {'keys': list(h.keys()), 'meta': h['__metadata__']}
for k, v in h.items():
    if k == '__metadata__':
        continue
    s, e = v['data_offsets']
    a = np.frombuffer(data[s:e], dtype=types[v['dtype']]).reshape(v['shape'])
    out[k] = [float(x) for x in a.ravel()]
print(json.dumps(out))
)PY",
                               {path.string()});
  if (!r.ran) GTEST_SKIP() << r.why_not;
  ASSERT_EQ(r.status, 0) << r.output;
  auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["keys"], (nlohmann::json{"__metadata__", "w", "ids", "h"}));
  EXPECT_EQ(j["meta"], (nlohmann::json{{"note", "hello"}}));
  EXPECT_EQ(j["w"], (nlohmann::json{0.5, 1.25, -3.0}));
  EXPECT_EQ(j["ids"], (nlohmann::json{-2e12, -1e12, 0.0, 1e12}));
  EXPECT_EQ(j["h"], (nlohmann::json{1.0, -0.5, 65504.0}));
  fs::remove_all(dir);
}

// The shared tiny DINOv2 checkpoint: 44 tensors; values compared with NumPy's reading of the bytes.
TEST(Safetensors, ReadsTheSharedTinyModel) {
  fs::path path = shared_dir() / "fixtures/hf/tiny/model.safetensors";
  if (!fs::exists(path)) GTEST_SKIP() << path << " not found";
  auto st = SafetensorsFile::open(path.string());
  EXPECT_EQ(st.tensors().size(), 44u);
  EXPECT_EQ(st.metadata(), (std::map<std::string, std::string>{{"format", "pt"}}));
  const std::string name = "embeddings.patch_embeddings.projection.weight";
  ASSERT_TRUE(st.has(name));
  const auto& view = st.at(name);
  EXPECT_EQ(view.dtype, DType::f32);
  EXPECT_EQ(view.shape, (std::vector<std::int64_t>{48, 3, 14, 14}));
  std::vector<float> ours = view.copy().to_floats();

  auto r = cx_test::run_python(R"PY(
import json, struct, sys
try:
    import numpy as np
except ImportError:
    sys.exit(77)
b = open(sys.argv[1], 'rb').read()
n, = struct.unpack('<Q', b[:8])
h = json.loads(b[8:8 + n])
v = h[sys.argv[2]]
s, e = v['data_offsets']
a = np.frombuffer(b[8 + n + s:8 + n + e], dtype='<f4').reshape(v['shape'])
print(json.dumps({'count': len([k for k in h if k != '__metadata__']), 'shape': list(a.shape),
                  'values': [float(x) for x in a.ravel()]}))
)PY",
                               {path.string(), name});
  if (!r.ran) GTEST_SKIP() << r.why_not;
  ASSERT_EQ(r.status, 0) << r.output;
  auto j = nlohmann::json::parse(r.output);
  EXPECT_EQ(j["count"], 44);
  EXPECT_EQ(j["shape"], (nlohmann::json{48, 3, 14, 14}));
  auto expected = j["values"].get<std::vector<double>>();
  ASSERT_EQ(expected.size(), ours.size());
  // Exact: both read the same float32 bytes; Python's repr of a float32 widened to double round-trips.
  for (std::size_t i = 0; i < ours.size(); ++i) ASSERT_EQ(static_cast<double>(ours[i]), expected[i]) << "index " << i;
}

// F16 and BF16 to float32 (and back) against torch 1.13's conversions of the same values.
TEST(Safetensors, HalfAndBfloat16AgainstTorch) {
  auto r = cx_test::run_python(R"PY(
import json, sys
try:
    import torch
except ImportError:
    sys.exit(77)
torch.manual_seed(0)
x = torch.cat([torch.randn(2000) * 3, torch.randn(500) * 1e-5, torch.randn(200) * 1e-8, torch.randn(200) * 1e5,
               torch.tensor([0.0, -0.0, 1.0, -1.0, 65504.0, 65520.0, 65519.0, 1e-7, 5.960464477539063e-08,
                             2.9802322387695312e-08, 2.98023259e-08, 1.00390625, 1.01171875, 3.4e38,
                             float('inf'), float('-inf')])]).float()
h = x.half()
b = x.bfloat16()
# Bit patterns, not floats: JSON has no Inf.
def bits16(t):
    return [int(v) & 0xFFFF for v in t.view(torch.int16).tolist()]
def bits32(t):
    return [int(v) & 0xFFFFFFFF for v in t.view(torch.int32).tolist()]
print(json.dumps({'x': bits32(x), 'h_bits': bits16(h), 'h_float': bits32(h.float()),
                  'b_bits': bits16(b), 'b_float': bits32(b.float())}))
)PY");
  if (!r.ran) GTEST_SKIP() << r.why_not;
  ASSERT_EQ(r.status, 0) << r.output;
  auto j = nlohmann::json::parse(r.output);
  auto x = j["x"].get<std::vector<std::uint32_t>>();
  auto hb = j["h_bits"].get<std::vector<std::uint16_t>>();
  auto bb = j["b_bits"].get<std::vector<std::uint16_t>>();
  auto hf = j["h_float"].get<std::vector<std::uint32_t>>();
  auto bf = j["b_float"].get<std::vector<std::uint32_t>>();
  auto bits = [](float f) {
    std::uint32_t u;
    std::memcpy(&u, &f, 4);
    return u;
  };
  const auto n = static_cast<std::int64_t>(x.size());

  // Store torch's bits in a safetensors file and read them back through NdArray::to_floats.
  NdArray h = NdArray::zeros(DType::f16, {n}), b = NdArray::zeros(DType::bf16, {n});
  std::memcpy(h.data.data(), hb.data(), 2 * n);
  std::memcpy(b.data.data(), bb.data(), 2 * n);
  auto st = SafetensorsFile::from_bytes(cx::io::write_safetensors({{"h", h}, {"b", b}}), "conv.safetensors");
  auto hfl = st.at("h").copy().to_floats();
  auto bfl = st.at("b").copy().to_floats();
  for (std::int64_t i = 0; i < n; ++i) {
    // Exact: widening half/bf16 to float32 is lossless, so any difference is a bug.
    ASSERT_EQ(bits(hfl[i]), hf[i]) << "half bits " << hb[i];
    ASSERT_EQ(bits(bfl[i]), bf[i]) << "bf16 bits " << bb[i];
    // Exact: both round to nearest even.
    float xf;
    std::memcpy(&xf, &x[i], 4);
    ASSERT_EQ(cx::io::float_to_half(xf), hb[i]) << "x = " << xf;
    ASSERT_EQ(cx::io::float_to_bf16(xf), bb[i]) << "x = " << xf;
  }
}

TEST(Safetensors, NaNStaysNaN) {
  const float nan = std::nanf("");
  EXPECT_TRUE(std::isnan(cx::io::half_to_float(cx::io::float_to_half(nan))));
  EXPECT_TRUE(std::isnan(cx::io::bf16_to_float(cx::io::float_to_bf16(nan))));
  // A NaN whose payload sits only in the low bits must not collapse into Inf.
  std::uint32_t low_payload = 0x7F800001;
  float f;
  std::memcpy(&f, &low_payload, 4);
  EXPECT_TRUE(std::isnan(cx::io::half_to_float(cx::io::float_to_half(f))));
  EXPECT_TRUE(std::isnan(cx::io::bf16_to_float(cx::io::float_to_bf16(f))));
}

// --- broken headers, each refused in one line naming the file and the problem ---

TEST(SafetensorsBroken, FileShorterThanTheLength) {
  std::string got = error_of("abc");
  EXPECT_EQ(got, "model.safetensors: file is 3 bytes, too short for a safetensors header length (8 bytes)");
  EXPECT_THROW(SafetensorsFile::from_bytes("", "x"), cx::TruncatedError);
}

TEST(SafetensorsBroken, HeaderLengthPastEndOfFile) {
  std::string bytes = raw_with_length(1000, R"({"x":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})", "a");
  expect_refused(bytes, "header length 1000 past the end of the file (62 bytes)");
  EXPECT_THROW(SafetensorsFile::from_bytes(bytes, "m"), cx::TruncatedError);
  // A length so large that it would wrap a naive `8 + n <= size` check.
  expect_refused(raw_with_length(UINT64_MAX - 1, "{}", ""), "header length 18446744073709551614 exceeds the limit of 100 MB");
  expect_refused(raw_with_length(100'000'001, "{}", ""), "header length 100000001 exceeds the limit of 100 MB");
}

TEST(SafetensorsBroken, OffsetsPastTheEnd) {
  expect_refused(raw(R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,12]}})", std::string(8, '\0')),
                 "tensor 'x' data_offsets [0, 12] past the end of the data (8 bytes)");
  expect_refused(raw(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[8,4]}})", std::string(8, '\0')),
                 "tensor 'x' data_offsets [8, 4] end before they begin");
  expect_refused(raw(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[-4,0]}})", std::string(8, '\0')),
                 "tensor 'x' data_offsets [-4,0] are not two non-negative integers");
  expect_refused(raw(R"({"x":{"dtype":"F32","shape":[1],"data_offsets":[0]}})", std::string(4, '\0')),
                 "tensor 'x' data_offsets [0] are not two non-negative integers");
}

TEST(SafetensorsBroken, OverlappingTensors) {
  expect_refused(raw(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                     R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})",
                     std::string(12, '\0')),
                 "tensor 'b' data_offsets [4, 12] overlap tensor 'a' [0, 8]");
  // The same bytes claimed twice.
  expect_refused(raw(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                     R"("b":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}})",
                     std::string(8, '\0')),
                 "tensor 'b' data_offsets [0, 8] overlap tensor 'a' [0, 8]");
}

TEST(SafetensorsBroken, GapInTheData) {
  expect_refused(raw(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                     R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                     std::string(12, '\0')),
                 "gap in the data: bytes [4, 8) belong to no tensor (before tensor 'b')");
  expect_refused(raw(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", std::string(6, '\0')),
                 "gap in the data: bytes [4, 6) at its end belong to no tensor");
}

TEST(SafetensorsBroken, ShapeAndSizeDisagree) {
  expect_refused(raw(R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", std::string(8, '\0')),
                 "tensor 'x' data_offsets [0, 8] hold 8 bytes, but shape [3] of F32 needs 12");
  expect_refused(raw(R"({"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", std::string(8, '\0')),
                 "tensor 'x' shape [-2] holds -2, not a non-negative integer");
  expect_refused(raw(R"({"x":{"dtype":"F32","shape":[1.5],"data_offsets":[0,8]}})", std::string(8, '\0')),
                 "tensor 'x' shape [1.5] holds 1.5, not a non-negative integer");
  // A product that overflows 64 bits must not wrap around to a small size.
  expect_refused(raw(R"({"x":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", ""),
                 "tensor 'x' shape [4294967296,4294967296] is larger than the data (0 bytes)");
  EXPECT_EQ(error_of(raw(R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", std::string(8, '\0'))), "");
}

TEST(SafetensorsBroken, UnknownDtype) {
  expect_refused(raw(R"({"x":{"dtype":"Q4_0","shape":[1],"data_offsets":[0,1]}})", "a"),
                 "tensor 'x': unsupported dtype 'Q4_0'");
  expect_refused(raw(R"({"x":{"dtype":4,"shape":[1],"data_offsets":[0,1]}})", "a"),
                 "tensor 'x' dtype is number, not a string");
  expect_refused(raw(R"({"x":{"shape":[1],"data_offsets":[0,1]}})", "a"), "tensor 'x' has no dtype");
}

TEST(SafetensorsBroken, HeaderNotAJsonObject) {
  expect_refused(raw("[1, 2]", ""), "header is not a JSON object");
  expect_refused(raw(R"("text")", ""), "header is not a JSON object");
  std::string got = error_of(raw(R"({"x": )", ""));
  EXPECT_EQ(got.rfind("model.safetensors: header is not valid JSON: ", 0), 0u) << got;
  EXPECT_EQ(got.find('\n'), std::string::npos);
  expect_refused(raw(R"({"x":[1]})", ""), "tensor 'x' is array, not an object");
  expect_refused(raw(R"({"a":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                     R"("a":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})",
                     "ab"),
                 "header names 'a' twice");
}

TEST(SafetensorsBroken, MetadataNotStringToString) {
  expect_refused(raw(R"({"__metadata__":{"epoch":3}})", ""), "__metadata__ must map strings to strings: 'epoch' is number");
  expect_refused(raw(R"({"__metadata__":["a"]})", ""), "__metadata__ must map strings to strings, it is array");
  expect_refused(raw(R"({"__metadata__":{"a":{"b":"c"}}})", ""), "__metadata__ must map strings to strings: 'a' is object");
  EXPECT_EQ(error_of(raw(R"({"__metadata__":{"a":"b"}})", "")), "") << "metadata alone, no tensors, is valid";
}
