// lib/cx/train checkpoint.hpp and schedule.hpp: a checkpoint's tensors and JSON come back bit for
// bit; another signature is refused naming each setting; an interrupted or cut-short checkpoint is
// never taken for one. Schedules at known steps against DINOv2's CosineScheduler (values computed
// with its numpy code, dinov2/utils/utils.py) and the closed form of cx's lr multiplier.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>

#include "cx/cli/error.hpp"
#include "cx/train/checkpoint.hpp"
#include "cx/train/head.hpp"
#include "cx/train/optim.hpp"
#include "cx/train/schedule.hpp"
#include "test_support.hpp"

namespace {
namespace fs = std::filesystem;
using nlohmann::json;
using namespace cx::train;
using cx_test::TempDir;

std::string message(const std::function<void()>& f) {
  try {
    f();
  } catch (const cx::Error& e) {
    return e.what();
  }
  return "no error";
}

// Two modules and an optimizer after a few updates: what cx-pretrain will checkpoint.
struct TrainingRun {
  torch::nn::Linear student{torch::nn::LinearOptions(6, 4)}, teacher{torch::nn::LinearOptions(6, 4)};
  NamedParams s = NamedParams::of(*student, "student."), t = NamedParams::of(*teacher, "teacher.");
  std::unique_ptr<AdamW> opt;
  explicit TrainingRun(std::uint64_t seed) {
    torch::manual_seed(seed);
    student = torch::nn::Linear(torch::nn::LinearOptions(6, 4));
    teacher = torch::nn::Linear(torch::nn::LinearOptions(6, 4));
    s = NamedParams::of(*student, "student.");
    t = NamedParams::of(*teacher, "teacher.");
    opt = std::make_unique<AdamW>(std::vector<ParamGroup>{param_group(*student, 0.01, 0.04, "student.")});
  }
  void steps(int n) {
    for (int i = 0; i < n; ++i) {
      opt->zero_grad();
      student->forward(torch::ones({3, 6}) * (i + 1)).pow(2).sum().backward();
      opt->step();
    }
  }
  Checkpoint checkpoint(std::int64_t step) const {
    Checkpoint c;
    c.format = "cx-test-checkpoint";
    c.step = step;
    c.signature = {{"batch", 3}, {"lr", 0.01}, {"labels", {"A", "B"}}};
    c.state = {{"epoch", 2}, {"best", {{"metric", 0.75}, {"epoch", 1}}}};
    c.rng = {{"seed", 7}, {"counters", {{"shuffle", 2}, {"augment", 12}}}};
    model_groups(c);
    return c;
  }
  void model_groups(Checkpoint& c) const {
    c.groups["student"] = s.current();
    c.groups["teacher"] = t.current();
    c.groups["optimizer"] = opt->state();
  }
};

TEST(Checkpoint, RoundTripIsBitIdentical) {
  TempDir tmp;
  TrainingRun a(1);
  a.steps(3);
  const Checkpoint c = a.checkpoint(3);
  write_checkpoint(tmp / "ckpt", c, [](const std::string& dir) { std::ofstream(dir + "/notes.txt") << "extra\n"; });
  ASSERT_TRUE(is_checkpoint(tmp / "ckpt", "cx-test-checkpoint"));
  EXPECT_TRUE(fs::exists(tmp / "ckpt/notes.txt"));

  const Checkpoint back = read_checkpoint(tmp / "ckpt", "cx-test-checkpoint");
  EXPECT_EQ(back.step, 3);
  EXPECT_EQ(back.signature, c.signature);
  EXPECT_EQ(back.state, c.state);
  EXPECT_EQ(back.rng, c.rng);
  ASSERT_EQ(back.groups.size(), 3u);
  for (const auto& [name, tensors] : c.groups) {
    const auto& got = back.group(name);
    ASSERT_EQ(got.size(), tensors.size()) << name;
    for (const auto& [k, t] : tensors) {
      bool found = false;
      for (const auto& [k2, t2] : got)
        if (k2 == k) {
          found = true;
          EXPECT_EQ(t2.scalar_type(), t.scalar_type()) << k;
          EXPECT_TRUE(torch::equal(t2, t)) << k;  // bit for bit
        }
      EXPECT_TRUE(found) << k;
    }
  }
  EXPECT_NE(message([&] { back.group("best"); }).find("no best.safetensors"), std::string::npos);

  // Loaded into a fresh run (other initial weights), both continue to the same weights.
  TrainingRun b(2);
  b.s.load(back.group("student"), "student");
  b.t.load(back.group("teacher"), "teacher");
  b.opt->load_state(back.group("optimizer"), "optimizer");
  a.steps(2);
  b.steps(2);
  for (std::size_t i = 0; i < a.s.tensors.size(); ++i) EXPECT_TRUE(torch::equal(a.s.tensors[i], b.s.tensors[i])) << a.s.names[i];
  EXPECT_EQ(b.opt->steps(), 5);
  EXPECT_NE(message([&] { b.s.load({}, "empty.safetensors"); }).find("empty.safetensors: no tensor student.weight"), std::string::npos);
}

TEST(Checkpoint, OtherSettingsRefusedByName) {
  const json saved = {{"batch", 3}, {"lr", 0.01}, {"labels", {"A", "B"}}};
  EXPECT_NO_THROW(check_signature(saved, saved, "ckpt"));
  const std::string m = message([&] { check_signature(saved, {{"batch", 2}, {"lr", 0.01}, {"seed", 4}}, "runs/ckpt"); });
  EXPECT_EQ(m, "runs/ckpt: the checkpoint was made with other settings: batch (checkpoint 3, now 2), seed (checkpoint absent, now 4)");

  TempDir tmp;
  TrainingRun a(1);
  write_checkpoint(tmp / "ckpt", a.checkpoint(1));
  EXPECT_NE(message([&] { read_checkpoint(tmp / "ckpt", "cx-finetune-checkpoint"); }).find("format is \"cx-test-checkpoint\", not \"cx-finetune-checkpoint\""),
            std::string::npos);
  EXPECT_NE(message([&] { read_checkpoint(tmp / "none", "cx-test-checkpoint"); }).find("no such checkpoint folder"), std::string::npos);
}

TEST(Checkpoint, HalfWrittenNeverPicked) {
  TempDir tmp;
  TrainingRun a(1);
  const std::string runs = tmp / "runs";
  fs::create_directories(runs);
  write_checkpoint(runs + "/step-2", a.checkpoint(2));
  write_checkpoint(runs + "/step-4", a.checkpoint(4));
  EXPECT_EQ(latest_checkpoint(runs, "cx-test-checkpoint"), runs + "/step-4");

  // An interrupted write (an error in the middle) leaves the previous checkpoint as it was and no temporary.
  EXPECT_THROW(write_checkpoint(runs + "/step-4", a.checkpoint(6), [](const std::string&) { throw cx::Error("disk full"); }),
               cx::Error);
  EXPECT_EQ(read_checkpoint(runs + "/step-4", "cx-test-checkpoint").step, 4);
  for (const auto& e : fs::directory_iterator(runs)) EXPECT_NE(e.path().filename().string()[0], '.') << e.path();

  // A temporary folder of a write still running (hidden), complete-looking inside: skipped.
  fs::copy(runs + "/step-4", runs + "/.step-9.tmp.123", fs::copy_options::recursive);
  json s = json::parse(std::ifstream(runs + "/.step-9.tmp.123/state.json"));
  s["step"] = 9;
  std::ofstream(runs + "/.step-9.tmp.123/state.json") << s.dump();
  // A copy cut short: a tensor file shorter than state.json says, or missing; a folder without state.json.
  fs::copy(runs + "/step-4", runs + "/step-8", fs::copy_options::recursive);
  s["step"] = 8;
  std::ofstream(runs + "/step-8/state.json") << s.dump();
  fs::resize_file(runs + "/step-8/optimizer.safetensors", 100);
  fs::copy(runs + "/step-4", runs + "/step-7", fs::copy_options::recursive);
  s["step"] = 7;
  std::ofstream(runs + "/step-7/state.json") << s.dump();
  fs::remove(runs + "/step-7/teacher.safetensors");
  fs::create_directories(runs + "/step-10");
  fs::copy(runs + "/step-4/student.safetensors", runs + "/step-10/");
  EXPECT_EQ(latest_checkpoint(runs, "cx-test-checkpoint"), runs + "/step-4");
  EXPECT_NE(message([&] { read_checkpoint(runs + "/step-8", "cx-test-checkpoint"); }).find("not a complete checkpoint (optimizer.safetensors has 100 bytes"),
            std::string::npos);
  EXPECT_NE(message([&] { read_checkpoint(runs + "/step-7", "cx-test-checkpoint"); }).find("teacher.safetensors is missing"),
            std::string::npos);
  EXPECT_NE(message([&] { read_checkpoint(runs + "/step-10", "cx-test-checkpoint"); }).find("no state.json"), std::string::npos);
  EXPECT_EQ(latest_checkpoint(tmp / "nowhere", "cx-test-checkpoint"), "");
}

TEST(Schedule, DinoV2CosineScheduler) {
  // Expected values: DINOv2's CosineScheduler (numpy) at these iterations. 1e-15: numpy's
  // vectorised cos (SIMD on AVX-512) and glibc's differ in the last bits (seen: 6e-15 relative at 0.017).
  constexpr double kUlps = 1e-15;
  CosineScheduler lr(4e-3, 1e-6, 100, 10);  // lr: linear warm-up from 0 over 10, cosine to 1e-6
  EXPECT_EQ(lr[0], 0.0);
  EXPECT_NEAR(lr[1], 0.00044444444444444447, kUlps);
  EXPECT_NEAR(lr[5], 0.0022222222222222222, kUlps);
  EXPECT_EQ(lr[9], 0.004);
  EXPECT_EQ(lr[10], 0.004);
  EXPECT_NEAR(lr[11], 0.003998781958624682, kUlps);
  EXPECT_NEAR(lr[50], 0.0023477095312450275, kUlps);
  EXPECT_NEAR(lr[99], 2.2180413753178013e-06, kUlps);
  EXPECT_EQ(lr[100], 1e-6);
  EXPECT_EQ(lr[150], 1e-6);
  CosineScheduler wd(0.04, 0.4, 100);  // weight decay rises from 0.04 to 0.4
  EXPECT_NEAR(wd[0], 0.03999999999999998, kUlps);
  EXPECT_NEAR(wd[1], 0.04008881913416823, kUlps);
  EXPECT_NEAR(wd[50], 0.22, kUlps);
  EXPECT_NEAR(wd[99], 0.3999111808658317, kUlps);
  EXPECT_EQ(wd[100], 0.4);
  CosineScheduler momentum(0.992, 1.0, 100);  // teacher momentum towards 1
  EXPECT_NEAR(momentum[0], 0.992, kUlps);
  EXPECT_NEAR(momentum[25], 0.9931715728752538, kUlps);
  EXPECT_NEAR(momentum[50], 0.996, kUlps);
  EXPECT_NEAR(momentum[75], 0.9988284271247462, kUlps);
  EXPECT_NEAR(momentum[99], 0.999998026241463, kUlps);
  CosineScheduler temp(0.07, 0.07, 100, 30, 0.04);  // teacher temperature: linear warm-up, then constant
  EXPECT_EQ(temp[0], 0.04);
  EXPECT_NEAR(temp[1], 0.04103448275862069, kUlps);
  EXPECT_NEAR(temp[15], 0.05551724137931035, kUlps);
  EXPECT_EQ(temp[29], 0.07);
  EXPECT_EQ(temp[30], 0.07);
  EXPECT_EQ(temp[99], 0.07);
  CosineScheduler frozen(1.0, 0.0, 20, 5, 0.1, 3);  // 3 frozen, 5 warm-up from 0.1, cosine to 0
  EXPECT_EQ(frozen[0], 0.0);
  EXPECT_EQ(frozen[2], 0.0);
  EXPECT_NEAR(frozen[3], 0.1, kUlps);
  EXPECT_NEAR(frozen[4], 0.325, kUlps);
  EXPECT_EQ(frozen[7], 1.0);
  EXPECT_EQ(frozen[8], 1.0);
  EXPECT_NEAR(frozen[19], 0.01703708685546579, kUlps);
  EXPECT_THROW(CosineScheduler(1, 0, 5, 4, 0, 2), cx::Error);
}

TEST(Schedule, LrMultiplierClosedForm) {
  EXPECT_DOUBLE_EQ(lr_scale(Schedule::cosine, 0, 100, 10), 0.1);
  EXPECT_DOUBLE_EQ(lr_scale(Schedule::cosine, 9, 100, 10), 1.0);
  EXPECT_DOUBLE_EQ(lr_scale(Schedule::cosine, 10, 100, 10), 1.0);
  EXPECT_NEAR(lr_scale(Schedule::cosine, 55, 100, 10), 0.5, 1e-12);
  EXPECT_DOUBLE_EQ(lr_scale(Schedule::constant, 99, 100, 10), 1.0);
  EXPECT_DOUBLE_EQ(lr_scale(Schedule::constant, 4, 100, 10), 0.5);
  // The heads' and fine-tuning's warm-up: round(fraction * total) updates.
  const LrSchedule s = LrSchedule::with_warmup_fraction(Schedule::cosine, 50, 0.05);
  EXPECT_EQ(s.warmup, 3);  // llround(2.5)
  for (std::int64_t step : {0, 2, 3, 20, 49}) EXPECT_EQ(s(step), lr_scale(Schedule::cosine, step, 50, 3)) << step;
  EXPECT_DOUBLE_EQ(s(3 + 47 / 2), 0.5 * (1 + std::cos(M_PI * 23.0 / 47.0)));
  EXPECT_EQ(parse_schedule("constant"), Schedule::constant);
  EXPECT_THROW(parse_schedule("linear"), cx::UsageError);
}

}  // namespace

