#include "cx/io/png.hpp"

#include <png.h>
#include <zlib.h>
#if defined(CX_WITH_LIBDEFLATE)
#include <libdeflate.h>
#endif

#include <algorithm>
#include <csetjmp>
#include <memory>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "cx/cli/error.hpp"
#include "cx/cli/output.hpp"
#include "cx/image/limits.hpp"
#include "cx/io/file_bytes.hpp"
#include "cx/io/png_rows.hpp"

// libpng reports errors by longjmp. The functions that call setjmp below hold only plain C data in
// their frames (no object with a destructor is live across setjmp), and C++ exceptions never cross
// libpng's frames: callbacks record the problem and call png_error instead.

namespace cx::io {

namespace {

// Deflate turns one compressed byte into at most 1032 (a 258-byte match per 2 bits); the image
// data present therefore bounds the image a file can hold, whatever its header claims.
constexpr std::uint64_t kMaxInflateRatio = 1032;
// Ancillary chunks (text, ICC profiles) that libpng keeps in memory, compressed or not.
constexpr png_alloc_size_t kMaxAncillaryChunkBytes = 16u << 20;

bool host_is_little_endian() {
  const std::uint16_t one = 1;
  std::uint8_t first;
  std::memcpy(&first, &one, 1);
  return first == 1;
}

struct ErrorState {
  char message[256];
  bool truncated;
};

struct MemoryReader {
  const unsigned char* data;
  std::size_t size;
  std::size_t pos;
};

void on_error(png_structp png, png_const_charp msg) {
  auto* e = static_cast<ErrorState*>(png_get_error_ptr(png));
  if (e->message[0] == '\0') std::snprintf(e->message, sizeof e->message, "%s", msg ? msg : "unknown error");
  png_longjmp(png, 1);
}

void on_warning(png_structp, png_const_charp) {}  // benign oddities (e.g. a bad ancillary CRC) are skipped

void read_from_memory(png_structp png, png_bytep out, png_size_t n) {
  auto* r = static_cast<MemoryReader*>(png_get_io_ptr(png));
  if (r->size - r->pos < n) {
    auto* e = static_cast<ErrorState*>(png_get_error_ptr(png));
    e->truncated = true;
    std::snprintf(e->message, sizeof e->message, "file ends after %zu bytes", r->size);
    png_longjmp(png, 1);
  }
  std::memcpy(out, r->data + r->pos, n);
  r->pos += n;
}

struct Header {
  png_uint_32 width, height;
  int channels, bits, interlaced;
};

// Reads the header and sets the transforms to 8/16-bit gray or RGB without alpha.
bool read_header(png_structp png, png_infop info, Header* h) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_info(png, info);
  const int color = png_get_color_type(png, info);
  const int depth = png_get_bit_depth(png, info);
  if (color == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);
  if (color == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
  // palette_to_rgb also turns a palette's tRNS into an alpha channel: strip that too.
  if ((color & PNG_COLOR_MASK_ALPHA) || (color == PNG_COLOR_TYPE_PALETTE && png_get_valid(png, info, PNG_INFO_tRNS)))
    png_set_strip_alpha(png);
  if (depth == 16 && host_is_little_endian()) png_set_swap(png);
  h->interlaced = png_get_interlace_type(png, info) != PNG_INTERLACE_NONE;
  png_set_interlace_handling(png);
  png_read_update_info(png, info);
  h->width = png_get_image_width(png, info);
  h->height = png_get_image_height(png, info);
  h->channels = png_get_channels(png, info);
  h->bits = png_get_bit_depth(png, info);
  return true;
}

bool read_rows(png_structp png, png_infop info, png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_read_image(png, rows);
  png_read_end(png, info);  // through IEND: a file cut after the pixels is still truncated
  return true;
}

class ReadStruct {
 public:
  explicit ReadStruct(ErrorState* e) {
    png_ = png_create_read_struct(PNG_LIBPNG_VER_STRING, e, on_error, on_warning);
    if (png_) info_ = png_create_info_struct(png_);
  }
  ~ReadStruct() { png_destroy_read_struct(&png_, info_ ? &info_ : nullptr, nullptr); }
  ReadStruct(const ReadStruct&) = delete;
  ReadStruct& operator=(const ReadStruct&) = delete;
  png_structp png() const { return png_; }
  png_infop info() const { return info_; }

