// Pillow 9.4 resampling (libImaging/Resample.c and the nearest path of Geometry.c), reproduced
// operation for operation: the same double expressions for the weights, the same fixed-point
// conversion and rounding, the same pass order. Any "simplification" of an expression below
// changes the last bit of some weight and, through rounding, some output pixel.
#include "cx/image/resize.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>

#include "cx/cli/error.hpp"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace cx::image {
namespace {

constexpr double kPi = 3.14159265358979323846;  // M_PI, as Pillow uses it

double box_filter(double x) {
  // Pillow 9.4: half-open on the left, so a sample exactly between two pixels goes to the left one.
  if (x > -0.5 && x <= 0.5) return 1.0;
  return 0.0;
}

double bilinear_filter(double x) {
  if (x < 0.0) x = -x;
  if (x < 1.0) return 1.0 - x;
  return 0.0;
}

double hamming_filter(double x) {
  if (x < 0.0) x = -x;
  if (x == 0.0) return 1.0;
  if (x >= 1.0) return 0.0;
  x = x * kPi;
  // The float literals are Pillow's; as doubles they differ from 0.54/0.46 in the 9th digit.
  return std::sin(x) / x * (0.54f + 0.46f * std::cos(x));
}

double bicubic_filter(double x) {
  const double a = -0.5;  // Pillow's Keys cubic; torch's plain bicubic uses -0.75
  if (x < 0.0) x = -x;
  if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
  if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
  return 0.0;
}

double sinc_filter(double x) {
  if (x == 0.0) return 1.0;
  x = x * kPi;
  return std::sin(x) / x;
}

double lanczos_filter(double x) {
  if (-3.0 <= x && x < 3.0) return sinc_filter(x) * sinc_filter(x / 3);
  return 0.0;
}

struct FilterDef {
  double (*fn)(double);
  double support;
};

FilterDef filter_def(Filter f) {
  switch (f) {
    case Filter::box: return {box_filter, 0.5};
    case Filter::bilinear: return {bilinear_filter, 1.0};
    case Filter::hamming: return {hamming_filter, 1.0};
    case Filter::bicubic: return {bicubic_filter, 2.0};
    case Filter::lanczos: return {lanczos_filter, 3.0};
    case Filter::nearest: break;
  }
  throw Error("resize: the nearest filter has no convolution kernel");
}

// Weights of one axis: output index i reads `bounds[2i+1]` inputs from `bounds[2i]` with weights
// kk[i*ksize ...]; the rest of each row of kk is zero.
struct Coeffs {
  int ksize = 0;
  std::vector<int> bounds;
  std::vector<double> kk;
};

Coeffs precompute_coeffs(int in_size, int out_size, const FilterDef& filter) {
  // Pillow passes the source box as floats; the whole image is (0, in_size).
  const float in0 = 0.0f;
  const float in1 = static_cast<float>(in_size);
  double scale = static_cast<double>(in1 - in0) / out_size;
  double filterscale = scale;
  if (filterscale < 1.0) filterscale = 1.0;
  const double support = filter.support * filterscale;
  Coeffs c;
  c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
  c.bounds.resize(static_cast<std::size_t>(out_size) * 2);
  c.kk.assign(static_cast<std::size_t>(out_size) * c.ksize, 0.0);
  for (int xx = 0; xx < out_size; ++xx) {
    const double center = in0 + (xx + 0.5) * scale;
    double ww = 0.0;
    const double ss = 1.0 / filterscale;
    int xmin = static_cast<int>(center - support + 0.5);
    if (xmin < 0) xmin = 0;
    int xmax = static_cast<int>(center + support + 0.5);
    if (xmax > in_size) xmax = in_size;
    xmax -= xmin;
    double* k = &c.kk[static_cast<std::size_t>(xx) * c.ksize];
    for (int x = 0; x < xmax; ++x) {
      const double w = filter.fn((x + xmin - center + 0.5) * ss);
      k[x] = w;
      ww += w;
    }
    for (int x = 0; x < xmax; ++x) {
      if (ww != 0.0) k[x] /= ww;
    }
    c.bounds[2 * static_cast<std::size_t>(xx)] = xmin;
    c.bounds[2 * static_cast<std::size_t>(xx) + 1] = xmax;
  }
  return c;
}

// 8 bits of result, 2 bits of headroom for filters with negative lobes, sign bit.
constexpr int kPrecisionBits = 32 - 8 - 2;

std::vector<std::int32_t> fixed_point(const Coeffs& c) {
  std::vector<std::int32_t> k(c.kk.size());
  for (std::size_t i = 0; i < k.size(); ++i) {
    const double v = c.kk[i];
    k[i] = v < 0 ? static_cast<std::int32_t>(-0.5 + v * (1 << kPrecisionBits))
                 : static_cast<std::int32_t>(0.5 + v * (1 << kPrecisionBits));
  }
  return k;
}

inline std::uint8_t clip8(std::int32_t v) {
  // Pillow looks up v >> 22 in a table that clamps to 0..255; an arithmetic shift floors.
  const std::int32_t s = v >> kPrecisionBits;
  return static_cast<std::uint8_t>(s < 0 ? 0 : (s > 255 ? 255 : s));
}

// Pillow's ROUND_UP: half away from zero, the 0.5 a float literal (exact, so no effect).
inline std::int32_t round_up(double f) {
  return static_cast<std::int32_t>(f >= 0.0 ? f + 0.5F : f - 0.5F);
}

// ---- 8-bit fixed-point passes ----

// Outputs xx_begin .. out_w-1 of one row.
template <int C>
void horizontal_u8_row(const std::uint8_t* src, std::uint8_t* dst, int xx_begin, int out_w, const Coeffs& c,
                       const std::vector<std::int32_t>& k) {
  for (int xx = xx_begin; xx < out_w; ++xx) {
    const int xmin = c.bounds[2 * static_cast<std::size_t>(xx)];
    const int n = c.bounds[2 * static_cast<std::size_t>(xx) + 1];
    const std::int32_t* kx = &k[static_cast<std::size_t>(xx) * c.ksize];
    const std::uint8_t* p = src + static_cast<std::size_t>(xmin) * C;
    std::int32_t s[C];
    for (int ch = 0; ch < C; ++ch) s[ch] = 1 << (kPrecisionBits - 1);
    for (int x = 0; x < n; ++x)
      for (int ch = 0; ch < C; ++ch) s[ch] += static_cast<std::int32_t>(p[x * C + ch]) * kx[x];
    for (int ch = 0; ch < C; ++ch) dst[xx * C + ch] = clip8(s[ch]);
  }
}

#if defined(__SSE2__)
// 8-bit gray, the layout of nearly every radiograph, with SSE2's 16-bit multiply-add: four outputs
// at a time, eight taps per instruction. A 22-bit coefficient does not fit 16 bits, so each is
// split as k = kh * 2^11 + kl (0 <= kl < 2^11, both halves in int16), and
// sum(p * k) = 2^11 * sum(p * kh) + sum(p * kl) holds exactly in int32: the integers Pillow adds,
// in another order, which integer addition does not see. Outputs whose window of taps would
// read past the row's end take the scalar loop.
void horizontal_gray_sse2(const std::uint8_t* in, int in_w, int row0, int rows, std::uint8_t* out, int out_w,
                          const Coeffs& c, const std::vector<std::int32_t>& k) {
  const int blocks = (c.ksize + 7) / 8, taps = 8 * blocks;
  std::vector<std::int16_t> kh(static_cast<std::size_t>(out_w) * taps, 0), kl(kh.size(), 0);
  for (int xx = 0; xx < out_w; ++xx)
    for (int t = 0; t < c.ksize; ++t) {
      const std::int32_t v = k[static_cast<std::size_t>(xx) * c.ksize + t];
      kh[static_cast<std::size_t>(xx) * taps + t] = static_cast<std::int16_t>(v >> 11);  // floor
      kl[static_cast<std::size_t>(xx) * taps + t] = static_cast<std::int16_t>(v & 2047);
    }
  // xmin never decreases with xx, so the outputs with a whole window inside the row come first.
  int vec_end = 0;
  while (vec_end + 4 <= out_w && c.bounds[2 * static_cast<std::size_t>(vec_end + 3)] + taps <= in_w) vec_end += 4;
  const __m128i zero = _mm_setzero_si128(), half = _mm_set1_epi32(1 << (kPrecisionBits - 1));
  for (int r = 0; r < rows; ++r) {
    const std::uint8_t* src = in + static_cast<std::size_t>(row0 + r) * in_w;
    std::uint8_t* dst = out + static_cast<std::size_t>(r) * out_w;
    for (int xx = 0; xx < vec_end; xx += 4) {
      __m128i acc[4];
      for (int j = 0; j < 4; ++j) {
        const std::uint8_t* p = src + c.bounds[2 * static_cast<std::size_t>(xx + j)];
        const std::int16_t* h = &kh[static_cast<std::size_t>(xx + j) * taps];
        const std::int16_t* l = &kl[static_cast<std::size_t>(xx + j) * taps];
        __m128i sh = zero, sl = zero;
        for (int b = 0; b < blocks; ++b) {
          const __m128i px = _mm_unpacklo_epi8(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p + 8 * b)), zero);
          sh = _mm_add_epi32(sh, _mm_madd_epi16(px, _mm_loadu_si128(reinterpret_cast<const __m128i*>(h + 8 * b))));
          sl = _mm_add_epi32(sl, _mm_madd_epi16(px, _mm_loadu_si128(reinterpret_cast<const __m128i*>(l + 8 * b))));
        }
        acc[j] = _mm_add_epi32(_mm_slli_epi32(sh, 11), sl);
      }
      // Lane sums of acc[0..3] into lanes 0..3.
      const __m128i s01 = _mm_add_epi32(_mm_unpacklo_epi32(acc[0], acc[1]), _mm_unpackhi_epi32(acc[0], acc[1]));
      const __m128i s23 = _mm_add_epi32(_mm_unpacklo_epi32(acc[2], acc[3]), _mm_unpackhi_epi32(acc[2], acc[3]));
      __m128i sum = _mm_add_epi32(_mm_unpacklo_epi64(s01, s23), _mm_unpackhi_epi64(s01, s23));
      // clip8: floor(sum / 2^22) clamped to 0..255, by saturating packs.
      sum = _mm_srai_epi32(_mm_add_epi32(sum, half), kPrecisionBits);
      const __m128i bytes = _mm_packus_epi16(_mm_packs_epi32(sum, sum), zero);
      const std::int32_t four = _mm_cvtsi128_si32(bytes);
      std::memcpy(dst + xx, &four, 4);
    }
    horizontal_u8_row<1>(src, dst, vec_end, out_w, c, k);
  }
}
#endif

