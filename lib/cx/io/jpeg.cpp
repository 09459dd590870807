#include "cx/io/jpeg.hpp"

// jpeglib.h needs FILE and size_t declared first.
#include <cstddef>
#include <cstdio>
#include <cstdlib>

#include <jerror.h>
#include <jpeglib.h>

#include <csetjmp>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "cx/cli/error.hpp"
#include "cx/image/limits.hpp"
#include "cx/cli/log.hpp"
#include "cx/io/file_bytes.hpp"

// libjpeg's default error handler calls exit(); ours longjmps back instead. The functions that call
// setjmp hold only plain C data in their frames, and no C++ exception crosses libjpeg's frames.

namespace cx::io {

namespace {

struct ErrorManager {
  jpeg_error_mgr pub;  // first: libjpeg sees a jpeg_error_mgr*
  std::jmp_buf jump;
  char message[JMSG_LENGTH_MAX];
  char first_warning[JMSG_LENGTH_MAX];
  int warnings;
  bool truncated;
};

void on_error_exit(j_common_ptr cinfo) {
  auto* e = reinterpret_cast<ErrorManager*>(cinfo->err);
  (*cinfo->err->format_message)(cinfo, e->message);
  std::longjmp(e->jump, 1);
}

// Warnings (level -1) are kept: a premature end of file is the one libjpeg only warns about.
void on_emit_message(j_common_ptr cinfo, int level) {
  if (level >= 0) return;  // trace messages
  auto* e = reinterpret_cast<ErrorManager*>(cinfo->err);
  if (cinfo->err->msg_code == JWRN_JPEG_EOF) e->truncated = true;
  if (e->warnings++ == 0) (*cinfo->err->format_message)(cinfo, e->first_warning);
}

void init_errors(ErrorManager* e) {
  jpeg_std_error(&e->pub);
  e->pub.error_exit = on_error_exit;
  e->pub.emit_message = on_emit_message;
  e->message[0] = e->first_warning[0] = '\0';
  e->warnings = 0;
  e->truncated = false;
}

struct Decoder {
  jpeg_decompress_struct cinfo;
  ErrorManager err;
  bool created;
};

enum class Step { ok, failed, cmyk, precision, too_large };

// `max_samples`: the image size limit (cx/image/limits.hpp), read before any setjmp.
Step start(Decoder* d, const unsigned char* data, unsigned long size, std::uint64_t max_samples) {
  if (setjmp(d->err.jump)) return Step::failed;
  jpeg_create_decompress(&d->cinfo);
  d->created = true;
  jpeg_mem_src(&d->cinfo, data, size);
  jpeg_read_header(&d->cinfo, TRUE);
  if (d->cinfo.jpeg_color_space == JCS_CMYK || d->cinfo.jpeg_color_space == JCS_YCCK) return Step::cmyk;
  if (d->cinfo.data_precision != 8) return Step::precision;
  d->cinfo.out_color_space = d->cinfo.num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
  const std::uint64_t samples = static_cast<std::uint64_t>(d->cinfo.image_width) * d->cinfo.image_height *
                                (d->cinfo.num_components == 1 ? 1 : 3);
  if (samples > max_samples) return Step::too_large;
  jpeg_start_decompress(&d->cinfo);
  return Step::ok;
}

bool read_all(Decoder* d, unsigned char* out, std::size_t row_bytes) {
  if (setjmp(d->err.jump)) return false;
  while (d->cinfo.output_scanline < d->cinfo.output_height) {
    JSAMPROW row = out + static_cast<std::size_t>(d->cinfo.output_scanline) * row_bytes;
    jpeg_read_scanlines(&d->cinfo, &row, 1);
  }
  jpeg_finish_decompress(&d->cinfo);
  return true;
}

class DecoderGuard {
 public:
  explicit DecoderGuard(Decoder* d) : d_(d) {}
  ~DecoderGuard() {
    if (d_->created) jpeg_destroy_decompress(&d_->cinfo);
  }
  DecoderGuard(const DecoderGuard&) = delete;
  DecoderGuard& operator=(const DecoderGuard&) = delete;

