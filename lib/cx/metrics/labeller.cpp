#include "cx/metrics/labeller.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <optional>

#include "cx/cli/error.hpp"
#include "cx/data/table.hpp"
#include "cx/util/strings.hpp"

namespace cx::metrics {

namespace {

constexpr std::size_t kNoMatch = static_cast<std::size_t>(-1);
constexpr int kMaxGap = 3;
constexpr int kDefaultBefore = 8;
constexpr int kDefaultAfter = 3;

bool alnum(unsigned char c) { return std::isalnum(c) || c >= 0x80; }

std::vector<std::string> split_lines(const std::string& text) {
  std::vector<std::string> lines;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    std::size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string line = text.substr(pos, nl - pos);
    if (!line.empty() && line.back() == '\r') line.pop_back();
    lines.push_back(line);
    pos = nl + 1;
  }
  return lines;
}

ReportLabeller::Phrase parse_phrase(const std::string& text, const std::string& where) {
  ReportLabeller::Phrase p;
  std::string word;
  for (std::size_t i = 0; i <= text.size(); ++i) {
    const char c = i < text.size() ? text[i] : ' ';
    if (c == ' ' || c == '\t') {
      if (!word.empty()) p.words.push_back(word);
      word.clear();
    } else {
      word.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    }
  }
  if (p.words.empty()) throw Error(at(where, "empty phrase"));
  if (p.words.front() == "..." || p.words.back() == "...") throw Error(at(where, "a phrase cannot begin or end with '...'"));
  return p;
}

bool word_matches(const std::string& pat, const std::string& tok) {
  if (tok == ",") return false;
  if (pat.size() > 1 && pat.back() == '*')
    return util::starts_with(tok, std::string_view(pat).substr(0, pat.size() - 1));
  return pat == tok;
}

// Matches words[k..] at toks[pos..]; returns the end position, recording literal positions.
std::size_t match_from(const ReportLabeller::Phrase& p, std::size_t k, const std::vector<std::string>& toks,
                       std::size_t pos, std::vector<std::size_t>& lits) {
  if (k == p.words.size()) return pos;
  if (p.words[k] == "...") {
    for (int g = 0; g <= kMaxGap; ++g) {
      if (g > 0) {
        const std::size_t at_ = pos + g - 1;
        if (at_ >= toks.size() || toks[at_] == ",") break;
      }
      std::size_t end = match_from(p, k + 1, toks, pos + g, lits);
      if (end != kNoMatch) return end;
    }
    return kNoMatch;
  }
  if (pos < toks.size() && word_matches(p.words[k], toks[pos])) {
    lits.push_back(pos);
    std::size_t end = match_from(p, k + 1, toks, pos + 1, lits);
    if (end == kNoMatch) lits.pop_back();
    return end;
  }
  return kNoMatch;
}

struct Match {
  std::size_t a, b;
  int window;
  std::vector<std::size_t> lits;
};

std::vector<Match> find_all(const std::vector<ReportLabeller::Phrase>& phrases, const std::vector<std::string>& toks) {
  std::vector<Match> out;
  for (const auto& p : phrases)
    for (std::size_t s = 0; s < toks.size(); ++s) {
      std::vector<std::size_t> lits;
      std::size_t e = match_from(p, 0, toks, s, lits);
      if (e != kNoMatch) out.push_back({s, e, p.window, std::move(lits)});
    }
  return out;
}

std::size_t words_between(const std::vector<std::string>& toks, std::size_t a, std::size_t b) {
  std::size_t n = 0;
  for (std::size_t i = a; i < b; ++i) n += toks[i] != ",";
  return n;
}

}  // namespace

const std::vector<std::string>& chexpert_labels() {
  static const std::vector<std::string> names = {
      "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion",
      "Edema", "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion",
      "Pleural Other", "Fracture", "Support Devices"};
  return names;
}

