// lib/cx/dicom: decoding real files against pydicom goldens, every transfer syntax through files
// that DCMTK's own command-line tools (and OpenJPEG's opj_compress) encode at test time, crafted
// byte-level edge cases, and the errors for bad input.
//
// Where the variants come from, and why at test time: the source pixels are made here (so the
// expected values are known exactly); the encoders are the installed dcmtk/libopenjp2-tools
// programs, which are independent of our decoding code. Generating them in a temporary folder
// keeps the repository free of binary fixtures and exercises whatever DCMTK is installed.
// Without those programs the variant tests skip with a message.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <jpeglib.h>
#include <nlohmann/json.hpp>

#include "cx/cli/error.hpp"
#include "cx/dicom/dicom.hpp"
#include "cx/image/window.hpp"
#include "cx/io/sha256.hpp"
#include "dicom_writer_helper.hpp"
#include "peak_rss.hpp"

namespace fs = std::filesystem;
using cx::dicom::DicomImage;
using cx::dicom::read_dicom;
using cx_test::Bytes;
using cx_test::Dataset;

namespace {

fs::path samples_dir() {
  const char* env = std::getenv("CX_SHARED");
  return fs::path(env && *env ? env : CX_SHARED_DIR) / "samples";
}

nlohmann::json goldens() {
  std::ifstream f(fs::path(CX_TEST_DATA_DIR) / "dicom_goldens.json");
  if (!f) throw std::runtime_error("tests/data/dicom_goldens.json missing: run tests/data/make_dicom_goldens.py");
  return nlohmann::json::parse(f);
}

const nlohmann::json& golden_for(const std::string& rel) {
  static const nlohmann::json g = goldens();
  for (const auto& f : g["files"]) {
    if (f["path"] == rel) return f;
  }
  throw std::runtime_error("no golden for " + rel);
}

std::string sha_int32le(const std::vector<std::int32_t>& v) {
  Bytes b;
  for (auto x : v) cx_test::put32(b, static_cast<std::uint32_t>(x));
  return cx::io::sha256_hex(b.data(), b.size());
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "cx-dicom-test-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  fs::path operator/(const std::string& name) const { return path_ / name; }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

void write_file(const fs::path& p, const Bytes& b) {
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
}

Bytes read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(f), {});
}

bool have_tool(const std::string& name) {
  return std::system(("command -v " + name + " >/dev/null 2>&1").c_str()) == 0;
}

// Runs a command, failing the test with its stderr when it fails.
void run_ok(const std::string& cmd, const TempDir& dir) {
  const fs::path err = dir / "stderr.txt";
  const int rc = std::system((cmd + " 2>" + err.string()).c_str());
  if (rc != 0) {
    std::ifstream f(err);
    std::stringstream s;
    s << f.rdbuf();
    FAIL() << cmd << " failed (" << rc << "): " << s.str();
  }
}

std::string error_of(const std::string& path) {
  try {
    read_dicom(path);
  } catch (const cx::Error& e) {
    return e.what();
  }
  return "(no error)";
}

// Known source images with every kind of value the stored range allows.
std::vector<std::int32_t> values8(int w, int h) {
  std::vector<std::int32_t> v;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) v.push_back((x * 7 + y * 13 + (x * y) % 11) & 0xFF);
  return v;
}
std::vector<std::int32_t> values12(int w, int h) {
  std::vector<std::int32_t> v;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) v.push_back((x * 97 + y * 331 + x * y * 5) % 4096);
  return v;
}
std::vector<std::int32_t> values_signed16(int w, int h) {
  std::vector<std::int32_t> v;
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) v.push_back((x * 977 + y * 3331 + x * y) % 60001 - 30000);
  return v;
}

Bytes encode_jpeg_gray(const std::vector<std::uint8_t>& px, int w, int h, int quality) {
  jpeg_compress_struct c;
  jpeg_error_mgr err;
  c.err = jpeg_std_error(&err);
  jpeg_create_compress(&c);
  unsigned char* out = nullptr;
  unsigned long size = 0;
  jpeg_mem_dest(&c, &out, &size);
  c.image_width = w;
  c.image_height = h;
  c.input_components = 1;
  c.in_color_space = JCS_GRAYSCALE;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, quality, TRUE);
  jpeg_start_compress(&c, TRUE);
  for (int y = 0; y < h; ++y) {
    JSAMPROW row = const_cast<JSAMPROW>(px.data() + static_cast<std::size_t>(y) * w);
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  Bytes b(out, out + size);
  std::free(out);
  return b;
}

std::vector<std::uint8_t> decode_jpeg_gray(const Bytes& jpeg) {
  jpeg_decompress_struct d;
  jpeg_error_mgr err;
  d.err = jpeg_std_error(&err);
  jpeg_create_decompress(&d);
  jpeg_mem_src(&d, jpeg.data(), jpeg.size());
  jpeg_read_header(&d, TRUE);
  jpeg_start_decompress(&d);
  std::vector<std::uint8_t> px(static_cast<std::size_t>(d.output_width) * d.output_height);
  while (d.output_scanline < d.output_height) {
    JSAMPROW row = px.data() + static_cast<std::size_t>(d.output_scanline) * d.output_width;
    jpeg_read_scanlines(&d, &row, 1);
  }
  jpeg_finish_decompress(&d);
  jpeg_destroy_decompress(&d);
  return px;
}

const int kW = 37, kH = 23;  // odd sizes: 851 pixels, an odd byte count at 8 bits

}  // namespace

// ---------------------------------------------------------------------------------------------
// Real files, against pydicom (tests/data/make_dicom_goldens.py).

