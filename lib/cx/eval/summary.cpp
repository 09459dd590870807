#include "cx/eval/summary.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cx/cli/log.hpp"

namespace cx::eval {

namespace {

std::string fmt(double v, int decimals = 4) { return log::number(v, decimals); }

std::string fmt_p(double p) {
  if (std::isnan(p)) return "NA";
  char buf[64];
  std::snprintf(buf, sizeof buf, p < 0.001 ? "%.2e" : "%.4f", p);
  return buf;
}

nlohmann::json num(double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(nullptr); }

std::string interval(const metrics::Summary& x) {
  return std::isnan(x.low) ? "NA" : "[" + fmt(x.low) + ", " + fmt(x.high) + "]";
}

}  // namespace

void append_rows(Report& report, const metrics::Replicates& r, double ci, const std::vector<std::string>& only) {
  for (auto& row : metrics::summarise(r, ci, report.paired)) {
    if (row.metric == "auroc" || row.metric == "auprc") row.threshold = std::numeric_limits<double>::quiet_NaN();
    if (only.empty() || std::find(only.begin(), only.end(), row.metric) != only.end())
      report.rows.push_back(std::move(row));
  }
}

std::string ci_text(double ci) { return fmt(ci, ci == std::floor(ci) ? 0 : 1); }

std::string bootstrap_caption(const metrics::BootstrapOptions& bo) {
  return std::to_string(bo.resamples) + " bootstrap resamples (seed " + std::to_string(bo.seed) +
         (bo.stratified ? ", stratified" : "") + "), percentile " + ci_text(bo.ci) + "% CI";
}

std::string render_tsv(const Report& r) {
  std::ostringstream s;
  auto positives = [](const metrics::Summary& x) { return x.positives >= 0 ? std::to_string(x.positives) : ""; };
  if (!r.paired) {
    s << "metric\tlabel\tn\tpositives\testimate\tmedian\tci_low\tci_high\tresamples\tskipped";
    if (r.has_threshold) s << "\tthreshold";
    s << "\n";
    for (const auto& x : r.rows) {
      s << x.metric << '\t' << x.label << '\t' << x.n << '\t' << positives(x) << '\t' << fmt(x.estimate, 6) << '\t'
        << fmt(x.median, 6) << '\t' << fmt(x.low, 6) << '\t' << fmt(x.high, 6) << '\t' << x.used << '\t' << x.skipped;
      if (r.has_threshold) s << '\t' << (std::isnan(x.threshold) ? "" : fmt(x.threshold, 6));
      s << '\n';
    }
  } else {
    s << "metric\tlabel\tn\tpositives\testimate_a\testimate_b\tdifference\tmedian\tci_low\tci_high\tp_value\tresamples\tskipped\n";
    for (const auto& x : r.rows)
      s << x.metric << '\t' << x.label << '\t' << x.n << '\t' << positives(x) << '\t' << fmt(x.estimate_a, 6) << '\t'
        << fmt(x.estimate_b, 6) << '\t' << fmt(x.estimate, 6) << '\t' << fmt(x.median, 6) << '\t' << fmt(x.low, 6)
        << '\t' << fmt(x.high, 6) << '\t' << fmt_p(x.p_value) << '\t' << x.used << '\t' << x.skipped << '\n';
  }
  return s.str();
}

std::string render_terminal(const Report& r, double ci) {
  std::vector<std::vector<std::string>> cells;
  std::vector<bool> right;
  const std::string ci_name = ci_text(ci) + "% CI";
  if (!r.paired) {
    cells.push_back({"metric", "label", "n", "pos", "estimate", "median", ci_name, "skipped"});
    right = {false, false, true, true, true, true, false, true};
    if (r.has_threshold) {
      cells[0].push_back("threshold");
      right.push_back(true);
    }
    for (const auto& x : r.rows) {
      std::vector<std::string> row = {x.metric, x.label, std::to_string(x.n),
                                      x.positives >= 0 ? std::to_string(x.positives) : "-",
                                      fmt(x.estimate), fmt(x.median), interval(x), std::to_string(x.skipped)};
      if (r.has_threshold) row.push_back(std::isnan(x.threshold) ? "-" : fmt(x.threshold));
      cells.push_back(row);
    }
  } else {
    cells.push_back({"metric", "label", "n", "A", "B", "A - B", "median", ci_name, "p", "skipped"});
    right = {false, false, true, true, true, true, true, false, true, true};
    for (const auto& x : r.rows)
      cells.push_back({x.metric, x.label, std::to_string(x.n), fmt(x.estimate_a), fmt(x.estimate_b), fmt(x.estimate),
                       fmt(x.median), interval(x), fmt_p(x.p_value), std::to_string(x.skipped)});
  }
  std::vector<std::size_t> width(cells[0].size(), 0);
  for (const auto& row : cells)
    for (std::size_t c = 0; c < row.size(); ++c) width[c] = std::max(width[c], row[c].size());
  std::ostringstream s;
  for (const auto& n : r.notes) s << n << "\n";
  for (const auto& row : cells) {
    std::string line;
    for (std::size_t c = 0; c < row.size(); ++c) {
      const std::string& v = row[c];
      const std::string pad(width[c] - v.size(), ' ');
      if (c) line += "  ";
      line += right[c] ? pad + v : v + (c + 1 < row.size() ? pad : "");
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    s << line << "\n";
  }
  return s.str();
}

std::string render_json(const Report& r, const JsonHeader& h) {
  nlohmann::json j;
  j["tool"] = "cx-eval";
  j["version"] = h.version;
  j["metric"] = h.metric;
  const auto& bo = h.bootstrap;
  j["bootstrap"] = {{"resamples", bo.resamples}, {"ci", bo.ci}, {"seed", bo.seed}, {"stratified", bo.stratified},
                    {"interval", "percentile"}};
  j["paired"] = r.paired;
  j["models"] = h.models;
  if (!h.labeller.empty()) j["labeller"] = h.labeller;
  nlohmann::json rows = nlohmann::json::array();
  for (const auto& x : r.rows) {
    nlohmann::json row = {{"metric", x.metric}, {"label", x.label}, {"n", x.n}};
    if (x.positives >= 0) row["positives"] = x.positives;
    row["estimate"] = num(x.estimate);
    row["median"] = num(x.median);
    row["ci_low"] = num(x.low);
    row["ci_high"] = num(x.high);
    row["resamples"] = x.used;
    row["skipped"] = x.skipped;
    if (!std::isnan(x.threshold)) row["threshold"] = num(x.threshold);
    if (r.paired) {
      row["estimate_a"] = num(x.estimate_a);
      row["estimate_b"] = num(x.estimate_b);
      row["p_value"] = num(x.p_value);
    }
    rows.push_back(row);
  }
  j["rows"] = rows;
  return j.dump(2, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

}  // namespace cx::eval