std::vector<std::vector<std::string>> labeller_sentences(const std::string& text) {
  std::vector<std::vector<std::string>> sentences;
  std::vector<std::string> cur;
  std::string word;
  const std::size_t n = text.size();
  auto flush_word = [&] {
    if (!word.empty()) cur.push_back(word);
    word.clear();
  };
  auto end_sentence = [&] {
    flush_word();
    while (!cur.empty() && cur.back() == ",") cur.pop_back();
    if (!cur.empty()) sentences.push_back(std::move(cur));
    cur.clear();
  };
  for (std::size_t i = 0; i < n; ++i) {
    const unsigned char c = static_cast<unsigned char>(std::tolower(static_cast<unsigned char>(text[i])));
    const unsigned char next = i + 1 < n ? static_cast<unsigned char>(text[i + 1]) : ' ';
    const unsigned char prev = i > 0 ? static_cast<unsigned char>(text[i - 1]) : ' ';
    if (alnum(c)) {
      word.push_back(static_cast<char>(c));
    } else if ((c == '-' || c == '/' || c == '\'') && !word.empty() && alnum(next)) {
      word.push_back(static_cast<char>(c));
    } else if (c == '.' && std::isdigit(prev) && std::isdigit(next)) {
      word.push_back('.');
    } else {
      flush_word();
      if (c == ',') {
        if (!cur.empty() && cur.back() != ",") cur.push_back(",");
      } else if (c == '.' || c == '?' || c == '!' || c == ';' || c == ':') {
        end_sentence();
      }
    }
  }
  end_sentence();
  return sentences;
}

ReportLabeller ReportLabeller::from_text(const std::string& mentions, const std::string& negation,
                                         const std::string& uncertainty) {
  ReportLabeller r;
  const auto& names = chexpert_labels();
  r.labels_.resize(names.size());
  {
    auto lines = split_lines(mentions);
    for (std::size_t i = 0; i < lines.size(); ++i) {
      std::string line = util::trim(lines[i]);
      if (line.empty() || line[0] == '#') continue;
      const std::string where = "mentions.txt: line " + std::to_string(i + 1);
      auto tab = lines[i].find('\t');
      if (tab == std::string::npos) throw Error(at(where, "expected LABEL<TAB>PHRASE"));
      std::string label = util::trim(lines[i].substr(0, tab));
      std::string phrase = util::trim(lines[i].substr(tab + 1));
      auto it = std::find(names.begin(), names.end(), label);
      if (it == names.end() || label == "No Finding") throw Error(at(where, "unknown label '" + label + "'"));
      bool block = !phrase.empty() && phrase[0] == '!';
      Phrase p = parse_phrase(block ? phrase.substr(1) : phrase, where);
      auto& rules = r.labels_[it - names.begin()];
      (block ? rules.blocks : rules.mentions).push_back(std::move(p));
    }
  }
  auto parse_cues = [](const std::string& text, const std::string& file,
                       const std::vector<std::pair<std::string, std::vector<Phrase>*>>& sections, int default_window_before) {
    std::vector<Phrase>* cur = nullptr;
    int default_window = 0;
    auto lines = split_lines(text);
    for (std::size_t i = 0; i < lines.size(); ++i) {
      std::string line = util::trim(lines[i]);
      if (line.empty() || line[0] == '#') continue;
      const std::string where = file + ": line " + std::to_string(i + 1);
      if (line.front() == '[') {
        cur = nullptr;
        for (const auto& [name, vec] : sections)
          if (line == "[" + name + "]") {
            cur = vec;
            default_window = name.find("after") != std::string::npos ? kDefaultAfter : default_window_before;
          }
        if (!cur) throw Error(at(where, "unknown section " + line));
        continue;
      }
      if (!cur) throw Error(at(where, "a cue before any [section]"));
      auto tab = line.find('\t');
      Phrase p = parse_phrase(tab == std::string::npos ? line : util::trim(line.substr(0, tab)), where);
      p.window = default_window;
      if (tab != std::string::npos) {
        double w = data::parse_number(util::trim(line.substr(tab + 1)), where);
        if (w < 0 || w != std::floor(w)) throw Error(at(where, "window must be a whole number of words"));
        p.window = static_cast<int>(w);
      }
      cur->push_back(std::move(p));
    }
  };
  parse_cues(negation, "negation.txt",
             {{"before", &r.neg_before_}, {"after", &r.neg_after_}, {"pseudo", &r.pseudo_}, {"termination", &r.termination_}},
             kDefaultBefore);
  parse_cues(uncertainty, "uncertainty.txt",
             {{"override-before", &r.unc_override_before_},
              {"override-after", &r.unc_override_after_},
              {"before", &r.unc_before_},
              {"after", &r.unc_after_}},
             kDefaultBefore);
  return r;
}

