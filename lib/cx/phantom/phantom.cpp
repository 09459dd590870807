#include "cx/phantom/phantom.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <stdexcept>
#include <vector>

#include "cx/phantom/raster.hpp"
#include "cx/phantom/report.hpp"
#include "cx/random/rng.hpp"

// How the picture is made: a density map ("how much tissue the beam crosses") is composed in a
// canonical, upright frame from the body outline, lungs (negative: air), heart, bones, vessels and
// the findings; it is exposed (1 - exp(-k d), then a gamma), blurred, rotated/scaled/shifted into
// the image as an acquisition would be, and given detector noise. The mask is drawn in the same
// canonical frame and moved by the same transform (nearest neighbour).

namespace cx::phantom {
namespace {

using random::phantom_rng;
using random::Rng;

constexpr double kPi = 3.14159265358979323846;
constexpr double kFieldOfViewMm = 400.0;  // nominal detector width, for mm figures in the report

// Sub-streams of one record (see the header: each finding draws from its own).
enum Stream : std::uint64_t {
  kAnatomyStream = 1,
  kVesselStream = 2,
  kCardiomegalyStream = 3,
  kEffusionStream = 4,
  kNoduleStream = 5,
  kPneumothoraxStream = 6,
  kReportStream = 7,
  kNoiseStream = 8,
  kTextureStream = 9,
  kBodyTextureStream = 10,
};

// Gaussian-like noise for pixels, two samples per generator call: each the sum of four 8-bit
// uniforms (Irwin-Hall, 1021 levels), scaled to unit variance. Far cheaper than normal(), and
// plenty for image grain.
inline void grain2(Rng& rng, float& a, float& b) {
  const std::uint64_t r = rng.next();
  auto sum4 = [](std::uint32_t v) {
    return static_cast<float>((v & 0xFF) + ((v >> 8) & 0xFF) + ((v >> 16) & 0xFF) + (v >> 24));
  };
  // mean 4 * 127.5, variance 4 * (256^2 - 1) / 12
  a = (sum4(static_cast<std::uint32_t>(r)) - 510.0f) * (1.0f / 147.7949f);
  b = (sum4(static_cast<std::uint32_t>(r >> 32)) - 510.0f) * (1.0f / 147.7949f);
}

// The cardiac silhouette: an ellipse tilted so that its apex points down and to the patient's left.
struct Heart {
  double x = 0, y = 0, a = 1, b = 1, phi = 0;
  double c = 1, s = 0;
  void set_angle(double angle) {
    phi = angle;
    c = std::cos(angle);
    s = std::sin(angle);
  }
  double r2(double px, double py) const {
    const double dx = px - x, dy = py - y;
    const double p = (dx * c + dy * s) / a, q = (-dx * s + dy * c) / b;
    return p * p + q * q;
  }
  // The ellipse's x-interval on the horizontal line py; false when the line misses it.
  bool row_span(double py, double& x0, double& x1) const {
    const double ia = 1.0 / (a * a), ib = 1.0 / (b * b);
    const double A = c * c * ia + s * s * ib, B = 2.0 * c * s * (ia - ib), C = s * s * ia + c * c * ib;
    const double dy = py - y;
    const double disc = B * B * dy * dy - 4.0 * A * (C * dy * dy - 1.0);
    if (disc <= 0.0) return false;
    const double r = std::sqrt(disc);
    x0 = x + (-B * dy - r) / (2.0 * A);
    x1 = x + (-B * dy + r) / (2.0 * A);
    return true;
  }
};

// One hemithorax in the canonical (unrotated) frame, in pixels. u is the distance from the midline
// towards this side's chest wall. s = -1 is the image's left half (patient's right), s = +1 the
// image's right half (patient's left).
struct Hemithorax {
  int s = 1;
  double cx = 0;
  double S = 512;
  double y_apex = 0, u_apex = 0;  // the apex, rounded: lateral and medial borders meet here
  double y_cp = 0, u_cp = 0;      // the costophrenic angle, the lung's lowest lateral point
  double y_dome = 0, u_dome = 0;  // the top of the hemidiaphragm
  double y_cardio = 0;            // the diaphragm where it meets the mediastinum
  double m_top = 0, m_bot = 0;    // half-width of the mediastinum at the apex and at the base
  double knob_y = 0, knob_h = 0, knob_r = 1;  // the aortic knob (patient's left only)
  // The medial border where the heart and its vessels push it out, per pixel row (u; 0 = none).
  std::vector<float> cardiac;
  // Per-pixel tables of the borders at pixel centres (rows for med/lat, columns for dia).
  std::vector<float> med_row, lat_row, dia_col;

  double t_of(double y) const { return clamp01((y - y_apex) / (y_cp - y_apex)); }
  double u_of(double x) const { return s * (x - cx); }
  double x_of(double u) const { return cx + s * u; }
  double lat(double y) const { return u_apex + (u_cp - u_apex) * std::pow(t_of(y), 0.42); }
  double mediastinum(double y) const {
    double m = m_top + (m_bot - m_top) * t_of(y);
    if (knob_h > 0) {
      const double z = (y - knob_y) / knob_r;
      m += knob_h * std::exp(-z * z);
    }
    return m;
  }
  double cardiac_at(double y) const {
    if (cardiac.empty()) return 0.0;
    const double f = std::clamp(y - 0.5, 0.0, static_cast<double>(cardiac.size() - 1));
    const std::size_t i = static_cast<std::size_t>(f);
    const std::size_t j = std::min(i + 1, cardiac.size() - 1);
    return cardiac[i] + (f - i) * (cardiac[j] - cardiac[i]);
  }
  double med(double y) const {
    const double t = t_of(y);
    const double m = std::max(mediastinum(y), cardiac_at(y));
    return u_apex - (u_apex - m) * std::min(1.0, std::sqrt(t / 0.16));
  }
  double dia(double u) const {
    if (u >= u_dome) {
      const double q = (u - u_dome) / (u_cp - u_dome);
      return y_dome + (y_cp - y_dome) * q * q;
    }
    const double q = std::min(1.3, (u_dome - u) / (u_dome - m_bot));
    return y_dome + (y_cardio - y_dome) * q * q;
  }
  // How far inside the lung, in units of each border's softness: the chest wall fades gently (the
  // lung thins towards it), the diaphragm and mediastinum are crisp. > 0 inside, <= 0 outside.
  static double depth_of(double u, double y, double med_u, double lat_u, double dia_y, double S) {
    const double a = (u - med_u) / (0.010 * S);
    const double b = (lat_u - u) / (0.030 * S);
    const double c = (dia_y - y) / (0.007 * S);
    return std::min({a, b, c});
  }
  double depth(double u, double y) const { return depth_of(u, y, med(y), lat(y), dia(u), S); }
  bool inside(double u, double y) const { return depth(u, y) > 0.0; }

