#include "cx/metrics/classification.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "cx/cli/error.hpp"
#include "cx/random/rng.hpp"

namespace cx::metrics {

namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
constexpr std::uint32_t kPositive = 1u << 31;
constexpr std::uint32_t kGroupEnd = 1u << 30;
constexpr std::uint32_t kIdMask = kGroupEnd - 1;

// One label's scores for one model, sorted once (descending). Each entry packs the id whose count
// weighs it (a record index, or the label-local index when resampling is stratified), the truth
// bit, and whether it closes a group of tied scores.
struct Sorted {
  std::vector<std::uint32_t> packed;
  std::vector<double> scores;  // descending
};

Sorted sort_label(const std::vector<double>& scores, const std::vector<std::uint8_t>& truth,
                  const std::vector<std::uint32_t>* ids) {
  const std::size_t m = scores.size();
  std::vector<std::uint32_t> order(m);
  std::iota(order.begin(), order.end(), 0u);
  std::stable_sort(order.begin(), order.end(), [&](std::uint32_t a, std::uint32_t b) { return scores[a] > scores[b]; });
  Sorted s;
  s.packed.resize(m);
  s.scores.resize(m);
  for (std::size_t j = 0; j < m; ++j) {
    const std::uint32_t i = order[j];
    const std::uint32_t id = ids ? (*ids)[i] : i;
    s.packed[j] = id | (truth[i] ? kPositive : 0u);
    s.scores[j] = scores[i];
  }
  for (std::size_t j = 0; j < m; ++j)
    if (j + 1 == m || s.scores[j + 1] != s.scores[j]) s.packed[j] |= kGroupEnd;
  return s;
}

struct PassResult {
  std::uint64_t positives = 0, negatives = 0;
  std::uint64_t tp_at = 0, fp_at = 0;  // predicted positive (score >= threshold)
  std::uint64_t auc2 = 0;              // 2 * (concordant pairs + ties / 2)
  double ap_sum = 0;                   // sum over groups of gp * precision
};

// The hot loop: one pass over the sorted order with the resample's counts. Entries [0, cut) are
// those predicted positive at the threshold (cut falls on a group boundary).
template <bool kAveragePrecision>
void weighted_pass(const std::uint32_t* e, std::size_t m, std::size_t cut, const std::uint32_t* counts, PassResult& out) {
  std::uint64_t cp = 0, cn = 0, gp = 0, gn = 0, auc2 = 0;
  double ap = 0;
  auto run = [&](std::size_t from, std::size_t to) {
    for (std::size_t j = from; j < to; ++j) {
      const std::uint32_t x = e[j];
      const std::uint64_t w = counts[x & kIdMask];
      const std::uint64_t pos = (x & kPositive) ? w : 0;
      gp += pos;
      gn += w - pos;
      if (x & kGroupEnd) {
        auc2 += gn * (2 * cp + gp);
        cp += gp;
        cn += gn;
        if (kAveragePrecision && gp) ap += static_cast<double>(gp) * static_cast<double>(cp) / static_cast<double>(cp + cn);
        gp = gn = 0;
      }
    }
  };
  run(0, cut);
  out.tp_at = cp;
  out.fp_at = cn;
  run(cut, m);
  out.positives = cp;
  out.negatives = cn;
  out.auc2 = auc2;
  out.ap_sum = ap;
}

// The same pass for kBatch resamples at once. Their counts are interleaved per record
// (counts[id * kBatch + k], one byte each), so the random access into the counts, the cost of the
// single-resample pass, fetches every resample's count of a record in one cache line, and the
// sorted order is streamed once per batch instead of once per resample. Results are bit-identical
// to weighted_pass (same integer sums, same floating-point order for AP).
constexpr int kBatch = 8;

template <bool kAveragePrecision>
void batched_pass(const std::uint32_t* e, std::size_t m, std::size_t cut, const std::uint8_t* counts, int active,
                  PassResult* out) {
  std::uint32_t cp[kBatch] = {}, cn[kBatch] = {}, gp[kBatch] = {}, gn[kBatch] = {};
  std::uint64_t auc2[kBatch] = {};
  double ap[kBatch] = {};
  auto run = [&](std::size_t from, std::size_t to) {
    for (std::size_t j = from; j < to; ++j) {
      const std::uint32_t x = e[j];
      const std::uint8_t* c = counts + static_cast<std::size_t>(x & kIdMask) * kBatch;
      const std::uint32_t mask = (x & kPositive) ? 0xFFFFFFFFu : 0u;
      for (int k = 0; k < kBatch; ++k) {
        const std::uint32_t w = c[k];
        gp[k] += w & mask;
        gn[k] += w & ~mask;
      }
      if (x & kGroupEnd) {
        for (int k = 0; k < kBatch; ++k) {
          auc2[k] += static_cast<std::uint64_t>(gn[k]) * (2ull * cp[k] + gp[k]);
          cp[k] += gp[k];
          cn[k] += gn[k];
        }
        if (kAveragePrecision)
          for (int k = 0; k < kBatch; ++k)
            if (gp[k]) ap[k] += static_cast<double>(gp[k]) * static_cast<double>(cp[k]) / static_cast<double>(cp[k] + cn[k]);
        for (int k = 0; k < kBatch; ++k) gp[k] = gn[k] = 0;
      }
    }
  };
  run(0, cut);
  for (int k = 0; k < active; ++k) {
    out[k].tp_at = cp[k];
    out[k].fp_at = cn[k];
  }
  run(cut, m);
  for (int k = 0; k < active; ++k) {
    out[k].positives = cp[k];
    out[k].negatives = cn[k];
    out[k].auc2 = auc2[k];
    out[k].ap_sum = ap[k];
  }
}

// ROC TPR on a uniform FPR grid from a weighted pass; linear between ROC points, the top of a
// vertical run at its FPR.
void roc_grid(const std::uint32_t* e, std::size_t m, const std::uint32_t* counts, std::uint64_t P, std::uint64_t N,
              int points, float* out) {
  if (P == 0 || N == 0) {
    std::fill(out, out + points, std::numeric_limits<float>::quiet_NaN());
    return;
  }
  std::uint64_t cp = 0, cn = 0, gp = 0, gn = 0;
  double px = 0, py = 0;
  int g = 0;
  auto gx = [&](int k) { return static_cast<double>(k) / (points - 1); };
  auto vertex = [&](double x, double y) {
    while (g < points && gx(g) < x) {
      const double t = x > px ? (gx(g) - px) / (x - px) : 1.0;
      out[g++] = static_cast<float>(py + t * (y - py));
    }
    px = x;
    py = y;
  };
  for (std::size_t j = 0; j < m; ++j) {
    const std::uint32_t x = e[j];
    const std::uint64_t w = counts[x & kIdMask];
    if (x & kPositive) gp += w; else gn += w;
    if ((x & kGroupEnd) && (gp || gn)) {
      cp += gp;
      cn += gn;
      gp = gn = 0;
      vertex(static_cast<double>(cn) / N, static_cast<double>(cp) / P);
    }
  }
  while (g < points) out[g++] = static_cast<float>(py);
}

std::size_t cut_for(const Sorted& s, double threshold) {
  if (std::isnan(threshold)) return 0;
  // Entries with score >= threshold come first in descending order.
  return static_cast<std::size_t>(
      std::partition_point(s.scores.begin(), s.scores.end(), [&](double v) { return v >= threshold; }) - s.scores.begin());
}

double youden_of(const Sorted& s, const std::vector<std::uint32_t>& ones) {
  PassResult r;
  weighted_pass<false>(s.packed.data(), s.packed.size(), 0, ones.data(), r);
  if (r.positives == 0 || r.negatives == 0) return kNaN;
  // The first ROC point (threshold +inf, nothing predicted positive) has J = 0; like numpy's argmax
  // over roc_curve's output, only a strictly larger J further down replaces it.
  std::uint64_t cp = 0, cn = 0;
  double best = 0, threshold = std::numeric_limits<double>::infinity();
  for (std::size_t j = 0; j < s.packed.size(); ++j) {
    const std::uint32_t x = s.packed[j];
    if (x & kPositive) ++cp; else ++cn;
    if (x & kGroupEnd) {
      const double J = static_cast<double>(cp) / r.positives - static_cast<double>(cn) / r.negatives;
      if (J > best) {
        best = J;
        threshold = s.scores[j];
      }
    }
  }
  return threshold;
}

void check_sizes(const std::vector<double>& s, const std::vector<std::uint8_t>& t) {
  if (s.size() != t.size()) throw Error("metrics: scores and truth differ in length");
  if (s.size() >= kGroupEnd) throw Error("metrics: too many records for one label (at most 2^30)");
}

}  // namespace

