#include "cx/metrics/text.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <unordered_map>

#include "cx/cli/error.hpp"

namespace cx::metrics {

namespace {

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_alnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }

void push_word(std::string word, std::vector<std::string>& out) {
  // Contractions as PTB splits them; other edge apostrophes are quotes and go.
  static const char* kSuffixes[] = {"'s", "'re", "'ve", "'ll", "'d", "'m"};
  auto strip = [](std::string w) {
    std::size_t b = 0, e = w.size();
    while (b < e && w[b] == '\'') ++b;
    while (e > b && w[e - 1] == '\'') --e;
    return w.substr(b, e - b);
  };
  if (word.size() > 3 && word.compare(word.size() - 3, 3, "n't") == 0 && is_alnum(word[word.size() - 4])) {
    std::string head = strip(word.substr(0, word.size() - 3));
    if (!head.empty()) out.push_back(head);
    out.push_back("n't");
    return;
  }
  for (const char* suf : kSuffixes) {
    const std::size_t n = std::char_traits<char>::length(suf);
    if (word.size() > n && word.compare(word.size() - n, n, suf) == 0 && is_alnum(word[word.size() - n - 1])) {
      std::string head = strip(word.substr(0, word.size() - n));
      if (!head.empty()) out.push_back(head);
      out.push_back(suf);
      return;
    }
  }
  word = strip(word);
  if (!word.empty()) out.push_back(word);
}

std::string ngram_key(const std::vector<std::string>& w, std::size_t at, std::size_t n) {
  std::string k = w[at];
  for (std::size_t i = 1; i < n; ++i) {
    k.push_back('\x1f');
    k += w[at + i];
  }
  return k;
}

std::unordered_map<std::string, int> ngram_counts(const std::vector<std::string>& w, std::size_t n) {
  std::unordered_map<std::string, int> c;
  for (std::size_t i = 0; i + n <= w.size(); ++i) ++c[ngram_key(w, i, n)];
  return c;
}

std::size_t lcs_length(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  std::vector<std::size_t> prev(b.size() + 1, 0), cur(b.size() + 1, 0);
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j)
      cur[j] = a[i - 1] == b[j - 1] ? prev[j - 1] + 1 : std::max(prev[j], cur[j - 1]);
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

}  // namespace

std::vector<std::string> coco_tokenize(const std::string& text) {
  std::vector<std::string> out;
  std::string word;
  const std::size_t n = text.size();
  for (std::size_t i = 0; i < n; ++i) {
    const char c = static_cast<char>(std::tolower(static_cast<unsigned char>(text[i])));
    const char prev = i > 0 ? text[i - 1] : ' ';
    const char next = i + 1 < n ? text[i + 1] : ' ';
    bool keep;
    switch (c) {
      case ',':
      case ':':
        keep = is_digit(prev) && is_digit(next);
        break;
      case '.':
      case '-':
        keep = is_alnum(prev) && is_alnum(next);
        break;
      case '(': case ')': case '[': case ']': case '{': case '}':
      case '"': case '`': case ';': case '?': case '!':
      case ' ': case '\t': case '\n': case '\r': case '\f': case '\v':
        keep = false;
        break;
      default:
        keep = true;
    }
    if (keep) {
      word.push_back(c);
    } else if (!word.empty()) {
      push_word(std::move(word), out);
      word.clear();
    }
  }
  if (!word.empty()) push_word(std::move(word), out);
  return out;
}

BleuStats bleu_stats(const std::vector<std::string>& hyp, const std::vector<std::vector<std::string>>& refs) {
  BleuStats s;
  s.testlen = static_cast<double>(hyp.size());
  // Closest reference length, the shorter on a tie (pycocoevalcap's min over (|l - c|, l)).
  bool first = true;
  for (const auto& r : refs) {
    const double l = static_cast<double>(r.size());
    if (first || std::abs(l - s.testlen) < std::abs(s.reflen - s.testlen) ||
        (std::abs(l - s.testlen) == std::abs(s.reflen - s.testlen) && l < s.reflen))
      s.reflen = l;
    first = false;
  }
  for (std::size_t n = 1; n <= 4; ++n) {
    s.guess[n - 1] = hyp.size() >= n ? static_cast<double>(hyp.size() - n + 1) : 0.0;
    std::unordered_map<std::string, int> max_ref;
    for (const auto& r : refs)
      for (const auto& [k, c] : ngram_counts(r, n)) {
        int& m = max_ref[k];
        m = std::max(m, c);
      }
    double correct = 0;
    for (const auto& [k, c] : ngram_counts(hyp, n)) {
      auto it = max_ref.find(k);
      if (it != max_ref.end()) correct += std::min(c, it->second);
    }
    s.correct[n - 1] = correct;
  }
  return s;
}

