// The predictors of cx-classify and cx-segment (lib/cx/train/predict, segment_predict): the table
// cx-eval reads, byte for byte (truth columns, blank cells, %.9g scores, the header of an empty
// stream); scores equal to the head's own probabilities at any batch size; the encoder check and
// the errors that name a record; label maps from tokens through every sink (stream, PNG folder,
// RLE CSV, overlay), batches of one grid size, and the sinks finished last to first.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "cx/cli/error.hpp"
#include "cx/cli/output.hpp"
#include "cx/cli/stream_output.hpp"
#include "cx/cli/tool.hpp"
#include "cx/data/record_source.hpp"
#include "cx/data/rle.hpp"
#include "cx/image/overlay.hpp"
#include "cx/io/image_file.hpp"
#include "cx/io/ndarray.hpp"
#include "cx/io/npy.hpp"
#include "cx/io/png.hpp"
#include "cx/io/stream.hpp"
#include "cx/train/predict.hpp"
#include "cx/train/segment_predict.hpp"
#include "cx/util/strings.hpp"
#include "test_support.hpp"

namespace {

using namespace cx::train;
using nlohmann::json;
namespace fs = std::filesystem;

const json kModel = {{"id", "enc"}, {"sha256", "0123456789abcdef"}};

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string npy(const std::vector<float>& values, std::vector<std::int64_t> shape) {
  return cx::io::write_npy(cx::io::NdArray::from_floats(values, std::move(shape)));
}

cx::io::Record record(const std::string& key, const json& meta) {
  cx::io::Record r;
  r.key = key;
  if (!meta.is_null()) r.set("json", meta.dump());
  return r;
}

// A stream file of these records under this header.
void write_stream(const std::string& path, json header, const std::vector<cx::io::Record>& records) {
  cx::cli::OutputFile out(path);
  cx::io::StreamWriter w(out.file(), header, path);
  for (const auto& r : records) w.write(r);
  w.finish();
  out.commit();
}

std::string message_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const cx::Error& e) {
    return e.what();
  }
  return "no error";
}

// ---- classification ----------------------------------------------------------------------------

TEST(PredictionTable, ExactBytesTruthColumnsAndBlankCells) {
  std::string out;
  // A declared in the header; B carried by the first record; C neither: no truth column for C.
  PredictionTable table({"A", "B", "C"}, {{"labels", {"A", "Z"}}}, [&](const std::string& line) { out += line; });
  std::vector<cx::io::Record> rs = {record("r1", {{"labels", {{"A", 1}, {"B", 0}}}}),
                                    record("r2", {{"labels", {{"A", -1}, {"C", 1}}}}), record("r3", nullptr)};
  torch::Tensor p = torch::tensor({0.5f, 0.25f, 1.0f / 3, 1.0f, 0.0f, 1e-7f, 0.125f, 0.875f, 0.75f}).view({3, 3});
  table.write({rs[0], rs[1]}, p.slice(0, 0, 2));
  table.write({rs[2]}, p.slice(0, 2, 3));
  table.finish();  // a header is written once
  EXPECT_EQ(out,
            "key\tA\tB\tA.score\tB.score\tC.score\n"
            "r1\t1\t0\t0.5\t0.25\t0.333333343\n"
            "r2\t-1\t\t1\t0\t1.00000001e-07\n"
            "r3\t\t\t0.125\t0.875\t0.75\n");

  std::string empty;
  PredictionTable none({"A", "B"}, json::object(), [&](const std::string& line) { empty += line; });
  none.finish();
  EXPECT_EQ(empty, "key\tA.score\tB.score\n");

  std::string bad;
  PredictionTable strict({"A"}, json::object(), [&](const std::string& line) { bad += line; });
  EXPECT_NE(message_of([&] { strict.write({record("r9", {{"labels", {{"A", 7}}}})}, torch::zeros({1, 1})); }).find("r9.json"),
            std::string::npos);
}

// A linear head on 4 features, 2 labels, with fixed weights (no training needed).
Head fixed_head(bool fine_tuned_encoder = false) {
  Head h;
  h.info.labels = {"A", "B"};
  h.info.feature = "cx5";
  h.info.shape = {HeadType::linear, 4, 0, 2};
  h.info.encoder = kModel;
  if (fine_tuned_encoder) h.info.encoder_folder = "encoder";
  h.module = std::make_shared<HeadModule>(h.info.shape);
  h.module->init(3);
  {
    torch::NoGradGuard g;
    for (auto& p : h.module->parameters()) p.copy_(torch::linspace(-1.5, 2.0, p.numel()).view(p.sizes()));
  }
  return h;
}