  void build_tables(int n) {
    med_row.resize(n);
    lat_row.resize(n);
    dia_col.resize(n);
    for (int i = 0; i < n; ++i) {
      med_row[i] = static_cast<float>(med(i + 0.5));
      lat_row[i] = static_cast<float>(lat(i + 0.5));
      dia_col[i] = static_cast<float>(dia(u_of(i + 0.5)));
    }
  }
  // depth() at the centre of pixel (x, y), from the tables.
  double depth_px(int x, int y) const { return depth_of(u_of(x + 0.5), y + 0.5, med_row[y], lat_row[y], dia_col[x], S); }
  // The same, ignoring the chest wall: how far from the mediastinum and the diaphragm.
  double inner_depth_px(int x, int y) const {
    return std::min((u_of(x + 0.5) - med_row[y]) / (0.010 * S), (dia_col[x] - (y + 0.5)) / (0.007 * S));
  }
};

struct Anatomy {
  double S = 512;
  double cx = 256;
  Hemithorax side[2];  // [0] image left (patient right), [1] image right (patient left)
  Heart heart;
  double heart_ctr_normal = 0.45;
  double body_half = 0, neck_half = 0, neck_base = 0, shoulder_drop = 0;
  double arm_u = 0, arm_half = 0;
  bool arms = false;
  double rib_pitch = 0;
  double exposure = 2.0, gamma = 1.3, noise = 0.012, lung_air = 0.85;
  bool female = false;
  int age = 50;
  double hilum_t[2] = {0.5, 0.46};
  double hilum_off[2] = {0.03, 0.03};
  Pt hilum[2];
  double carina_dy = 0;
  bool bubble = false;
  double bubble_u = 0, bubble_r = 0, bubble_gap = 0;
  Pt breast_c[2];
  double breast_r = 0;
  // Acquisition: rotation about the image centre, scale and shift (canonical -> image).
  double rot = 0, scale = 1, shift_x = 0, shift_y = 0;