TEST(Checkpoint, NamesInStateJsonStayInsideTheFolder) {
  TempDir tmp;
  TrainingRun a(1);
  const std::string ck = tmp / "ck";
  write_checkpoint(ck, a.checkpoint(2));
  const json good = json::parse(std::ifstream(ck + "/state.json"));
  // A file list naming a path outside the checkpoint (it would be looked up there).
  json s = good;
  s["files"]["/etc/passwd"] = 1;
  std::ofstream(ck + "/state.json") << s.dump();
  EXPECT_NE(message([&] { read_checkpoint(ck, "cx-test-checkpoint"); }).find("file '/etc/passwd' is not inside the checkpoint folder"),
            std::string::npos);
  s = good;
  s["files"]["../x.safetensors"] = 1;
  std::ofstream(ck + "/state.json") << s.dump();
  EXPECT_NE(message([&] { read_checkpoint(ck, "cx-test-checkpoint"); }).find("file '../x.safetensors' is not inside"),
            std::string::npos);
  // A group name with a folder part.
  s = good;
  s["groups"].push_back("../student");
  std::ofstream(ck + "/state.json") << s.dump();
  EXPECT_NE(message([&] { read_checkpoint(ck, "cx-test-checkpoint"); }).find("group name '../student' is not a file name"),
            std::string::npos);
}