std::array<double, 4> bleu_from_stats(const BleuStats& t) {
  constexpr double tiny = 1e-15, small = 1e-9;  // pycocoevalcap's guards against 0/0
  std::array<double, 4> out{};
  double prod = 1.0;
  for (int k = 0; k < 4; ++k) {
    prod *= (t.correct[k] + tiny) / (t.guess[k] + small);
    out[k] = std::pow(prod, 1.0 / (k + 1));
  }
  const double ratio = (t.testlen + tiny) / (t.reflen + small);
  if (ratio < 1)
    for (auto& b : out) b *= std::exp(1 - 1 / ratio);
  return out;
}

double rouge_l(const std::vector<std::string>& hyp, const std::vector<std::vector<std::string>>& refs, double beta) {
  if (hyp.empty() || refs.empty()) return 0.0;
  double pmax = 0, rmax = 0;
  for (const auto& r : refs) {
    if (r.empty()) continue;
    const double lcs = static_cast<double>(lcs_length(r, hyp));
    pmax = std::max(pmax, lcs / hyp.size());
    rmax = std::max(rmax, lcs / r.size());
  }
  if (pmax == 0 || rmax == 0) return 0.0;
  return (1 + beta * beta) * pmax * rmax / (rmax + beta * beta * pmax);
}

Replicates bootstrap_text_metrics(const std::vector<std::vector<std::vector<std::string>>>& hyp_tokens,
                                  const std::vector<std::vector<std::vector<std::string>>>& ref_tokens, bool want_bleu,
                                  bool want_rouge, const BootstrapOptions& options) {
  const int M = static_cast<int>(hyp_tokens.size());
  const std::size_t n = ref_tokens.size();
  for (const auto& h : hyp_tokens)
    if (h.size() != n) throw Error("metrics: hypotheses and references differ in count");
  Replicates r;
  if (want_bleu)
    for (int k = 1; k <= 4; ++k) r.metrics.push_back("bleu-" + std::to_string(k));
  if (want_rouge) r.metrics.push_back("rouge-l");
  r.labels = {"corpus"};
  r.n = {static_cast<std::int64_t>(n)};
  r.positives = {-1};
  r.resize(M, options.resamples);

  std::vector<std::vector<BleuStats>> stats(M, std::vector<BleuStats>(want_bleu ? n : 0));
  std::vector<std::vector<double>> rouge(M, std::vector<double>(want_rouge ? n : 0));
  for (int m = 0; m < M; ++m)
    for (std::size_t i = 0; i < n; ++i) {
      if (want_bleu) stats[m][i] = bleu_stats(hyp_tokens[m][i], ref_tokens[i]);
      if (want_rouge) rouge[m][i] = rouge_l(hyp_tokens[m][i], ref_tokens[i]);
    }

  auto compute = [&](const std::uint32_t* counts, int m, double* out) {
    int k = 0;
    if (want_bleu) {
      BleuStats total;
      for (std::size_t i = 0; i < n; ++i) {
        const double c = counts ? counts[i] : 1.0;
        if (c == 0) continue;
        const BleuStats& s = stats[m][i];
        total.testlen += c * s.testlen;
        total.reflen += c * s.reflen;
        for (int j = 0; j < 4; ++j) {
          total.guess[j] += c * s.guess[j];
          total.correct[j] += c * s.correct[j];
        }
      }
      const auto b = bleu_from_stats(total);
      for (int j = 0; j < 4; ++j) out[k++] = n ? b[j] : std::numeric_limits<double>::quiet_NaN();
    }
    if (want_rouge) {
      double sum = 0, w = 0;
      for (std::size_t i = 0; i < n; ++i) {
        const double c = counts ? counts[i] : 1.0;
        sum += c * rouge[m][i];
        w += c;
      }
      out[k++] = w > 0 ? sum / w : std::numeric_limits<double>::quiet_NaN();
    }
  };
  const int K = static_cast<int>(r.metrics.size());
  std::vector<double> tmp(K);
  for (int m = 0; m < M; ++m) {
    compute(nullptr, m, tmp.data());
    for (int k = 0; k < K; ++k) r.at_point(m, k, 0) = tmp[k];
  }
  const int threads = std::max(1, options.threads);
  std::vector<std::vector<std::uint32_t>> counts(threads);
  std::vector<std::vector<double>> outs(threads, std::vector<double>(K));
  parallel_resamples(options.resamples, threads, [&](int b, int t) {
    draw_counts(options.seed, static_cast<std::uint64_t>(b), n, counts[t]);
    for (int m = 0; m < M; ++m) {
      compute(counts[t].data(), m, outs[t].data());
      for (int k = 0; k < K; ++k) r.at(b, m, k, 0) = outs[t][k];
    }
  });
  return r;
}

}  // namespace cx::metrics