double auroc(const std::vector<double>& scores, const std::vector<std::uint8_t>& truth) {
  check_sizes(scores, truth);
  Sorted s = sort_label(scores, truth, nullptr);
  std::vector<std::uint32_t> ones(scores.size(), 1);
  PassResult r;
  weighted_pass<false>(s.packed.data(), s.packed.size(), 0, ones.data(), r);
  if (r.positives == 0 || r.negatives == 0) return kNaN;
  return static_cast<double>(r.auc2) / (2.0 * static_cast<double>(r.positives) * static_cast<double>(r.negatives));
}

double average_precision(const std::vector<double>& scores, const std::vector<std::uint8_t>& truth) {
  check_sizes(scores, truth);
  Sorted s = sort_label(scores, truth, nullptr);
  std::vector<std::uint32_t> ones(scores.size(), 1);
  PassResult r;
  weighted_pass<true>(s.packed.data(), s.packed.size(), 0, ones.data(), r);
  if (r.positives == 0) return kNaN;
  return r.ap_sum / static_cast<double>(r.positives);
}

RocCurve roc_curve(const std::vector<double>& scores, const std::vector<std::uint8_t>& truth) {
  check_sizes(scores, truth);
  Sorted s = sort_label(scores, truth, nullptr);
  std::uint64_t P = 0, N = 0;
  for (auto t : truth) (t ? P : N) += 1;
  RocCurve c;
  c.fpr.push_back(0);
  c.tpr.push_back(0);
  c.thresholds.push_back(std::numeric_limits<double>::infinity());
  std::uint64_t cp = 0, cn = 0;
  for (std::size_t j = 0; j < s.packed.size(); ++j) {
    if (s.packed[j] & kPositive) ++cp; else ++cn;
    if (s.packed[j] & kGroupEnd) {
      c.fpr.push_back(N ? static_cast<double>(cn) / N : kNaN);
      c.tpr.push_back(P ? static_cast<double>(cp) / P : kNaN);
      c.thresholds.push_back(s.scores[j]);
    }
  }
  return c;
}