class RealDicom : public ::testing::Test {
 protected:
  void check_against_golden(const std::string& rel, int grid_tolerance) {
    const fs::path path = samples_dir() / rel;
    if (!fs::exists(path)) GTEST_SKIP() << path << " not found (shared samples absent)";
    const nlohmann::json& g = golden_for(rel);
    const DicomImage im = read_dicom(path.string());
    EXPECT_EQ(im.width, g["width"].get<int>());
    EXPECT_EQ(im.height, g["height"].get<int>());
    EXPECT_EQ(im.bits_allocated, g["bits_allocated"].get<int>());
    EXPECT_EQ(im.bits_stored, g["bits_stored"].get<int>());
    EXPECT_EQ(im.is_signed, g["signed"].get<bool>());
    EXPECT_EQ(im.photometric, g["photometric"].get<std::string>());
    EXPECT_EQ(im.transfer_syntax_uid, g["transfer_syntax_uid"].get<std::string>());
    ASSERT_EQ(im.stored.size(), im.pixel_count());

    // Grid first: on a mismatch it says where and by how much.
    const int stride = g["grid_stride"];
    int worst = 0;
    for (std::size_t r = 0; r < g["grid"].size(); ++r) {
      for (std::size_t c = 0; c < g["grid"][r].size(); ++c) {
        const int want = g["grid"][r][c];
        const int got = im.stored[r * stride * im.width + c * stride];
        worst = std::max(worst, std::abs(want - got));
      }
    }
    EXPECT_LE(worst, grid_tolerance) << "grid samples differ from pydicom by up to " << worst;
    for (const auto& p : g["pixels"]) {
      EXPECT_NEAR(im.stored[p[0].get<int>() * im.width + p[1].get<int>()], p[2].get<int>(), grid_tolerance)
          << "pixel (" << p[0] << "," << p[1] << ")";
    }
    const auto [lo, hi] = std::minmax_element(im.stored.begin(), im.stored.end());
    EXPECT_EQ(*lo, g["stored_min"].get<int>());
    EXPECT_EQ(*hi, g["stored_max"].get<int>());
    // Whole image, exactly: on this system DCMTK's IJG decoder and Pillow's libjpeg-turbo agree
    // bit for bit on the SIIM file (both use the accurate integer IDCT), and both J2K paths use
    // OpenJPEG 2.5. A different libjpeg build could differ by 1 in places; the grid check above
    // would then show it.
    EXPECT_EQ(sha_int32le(im.stored), g["stored_sha256_int32le"].get<std::string>());
  }
};

TEST_F(RealDicom, SiimJpegBaselineMatchesPydicom) {
  check_against_golden("siim/siim_cr_jpeg_baseline.dcm", 1);  // ±1: IDCT rounding may differ between libjpeg builds
  if (HasFatalFailure() || IsSkipped()) return;
  const DicomImage im = read_dicom((samples_dir() / "siim/siim_cr_jpeg_baseline.dcm").string());
  EXPECT_EQ(im.transfer_syntax_name, "JPEG Baseline");
  EXPECT_EQ(im.modality, "CR");
  EXPECT_EQ(im.view_position, "PA");
  EXPECT_EQ(im.patient_sex, "M");
  EXPECT_EQ(im.patient_age, "62");
  EXPECT_EQ(im.body_part_examined, "CHEST");
  ASSERT_TRUE(im.pixel_spacing.has_value());
  EXPECT_DOUBLE_EQ(im.pixel_spacing->first, 0.168);
  EXPECT_EQ(im.pixel_spacing_source, "PixelSpacing");
  EXPECT_TRUE(im.windows.empty());
  EXPECT_TRUE(im.has_meta_header);
  EXPECT_EQ(im.sop_instance_uid, "1.2.276.0.7230010.3.1.4.8323329.6904.1517875201.850819");
}

TEST_F(RealDicom, SiimMonochrome1HeaderKeepsThePixels) {
  check_against_golden("siim/siim_header_monochrome1.dcm", 1);  // same pixels, same tolerance
  if (HasFatalFailure() || IsSkipped()) return;
  const DicomImage a = read_dicom((samples_dir() / "siim/siim_cr_jpeg_baseline.dcm").string());
  const DicomImage b = read_dicom((samples_dir() / "siim/siim_header_monochrome1.dcm").string());
  EXPECT_EQ(a.stored, b.stored);  // only the header differs; inversion is the display step's job
}

TEST_F(RealDicom, NemaJpeg2000MatchesPydicomAndOpjDecompress) {
  check_against_golden("nema/RG1_J2KI.dcm", 0);  // exact: the same OpenJPEG decodes in both
  if (HasFatalFailure() || IsSkipped()) return;
  const DicomImage im = read_dicom((samples_dir() / "nema/RG1_J2KI.dcm").string());
  EXPECT_EQ(im.transfer_syntax_uid, "1.2.840.10008.1.2.4.91");
  ASSERT_EQ(im.windows.size(), 1u);
  EXPECT_DOUBLE_EQ(im.windows[0].first, 15000);
  EXPECT_DOUBLE_EQ(im.windows[0].second, 30000);
  EXPECT_EQ(im.patient_sex, "F");
  EXPECT_FALSE(im.pixel_spacing.has_value());  // the file says 0.000\0.000: not a spacing
}

TEST_F(RealDicom, BytesApiMatchesFileApi) {
  const fs::path path = samples_dir() / "siim/siim_cr_jpeg_baseline.dcm";
  if (!fs::exists(path)) GTEST_SKIP() << path << " not found (shared samples absent)";
  const Bytes b = read_file(path);
  const DicomImage m = cx::dicom::read_dicom_bytes(b.data(), b.size(), "mem.dcm");
  const DicomImage f = read_dicom(path.string());
  EXPECT_EQ(m.stored, f.stored);
  EXPECT_EQ(m.photometric, f.photometric);
}

TEST_F(RealDicom, ConcurrentDecodesAgree) {
  // Codec registration happens once on first use; several threads racing into it must all work.
  const fs::path jpeg = samples_dir() / "siim/siim_cr_jpeg_baseline.dcm";
  const fs::path j2k = samples_dir() / "nema/RG1_J2KI.dcm";
  if (!fs::exists(jpeg) || !fs::exists(j2k)) GTEST_SKIP() << "shared samples absent";
  const std::string want_jpeg = golden_for("siim/siim_cr_jpeg_baseline.dcm")["stored_sha256_int32le"];
  const std::string want_j2k = golden_for("nema/RG1_J2KI.dcm")["stored_sha256_int32le"];
  std::vector<std::string> got(4);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      try {
        got[t] = sha_int32le(read_dicom((t % 2 ? j2k : jpeg).string()).stored);
      } catch (const std::exception& e) {
        got[t] = e.what();
      }
    });
  }
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) EXPECT_EQ(got[t], t % 2 ? want_j2k : want_jpeg) << "thread " << t;
}