TEST(HeadPredictor, ScoresAreTheHeadsProbabilitiesAtAnyBatchSize) {
  cx_test::TempDir d("cx_predict");
  torch::manual_seed(1);
  torch::Tensor x = torch::randn({7, 4});
  std::vector<cx::io::Record> rs;
  for (int i = 0; i < 7; ++i) {
    auto r = record("k" + std::to_string(i), {{"labels", {{"A", i % 2}}}});
    std::vector<float> v(x[i].data_ptr<float>(), x[i].data_ptr<float>() + 4);
    r.set("cx5.npy", npy(v, {4}));
    rs.push_back(r);
  }
  json header = cx::io::new_stream_header();
  header["labels"] = {"A", "B"};
  header["model"] = kModel;
  write_stream(d / "s.cx", header, rs);

  auto table_at = [&](std::int64_t batch, PredictStats* stats = nullptr) {
    std::string out;
    auto source = cx::data::RecordSource::open({d / "s.cx"});
    PredictOptions o;
    o.batch = batch;
    HeadPredictor predictor(fixed_head(), "unused", source->header(), "s.cx", o);
    PredictionTable table({"A", "B"}, source->header(), [&](const std::string& l) { out += l; });
    PredictStats s = predict_table(*source, predictor, table, batch);
    if (stats) *stats = s;
    return out;
  };
  PredictStats stats;
  const std::string whole = table_at(4096, &stats);
  EXPECT_EQ(stats.records, 7);
  // The same bytes as the head's own probabilities of the stacked features, formatted as cx-eval reads.
  torch::Tensor p = fixed_head().probabilities(x);
  std::string want = "key\tA\tB\tA.score\tB.score\n";
  char buf[64];
  for (int i = 0; i < 7; ++i) {
    std::snprintf(buf, sizeof buf, "k%d\t%d\t\t%.9g\t%.9g\n", i, i % 2, static_cast<double>(p[i][0].item<float>()),
                  static_cast<double>(p[i][1].item<float>()));
    want += buf;
  }
  EXPECT_EQ(whole, want);
  // Batches of 1 and 3 (a last partial batch): the same rows. A GEMM may round a row differently
  // with another row count, so scores agree within 1e-6 (they are probabilities in [0, 1]).
  for (std::int64_t b : {1, 3}) {
    std::istringstream got(table_at(b)), ref(whole);
    std::string g, r;
    while (std::getline(ref, r)) {
      ASSERT_TRUE(std::getline(got, g)) << "batch " << b;
      auto gf = cx::util::split_exact(g, '\t'), rf = cx::util::split_exact(r, '\t');
      ASSERT_EQ(gf.size(), rf.size());
      for (std::size_t c = 0; c < 3; ++c) EXPECT_EQ(gf[c], rf[c]);
      for (std::size_t c = 3; c < rf.size() && rf[0] != "key"; ++c) EXPECT_NEAR(std::stod(gf[c]), std::stod(rf[c]), 1e-6);
    }
    EXPECT_FALSE(std::getline(got, g));
  }
}

TEST(HeadPredictor, EncoderCheckAndErrorsNameTheRecord) {
  auto with_feature = [](const std::string& key, std::vector<float> v) {
    auto r = record(key, json::object());
    const auto n = static_cast<std::int64_t>(v.size());
    r.set("cx5.npy", npy(v, {n}));
    return r;
  };
  const json other = {{"model", {{"id", "other"}, {"sha256", "ffff"}}}};
  PredictOptions o;
  HeadPredictor strict(fixed_head(), "h", other, "test.cx", o);
  const std::string m = message_of([&] { strict.probabilities({with_feature("k", {1, 2, 3, 4})}); });
  EXPECT_NE(m.find("test.cx: embedded with encoder 'other'"), std::string::npos) << m;
  o.ignore_encoder = true;
  HeadPredictor lax(fixed_head(), "h", other, "test.cx", o);
  EXPECT_EQ(lax.probabilities({with_feature("k", {1, 2, 3, 4})}).sizes(), (std::vector<std::int64_t>{1, 2}));
  EXPECT_EQ(message_of([&] { lax.probabilities({with_feature("k2", {1, 2, 3})}); }), "test.cx: k2.cx5.npy: holds 3 values, the head takes 4");
  EXPECT_EQ(message_of([&] { lax.probabilities({record("k3", json::object())}); }),
            "k3: no cx5.npy field (embed the stream with cx-embed --emit cx5)");
  // A fine-tuned head asks for an image instead (its encoder is loaded only when one is there).
  HeadPredictor tuned(fixed_head(true), "h", other, "test.cx", o);
  EXPECT_EQ(message_of([&] { tuned.probabilities({record("k4", json::object())}); }), "k4: no cx5.npy field and no image to embed");
}

// ---- segmentation -------------------------------------------------------------------------------