double Confusion::accuracy() const {
  const auto n = tp + fp + tn + fn;
  return n ? static_cast<double>(tp + tn) / n : kNaN;
}
double Confusion::sensitivity() const { return tp + fn ? static_cast<double>(tp) / (tp + fn) : kNaN; }
double Confusion::specificity() const { return tn + fp ? static_cast<double>(tn) / (tn + fp) : kNaN; }
double Confusion::f1() const { return 2 * tp + fp + fn ? 2.0 * tp / (2 * tp + fp + fn) : kNaN; }

Confusion confusion_at(const std::vector<double>& scores, const std::vector<std::uint8_t>& truth, double threshold) {
  check_sizes(scores, truth);
  Confusion c;
  for (std::size_t i = 0; i < scores.size(); ++i) {
    const bool predicted = scores[i] >= threshold;
    if (truth[i]) (predicted ? c.tp : c.fn) += 1;
    else (predicted ? c.fp : c.tn) += 1;
  }
  return c;
}

double youden_threshold(const std::vector<double>& scores, const std::vector<std::uint8_t>& truth) {
  check_sizes(scores, truth);
  Sorted s = sort_label(scores, truth, nullptr);
  std::vector<std::uint32_t> ones(scores.size(), 1);
  return youden_of(s, ones);
}

