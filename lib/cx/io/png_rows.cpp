#include "cx/io/png_rows.hpp"

#include <algorithm>
#include <cstring>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace cx::io::png_rows {

namespace {

// Paeth reconstruction is serial: each byte's prediction needs the byte reconstructed `bpp` to
// its left (a). Written as the standard does, a's path runs through three absolute differences
// and two comparisons; libpng's loop takes about 14 cycles a byte on 8-bit gray, the layout of
// most radiograph PNGs. Here everything that depends only on the row above (b, c) is worked out
// first, off a's path, as an interval of a:
//   with d = b - c, the standard picks a unless a lies strictly between b and 3c - 2b; inside that
//   interval it picks b when 2a >= 3c - b (d > 0) or 2a <= 3c - b (d < 0), else c.
// (pa = |d|, pb = |a - c|, pc = |a - c + d|: pa <= pb and pa <= pc hold exactly outside the open
// interval; pb <= pc is 2(a - c)d + d^2 >= 0.) What is left on a's path is two compare-and-
// selects. tests/unit/io_png_test checks this against paeth_reference for every (a, b, c).
struct PaethAbove {
  int lo1;         // the interval is lo1 <= a < lo1 + inner
  unsigned inner;  // 0 when b == c: always a
  int split;       // inside it: upper when 2a >= split, else lower
  int upper, lower;
};

inline PaethAbove paeth_above(int b, int c) {
  const int far = 3 * c - 2 * b;
  const int lo = b < far ? b : far, hi = b < far ? far : b;
  const bool falling = b < c;
  return {lo + 1, static_cast<unsigned>(hi - lo - 1 > 0 ? hi - lo - 1 : 0), 3 * c - b + falling, falling ? c : b,
          falling ? b : c};
}

// The two selects as conditional moves. Written as `?:`, GCC 12 turns them into branches, which a
// noisy image mispredicts about half the time: the loop then runs 2.4 times slower.
inline int select_ge(int lhs, int rhs, int if_ge, int otherwise) {
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
  asm("cmpl %[rhs], %[lhs]\n\tcmovge %[yes], %[out]"
      : [out] "+r"(otherwise)
      : [lhs] "r"(lhs), [rhs] "r"(rhs), [yes] "r"(if_ge)
      : "cc");
  return otherwise;
#else
  return lhs >= rhs ? if_ge : otherwise;
#endif
}

inline int select_ae(unsigned lhs, unsigned rhs, int if_ae, int otherwise) {  // unsigned >=
#if (defined(__GNUC__) || defined(__clang__)) && defined(__x86_64__)
  asm("cmpl %[rhs], %[lhs]\n\tcmovae %[yes], %[out]"
      : [out] "+r"(otherwise)
      : [lhs] "r"(lhs), [rhs] "r"(rhs), [yes] "r"(if_ae)
      : "cc");
  return otherwise;
#else
  return lhs >= rhs ? if_ae : otherwise;
#endif
}

inline int paeth_pick(int a, int lo1, unsigned inner, int split, int upper, int lower) {
  const int inside = select_ge(2 * a, split, upper, lower);
  return select_ae(static_cast<unsigned>(a - lo1), inner, a, inside);
}

// One byte per pixel (8-bit gray): the row above is turned into intervals 64 bytes at a time (8
// lanes at once with SSE2), then a's path runs through them.
void unpaeth1(const std::uint8_t* f, const std::uint8_t* up, std::uint8_t* out, std::size_t n) {
  constexpr std::size_t kChunk = 64;
  alignas(16) std::int16_t lo1[kChunk], inner[kChunk], split[kChunk], upper[kChunk], lower[kChunk];
  int a = out[0] = static_cast<std::uint8_t>(f[0] + up[0]);
  for (std::size_t base = 1; base < n; base += kChunk) {
    const std::size_t m = std::min(kChunk, n - base);
    std::size_t j = 0;
#if defined(__SSE2__)
    const __m128i zero = _mm_setzero_si128(), one = _mm_set1_epi16(1);
    for (; j + 8 <= m; j += 8) {
      const __m128i b = _mm_unpacklo_epi8(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(up + base + j)), zero);
      const __m128i c = _mm_unpacklo_epi8(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(up + base + j - 1)), zero);
      const __m128i c3 = _mm_add_epi16(_mm_add_epi16(c, c), c);
      const __m128i far = _mm_sub_epi16(c3, _mm_add_epi16(b, b));
      const __m128i lo = _mm_min_epi16(b, far), hi = _mm_max_epi16(b, far);
      const __m128i falling = _mm_cmpgt_epi16(c, b);  // all ones where b < c
      _mm_store_si128(reinterpret_cast<__m128i*>(lo1 + j), _mm_add_epi16(lo, one));
      _mm_store_si128(reinterpret_cast<__m128i*>(inner + j), _mm_max_epi16(_mm_sub_epi16(_mm_sub_epi16(hi, lo), one), zero));
      _mm_store_si128(reinterpret_cast<__m128i*>(split + j), _mm_sub_epi16(_mm_sub_epi16(c3, b), falling));
      _mm_store_si128(reinterpret_cast<__m128i*>(upper + j), _mm_or_si128(_mm_and_si128(falling, c), _mm_andnot_si128(falling, b)));
      _mm_store_si128(reinterpret_cast<__m128i*>(lower + j), _mm_or_si128(_mm_and_si128(falling, b), _mm_andnot_si128(falling, c)));
    }
#endif
    for (; j < m; ++j) {
      const PaethAbove p = paeth_above(up[base + j], up[base + j - 1]);
      lo1[j] = static_cast<std::int16_t>(p.lo1);
      inner[j] = static_cast<std::int16_t>(p.inner);
      split[j] = static_cast<std::int16_t>(p.split);
      upper[j] = static_cast<std::int16_t>(p.upper);
      lower[j] = static_cast<std::int16_t>(p.lower);
    }
    for (j = 0; j < m; ++j) {
      a = (f[base + j] + paeth_pick(a, lo1[j], static_cast<unsigned>(inner[j]), split[j], upper[j], lower[j])) & 0xff;
      out[base + j] = static_cast<std::uint8_t>(a);
    }
  }
}