template <int C>
void horizontal_u8(const std::uint8_t* in, int in_w, int row0, int rows, std::uint8_t* out, int out_w,
                   const Coeffs& c, const std::vector<std::int32_t>& k) {
#if defined(__SSE2__)
  if constexpr (C == 1) return horizontal_gray_sse2(in, in_w, row0, rows, out, out_w, c, k);
#endif
  const std::size_t in_stride = static_cast<std::size_t>(in_w) * C;
  const std::size_t out_stride = static_cast<std::size_t>(out_w) * C;
  for (int r = 0; r < rows; ++r)
    horizontal_u8_row<C>(in + static_cast<std::size_t>(row0 + r) * in_stride, out + static_cast<std::size_t>(r) * out_stride,
                         0, out_w, c, k);
}

// Whole rows at a time: integer sums do not depend on the order, and a row of accumulators lets
// the compiler vectorise where Pillow walks one column at a time.
void vertical_u8(const std::uint8_t* in, std::size_t row_len, int row_shift, std::uint8_t* out, int out_h,
                 const Coeffs& c, const std::vector<std::int32_t>& k) {
  std::vector<std::int32_t> acc(row_len);
  for (int yy = 0; yy < out_h; ++yy) {
    const int ymin = c.bounds[2 * static_cast<std::size_t>(yy)] - row_shift;
    const int n = c.bounds[2 * static_cast<std::size_t>(yy) + 1];
    const std::int32_t* ky = &k[static_cast<std::size_t>(yy) * c.ksize];
    std::fill(acc.begin(), acc.end(), 1 << (kPrecisionBits - 1));
    for (int y = 0; y < n; ++y) {
      const std::uint8_t* src = in + static_cast<std::size_t>(ymin + y) * row_len;
      const std::int32_t w = ky[y];
      for (std::size_t i = 0; i < row_len; ++i) acc[i] += static_cast<std::int32_t>(src[i]) * w;
    }
    std::uint8_t* dst = out + static_cast<std::size_t>(yy) * row_len;
    for (std::size_t i = 0; i < row_len; ++i) dst[i] = clip8(acc[i]);
  }
}

