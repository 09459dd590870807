#pragma once
// Schedules of training hyper-parameters, as pure functions of the update number (a resumed run
// needs only the step counter):
//   CosineScheduler  DINOv2's (dinov2/utils/utils.py) for lr, weight decay, momentum and teacher
//                    temperature: `freeze` updates at 0, a linear warm-up from start_warmup to base
//                    over `warmup` updates (numpy.linspace: both ends included), then
//                    final + (base - final) (1 + cos(pi i / n)) / 2 for i = 0 .. n - 1 with
//                    n = total - warmup - freeze; `final` from `total` on. Constant: base == final;
//                    linear warm-up then constant (DINOv2's teacher temperature): the same with a warm-up.
//   LrSchedule       the lr multiplier of cx's heads and fine-tuning: warm-up over `warmup` updates
//                    ((step + 1) / warmup), then cosine from 1 towards 0 over the rest, or constant 1.
#include <cstdint>
#include <string>

namespace cx::train {

class CosineScheduler {
 public:
  // Throws cx::Error when total < warmup + freeze or any count is negative.
  CosineScheduler(double base, double final, std::int64_t total, std::int64_t warmup = 0, double start_warmup = 0,
                  std::int64_t freeze = 0);
  double operator[](std::int64_t it) const;
  std::int64_t total() const { return total_; }

 private:
  double base_, final_, start_warmup_;
  std::int64_t total_, warmup_, freeze_;
};

enum class Schedule { cosine, constant };
Schedule parse_schedule(const std::string& name);  // "cosine" | "constant"; else UsageError
std::string schedule_name(Schedule s);

// The lr multiplier before update number `step` (0-based) of `total`: warm-up over `warmup` updates
// ((step + 1) / warmup), then 1 (constant) or 0.5 (1 + cos(pi * (step - warmup) / (total - warmup))).
double lr_scale(Schedule schedule, std::int64_t step, std::int64_t total, std::int64_t warmup);

struct LrSchedule {
  Schedule kind = Schedule::cosine;
  std::int64_t total = 0, warmup = 0;
  // Warm-up over round(warmup_fraction * total) updates, as the heads and fine-tuning count it.
  static LrSchedule with_warmup_fraction(Schedule kind, std::int64_t total, double warmup_fraction);
  double operator()(std::int64_t step) const { return lr_scale(kind, step, total, warmup); }
};

}  // namespace cx::train
