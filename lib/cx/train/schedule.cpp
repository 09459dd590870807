#include "cx/train/schedule.hpp"

#include <algorithm>
#include <cmath>

#include "cx/cli/error.hpp"

namespace cx::train {

namespace {
constexpr double kPi = 3.14159265358979323846;
}  // namespace

CosineScheduler::CosineScheduler(double base, double final, std::int64_t total, std::int64_t warmup, double start_warmup,
                                 std::int64_t freeze)
    : base_(base), final_(final), start_warmup_(start_warmup), total_(total), warmup_(warmup), freeze_(freeze) {
  if (total < 0 || warmup < 0 || freeze < 0 || total < warmup + freeze)
    throw Error("schedule: " + std::to_string(total) + " updates cannot hold " + std::to_string(freeze) + " frozen and " +
                std::to_string(warmup) + " warm-up updates");
}

double CosineScheduler::operator[](std::int64_t it) const {
  if (it >= total_) return final_;
  if (it < freeze_) return 0.0;
  it -= freeze_;
  if (it < warmup_) {
    // numpy.linspace's arithmetic: i * step + start, the last value exactly base; linspace(a, b, 1) == [a].
    if (warmup_ == 1) return start_warmup_;
    if (it == warmup_ - 1) return base_;
    const double step = (base_ - start_warmup_) / static_cast<double>(warmup_ - 1);
    return static_cast<double>(it) * step + start_warmup_;
  }
  it -= warmup_;
  const auto n = static_cast<double>(total_ - warmup_ - freeze_);
  return final_ + 0.5 * (base_ - final_) * (1.0 + std::cos(kPi * static_cast<double>(it) / n));
}

Schedule parse_schedule(const std::string& name) {
  if (name == "cosine") return Schedule::cosine;
  if (name == "constant") return Schedule::constant;
  throw UsageError("--schedule " + name + ": expected cosine or constant");
}

std::string schedule_name(Schedule s) { return s == Schedule::constant ? "constant" : "cosine"; }

double lr_scale(Schedule schedule, std::int64_t step, std::int64_t total, std::int64_t warmup) {
  if (step < warmup) return static_cast<double>(step + 1) / static_cast<double>(warmup);
  if (schedule == Schedule::constant) return 1.0;
  const std::int64_t span = total - warmup;
  if (span <= 0) return 1.0;
  const double t = std::min(1.0, static_cast<double>(step - warmup) / static_cast<double>(span));
  return 0.5 * (1.0 + std::cos(kPi * t));
}

LrSchedule LrSchedule::with_warmup_fraction(Schedule kind, std::int64_t total, double warmup_fraction) {
  return {kind, total, static_cast<std::int64_t>(std::llround(warmup_fraction * static_cast<double>(total)))};
}

}  // namespace cx::train
