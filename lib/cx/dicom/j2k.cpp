#include "cx/dicom/j2k.hpp"

#include <openjpeg.h>

#include <algorithm>
#include <cstring>
#include <memory>

#include "cx/cli/error.hpp"
#include "cx/image/limits.hpp"

namespace cx::dicom {
namespace {

const std::uint8_t kJ2kMagic[] = {0xFF, 0x4F, 0xFF, 0x51};
const std::uint8_t kJp2Magic[] = {0x00, 0x00, 0x00, 0x0C, 0x6A, 0x50, 0x20, 0x20, 0x0D, 0x0A, 0x87, 0x0A};

struct MemorySource {
  const std::uint8_t* data;
  std::size_t size;
  std::size_t pos;
};

OPJ_SIZE_T read_fn(void* buffer, OPJ_SIZE_T n, void* user) {
  auto* s = static_cast<MemorySource*>(user);
  if (s->pos >= s->size) return static_cast<OPJ_SIZE_T>(-1);  // OpenJPEG's end-of-stream
  n = std::min<OPJ_SIZE_T>(n, s->size - s->pos);
  std::memcpy(buffer, s->data + s->pos, n);
  s->pos += n;
  return n;
}

OPJ_OFF_T skip_fn(OPJ_OFF_T n, void* user) {
  auto* s = static_cast<MemorySource*>(user);
  if (n < 0) {
    const auto back = std::min<std::size_t>(static_cast<std::size_t>(-n), s->pos);
    s->pos -= back;
    return -static_cast<OPJ_OFF_T>(back);
  }
  const auto fwd = std::min<std::size_t>(static_cast<std::size_t>(n), s->size - s->pos);
  s->pos += fwd;
  return static_cast<OPJ_OFF_T>(fwd);
}

OPJ_BOOL seek_fn(OPJ_OFF_T n, void* user) {
  auto* s = static_cast<MemorySource*>(user);
  if (n < 0 || static_cast<std::size_t>(n) > s->size) return OPJ_FALSE;
  s->pos = static_cast<std::size_t>(n);
  return OPJ_TRUE;
}

// OpenJPEG reports through callbacks; keep the first error line for our message.
void error_fn(const char* msg, void* user) {
  auto* first = static_cast<std::string*>(user);
  if (first->empty() && msg) {
    *first = msg;
    while (!first->empty() && (first->back() == '\n' || first->back() == ' ')) first->pop_back();
  }
}
void quiet_fn(const char*, void*) {}

struct CodecDeleter { void operator()(opj_codec_t* c) const { opj_destroy_codec(c); } };
struct StreamDeleter { void operator()(opj_stream_t* s) const { opj_stream_destroy(s); } };
struct ImageDeleter { void operator()(opj_image_t* i) const { opj_image_destroy(i); } };

}  // namespace

bool looks_like_j2k(const std::uint8_t* data, std::size_t size) {
  return (size >= sizeof kJ2kMagic && std::memcmp(data, kJ2kMagic, sizeof kJ2kMagic) == 0) ||
         (size >= sizeof kJp2Magic && std::memcmp(data, kJp2Magic, sizeof kJp2Magic) == 0);
}

J2kFrame decode_j2k(const std::uint8_t* data, std::size_t size, const std::string& name,
                    const J2kExpected& expected) {
  OPJ_CODEC_FORMAT format;
  if (size >= sizeof kJ2kMagic && std::memcmp(data, kJ2kMagic, sizeof kJ2kMagic) == 0) {
    format = OPJ_CODEC_J2K;
  } else if (size >= sizeof kJp2Magic && std::memcmp(data, kJp2Magic, sizeof kJp2Magic) == 0) {
    format = OPJ_CODEC_JP2;
  } else {
    throw Error(at(name, "JPEG 2000 frame starts with neither a J2K codestream nor a JP2 signature"));
  }

  std::unique_ptr<opj_codec_t, CodecDeleter> codec(opj_create_decompress(format));
  std::string first_error;
  opj_set_error_handler(codec.get(), error_fn, &first_error);
  opj_set_warning_handler(codec.get(), quiet_fn, nullptr);
  opj_set_info_handler(codec.get(), quiet_fn, nullptr);
  opj_dparameters_t params;
  opj_set_default_decoder_parameters(&params);
  if (!opj_setup_decoder(codec.get(), &params)) throw Error(at(name, "cannot set up the OpenJPEG decoder"));
  // Strict: a codestream cut short fails instead of giving a silently blurred partial image.
  opj_decoder_set_strict_mode(codec.get(), OPJ_TRUE);

  MemorySource source{data, size, 0};
  std::unique_ptr<opj_stream_t, StreamDeleter> stream(opj_stream_create(OPJ_J2K_STREAM_CHUNK_SIZE, OPJ_TRUE));
  opj_stream_set_user_data(stream.get(), &source, nullptr);
  opj_stream_set_user_data_length(stream.get(), size);
  opj_stream_set_read_function(stream.get(), read_fn);
  opj_stream_set_skip_function(stream.get(), skip_fn);
  opj_stream_set_seek_function(stream.get(), seek_fn);

  auto fail = [&](const char* step) {
    return Error(at(name, std::string("corrupt JPEG 2000 data (") + step +
                              (first_error.empty() ? "" : ": " + first_error) + ")"));
  };
  opj_image_t* raw = nullptr;
  if (!opj_read_header(stream.get(), codec.get(), &raw)) {
    if (raw) opj_image_destroy(raw);
    throw fail("header");
  }
  std::unique_ptr<opj_image_t, ImageDeleter> image(raw);
  // OpenJPEG allocates the whole image from the SIZ segment: check that first.
  const std::uint64_t declared_w = image->x1 > image->x0 ? image->x1 - image->x0 : 0;
  const std::uint64_t declared_h = image->y1 > image->y0 ? image->y1 - image->y0 : 0;
  image::check_image_size(declared_w, declared_h, image->numcomps, name, "JPEG 2000 frame");
  if (expected.width > 0 && (declared_w != static_cast<std::uint64_t>(expected.width) ||
                             declared_h != static_cast<std::uint64_t>(expected.height) ||
                             image->numcomps != static_cast<OPJ_UINT32>(expected.components))) {
    throw Error(at(name, "JPEG 2000 frame is " + std::to_string(declared_w) + "x" + std::to_string(declared_h) + "x" +
                             std::to_string(image->numcomps) + ", the header says " + std::to_string(expected.width) +
                             "x" + std::to_string(expected.height) + "x" + std::to_string(expected.components)));
  }
  if (!opj_decode(codec.get(), stream.get(), image.get()) || !opj_end_decompress(codec.get(), stream.get())) {
    throw fail("decode");
  }

  const int ncomp = static_cast<int>(image->numcomps);
  if (ncomp < 1) throw Error(at(name, "JPEG 2000 image has no components"));
  const opj_image_comp_t& c0 = image->comps[0];
  J2kFrame out;
  out.width = static_cast<int>(c0.w);
  out.height = static_cast<int>(c0.h);
  out.components = ncomp;
  out.precision = static_cast<int>(c0.prec);
  out.is_signed = c0.sgnd != 0;
  for (int k = 0; k < ncomp; ++k) {
    const opj_image_comp_t& c = image->comps[k];
    if (c.w != c0.w || c.h != c0.h || c.dx != 1 || c.dy != 1 || !c.data) {
      throw Error(at(name, "JPEG 2000 image with subsampled or missing components is not supported"));
    }
  }
  const std::size_t n = static_cast<std::size_t>(out.width) * out.height;
  out.samples.resize(n * ncomp);
  for (int k = 0; k < ncomp; ++k) {
    const OPJ_INT32* src = image->comps[k].data;
    for (std::size_t i = 0; i < n; ++i) out.samples[i * ncomp + k] = src[i];
  }
  return out;
}

}  // namespace cx::dicom
