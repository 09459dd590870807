#include "cx/eval/inputs.hpp"

#include <optional>

#include "cx/data/labels.hpp"

#include <algorithm>
#include <unordered_map>
#include <unordered_set>

#include "cx/cli/error.hpp"
#include "cx/cli/log.hpp"
#include "cx/cli/names.hpp"
#include "cx/util/strings.hpp"

namespace cx::eval {

namespace {

const char* expected_forms(InputKind kind) {
  switch (kind) {
    case InputKind::scores:
      return "expected one table (truth NAME and score NAME.score), or --truth T --pred P, or --paired A B";
    case InputKind::masks:
      return "masks: expected TRUTH PRED (two streams or folders of PNG label maps), or --truth T --pred P";
    case InputKind::reports:
      break;
  }
  return "reports: expected TRUTH GENERATED (TSV key<TAB>text), or --truth T --pred P";
}

constexpr std::size_t kNoRow = static_cast<std::size_t>(-1);

}  // namespace

std::vector<std::string> Roles::model_names() const {
  std::vector<std::string> names;
  for (const auto& p : predictions) names.push_back(cli::input_name(p));
  return names;
}

Roles resolve_roles(const InputArgs& args, InputKind kind) {
  const bool truth_optional = kind == InputKind::scores;
  const auto& pos = args.positional;
  Roles r;
  r.truth = args.truth;
  if (!args.paired.empty()) {
    if (!args.pred.empty()) throw UsageError("--paired A B names the predictions: give no --pred");
    if (pos.size() == 1 && r.truth.empty()) r.truth = pos[0];
    else if (!pos.empty())
      throw UsageError("--paired A B names the predictions: give the truth as --truth T or as the one positional input");
    if (r.truth.empty() && !truth_optional)
      throw UsageError(std::string("--paired A B needs the ") +
                       (kind == InputKind::masks ? "truth masks" : "reference reports") +
                       ": --truth T (or one positional input)");
    r.predictions = args.paired;
  } else if (!args.pred.empty()) {
    if (!pos.empty()) throw UsageError("give the inputs either as --truth/--pred or as positional arguments");
    if (r.truth.empty() && !truth_optional) throw UsageError(expected_forms(kind));
    r.predictions = {args.pred};
  } else if (pos.size() == 2 && r.truth.empty()) {
    r.truth = pos[0];
    r.predictions = {pos[1]};
  } else if (pos.size() == 1 && (!r.truth.empty() || truth_optional)) {
    r.predictions = {pos[0]};
  } else {
    throw UsageError(expected_forms(kind));
  }
  if ((r.truth == "-") + std::count(r.predictions.begin(), r.predictions.end(), "-") > 1)
    throw UsageError("standard input can be only one of the inputs");
  return r;
}

void report_unmatched_keys(const std::vector<std::string>& keys, const std::string& missing_in,
                           const std::string& present_in, cli::BadInputs& bad) {
  if (keys.empty()) return;
  if (!bad.skipping())
    throw Error(at(missing_in, "no row for " + std::to_string(keys.size()) + " key" + (keys.size() > 1 ? "s" : "") +
                                   " of " + present_in + ": " + data::name_list(keys)));
  for (const auto& k : keys) bad.report(missing_in, "no row for key '" + k + "' of " + present_in);
}


// ---------------------------------------------------------------- scores

ScoreInputs join_scores(const data::Table* truth_table, const std::vector<data::Table>& preds,
                        const ScoreOptions& options, cli::BadInputs& bad) {
  const bool truth_is_pred0 = truth_table == nullptr;
  const data::Table& truth = truth_is_pred0 ? preds.at(0) : *truth_table;
  const int M = static_cast<int>(preds.size());
  const std::string& key = options.key;

  // Records: truth rows with a row in every prediction table.
  std::vector<std::vector<std::size_t>> pred_row(M);  // [model][truth row] -> prediction row, kNoRow if none
  std::vector<char> keep(truth.rows.size(), 1);
  for (int m = 0; m < M; ++m) {
    pred_row[m].assign(truth.rows.size(), kNoRow);
    if (m == 0 && truth_is_pred0) {
      // One table: no join checks its keys, so check them here (a repeated key would count twice).
      if (const int kc = truth.find_column(key); kc >= 0) {
        std::unordered_set<std::string> seen;
        for (std::size_t i = 0; i < truth.rows.size(); ++i)
          if (!seen.insert(truth.rows[i][kc]).second)
            throw Error(at(truth.where_row(i), "key '" + truth.rows[i][kc] + "' appears twice"));
      }
      for (std::size_t i = 0; i < truth.rows.size(); ++i) pred_row[m][i] = i;
      continue;
    }
    auto join = data::join_rows(truth, key, preds[m], key);
    report_unmatched_keys(join.only_left, preds[m].source, truth.source, bad);
    report_unmatched_keys(join.only_right, truth.source, preds[m].source, bad);
    for (auto [t, p] : join.pairs) pred_row[m][t] = p;
    for (std::size_t i = 0; i < truth.rows.size(); ++i)
      if (pred_row[m][i] == kNoRow) keep[i] = 0;
  }
  std::vector<std::size_t> records;
  for (std::size_t i = 0; i < truth.rows.size(); ++i)
    if (keep[i]) records.push_back(i);
  // A metric of nothing is not a result: a header-only table (or no key in common) is an error.
  if (records.empty())
    throw Error(at(truth.source, truth.rows.empty() ? "no rows (only a header)" : "no record has a row in every table"));

  auto score_column = [&](int m, const std::string& label) -> int {
    int c = preds[m].find_column(label + ".score");
    // A plain NAME column is a score only in a prediction table apart from the truth.
    if (c < 0 && !truth_is_pred0) c = preds[m].find_column(label);
    return c;
  };
  const int key_col = truth.find_column(key);
  std::vector<std::string> names;
  if (!options.labels.empty()) {
    names = options.labels;
    for (const auto& l : names) {
      truth.require_column(l);
      for (int m = 0; m < M; ++m)
        if (score_column(m, l) < 0) preds[m].require_column(l + ".score");
    }
  } else {
    for (std::size_t c = 0; c < truth.columns.size(); ++c) {
      const std::string& col = truth.columns[c];
      if (static_cast<int>(c) == key_col) continue;
      if (col.size() > 6 && util::ends_with(col, ".score")) continue;
      bool all = true;
      for (int m = 0; m < M; ++m) all = all && score_column(m, col) >= 0;
      if (all) names.push_back(col);
    }
    if (names.empty())
      throw Error(at(truth.source, "no label columns: expected a truth column NAME with scores in NAME.score" +
                                       std::string(truth_is_pred0 ? "" : " (or NAME in the prediction table)")));
  }

  ScoreInputs d;
  d.n_records = records.size();
  for (const auto& name : names) {
    metrics::LabelScores ls;
    ls.name = name;
    ls.scores.assign(M, {});
    const int tc = truth.require_column(name);
    std::vector<int> sc(M);
    for (int m = 0; m < M; ++m) sc[m] = score_column(m, name);
    for (std::size_t r = 0; r < records.size(); ++r) {
      const std::size_t tr = records[r];
      // Error locations are built only when a cell fails: the happy path stays allocation-free.
      auto value = data::try_parse_label_cell(truth.rows[tr][tc]);
      if (!value) value = data::parse_label_cell(truth.rows[tr][tc], at(truth.where_row(tr), "column " + name));
      const std::optional<bool> target = data::binary_target(*value, {options.uncertain, data::BlankPolicy::ignore});
      if (!target) continue;
      const std::uint8_t y = *target ? 1 : 0;
      std::vector<double> s(M);
      bool ok = true;
      for (int m = 0; m < M && ok; ++m) {
        const std::size_t pr = pred_row[m][tr];
        try {
          s[m] = data::parse_score(preds[m].rows[pr][sc[m]], std::string());
        } catch (const Error&) {
          try {
            data::parse_score(preds[m].rows[pr][sc[m]], at(preds[m].where_row(pr), "column " + preds[m].columns[sc[m]]));
          } catch (const Error& e) {
            bad.report(e.what());
          }
          ok = false;
        }
      }
      if (!ok) continue;
      ls.records.push_back(static_cast<std::uint32_t>(r));
      ls.truth.push_back(y);
      for (int m = 0; m < M; ++m) ls.scores[m].push_back(s[m]);
    }
    const auto pos = std::count(ls.truth.begin(), ls.truth.end(), 1);
    const auto neg = static_cast<std::int64_t>(ls.truth.size()) - pos;
    if (pos == 0 || neg == 0)
      log::warn(name + ": one class only (" + std::to_string(pos) + " positive, " + std::to_string(neg) +
                " negative): AUROC undefined, reported as NA");
    d.labels.push_back(std::move(ls));
  }
  return d;
}

ScoreInputs load_scores(const Roles& roles, const ScoreOptions& options, cli::BadInputs& bad) {
  std::vector<data::Table> preds;
  for (const auto& p : roles.predictions) preds.push_back(data::read_table(p));
  if (roles.truth.empty()) return join_scores(nullptr, preds, options, bad);
  const data::Table truth = data::read_table(roles.truth);
  return join_scores(&truth, preds, options, bad);
}

// ---------------------------------------------------------------- reports

int text_column_of(const data::Table& t, const std::string& key, const std::string& wanted) {
  if (!wanted.empty()) return t.require_column(wanted);
  if (t.columns.size() == 2) return t.columns[0] == key ? 1 : 0;
  for (const char* c : {"text", "report"}) {
    int i = t.find_column(c);
    if (i >= 0) return i;
  }
  throw Error(at(t.source, "which column holds the text? expected KEY<TAB>TEXT, a 'text' column, or --text-column"));
}

ReportPairs join_reports(const data::Table& truth, const std::vector<data::Table>& generated, const std::string& key,
                         const std::string& text_column, cli::BadInputs& bad) {
  const int tk = truth.require_column(key);
  const int tt = text_column_of(truth, key, text_column);
  std::unordered_map<std::string, std::size_t> index;  // key -> record
  std::vector<std::vector<std::string>> refs;
  std::vector<std::string> order;
  for (const auto& row : truth.rows) {
    auto [it, fresh] = index.emplace(row[tk], order.size());
    if (fresh) {
      order.push_back(row[tk]);
      refs.emplace_back();
    }
    refs[it->second].push_back(row[tt]);  // repeated keys: several references
  }
  const std::size_t M = generated.size();
  std::vector<std::vector<std::string>> gen(M, std::vector<std::string>(order.size()));
  std::vector<char> keep(order.size(), 1);
  for (std::size_t m = 0; m < M; ++m) {
    const data::Table& g = generated[m];
    const int gk = g.require_column(key);
    const int gt = text_column_of(g, key, text_column);
    std::vector<char> seen(order.size(), 0);
    std::vector<std::string> only_gen;
    for (std::size_t i = 0; i < g.rows.size(); ++i) {
      auto it = index.find(g.rows[i][gk]);
      if (it == index.end()) {
        only_gen.push_back(g.rows[i][gk]);
        continue;
      }
      if (seen[it->second]) throw Error(at(g.where_row(i), "key '" + g.rows[i][gk] + "' appears twice"));
      seen[it->second] = 1;
      gen[m][it->second] = g.rows[i][gt];
    }
    std::vector<std::string> only_truth;
    for (std::size_t r = 0; r < order.size(); ++r)
      if (!seen[r]) {
        only_truth.push_back(order[r]);
        keep[r] = 0;
      }
    report_unmatched_keys(only_truth, g.source, truth.source, bad);
    report_unmatched_keys(only_gen, truth.source, g.source, bad);
  }
  ReportPairs d;
  d.generated.assign(M, {});
  for (std::size_t r = 0; r < order.size(); ++r) {
    if (!keep[r]) continue;
    d.keys.push_back(order[r]);
    d.references.push_back(refs[r]);
    for (std::size_t m = 0; m < M; ++m) d.generated[m].push_back(gen[m][r]);
  }
  if (d.keys.empty()) throw Error(at(truth.source, "no report pairs to score"));
  return d;
}

ReportPairs load_reports(const Roles& roles, const std::string& key, const std::string& text_column,
                         cli::BadInputs& bad) {
  const data::Table truth = data::read_table(roles.truth, '\t');
  std::vector<data::Table> generated;
  for (const auto& p : roles.predictions) generated.push_back(data::read_table(p, '\t'));
  return join_reports(truth, generated, key, text_column, bad);
}

}  // namespace cx::eval