// ---- double-precision passes (Pillow's "I" and "F" modes) ----
// Each output sums its taps in Pillow's order starting from 0.0, so the doubles are identical.

template <int C, class In, class Out, class Store>
void horizontal_f64(const In* in, int in_w, int row0, int rows, Out* out, int out_w, const Coeffs& c,
                    Store store) {
  const std::size_t in_stride = static_cast<std::size_t>(in_w) * C;
  const std::size_t out_stride = static_cast<std::size_t>(out_w) * C;
  for (int r = 0; r < rows; ++r) {
    const In* src = in + static_cast<std::size_t>(row0 + r) * in_stride;
    Out* dst = out + static_cast<std::size_t>(r) * out_stride;
    for (int xx = 0; xx < out_w; ++xx) {
      const int xmin = c.bounds[2 * static_cast<std::size_t>(xx)];
      const int n = c.bounds[2 * static_cast<std::size_t>(xx) + 1];
      const double* kx = &c.kk[static_cast<std::size_t>(xx) * c.ksize];
      const In* p = src + static_cast<std::size_t>(xmin) * C;
      double s[C];
      for (int ch = 0; ch < C; ++ch) s[ch] = 0.0;
      for (int x = 0; x < n; ++x)
        for (int ch = 0; ch < C; ++ch) s[ch] += static_cast<double>(p[x * C + ch]) * kx[x];
      for (int ch = 0; ch < C; ++ch) dst[xx * C + ch] = store(s[ch]);
    }
  }
}