ReportLabeller ReportLabeller::load(const std::string& dir) {
  auto read = [&](const std::string& name) { return data::read_text_file(dir + "/" + name); };
  try {
    return from_text(read("mentions.txt"), read("negation.txt"), read("uncertainty.txt"));
  } catch (const Error& e) {
    std::string msg = e.what();
    if (util::starts_with(msg, dir)) throw;
    throw Error(dir + "/" + msg);
  }
}

std::vector<LabelValue> ReportLabeller::label(const std::string& report) const {
  const auto& names = chexpert_labels();
  std::vector<LabelValue> out(names.size(), LabelValue::blank);
  auto rank = [](LabelValue c) {
    switch (c) {
      case LabelValue::positive: return 3;
      case LabelValue::uncertain: return 2;
      case LabelValue::negative: return 1;
      default: return 0;
    }
  };
  for (const auto& toks : labeller_sentences(report)) {
    const auto terms = find_all(termination_, toks);
    const auto pseudo = find_all(pseudo_, toks);
    auto not_pseudo = [&](std::vector<Match> ms) {
      ms.erase(std::remove_if(ms.begin(), ms.end(),
                              [&](const Match& m) {
                                for (const auto& p : pseudo)
                                  if (m.a < p.b && p.a < m.b) return true;
                                return false;
                              }),
               ms.end());
      return ms;
    };
    const auto neg_before = not_pseudo(find_all(neg_before_, toks));
    const auto neg_after = not_pseudo(find_all(neg_after_, toks));
    const auto ob = find_all(unc_override_before_, toks);
    const auto oa = find_all(unc_override_after_, toks);
    const auto ub = find_all(unc_before_, toks);
    const auto ua = find_all(unc_after_, toks);

    for (std::size_t l = 0; l < labels_.size(); ++l) {
      const auto& rules = labels_[l];
      if (rules.mentions.empty()) continue;
      auto mentions = find_all(rules.mentions, toks);
      if (mentions.empty()) continue;
      const auto blocks = find_all(rules.blocks, toks);
      for (const auto& m : mentions) {
        bool blocked = false;
        for (const auto& b : blocks)
          if (b.a <= m.a && m.b <= b.b) blocked = true;
        if (blocked) continue;
        std::size_t cs = 0, ce = toks.size();
        for (const auto& t : terms) {
          if (t.b <= m.a) cs = std::max(cs, t.b);
          if (t.a >= m.b) ce = std::min(ce, t.a);
        }
        auto in_gap = [&](const Match& c) {
          if (c.a < m.a || c.b > m.b) return false;
          for (std::size_t i = c.a; i < c.b; ++i)
            if (std::find(m.lits.begin(), m.lits.end(), i) != m.lits.end()) return false;
          return true;
        };
        auto any_before = [&](const std::vector<Match>& cues) {
          for (const auto& c : cues) {
            if (in_gap(c)) return true;
            if (c.b <= m.a && c.a >= cs && words_between(toks, c.b, m.a) <= static_cast<std::size_t>(c.window)) return true;
          }
          return false;
        };
        auto any_after = [&](const std::vector<Match>& cues) {
          for (const auto& c : cues) {
            if (c.a < m.b || c.b > ce) continue;
            bool comma = false;
            for (std::size_t i = m.b; i < c.a; ++i) comma |= toks[i] == ",";
            if (!comma && words_between(toks, m.b, c.a) <= static_cast<std::size_t>(c.window)) return true;
          }
          return false;
        };
        LabelValue code;
        if (any_before(ob) || any_after(oa)) code = LabelValue::uncertain;
        else if (any_before(neg_before) || any_after(neg_after)) code = LabelValue::negative;
        else if (any_before(ub) || any_after(ua)) code = LabelValue::uncertain;
        else code = LabelValue::positive;
        if (rank(code) > rank(out[l])) out[l] = code;
      }
    }
  }
  // No Finding: nothing positive or uncertain but support devices.
  bool finding = false;
  for (std::size_t l = 0; l < names.size(); ++l) {
    if (names[l] == "No Finding" || names[l] == "Support Devices") continue;
    if (out[l] == LabelValue::positive || out[l] == LabelValue::uncertain) finding = true;
  }
  out[0] = finding ? LabelValue::blank : LabelValue::positive;
  return out;
}

