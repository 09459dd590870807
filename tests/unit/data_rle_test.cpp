// CheXmask RLE: cx's encoder and decoder against CheXmask's own numpy code
// (tests/data/chexmask_rle_reference.py), on masks that touch the borders, an empty structure
// and a full one, plus the label map's painting order and the errors on broken RLE; the CSV
// cx-segment writes, byte for byte, read back through the chexmask adapter's reader.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cx/cli/error.hpp"
#include "cx/data/csv_reader.hpp"
#include "cx/data/rle.hpp"
#include "cx/io/ndarray.hpp"
#include "cx/io/npy.hpp"
#include "io_python_helper.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using cx::data::rle_decode;
using cx::data::rle_encode;

namespace {

struct Case {
  int h, w;
  std::vector<std::uint8_t> mask;
};

// A filled ellipse, optionally pushed against the borders.
Case ellipse(int h, int w, double cy, double cx, double ry, double rx) {
  Case c{h, w, std::vector<std::uint8_t>(static_cast<std::size_t>(h) * w, 0)};
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      double dy = (y - cy) / ry, dx = (x - cx) / rx;
      if (dy * dy + dx * dx <= 1.0) c.mask[static_cast<std::size_t>(y) * w + x] = 1;
    }
  return c;
}

std::vector<Case> cases() {
  std::vector<Case> cs;
  cs.push_back(ellipse(64, 48, 30, 20, 20, 12));            // interior blob
  cs.push_back(ellipse(64, 48, 0, 0, 25, 30));              // touches top and left: starts at pixel 1
  cs.push_back(ellipse(64, 48, 63, 47, 25, 30));            // touches bottom and right: ends at H*W
  cs.push_back(Case{5, 7, std::vector<std::uint8_t>(35, 0)});  // empty structure
  cs.push_back(Case{5, 7, std::vector<std::uint8_t>(35, 1)});  // everything
  {
    // Runs that wrap from one row to the next (row-major flattening matters) and single pixels.
    Case c{9, 11, std::vector<std::uint8_t>(99, 0)};
    for (int i = 7; i < 30; ++i) c.mask[i] = 1;
    c.mask[50] = 1;
    c.mask[98] = 1;
    cs.push_back(c);
  }
  {
    std::mt19937 rng(7);
    Case c{37, 53, std::vector<std::uint8_t>(37 * 53)};
    for (auto& v : c.mask) v = (rng() % 3 == 0) ? 1 : 0;
    cs.push_back(c);
  }
  return cs;
}

std::string read_text(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

}  // namespace

TEST(Rle, RoundTripAgainstCheXmaskNumpy) {
  const std::string script_path = std::string(CX_TEST_DATA_DIR) + "/chexmask_rle_reference.py";
  const auto cs = cases();
  fs::path dir = fs::temp_directory_path() / ("cx_rle_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  for (std::size_t i = 0; i < cs.size(); ++i) {
    cx::io::NdArray a = cx::io::NdArray::zeros(cx::io::DType::u8, {cs[i].h, cs[i].w});
    std::copy(cs[i].mask.begin(), cs[i].mask.end(), a.as<std::uint8_t>());
    std::ofstream(dir / ("mask_" + std::to_string(i) + ".npy"), std::ios::binary) << cx::io::write_npy(a);
    std::ofstream(dir / ("rle_" + std::to_string(i) + ".txt")) << rle_encode(cs[i].mask.data(), cs[i].h, cs[i].w);
  }
  auto r = cx_test::run_python(read_text(script_path), {dir.string(), std::to_string(cs.size())});
  fs::remove_all(dir);
  if (!r.ran) GTEST_SKIP() << r.why_not;
  ASSERT_EQ(r.status, 0) << r.output;
  std::istringstream lines(r.output);
  std::string line;
  std::size_t seen = 0;
  while (std::getline(lines, line)) {
    auto j = nlohmann::json::parse(line);
    const std::size_t i = j["i"].get<std::size_t>();
    const Case& c = cs.at(i);
    // numpy decoded our encoding to the same mask ...
    EXPECT_TRUE(j["decoded_equal"].get<bool>()) << "case " << i;
    // ... our encoding is byte-identical to CheXmask's ...
    const std::string py = j["rle"].get<std::string>();
    EXPECT_EQ(rle_encode(c.mask.data(), c.h, c.w), py) << "case " << i;
    // ... and we decode CheXmask's encoding to the same mask.
    EXPECT_EQ(rle_decode(py, c.h, c.w, "case"), c.mask) << "case " << i;
    ++seen;
  }
  EXPECT_EQ(seen, cs.size()) << r.output;
}