namespace {
using nlohmann::json;
using cx::train::EarlyStopping;

// Early stopping: NaN ignored, the first defined metric a best, `patience` validations without
// improvement stop; the best copy and report kept; the state a resumed trainer reloads gives the same
// decisions as an uninterrupted run.
TEST(EarlyStoppingTest, KeepsTheBestAndStopsAfterPatience) {
  torch::Tensor w = torch::zeros({3});
  const std::vector<torch::Tensor> params{w};
  const std::vector<double> metrics{std::nan(""), 0.5, 0.7, 0.7, 0.6, 0.65};
  EarlyStopping s(3);
  std::vector<bool> best, stop;
  for (std::size_t i = 0; i < metrics.size(); ++i) {
    w.fill_(static_cast<double>(i));
    best.push_back(s.update(metrics[i], static_cast<int>(i) + 1, params, {{"auroc", metrics[i]}}));
    stop.push_back(s.should_stop());
  }
  EXPECT_EQ(best, (std::vector<bool>{false, true, true, false, false, false}));
  EXPECT_EQ(stop, (std::vector<bool>{false, false, false, false, false, true}));
  EXPECT_EQ(s.best_epoch(), 3);
  EXPECT_DOUBLE_EQ(s.best_metric(), 0.7);
  EXPECT_EQ(s.validations(), 6);
  EXPECT_EQ(s.best_report(), json({{"auroc", 0.7}}));
  s.restore_best(params);
  EXPECT_TRUE(w.equal(torch::full({3}, 2.0)));  // the weights of validation 3 (index 2)
}

TEST(EarlyStoppingTest, ResumesFromItsState) {
  torch::Tensor w = torch::zeros({2});
  const std::vector<torch::Tensor> params{w};
  const std::vector<double> metrics{0.4, 0.6, 0.5, 0.55, 0.58, 0.3};
  EarlyStopping whole(4), first(4);
  std::vector<bool> expected, got;
  for (std::size_t i = 0; i < metrics.size(); ++i) {
    w.fill_(static_cast<double>(i));
    expected.push_back(whole.update(metrics[i], static_cast<int>(i) + 1, params));
    expected.push_back(whole.should_stop());
  }
  for (std::size_t i = 0; i < 3; ++i) {
    w.fill_(static_cast<double>(i));
    got.push_back(first.update(metrics[i], static_cast<int>(i) + 1, params));
    got.push_back(first.should_stop());
  }
  // Through JSON text, as state.json carries it.
  EarlyStopping resumed(4);
  resumed.load_state(json::parse(first.state().dump()), "run/state.json");
  EXPECT_FALSE(resumed.have_best());  // until the best weights are given back
  resumed.set_best(first.best());
  for (std::size_t i = 3; i < metrics.size(); ++i) {
    w.fill_(static_cast<double>(i));
    got.push_back(resumed.update(metrics[i], static_cast<int>(i) + 1, params));
    got.push_back(resumed.should_stop());
  }
  EXPECT_EQ(got, expected);
  EXPECT_EQ(resumed.state(), whole.state());
  resumed.restore_best(params);
  EXPECT_TRUE(w.equal(torch::full({2}, 1.0)));
  // Without a best, best_metric is null.
  EXPECT_TRUE(EarlyStopping(2).state().at("best_metric").is_null());
}

TEST(EarlyStoppingTest, RefusesAMalformedState) {
  EarlyStopping s(2);
  try {
    s.load_state(json{{"best_metric", 0.5}, {"best_epoch", "two"}}, "run/state.json");
    FAIL() << "accepted a malformed state";
  } catch (const cx::Error& e) {
    EXPECT_NE(std::string(e.what()).find("run/state.json: bad early-stopping state"), std::string::npos) << e.what();
  }
  EXPECT_THROW(s.load_state(json(), "run/state.json"), cx::Error);
}

}  // namespace