 private:
  Decoder* d_;
};

[[noreturn]] void fail(const std::string& where, const ErrorManager& e) {
  if (e.truncated) throw TruncatedError(at(where, "truncated JPEG: the file ends before its image data does"));
  throw Error(at(where, std::string("corrupt JPEG: ") + e.message));
}

struct Encoder {
  jpeg_compress_struct cinfo;
  ErrorManager err;
  bool created;
  unsigned char* buffer;  // malloc'd by jpeg_mem_dest
  unsigned long size;
};

bool compress(Encoder* c, const Image* im, int quality) {
  if (setjmp(c->err.jump)) return false;
  jpeg_create_compress(&c->cinfo);
  c->created = true;
  jpeg_mem_dest(&c->cinfo, &c->buffer, &c->size);
  c->cinfo.image_width = static_cast<JDIMENSION>(im->width);
  c->cinfo.image_height = static_cast<JDIMENSION>(im->height);
  c->cinfo.input_components = im->channels;
  c->cinfo.in_color_space = im->channels == 1 ? JCS_GRAYSCALE : JCS_RGB;
  jpeg_set_defaults(&c->cinfo);
  jpeg_set_quality(&c->cinfo, quality, TRUE);
  jpeg_start_compress(&c->cinfo, TRUE);
  const std::size_t row_bytes = static_cast<std::size_t>(im->width) * im->channels;
  while (c->cinfo.next_scanline < c->cinfo.image_height) {
    JSAMPROW row = const_cast<JSAMPROW>(im->data.data() + static_cast<std::size_t>(c->cinfo.next_scanline) * row_bytes);
    jpeg_write_scanlines(&c->cinfo, &row, 1);
  }
  jpeg_finish_compress(&c->cinfo);
  return true;
}

class EncoderGuard {
 public:
  explicit EncoderGuard(Encoder* c) : c_(c) {}
  ~EncoderGuard() {
    if (c_->created) jpeg_destroy_compress(&c_->cinfo);
    std::free(c_->buffer);
  }
  EncoderGuard(const EncoderGuard&) = delete;
  EncoderGuard& operator=(const EncoderGuard&) = delete;

 private:
  Encoder* c_;
};

}  // namespace

Image decode_jpeg(const std::string& bytes, const std::string& where) {
  // SOI, then the first marker's 0xFF.
  const unsigned char soi[3] = {0xFF, 0xD8, 0xFF};
  const std::size_t have = bytes.size() < 3 ? bytes.size() : 3;
  if (std::memcmp(bytes.data(), soi, have) != 0) throw Error(at(where, "not a JPEG file (bad signature)"));
  if (have < 3) throw TruncatedError(at(where, "truncated JPEG: file ends after " + std::to_string(bytes.size()) + " bytes"));

  Decoder d{};
  init_errors(&d.err);
  d.cinfo.err = &d.err.pub;
  DecoderGuard guard(&d);
  const std::uint64_t max_samples = image::max_image_samples();
  const Step step = start(&d, reinterpret_cast<const unsigned char*>(bytes.data()),
                          static_cast<unsigned long>(bytes.size()), max_samples);
  switch (step) {
    case Step::ok: break;
    case Step::failed: fail(where, d.err);
    case Step::cmyk: throw Error(at(where, "CMYK JPEG is not supported (only gray and RGB/YCbCr)"));
    case Step::precision:
      throw Error(at(where, std::to_string(d.cinfo.data_precision) + "-bit JPEG is not supported (only 8-bit)"));
    case Step::too_large:
      image::check_image_size(d.cinfo.image_width, d.cinfo.image_height, d.cinfo.num_components == 1 ? 1 : 3, where,
                              "JPEG");
      throw Error(at(where, "JPEG too large"));  // not reached: the check above throws
  }
  const int channels = d.cinfo.output_components;
  if (channels != 1 && channels != 3)
    throw Error(at(where, "unexpected JPEG output with " + std::to_string(channels) + " components"));
  Image im = Image::make(static_cast<int>(d.cinfo.output_width), static_cast<int>(d.cinfo.output_height), channels, 8);
  if (!read_all(&d, im.data.data(), static_cast<std::size_t>(im.width) * channels)) fail(where, d.err);
  if (d.err.truncated) fail(where, d.err);
  if (d.err.warnings > 0)
    log::warn(at(where, std::string("JPEG decoded despite ") + std::to_string(d.err.warnings) +
                            " warning(s), the first: " + d.err.first_warning));
  return im;
}

Image read_jpeg_file(const std::string& path) { return decode_jpeg(read_file_bytes(path), path); }

std::string encode_jpeg(const Image& image, int quality) {
  if (image.bits != 8 || (image.channels != 1 && image.channels != 3))
    throw Error("encode_jpeg: " + std::to_string(image.channels) + " channels of " + std::to_string(image.bits) +
                " bits (8-bit gray or RGB expected)");
  if (image.width <= 0 || image.height <= 0 || image.width > 65500 || image.height > 65500)
    throw Error("encode_jpeg: image of " + std::to_string(image.width) + "x" + std::to_string(image.height) +
                " (1 to 65500 per side)");
  if (image.data.size() != image.samples())
    throw Error("encode_jpeg: image holds " + std::to_string(image.data.size()) + " bytes, needs " +
                std::to_string(image.samples()));
  if (quality < 1 || quality > 100) throw Error("encode_jpeg: quality " + std::to_string(quality) + " (1-100 expected)");
  Encoder c{};
  init_errors(&c.err);
  c.cinfo.err = &c.err.pub;
  EncoderGuard guard(&c);
  if (!compress(&c, &image, quality)) throw Error(std::string("encode_jpeg: ") + c.err.message);
  return std::string(reinterpret_cast<const char*>(c.buffer), c.size);
}

}  // namespace cx::io
