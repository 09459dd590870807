#include "cx/metrics/segmentation.hpp"

#include <algorithm>
#include <cmath>
#include <limits>

#include "cx/cli/error.hpp"

namespace cx::metrics {

namespace {
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr double kInf = std::numeric_limits<double>::infinity();

struct Overlap {
  std::uint64_t a = 0, b = 0, both = 0;
};
Overlap overlap(const std::uint8_t* t, const std::uint8_t* p, std::size_t n) {
  Overlap o;
  for (std::size_t i = 0; i < n; ++i) {
    const bool x = t[i] != 0, y = p[i] != 0;
    o.a += x;
    o.b += y;
    o.both += x && y;
  }
  return o;
}

// 1-D squared distance transform of f (Felzenszwalb & Huttenlocher 2012), in place via scratch.
void dt1d(const double* f, double* d, int n, int* v, double* z) {
  int k = 0;
  v[0] = 0;
  z[0] = -kInf;
  z[1] = kInf;
  for (int q = 1; q < n; ++q) {
    if (f[q] == kInf) continue;
    if (f[v[k]] == kInf) {  // only +inf so far: q starts the envelope
      v[k] = q;
      continue;
    }
    double s;
    for (;;) {
      const int p = v[k];
      s = ((f[q] + static_cast<double>(q) * q) - (f[p] + static_cast<double>(p) * p)) / (2.0 * (q - p));
      if (s <= z[k] && k > 0) {
        --k;
        continue;
      }
      break;
    }
    ++k;
    v[k] = q;
    z[k] = s;
    z[k + 1] = kInf;
  }
  if (f[v[0]] == kInf) {
    std::fill(d, d + n, kInf);
    return;
  }
  k = 0;
  for (int q = 0; q < n; ++q) {
    while (z[k + 1] < q) ++k;
    const double dq = q - v[k];
    d[q] = dq * dq + f[v[k]];
  }
}

}  // namespace

double dice(const std::uint8_t* truth, const std::uint8_t* pred, std::size_t pixels) {
  Overlap o = overlap(truth, pred, pixels);
  if (o.a + o.b == 0) return kNaN;
  return 2.0 * static_cast<double>(o.both) / static_cast<double>(o.a + o.b);
}

double iou(const std::uint8_t* truth, const std::uint8_t* pred, std::size_t pixels) {
  Overlap o = overlap(truth, pred, pixels);
  const std::uint64_t uni = o.a + o.b - o.both;
  if (uni == 0) return kNaN;
  return static_cast<double>(o.both) / static_cast<double>(uni);
}

std::vector<std::uint8_t> mask_boundary(const std::uint8_t* m, int w, int h) {
  std::vector<std::uint8_t> out(static_cast<std::size_t>(w) * h, 0);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const std::size_t i = static_cast<std::size_t>(y) * w + x;
      if (!m[i]) continue;
      // Outside the image counts as background (scipy's binary_erosion border_value=0).
      const bool interior = x > 0 && x + 1 < w && y > 0 && y + 1 < h && m[i - 1] && m[i + 1] && m[i - w] && m[i + w];
      out[i] = interior ? 0 : 1;
    }
  return out;
}

std::vector<double> squared_distance_transform(const std::uint8_t* features, int w, int h) {
  const std::size_t n = static_cast<std::size_t>(w) * h;
  std::vector<double> d(n);
  for (std::size_t i = 0; i < n; ++i) d[i] = features[i] ? 0.0 : kInf;
  const int len = std::max(w, h);
  std::vector<double> f(len), out(len), z(len + 1);
  std::vector<int> v(len);
  for (int x = 0; x < w; ++x) {  // columns
    for (int y = 0; y < h; ++y) f[y] = d[static_cast<std::size_t>(y) * w + x];
    dt1d(f.data(), out.data(), h, v.data(), z.data());
    for (int y = 0; y < h; ++y) d[static_cast<std::size_t>(y) * w + x] = out[y];
  }
  for (int y = 0; y < h; ++y) {  // rows
    double* row = d.data() + static_cast<std::size_t>(y) * w;
    std::copy(row, row + w, f.begin());
    dt1d(f.data(), out.data(), w, v.data(), z.data());
    std::copy(out.begin(), out.begin() + w, row);
  }
  return d;
}

double hd95(const std::uint8_t* truth, const std::uint8_t* pred, int w, int h) {
  const std::size_t n = static_cast<std::size_t>(w) * h;
  Overlap o = overlap(truth, pred, n);
  if (o.a == 0 || o.b == 0) return kNaN;
  const auto bt = mask_boundary(truth, w, h);
  const auto bp = mask_boundary(pred, w, h);
  const auto dt = squared_distance_transform(bt.data(), w, h);
  const auto dp = squared_distance_transform(bp.data(), w, h);
  std::vector<double> d;
  for (std::size_t i = 0; i < n; ++i) {
    if (bp[i]) d.push_back(std::sqrt(dt[i]));
    if (bt[i]) d.push_back(std::sqrt(dp[i]));
  }
  return percentile(std::move(d), 95.0);
}