TEST(Rle, BorderRunsAndEmpty) {
  // Hand-checked: pixel 1 is (0,0); pixel H*W the bottom-right corner.
  auto m = rle_decode("1 2 11 2", 3, 4, "t");
  std::vector<std::uint8_t> want = {1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1};
  EXPECT_EQ(m, want);
  EXPECT_EQ(rle_encode(want.data(), 3, 4), "1 2 11 2");
  EXPECT_EQ(rle_decode("", 3, 4, "t"), std::vector<std::uint8_t>(12, 0));
  EXPECT_EQ(rle_decode("  \n", 3, 4, "t"), std::vector<std::uint8_t>(12, 0));
  EXPECT_EQ(rle_encode(std::vector<std::uint8_t>(12, 0).data(), 3, 4), "");
}

TEST(Rle, BrokenRleIsRefusedByName) {
  auto message = [](const std::string& rle) {
    try {
      rle_decode(rle, 3, 4, "masks.csv:7: Heart");
    } catch (const cx::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_NE(message("1 2 5").find("odd number"), std::string::npos) << message("1 2 5");
  EXPECT_NE(message("0 2").find("1-based"), std::string::npos);
  EXPECT_NE(message("11 3").find("ends past the 3x4 mask"), std::string::npos);
  EXPECT_NE(message("1 x").find("'x'"), std::string::npos);
  EXPECT_NE(message("1 -2").find("not a non-negative integer"), std::string::npos);
  EXPECT_EQ(message("1 2 5").rfind("masks.csv:7: Heart: ", 0), 0u) << message("1 2 5");
  EXPECT_THROW(rle_decode("1 1", 0, 4, "t"), cx::Error);
}

// Found by fuzz/rle (fuzz/README.md): a CheXmask row claiming 3 x 666666639 pixels took 2 GB for
// a mask of empty runs; a run whose start + length passed INT64_MAX wrapped the bound check and
// wrote past the mask.
TEST(Rle, SizesAndRunsFromTheFileAreBoundedBeforeUse) {
  auto message = [](auto&& f) {
    try {
      f();
    } catch (const cx::Error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  EXPECT_EQ(message([] { cx::data::chexmask_label_map("", "", "", 3, 666666639, "m.csv:2"); }),
            "m.csv:2: RLE mask size 3x666666639 is above the limit of 67108864 pixels");
  EXPECT_EQ(message([] { rle_decode("", 8193, 8192, "m.csv:2"); }),
            "m.csv:2: RLE mask size 8193x8192 is above the limit of 67108864 pixels");
  EXPECT_EQ(rle_decode("1 1", 8192, 8192, "m.csv:2").size(), std::size_t{8192} * 8192);  // the limit itself is fine
  EXPECT_EQ(message([] { rle_decode("9223372036854775000 9223372036854775000", 2, 2, "m.csv:3"); }),
            "m.csv:3: RLE run 9223372036854775000 9223372036854775000 ends past the 2x2 mask");
  EXPECT_EQ(message([] { rle_decode("3 9223372036854775000", 2, 2, "m.csv:4"); }),
            "m.csv:4: RLE run 3 9223372036854775000 ends past the 2x2 mask");
}

TEST(Rle, LabelMapPaintsHeartLast) {
  // Left lung pixels 1-6, right lung 5-9, heart 6-7 of a 3x4 map.
  cx::Image map = cx::data::chexmask_label_map("1 6", "5 5", "6 2", 3, 4, "row");
  ASSERT_EQ(map.width, 4);
  ASSERT_EQ(map.height, 3);
  std::vector<std::uint8_t> got(map.u8(), map.u8() + 12);
  std::vector<std::uint8_t> want = {1, 1, 1, 1, 2, 3, 3, 2, 2, 0, 0, 0};
  EXPECT_EQ(got, want);
  try {
    cx::data::chexmask_label_map("", "1 99", "", 3, 4, "masks.csv:3");
    FAIL() << "no error";
  } catch (const cx::Error& e) {
    EXPECT_NE(std::string(e.what()).find("masks.csv:3: Right Lung: RLE run 1 99"), std::string::npos) << e.what();
  }
}

TEST(RleCsv, ExactBytesAndBackThroughTheChexmaskReader) {
  // A 3 x 4 label map: left lung (1) from the top-left corner, right lung (2), heart (3) in the
  // bottom-right corner; no pixel of class 4 ("fluid, left").
  cx::Image map = cx::Image::gray8(4, 3);
  const std::vector<std::uint8_t> values = {1, 1, 0, 2, 1, 0, 2, 2, 0, 0, 3, 3};
  std::copy(values.begin(), values.end(), map.u8());
  const std::vector<std::string> classes = {"background", "left lung", "right lung", "heart", "fluid, left"};
  const std::string csv = cx::data::rle_csv_header(classes) + cx::data::rle_csv_row("p1/img", map, 5) +
                          cx::data::rle_csv_row("a,\"b\"", map, 5);
  EXPECT_EQ(csv,
            "key,Left Lung,Right Lung,Heart,\"fluid, left\",Height,Width\n"
            "p1/img,1 2 5 1,4 1 7 2,11 2,,3,4\n"
            "\"a,\"\"b\"\"\",1 2 5 1,4 1 7 2,11 2,,3,4\n");
  EXPECT_EQ(cx::data::chexmask_column("heart"), "Heart");
  EXPECT_EQ(cx::data::chexmask_column("lung"), "lung");

  // Read back as cx-ingest's chexmask adapter reads it: CsvReader, then chexmask_label_map.
  cx_test::TempDir dir("cx_rle_csv");
  const std::string path = dir / "masks.csv";
  std::ofstream(path, std::ios::binary) << csv;
  cx::data::CsvReader reader(path);
  EXPECT_EQ(reader.columns(), (std::vector<std::string>{"key", "Left Lung", "Right Lung", "Heart", "fluid, left", "Height", "Width"}));
  std::vector<std::string> row;
  std::vector<std::string> keys;
  while (reader.next(row)) {
    keys.push_back(row[0]);
    ASSERT_EQ(row[5], "3");
    ASSERT_EQ(row[6], "4");
    cx::Image back = cx::data::chexmask_label_map(row[1], row[2], row[3], 3, 4, reader.where());
    EXPECT_EQ(back.data, map.data);
    EXPECT_EQ(cx::data::rle_decode(row[4], 3, 4, reader.where()), std::vector<std::uint8_t>(12, 0));
  }
  EXPECT_EQ(keys, (std::vector<std::string>{"p1/img", "a,\"b\""}));
  // rle_encode_value is rle_encode of (labels == value).
  std::vector<std::uint8_t> heart(12);
  for (std::size_t i = 0; i < 12; ++i) heart[i] = values[i] == 3;
  EXPECT_EQ(cx::data::rle_encode_value(values.data(), 3, 4, 3), rle_encode(heart.data(), 3, 4));
  EXPECT_THROW(cx::data::rle_csv_row("k", cx::Image::gray16(4, 3), 2), cx::Error);
}
