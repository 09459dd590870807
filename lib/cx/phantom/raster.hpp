#pragma once
// Float raster helpers for the phantom renderer (internal to lib/cx/phantom).
#include <vector>

namespace cx::phantom {

struct Plane {
  int w = 0, h = 0;
  std::vector<float> v;
  Plane() = default;
  Plane(int width, int height, float fill = 0.0f) : w(width), h(height), v(static_cast<std::size_t>(width) * height, fill) {}
  // Resizes and zeroes, keeping the allocation (a renderer reuses its planes: fresh pages cost
  // page faults that dwarf the drawing).
  void reset(int width, int height) {
    w = width;
    h = height;
    v.assign(static_cast<std::size_t>(width) * height, 0.0f);
  }
  float* row(int y) { return v.data() + static_cast<std::size_t>(y) * w; }
  const float* row(int y) const { return v.data() + static_cast<std::size_t>(y) * w; }
  float& at(int x, int y) { return v[static_cast<std::size_t>(y) * w + x]; }
  float at(int x, int y) const { return v[static_cast<std::size_t>(y) * w + x]; }
  // Bilinear sample at pixel-centre coordinates (x, y), clamped to the edge.
  float sample(double x, double y) const;
};

struct Pt {
  double x, y;
};

// Separable Gaussian blur in place (edges clamped). sigma <= 0 leaves the field unchanged.
void gaussian_blur(Plane& f, double sigma);

// Blurs in place with `passes` rounds of the [1 2 1] / 4 kernel along rows and columns (edges
// clamped): a Gaussian of sigma 0.71 * sqrt(passes), at three taps a pass.
void binomial_blur(Plane& f, int passes);

// How a stroke's cross-section looks: a vessel is a solid tube (thickest on its axis, with a
// parabolic rather than circular profile: a soft shadow without a blur pass); a bone is a
// shell with a bright cortex at its rim and a dimmer medulla inside; flat is uniform with a
// one-pixel soft edge (an air column seen end-on through its walls).
enum class Profile { tube, bone, flat };

// Draws a polyline of varying radius (one radius per point) into f, keeping the maximum of what is
// there and the stroke (overlapping segments of one stroke must not add up). Edges are
// anti-aliased over about one pixel.
void stroke(Plane& f, const std::vector<Pt>& points, const std::vector<double>& radii, float amplitude, Profile profile);

// Adds amplitude * sqrt(1 - (r/R)^2) (a sphere's projected thickness), R = radius, anti-aliased.
void add_sphere(Plane& f, Pt centre, double radius, float amplitude);

// Adds smooth value noise: each layer has about `cells` cells across the plane and its values
// ((cells + 3)^2 numbers in [-1, 1]) scaled by amplitude. Rows [y0, y1) only (clamped).
struct NoiseLayer {
  int cells;
  const std::vector<float>* values;
  float amplitude;
};
void add_value_noise(Plane& f, const std::vector<NoiseLayer>& layers, int y0 = 0, int y1 = 1 << 30);

inline double clamp01(double x) { return x < 0.0 ? 0.0 : (x > 1.0 ? 1.0 : x); }
inline double smoothstep(double e0, double e1, double x) {
  const double t = clamp01((x - e0) / (e1 - e0));
  return t * t * (3.0 - 2.0 * t);
}

}  // namespace cx::phantom
