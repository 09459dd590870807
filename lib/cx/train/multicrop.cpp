#include "cx/train/multicrop.hpp"

#include <dlfcn.h>

#include <cmath>
#include <cstring>

#include "cx/cli/error.hpp"
#include "cx/image/equalize.hpp"

namespace cx::train {

namespace {

// Intra-op threads off for this thread while in scope. ATen's OpenMP backend sizes its parallel
// regions by the calling thread's omp_get_max_threads(), a per-thread setting; a reduction (the
// contrast's mean) splits by it, so a crop computed with two intra-op threads could differ in the
// last bit from one computed with one, and loader workers each opening a team of their own would
// oversubscribe the CPUs the training step uses. LibTorch loads the OpenMP runtime; it is looked up
// by name so that cx_torch need not be compiled with -fopenmp. Without one, ATen is serial anyway.
class SerialIntraOp {
 public:
  SerialIntraOp() {
    static const Fns fns = lookup();
    fns_ = &fns;
    if (!fns_->set || !fns_->get) return;
    // at::get_num_threads() makes ATen initialise this thread's setting first, so that ATen's own
    // lazy initialisation does not undo ours inside the scope.
    (void)at::get_num_threads();
    saved_ = fns_->get();
    if (saved_ != 1) fns_->set(1);
  }
  ~SerialIntraOp() {
    if (fns_->set && saved_ > 0 && saved_ != 1) fns_->set(saved_);
  }
  SerialIntraOp(const SerialIntraOp&) = delete;
  SerialIntraOp& operator=(const SerialIntraOp&) = delete;

