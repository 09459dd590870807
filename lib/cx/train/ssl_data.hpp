#pragma once
// Self-supervised pretraining data: records streamed from cx streams through a shuffle buffer, each
// image turned into DINOv2's multi-crops (cx/train/multicrop) by worker threads ahead of the training
// step, collated crop-major into batches as DINOv2's collate does.
//
// Order and randomness, all from cx/random's training_rng, never from timing or thread count:
//   - A pass reads the inputs one after the other; records are numbered 0, 1, ... across them (the
//     record index). Rank r of world_size w keeps the records whose index % w == r, so each rank reads
//     its shard of the same stream; the others are read past, their images neither kept nor decoded.
//   - Shuffle buffer (WebDataset's shuffle): the kept records fill a buffer of shuffle_buffer; then
//     the e-th record given in a pass is buffer[j], j = ssl_shuffle_rng(seed, pass, e * world_size +
//     rank).below(size), and the buffer is refilled by one; at the end of the pass it is drained the
//     same way. shuffle_buffer = 1 gives each rank its shard in stream order.
//   - A record's crops are multicrop(image, crops, ssl_augment_rng(seed, pass, index)): a pure
//     function of (seed, pass, record index), the same on any rank or world size.
//   - Passes go on without end: at the end of one the inputs are opened again, and a batch may hold
//     the last records of one pass and the first of the next. An input that cannot be read twice ("-",
//     a pipe, a FIFO or other non-regular file) ends the data after the first pass: the records of a
//     last partial batch are dropped (DINOv2 drops them too).
// Memory: the buffer holds the kept records' encoded image bytes (not decoded); beyond it, at most
// `prefetch` finished batches, the one being collated and 2 * threads images in the workers.
// Records: a record without an image field (png, jpg, jpeg) is an error naming the stream and the
// record, as other trainers treat them; so is an image that does not decode. A pass in which a rank
// keeps no record is an error (an empty stream, or fewer records than ranks).
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <torch/torch.h>

#include "cx/random/rng.hpp"
#include "cx/train/multicrop.hpp"

namespace cx::train {

// training_rng purposes of this loader (others in train/ use 1-4 and 11-13).
inline constexpr std::uint64_t kSslShufflePurpose = 21;
inline constexpr std::uint64_t kSslAugmentPurpose = 22;

// The generators of the loader's draws. The counter is hashed (mix64) before it enters
// training_rng: training_rng(s, p, a, b) and training_rng(s, p, a, b ^ 1) are one sequence shifted
// by one draw (SplitMix64 steps its state by one), so records 2m and 2m + 1 would otherwise share
// all but one of their crop draws.
inline CounterRng ssl_augment_rng(std::uint64_t seed, std::int64_t pass, std::int64_t index) {
  return random::training_rng(seed, kSslAugmentPurpose, static_cast<std::uint64_t>(pass),
                              random::mix64(static_cast<std::uint64_t>(index)));
}
inline CounterRng ssl_shuffle_rng(std::uint64_t seed, std::int64_t pass, std::uint64_t counter) {
  return random::training_rng(seed, kSslShufflePurpose, static_cast<std::uint64_t>(pass), random::mix64(counter));
}

struct SslBatch {
  // [2B, 3, G, G], crop-major as DINOv2 collates: every image's first global crop, then every second
  // (row c * B + b is image b's crop c).
  torch::Tensor global;
  torch::Tensor local;            // [n * B, 3, L, L], crop-major likewise (row l * B + b)
  std::vector<std::string> keys;  // the B records' keys, in batch order
  std::int64_t pass = 0;          // the pass the batch's first record came from
};

struct SslLoaderOptions {
  std::int64_t batch_size = 64;
  std::int64_t shuffle_buffer = 1024;
  std::uint64_t seed = 0;
  // Worker threads that decode and crop. 0: everything on the caller's thread inside next() (no
  // thread started); the batches are the same bytes for any value.
  int threads = 2;
  int prefetch = 2;  // finished batches kept ready ahead of next()
  int rank = 0, world_size = 1;
  MultiCropOptions crops;
};

class SslLoader {
 public:
  // Checks the options (cx::UsageError naming the bad one); opens nothing until next() or seek().
  SslLoader(std::vector<std::string> inputs /* stream paths, "-" = stdin */, SslLoaderOptions options);
  ~SslLoader();  // stops the workers (each finishes the image it holds)
  SslLoader(const SslLoader&) = delete;
  SslLoader& operator=(const SslLoader&) = delete;

  // The next batch; endless over passes of the inputs (re-opened each pass). An input that cannot be
  // read again (a pipe, "-") ends the data: next() returns false after the last full batch. Errors
  // (a bad stream, a record without an image) are thrown here, after the batches completed before
  // them, as cx::Error naming the stream and record; later calls throw the same error again.
  bool next(SslBatch& batch);

  // What a checkpoint stores, after the last batch next() gave (batches being prepared ahead do not
  // count): {"format": "cx-ssl-position", "pass", "read" (records of the stream read in this pass, all
  // ranks'), "emitted" (this rank's records given from the buffer in this pass), "batches" (batches
  // given since the start of training), "seed", "rank", "world_size", "shuffle_buffer"}.
  nlohmann::json position() const;

  // Continue exactly where the loader that gave `position` was: the next batch equals the one it
  // would have given next, bytes equal (with the same inputs and crop options; batch_size may
  // differ). The pass is read again from its start to rebuild the shuffle buffer (images are not
  // decoded). Refuses by name a position of another seed, rank, world size or buffer size, a pass
  // after the first of an input that cannot be read again, and a stream shorter than the position.
  // May be called at any time; batches prepared ahead are discarded.
  void seek(const nlohmann::json& position);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace cx::train