// ---------------------------------------------------------------------------------------------
// Crafted files (our writer, PS3.5 byte layout).

TEST(CraftedDicom, ExplicitLittleEndianPart10) {
  TempDir dir;
  const auto v = values8(kW, kH);
  write_file(dir / "a.dcm", cx_test::part10(cx_test::image_dataset(kW, kH, 8, 8, false, "MONOCHROME2",
                                                                  cx_test::pixel_bytes(v, 8)),
                                            cx_test::kExplicitLE));
  const DicomImage im = read_dicom((dir / "a.dcm").string());
  EXPECT_EQ(im.width, kW);
  EXPECT_EQ(im.height, kH);
  EXPECT_EQ(im.stored, v);
  EXPECT_TRUE(im.has_meta_header);
  EXPECT_EQ(im.transfer_syntax_uid, cx_test::kExplicitLE);
  EXPECT_EQ(im.patient_sex, "F");
  EXPECT_EQ(im.patient_age, "045Y");
  EXPECT_EQ(im.view_position, "AP");
  EXPECT_EQ(im.patient_id, "TEST-17");
  ASSERT_TRUE(im.pixel_spacing);
  EXPECT_DOUBLE_EQ(im.pixel_spacing->first, 0.139);
  EXPECT_DOUBLE_EQ(im.pixel_spacing->second, 0.143);
  const nlohmann::json j = cx::dicom::dicom_metadata_json(im);
  EXPECT_EQ(j["view_position"], "AP");
  EXPECT_EQ(j["pixel_spacing"][1], 0.143);
  EXPECT_EQ(j["transfer_syntax"]["uid"], cx_test::kExplicitLE);
}

TEST(CraftedDicom, MetaHeaderWithoutPreamble) {
  TempDir dir;
  const auto v = values8(kW, kH);
  write_file(dir / "a.dcm", cx_test::part10(cx_test::image_dataset(kW, kH, 8, 8, false, "MONOCHROME2",
                                                                  cx_test::pixel_bytes(v, 8)),
                                            cx_test::kExplicitLE, /*preamble=*/false));
  const DicomImage im = read_dicom((dir / "a.dcm").string());
  EXPECT_EQ(im.stored, v);
  EXPECT_EQ(im.transfer_syntax_uid, cx_test::kExplicitLE);
}

TEST(CraftedDicom, BareImplicitDatasetWithoutMeta) {
  TempDir dir;
  const auto v = values12(kW, kH);
  write_file(dir / "a.dcm", cx_test::image_dataset(kW, kH, 16, 12, false, "MONOCHROME2", cx_test::pixel_bytes(v, 16))
                                .encode(/*explicit_vr=*/false));
  const DicomImage im = read_dicom((dir / "a.dcm").string());
  EXPECT_EQ(im.stored, v);
  EXPECT_FALSE(im.has_meta_header);
  EXPECT_EQ(im.transfer_syntax_uid, cx_test::kImplicitLE);
}

TEST(CraftedDicom, OddLengthPixelData) {
  TempDir dir;
  const std::vector<std::int32_t> v = {0, 10, 20, 30, 40, 50, 60, 70, 255};  // 3x3: 9 bytes
  Dataset ds = cx_test::image_dataset(3, 3, 8, 8, false, "MONOCHROME2", {});
  ds.raw(0x7FE0, 0x0010, "OB", cx_test::pixel_bytes(v, 8), /*keep_odd=*/true);
  const Bytes file = cx_test::part10(ds, cx_test::kExplicitLE);
  ASSERT_EQ(file[file.size() - 13], 9) << "the writer must have kept the odd length";
  write_file(dir / "odd.dcm", file);
  EXPECT_EQ(read_dicom((dir / "odd.dcm").string()).stored, v);
}

TEST(CraftedDicom, TwelveBitsInSixteenMaskHighBits) {
  // Bits 12-15 hold garbage (once overlay planes lived there): the stored value is bits 0-11.
  TempDir dir;
  const auto v = values12(kW, kH);
  std::vector<std::int32_t> raw(v);
  for (std::size_t i = 0; i < raw.size(); ++i) raw[i] |= static_cast<std::int32_t>((i * 7919) % 16) << 12;
  write_file(dir / "a.dcm", cx_test::part10(cx_test::image_dataset(kW, kH, 16, 12, false, "MONOCHROME2",
                                                                  cx_test::pixel_bytes(raw, 16)),
                                            cx_test::kExplicitLE));
  const DicomImage im = read_dicom((dir / "a.dcm").string());
  EXPECT_EQ(im.bits_stored, 12);
  EXPECT_EQ(im.stored, v);
}

TEST(CraftedDicom, HighBitAboveBitsStoredShifts) {
  // Retired but legal in old files: 12 bits stored at bits 4-15 (High Bit 15).
  TempDir dir;
  const auto v = values12(kW, kH);
  std::vector<std::int32_t> raw(v);
  for (auto& x : raw) x = (x << 4) | 0x5;
  write_file(dir / "a.dcm", cx_test::part10(cx_test::image_dataset(kW, kH, 16, 12, false, "MONOCHROME2",
                                                                  cx_test::pixel_bytes(raw, 16), 1, 15),
                                            cx_test::kExplicitLE));
  EXPECT_EQ(read_dicom((dir / "a.dcm").string()).stored, v);
}

TEST(CraftedDicom, SignedValuesAreSignExtendedFromBitsStored) {
  TempDir dir;
  // 12-bit signed in 16 allocated: -2048..2047; write the 12-bit two's complement with zeros above.
  std::vector<std::int32_t> v, raw;
  for (int i = 0; i < kW * kH; ++i) {
    const int x = (i * 37) % 4096 - 2048;
    v.push_back(x);
    raw.push_back(x & 0xFFF);
  }
  write_file(dir / "s12.dcm", cx_test::part10(cx_test::image_dataset(kW, kH, 16, 12, true, "MONOCHROME2",
                                                                    cx_test::pixel_bytes(raw, 16)),
                                              cx_test::kExplicitLE));
  const DicomImage im = read_dicom((dir / "s12.dcm").string());
  EXPECT_TRUE(im.is_signed);
  EXPECT_EQ(im.stored, v);
  const auto v16 = values_signed16(kW, kH);
  write_file(dir / "s16.dcm", cx_test::part10(cx_test::image_dataset(kW, kH, 16, 16, true, "MONOCHROME2",
                                                                    cx_test::pixel_bytes(v16, 16)),
                                              cx_test::kExplicitLE));
  EXPECT_EQ(read_dicom((dir / "s16.dcm").string()).stored, v16);
}

