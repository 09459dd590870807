#include "cx/train/masking.hpp"

#include <cmath>
#include <string>
#include <vector>

#include "cx/cli/error.hpp"

namespace cx::train {

MaskingGenerator::MaskingGenerator(std::int64_t h, std::int64_t w, std::int64_t max_num_patches,
                                   std::int64_t min_num_patches, double min_aspect, double max_aspect)
    : h_(h), w_(w), max_num_patches_(max_num_patches < 0 ? (h * w) / 2 : max_num_patches),
      min_num_patches_(min_num_patches) {
  if (max_aspect < 0) max_aspect = 1.0 / min_aspect;
  if (h <= 0 || w <= 0 || min_num_patches < 0 || !(min_aspect > 0) || !(max_aspect > 0) || min_aspect > max_aspect)
    throw cx::Error("masking: invalid generator (grid " + std::to_string(h) + "x" + std::to_string(w) +
                    ", min patches " + std::to_string(min_num_patches) + ", aspect " + std::to_string(min_aspect) +
                    " to " + std::to_string(max_aspect) + ")");
  log_aspect_min_ = std::log(min_aspect);
  log_aspect_max_ = std::log(max_aspect);
}

std::int64_t MaskingGenerator::add_block(std::vector<std::uint8_t>& mask, std::int64_t max_mask_patches,
                                         cx::random::CounterRng& rng) const {
  std::int64_t added = 0;
  for (int attempt = 0; attempt < 10 && added == 0; ++attempt) {
    const double area = rng.uniform(static_cast<double>(min_num_patches_), static_cast<double>(max_mask_patches));
    const double aspect = std::exp(rng.uniform(log_aspect_min_, log_aspect_max_));
    // std::nearbyint rounds half to even in the default rounding mode, as Python's round().
    const auto bh = static_cast<std::int64_t>(std::nearbyint(std::sqrt(area * aspect)));
    const auto bw = static_cast<std::int64_t>(std::nearbyint(std::sqrt(area / aspect)));
    if (bw >= w_ || bh >= h_) continue;
    const auto top = static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(h_ - bh + 1)));
    const auto left = static_cast<std::int64_t>(rng.below(static_cast<std::uint64_t>(w_ - bw + 1)));
    std::int64_t already = 0;
    for (std::int64_t i = top; i < top + bh; ++i)
      for (std::int64_t j = left; j < left + bw; ++j) already += mask[static_cast<std::size_t>(i * w_ + j)];
    const std::int64_t fresh = bh * bw - already;
    if (fresh > 0 && fresh <= max_mask_patches) {
      for (std::int64_t i = top; i < top + bh; ++i)
        for (std::int64_t j = left; j < left + bw; ++j) {
          auto& m = mask[static_cast<std::size_t>(i * w_ + j)];
          if (!m) {
            m = 1;
            ++added;
          }
        }
    }
  }
  return added;
}

torch::Tensor MaskingGenerator::operator()(std::int64_t num_masking_patches, cx::random::CounterRng& rng) const {
  std::vector<std::uint8_t> mask(static_cast<std::size_t>(h_ * w_), 0);
  std::int64_t count = 0;
  while (count < num_masking_patches) {
    const std::int64_t max_mask_patches = std::min(num_masking_patches - count, max_num_patches_);
    const std::int64_t added = add_block(mask, max_mask_patches, rng);
    if (added == 0) break;
    count += added;
  }
  return torch::from_blob(mask.data(), {h_, w_}, torch::kUInt8).to(torch::kBool);
}

CollatedMasks collate_masks(std::int64_t B, std::int64_t h, std::int64_t w, double probability, double ratio_min,
                            double ratio_max, cx::random::CounterRng& rng) {
  if (B < 1 || !(probability >= 0.0 && probability <= 1.0) || !(ratio_min >= 0.0 && ratio_min <= ratio_max) ||
      !(ratio_max <= 1.0))
    throw cx::Error("masking: invalid collate settings (batch " + std::to_string(B) + ", probability " +
                    std::to_string(probability) + ", ratios " + std::to_string(ratio_min) + " to " +
                    std::to_string(ratio_max) + ")");
  const MaskingGenerator generator(h, w);
  const std::int64_t N = h * w;
  const auto k = static_cast<std::int64_t>(static_cast<double>(B) * probability);
  // The bins' edges r_i = ratio_min + (ratio_max - ratio_min) i / k, ratio_max exactly at i == k.
  auto ratio = [&](std::int64_t i) {
    if (i >= k) return ratio_max;
    return ratio_min + (ratio_max - ratio_min) * static_cast<double>(i) / static_cast<double>(k);
  };
  std::vector<torch::Tensor> drawn;
  drawn.reserve(static_cast<std::size_t>(B));
  CollatedMasks out;
  for (std::int64_t i = 0; i < k; ++i) {
    const double lo = ratio(i), hi = ratio(i + 1);
    const auto target = static_cast<std::int64_t>(static_cast<double>(N) * rng.uniform(lo, hi));
    drawn.push_back(generator(target, rng).flatten());
    out.upperbound += static_cast<std::int64_t>(static_cast<double>(N) * hi);
  }
  for (std::int64_t i = k; i < B; ++i) drawn.push_back(torch::zeros({N}, torch::kBool));
  const std::vector<std::int64_t> order = random::permutation(B, rng);
  std::vector<torch::Tensor> shuffled;
  shuffled.reserve(static_cast<std::size_t>(B));
  for (std::int64_t j : order) shuffled.push_back(drawn[static_cast<std::size_t>(j)]);
  out.masks = torch::stack(shuffled);
  out.indices = out.masks.flatten().nonzero().flatten();
  torch::Tensor per_image = 1.0 / out.masks.sum(-1).clamp_min(1).to(torch::kFloat32);
  out.weights = per_image.unsqueeze(-1).expand({B, N}).masked_select(out.masks).contiguous();
  return out;
}

}  // namespace cx::train