 private:
  png_structp png_ = nullptr;
  png_infop info_ = nullptr;
};

[[noreturn]] void fail(const std::string& where, const ErrorState& e) {
  if (e.truncated) throw TruncatedError(at(where, std::string("truncated PNG: ") + e.message));
  throw Error(at(where, std::string("corrupt PNG: ") + e.message));
}

// --- encoding ---

struct MemoryWriter {
  std::string* out;
  bool failed;
};

void write_to_memory(png_structp png, png_bytep data, png_size_t n) {
  auto* w = static_cast<MemoryWriter*>(png_get_io_ptr(png));
  try {
    w->out->append(reinterpret_cast<const char*>(data), n);
  } catch (...) {  // no exception may unwind through libpng
    w->failed = true;
    png_error(png, "out of memory");
  }
}

void flush_memory(png_structp) {}

bool write_image(png_structp png, png_infop info, const Image* im, int level, png_bytepp rows) {
  if (setjmp(png_jmpbuf(png))) return false;
  png_set_IHDR(png, info, static_cast<png_uint_32>(im->width), static_cast<png_uint_32>(im->height), im->bits,
               im->channels == 1 ? PNG_COLOR_TYPE_GRAY : PNG_COLOR_TYPE_RGB, PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_set_compression_level(png, level);  // levels 1-3: encode_png_fast
  png_write_info(png, info);
  if (im->bits == 16 && host_is_little_endian()) png_set_swap(png);
  png_write_image(png, rows);
  png_write_end(png, info);
  return true;
}

class WriteStruct {
 public:
  explicit WriteStruct(ErrorState* e) {
    png_ = png_create_write_struct(PNG_LIBPNG_VER_STRING, e, on_error, on_warning);
    if (png_) info_ = png_create_info_struct(png_);
  }
  ~WriteStruct() { png_destroy_write_struct(&png_, info_ ? &info_ : nullptr); }
  WriteStruct(const WriteStruct&) = delete;
  WriteStruct& operator=(const WriteStruct&) = delete;
  png_structp png() const { return png_; }
  png_infop info() const { return info_; }

 private:
  png_structp png_ = nullptr;
  png_infop info_ = nullptr;
};

// --- our own reader and writer for the common layouts ---
// Radiograph PNGs are nearly all non-interlaced 8- or 16-bit gray (some 8-bit RGB), and most of
// their rows are Paeth-filtered. For those, libpng spent more time in its row machinery and its
// Paeth loop than zlib spent inflating. The reader below checks the chunk sequence and every CRC,
// inflates the IDAT stream straight into one buffer and unfilters it (cx/io/png_rows.hpp). It
// accepts only a file it can read exactly as libpng would: anything else, and any irregularity at
// all (a bad CRC, a stream too short or too long, an unknown critical chunk, a cut), goes to
// libpng, whose messages and leniencies stay the reference.

std::uint32_t be32(const unsigned char* p) {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
}

void put_be32(std::string& out, std::uint32_t v) {
  const char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16), static_cast<char>(v >> 8), static_cast<char>(v)};
  out.append(b, 4);
}

bool chunk_crc_ok(const unsigned char* chunk, std::uint32_t length) {
  // The CRC covers the type and the data.
  return crc32(0L, chunk + 4, length + 4) == be32(chunk + 8 + length);
}

class Inflater {
 public:
  Inflater() { ok_ = inflateInit(&z_) == Z_OK; }
  ~Inflater() {
    if (ok_) inflateEnd(&z_);
  }
  Inflater(const Inflater&) = delete;
  Inflater& operator=(const Inflater&) = delete;
  bool ok() const { return ok_; }
  z_stream& z() { return z_; }

 private:
  z_stream z_{};
  bool ok_ = false;
};

class Deflater {
 public:
  Deflater(int level, int strategy) { ok_ = deflateInit2(&z_, level, Z_DEFLATED, 15, 8, strategy) == Z_OK; }
  ~Deflater() {
    if (ok_) deflateEnd(&z_);
  }
  Deflater(const Deflater&) = delete;
  Deflater& operator=(const Deflater&) = delete;
  bool ok() const { return ok_; }
  z_stream& z() { return z_; }