TEST(CraftedDicom, MultiFrameGivesFirstFrame) {
  TempDir dir;
  const auto v = values8(kW, kH);
  std::vector<std::int32_t> all(v);
  for (int f = 1; f < 3; ++f)
    for (auto x : v) all.push_back(255 - x);
  Dataset ds = cx_test::image_dataset(kW, kH, 8, 8, false, "MONOCHROME2", cx_test::pixel_bytes(all, 8));
  ds.str(0x0028, 0x0008, "IS", "3");
  write_file(dir / "mf.dcm", cx_test::part10(ds, cx_test::kExplicitLE));
  const DicomImage im = read_dicom((dir / "mf.dcm").string());
  EXPECT_EQ(im.frames, 3);
  EXPECT_EQ(im.stored, v);
}

TEST(CraftedDicom, RgbPlanarConfigurationOneIsInterleaved) {
  TempDir dir;
  const int w = 5, h = 4, n = w * h;
  std::vector<std::int32_t> planes(3 * n), want(3 * n);
  for (int i = 0; i < n; ++i)
    for (int k = 0; k < 3; ++k) {
      planes[k * n + i] = (i * 11 + k * 80) % 256;
      want[i * 3 + k] = planes[k * n + i];
    }
  Dataset ds = cx_test::image_dataset(w, h, 8, 8, false, "RGB", cx_test::pixel_bytes(planes, 8), 3);
  ds.us(0x0028, 0x0006, {1});
  write_file(dir / "rgb.dcm", cx_test::part10(ds, cx_test::kExplicitLE));
  const DicomImage im = read_dicom((dir / "rgb.dcm").string());
  EXPECT_EQ(im.samples_per_pixel, 3);
  EXPECT_EQ(im.stored, want);
}

TEST(CraftedDicom, WindowsLutsAndRescaleAreRead) {
  TempDir dir;
  const auto v = values12(kW, kH);
  Dataset ds = cx_test::image_dataset(kW, kH, 16, 12, false, "MONOCHROME1", cx_test::pixel_bytes(v, 16));
  ds.str(0x0028, 0x1050, "DS", "2000\\1000")
      .str(0x0028, 0x1051, "DS", "4000\\500")
      .str(0x0028, 0x1055, "LO", "FULL\\BONE")
      .str(0x0028, 0x1056, "CS", "LINEAR_EXACT")
      .str(0x0028, 0x1052, "DS", "-1024")
      .str(0x0028, 0x1053, "DS", "0.5");
  Dataset voi_item;
  voi_item.us(0x0028, 0x3002, {4, 100, 10}).us(0x0028, 0x3006, {0, 300, 700, 1023}).str(0x0028, 0x3003, "LO", "TEST LUT");
  ds.seq(0x0028, 0x3010, {voi_item});
  write_file(dir / "w.dcm", cx_test::part10(ds, cx_test::kExplicitLE));
  const DicomImage im = read_dicom((dir / "w.dcm").string());
  ASSERT_EQ(im.windows.size(), 2u);
  EXPECT_EQ(im.windows[1], std::make_pair(1000.0, 500.0));
  EXPECT_EQ(im.window_explanations, (std::vector<std::string>{"FULL", "BONE"}));
  EXPECT_EQ(im.voi_lut_function, "LINEAR_EXACT");
  EXPECT_DOUBLE_EQ(im.rescale_intercept, -1024);
  EXPECT_DOUBLE_EQ(im.rescale_slope, 0.5);
  ASSERT_TRUE(im.voi_lut);
  EXPECT_EQ(im.voi_lut->first_mapped, 100);
  EXPECT_EQ(im.voi_lut->bits, 10);
  EXPECT_EQ(im.voi_lut->data, (std::vector<std::uint16_t>{0, 300, 700, 1023}));
  EXPECT_EQ(im.voi_lut->explanation, "TEST LUT");
  EXPECT_FALSE(im.modality_lut);
}

TEST(CraftedDicom, SignedModalityLutFirstMapped) {
  // With signed pixels the LUT Descriptor's first mapped value is signed even when written as US.
  TempDir dir;
  const auto v = values_signed16(kW, kH);
  Dataset ds = cx_test::image_dataset(kW, kH, 16, 16, true, "MONOCHROME2", cx_test::pixel_bytes(v, 16));
  Dataset item;
  item.us(0x0028, 0x3002, {3, static_cast<std::uint16_t>(-1000 & 0xFFFF), 16}).us(0x0028, 0x3006, {5, 6, 7}, "OW");
  ds.seq(0x0028, 0x3000, {item});
  write_file(dir / "m.dcm", cx_test::part10(ds, cx_test::kExplicitLE));
  const DicomImage im = read_dicom((dir / "m.dcm").string());
  ASSERT_TRUE(im.modality_lut);
  EXPECT_EQ(im.modality_lut->first_mapped, -1000);
  EXPECT_EQ(im.modality_lut->data, (std::vector<std::uint16_t>{5, 6, 7}));
}

// ---------------------------------------------------------------------------------------------
// Variants encoded by DCMTK's tools: every lossless transfer syntax must give the source back.

struct Source {
  const char* name;
  int bits_allocated, bits_stored;
  bool is_signed;
  std::vector<std::int32_t> values;
};

class DcmtkVariants : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* tool : {"dcmconv", "dcmcjpeg", "dcmcjpls", "dcmcrle", "dcmodify"}) {
      if (!have_tool(tool)) GTEST_SKIP() << tool << " not installed (Debian package dcmtk): DCMTK variants skipped";
    }
  }
  std::vector<Source> sources() const {
    return {{"u8", 8, 8, false, values8(kW, kH)},
            {"u12", 16, 12, false, values12(kW, kH)},
            {"s16", 16, 16, true, values_signed16(kW, kH)}};
  }
  fs::path write_source(const TempDir& dir, const Source& s) const {
    const fs::path p = dir / (std::string(s.name) + ".dcm");
    write_file(p, cx_test::part10(cx_test::image_dataset(kW, kH, s.bits_allocated, s.bits_stored, s.is_signed,
                                                         "MONOCHROME2", cx_test::pixel_bytes(s.values, s.bits_allocated)),
                                  cx_test::kExplicitLE));
    return p;
  }
};