  // The diaphragm height under column x (either side of the midline).
  double diaphragm(double x) const {
    const Hemithorax& h = x < cx ? side[0] : side[1];
    return h.dia(h.u_of(x));
  }
};

struct EffusionFinding {
  bool on[2] = {false, false};
  double height[2] = {0, 0};  // how far the meniscus climbs the lateral wall above the CP angle
  // Fluid lies below this line: it climbs the chest wall (a meniscus) and is lowest medially.
  double y_meniscus(const Hemithorax& h, int k, double u) const {
    const double q = clamp01((u - h.m_bot) / (h.u_cp - h.m_bot));
    const double q2 = q * q;
    return h.y_cp - height[k] * (0.15 + 0.85 * q2 * q2);
  }
};

struct PneumothoraxFinding {
  bool present = false;
  int k = 0;       // side index
  double f = 1.0;  // the collapsed lung is the lung scaled by f about the anchor
  Pt anchor{0, 0};
  // The point of the uncollapsed lung that the collapse carries to (x, y).
  Pt unmap(const Hemithorax& h, double x, double y) const {
    const double u = h.u_of(x);
    const double au = h.u_of(anchor.x);
    return {h.x_of(au + (u - au) / f), anchor.y + (y - anchor.y) / f};
  }
};

struct NoduleFinding {
  bool present = false;
  int k = 0;
  Pt c{0, 0};
  double r = 0;
};

// Scratch planes, one set per thread, reused from record to record.
struct Workspace {
  Plane air, vis, bone, ribs_ant, soft, vessels, gas, collapsed, img;
  std::vector<std::uint8_t> mask;
  void reset(int n, bool with_collapsed) {
    for (Plane* p : {&air, &vis, &bone, &ribs_ant, &soft, &vessels, &gas}) p->reset(n, n);
    if (with_collapsed) collapsed.reset(n, n);
    img.w = img.h = n;
    img.v.resize(static_cast<std::size_t>(n) * n);  // fully overwritten
    mask.assign(static_cast<std::size_t>(n) * n, kBackground);
  }
};

const char* side_name(int k) { return k == 0 ? "right" : "left"; }  // the patient's side of side[k]

Anatomy draw_anatomy(int size, Rng& g) {
  Anatomy a;
  const double S = size;
  a.S = S;
  a.cx = S * (0.5 + g.normal(0.0, 0.008));
  a.female = g.chance(0.5);
  a.age = 18 + static_cast<int>(g.below(70));

  const double y_apex = S * g.uniform(0.10, 0.14);
  const double y_cp = S * g.uniform(0.70, 0.78);
  const double u_cp = S * g.uniform(0.355, 0.40);
  const double u_apex = S * g.uniform(0.15, 0.18);
  const double dome_r = y_cp - S * g.uniform(0.085, 0.125);
  const double dome_l = dome_r + S * g.uniform(0.005, 0.035);  // the right hemidiaphragm sits higher
  for (int k = 0; k < 2; ++k) {
    Hemithorax& h = a.side[k];
    h.s = k == 0 ? -1 : 1;
    h.cx = a.cx;
    h.S = S;
    h.y_apex = y_apex + S * g.normal(0.0, 0.004);
    h.u_apex = u_apex + S * g.normal(0.0, 0.005);
    h.y_cp = y_cp + S * g.normal(0.0, 0.006);
    h.u_cp = u_cp + S * g.normal(0.0, 0.006);
    h.y_dome = k == 0 ? dome_r : dome_l;
    h.u_dome = S * g.uniform(0.16, 0.21);
    h.y_cardio = h.y_dome + S * g.uniform(0.02, 0.05);
    h.m_top = S * g.uniform(0.040, 0.050);
    h.m_bot = S * g.uniform(0.050, 0.065);
    if (k == 1) {
      h.knob_y = h.y_apex + S * g.uniform(0.13, 0.17);
      h.knob_h = S * g.uniform(0.022, 0.035);
      h.knob_r = S * 0.03;
    }
  }
  a.heart_ctr_normal = g.uniform(0.39, 0.47);
  const double dome_mean = 0.5 * (dome_r + dome_l);
  a.heart.x = a.cx + S * g.uniform(0.05, 0.08);
  a.heart.y = dome_mean - S * g.uniform(0.02, 0.045);
  a.heart.set_angle(g.uniform(30.0, 45.0) * kPi / 180.0);
  a.heart.a = S * 0.16;
  a.heart.b = a.heart.a * g.uniform(0.64, 0.76);

  a.body_half = S * g.uniform(0.46, 0.52);
  a.neck_half = S * g.uniform(0.075, 0.095);
  a.neck_base = S * g.uniform(-0.04, 0.0);
  a.shoulder_drop = S * g.uniform(0.11, 0.16);
  a.arms = g.chance(0.6);
  a.arm_u = S * g.uniform(0.54, 0.59);
  a.arm_half = S * g.uniform(0.05, 0.065);
  a.rib_pitch = (dome_mean - y_apex) / 8.4;

  a.exposure = g.uniform(1.45, 1.8);
  a.gamma = g.uniform(1.3, 1.55);
  a.noise = g.uniform(0.008, 0.016);
  a.lung_air = g.uniform(0.70, 0.78);

  for (int k = 0; k < 2; ++k) {
    a.hilum_t[k] = (k == 0 ? 0.50 : 0.45) + g.uniform(-0.03, 0.03);
    a.hilum_off[k] = g.uniform(0.012, 0.022);
  }
  a.carina_dy = S * g.uniform(0.05, 0.08);
  a.bubble = g.chance(0.65);
  a.bubble_u = S * g.uniform(0.12, 0.2);
  a.bubble_r = S * g.uniform(0.025, 0.04);
  a.bubble_gap = S * g.uniform(0.012, 0.03);
  a.breast_r = S * g.uniform(0.12, 0.16);
  for (int k = 0; k < 2; ++k) {
    const Hemithorax& h = a.side[k];
    a.breast_c[k] = {h.x_of(S * g.uniform(0.22, 0.28)), h.y_cp - S * g.uniform(0.13, 0.18)};
  }

  a.rot = g.uniform(-3.0, 3.0) * kPi / 180.0;
  a.scale = g.uniform(0.95, 1.04);
  a.shift_x = S * g.uniform(-0.02, 0.02);
  a.shift_y = S * g.uniform(-0.02, 0.02);
  return a;
}

// Pixel columns [lo, hi] the heart covers above the diaphragm (lo > hi when none), from the rows'
// analytic spans; the raster uses the same centre-inside rule.
std::pair<int, int> heart_columns(const Anatomy& a, const Heart& h) {
  const int n = static_cast<int>(a.S);
  int lo = n, hi = -1;
  for (int y = 0; y < n; ++y) {
    const double py = y + 0.5;
    double x0, x1;
    if (!h.row_span(py, x0, x1)) continue;
    int c0 = std::max(0, static_cast<int>(std::ceil(x0 - 0.5)));
    int c1 = std::min(n - 1, static_cast<int>(std::floor(x1 - 0.5)));
    while (c0 <= c1 && !(py < a.diaphragm(c0 + 0.5) && h.r2(c0 + 0.5, py) < 1.0)) ++c0;
    while (c1 >= c0 && !(py < a.diaphragm(c1 + 0.5) && h.r2(c1 + 0.5, py) < 1.0)) --c1;
    if (c0 > c1) continue;
    lo = std::min(lo, c0);
    hi = std::max(hi, c1);
  }
  return {lo, hi};
}

// The widest distance between the two lateral lung borders, in pixel columns as the mask will
// have them: the lungs are widest at their costophrenic angles.
int thorax_width_px(const Anatomy& a) {
  const int n = static_cast<int>(a.S);
  int lo = n, hi = -1;
  for (int k = 0; k < 2; ++k) {
    const Hemithorax& h = a.side[k];
    for (int y = std::max(0, static_cast<int>(h.y_apex)); y <= std::min(n - 1, static_cast<int>(h.y_cp) + 1); ++y) {
      const double xe = h.x_of(h.lat(y + 0.5));
      int x = k == 0 ? static_cast<int>(std::ceil(xe - 0.5)) : static_cast<int>(std::floor(xe - 0.5));
      for (int step = 0; step < 6 && x >= 0 && x < n && h.depth_px(x, y) <= 0.0; ++step) x += k == 0 ? 1 : -1;
      if (x < 0 || x >= n || h.depth_px(x, y) <= 0.0) continue;
      lo = std::min(lo, x);
      hi = std::max(hi, x);
    }
  }
  return hi - lo + 1;
}

// Scales the heart until its width over the thorax width is `ctr` (the clip at the diaphragm makes
// width grow a little slower than the scale, so a few fixed-point steps).
void fit_heart(Anatomy& a, double ctr, int thorax_px) {
  const double target = ctr * thorax_px;
  for (int it = 0; it < 8; ++it) {
    auto [lo, hi] = heart_columns(a, a.heart);
    const double w = hi - lo + 1;
    if (w <= 0) break;
    const double k = target / w;
    if (std::abs(w - target) < 0.5) break;
    a.heart.a *= k;
    a.heart.b *= k;
  }
}

// The lungs' medial borders around the heart: the lung never crosses the cardiac silhouette, and
// above the heart's widest point the border runs smoothly up into the mediastinum (on the patient's
// left a long, almost straight slope from the aortic knob; on the right a short curve under the
// superior vena cava), so the heart reads as part of the mediastinum and not as a ball on it.
void build_cardiac_borders(Anatomy& a) {
  const int n = static_cast<int>(a.S);
  for (int k = 0; k < 2; ++k) {
    Hemithorax& h = a.side[k];
    std::vector<float> extent(n, 0.0f);
    int y_top = -1, y_wide = -1;
    double widest = 0.0;
    for (int y = 0; y < n; ++y) {
      const double py = y + 0.5;
      double x0, x1;
      if (!a.heart.row_span(py, x0, x1)) continue;
      const double xe = k == 0 ? x0 : x1;
      const double u = h.u_of(xe);
      if (u <= 0.0) continue;
      extent[y] = static_cast<float>(u);
      if (y_top < 0) y_top = y;
      if (py < a.diaphragm(xe) && u > widest) {
        widest = u;
        y_wide = y;
      }
    }
    h.cardiac.assign(n, 0.0f);
    if (y_wide < 0) continue;
    double y_join = k == 0 ? y_top - 0.02 * a.S : std::max(h.knob_y + 1.2 * h.knob_r, y_wide - 0.75 * (y_wide - y_top));
    if (y_join >= y_wide - 2) y_join = y_top;
    const double m_join = h.mediastinum(y_join);
    for (int y = 0; y < n; ++y) {
      double u = extent[y];
      if (y + 0.5 > y_join && y <= y_wide) {
        const double t = (y + 0.5 - y_join) / (y_wide + 0.5 - y_join);
        const double shape = k == 0 ? smoothstep(0.0, 1.0, t) : std::sin(t * kPi / 2);
        u = std::max(u, m_join + (widest - m_join) * shape);
      }
      h.cardiac[y] = static_cast<float>(u);
    }
  }
}

// Vascular markings: branching trees from each hilum towards the periphery, tapering as they go.
void grow_vessel(const Hemithorax& h, Plane& vessels, Rng& g, Pt p, double angle, double len, double r, int depth) {
  Pt end{p.x + h.s * len * std::cos(angle), p.y + len * std::sin(angle)};
  if (!h.inside(h.u_of(end.x), end.y)) {
    end = {p.x + 0.5 * (end.x - p.x), p.y + 0.5 * (end.y - p.y)};
    if (!h.inside(h.u_of(end.x), end.y)) return;
    depth = 0;
  }
  const double bend = g.normal(0.0, 0.08) * len;
  const Pt mid{0.5 * (p.x + end.x) - bend * std::sin(angle) * h.s, 0.5 * (p.y + end.y) + bend * std::cos(angle)};
  const double r_end = r * 0.75;
  // drawn wider than the vessel and fainter: a soft shadow, as the unsharpness of a real film gives
  stroke(vessels, {p, mid, end}, {1.6 * r, 0.8 * (r + r_end), 1.6 * r_end}, 1.0f, Profile::tube);
  if (depth <= 0) return;
  const int children = g.chance(0.25) ? 3 : 2;
  const double spread = g.uniform(0.3, 0.55);
  for (int c = 0; c < children; ++c) {
    const double off = children == 2 ? (c == 0 ? -spread : spread) : (c - 1) * spread;
    grow_vessel(h, vessels, g, end, angle + off + g.normal(0.0, 0.08), len * g.uniform(0.68, 0.85),
                r_end * (children == 3 && c == 1 ? 0.9 : 0.8), depth - 1);
  }
}

// Cubic Bézier point.
Pt bezier(Pt p0, Pt p1, Pt p2, Pt p3, double t) {
  const double m = 1.0 - t;
  const double b0 = m * m * m, b1 = 3 * m * m * t, b2 = 3 * m * t * t, b3 = t * t * t;
  return {b0 * p0.x + b1 * p1.x + b2 * p2.x + b3 * p3.x, b0 * p0.y + b1 * p1.y + b2 * p2.y + b3 * p3.y};
}

// Posterior ribs (from the spine up and out, arcing down the chest wall) and their fainter anterior
// continuations (from the wall medially and down, ending at the costal cartilage).
void draw_ribs(const Anatomy& a, Plane& posterior, Plane& anterior, Rng& g) {
  const double S = a.S;
  for (int k = 0; k < 2; ++k) {
    const Hemithorax& h = a.side[k];
    for (int i = 0; i < 10; ++i) {
      const double y0 = h.y_apex - 0.045 * S + i * a.rib_pitch + g.normal(0.0, 0.002) * S;
      const double r = S * (0.0075 + 0.0009 * std::min(i, 6)) * g.uniform(0.92, 1.08);
      const double u0 = 0.03 * S;
      const double rise = S * (0.022 + 0.002 * i);
      const double fall = S * (0.07 + 0.005 * i);
      const double y_end = y0 + fall;
      double wall = (y_end <= h.y_cp ? h.lat(std::max(y_end, h.y_apex + 0.02 * S)) : h.u_cp + (y_end - h.y_cp) * 0.15) + r +
                    0.01 * S;
      wall = std::max(wall, u0 + 0.08 * S);
      const Pt p0{u0, y0}, p1{u0 + 0.30 * (wall - u0), y0 - 1.8 * rise}, p2{wall + 0.02 * S, y0 - 0.4 * rise},
          p3{wall, y_end};
      std::vector<Pt> pts;
      std::vector<double> rad;
      const int n = 12;
      for (int j = 0; j <= n; ++j) {
        const double t = static_cast<double>(j) / n;
        const Pt q = bezier(p0, p1, p2, p3, t);
        pts.push_back({h.x_of(q.x), q.y});
        rad.push_back(r * (0.8 + 0.2 * t));
      }
      stroke(posterior, pts, rad, 1.0f, Profile::bone);
      if (i < 1) continue;
      std::vector<Pt> ant;
      std::vector<double> arad;
      const double u_end = S * g.uniform(0.12, 0.18);
      const double y_drop = S * (0.12 + 0.005 * i);
      // continues down the wall, then turns medially
      const Pt q0 = p3, q1{wall - 0.004 * S, y_end + 0.05 * S}, q2{0.55 * wall + 0.45 * u_end, y_end + 0.75 * y_drop},
               q3{u_end, y_end + y_drop};
      for (int j = 0; j <= 8; ++j) {
        const Pt q = bezier(q0, q1, q2, q3, j / 8.0);
        ant.push_back({h.x_of(q.x), q.y});
        arad.push_back(r * 1.1);
      }
      stroke(anterior, ant, arad, 1.0f, Profile::bone);
    }
  }
}

void draw_spine_and_girdle(const Anatomy& a, Plane& bone, Plane& soft) {
  const double S = a.S;
  const int W = bone.w;
  const double half = 0.03 * S;
  const double pitch = a.rib_pitch;
  const double y_first = a.side[0].y_apex - 0.06 * S;
  // Vertebral bodies with darker discs and brighter end plates; the column runs the full height
  // and widens downwards.
  const int x0 = std::max(0, static_cast<int>(a.cx - 1.4 * half - 1));
  const int x1 = std::min(W - 1, static_cast<int>(a.cx + 1.4 * half + 1));
  for (int y = 0; y < bone.h; ++y) {
    double ph = (y + 0.5 - y_first) / pitch;
    ph -= std::floor(ph);
    const double disc = smoothstep(0.80, 0.86, ph) * (1.0 - smoothstep(0.94, 1.0, ph));
    const double plate = std::exp(-std::pow((ph - 0.78) / 0.025, 2)) + std::exp(-std::pow((ph - 0.02) / 0.025, 2));
    const double level = 0.75 - 0.2 * disc + 0.08 * plate;
    const double w = half * (0.8 + 0.4 * clamp01(y / (0.8 * S)));
    float* row = bone.row(y);
    for (int x = x0; x <= x1; ++x) {
      const double q = (x + 0.5 - a.cx) / w;
      if (std::abs(q) < 1.0) row[x] = std::max(row[x], static_cast<float>(level * std::sqrt(1.0 - q * q)));
    }
  }
  // Pedicles: small cortical rings either side of each body.
  for (int i = -2; i < 16; ++i) {
    const double yc = y_first + (i + 0.3) * pitch;
    if (yc < 0 || yc > S) continue;
    const double w = half * (0.8 + 0.4 * clamp01(yc / (0.8 * S)));
    for (int sgn = -1; sgn <= 1; sgn += 2) {
      const double x = a.cx + sgn * 0.62 * w;
      stroke(bone, {{x, yc - 0.005 * S}, {x, yc + 0.005 * S}}, {0.0075 * S, 0.0075 * S}, 0.9f, Profile::bone);
    }
  }
  for (int k = 0; k < 2; ++k) {
    const Hemithorax& h = a.side[k];
    const double y = h.y_apex;
    // Clavicle: from the sternal end outwards and up to the acromion, a gentle S.
    std::vector<Pt> pts;
    std::vector<double> rad;
    const Pt c0{0.03 * S, y + 0.085 * S}, c1{0.16 * S, y + 0.06 * S}, c2{0.26 * S, y + 0.045 * S}, c3{0.40 * S, y - 0.01 * S};
    for (int j = 0; j <= 14; ++j) {
      const double t = j / 14.0;
      const Pt q = bezier(c0, c1, c2, c3, t);
      pts.push_back({h.x_of(q.x), q.y});
      rad.push_back(S * (0.013 - 0.005 * std::sin(t * kPi) + 0.002 * t));
    }
    stroke(bone, pts, rad, 1.5f, Profile::bone);
    // Shoulder: humeral head (a ball in profile), the acromion above it, the shaft going down.
    const Pt head{h.x_of(0.455 * S), y + 0.02 * S};
    add_sphere(soft, {h.x_of(0.47 * S), y + 0.06 * S}, 0.10 * S, 0.22f);
    stroke(bone, {head, head}, {0.055 * S, 0.055 * S}, 1.0f, Profile::bone);
    stroke(bone, {{h.x_of(0.47 * S), y + 0.05 * S}, {h.x_of(0.50 * S), y + 0.35 * S}}, {0.03 * S, 0.026 * S}, 1.0f,
           Profile::bone);
    stroke(bone, {{h.x_of(0.38 * S), y - 0.035 * S}, {h.x_of(0.46 * S), y - 0.045 * S}}, {0.013 * S, 0.015 * S}, 1.0f,
           Profile::bone);
    // Scapula: the lateral border and the glenoid, faint over the upper chest wall.
    stroke(bone, {{h.x_of(0.41 * S), y + 0.02 * S}, {h.x_of(0.385 * S), y + 0.14 * S}, {h.x_of(0.34 * S), y + 0.27 * S}},
           {0.011 * S, 0.009 * S, 0.006 * S}, 0.5f, Profile::bone);
  }
}

// Exposure curve 1 - exp(-k d), then gamma, tabulated: the compose loop looks it up instead of
// calling exp and pow per pixel.
class ExposureTable {
 public:
  ExposureTable(double k, double gamma) {
    for (int i = 0; i <= kSteps; ++i) {
      const double d = i * kMax / kSteps;
      // the top tenth of the range is left to bone over dense tissue and clipped
      table_[i] = static_cast<float>(std::min(1.0, std::pow(1.0 - std::exp(-k * d), gamma) / 0.93));
    }
  }
  float operator()(float d) const {
    const float f = std::min(d, static_cast<float>(kMax)) * (kSteps / static_cast<float>(kMax));
    const int i = std::min(static_cast<int>(f), kSteps - 1);
    return table_[i] + (f - i) * (table_[i + 1] - table_[i]);
  }