template <class In, class Out, class Store>
void vertical_f64(const In* in, std::size_t row_len, int row_shift, Out* out, int out_h, const Coeffs& c,
                  Store store) {
  std::vector<double> acc(row_len);
  for (int yy = 0; yy < out_h; ++yy) {
    const int ymin = c.bounds[2 * static_cast<std::size_t>(yy)] - row_shift;
    const int n = c.bounds[2 * static_cast<std::size_t>(yy) + 1];
    const double* ky = &c.kk[static_cast<std::size_t>(yy) * c.ksize];
    std::fill(acc.begin(), acc.end(), 0.0);
    for (int y = 0; y < n; ++y) {
      const In* src = in + static_cast<std::size_t>(ymin + y) * row_len;
      const double w = ky[y];
      for (std::size_t i = 0; i < row_len; ++i) acc[i] += static_cast<double>(src[i]) * w;
    }
    Out* dst = out + static_cast<std::size_t>(yy) * row_len;
    for (std::size_t i = 0; i < row_len; ++i) dst[i] = store(acc[i]);
  }
}

// ---- the two-pass driver, as ImagingResampleInner ----

struct Plan {
  bool need_h = false;
  bool need_v = false;
  Coeffs horiz, vert;
  int y_first = 0, y_last = 0;  // source rows the vertical pass reads
};

Plan make_plan(int in_w, int in_h, int out_w, int out_h, Filter filter) {
  const FilterDef fd = filter_def(filter);
  Plan p;
  p.need_h = out_w != in_w;
  p.need_v = out_h != in_h;
  p.vert = precompute_coeffs(in_h, out_h, fd);
  p.y_first = p.vert.bounds[0];
  p.y_last = p.vert.bounds[2 * static_cast<std::size_t>(out_h) - 2] +
             p.vert.bounds[2 * static_cast<std::size_t>(out_h) - 1];
  if (p.need_h) p.horiz = precompute_coeffs(in_w, out_w, fd);
  return p;
}

template <int C>
void resize_u8(const std::uint8_t* in, int in_w, int in_h, std::uint8_t* out, int out_w, int out_h,
               Filter filter) {
  const Plan p = make_plan(in_w, in_h, out_w, out_h, filter);
  std::vector<std::uint8_t> mid;
  const std::uint8_t* src = in;
  int shift = 0;
  if (p.need_h) {
    const int rows = p.need_v ? p.y_last - p.y_first : in_h;
    const int row0 = p.need_v ? p.y_first : 0;
    std::uint8_t* dst = out;
    if (p.need_v) {
      mid.resize(static_cast<std::size_t>(rows) * out_w * C);
      dst = mid.data();
    }
    horizontal_u8<C>(in, in_w, row0, rows, dst, out_w, p.horiz, fixed_point(p.horiz));
    src = mid.data();
    shift = row0;
  }
  if (p.need_v) {
    vertical_u8(src, static_cast<std::size_t>(out_w) * C, shift, out, out_h, p.vert, fixed_point(p.vert));
  }
}

