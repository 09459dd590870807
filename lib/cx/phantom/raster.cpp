#include "cx/phantom/raster.hpp"

#include <algorithm>
#include <cmath>

namespace cx::phantom {

float Plane::sample(double x, double y) const {
  // Pixel centres sit at integer + 0.5.
  double fx = x - 0.5, fy = y - 0.5;
  fx = std::clamp(fx, 0.0, static_cast<double>(w - 1));
  fy = std::clamp(fy, 0.0, static_cast<double>(h - 1));
  const int x0 = static_cast<int>(fx), y0 = static_cast<int>(fy);
  const int x1 = std::min(x0 + 1, w - 1), y1 = std::min(y0 + 1, h - 1);
  const float ax = static_cast<float>(fx - x0), ay = static_cast<float>(fy - y0);
  const float top = at(x0, y0) + ax * (at(x1, y0) - at(x0, y0));
  const float bottom = at(x0, y1) + ax * (at(x1, y1) - at(x0, y1));
  return top + ay * (bottom - top);
}

void gaussian_blur(Plane& f, double sigma) {
  if (sigma <= 0.0 || f.w == 0 || f.h == 0) return;
  // 2.5 sigma keeps 98.8 % of the weight (renormalised below); the renderer blurs at sigma < 1
  const int radius = std::max(1, static_cast<int>(std::ceil(2.5 * sigma)));
  std::vector<float> k(2 * radius + 1);
  double sum = 0.0;
  for (int i = -radius; i <= radius; ++i) sum += k[i + radius] = static_cast<float>(std::exp(-0.5 * i * i / (sigma * sigma)));
  for (auto& x : k) x = static_cast<float>(x / sum);

  // Horizontal: each row padded by clamping, then convolved.
  std::vector<float> padded(f.w + 2 * radius);
  for (int y = 0; y < f.h; ++y) {
    float* row = f.row(y);
    for (int i = 0; i < radius; ++i) {
      padded[i] = row[0];
      padded[radius + f.w + i] = row[f.w - 1];
    }
    std::copy(row, row + f.w, padded.begin() + radius);
    // tap-major, so the inner loop runs along memory and vectorises
    std::fill(row, row + f.w, 0.0f);
    for (int i = 0; i <= 2 * radius; ++i) {
      const float* p = padded.data() + i;
      const float wgt = k[i];
      for (int x = 0; x < f.w; ++x) row[x] += wgt * p[x];
    }
  }
  // Vertical: whole rows at a time, so the inner loop runs along memory.
  std::vector<float> out(f.v.size());
  for (int y = 0; y < f.h; ++y) {
    float* o = out.data() + static_cast<std::size_t>(y) * f.w;
    std::fill(o, o + f.w, 0.0f);
    for (int i = -radius; i <= radius; ++i) {
      const float* src = f.row(std::clamp(y + i, 0, f.h - 1));
      const float wgt = k[i + radius];
      for (int x = 0; x < f.w; ++x) o[x] += wgt * src[x];
    }
  }
  f.v.swap(out);
}

void binomial_blur(Plane& f, int passes) {
  if (f.w < 2 || f.h < 2) return;
  std::vector<float> tmp(f.w), prev(f.w), cur(f.w);
  for (int p = 0; p < passes; ++p) {
    for (int y = 0; y < f.h; ++y) {
      float* row = f.row(y);
      tmp[0] = 0.25f * (3.0f * row[0] + row[1]);
      for (int x = 1; x + 1 < f.w; ++x) tmp[x] = 0.25f * (row[x - 1] + 2.0f * row[x] + row[x + 1]);
      tmp[f.w - 1] = 0.25f * (row[f.w - 2] + 3.0f * row[f.w - 1]);
      std::copy(tmp.begin(), tmp.end(), row);
    }
    // columns: each row needs the original of the row above, kept in prev
    std::copy(f.row(0), f.row(0) + f.w, prev.begin());
    for (int y = 0; y < f.h; ++y) {
      float* row = f.row(y);
      const float* below = f.row(std::min(y + 1, f.h - 1));
      std::copy(row, row + f.w, cur.begin());
      for (int x = 0; x < f.w; ++x) row[x] = 0.25f * (prev[x] + 2.0f * cur[x] + below[x]);
      prev.swap(cur);
    }
  }
}

namespace {
// Projected thickness of a hollow cylinder (cortex from 0.72 R to R, medulla at 25 % density) at
// distance q = d / R from its axis, normalised to 1 at its brightest (the inner rim).
inline float bone_profile(float q) {
  constexpr float inner = 0.72f, medulla = 0.25f, norm = 0.6940f;  // sqrt(1 - 0.72^2)
  const float outer_path = std::sqrt(std::max(0.0f, 1.0f - q * q));
  const float inner_path = std::sqrt(std::max(0.0f, inner * inner - q * q));
  return (outer_path - (1.0f - medulla) * inner_path) / norm;
}
}  // namespace

void stroke(Plane& f, const std::vector<Pt>& points, const std::vector<double>& radii, float amplitude, Profile profile) {
  for (std::size_t i = 0; i + 1 < points.size(); ++i) {
    const Pt a = points[i], b = points[i + 1];
    const double ra = radii[i], rb = radii[i + 1];
    // Sub-pixel strokes are drawn at 0.7 px and dimmed instead, so thin vessels fade rather than alias.
    const double rmax = std::max({ra, rb, 0.7}) + 0.5;
    const int y0 = std::max(0, static_cast<int>(std::floor(std::min(a.y, b.y) - rmax)));
    const int y1 = std::min(f.h - 1, static_cast<int>(std::ceil(std::max(a.y, b.y) + rmax)));
    const double dx = b.x - a.x, dy = b.y - a.y;
    const double len2 = dx * dx + dy * dy;
    const double inv_len2 = len2 > 1e-12 ? 1.0 / len2 : 0.0;
    for (int y = y0; y <= y1; ++y) {
      const double py = y + 0.5 - a.y;
      // Columns this row can touch: the part of the segment within rmax of the row, widened by rmax.
      double t0 = 0.0, t1 = 1.0;
      if (std::abs(dy) > 1e-9) {
        t0 = (py - rmax) / dy;
        t1 = (py + rmax) / dy;
        if (t0 > t1) std::swap(t0, t1);
        t0 = std::max(t0, 0.0);
        t1 = std::min(t1, 1.0);
        if (t0 > t1) continue;
      }
      const int x0 = std::max(0, static_cast<int>(std::floor(a.x + std::min(t0 * dx, t1 * dx) - rmax)));
      const int x1 = std::min(f.w - 1, static_cast<int>(std::ceil(a.x + std::max(t0 * dx, t1 * dx) + rmax)));
      float* row = f.row(y);
      // float from here on: this loop is the renderer's hottest
      const float fdx = static_cast<float>(dx), fdy = static_cast<float>(dy), fpy = static_cast<float>(py);
      const float finv = static_cast<float>(inv_len2), fra = static_cast<float>(ra), frd = static_cast<float>(rb - ra);
      const float fax = static_cast<float>(a.x);
      for (int x = x0; x <= x1; ++x) {
        const float px = static_cast<float>(x) + 0.5f - fax;
        const float t = std::clamp((px * fdx + fpy * fdy) * finv, 0.0f, 1.0f);
        const float ex = px - t * fdx, ey = fpy - t * fdy;
        const float d2 = ex * ex + ey * ey;
        const float r = fra + t * frd;
        const float re = std::max(r, 0.7f);
        if (d2 >= re * re) continue;
        float value;
        if (profile == Profile::tube) {
          value = 1.0f - d2 / (re * re);
        } else {
          const float q = std::sqrt(d2) / re;
          value = profile == Profile::bone ? bone_profile(q) : std::min(1.0f, (1.0f - q) * re);
        }
        value *= amplitude * (r / re);
        if (value > row[x]) row[x] = value;
      }
    }
  }
}

void add_sphere(Plane& f, Pt c, double radius, float amplitude) {
  const int x0 = std::max(0, static_cast<int>(std::floor(c.x - radius - 1)));
  const int x1 = std::min(f.w - 1, static_cast<int>(std::ceil(c.x + radius + 1)));
  const int y0 = std::max(0, static_cast<int>(std::floor(c.y - radius - 1)));
  const int y1 = std::min(f.h - 1, static_cast<int>(std::ceil(c.y + radius + 1)));
  const double r2 = radius * radius;
  for (int y = y0; y <= y1; ++y) {
    float* row = f.row(y);
    const double dy = y + 0.5 - c.y;
    for (int x = x0; x <= x1; ++x) {
      const double dx = x + 0.5 - c.x;
      const double q = 1.0 - (dx * dx + dy * dy) / r2;
      if (q > 0.0) row[x] += amplitude * static_cast<float>(std::sqrt(q));
    }
  }
}

void add_value_noise(Plane& f, const std::vector<NoiseLayer>& layers, int y0, int y1) {
  y0 = std::max(y0, 0);
  y1 = std::min(y1, f.h);
  std::vector<float> line(f.w);
  for (const NoiseLayer& layer : layers) {
    const int cells = layer.cells, stride = cells + 3;
    std::vector<int> ix(f.w);
    std::vector<float> wx(f.w);
    for (int x = 0; x < f.w; ++x) {
      const double g = (x + 0.5) * cells / f.w + 1.0;
      ix[x] = static_cast<int>(g);
      const double t = g - ix[x];
      wx[x] = static_cast<float>(t * t * (3.0 - 2.0 * t));
    }
    std::vector<float> blend(stride);
    for (int y = y0; y < y1; ++y) {
      const double g = (y + 0.5) * cells / f.h + 1.0;
      const int iy = static_cast<int>(g);
      const double t = g - iy;
      const float wy = static_cast<float>(t * t * (3.0 - 2.0 * t));
      // interpolate the two grid rows once, then along the row
      const float* r0 = layer.values->data() + static_cast<std::size_t>(iy) * stride;
      const float* r1 = r0 + stride;
      for (int i = 0; i < stride; ++i) blend[i] = layer.amplitude * (r0[i] + wy * (r1[i] - r0[i]));
      float* row = f.row(y);
      for (int x = 0; x < f.w; ++x) {
        const int i = ix[x];
        row[x] += blend[i] + wx[x] * (blend[i + 1] - blend[i]);
      }
    }
  }
}

}  // namespace cx::phantom