 private:
  static constexpr int kSteps = 1024;
  static constexpr double kMax = 4.0;
  float table_[kSteps + 1];
};

}  // namespace

std::string phantom_key(std::int64_t index) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "phantom-%06lld", static_cast<long long>(index));
  return buf;
}

nlohmann::json phantom_labels() {
  nlohmann::json labels = nlohmann::json::array();
  for (const char* f : kFindings) labels.push_back(f);
  labels.push_back(kNoFinding);
  return labels;
}

nlohmann::json phantom_fields() {
  nlohmann::json classes = nlohmann::json::array();
  for (const char* c : kMaskClasses) classes.push_back(c);
  return {
      {"json",
       {{"type", "json"},
        {"description",
         "record metadata: id, dataset, view, sex, age, labels (1 positive, 0 negative), classes, ctr, findings, size, seed, index"}}},
      {"png", {{"type", "image/png"}, {"bits", 8}, {"channels", 1}, {"description", "the radiograph, 8-bit gray, bright = dense"}}},
      {"mask.png",
       {{"type", "image/png"}, {"bits", 8}, {"channels", 1}, {"description", "label map of lungs and heart"}, {"classes", classes}}},
      {"txt", {{"type", "text/plain"}, {"description", "templated FINDINGS/IMPRESSION report"}}},
  };
}