Replicates bootstrap_classification(const std::vector<LabelScores>& labels, std::size_t n_records,
                                    const ClassificationRequest& request, const BootstrapOptions& options,
                                    RocBands* bands) {
  if (n_records >= kGroupEnd) throw Error("metrics: too many records (at most 2^30)");
  const int L = static_cast<int>(labels.size());
  const int M = L ? static_cast<int>(labels[0].scores.size()) : 1;
  const int B = options.resamples;
  const bool stratified = options.stratified;

  Replicates r;
  enum { kAuroc, kAuprc, kAccuracy, kSensitivity, kSpecificity, kF1, kMetricCount };
  const char* names[kMetricCount] = {"auroc", "auprc", "accuracy", "sensitivity", "specificity", "f1"};
  int slot[kMetricCount];
  std::fill(slot, slot + kMetricCount, -1);
  auto want = [&](int k) {
    slot[k] = static_cast<int>(r.metrics.size());
    r.metrics.push_back(names[k]);
  };
  if (request.auroc) want(kAuroc);
  if (request.auprc) want(kAuprc);
  if (request.at_threshold)
    for (int k = kAccuracy; k <= kF1; ++k) want(k);
  r.macro_name = "macro";
  for (const auto& l : labels) {
    r.labels.push_back(l.name);
    r.n.push_back(static_cast<std::int64_t>(l.records.size()));
    r.positives.push_back(std::count(l.truth.begin(), l.truth.end(), 1));
  }
  r.resize(M, B);

  // Sort once per label and model; positions of positives and negatives for stratified draws.
  std::vector<std::vector<Sorted>> sorted(L, std::vector<Sorted>(M));
  std::vector<std::vector<std::uint32_t>> pos_ids(L), neg_ids(L);
  for (int l = 0; l < L; ++l) {
    const auto& lab = labels[l];
    if (static_cast<int>(lab.scores.size()) != M) throw Error("metrics: labels differ in model count");
    for (int m = 0; m < M; ++m) {
      check_sizes(lab.scores[m], lab.truth);
      sorted[l][m] = sort_label(lab.scores[m], lab.truth, stratified ? nullptr : &lab.records);
    }
    if (stratified)
      for (std::uint32_t i = 0; i < lab.truth.size(); ++i) (lab.truth[i] ? pos_ids[l] : neg_ids[l]).push_back(i);
  }

  // Thresholds, fixed for all resamples.
  std::vector<std::vector<std::size_t>> cut(L, std::vector<std::size_t>(M, 0));
  if (request.at_threshold) r.thresholds.assign(static_cast<std::size_t>(M) * L, kNaN);
  std::vector<std::uint32_t> ones(std::max<std::size_t>(n_records, 1), 1);
  for (int l = 0; l < L; ++l)
    for (int m = 0; m < M; ++m) {
      if (!request.at_threshold) continue;
      double t = request.threshold;
      if (request.youden) {
        std::vector<std::uint32_t> local_ones(labels[l].truth.size() + 1, 1);
        Sorted local = sort_label(labels[l].scores[m], labels[l].truth, nullptr);
        t = youden_of(local, local_ones);
      }
      r.thresholds[static_cast<std::size_t>(m) * L + l] = t;
      cut[l][m] = cut_for(sorted[l][m], t);
    }

  const bool want_ap = slot[kAuprc] >= 0;
  auto fill = [&](int l, int m, const PassResult& pr, double* out /* per metric slot */) {
    const double P = static_cast<double>(pr.positives), N = static_cast<double>(pr.negatives);
    if (slot[kAuroc] >= 0) out[slot[kAuroc]] = (P > 0 && N > 0) ? pr.auc2 / (2.0 * P * N) : kNaN;
    if (slot[kAuprc] >= 0) out[slot[kAuprc]] = P > 0 ? pr.ap_sum / P : kNaN;
    if (request.at_threshold) {
      const double thr = r.thresholds[static_cast<std::size_t>(m) * L + l];
      Confusion c;
      c.tp = static_cast<std::int64_t>(pr.tp_at);
      c.fp = static_cast<std::int64_t>(pr.fp_at);
      c.fn = static_cast<std::int64_t>(pr.positives - pr.tp_at);
      c.tn = static_cast<std::int64_t>(pr.negatives - pr.fp_at);
      const bool ok = !std::isnan(thr);
      out[slot[kAccuracy]] = ok ? c.accuracy() : kNaN;
      out[slot[kSensitivity]] = ok ? c.sensitivity() : kNaN;
      out[slot[kSpecificity]] = ok ? c.specificity() : kNaN;
      out[slot[kF1]] = ok ? c.f1() : kNaN;
    }
  };
  auto evaluate = [&](int l, int m, const std::uint32_t* counts, double* out) {
    const Sorted& s = sorted[l][m];
    PassResult pr;
    if (want_ap)
      weighted_pass<true>(s.packed.data(), s.packed.size(), cut[l][m], counts, pr);
    else
      weighted_pass<false>(s.packed.data(), s.packed.size(), cut[l][m], counts, pr);
    fill(l, m, pr, out);
    return pr;
  };

  const int K = static_cast<int>(r.metrics.size());
  std::vector<double> tmp(K);
  // Point estimates: every record once.
  std::vector<std::vector<std::uint32_t>> local_ones(L);
  for (int l = 0; l < L; ++l) {
    local_ones[l].assign(labels[l].truth.size() + 1, 1);
    for (int m = 0; m < M; ++m) {
      evaluate(l, m, stratified ? local_ones[l].data() : ones.data(), tmp.data());
      for (int k = 0; k < K; ++k) r.at_point(m, k, l) = tmp[k];
    }
  }

  if (bands) {
    bands->points = request.curve_points;
    bands->resample_tpr.assign(M, std::vector<std::vector<float>>(L));
    bands->curve.assign(M, std::vector<RocCurve>(L));
    for (int m = 0; m < M; ++m)
      for (int l = 0; l < L; ++l) {
        bands->resample_tpr[m][l].assign(static_cast<std::size_t>(B) * std::max(0, request.curve_points), 0.f);
        bands->curve[m][l] = roc_curve(labels[l].scores[m], labels[l].truth);
      }
  }

  const int threads = std::max(1, options.threads);
  if (!stratified && !bands) {
    // Batches of kBatch resamples with byte counts; a batch where a record is drawn 256 times or
    // more (never in practice) falls back to the one-resample pass below.
    const int batches = (B + kBatch - 1) / kBatch;
    std::vector<std::vector<std::uint8_t>> counts8(threads);
    std::vector<std::vector<std::uint32_t>> counts32(threads);
    std::vector<std::vector<double>> outs(threads, std::vector<double>(K));
    parallel_resamples(batches, threads, [&](int batch, int t) {
      const int b0 = batch * kBatch;
      const int active = std::min(kBatch, B - b0);
      auto& c8 = counts8[t];
      auto& o = outs[t];
      c8.assign(n_records * kBatch, 0);
      bool overflow = false;
      for (int k = 0; k < active; ++k) {
        auto rng = random::bootstrap_rng(options.seed, static_cast<std::uint64_t>(b0 + k));  // the draws of draw_counts(seed, b0 + k)
        for (std::size_t i = 0; i < n_records; ++i) overflow |= ++c8[rng.below(n_records) * kBatch + k] == 0;
      }
      if (overflow) {
        for (int k = 0; k < active; ++k) {
          draw_counts(options.seed, static_cast<std::uint64_t>(b0 + k), n_records, counts32[t]);
          for (int l = 0; l < L; ++l)
            for (int m = 0; m < M; ++m) {
              evaluate(l, m, counts32[t].data(), o.data());
              for (int q = 0; q < K; ++q) r.at(b0 + k, m, q, l) = o[q];
            }
        }
        return;
      }
      PassResult pr[kBatch];
      for (int l = 0; l < L; ++l)
        for (int m = 0; m < M; ++m) {
          const Sorted& s = sorted[l][m];
          if (want_ap)
            batched_pass<true>(s.packed.data(), s.packed.size(), cut[l][m], c8.data(), active, pr);
          else
            batched_pass<false>(s.packed.data(), s.packed.size(), cut[l][m], c8.data(), active, pr);
          for (int k = 0; k < active; ++k) {
            fill(l, m, pr[k], o.data());
            for (int q = 0; q < K; ++q) r.at(b0 + k, m, q, l) = o[q];
          }
        }
    });
    return r;
  }
  std::vector<std::vector<std::uint32_t>> counts(threads);
  std::vector<std::vector<double>> outs(threads, std::vector<double>(K));
  parallel_resamples(B, threads, [&](int b, int t) {
    auto& c = counts[t];
    auto& o = outs[t];
    if (!stratified) draw_counts(options.seed, static_cast<std::uint64_t>(b), n_records, c);
    for (int l = 0; l < L; ++l) {
      if (stratified) {
        // Positives and negatives of this label resampled apart: the class counts stay fixed.
        c.assign(labels[l].truth.size() + 1, 0);
        auto rng = random::bootstrap_rng(options.seed ^ 0x5EED5A3F1ULL, static_cast<std::uint64_t>(b) * static_cast<std::uint64_t>(L) + l);
        for (const auto* ids : {&pos_ids[l], &neg_ids[l]}) {
          const std::uint64_t k = ids->size();
          for (std::uint64_t i = 0; i < k; ++i) ++c[(*ids)[rng.below(k)]];
        }
      }
      for (int m = 0; m < M; ++m) {
        PassResult pr = evaluate(l, m, c.data(), o.data());
        for (int k = 0; k < K; ++k) r.at(b, m, k, l) = o[k];
        if (bands && request.curve_points > 1) {
          const Sorted& s = sorted[l][m];
          roc_grid(s.packed.data(), s.packed.size(), c.data(), pr.positives, pr.negatives, request.curve_points,
                   bands->resample_tpr[m][l].data() + static_cast<std::size_t>(b) * request.curve_points);
        }
      }
    }
  });
  return r;
}

}  // namespace cx::metrics
