#include "cx/eval/roc_plot.hpp"

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <sstream>

#include "cx/cli/error.hpp"
#include "cx/cli/log.hpp"
#include "cx/cli/output.hpp"
#include "cx/cli/process.hpp"
#include "cx/eval/summary.hpp"
#include "cx/util/strings.hpp"

namespace cx::eval {

namespace {

constexpr const char* kRasteriser = "rsvg-convert";

std::string fmt(double v, int decimals) { return log::number(v, decimals); }

std::string xml_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    switch (c) {
      case '&': o += "&amp;"; break;
      case '<': o += "&lt;"; break;
      case '>': o += "&gt;"; break;
      case '"': o += "&quot;"; break;
      default: o.push_back(c);
    }
  }
  return o;
}

std::string svg_num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

bool is_png_path(const std::string& path) { return util::ends_with_ci(path, ".png"); }

}  // namespace

std::vector<metrics::Summary> auroc_per_model(const metrics::Replicates& r, const std::vector<std::string>& labels,
                                              double ci) {
  const double nan = std::numeric_limits<double>::quiet_NaN();
  const std::size_t per = r.metrics.size() * r.labels.size();  // values of one model in one resample
  std::vector<std::vector<metrics::Summary>> per_model;
  for (int m = 0; m < r.models; ++m) {
    metrics::Replicates one = r;
    one.models = 1;
    one.point.assign(per, nan);
    one.values.assign(static_cast<std::size_t>(r.resamples) * per, nan);
    std::copy(r.point.begin() + m * per, r.point.begin() + (m + 1) * per, one.point.begin());
    for (int b = 0; b < r.resamples; ++b)
      std::copy(r.values.begin() + b * r.stride() + m * per, r.values.begin() + b * r.stride() + (m + 1) * per,
                one.values.begin() + b * per);
    per_model.push_back(metrics::summarise(one, ci, false));
  }
  std::vector<metrics::Summary> rows;
  for (const auto& label : labels)
    for (int m = 0; m < r.models; ++m)
      for (const auto& row : per_model[m])
        if (row.metric == "auroc" && row.label == label) rows.push_back(row);
  return rows;
}

