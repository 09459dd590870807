#include "cx/train/augment.hpp"

#include <cmath>

#include "cx/cli/error.hpp"

namespace cx::train {

namespace F = torch::nn::functional;

namespace {
constexpr double kPi = 3.14159265358979323846;
}  // namespace

torch::Tensor gray_to_unit(const Image& gray8) {
  if (gray8.channels != 1 || gray8.bits != 8) throw Error("augment: expected an 8-bit gray image");
  torch::Tensor u8 = torch::from_blob(const_cast<std::uint8_t*>(gray8.u8()), {gray8.height, gray8.width}, torch::kUInt8);
  return u8.to(torch::kFloat32).div_(255.0);
}

CropBox random_resized_crop_box(std::int64_t H, std::int64_t W, double scale_min, double scale_max, double ratio_min,
                                double ratio_max, CounterRng& rng) {
  const double area = static_cast<double>(H) * static_cast<double>(W);
  const double log_lo = std::log(ratio_min), log_hi = std::log(ratio_max);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target = area * rng.uniform(scale_min, scale_max);
    const double aspect = std::exp(rng.uniform(log_lo, log_hi));
    const auto w = static_cast<std::int64_t>(std::llround(std::sqrt(target * aspect)));
    const auto h = static_cast<std::int64_t>(std::llround(std::sqrt(target / aspect)));
    if (w > 0 && h > 0 && w <= W && h <= H) {
      const auto top = static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(H - h + 1)));
      const auto left = static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(W - w + 1)));
      return {top, left, h, w};
    }
  }
  // torchvision's fallback: the largest centred crop with the ratio clamped into range.
  const double in_ratio = static_cast<double>(W) / static_cast<double>(H);
  std::int64_t w = W, h = H;
  if (in_ratio < ratio_min) {
    h = std::llround(static_cast<double>(w) / ratio_min);
  } else if (in_ratio > ratio_max) {
    w = std::llround(static_cast<double>(h) * ratio_max);
  }
  h = std::min(h, H);
  w = std::min(w, W);
  return {(H - h) / 2, (W - w) / 2, h, w};
}

CropBox random_resized_crop_box(std::int64_t H, std::int64_t W, const AugmentOptions& o, CounterRng& rng) {
  return random_resized_crop_box(H, W, o.scale_min, o.scale_max, o.ratio_min, o.ratio_max, rng);
}

torch::Tensor resized_crop(const torch::Tensor& gray, const CropBox& box, std::int64_t out_h, std::int64_t out_w) {
  torch::Tensor crop = gray.narrow(0, box.top, box.height).narrow(1, box.left, box.width);
  auto resize = F::InterpolateFuncOptions()
                    .size(std::vector<std::int64_t>{out_h, out_w})
                    .mode(torch::kBicubic)
                    .align_corners(false)
                    .antialias(true);
  return F::interpolate(crop.reshape({1, 1, box.height, box.width}), resize).view({out_h, out_w}).clamp(0, 1);
}

torch::Tensor hflip(const torch::Tensor& x) { return x.flip({1}); }

AffineParams draw_affine(double degrees, double translate, double zoom_min, double zoom_max, std::int64_t height,
                         std::int64_t width, CounterRng& rng) {
  AffineParams p;
  const auto h = static_cast<double>(height), w = static_cast<double>(width);
  p.angle = rng.uniform(-degrees, degrees);
  p.tx = std::round(rng.uniform(-translate * w, translate * w));
  p.ty = std::round(rng.uniform(-translate * h, translate * h));
  p.zoom = rng.uniform(zoom_min, zoom_max);
  return p;
}

torch::Tensor affine(const torch::Tensor& x, const AffineParams& p, bool flip, bool nearest) {
  // Output pixel (i, j) samples the input at C + R(-angle) (p - C - t) / zoom; the flip mirrors the
  // input first. Coordinates are pixel indices, the centre C = ((W - 1) / 2, (H - 1) / 2).
  const std::int64_t H = x.size(0), W = x.size(1);
  const double a = p.angle * kPi / 180.0, c = std::cos(a), s = std::sin(a);
  const double cx = (static_cast<double>(W) - 1) / 2, cy = (static_cast<double>(H) - 1) / 2;
  auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  torch::Tensor ys = torch::arange(H, opts).view({H, 1}).expand({H, W});
  torch::Tensor xs = torch::arange(W, opts).view({1, W}).expand({H, W});
  torch::Tensor u = xs - cx - p.tx, v = ys - cy - p.ty;
  torch::Tensor sx = (c * u + s * v) / p.zoom + cx;
  torch::Tensor sy = (-s * u + c * v) / p.zoom + cy;
  if (flip) sx = (static_cast<double>(W) - 1) - sx;
  // align_corners = false: pixel index k maps to (2k + 1) / size - 1.
  torch::Tensor gx = (2 * sx + 1) / static_cast<double>(W) - 1;
  torch::Tensor gy = (2 * sy + 1) / static_cast<double>(H) - 1;
  torch::Tensor grid = torch::stack({gx, gy}, -1).unsqueeze(0).to(torch::kFloat32);
  auto go = F::GridSampleFuncOptions().padding_mode(torch::kZeros).align_corners(false);
  if (nearest) go.mode(torch::kNearest);
  else go.mode(torch::kBilinear);
  return F::grid_sample(x.view({1, 1, H, W}), grid, go).view({H, W});
}