TEST_F(DcmtkVariants, LosslessTransferSyntaxesRoundTrip) {
  struct Variant {
    const char* name;
    const char* command;  // %s in, %s out
    const char* uid;      // expected transfer syntax
    bool u8_only;
  };
  const std::vector<Variant> variants = {
      {"implicit", "dcmconv +ti", "1.2.840.10008.1.2", false},
      {"big-endian", "dcmconv +tb", "1.2.840.10008.1.2.2", false},
      {"deflated", "dcmconv +td", "1.2.840.10008.1.2.1.99", false},
      {"jpeg-lossless-sv1", "dcmcjpeg +e1", "1.2.840.10008.1.2.4.70", false},
      {"jpeg-lossless", "dcmcjpeg +el", "1.2.840.10008.1.2.4.57", false},
      {"jpeg-ls", "dcmcjpls +el", "1.2.840.10008.1.2.4.80", false},
      {"rle", "dcmcrle", "1.2.840.10008.1.2.5", false},
  };
  TempDir dir;
  for (const Source& s : sources()) {
    const fs::path src = write_source(dir, s);
    for (const Variant& v : variants) {
      SCOPED_TRACE(std::string(s.name) + " " + v.name);
      const fs::path out = dir / (std::string(s.name) + "-" + v.name + ".dcm");
      run_ok(std::string(v.command) + " " + src.string() + " " + out.string(), dir);
      if (HasFatalFailure()) return;
      const DicomImage im = read_dicom(out.string());
      EXPECT_EQ(im.transfer_syntax_uid, v.uid);
      EXPECT_EQ(im.is_signed, s.is_signed);
      EXPECT_EQ(im.photometric, "MONOCHROME2");
      EXPECT_TRUE(im.stored == s.values) << "decoded values differ from the source";
    }
    // Dataset without meta header (what old PACS exports look like): implicit VR, no preamble.
    const fs::path bare = dir / (std::string(s.name) + "-bare.dcm");
    run_ok("dcmconv -F +ti " + src.string() + " " + bare.string(), dir);
    const DicomImage im = read_dicom(bare.string());
    EXPECT_FALSE(im.has_meta_header) << s.name;
    EXPECT_TRUE(im.stored == s.values) << s.name << " bare dataset";
  }
}

TEST_F(DcmtkVariants, DcmodifyMonochrome1AndRescaleReachTheDisplay) {
  TempDir dir;
  const Source s = sources()[1];  // 12-bit
  const fs::path src = write_source(dir, s);
  const fs::path m1 = dir / "m1.dcm";
  fs::copy_file(src, m1);
  run_ok("dcmodify -nb -m '(0028,0004)=MONOCHROME1' -i '(0028,1052)=-1000' -i '(0028,1053)=2' " + m1.string(), dir);
  const DicomImage im = read_dicom(m1.string());
  EXPECT_EQ(im.photometric, "MONOCHROME1");
  EXPECT_DOUBLE_EQ(im.rescale_slope, 2);
  EXPECT_DOUBLE_EQ(im.rescale_intercept, -1000);
  EXPECT_EQ(im.stored, s.values);
  // No window: min-max of the modality values 2*x-1000, inverted. The extremes land exactly.
  const auto r = cx::image::render_dicom(im);
  EXPECT_EQ(r.applied["voi"]["source"], "minmax");
  EXPECT_EQ(r.applied["inverted"], true);
  for (std::size_t i = 0; i < s.values.size(); ++i) {
    const double m = 2.0 * s.values[i] - 1000;
    const double lo = 2.0 * 0 - 1000, hi = 2.0 * 4095 - 1000;  // values12 spans 0..4095
    const int want = 255 - static_cast<int>(std::floor((m - lo) / (hi - lo) * 255 + 0.5));
    ASSERT_EQ(r.image.u8()[i], want) << "pixel " << i;
  }
}

// img2dcm wraps a JPEG file without re-encoding it: DCMTK's decoder must give what libjpeg-turbo
// gives for the same JPEG. A 24-bit BMP becomes uncompressed RGB, given back exactly.
TEST_F(DcmtkVariants, Img2dcmJpegAndBmp) {
  if (!have_tool("img2dcm")) GTEST_SKIP() << "img2dcm not installed (Debian package dcmtk)";
  TempDir dir;
  const int w = 64, h = 48;  // whole 8x8 blocks; a smooth ramp plus texture
  std::vector<std::uint8_t> gray(w * h);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) gray[y * w + x] = static_cast<std::uint8_t>((x * 3 + y * 2 + ((x ^ y) & 7) * 9) & 0xFF);
  const Bytes jpeg = encode_jpeg_gray(gray, w, h, 85);
  write_file(dir / "in.jpg", jpeg);
  run_ok("img2dcm -i JPEG " + (dir / "in.jpg").string() + " " + (dir / "jpeg.dcm").string(), dir);
  if (HasFatalFailure()) return;
  const DicomImage im = read_dicom((dir / "jpeg.dcm").string());
  EXPECT_EQ(im.transfer_syntax_uid, "1.2.840.10008.1.2.4.50");
  const std::vector<std::uint8_t> ref = decode_jpeg_gray(jpeg);
  ASSERT_EQ(im.stored.size(), ref.size());
  int worst = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) worst = std::max(worst, std::abs(im.stored[i] - ref[i]));
  // ±1: DCMTK's IJG 6b and libjpeg-turbo both default to the accurate integer IDCT and agree
  // exactly here, but builds with other IDCT choices are allowed to differ by one in places.
  EXPECT_LE(worst, 1);

  // BMP: bottom-up rows, BGR, rows padded to 4 bytes.
  const int bw = 7, bh = 5, stride = (bw * 3 + 3) & ~3;
  Bytes bmp = {'B', 'M'};
  cx_test::put32(bmp, 54 + stride * bh);
  cx_test::put32(bmp, 0);
  cx_test::put32(bmp, 54);
  cx_test::put32(bmp, 40);
  cx_test::put32(bmp, bw);
  cx_test::put32(bmp, bh);
  cx_test::put16(bmp, 1);
  cx_test::put16(bmp, 24);
  for (int i = 0; i < 6; ++i) cx_test::put32(bmp, 0);
  std::vector<std::int32_t> rgb(bw * bh * 3);
  for (int y = 0; y < bh; ++y)
    for (int x = 0; x < bw; ++x)
      for (int k = 0; k < 3; ++k) rgb[(y * bw + x) * 3 + k] = (x * 31 + y * 47 + k * 85) % 256;
  for (int y = bh - 1; y >= 0; --y) {
    for (int x = 0; x < bw; ++x)
      for (int k = 2; k >= 0; --k) bmp.push_back(static_cast<std::uint8_t>(rgb[(y * bw + x) * 3 + k]));
    for (int p = bw * 3; p < stride; ++p) bmp.push_back(0);
  }
  write_file(dir / "in.bmp", bmp);
  run_ok("img2dcm -i BMP " + (dir / "in.bmp").string() + " " + (dir / "bmp.dcm").string(), dir);
  if (HasFatalFailure()) return;
  const DicomImage c = read_dicom((dir / "bmp.dcm").string());
  EXPECT_EQ(c.samples_per_pixel, 3);
  EXPECT_EQ(c.photometric, "RGB");
  EXPECT_EQ(c.stored, rgb);
}