// B bytes per pixel: B independent chains, each left byte kept in a register.
template <int B>
void unpaeth(const std::uint8_t* f, const std::uint8_t* up, std::uint8_t* out, std::size_t n) {
  int a[B];
  for (int k = 0; k < B; ++k) a[k] = out[k] = static_cast<std::uint8_t>(f[k] + up[k]);
  std::size_t i = B;
  for (; i + B <= n; i += B)
    for (int k = 0; k < B; ++k) {
      const PaethAbove p = paeth_above(up[i + k], up[i + k - B]);
      a[k] = (f[i + k] + paeth_pick(a[k], p.lo1, p.inner, p.split, p.upper, p.lower)) & 0xff;
      out[i + k] = static_cast<std::uint8_t>(a[k]);
    }
  for (; i < n; ++i) out[i] = static_cast<std::uint8_t>(f[i] + paeth_reference(out[i - B], up[i], up[i - B]));
}

void unpaeth_any(const std::uint8_t* f, const std::uint8_t* up, std::uint8_t* out, std::size_t n, int bpp) {
  for (std::size_t i = 0; i < n; ++i) {
    const bool left = i >= static_cast<std::size_t>(bpp);
    out[i] = static_cast<std::uint8_t>(f[i] + paeth_reference(left ? out[i - bpp] : 0, up[i], left ? up[i - bpp] : 0));
  }
}

}  // namespace

