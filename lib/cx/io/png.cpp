#include "cx/io/png.hpp"

#include <png.h>
#include <zlib.h>

#include <algorithm>
#include <csetjmp>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "cx/cli/error.hpp"
#include "cx/cli/output.hpp"
#include "cx/io/file_bytes.hpp"

// libpng reports errors by longjmp. The functions that call setjmp below hold only plain C data in
// their frames (no object with a destructor is live across setjmp), and C++ exceptions never cross
// libpng's frames: callbacks record the problem and call png_error instead.

namespace cx::io {

namespace {

// Refuse absurd dimensions before allocating: 1 GiB of decoded samples is far beyond any radiograph.
constexpr std::uint64_t kMaxDecodedBytes = 1ull << 30;

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
  png_set_compression_level(png, level);
  if (level >= 1 && level <= 3) {
    // Fast levels: one Paeth filter and run-length matching encode radiographs about twice as
    // fast as adaptive filtering with deflate's default strategy, and smaller than level 6.
    png_set_filter(png, 0, PNG_FILTER_PAETH);
    png_set_compression_strategy(png, Z_RLE);
  }
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

}  // namespace

Image decode_png(const std::string& bytes, const std::string& where) {
  static const char kSignature[] = "\x89PNG\r\n\x1a\n";
  const std::size_t have = std::min<std::size_t>(bytes.size(), 8);
  if (std::memcmp(bytes.data(), kSignature, have) != 0) throw Error(at(where, "not a PNG file (bad signature)"));
  if (have < 8) throw TruncatedError(at(where, "truncated PNG: file ends after " + std::to_string(bytes.size()) + " bytes"));
  ErrorState err{};
  ReadStruct rs(&err);
  if (!rs.png() || !rs.info()) throw Error(at(where, "cannot initialise libpng"));
  MemoryReader reader{reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size(), 0};
  png_set_read_fn(rs.png(), &reader, read_from_memory);

  Header h{};
  if (!read_header(rs.png(), rs.info(), &h)) fail(where, err);
  if ((h.channels != 1 && h.channels != 3) || (h.bits != 8 && h.bits != 16))
    throw Error(at(where, "unexpected PNG layout after conversion: " + std::to_string(h.channels) + " channels of " +
                              std::to_string(h.bits) + " bits"));
  const std::uint64_t row_bytes = static_cast<std::uint64_t>(h.width) * h.channels * (h.bits / 8);
  if (row_bytes * h.height > kMaxDecodedBytes)
    throw Error(at(where, "PNG of " + std::to_string(h.width) + "x" + std::to_string(h.height) +
                              " is too large to decode (over 1 GiB)"));
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
