#include "cx/metrics/bootstrap.hpp"

#include <algorithm>
#include <cmath>
#include <exception>
#include <limits>
#include <mutex>
#include <thread>

#include "cx/random/rng.hpp"

namespace cx::metrics {

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
}

double percentile_sorted(const std::vector<double>& v, double q) {
  if (v.empty()) return kNaN;
  const double h = (static_cast<double>(v.size()) - 1.0) * (q / 100.0);
  const double lo_f = std::floor(h);
  const std::size_t lo = static_cast<std::size_t>(lo_f);
  if (lo + 1 >= v.size()) return v.back();
  const double frac = h - lo_f;
  // numpy's _lerp: a + (b - a) * t, switched to b - (b - a) * (1 - t) for t >= 0.5.
  const double a = v[lo], b = v[lo + 1], d = b - a;
  return frac >= 0.5 ? b - d * (1.0 - frac) : a + d * frac;
}

double percentile(std::vector<double> values, double q) {
  std::sort(values.begin(), values.end());
  return percentile_sorted(values, q);
}

void parallel_resamples(int resamples, int threads, const std::function<void(int, int)>& fn) {
  threads = std::max(1, std::min(threads, resamples));
  if (threads == 1) {
    for (int b = 0; b < resamples; ++b) fn(b, 0);
    return;
  }
  std::exception_ptr failure;
  std::mutex mutex;
  std::vector<std::thread> pool;
  pool.reserve(threads);
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      try {
        for (int b = t; b < resamples; b += threads) fn(b, t);
      } catch (...) {
        std::lock_guard<std::mutex> lock(mutex);
        if (!failure) failure = std::current_exception();
      }
    });
  }
  for (auto& th : pool) th.join();
  if (failure) std::rethrow_exception(failure);
}

void draw_counts(std::uint64_t seed, std::uint64_t b, std::size_t n, std::vector<std::uint32_t>& counts) {
  counts.assign(n, 0);
  if (n == 0) return;
  auto rng = random::bootstrap_rng(seed, b);
  std::uint32_t* c = counts.data();
  for (std::size_t i = 0; i < n; ++i) ++c[rng.below(n)];
}

void Replicates::resize(int n_models, int n_resamples) {
  models = n_models;
  resamples = n_resamples;
  point.assign(stride(), kNaN);
  values.assign(static_cast<std::size_t>(n_resamples) * stride(), kNaN);
}

namespace {

struct Interval {
  double median = kNaN, low = kNaN, high = kNaN;
  int used = 0;
};

Interval interval_of(std::vector<double>& v, double ci) {
  Interval out;
  v.erase(std::remove_if(v.begin(), v.end(), [](double x) { return std::isnan(x); }), v.end());
  std::sort(v.begin(), v.end());
  out.used = static_cast<int>(v.size());
  const double tail = (100.0 - ci) / 2.0;
  out.median = percentile_sorted(v, 50.0);
  out.low = percentile_sorted(v, tail);
  out.high = percentile_sorted(v, 100.0 - tail);
  return out;
}

double p_value_of(const std::vector<double>& d) {
  if (d.empty()) return kNaN;
  std::size_t le = 0, ge = 0;
  for (double x : d) {
    if (x <= 0) ++le;
    if (x >= 0) ++ge;
  }
  const double p = 2.0 * (1.0 + static_cast<double>(std::min(le, ge))) / (1.0 + static_cast<double>(d.size()));
  return std::min(1.0, p);
}

}  // namespace

std::vector<Summary> summarise(const Replicates& r, double ci, bool paired) {
  const int K = static_cast<int>(r.metrics.size());
  const int L = static_cast<int>(r.labels.size());
  const int B = r.resamples;
  auto in_macro = [&](int l) { return r.in_macro.empty() || r.in_macro[l]; };
  std::vector<Summary> out;

  // The value of (model, metric, label) on resample b (b < 0: the point estimate); label L: macro.
  std::vector<std::vector<int>> macro_labels(r.models, std::vector<int>());
  auto value = [&](int b, int m, int k, int l) -> double {
    if (l < L) return b < 0 ? r.point[r.index(m, k, l)] : r.values[b * r.stride() + r.index(m, k, l)];
    double sum = 0;
    int count = 0;
    for (int j = 0; j < L; ++j) {
      if (!in_macro(j)) continue;
      const double p = r.point[r.index(m, k, j)];
      if (std::isnan(p)) continue;  // undefined on all records: out of the macro everywhere
      const double v = b < 0 ? p : r.values[b * r.stride() + r.index(m, k, j)];
      if (std::isnan(v)) return kNaN;
      sum += v;
      ++count;
    }
    return count ? sum / count : kNaN;
  };

  const bool has_macro = !r.macro_name.empty() && L > 0;
  for (int k = 0; k < K; ++k) {
    for (int l = 0; l < L + (has_macro ? 1 : 0); ++l) {
      Summary s;
      s.metric = r.metrics[k];
      s.label = l < L ? r.labels[l] : r.macro_name;
      s.threshold = kNaN;
      s.estimate_a = s.estimate_b = s.p_value = kNaN;
      if (l < L) {
        s.n = l < static_cast<int>(r.n.size()) ? r.n[l] : 0;
        s.positives = l < static_cast<int>(r.positives.size()) ? r.positives[l] : -1;
        if (!r.thresholds.empty() && !paired) s.threshold = r.thresholds[l];
      } else {
        s.n = 0;
        s.positives = -1;
        for (int j = 0; j < L; ++j)
          if (in_macro(j) && !std::isnan(r.point[r.index(0, k, j)])) s.n = std::max<std::int64_t>(s.n, j < (int)r.n.size() ? r.n[j] : 0);
      }
      std::vector<double> v(B);
      if (!paired) {
        s.estimate = value(-1, 0, k, l);
        for (int b = 0; b < B; ++b) v[b] = value(b, 0, k, l);
      } else {
        s.estimate_a = value(-1, 0, k, l);
        s.estimate_b = value(-1, 1, k, l);
        s.estimate = s.estimate_a - s.estimate_b;
        for (int b = 0; b < B; ++b) v[b] = value(b, 0, k, l) - value(b, 1, k, l);
      }
      Interval iv = interval_of(v, ci);
      s.median = iv.median;
      s.low = iv.low;
      s.high = iv.high;
      s.used = iv.used;
      s.skipped = B - iv.used;
      if (paired) s.p_value = p_value_of(v);
      out.push_back(std::move(s));
    }
  }
  return out;
}

}  // namespace cx::metrics