// A linear head whose logits are 10 x the one-hot tokens: the label map is each cell's class,
// upsampled by nearest neighbour (bilinear blending of one-hot logits keeps the nearer cell).
SegHead identity_seg_head() {
  SegHead h;
  h.info.classes = {"background", "left lung", "heart"};
  h.info.feature = "patch";
  h.info.shape = {SegHeadType::linear, 3, 0, 3};
  h.info.encoder = kModel;
  h.module = std::make_shared<SegHeadModule>(h.info.shape);
  torch::NoGradGuard g;
  auto p = h.module->parameters();
  p[0].copy_(10 * torch::eye(3).view({3, 3, 1, 1}));
  p[1].zero_();
  return h;
}

// A record of an image of 2 * side pixels a side whose grid of side x side cells holds `cells`.
cx::io::Record seg_record(const std::string& key, int side, const std::vector<int>& cells, bool with_image) {
  std::vector<float> tok(static_cast<std::size_t>(side * side * 3), 0.0f);
  for (int i = 0; i < side * side; ++i) tok[static_cast<std::size_t>(i * 3 + cells[static_cast<std::size_t>(i)])] = 1;
  auto r = record(key, {{"patch_grid", {{"image_size", {2 * side, 2 * side}}, {"box", {0, 0, 2 * side, 2 * side}}, {"grid", {side, side}}}}});
  r.set("patch.npy", npy(tok, {side, side, 3}));
  if (with_image) {
    cx::Image im = cx::Image::gray8(2 * side, 2 * side);
    for (std::size_t i = 0; i < im.data.size(); ++i) im.data[i] = static_cast<std::uint8_t>(40 + 3 * i);
    r.set("png", cx::io::encode_png(im));
  }
  return r;
}

cx::Image expected_map(int side, const std::vector<int>& cells) {
  cx::Image m = cx::Image::gray8(2 * side, 2 * side);
  for (int y = 0; y < 2 * side; ++y)
    for (int x = 0; x < 2 * side; ++x)
      m.data[static_cast<std::size_t>(y * 2 * side + x)] = static_cast<std::uint8_t>(cells[static_cast<std::size_t>((y / 2) * side + x / 2)]);
  return m;
}

struct Capture : SegSink {
  std::vector<std::string> keys;
  std::vector<cx::Image> maps;
  std::vector<std::string>* finished;
  std::string name;
  Capture(std::vector<std::string>* f, std::string n) : finished(f), name(std::move(n)) {}
  void write(cx::io::Record& r, const cx::Image& map, const std::string& png) override {
    keys.push_back(r.key);
    maps.push_back(map);
    EXPECT_EQ(png, cx::io::encode_png(map, 1));
  }
  void finish() override { finished->push_back(name); }
};