std::vector<double> score_label_maps(const std::uint16_t* truth, const std::uint16_t* pred, int w, int h,
                                     int n_classes, const std::vector<std::string>& metrics, const std::string& where) {
  const std::size_t n = static_cast<std::size_t>(w) * h;
  for (std::size_t i = 0; i < n; ++i) {
    if (truth[i] > n_classes)
      throw Error(at(where, "truth mask holds value " + std::to_string(truth[i]) + ", beyond the " +
                                std::to_string(n_classes) + " classes named"));
    if (pred[i] > n_classes)
      throw Error(at(where, "predicted mask holds value " + std::to_string(pred[i]) + ", beyond the " +
                                std::to_string(n_classes) + " classes named"));
  }
  std::vector<double> out(metrics.size() * n_classes, kNaN);
  std::vector<std::uint8_t> a(n), b(n);
  for (int c = 1; c <= n_classes; ++c) {
    for (std::size_t i = 0; i < n; ++i) {
      a[i] = truth[i] == c;
      b[i] = pred[i] == c;
    }
    for (std::size_t k = 0; k < metrics.size(); ++k) {
      double v;
      if (metrics[k] == "dice") v = dice(a.data(), b.data(), n);
      else if (metrics[k] == "iou") v = iou(a.data(), b.data(), n);
      else if (metrics[k] == "hd95") v = hd95(a.data(), b.data(), w, h);
      else throw Error("metrics: unknown segmentation metric '" + metrics[k] + "'");
      out[k * n_classes + (c - 1)] = v;
    }
  }
  return out;
}

Replicates bootstrap_record_means(const std::vector<std::string>& metrics, const std::vector<std::string>& labels,
                                  const std::string& macro_name, const std::vector<std::vector<double>>& values,
                                  std::size_t n_records, const BootstrapOptions& options) {
  Replicates r;
  r.metrics = metrics;
  r.labels = labels;
  r.macro_name = macro_name;
  const int M = static_cast<int>(values.size());
  const std::size_t K = metrics.size(), L = labels.size();
  for (const auto& v : values)
    if (v.size() != n_records * K * L) throw Error("metrics: per-record values have the wrong size");
  r.resize(M, options.resamples);
  r.n.assign(L, 0);
  r.positives.assign(L, -1);
  for (std::size_t l = 0; l < L; ++l)
    for (std::size_t i = 0; i < n_records; ++i)
      if (K && !std::isnan(values[0][(i * K + 0) * L + l])) ++r.n[l];

  auto weighted_means = [&](const std::uint32_t* counts, int m, double* out /* K * L */) {
    std::vector<double> sum(K * L, 0.0), weight(K * L, 0.0);
    const double* v = values[m].data();
    for (std::size_t i = 0; i < n_records; ++i) {
      const double c = counts ? counts[i] : 1.0;
      if (c == 0) continue;
      const double* vi = v + i * K * L;
      for (std::size_t j = 0; j < K * L; ++j)
        if (!std::isnan(vi[j])) {
          sum[j] += c * vi[j];
          weight[j] += c;
        }
    }
    for (std::size_t j = 0; j < K * L; ++j) out[j] = weight[j] > 0 ? sum[j] / weight[j] : kNaN;
  };
  std::vector<double> tmp(K * L);
  for (int m = 0; m < M; ++m) {
    weighted_means(nullptr, m, tmp.data());
    for (std::size_t k = 0; k < K; ++k)
      for (std::size_t l = 0; l < L; ++l) r.at_point(m, static_cast<int>(k), static_cast<int>(l)) = tmp[k * L + l];
  }
  const int threads = std::max(1, options.threads);
  std::vector<std::vector<std::uint32_t>> counts(threads);
  std::vector<std::vector<double>> outs(threads, std::vector<double>(K * L));
  parallel_resamples(options.resamples, threads, [&](int b, int t) {
    draw_counts(options.seed, static_cast<std::uint64_t>(b), n_records, counts[t]);
    for (int m = 0; m < M; ++m) {
      weighted_means(counts[t].data(), m, outs[t].data());
      for (std::size_t k = 0; k < K; ++k)
        for (std::size_t l = 0; l < L; ++l) r.at(b, m, static_cast<int>(k), static_cast<int>(l)) = outs[t][k * L + l];
    }
  });
  return r;
}

}  // namespace cx::metrics