Replicates bootstrap_label_f1(const std::vector<std::vector<LabelValue>>& truth,
                              const std::vector<std::vector<std::vector<LabelValue>>>& predicted,
                              const std::vector<std::string>& label_names, UncertainPolicy policy,
                              const BootstrapOptions& options) {
  const std::size_t n = truth.size(), L = label_names.size();
  const int M = static_cast<int>(predicted.size());
  const data::LabelPolicy label_policy{policy, data::BlankPolicy::zeros};  // blank counts as negative
  auto value = [&](LabelValue c) -> int {  // 1, 0, or -1 excluded
    const std::optional<bool> t = data::binary_target(c, label_policy);
    return t ? static_cast<int>(*t) : -1;
  };
  // state[model][record * L + label]: -1 excluded, else 2 * truth + predicted.
  std::vector<std::vector<std::int8_t>> state(M, std::vector<std::int8_t>(n * L));
  for (int m = 0; m < M; ++m) {
    if (predicted[m].size() != n) throw Error("metrics: truth and predicted labels differ in record count");
    for (std::size_t i = 0; i < n; ++i)
      for (std::size_t l = 0; l < L; ++l) {
        const int t = value(truth[i][l]);
        int p = value(predicted[m][i][l]);
        // A paired comparison needs the same records per label in both models: exclusion by either.
        for (int o = 0; o < M && policy == UncertainPolicy::ignore; ++o)
          if (value(predicted[o][i][l]) < 0) p = -1;
        state[m][i * L + l] = static_cast<std::int8_t>(t < 0 || p < 0 ? -1 : 2 * t + p);
      }
  }
  Replicates r;
  r.metrics = {"chexpert-f1"};
  r.labels = label_names;
  r.labels.push_back("micro");
  r.in_macro.assign(L + 1, true);
  r.in_macro[L] = false;
  r.macro_name = "macro";
  r.n.assign(L + 1, 0);
  r.positives.assign(L + 1, 0);
  for (std::size_t i = 0; i < n; ++i)
    for (std::size_t l = 0; l < L; ++l) {
      const int s = state[0][i * L + l];
      if (s < 0) continue;
      ++r.n[l];
      r.positives[l] += s >= 2;
      ++r.n[L];
      r.positives[L] += s >= 2;
    }
  r.resize(M, options.resamples);
  auto f1 = [](double tp, double fp, double fn) {
    const double d = 2 * tp + fp + fn;
    return d > 0 ? 2 * tp / d : std::numeric_limits<double>::quiet_NaN();
  };
  auto compute = [&](const std::uint32_t* counts, int m, double* out /* L + 1 */) {
    std::vector<double> tp(L, 0), fp(L, 0), fn(L, 0);
    for (std::size_t i = 0; i < n; ++i) {
      const double c = counts ? counts[i] : 1.0;
      if (c == 0) continue;
      const std::int8_t* s = state[m].data() + i * L;
      for (std::size_t l = 0; l < L; ++l) {
        if (s[l] == 3) tp[l] += c;
        else if (s[l] == 1) fp[l] += c;
        else if (s[l] == 2) fn[l] += c;
      }
    }
    double TP = 0, FP = 0, FN = 0;
    for (std::size_t l = 0; l < L; ++l) {
      out[l] = f1(tp[l], fp[l], fn[l]);
      TP += tp[l];
      FP += fp[l];
      FN += fn[l];
    }
    out[L] = f1(TP, FP, FN);
  };
  std::vector<double> tmp(L + 1);
  for (int m = 0; m < M; ++m) {
    compute(nullptr, m, tmp.data());
    for (std::size_t l = 0; l <= L; ++l) r.at_point(m, 0, static_cast<int>(l)) = tmp[l];
  }
  const int threads = std::max(1, options.threads);
  std::vector<std::vector<std::uint32_t>> counts(threads);
  std::vector<std::vector<double>> outs(threads, std::vector<double>(L + 1));
  parallel_resamples(options.resamples, threads, [&](int b, int t) {
    draw_counts(options.seed, static_cast<std::uint64_t>(b), n, counts[t]);
    for (int m = 0; m < M; ++m) {
      compute(counts[t].data(), m, outs[t].data());
      for (std::size_t l = 0; l <= L; ++l) r.at(b, m, 0, static_cast<int>(l)) = outs[t][l];
    }
  });
  return r;
}

}  // namespace cx::metrics