std::string roc_svg(const metrics::RocBands& bands, const std::vector<std::string>& labels,
                    const std::vector<metrics::Summary>& auroc_rows, const std::vector<std::string>& model_names,
                    double ci, int resamples) {
  const int L = static_cast<int>(labels.size());
  const int M = static_cast<int>(bands.curve.size());
  const int cols = std::min(L, 4), rows = (L + cols - 1) / cols;
  const double plot = 180, left = 52, top = 24 + 14.0 * M, bottom = 44, panel_w = 260;
  const double panel_h = top + plot + bottom;
  const double legend = 34 + 18.0 * M;
  const double W = std::max(cols * panel_w + 20, 660.0), H = legend + rows * panel_h + 10;
  const char* colours[] = {"#1f5fa8", "#d9661f"};
  const char* bands_fill[] = {"#9dc0e8", "#f5bf9a"};
  const double tail = (100 - ci) / 2;
  std::ostringstream s;
  s << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
    << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << svg_num(W) << "\" height=\"" << svg_num(H)
    << "\" viewBox=\"0 0 " << svg_num(W) << " " << svg_num(H) << "\" font-family=\"sans-serif\" font-size=\"11\">\n"
    << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  s << "<text x=\"10\" y=\"20\" font-size=\"13\">ROC curves; shaded: " << ci_text(ci)
    << "% percentile band of sensitivity over " << resamples << " bootstrap resamples</text>\n";
  for (int m = 0; m < M; ++m)
    s << "<rect x=\"10\" y=\"" << svg_num(30 + 18.0 * m) << "\" width=\"14\" height=\"10\" fill=\"" << colours[m % 2]
      << "\"/><text x=\"30\" y=\"" << svg_num(39 + 18.0 * m) << "\">" << (M > 1 ? (m ? "B: " : "A: ") : "")
      << xml_escape(model_names[m]) << "</text>\n";
  for (int l = 0; l < L; ++l) {
    const double ox = 10 + (l % cols) * panel_w + left, oy = legend + (l / cols) * panel_h + top;
    auto X = [&](double f) { return ox + f * plot; };
    auto Y = [&](double t) { return oy + (1 - t) * plot; };
    s << "<g>\n<text x=\"" << svg_num(ox) << "\" y=\"" << svg_num(oy - 8 - 14.0 * M)
      << "\" font-size=\"12\" font-weight=\"bold\">" << xml_escape(labels[l]) << "</text>\n";
    for (int m = 0; m < M; ++m) {
      const auto& row = auroc_rows[static_cast<std::size_t>(l) * M + m];
      s << "<text x=\"" << svg_num(ox) << "\" y=\"" << svg_num(oy - 8 - 14.0 * (M - 1 - m)) << "\" fill=\""
        << colours[m % 2] << "\">AUROC " << fmt(row.estimate, 3)
        << (std::isnan(row.low) ? "" : " [" + fmt(row.low, 3) + ", " + fmt(row.high, 3) + "]") << "</text>\n";
    }
    s << "<line x1=\"" << svg_num(X(0)) << "\" y1=\"" << svg_num(Y(0)) << "\" x2=\"" << svg_num(X(1)) << "\" y2=\""
      << svg_num(Y(1)) << "\" stroke=\"#aaa\" stroke-dasharray=\"4,3\"/>\n";
    // Bands first, then curves, so no band hides a curve.
    for (int m = 0; m < M; ++m) {
      const int P = bands.points;
      if (P < 2 || resamples == 0) continue;
      const auto& tpr = bands.resample_tpr[m][l];
      std::vector<double> lo(P), hi(P);
      bool any = false;
      for (int k = 0; k < P; ++k) {
        std::vector<double> v;
        for (int b = 0; b < resamples; ++b) {
          const float x = tpr[static_cast<std::size_t>(b) * P + k];
          if (!std::isnan(x)) v.push_back(x);
        }
        std::sort(v.begin(), v.end());
        lo[k] = metrics::percentile_sorted(v, tail);
        hi[k] = metrics::percentile_sorted(v, 100 - tail);
        any = any || !v.empty();
      }
      if (!any) continue;
      s << "<polygon fill=\"" << bands_fill[m % 2] << "\" fill-opacity=\"0.55\" stroke=\"none\" points=\"";
      for (int k = 0; k < P; ++k) s << svg_num(X(double(k) / (P - 1))) << "," << svg_num(Y(hi[k])) << " ";
      for (int k = P - 1; k >= 0; --k) s << svg_num(X(double(k) / (P - 1))) << "," << svg_num(Y(lo[k])) << " ";
      s << "\"/>\n";
    }
    for (int m = 0; m < M; ++m) {
      const auto& c = bands.curve[m][l];
      s << "<polyline fill=\"none\" stroke=\"" << colours[m % 2] << "\" stroke-width=\"1.6\" points=\"";
      // A vertex per distinct threshold would be 100,000 points for 100,000 records: keep those that
      // move the line by a quarter pixel or more (and the last), which draws the same picture.
      double px = -1e9, py = -1e9;
      for (std::size_t i = 0; i < c.fpr.size(); ++i) {
        if (std::isnan(c.fpr[i]) || std::isnan(c.tpr[i])) continue;
        const double x = X(c.fpr[i]), y = Y(c.tpr[i]);
        if (i + 1 < c.fpr.size() && std::abs(x - px) < 0.25 && std::abs(y - py) < 0.25) continue;
        s << svg_num(x) << "," << svg_num(y) << " ";
        px = x;
        py = y;
      }
      s << "\"/>\n";
    }
    s << "<rect x=\"" << svg_num(X(0)) << "\" y=\"" << svg_num(Y(1)) << "\" width=\"" << svg_num(plot) << "\" height=\""
      << svg_num(plot) << "\" fill=\"none\" stroke=\"#444\"/>\n";
    for (double t : {0.0, 0.5, 1.0}) {
      s << "<text x=\"" << svg_num(X(t)) << "\" y=\"" << svg_num(Y(0) + 14) << "\" text-anchor=\"middle\">" << fmt(t, 1)
        << "</text>\n";
      s << "<text x=\"" << svg_num(X(0) - 5) << "\" y=\"" << svg_num(Y(t) + 4) << "\" text-anchor=\"end\">" << fmt(t, 1)
        << "</text>\n";
    }
    s << "<text x=\"" << svg_num(X(0.5)) << "\" y=\"" << svg_num(Y(0) + 30)
      << "\" text-anchor=\"middle\">1 - specificity</text>\n";
    s << "<text transform=\"translate(" << svg_num(X(0) - 34) << "," << svg_num(Y(0.5))
      << ") rotate(-90)\" text-anchor=\"middle\">sensitivity</text>\n</g>\n";
  }
  s << "</svg>\n";
  return s.str();
}

void check_plot_paths(const std::vector<std::string>& paths) {
  for (const auto& p : paths)
    if (is_png_path(p) && cli::find_on_path(kRasteriser).empty())
      throw Error(at(p, std::string("no SVG rasteriser found (") + kRasteriser + "); write an .svg plot instead"));
}

void write_plot(const std::string& path, const std::string& svg) {
  if (!is_png_path(path)) {
    cli::write_file_atomic(path, svg);
    return;
  }
  // rsvg-convert reads the SVG from a temporary file beside the target (removed on every way out,
  // a signal included) and writes the PNG to its standard output, written atomically like any output.
  const std::string svg_file = path + ".tmp." + std::to_string(::getpid()) + ".svg";
  struct Temporary {
    const std::string& name;
    int slot = cli::register_temporary(name, false);
    ~Temporary() {
      ::unlink(name.c_str());
      cli::unregister_temporary(slot);
    }
  } temporary{svg_file};
  cli::write_file_atomic(svg_file, svg);
  std::string png;
  const int rc = cli::run_program({kRasteriser, "-b", "white", svg_file},
                                  {&png, /*quiet=*/log::level() == log::Level::quiet});
  if (rc != 0 || png.empty()) throw Error(at(path, std::string(kRasteriser) + " failed to rasterise the plot"));
  cli::write_file_atomic(path, png);
}

}  // namespace cx::eval