// ---------------------------------------------------------------------------------------------
// JPEG 2000 through OpenJPEG: codestreams from opj_compress, wrapped by our writer.

class J2kVariants : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!have_tool("opj_compress")) GTEST_SKIP() << "opj_compress not installed (Debian libopenjp2-tools)";
  }
  // 16-bit PGM of 12-bit values, compressed losslessly (opj_compress's default is reversible).
  Bytes codestream(const TempDir& dir, const std::vector<std::int32_t>& v, const std::string& stem) {
    const fs::path pgm = dir / (stem + ".pgm"), j2k = dir / (stem + ".j2k");
    std::string header = "P5\n" + std::to_string(kW) + " " + std::to_string(kH) + "\n4095\n";
    Bytes b(header.begin(), header.end());
    for (auto x : v) {
      b.push_back(static_cast<std::uint8_t>(x >> 8));
      b.push_back(static_cast<std::uint8_t>(x & 0xFF));
    }
    write_file(pgm, b);
    // -n 3: the default 6 resolution levels need sides of at least 32 pixels.
    run_ok("opj_compress -n 3 -i " + pgm.string() + " -o " + j2k.string() + " >/dev/null", dir);
    return read_file(j2k);
  }
};

TEST_F(J2kVariants, LosslessFragmentedSingleFrame) {
  TempDir dir;
  const auto v = values12(kW, kH);
  const Bytes cs = codestream(dir, v, "a");
  ASSERT_GT(cs.size(), 100u);
  // Three fragments split mid-codestream (at even offsets: PS3.5 A.4 requires even fragment
  // lengths): the decoder must concatenate them.
  const std::size_t a = cs.size() / 3 & ~std::size_t{1}, b = 2 * cs.size() / 3 & ~std::size_t{1};
  Dataset ds = cx_test::image_dataset(kW, kH, 16, 12, false, "MONOCHROME2", {});
  ds.encapsulated({Bytes(cs.begin(), cs.begin() + a), Bytes(cs.begin() + a, cs.begin() + b), Bytes(cs.begin() + b, cs.end())});
  write_file(dir / "j.dcm", cx_test::part10(ds, "1.2.840.10008.1.2.4.90"));
  const DicomImage im = read_dicom((dir / "j.dcm").string());
  EXPECT_EQ(im.transfer_syntax_uid, "1.2.840.10008.1.2.4.90");
  EXPECT_EQ(im.stored, v);
}

TEST_F(J2kVariants, MultiFrameWithAndWithoutOffsetTable) {
  TempDir dir;
  const auto v1 = values12(kW, kH);
  std::vector<std::int32_t> v2(v1);
  for (auto& x : v2) x = 4095 - x;
  const Bytes c1 = codestream(dir, v1, "f1"), c2 = codestream(dir, v2, "f2");
  const std::size_t half = c1.size() / 2 & ~std::size_t{1};
  const std::vector<Bytes> frags = {Bytes(c1.begin(), c1.begin() + half), Bytes(c1.begin() + half, c1.end()), c2};
  for (bool with_bot : {true, false}) {
    SCOPED_TRACE(with_bot ? "with offset table" : "without offset table");
    Dataset ds = cx_test::image_dataset(kW, kH, 16, 12, false, "MONOCHROME2", {});
    ds.str(0x0028, 0x0008, "IS", "2");
    std::vector<std::uint32_t> bot;
    if (with_bot) bot = {0, static_cast<std::uint32_t>(8 + frags[0].size() + 8 + frags[1].size())};
    ds.encapsulated(frags, bot);
    write_file(dir / "mf.dcm", cx_test::part10(ds, "1.2.840.10008.1.2.4.90"));
    const DicomImage im = read_dicom((dir / "mf.dcm").string());
    EXPECT_EQ(im.frames, 2);
    EXPECT_EQ(im.stored, v1);
  }
}

TEST_F(J2kVariants, TruncatedCodestreamIsAnError) {
  TempDir dir;
  const Bytes cs = codestream(dir, values12(kW, kH), "a");
  Dataset ds = cx_test::image_dataset(kW, kH, 16, 12, false, "MONOCHROME2", {});
  ds.encapsulated({Bytes(cs.begin(), cs.begin() + (cs.size() * 2 / 3 & ~std::size_t{1}))});
  const fs::path p = dir / "cut-j2k.dcm";
  write_file(p, cx_test::part10(ds, "1.2.840.10008.1.2.4.90"));
  const std::string msg = error_of(p.string());
  EXPECT_EQ(msg.rfind(p.string() + ": ", 0), 0u) << msg;
  EXPECT_NE(msg.find("JPEG 2000"), std::string::npos) << msg;
}