 private:
  struct Fns {
    void (*set)(int) = nullptr;
    int (*get)() = nullptr;
  };
  static Fns lookup() {
    Fns f;
    f.set = reinterpret_cast<void (*)(int)>(dlsym(RTLD_DEFAULT, "omp_set_num_threads"));
    f.get = reinterpret_cast<int (*)()>(dlsym(RTLD_DEFAULT, "omp_get_max_threads"));
    return f;
  }
  const Fns* fns_ = nullptr;
  int saved_ = 0;
};

void check_probability(double p, const char* name) {
  if (!(p >= 0 && p <= 1)) throw UsageError(std::string("crops: ") + name + " must be in [0, 1]");
}

void check_scale(double lo, double hi, const char* name) {
  if (!(lo > 0 && lo <= hi && hi <= 1)) throw UsageError(std::string("crops: ") + name + " scale must satisfy 0 < min <= max <= 1");
}

constexpr double kRatioMin = 3.0 / 4.0, kRatioMax = 4.0 / 3.0;
constexpr int kBlurKernel = 9;
constexpr double kBlurSigmaMin = 0.1, kBlurSigmaMax = 2.0;
// CXformer's RandomAffine(degrees=20, translate=(0.1, 0.1), scale=(0.8, 1.2)).
constexpr double kAffineDegrees = 20, kAffineTranslate = 0.1, kAffineZoomMin = 0.8, kAffineZoomMax = 1.2;

torch::Tensor one_crop(const torch::Tensor& gray, std::int64_t size, double scale_min, double scale_max, bool with_affine,
                       double blur_p, double solarize_p, const MultiCropOptions& o, CounterRng& rng) {
  const CropBox box = random_resized_crop_box(gray.size(0), gray.size(1), scale_min, scale_max, kRatioMin, kRatioMax, rng);
  torch::Tensor x = resized_crop(gray, box, size, size);
  const bool flip = rng.chance(0.5);
  if (with_affine) {
    x = affine(x, draw_affine(kAffineDegrees, kAffineTranslate, kAffineZoomMin, kAffineZoomMax, size, size, rng), flip);
  } else if (flip) {
    x = hflip(x);
  }
  if (rng.chance(o.jitter_p)) x = jitter_brightness_contrast(x, o.brightness, o.contrast, rng);
  if (rng.chance(blur_p)) x = gaussian_blur(x, kBlurKernel, rng.uniform(kBlurSigmaMin, kBlurSigmaMax));
  if (solarize_p > 0 && rng.chance(solarize_p)) x = solarize(x);
  return normalize_gray3(x, o.mean, o.std);
}

MultiCrops crops_of(const torch::Tensor& gray, const MultiCropOptions& o, CounterRng& rng) {
  MultiCrops out;
  const std::int64_t G = o.global_size, L = o.local_size;
  out.global = torch::empty({2, 3, G, G}, torch::kFloat32);
  out.local = torch::empty({o.local_number, 3, L, L}, torch::kFloat32);
  out.global[0].copy_(one_crop(gray, G, o.global_scale_min, o.global_scale_max, o.global_affine, o.blur_p_global1, 0, o, rng));
  out.global[1].copy_(one_crop(gray, G, o.global_scale_min, o.global_scale_max, o.global_affine, o.blur_p_global2,
                               o.solarize_p_global2, o, rng));
  for (std::int64_t i = 0; i < o.local_number; ++i)
    out.local[i].copy_(one_crop(gray, L, o.local_scale_min, o.local_scale_max, false, o.blur_p_local, 0, o, rng));
  return out;
}

void check_source(std::int64_t H, std::int64_t W) {
  if (H < 1 || W < 1) throw Error("crops: empty image");
}

}  // namespace

void check_multicrop_options(const MultiCropOptions& o) {
  if (o.global_size < 1 || o.local_size < 1) throw UsageError("crops: global_size and local_size must be at least 1");
  if (o.local_number < 0) throw UsageError("crops: local_number must be at least 0");
  check_scale(o.global_scale_min, o.global_scale_max, "global");
  check_scale(o.local_scale_min, o.local_scale_max, "local");
  check_probability(o.jitter_p, "jitter_p");
  check_probability(o.brightness, "brightness");
  check_probability(o.contrast, "contrast");
  check_probability(o.blur_p_global1, "blur_p_global1");
  check_probability(o.blur_p_global2, "blur_p_global2");
  check_probability(o.blur_p_local, "blur_p_local");
  check_probability(o.solarize_p_global2, "solarize_p_global2");
  for (double s : o.std)
    if (!(s > 0) || !std::isfinite(s)) throw UsageError("crops: std must be positive");
  for (double m : o.mean)
    if (!std::isfinite(m)) throw UsageError("crops: mean must be finite");
}

MultiCrops multicrop(const torch::Tensor& gray, const MultiCropOptions& o, CounterRng& rng) {
  if (gray.dim() != 2) throw Error("crops: expected a gray image [H, W]");
  check_source(gray.size(0), gray.size(1));
  check_multicrop_options(o);
  SerialIntraOp serial;
  torch::NoGradGuard no_grad;
  torch::Tensor g = gray.to(torch::kFloat32).contiguous();
  if (o.hist_equalize) {
    torch::Tensor q = g.clamp(0, 1).mul(255.0).round().to(torch::kUInt8).contiguous();
    Image im = Image::gray8(static_cast<int>(g.size(1)), static_cast<int>(g.size(0)));
    std::memcpy(im.u8(), q.data_ptr<std::uint8_t>(), im.data.size());
    image::equalize(im);
    g = gray_to_unit(im);
  }
  return crops_of(g, o, rng);
}

MultiCrops multicrop(const Image& gray8, const MultiCropOptions& o, CounterRng& rng) {
  if (gray8.channels != 1 || gray8.bits != 8) throw Error("crops: expected an 8-bit gray image");
  check_source(gray8.height, gray8.width);
  check_multicrop_options(o);
  SerialIntraOp serial;
  torch::NoGradGuard no_grad;
  if (!o.hist_equalize) return crops_of(gray_to_unit(gray8), o, rng);
  Image im = gray8;
  image::equalize(im);
  return crops_of(gray_to_unit(im), o, rng);
}

}  // namespace cx::train