template <int C>
void resize_u16(const std::uint16_t* in, int in_w, int in_h, std::uint16_t* out, int out_w, int out_h,
                Filter filter) {
  const Plan p = make_plan(in_w, in_h, out_w, out_h, filter);
  auto to_i32 = [](double s) { return round_up(s); };
  auto to_u16 = [](double s) {
    const std::int32_t v = round_up(s);
    return static_cast<std::uint16_t>(v < 0 ? 0 : (v > 65535 ? 65535 : v));
  };
  const std::size_t row_len = static_cast<std::size_t>(out_w) * C;
  if (p.need_h && p.need_v) {
    const int rows = p.y_last - p.y_first;
    std::vector<std::int32_t> mid(static_cast<std::size_t>(rows) * row_len);
    horizontal_f64<C>(in, in_w, p.y_first, rows, mid.data(), out_w, p.horiz, to_i32);
    vertical_f64(mid.data(), row_len, p.y_first, out, out_h, p.vert, to_u16);
  } else if (p.need_h) {
    horizontal_f64<C>(in, in_w, 0, in_h, out, out_w, p.horiz, to_u16);
  } else {
    vertical_f64(in, row_len, 0, out, out_h, p.vert, to_u16);
  }
}

// Pillow's NEAREST: ImagingScaleAffine, source positions accumulated in double from pixel centres.
template <class T>
void resize_nearest(const T* in, int in_w, int in_h, int channels, T* out, int out_w, int out_h) {
  const double a0 = static_cast<double>(static_cast<float>(in_w) - 0.0f) / out_w;
  const double a4 = static_cast<double>(static_cast<float>(in_h) - 0.0f) / out_h;
  auto coord = [](double v) { return v < 0.0 ? -1 : static_cast<int>(v); };
  std::vector<int> xintab(static_cast<std::size_t>(out_w), 0);
  int xmin = out_w, xmax = 0;
  double xo = 0.0 + a0 * 0.5;
  for (int x = 0; x < out_w; ++x) {
    const int xin = coord(xo);
    if (xin >= 0 && xin < in_w) {
      xmax = x + 1;
      if (x < xmin) xmin = x;
      xintab[static_cast<std::size_t>(x)] = xin;
    }
    xo += a0;
  }
  const std::size_t C = static_cast<std::size_t>(channels);
  double yo = 0.0 + a4 * 0.5;
  for (int y = 0; y < out_h; ++y) {
    const int yi = coord(yo);
    T* dst = out + static_cast<std::size_t>(y) * out_w * C;
    std::fill(dst, dst + static_cast<std::size_t>(out_w) * C, T{0});
    if (yi >= 0 && yi < in_h) {
      const T* src = in + static_cast<std::size_t>(yi) * in_w * C;
      for (int x = xmin; x < xmax; ++x)
        for (std::size_t ch = 0; ch < C; ++ch) dst[x * C + ch] = src[xintab[static_cast<std::size_t>(x)] * C + ch];
    }
    yo += a4;
  }
}

void check_sizes(int in_w, int in_h, int out_w, int out_h) {
  if (in_w <= 0 || in_h <= 0)
    throw Error("resize: empty input image (" + std::to_string(in_w) + "x" + std::to_string(in_h) + ")");
  if (out_w <= 0 || out_h <= 0)
    throw Error("resize: output size must be positive, got " + std::to_string(out_w) + "x" +
                std::to_string(out_h));
  // Pillow's own overflow guard on the coefficient buffer, and ours on int indexing.
  constexpr int kMax = 1 << 24;
  if (out_w > kMax || out_h > kMax || in_w > kMax || in_h > kMax)
    throw Error("resize: image side over 16777216 pixels");
}

}  // namespace

Filter filter_from_pillow(int code, const std::string& where) {
  if (code < 0 || code > 5)
    throw Error(at(where, "unknown Pillow resample filter " + std::to_string(code) +
                              " (0 nearest, 1 lanczos, 2 bilinear, 3 bicubic, 4 box, 5 hamming)"));
  return static_cast<Filter>(code);
}

Filter filter_from_name(const std::string& name, const std::string& where) {
  if (name == "nearest") return Filter::nearest;
  if (name == "bilinear" || name == "linear") return Filter::bilinear;
  if (name == "bicubic" || name == "cubic") return Filter::bicubic;
  if (name == "lanczos") return Filter::lanczos;
  if (name == "box" || name == "area") return Filter::box;
  if (name == "hamming") return Filter::hamming;
  throw Error(at(where, "unknown resize filter '" + name +
                            "' (nearest, bilinear, bicubic, lanczos, box or area, hamming)"));
}

std::string filter_name(Filter filter) {
  switch (filter) {
    case Filter::nearest: return "nearest";
    case Filter::lanczos: return "lanczos";
    case Filter::bilinear: return "bilinear";
    case Filter::bicubic: return "bicubic";
    case Filter::box: return "box";
    case Filter::hamming: return "hamming";
  }
  return "unknown";
}