 private:
  z_stream z_{};
  bool ok_ = false;
};

struct Span {
  const unsigned char* data;
  std::size_t size;
};

// The zlib stream split over `parts` inflated into exactly `size` bytes: false unless it fills
// them, ends there (its Adler-32 checked) and nothing follows it.
bool inflate_exactly(const std::vector<Span>& parts, unsigned char* out, std::size_t size) {
#if defined(CX_WITH_LIBDEFLATE)
  // libdeflate inflates radiograph PNGs in half zlib's time, but wants the stream in one piece.
  std::vector<unsigned char> joined;
  Span all = parts.empty() ? Span{nullptr, 0} : parts.front();
  if (parts.size() > 1) {
    for (const Span& s : parts) joined.insert(joined.end(), s.data, s.data + s.size);
    all = {joined.data(), joined.size()};
  }
  std::unique_ptr<libdeflate_decompressor, void (*)(libdeflate_decompressor*)> d(libdeflate_alloc_decompressor(),
                                                                                   libdeflate_free_decompressor);
  if (!d || !all.data) return false;
  std::size_t in_used = 0, out_used = 0;
  return libdeflate_zlib_decompress_ex(d.get(), all.data, all.size, out, size, &in_used, &out_used) == LIBDEFLATE_SUCCESS &&
         in_used == all.size && out_used == size;
#else
  Inflater inf;
  if (!inf.ok()) return false;
  z_stream& z = inf.z();
  z.next_out = out;
  z.avail_out = 0;
  std::size_t out_left = size;
  bool stream_end = false;
  for (const Span& s : parts) {
    if (stream_end) return false;  // data after the end of the stream
    z.next_in = const_cast<unsigned char*>(s.data);
    z.avail_in = static_cast<uInt>(s.size);  // a chunk holds under 2^31 bytes
    while (z.avail_in > 0 && !stream_end) {
      if (z.avail_out == 0 && out_left > 0) {  // zlib counts in uInt
        const std::size_t step = std::min<std::size_t>(out_left, 1u << 30);
        z.avail_out = static_cast<uInt>(step);
        out_left -= step;
      }
      // Z_BUF_ERROR (no progress: the stream holds more than the rows) is a failure like any other.
      const int rc = inflate(&z, Z_NO_FLUSH);
      if (rc == Z_STREAM_END) stream_end = true;
      else if (rc != Z_OK) return false;
    }
    if (z.avail_in > 0) return false;
  }
  return stream_end && z.avail_out == 0 && out_left == 0;
#endif
}

bool decode_png_fast(const std::string& bytes, Image& im) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::size_t size = bytes.size();
  // IHDR first, 13 bytes.
  if (size < 8 + 25 || be32(p + 8) != 13 || std::memcmp(p + 12, "IHDR", 4) != 0 || !chunk_crc_ok(p + 8, 13)) return false;
  const std::uint32_t width = be32(p + 16), height = be32(p + 20);
  const int depth = p[24], color = p[25];
  // libpng's default limits are a million pixels a side.
  if (width == 0 || height == 0 || width > 1000000 || height > 1000000) return false;
  if ((depth != 8 && depth != 16) || (color != 0 && color != 2) || p[26] != 0 || p[27] != 0 || p[28] != 0) return false;
  const int channels = color == 2 ? 3 : 1;
  const int bpp = channels * depth / 8;
  const std::uint64_t row_bytes = std::uint64_t{width} * bpp;  // within the limit: check_png_layout
  const std::size_t stride = static_cast<std::size_t>(row_bytes) + 1;
  const std::size_t raw_size = stride * height;
  std::unique_ptr<unsigned char[]> raw(new unsigned char[raw_size]);

