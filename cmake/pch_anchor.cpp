// Gives cx_torch a translation unit even before any model code exists, so its precompiled
// <torch/torch.h> is always built once and reused by every torch target.
namespace cx::detail {
int pch_anchor() { return 0; }
}  // namespace cx::detail