bool unfilter_row(int type, const std::uint8_t* f, const std::uint8_t* prior, std::uint8_t* out, std::size_t n,
                  int bpp) {
  const std::size_t B = static_cast<std::size_t>(bpp);
  switch (type) {
    case kNone:
      std::memcpy(out, f, n);
      return true;
    case kUp:
      if (!prior) {
        std::memcpy(out, f, n);
        return true;
      }
      for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::uint8_t>(f[i] + prior[i]);
      return true;
    case kSub:
    case kPaeth:
      if (type == kSub || !prior) {  // Paeth over a row of zeros predicts the left byte
        for (std::size_t i = 0; i < n && i < B; ++i) out[i] = f[i];
        for (std::size_t i = B; i < n; ++i) out[i] = static_cast<std::uint8_t>(f[i] + out[i - B]);
        return true;
      }
      if (n < B) {
        for (std::size_t i = 0; i < n; ++i) out[i] = static_cast<std::uint8_t>(f[i] + prior[i]);
        return true;
      }
      switch (bpp) {
        case 1: unpaeth1(f, prior, out, n); break;
        case 2: unpaeth<2>(f, prior, out, n); break;
        case 3: unpaeth<3>(f, prior, out, n); break;
        case 4: unpaeth<4>(f, prior, out, n); break;
        case 6: unpaeth<6>(f, prior, out, n); break;
        default: unpaeth_any(f, prior, out, n, bpp); break;
      }
      return true;
    case kAverage:
      for (std::size_t i = 0; i < n; ++i) {
        const int left = i >= B ? out[i - B] : 0, above = prior ? prior[i] : 0;
        out[i] = static_cast<std::uint8_t>(f[i] + ((left + above) >> 1));
      }
      return true;
    default:
      return false;
  }
}

void paeth_filter_row(const std::uint8_t* row, const std::uint8_t* prior, std::uint8_t* out, std::size_t n, int bpp) {
  const std::size_t B = static_cast<std::size_t>(bpp);
  if (!prior) {
    for (std::size_t i = 0; i < n && i < B; ++i) out[i] = row[i];
    for (std::size_t i = B; i < n; ++i) out[i] = static_cast<std::uint8_t>(row[i] - row[i - B]);
    return;
  }
  for (std::size_t i = 0; i < n && i < B; ++i) out[i] = static_cast<std::uint8_t>(row[i] - prior[i]);
  std::size_t i = B;
#if defined(__SSE2__)
  // No dependency between bytes here: eight at a time.
  const __m128i zero = _mm_setzero_si128();
  auto load = [&](const std::uint8_t* p) { return _mm_unpacklo_epi8(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p)), zero); };
  auto abs16 = [&](__m128i v) { return _mm_max_epi16(v, _mm_sub_epi16(zero, v)); };
  for (; i + 8 <= n; i += 8) {
    const __m128i a = load(row + i - B), b = load(prior + i), c = load(prior + i - B);
    const __m128i pa = abs16(_mm_sub_epi16(b, c)), pb = abs16(_mm_sub_epi16(a, c));
    const __m128i pc = abs16(_mm_sub_epi16(_mm_add_epi16(a, b), _mm_add_epi16(c, c)));
    const __m128i not_a = _mm_or_si128(_mm_cmpgt_epi16(pa, pb), _mm_cmpgt_epi16(pa, pc));
    const __m128i c_not_b = _mm_cmpgt_epi16(pb, pc);
    const __m128i bc = _mm_or_si128(_mm_and_si128(c_not_b, c), _mm_andnot_si128(c_not_b, b));
    const __m128i pred = _mm_or_si128(_mm_and_si128(not_a, bc), _mm_andnot_si128(not_a, a));
    const __m128i x = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(row + i));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(out + i), _mm_sub_epi8(x, _mm_packus_epi16(pred, pred)));
  }
#endif
  for (; i < n; ++i) {
    const int a = row[i - B], b = prior[i], c = prior[i - B];
    const int pa = b > c ? b - c : c - b, pb = a > c ? a - c : c - a, pc = a + b > 2 * c ? a + b - 2 * c : 2 * c - a - b;
    const int pred = (pa <= pb && pa <= pc) ? a : (pb <= pc ? b : c);
    out[i] = static_cast<std::uint8_t>(row[i] - pred);
  }
}

}  // namespace cx::io::png_rows