  std::vector<Span> idat_parts;
  enum { before, inside, after } idat = before;
  bool iend = false;
  std::size_t pos = 8 + 25;
  while (!iend) {
    if (size - pos < 12) return false;
    const std::uint32_t length = be32(p + pos);
    if (length > 0x7fffffffu || size - pos - 12 < length) return false;
    const unsigned char* type = p + pos + 4;
    for (int i = 0; i < 4; ++i)  // libpng refuses names that are not four ASCII letters
      if (!((type[i] >= 'A' && type[i] <= 'Z') || (type[i] >= 'a' && type[i] <= 'z'))) return false;
    if (!chunk_crc_ok(p + pos, length)) return false;
    if (std::memcmp(type, "IDAT", 4) == 0) {
      if (idat == after) return false;
      idat = inside;
      if (length > 0) idat_parts.push_back({p + pos + 8, length});
    } else if (std::memcmp(type, "IEND", 4) == 0) {
      iend = true;
    } else {
      if (!(type[0] & 0x20)) return false;  // a critical chunk: PLTE or one libpng refuses
      if (idat == inside) idat = after;
    }
    pos += 12 + length;
  }
  if (!inflate_exactly(idat_parts, raw.get(), raw_size)) return false;

  im = Image::make(static_cast<int>(width), static_cast<int>(height), channels, depth);
  const std::size_t n = static_cast<std::size_t>(row_bytes);
  const unsigned char* prior = nullptr;
  for (std::uint32_t y = 0; y < height; ++y) {
    const unsigned char* row = raw.get() + y * stride;
    unsigned char* out = im.data.data() + y * n;
    if (!png_rows::unfilter_row(row[0], row + 1, prior, out, n, bpp)) return false;
    prior = out;
  }
  if (depth == 16 && host_is_little_endian()) {
    std::uint8_t* d = im.data.data();
    for (std::size_t i = 0; i + 1 < im.data.size(); i += 2) std::swap(d[i], d[i + 1]);
  }
  return true;
}

// The fast levels (1-3): Paeth on every row, filtered in one vectorised pass, then one deflate
// call. Other levels go through libpng (adaptive filters).
// The deflate strategy follows the content. After Paeth, a radiograph is noise-like residuals with
// few runs (6-25% of bytes repeat the one before, on the Shenzhen, NIH, SIIM samples and
// phantoms): Huffman coding alone compresses them as well as run-length matching, within 1.5%,
// and 30% faster. Label maps and flat backgrounds are runs (99% repeats), which only run-length
// matching (Z_RLE) compresses well: 15 times smaller there. Decided from the data, so the output
// stays a function of the image.
std::string encode_png_fast(const Image& im, int level) {
  const int bpp = im.channels * im.bits / 8;
  const std::size_t n = static_cast<std::size_t>(im.width) * bpp, stride = n + 1;
  const std::size_t filtered_size = stride * im.height;
  std::unique_ptr<unsigned char[]> filtered(new unsigned char[filtered_size]);
  std::vector<unsigned char> swapped;
  const unsigned char* src = im.data.data();
  if (im.bits == 16 && host_is_little_endian()) {
    swapped.assign(im.data.begin(), im.data.end());
    for (std::size_t i = 0; i + 1 < swapped.size(); i += 2) std::swap(swapped[i], swapped[i + 1]);
    src = swapped.data();
  }
  for (int y = 0; y < im.height; ++y) {
    unsigned char* out = filtered.get() + y * stride;
    out[0] = png_rows::kPaeth;
    png_rows::paeth_filter_row(src + y * n, y ? src + (y - 1) * n : nullptr, out + 1, n, bpp);
  }

  std::size_t repeats = 0;
  for (std::size_t i = 1; i < filtered_size; ++i) repeats += filtered[i] == filtered[i - 1];
  Deflater def(level, repeats * 3 > filtered_size ? Z_RLE : Z_HUFFMAN_ONLY);
  if (!def.ok()) throw Error("encode_png: cannot initialise zlib");
  z_stream& z = def.z();
  std::string out;
  out.reserve(deflateBound(&z, static_cast<uLong>(filtered_size)) + 64);
  out.append("\x89PNG\r\n\x1a\n", 8);
  put_be32(out, 13);
  const std::size_t ihdr = out.size();
  out.append("IHDR", 4);
  put_be32(out, static_cast<std::uint32_t>(im.width));
  put_be32(out, static_cast<std::uint32_t>(im.height));
  out.push_back(static_cast<char>(im.bits));
  out.push_back(static_cast<char>(im.channels == 1 ? 0 : 2));
  out.append(3, '\0');  // deflate, adaptive filtering, no interlace
  put_be32(out, crc32(0L, reinterpret_cast<const Bytef*>(out.data() + ihdr), 17));

  const std::size_t idat_at = out.size();
  put_be32(out, 0);  // the length, known below
  out.append("IDAT", 4);
  const std::size_t data_at = out.size();
  out.resize(out.capacity());
  z.next_in = filtered.get();
  z.avail_in = static_cast<uInt>(filtered_size);
  z.next_out = reinterpret_cast<Bytef*>(&out[data_at]);
  z.avail_out = static_cast<uInt>(out.size() - data_at);
  const int rc = deflate(&z, Z_FINISH);  // deflateBound's room: one call finishes
  const std::size_t zsize = z.total_out;
  if (rc != Z_STREAM_END) throw Error("encode_png: zlib failed");
  out.resize(data_at + zsize);
  const std::uint32_t len = static_cast<std::uint32_t>(zsize);
  for (int i = 0; i < 4; ++i) out[idat_at + i] = static_cast<char>(len >> (24 - 8 * i));
  put_be32(out, crc32(0L, reinterpret_cast<const Bytef*>(out.data() + idat_at + 4), len + 4));
  put_be32(out, 0);
  out.append("IEND", 4);
  put_be32(out, crc32(0L, reinterpret_cast<const Bytef*>("IEND"), 4));
  return out;
}