TEST(SegPredictor, LabelMapsThroughEverySinkInOrder) {
  cx_test::TempDir d("cx_segpredict");
  const std::vector<int> a = {0, 1, 1, 0, 0, 1, 1, 0, 2, 2, 0, 0, 2, 2, 0, 0};  // 4 x 4 grid
  const std::vector<int> b = {1, 0, 0, 2};                                      // 2 x 2 grid
  std::vector<cx::io::Record> rs = {seg_record("p/a", 4, a, true), seg_record("b", 2, b, true), seg_record("c", 4, a, true)};
  json header = cx::io::new_stream_header();
  header["model"] = kModel;
  header["fields"]["patch.npy"] = {{"type", "npy"}};
  write_stream(d / "in.cx", header, rs);

  SegHead head = identity_seg_head();
  for (std::int64_t batch : {1, 16}) {
    auto source = cx::data::RecordSource::open({d / "in.cx"});
    const json out_header = seg_stream_header(source->header(), head.info, "H", false);
    EXPECT_FALSE(out_header["fields"].contains("patch.npy"));
    EXPECT_EQ(out_header["fields"]["mask.png"]["classes"], json(head.info.classes));
    EXPECT_EQ(out_header["segmentation"], json({{"head", "H"}, {"classes", head.info.classes}, {"feature", "patch"}}));
    EXPECT_TRUE(out_header["provenance"].is_array());

    const std::string tag = std::to_string(batch);
    cx::cli::Tool tool("cx-segment", "test");
    tool.common().no_provenance = true;
    cx::cli::StreamOutput out(tool, out_header, d / ("out" + tag + ".cx"));
    std::vector<std::string> finished;
    Capture first(&finished, "first");
    PngFolderSink png(d / ("png" + tag));
    RleCsvSink rle(d / ("m" + tag + ".csv"), head.info.classes);
    OverlaySink overlay(d / ("ov" + tag), 1);
    Capture last(&finished, "last");
    SegStreamSink stream(out, false);
    SegPredictOptions o;
    o.batch = batch;
    int ticks = 0;
    SegPredictStats stats = predict_masks(*source, "in.cx", head, HeadEncoder{}, o, {&first, &png, &rle, &overlay, &last, &stream},
                                          [&] { ++ticks; });
    EXPECT_EQ(stats.images, 3);
    EXPECT_EQ(ticks, 3);
    EXPECT_EQ(finished, (std::vector<std::string>{"last", "first"}));  // last to first
    ASSERT_EQ(first.keys, (std::vector<std::string>{"p/a", "b", "c"}));
    EXPECT_EQ(last.keys, first.keys);
    EXPECT_EQ(first.maps[0].data, expected_map(4, a).data);
    EXPECT_EQ(first.maps[1].data, expected_map(2, b).data);
    EXPECT_EQ(first.maps[2].data, expected_map(4, a).data);

    // The PNG folder (a key's '/' is a subfolder), the RLE CSV and the overlays, exactly.
    EXPECT_EQ(read_file(d / ("png" + tag + "/p/a.png")), cx::io::encode_png(expected_map(4, a), 1));
    EXPECT_EQ(read_file(d / ("png" + tag + "/b.png")), cx::io::encode_png(expected_map(2, b), 1));
    EXPECT_EQ(read_file(d / ("m" + tag + ".csv")),
              cx::data::rle_csv_header(head.info.classes) + cx::data::rle_csv_row("p/a", expected_map(4, a), 3) +
                  cx::data::rle_csv_row("b", expected_map(2, b), 3) + cx::data::rle_csv_row("c", expected_map(4, a), 3));
    const cx::Image picture = cx::io::decode_image(rs[1].find("png")->data, "b.png");
    EXPECT_EQ(read_file(d / ("ov" + tag + "/b.png")), cx::io::encode_png(cx::image::draw_contours(picture, expected_map(2, b), 1), 1));

    // The stream: mask.png is the prediction, the tokens are gone, the image stays.
    auto reader = cx::io::StreamReader::open(d / ("out" + tag + ".cx"));
    cx::io::Record r;
    std::size_t n = 0;
    while (reader->next(r)) {
      EXPECT_EQ(r.key, first.keys[n]);
      EXPECT_FALSE(r.has("patch.npy"));
      EXPECT_TRUE(r.has("png"));
      EXPECT_EQ(r.find("mask.png")->data, cx::io::encode_png(first.maps[n], 1));
      ++n;
    }
    EXPECT_EQ(n, 3u);
    EXPECT_EQ(reader->header()["segmentation"]["head"], "H");
  }
}

TEST(SegPredictor, EncoderCheckAndErrorsNameTheRecord) {
  cx_test::TempDir d("cx_segpredict_err");
  const std::vector<int> cells = {0, 1, 2, 0};
  json header = cx::io::new_stream_header();
  header["model"] = {{"id", "other"}, {"sha256", "ffff"}};
  write_stream(d / "other.cx", header, {seg_record("r", 2, cells, false)});
  SegHead head = identity_seg_head();
  std::vector<std::string> finished;
  Capture sink(&finished, "sink");
  auto run = [&](const std::string& path, bool ignore) {
    auto source = cx::data::RecordSource::open({path});
    SegPredictOptions o;
    o.ignore_encoder = ignore;
    return predict_masks(*source, "X.cx", head, HeadEncoder{}, o, {&sink});
  };
  const std::string m = message_of([&] { run(d / "other.cx", false); });
  EXPECT_NE(m.find("X.cx: embedded with encoder 'other'"), std::string::npos) << m;
  EXPECT_EQ(run(d / "other.cx", true).images, 1);

  auto bare = record("t", json::object());
  write_stream(d / "bare.cx", header, {bare});
  EXPECT_EQ(message_of([&] { run(d / "bare.cx", true); }), "t: no patch.npy field (embed with cx-embed --emit patch)");

  OverlaySink overlay(d / "ov", 2);
  auto source = cx::data::RecordSource::open({d / "other.cx"});
  SegPredictOptions o;
  o.ignore_encoder = true;
  EXPECT_EQ(message_of([&] { predict_masks(*source, "X.cx", head, HeadEncoder{}, o, {&overlay}); }),
            "r: no image to draw the overlay on (embed with cx-embed --keep-image)");

  SegPredictStats s;
  s.images = 4;
  s.head_seconds = 1;
  s.map_seconds = 0.5;
  s.output_seconds = 0.5;
  EXPECT_EQ(s.describe(), "predicted 4 images: head 1.000 s, resample + argmax 0.500 s, outputs 0.500 s (head 50.0% of 2.000 s)");
}

}  // namespace