torch::Tensor jitter_brightness_contrast(const torch::Tensor& input, double brightness, double contrast, CounterRng& rng) {
  torch::Tensor x = input;
  const double b = rng.uniform(1 - brightness, 1 + brightness);
  const double c = rng.uniform(1 - contrast, 1 + contrast);
  const bool brightness_first = rng.uniform() < 0.5;
  auto bright = [&] { x = (x * b).clamp(0, 1); };
  auto contr = [&] {
    const double mean = x.mean().item<double>();
    x = (c * x + (1 - c) * mean).clamp(0, 1);
  };
  if (brightness_first) {
    bright();
    contr();
  } else {
    contr();
    bright();
  }
  return x;
}

torch::Tensor gaussian_blur(const torch::Tensor& x, int kernel, double sigma) {
  const int r = kernel / 2;
  torch::Tensor k = torch::arange(-r, r + 1, torch::kFloat64);
  k = torch::exp(-(k * k) / (2 * sigma * sigma));
  k = (k / k.sum()).to(torch::kFloat32);
  const std::int64_t H = x.size(0), W = x.size(1);
  torch::Tensor t = x.view({1, 1, H, W});
  t = F::pad(t, F::PadFuncOptions({r, r, r, r}).mode(torch::kReflect));
  t = F::conv2d(t, k.view({1, 1, 1, kernel}));
  t = F::conv2d(t, k.view({1, 1, kernel, 1}));
  return t.view({H, W});
}

torch::Tensor solarize(const torch::Tensor& x, double threshold) {
  return torch::where(x >= threshold / 255.0, 1 - x, x);
}

torch::Tensor normalize_gray3(const torch::Tensor& x, const std::array<double, 3>& mean, const std::array<double, 3>& std) {
  torch::Tensor out = torch::empty({3, x.size(0), x.size(1)}, torch::kFloat32);
  for (int ch = 0; ch < 3; ++ch) out[ch].copy_((x - mean[ch]) / std[ch]);
  return out;
}

namespace {

// Nearest-neighbour sampling of a label map at the centres of an out_h x out_w lattice.
torch::Tensor sample_centres(const torch::Tensor& m, std::int64_t out_h, std::int64_t out_w) {
  const std::int64_t H = m.size(0), W = m.size(1);
  auto index = [](std::int64_t n, std::int64_t size) {
    return ((torch::arange(n, torch::kFloat64) + 0.5) * (static_cast<double>(size) / static_cast<double>(n)))
        .floor()
        .clamp(0, static_cast<double>(size - 1))
        .to(torch::kInt64);
  };
  return m.index_select(0, index(out_h, H)).index_select(1, index(out_w, W));
}

torch::Tensor augment_impl(const torch::Tensor& gray, const torch::Tensor* labels, const AugmentOptions& o, CounterRng& rng,
                           std::int64_t out_h, std::int64_t out_w, torch::Tensor* out_labels) {
  const CropBox box = random_resized_crop_box(gray.size(0), gray.size(1), o, rng);
  torch::Tensor x = resized_crop(gray, box, o.height, o.width);
  torch::Tensor m;
  if (labels) {
    m = sample_centres(labels->narrow(0, box.top, box.height).narrow(1, box.left, box.width), o.height, o.width);
  }

  const bool flip = rng.uniform() < o.flip_p;
  const AffineParams ap = draw_affine(o.degrees, o.translate, o.zoom_min, o.zoom_max, o.height, o.width, rng);
  x = affine(x, ap, flip);
  if (labels) {
    m = affine(m.to(torch::kFloat32), ap, flip, true).round().to(torch::kUInt8);
    *out_labels = sample_centres(m, out_h, out_w).contiguous();
  }
  if (rng.uniform() < o.jitter_p) x = jitter_brightness_contrast(x, o.brightness, o.contrast, rng);
  if (rng.uniform() < o.blur_p) x = gaussian_blur(x, o.blur_kernel, rng.uniform(o.blur_sigma_min, o.blur_sigma_max));
  return normalize_gray3(x, o.mean, o.std);
}

}  // namespace

torch::Tensor augment_gray(const torch::Tensor& gray, const AugmentOptions& o, CounterRng& rng) {
  return augment_impl(gray, nullptr, o, rng, 0, 0, nullptr);
}

torch::Tensor augment_gray_with_mask(const torch::Tensor& gray, const torch::Tensor& labels, const AugmentOptions& o,
                                     CounterRng& rng, std::int64_t out_h, std::int64_t out_w, torch::Tensor& out_labels) {
  if (!labels.sizes().equals(gray.sizes())) throw Error("augment: the label map must have the image's size");
  return augment_impl(gray, &labels, o, rng, out_h, out_w, &out_labels);
}

}  // namespace cx::train