// Before any decoder allocates: every chunk lies within the file (a cut file is truncated, as
// libpng would find later), the header's size is within the image limit, and the image data
// present can inflate to that size. A 68-byte file claiming 32000 x 32000, or a tEXt chunk
// claiming 2 GiB, is refused here for the price of reading its chunk headers.
void check_png_layout(const std::string& bytes, const std::string& where) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const std::size_t size = bytes.size();
  auto truncated = [&] {
    throw TruncatedError(at(where, "truncated PNG: file ends after " + std::to_string(size) + " bytes"));
  };
  std::uint64_t idat_bytes = 0;
  bool iend = false, ihdr = false;
  std::uint32_t width = 0, height = 0;
  int depth = 0, color = 0;
  std::size_t pos = 8;
  while (!iend) {
    if (size - pos < 8) truncated();
    const std::uint32_t length = be32(p + pos);
    if (length > 0x7fffffffu)
      throw Error(at(where, "corrupt PNG: chunk length " + std::to_string(length) + " at byte " + std::to_string(pos) +
                                " exceeds 2^31-1"));
    if (size - pos - 8 < std::uint64_t{length} + 4) truncated();
    const unsigned char* type = p + pos + 4;
    if (pos == 8) {
      if (std::memcmp(type, "IHDR", 4) != 0 || length != 13) return;  // libpng names what is wrong
      ihdr = true;
      width = be32(p + pos + 8);
      height = be32(p + pos + 12);
      depth = p[pos + 16];
      color = p[pos + 17];
    }
    if (std::memcmp(type, "IDAT", 4) == 0) idat_bytes += length;
    if (std::memcmp(type, "IEND", 4) == 0) iend = true;
    pos += 12 + static_cast<std::size_t>(length);
  }
  if (!ihdr || width == 0 || height == 0 || depth == 0) return;  // libpng refuses these by name
  const int in_channels = color == 2 ? 3 : color == 4 ? 2 : color == 6 ? 4 : 1;  // palette: 1 index
  const int out_channels = (color & 2) ? 3 : 1;
  image::check_image_size(width, height, out_channels, where, "PNG");
  // The fewest filtered bytes a non-interlaced WxH image has (interlaced ones have more).
  const std::uint64_t row_bits = std::uint64_t{width} * in_channels * static_cast<unsigned>(depth);
  const std::uint64_t raw = (row_bits / 8 + (row_bits % 8 != 0) + 1) * height;
  if (raw > idat_bytes * kMaxInflateRatio + 64)
    throw Error(at(where, "corrupt PNG: " + std::to_string(idat_bytes) + " bytes of image data cannot hold a " +
                              std::to_string(width) + "x" + std::to_string(height) + " image"));
}

}  // namespace