Image resize(const Image& in, int width, int height, Filter filter) {
  check_sizes(in.width, in.height, width, height);
  if (in.channels != 1 && in.channels != 3)
    throw Error("resize: " + std::to_string(in.channels) + " channels (expected 1 or 3)");
  if (in.bits != 8 && in.bits != 16)
    throw Error("resize: " + std::to_string(in.bits) + "-bit samples (expected 8 or 16)");
  if (in.data.size() != in.samples() * (in.bits / 8))
    throw Error("resize: image buffer holds " + std::to_string(in.data.size()) + " bytes, expected " +
                std::to_string(in.samples() * (in.bits / 8)));
  if (width == in.width && height == in.height) return in;  // Pillow returns a copy
  Image out = Image::make(width, height, in.channels, in.bits);
  if (filter == Filter::nearest) {
    if (in.bits == 8)
      resize_nearest(in.u8(), in.width, in.height, in.channels, out.u8(), width, height);
    else
      resize_nearest(in.u16(), in.width, in.height, in.channels, out.u16(), width, height);
    return out;
  }
  if (in.bits == 8) {
    if (in.channels == 1)
      resize_u8<1>(in.u8(), in.width, in.height, out.u8(), width, height, filter);
    else
      resize_u8<3>(in.u8(), in.width, in.height, out.u8(), width, height, filter);
  } else {
    if (in.channels == 1)
      resize_u16<1>(in.u16(), in.width, in.height, out.u16(), width, height, filter);
    else
      resize_u16<3>(in.u16(), in.width, in.height, out.u16(), width, height, filter);
  }
  return out;
}

std::vector<float> resize_plane_f32(const std::vector<float>& in, int width, int height, int out_width,
                                    int out_height, Filter filter) {
  check_sizes(width, height, out_width, out_height);
  if (in.size() != static_cast<std::size_t>(width) * height)
    throw Error("resize: float plane holds " + std::to_string(in.size()) + " values, expected " +
                std::to_string(static_cast<std::size_t>(width) * height));
  if (width == out_width && height == out_height) return in;
  std::vector<float> out(static_cast<std::size_t>(out_width) * out_height);
  if (filter == Filter::nearest) {
    resize_nearest(in.data(), width, height, 1, out.data(), out_width, out_height);
    return out;
  }
  const Plan p = make_plan(width, height, out_width, out_height, filter);
  auto to_f32 = [](double s) { return static_cast<float>(s); };
  const std::size_t row_len = static_cast<std::size_t>(out_width);
  if (p.need_h && p.need_v) {
    const int rows = p.y_last - p.y_first;
    std::vector<float> mid(static_cast<std::size_t>(rows) * row_len);
    horizontal_f64<1>(in.data(), width, p.y_first, rows, mid.data(), out_width, p.horiz, to_f32);
    vertical_f64(mid.data(), row_len, p.y_first, out.data(), out_height, p.vert, to_f32);
  } else if (p.need_h) {
    horizontal_f64<1>(in.data(), width, 0, height, out.data(), out_width, p.horiz, to_f32);
  } else {
    vertical_f64(in.data(), row_len, 0, out.data(), out_height, p.vert, to_f32);
  }
  return out;
}

Size shortest_edge_size(int width, int height, int shortest_edge) {
  if (width <= 0 || height <= 0) throw Error("resize: empty input image");
  if (shortest_edge <= 0) throw Error("resize: shortest edge must be positive, got " + std::to_string(shortest_edge));
  // HF: short, long = (width, height) if width <= height else (height, width);
  //     new_long = int(size * long / short)  -- Python true division, then truncation.
  const bool width_short = width <= height;
  const int short_side = width_short ? width : height;
  const int long_side = width_short ? height : width;
  const double ratio = static_cast<double>(shortest_edge) * long_side / short_side;
  if (ratio > static_cast<double>(std::numeric_limits<int>::max()))
    throw Error("resize: output size overflows");
  const int new_long = static_cast<int>(ratio);
  return width_short ? Size{shortest_edge, new_long} : Size{new_long, shortest_edge};
}

Image resize_shortest_edge(const Image& in, int shortest_edge, Filter filter) {
  const Size s = shortest_edge_size(in.width, in.height, shortest_edge);
  return resize(in, s.width, s.height, filter);
}

}  // namespace cx::image