// ---------------------------------------------------------------------------------------------
// Errors: one line, naming the file.

TEST(DicomErrors, MissingFile) {
  const std::string msg = error_of("/nonexistent/x.dcm");
  EXPECT_EQ(msg.rfind("/nonexistent/x.dcm: ", 0), 0u) << msg;
}

TEST(DicomErrors, NotDicom) {
  TempDir dir;
  const fs::path p = dir / "notes.txt";
  const std::string text = "This is a text file, not an image.\nSecond line of words.\n";
  write_file(p, Bytes(text.begin(), text.end()));
  const std::string msg = error_of(p.string());
  EXPECT_EQ(msg.rfind(p.string() + ": ", 0), 0u) << msg;
  EXPECT_NE(msg.find("DICOM"), std::string::npos) << msg;
  EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  // A PNG signature + header is not DICOM either.
  const Bytes png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n', 0, 0, 0, 13, 'I', 'H', 'D', 'R', 0, 0, 1, 0, 0, 0, 1, 0, 8, 0, 0, 0, 0};
  write_file(dir / "x.png", png);
  const std::string msg2 = error_of((dir / "x.png").string());
  EXPECT_EQ(msg2.rfind((dir / "x.png").string() + ": ", 0), 0u) << msg2;
}

TEST(DicomErrors, TruncatedPixelDataAndHeader) {
  TempDir dir;
  const Bytes full = cx_test::part10(cx_test::image_dataset(kW, kH, 16, 12, false, "MONOCHROME2",
                                                           cx_test::pixel_bytes(values12(kW, kH), 16)),
                                     cx_test::kExplicitLE);
  // Cut inside the pixel data.
  write_file(dir / "cut-pixels.dcm", Bytes(full.begin(), full.end() - 300));
  try {
    read_dicom((dir / "cut-pixels.dcm").string());
    ADD_FAILURE() << "no error for a truncated file";
  } catch (const cx::TruncatedError& e) {
    EXPECT_EQ(std::string(e.what()).rfind((dir / "cut-pixels.dcm").string() + ": ", 0), 0u) << e.what();
  } catch (const cx::Error& e) {
    ADD_FAILURE() << "a truncation should be a TruncatedError: " << e.what();
  }
  // Cut inside the meta header and inside the dataset header.
  for (std::size_t cut : {std::size_t{150}, std::size_t{300}}) {
    const fs::path p = dir / ("cut-" + std::to_string(cut) + ".dcm");
    write_file(p, Bytes(full.begin(), full.begin() + cut));
    const std::string msg = error_of(p.string());
    EXPECT_EQ(msg.rfind(p.string() + ": ", 0), 0u) << msg;
  }
  // Cut in an encapsulated frame.
  Dataset enc = cx_test::image_dataset(kW, kH, 8, 8, false, "MONOCHROME2", {});
  enc.encapsulated({Bytes(400, 0x55)});
  const Bytes jf = cx_test::part10(enc, "1.2.840.10008.1.2.4.70");
  write_file(dir / "cut-enc.dcm", Bytes(jf.begin(), jf.end() - 200));
  const std::string msg = error_of((dir / "cut-enc.dcm").string());
  EXPECT_EQ(msg.rfind((dir / "cut-enc.dcm").string() + ": ", 0), 0u) << msg;
}

TEST(DicomErrors, UnsupportedTransferSyntax) {
  TempDir dir;
  Dataset ds = cx_test::image_dataset(kW, kH, 8, 8, false, "MONOCHROME2", {});
  ds.encapsulated({Bytes(64, 0x00)});
  const fs::path mpeg = dir / "12.dcm";
  write_file(mpeg, cx_test::part10(ds, "1.2.840.10008.1.2.4.100"));
  const std::string msg = error_of(mpeg.string());
  EXPECT_EQ(msg.rfind(mpeg.string() + ": unsupported transfer syntax 1.2.840.10008.1.2.4.100 (MPEG2", 0), 0u) << msg;
  EXPECT_FALSE(cx::dicom::transfer_syntax_supported("1.2.840.10008.1.2.4.100"));
  EXPECT_TRUE(cx::dicom::transfer_syntax_supported("1.2.840.10008.1.2.4.91"));
  EXPECT_TRUE(cx::dicom::transfer_syntax_supported("1.2.840.10008.1.2.4.80"));
  EXPECT_TRUE(cx::dicom::transfer_syntax_supported("1.2.840.10008.1.2.5"));

  const fs::path priv = dir / "private.dcm";
  write_file(priv, cx_test::part10(ds, "1.2.3.4.5.6"));
  const std::string msg2 = error_of(priv.string());
  EXPECT_EQ(msg2.rfind(priv.string() + ": unsupported transfer syntax 1.2.3.4.5.6", 0), 0u) << msg2;
}

TEST(DicomErrors, UnsupportedPixelLayouts) {
  TempDir dir;
  const Bytes px(kW * kH * 4, 1);
  write_file(dir / "32.dcm", cx_test::part10(cx_test::image_dataset(kW, kH, 32, 32, false, "MONOCHROME2", px),
                                             cx_test::kExplicitLE));
  const std::string msg = error_of((dir / "32.dcm").string());
  EXPECT_NE(msg.find("Bits Allocated 32"), std::string::npos) << msg;
  Dataset nopix = cx_test::image_dataset(kW, kH, 8, 8, false, "MONOCHROME2", {});
  nopix.remove(0x7FE0, 0x0010);
  write_file(dir / "nopix.dcm", cx_test::part10(nopix, cx_test::kExplicitLE));
  const std::string msg2 = error_of((dir / "nopix.dcm").string());
  EXPECT_NE(msg2.find("no Pixel Data"), std::string::npos) << msg2;
}

// ---------------------------------------------------------------------------------------------
// Hostile headers (issue 08, defects 2, 5 and 11): declared sizes are checked against the data
// present and the image limit before any pixel memory is taken.