Image decode_png(const std::string& bytes, const std::string& where) {
  static const char kSignature[] = "\x89PNG\r\n\x1a\n";
  const std::size_t have = std::min<std::size_t>(bytes.size(), 8);
  if (std::memcmp(bytes.data(), kSignature, have) != 0) throw Error(at(where, "not a PNG file (bad signature)"));
  if (have < 8) throw TruncatedError(at(where, "truncated PNG: file ends after " + std::to_string(bytes.size()) + " bytes"));
  check_png_layout(bytes, where);
  {
    Image im;
    if (decode_png_fast(bytes, im)) return im;
  }
  ErrorState err{};
  ReadStruct rs(&err);
  if (!rs.png() || !rs.info()) throw Error(at(where, "cannot initialise libpng"));
  png_set_chunk_malloc_max(rs.png(), kMaxAncillaryChunkBytes);
  MemoryReader reader{reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), 0};
  png_set_read_fn(rs.png(), &reader, read_from_memory);

  Header h{};
  if (!read_header(rs.png(), rs.info(), &h)) fail(where, err);
  if ((h.channels != 1 && h.channels != 3) || (h.bits != 8 && h.bits != 16))
    throw Error(at(where, "unexpected PNG layout after conversion: " + std::to_string(h.channels) + " channels of " +
                              std::to_string(h.bits) + " bits"));
  const std::uint64_t row_bytes = static_cast<std::uint64_t>(h.width) * h.channels * (h.bits / 8);
  image::check_image_size(h.width, h.height, h.channels, where, "PNG");
  if (png_get_rowbytes(rs.png(), rs.info()) != row_bytes) throw Error(at(where, "unexpected PNG row size"));

  Image im = Image::make(static_cast<int>(h.width), static_cast<int>(h.height), h.channels, h.bits);
  std::vector<png_bytep> rows(h.height);
  for (png_uint_32 y = 0; y < h.height; ++y) rows[y] = im.data.data() + y * row_bytes;
  if (!read_rows(rs.png(), rs.info(), rows.data())) fail(where, err);
  return im;
}

std::string encode_png(const Image& image, int compression_level) {
  if (image.channels != 1 && image.channels != 3)
    throw Error("encode_png: " + std::to_string(image.channels) + " channels (1 or 3 expected)");
  if (image.bits != 8 && image.bits != 16)
    throw Error("encode_png: " + std::to_string(image.bits) + "-bit samples (8 or 16 expected)");
  if (image.width <= 0 || image.height <= 0)
    throw Error("encode_png: empty image " + std::to_string(image.width) + "x" + std::to_string(image.height));
  const std::size_t row_bytes = static_cast<std::size_t>(image.width) * image.channels * (image.bits / 8);
  if (image.data.size() != row_bytes * image.height)
    throw Error("encode_png: image holds " + std::to_string(image.data.size()) + " bytes, " +
                std::to_string(image.width) + "x" + std::to_string(image.height) + " needs " +
                std::to_string(row_bytes * image.height));
  if (compression_level < 0 || compression_level > 9)
    throw Error("encode_png: compression level " + std::to_string(compression_level) + " (0-9 expected)");
  // The fast writer deflates in one call, counting in uInt: 1 GiB at most (libpng streams).
  if (compression_level >= 1 && compression_level <= 3 && row_bytes * image.height < (std::size_t{1} << 30))
    return encode_png_fast(image, compression_level);

  ErrorState err{};
  WriteStruct ws(&err);
  if (!ws.png() || !ws.info()) throw Error("encode_png: cannot initialise libpng");
  std::string out;
  MemoryWriter writer{&out, false};
  png_set_write_fn(ws.png(), &writer, write_to_memory, flush_memory);
  std::vector<png_bytep> rows(image.height);
  for (int y = 0; y < image.height; ++y) rows[y] = const_cast<png_bytep>(image.data.data() + y * row_bytes);
  if (!write_image(ws.png(), ws.info(), &image, compression_level, rows.data()))
    throw Error(std::string("encode_png: ") + err.message);
  return out;
}

Image read_png_file(const std::string& path) { return decode_png(read_file_bytes(path), path); }

void write_png_file(const std::string& path, const Image& image) {
  cli::write_file_atomic(path, encode_png(image));
}

}  // namespace cx::io
