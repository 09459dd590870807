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

CropBox random_resized_crop_box(std::int64_t H, std::int64_t W, const AugmentOptions& o, CounterRng& rng) {
  const double area = static_cast<double>(H) * static_cast<double>(W);
  const double log_lo = std::log(o.ratio_min), log_hi = std::log(o.ratio_max);
  for (int attempt = 0; attempt < 10; ++attempt) {
    const double target = area * rng.uniform(o.scale_min, o.scale_max);
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
  if (in_ratio < o.ratio_min) {
    h = std::llround(static_cast<double>(w) / o.ratio_min);
  } else if (in_ratio > o.ratio_max) {
    w = std::llround(static_cast<double>(h) * o.ratio_max);
  }
  h = std::min(h, H);
  w = std::min(w, W);
  return {(H - h) / 2, (W - w) / 2, h, w};
}

namespace {

torch::Tensor affine(const torch::Tensor& x, double angle_deg, double tx, double ty, double zoom, bool flip,
                     bool nearest = false) {
  // Output pixel (i, j) samples the input at C + R(-angle) (p - C - t) / zoom; the flip mirrors the
  // input first. Coordinates are pixel indices, the centre C = ((W - 1) / 2, (H - 1) / 2).
  const std::int64_t H = x.size(0), W = x.size(1);
  const double a = angle_deg * kPi / 180.0, c = std::cos(a), s = std::sin(a);
  const double cx = (static_cast<double>(W) - 1) / 2, cy = (static_cast<double>(H) - 1) / 2;
  auto opts = torch::TensorOptions().dtype(torch::kFloat64);
  torch::Tensor ys = torch::arange(H, opts).view({H, 1}).expand({H, W});
  torch::Tensor xs = torch::arange(W, opts).view({1, W}).expand({H, W});
  torch::Tensor u = xs - cx - tx, v = ys - cy - ty;
  torch::Tensor sx = (c * u + s * v) / zoom + cx;
  torch::Tensor sy = (-s * u + c * v) / zoom + cy;
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
  const std::int64_t H = gray.size(0), W = gray.size(1);
  const CropBox box = random_resized_crop_box(H, W, o, rng);
  torch::Tensor crop = gray.narrow(0, box.top, box.height).narrow(1, box.left, box.width);
  auto resize = F::InterpolateFuncOptions()
                .size(std::vector<std::int64_t>{o.height, o.width})
                .mode(torch::kBicubic)
                .align_corners(false)
                .antialias(true);
  torch::Tensor x = F::interpolate(crop.reshape({1, 1, box.height, box.width}), resize).view({o.height, o.width}).clamp(0, 1);
  torch::Tensor m;
  if (labels) {
    m = sample_centres(labels->narrow(0, box.top, box.height).narrow(1, box.left, box.width), o.height, o.width);
  }

  const bool flip = rng.uniform() < o.flip_p;
  const double angle = rng.uniform(-o.degrees, o.degrees);
  const double tx = std::round(rng.uniform(-o.translate * o.width, o.translate * o.width));
  const double ty = std::round(rng.uniform(-o.translate * o.height, o.translate * o.height));
  const double zoom = rng.uniform(o.zoom_min, o.zoom_max);
  x = affine(x, angle, tx, ty, zoom, flip);
  if (labels) {
    m = affine(m.to(torch::kFloat32), angle, tx, ty, zoom, flip, true).round().to(torch::kUInt8);
    *out_labels = sample_centres(m, out_h, out_w).contiguous();
  }
  if (rng.uniform() < o.jitter_p) {
    const double b = rng.uniform(1 - o.brightness, 1 + o.brightness);
    const double c = rng.uniform(1 - o.contrast, 1 + o.contrast);
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
  }
  if (rng.uniform() < o.blur_p) x = gaussian_blur(x, o.blur_kernel, rng.uniform(o.blur_sigma_min, o.blur_sigma_max));

  torch::Tensor out = torch::empty({3, o.height, o.width}, torch::kFloat32);
  for (int ch = 0; ch < 3; ++ch) out[ch].copy_((x - o.mean[ch]) / o.std[ch]);
  return out;
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