namespace {

// Refusing needs DCMTK's dictionary and the file (a few MiB); the hostile headers below claim
// 64 MiB to 14 GiB, so any allocation of the claimed size fails the test.
constexpr long kHostileGrowthKib = 24 * 1024;

void expect_refused_small(const fs::path& file, const std::string& want) {
  const cx_test::ChildRun r = cx_test::run_in_child([&] { read_dicom(file.string()); });
  EXPECT_EQ(r.status, 1) << "decoded (or crashed) instead of refusing: " << r.what;
  EXPECT_EQ(r.what.rfind(file.string() + ": ", 0), 0u) << r.what;
  EXPECT_NE(r.what.find(want), std::string::npos) << r.what;
  EXPECT_GE(r.growth_kib, 0);
  EXPECT_LT(r.growth_kib, kHostileGrowthKib) << "peak RSS grew " << r.growth_kib << " KiB for " << file;
  std::printf("peak RSS refusing %s: +%ld KiB\n", file.filename().c_str(), r.growth_kib);
}

}  // namespace

TEST(HostileDicom, DeclaredSizeBeyondThePixelDataIsRefusedBeforeAllocating) {
  TempDir dir;
  // 60000 x 60000 x 16 bits with 1 KiB of pixel data: beyond the image limit.
  write_file(dir / "huge.dcm", cx_test::part10(cx_test::image_dataset(60000, 60000, 16, 16, false, "MONOCHROME2",
                                                                     Bytes(1024, 7)),
                                               cx_test::kExplicitLE));
  expect_refused_small(dir / "huge.dcm", "60000x60000 exceeds the image size limit");
  // 4000 x 4000 x 16 bits is within the limit (64 MiB decoded) but 1 KiB is there.
  write_file(dir / "big.dcm", cx_test::part10(cx_test::image_dataset(4000, 4000, 16, 16, false, "MONOCHROME2",
                                                                    Bytes(1024, 7)),
                                              cx_test::kExplicitLE));
  expect_refused_small(dir / "big.dcm", "Pixel Data holds 1024 bytes, frame 1 needs 32000000");
  // The same claim in an encapsulated (JPEG lossless) file, whose codec would decode into it.
  Dataset enc = cx_test::image_dataset(60000, 60000, 16, 16, false, "MONOCHROME2", {});
  enc.encapsulated({Bytes(1024, 0x55)});
  write_file(dir / "huge-enc.dcm", cx_test::part10(enc, "1.2.840.10008.1.2.4.70"));
  expect_refused_small(dir / "huge-enc.dcm", "exceeds the image size limit");
}

TEST(HostileDicom, NumberOfFramesBeyondTheDataIsAnError) {
  TempDir dir;
  Dataset ds = cx_test::image_dataset(kW, kH, 8, 8, false, "MONOCHROME2", cx_test::pixel_bytes(values8(kW, kH), 8));
  ds.str(0x0028, 0x0008, "IS", "1000000");
  write_file(dir / "frames.dcm", cx_test::part10(ds, cx_test::kExplicitLE));
  const std::string msg = error_of((dir / "frames.dcm").string());
  EXPECT_EQ(msg.rfind((dir / "frames.dcm").string() + ": Number of Frames is 1000000 but the Pixel Data holds", 0), 0u)
      << msg;
  // Encapsulated: fewer fragments than frames.
  const std::vector<std::uint8_t> gray(64 * 48, 100);
  Dataset enc = cx_test::image_dataset(64, 48, 8, 8, false, "MONOCHROME2", {});
  enc.encapsulated({encode_jpeg_gray(gray, 64, 48, 90)});
  enc.str(0x0028, 0x0008, "IS", "1000000");
  write_file(dir / "frames-enc.dcm", cx_test::part10(enc, "1.2.840.10008.1.2.4.50"));
  const std::string msg2 = error_of((dir / "frames-enc.dcm").string());
  EXPECT_NE(msg2.find("Number of Frames is 1000000 but the Pixel Data holds 1 fragment(s)"), std::string::npos) << msg2;
}

TEST(HostileDicom, JpegSizeDifferentFromTheHeaderIsAnError) {
  TempDir dir;
  std::vector<std::uint8_t> gray(80 * 96);
  for (std::size_t i = 0; i < gray.size(); ++i) gray[i] = static_cast<std::uint8_t>(i * 7);
  Dataset ds = cx_test::image_dataset(800, 960, 8, 8, false, "MONOCHROME2", {});  // Columns 800, Rows 960
  ds.encapsulated({encode_jpeg_gray(gray, 80, 96, 90)});
  write_file(dir / "smear.dcm", cx_test::part10(ds, "1.2.840.10008.1.2.4.50"));
  const std::string msg = error_of((dir / "smear.dcm").string());
  EXPECT_EQ(msg, (dir / "smear.dcm").string() + ": JPEG frame is 80x96x1, the header says 800x960x1");
  // The same JPEG under a matching header decodes.
  Dataset ok = cx_test::image_dataset(80, 96, 8, 8, false, "MONOCHROME2", {});
  ok.encapsulated({encode_jpeg_gray(gray, 80, 96, 90)});
  write_file(dir / "ok.dcm", cx_test::part10(ok, "1.2.840.10008.1.2.4.50"));
  EXPECT_EQ(read_dicom((dir / "ok.dcm").string()).stored.size(), gray.size());
}

TEST(HostileDicom, RescaleSlopeBeyondFiniteRangeIsAnError) {
  TempDir dir;
  Dataset ds = cx_test::image_dataset(kW, kH, 16, 12, false, "MONOCHROME2", cx_test::pixel_bytes(values12(kW, kH), 16));
  ds.str(0x0028, 0x1053, "DS", "1e308");
  write_file(dir / "slope.dcm", cx_test::part10(ds, cx_test::kExplicitLE));
  const std::string msg = error_of((dir / "slope.dcm").string());
  EXPECT_EQ(msg.rfind((dir / "slope.dcm").string() + ": Rescale Slope 1e+308 / Intercept 0 map 12-bit stored values beyond", 0),
            0u)
      << msg;
  // A large but representable slope (CT-like values times 1e6) is read.
  ds.str(0x0028, 0x1053, "DS", "1e6");
  write_file(dir / "slope-ok.dcm", cx_test::part10(ds, cx_test::kExplicitLE));
  EXPECT_DOUBLE_EQ(read_dicom((dir / "slope-ok.dcm").string()).rescale_slope, 1e6);
}
