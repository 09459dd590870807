// bench/ingest/png_decode: PNG decode time per image, cx's own fast path (cx::io::decode_png:
// chunk reader, libdeflate/zlib, cx/io/png_rows' unfilter) against libspng (spng_decode_image
// to the file's own format), on the PNGs named on the command line. Checks that both give the
// same bytes. CPU time (this process, one thread), best of REPS passes over all files.
//   png_decode REPS FILE.png...
#include <spng.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <string>
#include <vector>

#include "cx/io/file_bytes.hpp"
#include "cx/io/png.hpp"

namespace {
double cpu_seconds() {
  timespec t;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec * 1e-9;
}

// libspng to the PNG's own format (8/16-bit gray or RGB as stored, 16-bit host-endian).
std::vector<unsigned char> spng_decode(const std::string& bytes, int& w, int& h) {
  spng_ctx* ctx = spng_ctx_new(0);
  spng_set_png_buffer(ctx, bytes.data(), bytes.size());
  spng_ihdr ihdr;
  if (spng_get_ihdr(ctx, &ihdr)) std::abort();
  std::size_t size = 0;
  if (spng_decoded_image_size(ctx, SPNG_FMT_PNG, &size)) std::abort();
  std::vector<unsigned char> out(size);
  int rc = spng_decode_image(ctx, out.data(), out.size(), SPNG_FMT_PNG, 0);
  if (rc) {
    std::fprintf(stderr, "spng: %s\n", spng_strerror(rc));
    std::abort();
  }
  w = static_cast<int>(ihdr.width);
  h = static_cast<int>(ihdr.height);
  spng_ctx_free(ctx);
  return out;
}
}  // namespace

int main(int argc, char** argv) {
  if (argc < 3) {
    std::fprintf(stderr, "usage: png_decode REPS FILE.png...\n");
    return 2;
  }
  const int reps = std::atoi(argv[1]);
  std::vector<std::string> files;
  for (int i = 2; i < argc; ++i) files.push_back(cx::io::read_file_bytes(argv[i]));
  bool same = true;
  for (std::size_t i = 0; i < files.size(); ++i) {
    cx::Image a = cx::io::decode_png(files[i], argv[i + 2]);
    int w = 0, h = 0;
    std::vector<unsigned char> b = spng_decode(files[i], w, h);
    if (a.width != w || a.height != h || a.data.size() != b.size() || std::memcmp(a.data.data(), b.data(), b.size()) != 0) {
      std::fprintf(stderr, "%s: the decoders differ\n", argv[i + 2]);
      same = false;
    }
  }
  double best_own = 1e9, best_spng = 1e9;
  std::size_t sink = 0;
  for (int r = 0; r < reps; ++r) {
    double t0 = cpu_seconds();
    for (std::size_t i = 0; i < files.size(); ++i) sink += cx::io::decode_png(files[i], "x").data[0];
    double t1 = cpu_seconds();
    for (std::size_t i = 0; i < files.size(); ++i) {
      int w, h;
      sink += spng_decode(files[i], w, h)[0];
    }
    double t2 = cpu_seconds();
    best_own = std::min(best_own, t1 - t0);
    best_spng = std::min(best_spng, t2 - t1);
  }
  const double n = static_cast<double>(files.size());
  std::printf("%zu PNGs, best of %d: own fast path %.2f ms/image, libspng %.2f ms/image (spng/own %.2f), same bytes: %s\n",
              files.size(), reps, 1000 * best_own / n, 1000 * best_spng / n, best_spng / best_own, same ? "yes" : "NO");
  if (sink == 1) std::printf("\n");  // keeps the decodes from being optimised away
  return same ? 0 : 1;
}