Phantom render_phantom(const PhantomOptions& options, std::uint64_t seed, std::int64_t index) {
  if (options.size < kMinSize || options.size > kMaxSize)
    throw std::invalid_argument("phantom size must be between " + std::to_string(kMinSize) + " and " +
                                std::to_string(kMaxSize));
  for (double p : {options.p_cardiomegaly, options.p_effusion, options.p_nodule, options.p_pneumothorax})
    if (!(p >= 0.0 && p <= 1.0)) throw std::invalid_argument("finding probabilities must lie in [0, 1]");

  const int N = options.size;
  const double S = N;
  Rng anatomy_rng = phantom_rng(seed, index, kAnatomyStream);
  Anatomy a = draw_anatomy(N, anatomy_rng);

  // --- findings: each from its own stream, presence first, then a fixed number of draws ---
  Rng cm_rng = phantom_rng(seed, index, kCardiomegalyStream);
  const bool cardiomegaly = cm_rng.chance(options.p_cardiomegaly);
  const double ctr_enlarged = cm_rng.uniform(0.55, 0.66);

  Rng eff_rng = phantom_rng(seed, index, kEffusionStream);
  EffusionFinding eff;
  const bool effusion = eff_rng.chance(options.p_effusion);
  const double eff_side = eff_rng.uniform();
  if (effusion) {
    eff.on[0] = eff_side < 0.4 || eff_side >= 0.8;
    eff.on[1] = eff_side >= 0.4;
  }
  for (int k = 0; k < 2; ++k) {
    const double h = eff_rng.uniform(0.10, 0.28) * (a.side[k].y_cp - a.side[k].y_apex);
    if (eff.on[k]) eff.height[k] = h;
  }

  Rng ptx_rng = phantom_rng(seed, index, kPneumothoraxStream);
  PneumothoraxFinding ptx;
  ptx.present = ptx_rng.chance(options.p_pneumothorax);
  ptx.k = ptx_rng.chance(0.5) ? 1 : 0;
  ptx.f = ptx_rng.uniform(0.74, 0.9);
  const double ptx_anchor_dy = ptx_rng.uniform(0.0, 0.05) * S;

  // --- heart: the CTR is what the label means, so the heart is fitted to it ---
  for (Hemithorax& h : a.side) h.build_tables(N);
  const int thorax_px = thorax_width_px(a);
  if (cardiomegaly) a.heart.x += 0.1 * (ctr_enlarged - a.heart_ctr_normal) * thorax_px;
  fit_heart(a, cardiomegaly ? ctr_enlarged : a.heart_ctr_normal, thorax_px);
  build_cardiac_borders(a);
  for (Hemithorax& h : a.side) h.build_tables(N);
  for (int k = 0; k < 2; ++k) {
    const Hemithorax& h = a.side[k];
    const double hy = h.y_apex + a.hilum_t[k] * (h.y_cp - h.y_apex);
    a.hilum[k] = {h.x_of(h.med(hy) + a.hilum_off[k] * S), hy};
  }
  {
    const Hemithorax& h = a.side[ptx.k];
    // the lung collapses towards its hilum and base: anchored at the mediastinum, above the dome
    ptx.anchor = {h.x_of(h.m_bot + 0.01 * S), h.y_dome - ptx_anchor_dy};
  }

  // --- the aerated-lung test every later step shares ---
  auto aerated = [&](int k, double x, double y) {
    const Hemithorax& h = a.side[k];
    if (!h.inside(h.u_of(x), y)) return false;
    if (ptx.present && ptx.k == k) {
      const Pt q = ptx.unmap(h, x, y);
      if (!h.inside(h.u_of(q.x), q.y)) return false;
    }
    if (eff.on[k] && y > eff.y_meniscus(h, k, h.u_of(x))) return false;
    return true;
  };

  // --- nodule: a round opacity well inside aerated lung ---
  Rng nod_rng = phantom_rng(seed, index, kNoduleStream);
  NoduleFinding nod;
  nod.present = nod_rng.chance(options.p_nodule);
  nod.k = nod_rng.chance(0.5) ? 1 : 0;
  nod.r = std::max(1.5, nod_rng.uniform(0.011, 0.024) * S);
  if (nod.present) {
    bool placed = false;
    for (int attempt = 0; attempt < 400 && !placed; ++attempt) {
      const int k = attempt < 200 ? nod.k : 1 - nod.k;
      const Hemithorax& h = a.side[k];
      const double y = h.y_apex + (h.y_cp - h.y_apex) * nod_rng.uniform(0.15, 0.85);
      const double x = h.x_of(nod_rng.uniform(h.med(y), h.lat(y)));
      const double m = nod.r + 0.015 * S;
      bool ok = aerated(k, x, y);
      for (int d = 0; d < 8 && ok; ++d) ok = aerated(k, x + m * std::cos(d * kPi / 4), y + m * std::sin(d * kPi / 4));
      if (ok) {
        nod.k = k;
        nod.c = {x, y};
        placed = true;
      }
    }
    if (!placed) nod.present = false;  // no room left (a huge heart and fluid): recorded as absent
  }

  // --- rasters in the canonical frame ---
  thread_local Workspace ws;
  ws.reset(N, ptx.present);
  Plane &air = ws.air, &vis = ws.vis, &bone = ws.bone, &ribs_ant = ws.ribs_ant, &soft = ws.soft,
        &vessels = ws.vessels, &gas = ws.gas, &collapsed = ws.collapsed, &img = ws.img;
  std::vector<std::uint8_t>& canon_mask = ws.mask;

  // Lungs: air (how much of the beam path is lung), parenchyma (where lung markings show) and the mask.
  for (int k = 0; k < 2; ++k) {
    const Hemithorax& h = a.side[k];
    const std::uint8_t label = k == 0 ? kRightLung : kLeftLung;
    const int ya = std::max(0, static_cast<int>(h.y_apex)), yb = std::min(N - 1, static_cast<int>(h.y_cp) + 1);
    for (int y = ya; y <= yb; ++y) {
      const double py = y + 0.5;
      const double xm = h.x_of(h.med_row[y]), xl = h.x_of(h.lat_row[y]);
      const int xa = std::max(0, static_cast<int>(std::floor(std::min(xm, xl))) - 1);
      const int xb = std::min(N - 1, static_cast<int>(std::ceil(std::max(xm, xl))) + 1);
      float* air_row = air.row(y);
      float* vis_row = vis.row(y);
      for (int x = xa; x <= xb; ++x) {
        const double d = h.depth_px(x, y);
        if (d <= 0.0) continue;
        const double px = x + 0.5, u = h.u_of(px);
        // apices hold less air in the beam's path (neck muscles, first ribs overlap them)
        double lung = std::sqrt(std::min(1.0, d)) * (0.86 + 0.14 * smoothstep(0.0, 0.3, h.t_of(py)));
        double parenchyma = smoothstep(0.0, 2.5, d);
        bool is_lung = true;
        if (ptx.present && ptx.k == k) {
          const Pt q = ptx.unmap(h, px, py);
          const double dq = h.depth(h.u_of(q.x), q.y);
          if (dq <= 0.0) {
            // pleural air: no lung tissue, so darker than lung right up to the chest wall (lung
            // thins towards the wall, air does not), and no markings
            lung = 1.15 * std::sqrt(std::min(1.0, 4.0 * d));
            parenchyma = 0.0;
            is_lung = false;
          } else {
            collapsed.at(x, y) = 1.0f;
            parenchyma *= smoothstep(0.0, 2.0, dq);
          }
        }
        if (eff.on[k]) {  // fluid replaces the lung's air below a soft meniscus
          const double ym = eff.y_meniscus(h, k, u);
          const double fluid = smoothstep(ym - 0.006 * S, ym + 0.010 * S, py);
          lung *= 1.0 - fluid;
          parenchyma *= 1.0 - fluid;
          if (py > ym) is_lung = false;
        }
        air_row[x] = static_cast<float>(lung);
        vis_row[x] = static_cast<float>(parenchyma);
        if (is_lung) canon_mask[static_cast<std::size_t>(y) * N + x] = label;
      }
    }
  }

  // Heart: denser than the mediastinum around it; labelled above the diaphragm.
  {
    const Heart& ht = a.heart;
    const double ext = std::max(ht.a, ht.b) + 2;
    const int y0 = std::max(0, static_cast<int>(ht.y - ext)), y1 = std::min(N - 1, static_cast<int>(ht.y + ext));
    for (int y = y0; y <= y1; ++y) {
      const double py = y + 0.5;
      double xs0, xs1;
      if (!ht.row_span(py, xs0, xs1)) continue;
      const int x0 = std::max(0, static_cast<int>(std::floor(xs0))), x1 = std::min(N - 1, static_cast<int>(std::ceil(xs1)));
      float* soft_row = soft.row(y);
      for (int x = x0; x <= x1; ++x) {
        const double px = x + 0.5;
        const double r2 = ht.r2(px, py);
        if (r2 >= 1.0) continue;
        const double dia_y = a.diaphragm(px);
        soft_row[x] += static_cast<float>(0.08 * std::sqrt(1.0 - r2) * smoothstep(dia_y + 0.03 * S, dia_y, py));
        if (py < dia_y) canon_mask[static_cast<std::size_t>(y) * N + x] = kHeart;
      }
    }
  }

  // Pneumothorax: the visceral pleural line where collapsed lung meets pleural air.
  if (ptx.present) {
    gaussian_blur(collapsed, std::max(0.5, 0.6 * S / 512.0));
    const Hemithorax& h = a.side[ptx.k];
    for (int y = 0; y < N; ++y) {
      const float* c = collapsed.row(y);
      float* b = bone.row(y);
      for (int x = 0; x < N; ++x) {
        if (c[x] <= 0.02f || c[x] >= 0.98f) continue;
        // none along the mediastinum and diaphragm, where the lung's edge is no pleural line
        const double away = smoothstep(0.3, 1.0, h.inner_depth_px(x, y));
        b[x] += static_cast<float>(3.5 * away * 4.0 * c[x] * (1.0 - c[x]));
      }
    }
  }

  draw_ribs(a, bone, ribs_ant, anatomy_rng);
  draw_spine_and_girdle(a, bone, soft);

  // Hila and vessels (own stream: how far a tree grows depends on the anatomy).
  Rng vessel_rng = phantom_rng(seed, index, kVesselStream);
  for (int k = 0; k < 2; ++k) {
    const Hemithorax& h = a.side[k];
    add_sphere(soft, a.hilum[k], 0.03 * S, 0.12f);
    add_sphere(soft, {a.hilum[k].x + h.s * 0.012 * S, a.hilum[k].y + 0.03 * S}, 0.022 * S, 0.1f);
    add_sphere(soft, {a.hilum[k].x + h.s * 0.006 * S, a.hilum[k].y - 0.035 * S}, 0.018 * S, 0.08f);
    for (double ang : {-1.25, -0.7, -0.2, 0.3, 0.8, 1.2}) {
      const double start_r = vessel_rng.uniform(0.0065, 0.0085) * S;
      grow_vessel(h, vessels, vessel_rng, a.hilum[k], ang + vessel_rng.normal(0.0, 0.1),
                  vessel_rng.uniform(0.06, 0.085) * S, start_r, 3);
    }
  }
  {  // lung texture, mixed into the vessel plane (both show only where there is parenchyma)
    Rng tex_rng = phantom_rng(seed, index, kTextureStream);
    const int coarse = 14, fine = std::max(8, N / 12);
    std::vector<float> v((coarse + 3) * (coarse + 3)), w((fine + 3) * (fine + 3));
    for (auto& x : v) x = static_cast<float>(tex_rng.uniform(-1.0, 1.0));
    for (auto& x : w) x = static_cast<float>(tex_rng.uniform(-1.0, 1.0));
    // only where there is lung (the plane shows nowhere else)
    int y0 = N, y1 = 0;
    for (const Hemithorax& h : a.side) {
      y0 = std::min(y0, static_cast<int>(h.y_apex));
      y1 = std::max(y1, static_cast<int>(h.y_cp) + 2);
    }
    add_value_noise(vessels, {{coarse, &v, 0.45f}, {fine, &w, 0.35f}}, y0, y1);
  }

  // Air outside the lungs: trachea, main bronchi, the gastric bubble under the left hemidiaphragm.
  {
    const double tx = a.cx + 0.004 * S;
    const double carina = std::min(a.hilum[0].y, a.hilum[1].y) - a.carina_dy;
    stroke(gas, {{tx, 0.0}, {tx + 0.003 * S, carina}}, {0.017 * S, 0.014 * S}, 0.45f, Profile::flat);
    for (int k = 0; k < 2; ++k)
      stroke(gas, {{tx + 0.003 * S, carina}, {0.5 * (tx + a.hilum[k].x), a.hilum[k].y - 0.01 * S}},
             {0.011 * S, 0.008 * S}, 0.35f, Profile::flat);
    if (a.bubble) {
      const Hemithorax& h = a.side[1];
      add_sphere(gas, {h.x_of(a.bubble_u), h.dia(a.bubble_u) + a.bubble_r + a.bubble_gap}, a.bubble_r, 1.0f);
    }
  }
  if (a.female) {
    // Breast shadows over the lower zones: a sharp, curved lower border, fading upwards.
    for (int k = 0; k < 2; ++k) {
      const Pt c = a.breast_c[k];
      const double R = a.breast_r;
      const int y0 = std::max(0, static_cast<int>(c.y - R)), y1 = std::min(N - 1, static_cast<int>(c.y + R) + 1);
      const int x0 = std::max(0, static_cast<int>(c.x - R)), x1 = std::min(N - 1, static_cast<int>(c.x + R) + 1);
      for (int y = y0; y <= y1; ++y) {
        const double dy = (y + 0.5 - c.y) / R;
        const double fade = smoothstep(-1.0, 0.3, dy);
        float* row = soft.row(y);
        for (int x = x0; x <= x1; ++x) {
          const double dx = (x + 0.5 - c.x) / R;
          const double q = 1.0 - dx * dx - dy * dy;
          if (q > 0.0) row[x] += static_cast<float>(0.075 * fade * std::min(1.0, 3.0 * q));
        }
      }
    }
  }
  if (nod.present) add_sphere(soft, nod.c, nod.r, 0.5f);

  {  // soft tissue is not uniform: muscle and fat vary by a few percent over a few centimetres
    Rng body_rng = phantom_rng(seed, index, kBodyTextureStream);
    const int cells = 10;
    std::vector<float> v((cells + 3) * (cells + 3));
    for (auto& x : v) x = static_cast<float>(body_rng.uniform(-1.0, 1.0));
    add_value_noise(soft, {{cells, &v, 0.04f}});
  }

  // --- compose the density and expose it ---
  {
    std::vector<float> torso(N), shoulder_top(N), neck(N), arm(N);
    for (int x = 0; x < N; ++x) {
      const double u = std::abs(x + 0.5 - a.cx);
      const double q = u / a.body_half;
      torso[x] = static_cast<float>(q < 1 ? std::pow(1 - q * q, 0.5) : 0.0);
      const double nq = u / a.neck_half;
      neck[x] = static_cast<float>(nq < 1 ? 0.8 * std::sqrt(1 - nq * nq) : 0.0);
      // the trapezius slopes from the neck to the shoulder, steep at first
      const double s = clamp01((u - 0.7 * a.neck_half) / (0.48 * S - 0.7 * a.neck_half));
      shoulder_top[x] = static_cast<float>(a.neck_base + a.shoulder_drop * std::pow(s, 0.75));
      const double aq = (u - a.arm_u) / a.arm_half;
      arm[x] = static_cast<float>(a.arms && std::abs(aq) < 1 ? 0.6 * std::sqrt(1 - aq * aq) : 0.0);
    }
    const ExposureTable expose(a.exposure, a.gamma);
    const float soft_edge = static_cast<float>(0.01 * S);
    const float air_k = static_cast<float>(a.lung_air);
    const double arm_top = a.neck_base + a.shoulder_drop;
    for (int y = 0; y < N; ++y) {
      const float py = y + 0.5f;
      const float* ar = air.row(y);
      const float* vr = vis.row(y);
      const float* br = bone.row(y);
      const float* an = ribs_ant.row(y);
      const float* sr = soft.row(y);
      const float* vs = vessels.row(y);
      const float* gr = gas.row(y);
      float* out = img.row(y);
      const float arm_on = static_cast<float>(smoothstep(arm_top, arm_top + 0.08 * S, py));
      for (int x = 0; x < N; ++x) {
        const float e = py - shoulder_top[x];
        const float top = e >= soft_edge ? 1.0f : (e <= -soft_edge ? 0.0f : 0.5f + 0.5f * e / soft_edge);
        const float body = std::max(torso[x] * top, neck[x]) + arm[x] * arm_on;
        if (body <= 0.0f) {
          out[x] = 0.0f;
          continue;
        }
        const float cover = std::min(1.0f, 2.0f * body);
        float d = body * (1.0f - air_k * ar[x]);
        d += (0.10f * br[x] + 0.04f * an[x]) * cover;
        d += sr[x] * cover;
        d += vr[x] * 0.09f * vs[x];
        d -= 0.22f * gr[x] * body;
        out[x] = expose(std::max(d, 0.0f));
      }
    }
  }
  // The film's unsharpness: about 0.7 px at 512 (one [1 2 1] pass), growing with the size.
  binomial_blur(img, std::max(1, static_cast<int>(std::lround(2.0 * std::pow(0.75 * S / 512.0, 2)))));

  // --- acquisition: rotate/scale/shift into the image, then detector noise ---
  Phantom result;
  result.image = Image::gray8(N, N);
  result.mask = Image::gray8(N, N);
  const double c = std::cos(a.rot), s = std::sin(a.rot);
  const double half = 0.5 * S;
  // Image point P = centre + shift + scale * R (p - centre); sampling walks the inverse.
  auto to_image = [&](Pt p) -> Pt {
    const double dx = p.x - half, dy = p.y - half;
    return {half + a.shift_x + a.scale * (c * dx - s * dy), half + a.shift_y + a.scale * (s * dx + c * dy)};
  };
  Rng noise_rng = phantom_rng(seed, index, kNoiseStream);
  const float noise = static_cast<float>(a.noise);
  // Canonical coordinates walk in 16.16 fixed point along each image row: the resampling is the
  // hottest loop after composition, and integer steps spare a float-to-int conversion per pixel.
  const double step_x = c / a.scale, step_y = -s / a.scale;  // canonical step per image column
  const std::int64_t fstep_x = std::llround(step_x * 65536.0), fstep_y = std::llround(step_y * 65536.0);
  float grain[2] = {0.0f, 0.0f};
  for (int y = 0; y < N; ++y) {
    const double Y = y + 0.5 - half - a.shift_y;
    std::uint8_t* out = result.image.u8() + static_cast<std::size_t>(y) * N;
    std::uint8_t* mout = result.mask.u8() + static_cast<std::size_t>(y) * N;
    const double X0 = 0.5 - half - a.shift_x;
    const double row_x = half + (c * X0 + s * Y) / a.scale, row_y = half + (-s * X0 + c * Y) / a.scale;
    // position of pixel-centre space (centres at integers) in 16.16, offset so it stays positive
    constexpr std::int64_t kBias = std::int64_t{1} << 16 << 12;  // 4096 pixels of headroom
    std::int64_t fx = std::llround((row_x - 0.5) * 65536.0) + kBias, fy = std::llround((row_y - 0.5) * 65536.0) + kBias;
    for (int x = 0; x < N; ++x, fx += fstep_x, fy += fstep_y) {
      const std::int64_t ix = (fx >> 16) - 4096, iy = (fy >> 16) - 4096;
      float v;
      if (static_cast<std::uint64_t>(ix) < static_cast<std::uint64_t>(N - 1) &&
          static_cast<std::uint64_t>(iy) < static_cast<std::uint64_t>(N - 1)) {
        const float ax = static_cast<float>(fx & 0xFFFF) * (1.0f / 65536.0f);
        const float ay = static_cast<float>(fy & 0xFFFF) * (1.0f / 65536.0f);
        const float* r0 = img.row(static_cast<int>(iy)) + ix;
        const float* r1 = r0 + N;
        const float top = r0[0] + ax * (r0[1] - r0[0]), bottom = r1[0] + ax * (r1[1] - r1[0]);
        v = top + ay * (bottom - top);
      } else {
        v = img.sample((fx - kBias) / 65536.0 + 0.5, (fy - kBias) / 65536.0 + 0.5);
      }
      // the mask takes the nearest canonical pixel: the one whose area holds the sample point
      const std::int64_t mx = std::clamp<std::int64_t>(((fx + 32768) >> 16) - 4096, 0, N - 1);
      const std::int64_t my = std::clamp<std::int64_t>(((fy + 32768) >> 16) - 4096, 0, N - 1);
      if ((x & 1) == 0) grain2(noise_rng, grain[0], grain[1]);
      v = std::clamp(v + noise * grain[x & 1], 0.0f, 1.0f);
      out[x] = static_cast<std::uint8_t>(v * 255.0f + 0.5f);
      mout[x] = canon_mask[static_cast<std::size_t>(my) * N + static_cast<std::size_t>(mx)];
    }
  }

  // --- metadata and report ---
  int heart_lo = N, heart_hi = -1;
  for (int y = 0; y < N; ++y)
    for (int x = 0; x < N; ++x)
      if (canon_mask[static_cast<std::size_t>(y) * N + x] == kHeart) {
        heart_lo = std::min(heart_lo, x);
        heart_hi = std::max(heart_hi, x);
      }
  const int heart_px = heart_hi >= heart_lo ? heart_hi - heart_lo + 1 : 0;
  const double ctr = thorax_px > 0 ? static_cast<double>(heart_px) / thorax_px : 0.0;
  // Lengths in mm are the patient's: canonical pixels at kFieldOfViewMm / S; image pixels are
  // scaled by the acquisition, so the image's pixel spacing is that over the scale.
  const double mm_per_px = kFieldOfViewMm / S;
  auto round3 = [](double v) { return std::round(v * 1000.0) / 1000.0; };
  auto round1 = [](double v) { return std::round(v * 10.0) / 10.0; };

  ReportFacts facts;
  facts.ctr = ctr;
  facts.cardiomegaly = cardiomegaly;
  nlohmann::json findings = nlohmann::json::array();
  if (cardiomegaly) findings.push_back({{"name", "Cardiomegaly"}, {"ctr", round3(ctr)}});
  for (int k = 0; k < 2; ++k) {
    if (!eff.on[k]) continue;
    const Hemithorax& h = a.side[k];
    const double height_mm = eff.height[k] * mm_per_px;
    const char* size = height_mm < 40.0 ? "small" : "moderate";
    const Pt top = to_image({h.x_of(h.lat(h.y_cp - eff.height[k])), h.y_cp - eff.height[k]});
    findings.push_back({{"name", "Effusion"}, {"side", side_name(k)}, {"size", size},
                        {"height_mm", round1(height_mm)},
                        {"meniscus_top", {round1(top.x), round1(top.y)}}});
    facts.effusion_sides.push_back(side_name(k));
    facts.effusion_size = size;
  }
  if (nod.present) {
    const Hemithorax& h = a.side[nod.k];
    const double t = (nod.c.y - h.y_apex) / (h.y_cp - h.y_apex);
    const char* zone = t < 0.36 ? "upper" : (t < 0.66 ? "middle" : "lower");
    const Pt c = to_image(nod.c);
    const double r = nod.r * a.scale;
    findings.push_back({{"name", "Nodule"}, {"side", side_name(nod.k)}, {"zone", zone},
                        {"center", {round1(c.x), round1(c.y)}}, {"radius_px", round1(r)},
                        {"diameter_mm", round1(2 * nod.r * mm_per_px)}});
    facts.nodule = true;
    facts.nodule_side = side_name(nod.k);
    facts.nodule_zone = zone;
    facts.nodule_mm = 2 * nod.r * mm_per_px;
  }
  if (ptx.present) {
    const Hemithorax& h = a.side[ptx.k];
    const double gap_mm = (ptx.anchor.y - h.y_apex) * (1.0 - ptx.f) * mm_per_px;
    const char* size = gap_mm < 25 ? "small" : (gap_mm < 45 ? "moderate" : "large");
    // a point on the pleural line at mid-lung height
    const double ym = h.y_apex + 0.45 * (h.y_cp - h.y_apex);
    const double au = h.u_of(ptx.anchor.x);
    const double yq = ptx.anchor.y + (ym - ptx.anchor.y) / ptx.f;
    const double ul = au + (h.lat(yq) - au) * ptx.f;
    const Pt line = to_image({h.x_of(ul), ym});
    findings.push_back({{"name", "Pneumothorax"}, {"side", side_name(ptx.k)}, {"size", size},
                        {"apex_gap_mm", round1(gap_mm)}, {"line_point", {round1(line.x), round1(line.y)}}});
    facts.pneumothorax = true;
    facts.pneumothorax_side = side_name(ptx.k);
    facts.pneumothorax_size = size;
  }

  const bool any = cardiomegaly || effusion || nod.present || ptx.present;

  Rng report_rng = phantom_rng(seed, index, kReportStream);
  result.report = write_report(facts, report_rng);

  const std::string key = phantom_key(index);
  nlohmann::json classes = nlohmann::json::array();
  for (const char* cl : kMaskClasses) classes.push_back(cl);
  result.meta = {
      {"id", key},
      {"dataset", "phantom"},
      {"view", "PA"},
      {"sex", a.female ? "F" : "M"},
      {"age", a.age},
      {"labels",
       {{"Cardiomegaly", cardiomegaly ? 1 : 0},
        {"Effusion", effusion ? 1 : 0},
        {"Nodule", nod.present ? 1 : 0},
        {"Pneumothorax", ptx.present ? 1 : 0},
        {kNoFinding, any ? 0 : 1}}},
      {"label_coding", {{"1", "positive"}, {"0", "negative"}}},
      {"classes", classes},
      {"ctr", round3(ctr)},
      {"heart_width_px", round1(heart_px * a.scale)},
      {"thorax_width_px", round1(thorax_px * a.scale)},
      {"findings", findings},
      {"size", {N, N}},
      {"pixel_spacing", {round3(mm_per_px / a.scale), round3(mm_per_px / a.scale)}},
      {"acquisition",
       {{"rotation_deg", round1(a.rot * 180.0 / kPi)}, {"scale", round3(a.scale)},
        {"shift_px", {round1(a.shift_x), round1(a.shift_y)}}}},
      {"seed", seed},
      {"index", index},
  };
  return result;
}

}  // namespace cx::phantom
