#include "cx/dicom/dicom.hpp"

#include <sys/mman.h>
#include <unistd.h>

#include <dcmtk/config/osconfig.h>  // must come first among DCMTK headers
#include <dcmtk/dcmdata/dccodec.h>
#include <dcmtk/dcmdata/dcdatset.h>
#include <dcmtk/dcmdata/dcdeftag.h>
#include <dcmtk/dcmdata/dcdict.h>
#include <dcmtk/dcmdata/dcfilefo.h>
#include <dcmtk/dcmdata/dcistrmb.h>
#include <dcmtk/dcmdata/dcmetinf.h>
#include <dcmtk/dcmdata/dcpixel.h>
#include <dcmtk/dcmdata/dcpixseq.h>
#include <dcmtk/dcmdata/dcpxitem.h>
#include <dcmtk/dcmdata/dcrledrg.h>
#include <dcmtk/dcmdata/dcsequen.h>
#include <dcmtk/dcmdata/dcxfer.h>
#include <dcmtk/dcmjpeg/djdecode.h>
#include <dcmtk/dcmjpls/djdecode.h>
#include <dcmtk/oflog/oflog.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>

#include "cx/cli/error.hpp"
#include "cx/cli/log.hpp"
#include "cx/dicom/j2k.hpp"
#include "cx/image/limits.hpp"
#include "cx/util/strings.hpp"

namespace cx::dicom {
namespace {

const char* const kJ2kLossless = "1.2.840.10008.1.2.4.90";
const char* const kJ2k = "1.2.840.10008.1.2.4.91";

// DCMTK keeps its decoders in one process-wide list; register them once, before any thread
// decodes. DCMTK's own logger is silenced unless -v: its warnings about tolerated oddities
// (odd lengths, missing group lengths) would clutter stderr, and real failures reach the user
// through the OFCondition text in our cx::Error.
void init_dcmtk_once() {
  static std::once_flag once;
  std::call_once(once, [] {
    OFLog::configure(cx::log::level() == cx::log::Level::verbose ? OFLogger::WARN_LOG_LEVEL
                                                                  : OFLogger::OFF_LOG_LEVEL);
    DJDecoderRegistration::registerCodecs();
    DJLSDecoderRegistration::registerCodecs();
    DcmRLEDecoderRegistration::registerCodecs();
  });
}

// DICOM pads strings with a space (UI with NUL: c_str() ends there); some writers leave more.
std::string get_string(DcmItem& item, const DcmTagKey& tag) {
  OFString s;
  if (item.findAndGetOFString(tag, s).good()) return util::trim(s.c_str());
  return "";
}

int get_int(DcmItem& item, const DcmTagKey& tag, int fallback) {
  Uint16 v = 0;
  if (item.findAndGetUint16(tag, v).good()) return v;
  Sint32 s = 0;  // IS attributes such as NumberOfFrames
  if (item.findAndGetSint32(tag, s).good()) return static_cast<int>(s);
  return fallback;
}

std::vector<double> get_doubles(DcmItem& item, const DcmTagKey& tag) {
  std::vector<double> out;
  DcmElement* e = nullptr;
  if (item.findAndGetElement(tag, e).bad() || !e) return out;
  const unsigned long vm = e->getVM();
  for (unsigned long i = 0; i < vm; ++i) {
    Float64 v = 0;
    if (e->getFloat64(v, i).bad()) break;
    out.push_back(v);
  }
  return out;
}

std::vector<std::string> get_strings(DcmItem& item, const DcmTagKey& tag) {
  std::vector<std::string> out;
  DcmElement* e = nullptr;
  if (item.findAndGetElement(tag, e).bad() || !e) return out;
  const unsigned long vm = e->getVM();
  for (unsigned long i = 0; i < vm; ++i) {
    OFString s;
    if (e->getOFString(s, i).bad()) break;
    out.push_back(util::trim(s.c_str()));
  }
  return out;
}

// The first item of a Modality/VOI LUT Sequence (PS3.3 C.11.1.1 / C.11.2.1.1).
std::optional<Lut> read_lut(DcmItem& dataset, const DcmTagKey& sequence_tag, bool pixel_signed,
                            const std::string& name) {
  DcmSequenceOfItems* seq = nullptr;
  if (dataset.findAndGetSequence(sequence_tag, seq).bad() || !seq || seq->card() == 0) return std::nullopt;
  DcmItem* item = seq->getItem(0);
  const std::string what = sequence_tag == DCM_ModalityLUTSequence ? "Modality LUT" : "VOI LUT";
  DcmElement* desc = nullptr;
  if (item->findAndGetElement(DCM_LUTDescriptor, desc).bad() || !desc || desc->getVM() < 3) {
    throw Error(at(name, what + " Sequence item lacks a 3-value LUT Descriptor"));
  }
  long d[3] = {0, 0, 0};
  for (unsigned long i = 0; i < 3; ++i) {
    Uint16 u = 0;
    Sint16 s = 0;
    if (desc->getUint16(u, i).good()) {
      d[i] = u;
    } else if (desc->getSint16(s, i).good()) {
      d[i] = s;
    } else {
      throw Error(at(name, what + " Descriptor is not US/SS"));
    }
  }
  Lut lut;
  const long entries = d[0] == 0 ? 65536 : d[0];  // 0 means 2^16 entries
  // The first mapped value is signed when the pixels are (its VR is then SS, but implicit VR
  // files and some writers give it as US).
  lut.first_mapped = (pixel_signed && d[1] > 32767) ? static_cast<int>(d[1] - 65536) : static_cast<int>(d[1]);
  lut.bits = static_cast<int>(d[2]);
  if (lut.bits < 1 || lut.bits > 16) throw Error(at(name, what + " Descriptor gives " + std::to_string(lut.bits) + " bits per entry"));
  DcmElement* data = nullptr;
  Uint16* words = nullptr;
  if (item->findAndGetElement(DCM_LUTData, data).bad() || !data || data->getUint16Array(words).bad() || !words) {
    throw Error(at(name, what + " Sequence item lacks LUT Data"));
  }
  const unsigned long nwords = data->getLength() / 2;
  if (static_cast<long>(nwords) >= entries) {
    lut.data.assign(words, words + entries);
  } else if (lut.bits <= 8 && static_cast<long>(nwords) * 2 >= entries) {
    // 8-bit entries packed two per 16-bit word (allowed in older editions), low byte first.
    lut.data.resize(entries);
    for (long i = 0; i < entries; ++i) lut.data[i] = (words[i / 2] >> ((i % 2) * 8)) & 0xFF;
  } else {
    throw Error(at(name, what + " Data holds " + std::to_string(nwords) + " entries, the descriptor says " +
                             std::to_string(entries)));
  }
  lut.explanation = get_string(*item, DCM_LUTExplanation);
  return lut;
}

// YCbCr full range (PS3.3 C.7.6.3.1.2) to RGB, in place, for 8-bit-style unsigned samples.
void ybr_full_to_rgb(std::vector<std::int32_t>& v, int bits) {
  const double half = std::ldexp(1.0, bits - 1);
  const double maxv = std::ldexp(1.0, bits) - 1;
  auto clip = [&](double x) { return static_cast<std::int32_t>(std::lround(std::clamp(x, 0.0, maxv))); };
  for (std::size_t i = 0; i + 2 < v.size(); i += 3) {
    const double y = v[i], cb = v[i + 1] - half, cr = v[i + 2] - half;
    v[i] = clip(y + 1.402 * cr);
    v[i + 1] = clip(y - 0.344136 * cb - 0.714136 * cr);
    v[i + 2] = clip(y + 1.772 * cb);
  }
}

// Item `i` of an encapsulated Pixel Data (0: the offset table; `p` null when empty).
void fragment_bytes(DcmPixelSequence& seq, unsigned long i, const std::string& name, const Uint8*& p, Uint32& len) {
  DcmPixelItem* item = nullptr;
  Uint8* bytes = nullptr;
  if (seq.getItem(item, i).bad() || !item) throw Error(at(name, "cannot read pixel data fragment " + std::to_string(i)));
  len = item->getLength();
  if (len > 0 && (item->getUint8Array(bytes).bad() || !bytes)) {
    throw Error(at(name, "cannot read pixel data fragment " + std::to_string(i)));
  }
  p = bytes;
}

// The fragments of frame 1 of an encapsulated Pixel Data, concatenated (PS3.5 A.4).
std::vector<std::uint8_t> first_frame_bytes(DcmPixelSequence& seq, int frames, const std::string& name) {
  const unsigned long count = seq.card();
  if (count < 2) throw Error(at(name, "encapsulated pixel data holds no fragments"));
  auto fragment = [&](unsigned long i, const Uint8*& p, Uint32& len) { fragment_bytes(seq, i, name, p, len); };
  const Uint8* bot = nullptr;
  Uint32 bot_len = 0;
  fragment(0, bot, bot_len);

  unsigned long last = count - 1;  // fragments 1..last make frame 1
  if (frames > 1 && count - 1 > 1) {
    if (bot_len >= 8) {
      // Offsets are from the first fragment's item tag; each item adds 8 bytes of tag+length.
      const Uint32 next = static_cast<Uint32>(bot[4]) | static_cast<Uint32>(bot[5]) << 8 |
                          static_cast<Uint32>(bot[6]) << 16 | static_cast<Uint32>(bot[7]) << 24;
      std::uint64_t pos = 0;
      last = 0;
      for (unsigned long i = 1; i < count && pos < next; ++i) {
        const Uint8* p;
        Uint32 len;
        fragment(i, p, len);
        pos += 8 + static_cast<std::uint64_t>(len);
        last = i;
      }
    } else if (count - 1 == static_cast<unsigned long>(frames)) {
      last = 1;  // one fragment per frame
    } else {
      // No offset table: a frame ends where the next fragment opens a new codestream.
      last = 1;
      for (unsigned long i = 2; i < count; ++i) {
        const Uint8* p;
        Uint32 len;
        fragment(i, p, len);
        if (p && looks_like_j2k(p, len)) break;
        last = i;
      }
    }
  }
  std::vector<std::uint8_t> out;
  for (unsigned long i = 1; i <= last; ++i) {
    const Uint8* p;
    Uint32 len;
    fragment(i, p, len);
    if (p) out.insert(out.end(), p, p + len);
  }
  return out;
}

struct CodestreamSize {
  int width = 0, height = 0, components = 0;
};

// The frame size a JPEG (ITU T.81) or JPEG-LS (T.87) codestream declares in its SOF segment, or
// nullopt when none is found in `n` bytes. DCMTK's codecs trust the DICOM header and write the
// decoded pixels into a buffer of the header's size, so a smaller codestream would come out as a
// smear inside a black image: the sizes are compared before decoding.
std::optional<CodestreamSize> jpeg_frame_size(const std::uint8_t* p, std::size_t n) {
  if (n < 4 || p[0] != 0xFF || p[1] != 0xD8) return std::nullopt;
  std::size_t pos = 2;
  while (pos + 4 <= n) {
    if (p[pos] != 0xFF) return std::nullopt;
    const std::uint8_t marker = p[pos + 1];
    if (marker == 0xFF) {  // fill byte
      ++pos;
      continue;
    }
    if (marker == 0x01 || (marker >= 0xD0 && marker <= 0xD7)) {  // no length
      pos += 2;
      continue;
    }
    const std::size_t length = static_cast<std::size_t>(p[pos + 2]) << 8 | p[pos + 3];
    const bool sof = (marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC) ||
                     marker == 0xF7;  // SOF55: JPEG-LS
    if (sof) {
      if (pos + 10 > n || length < 8) return std::nullopt;
      CodestreamSize s;
      s.height = p[pos + 5] << 8 | p[pos + 6];
      s.width = p[pos + 7] << 8 | p[pos + 8];
      s.components = p[pos + 9];
      return s;
    }
    if (marker == 0xDA || length < 2) return std::nullopt;  // scan data before any SOF
    pos += 2 + length;
  }
  return std::nullopt;
}

// DCMTK reports data that ends inside an element as "I/O suspension or premature end of stream"
// (the element header is cut) or "Invalid stream" (its value is longer than what is left).
bool is_truncation(const OFCondition& c) {
  return c == EC_StreamNotifyClient || c == EC_InvalidStream || c == EC_EndOfStream;
}

DicomImage decode(DcmFileFormat& file, const std::string& name) {
  DcmDataset& ds = *file.getDataset();
  DcmMetaInfo* meta = file.getMetaInfo();
  DicomImage im;

  const E_TransferSyntax xfer = ds.getOriginalXfer();
  std::string meta_ts;
  if (meta) {
    OFString s;
    if (meta->findAndGetOFString(DCM_TransferSyntaxUID, s).good()) meta_ts = util::trim(s.c_str());
  }
  im.has_meta_header = !meta_ts.empty();
  if (meta_ts.empty() && xfer == EXS_Unknown) {
    throw Error(at(name, "not a readable DICOM file (no meta header and no recognisable transfer syntax)"));
  }
  // The declared syntax (meta header) decides support; DCMTK may have parsed the dataset with a
  // guess when the declared one is unknown to it.
  im.transfer_syntax_uid = meta_ts.empty() ? std::string(DcmXfer(xfer).getXferID()) : meta_ts;
  const DcmXfer xinfo(im.transfer_syntax_uid.c_str());
  im.transfer_syntax_name = xinfo.getXfer() == EXS_Unknown ? "unknown" : xinfo.getXferName();
  if (xinfo.getXfer() == EXS_Unknown) {
    throw Error(at(name, "unsupported transfer syntax " + im.transfer_syntax_uid + " (unknown)"));
  }

  DcmElement* pixel_element = nullptr;
  if (ds.findAndGetElement(DCM_PixelData, pixel_element).bad() || !pixel_element) {
    if (!im.has_meta_header && ds.card() == 0) throw Error(at(name, "not a DICOM file"));
    throw Error(at(name, im.has_meta_header ? "no Pixel Data (not an image)" : "not a DICOM image (no Pixel Data, no DICOM meta header)"));
  }
  auto* pixel_data = dynamic_cast<DcmPixelData*>(pixel_element);
  if (!pixel_data) throw Error(at(name, "Pixel Data element of unexpected type"));

  const bool j2k = im.transfer_syntax_uid == kJ2kLossless || im.transfer_syntax_uid == kJ2k;
  const bool native = !xinfo.isEncapsulated();
  if (!j2k && !native && !DcmCodecList::canChangeCoding(xinfo.getXfer(), EXS_LittleEndianExplicit)) {
    throw Error(at(name, "unsupported transfer syntax " + im.transfer_syntax_uid + " (" + im.transfer_syntax_name + ")"));
  }

  im.height = get_int(ds, DCM_Rows, 0);
  im.width = get_int(ds, DCM_Columns, 0);
  im.bits_allocated = get_int(ds, DCM_BitsAllocated, 0);
  im.bits_stored = get_int(ds, DCM_BitsStored, im.bits_allocated);
  const int high_bit = get_int(ds, DCM_HighBit, im.bits_stored - 1);
  im.is_signed = get_int(ds, DCM_PixelRepresentation, 0) == 1;
  im.samples_per_pixel = get_int(ds, DCM_SamplesPerPixel, 1);
  im.frames = std::max(1, get_int(ds, DCM_NumberOfFrames, 1));
  im.photometric = get_string(ds, DCM_PhotometricInterpretation);
  if (im.photometric.empty()) im.photometric = im.samples_per_pixel == 3 ? "RGB" : "MONOCHROME2";

  if (im.width <= 0 || im.height <= 0) throw Error(at(name, "missing or zero Rows/Columns"));
  if (im.bits_allocated != 8 && im.bits_allocated != 16) {
    throw Error(at(name, "unsupported Bits Allocated " + std::to_string(im.bits_allocated) + " (8 or 16 are read)"));
  }
  if (im.bits_stored < 1 || im.bits_stored > im.bits_allocated || high_bit < im.bits_stored - 1 ||
      high_bit >= im.bits_allocated) {
    throw Error(at(name, "inconsistent Bits Stored " + std::to_string(im.bits_stored) + " / High Bit " +
                             std::to_string(high_bit) + " for Bits Allocated " + std::to_string(im.bits_allocated)));
  }
  if (im.samples_per_pixel != 1 && im.samples_per_pixel != 3) {
    throw Error(at(name, "unsupported Samples per Pixel " + std::to_string(im.samples_per_pixel)));
  }
  // Declared sizes are checked against the limit and the data present before any pixel memory
  // is taken (a 1.5 KB file may claim 60000 x 60000).
  image::check_image_size(static_cast<std::uint64_t>(im.width), static_cast<std::uint64_t>(im.height),
                          static_cast<std::uint64_t>(im.samples_per_pixel), name, "DICOM image");
  const std::size_t samples = im.pixel_count() * im.samples_per_pixel;
  const std::size_t frame_bytes = samples * static_cast<std::size_t>(im.bits_allocated / 8);
  if (native) {
    const std::uint64_t have = pixel_data->getLength();
    if (have < frame_bytes) {
      throw TruncatedError(at(name, "Pixel Data holds " + std::to_string(have) + " bytes, frame 1 needs " +
                                        std::to_string(frame_bytes)));
    }
    if (have / frame_bytes < static_cast<std::uint64_t>(im.frames)) {
      throw Error(at(name, "Number of Frames is " + std::to_string(im.frames) + " but the Pixel Data holds " +
                               std::to_string(have) + " bytes, " + std::to_string(have / frame_bytes) +
                               " frame(s) of " + std::to_string(frame_bytes)));
    }
  } else {
    DcmPixelSequence* seq = nullptr;
    if (pixel_data->getEncapsulatedRepresentation(xfer, nullptr, seq).bad() || !seq) {
      throw Error(at(name, im.transfer_syntax_name + " transfer syntax but the Pixel Data is not encapsulated"));
    }
    const unsigned long fragments = seq->card() > 0 ? seq->card() - 1 : 0;
    if (fragments == 0) throw Error(at(name, "encapsulated pixel data holds no fragments"));
    if (fragments < static_cast<unsigned long>(im.frames)) {
      throw Error(at(name, "Number of Frames is " + std::to_string(im.frames) + " but the Pixel Data holds " +
                               std::to_string(fragments) + " fragment(s)"));
    }
    if (!j2k) {
      // DCMTK's codecs decode every frame at once: the whole must fit the limit too.
      image::check_image_size(static_cast<std::uint64_t>(im.width), static_cast<std::uint64_t>(im.height),
                              static_cast<std::uint64_t>(im.samples_per_pixel) * static_cast<std::uint64_t>(im.frames),
                              name, "DICOM Pixel Data (" + std::to_string(im.frames) + " frames, decoded at once)");
      const Uint8* code = nullptr;
      Uint32 length = 0;
      fragment_bytes(*seq, 1, name, code, length);  // the first fragment holds the SOF
      const auto declared = code ? jpeg_frame_size(code, length) : std::nullopt;
      if (declared && (declared->width != im.width || declared->height != im.height ||
                       declared->components != im.samples_per_pixel)) {
        throw Error(at(name, "JPEG frame is " + std::to_string(declared->width) + "x" + std::to_string(declared->height) +
                                 "x" + std::to_string(declared->components) + ", the header says " +
                                 std::to_string(im.width) + "x" + std::to_string(im.height) + "x" +
                                 std::to_string(im.samples_per_pixel)));
      }
    }
  }
  if (im.frames > 1) {
    log::warn(name + ": " + std::to_string(im.frames) + " frames; reading frame 1 only");
  }

  im.stored.resize(samples);
  int planar = 0;

  if (j2k) {
    DcmPixelSequence* seq = nullptr;
    if (pixel_data->getEncapsulatedRepresentation(xfer, nullptr, seq).bad() || !seq) {
      throw Error(at(name, "JPEG 2000 transfer syntax but the Pixel Data is not encapsulated"));
    }
    const std::vector<std::uint8_t> code = first_frame_bytes(*seq, im.frames, name);
    J2kFrame f = decode_j2k(code.data(), code.size(), name, {im.width, im.height, im.samples_per_pixel});
    if (f.width != im.width || f.height != im.height || f.components != im.samples_per_pixel) {
      throw Error(at(name, "JPEG 2000 frame is " + std::to_string(f.width) + "x" + std::to_string(f.height) + "x" +
                               std::to_string(f.components) + ", the header says " + std::to_string(im.width) + "x" +
                               std::to_string(im.height) + "x" + std::to_string(im.samples_per_pixel)));
    }
    if (f.precision != im.bits_stored) {
      log::debug(name + ": JPEG 2000 precision " + std::to_string(f.precision) + " vs Bits Stored " +
                 std::to_string(im.bits_stored) + "; keeping the decoded values");
    }
    im.stored = std::move(f.samples);
    // Header signed but codestream unsigned (a known encoder slip): the samples are the two's
    // complement bit patterns; reinterpret them as pydicom does.
    if (im.is_signed && !f.is_signed) {
      const int bits = std::min(f.precision, 31);
      const std::int64_t half = std::int64_t{1} << (bits - 1);
      for (auto& v : im.stored) {
        if (v >= half) v = static_cast<std::int32_t>(v - 2 * half);
      }
    }
    // OpenJPEG undoes the codestream's multi-component transform, giving RGB for ICT/RCT.
    if (im.samples_per_pixel == 3 && (im.photometric == "YBR_ICT" || im.photometric == "YBR_RCT")) im.photometric = "RGB";
  } else {
    if (!native) {
      const OFCondition c = ds.chooseRepresentation(EXS_LittleEndianExplicit, nullptr);
      if (c.bad()) {
        throw Error(at(name, "cannot decode " + im.transfer_syntax_name + " pixel data (" + c.text() + ")"));
      }
      // The codec may have changed these (e.g. YBR_FULL_422 -> RGB).
      im.photometric = get_string(ds, DCM_PhotometricInterpretation);
      if (im.photometric.empty()) im.photometric = im.samples_per_pixel == 3 ? "RGB" : "MONOCHROME2";
    }
    planar = get_int(ds, DCM_PlanarConfiguration, 0);

    const std::size_t have = pixel_data->getLength();  // a codec's output: check it again
    if (have < frame_bytes) {
      throw TruncatedError(at(name, "Pixel Data holds " + std::to_string(have) + " bytes, frame 1 needs " +
                                        std::to_string(frame_bytes)));
    }
    const int shift = high_bit - im.bits_stored + 1;
    const std::uint32_t mask = im.bits_stored >= 32 ? 0xFFFFFFFFu : ((1u << im.bits_stored) - 1);
    const std::int32_t sign_bit = std::int32_t{1} << (im.bits_stored - 1);
    auto store = [&](std::size_t i, std::uint32_t raw) {
      std::int32_t v = static_cast<std::int32_t>((raw >> shift) & mask);
      if (im.is_signed && (v & sign_bit)) v -= 2 * sign_bit;
      im.stored[i] = v;
    };
    if (im.bits_allocated == 8) {
      Uint8* p = nullptr;
      if (pixel_data->getUint8Array(p).bad() || !p) throw Error(at(name, "cannot read Pixel Data"));
      for (std::size_t i = 0; i < samples; ++i) store(i, p[i]);
    } else {
      Uint16* p = nullptr;  // DCMTK gives the words in host byte order whatever the file's
      if (pixel_data->getUint16Array(p).bad() || !p) throw Error(at(name, "cannot read Pixel Data"));
      for (std::size_t i = 0; i < samples; ++i) store(i, p[i]);
    }
  }

  if (im.samples_per_pixel == 3) {
    if (planar == 1) {
      std::vector<std::int32_t> inter(samples);
      const std::size_t n = im.pixel_count();
      for (std::size_t i = 0; i < n; ++i) {
        for (int k = 0; k < 3; ++k) inter[i * 3 + k] = im.stored[k * n + i];
      }
      im.stored.swap(inter);
    }
    if (im.photometric == "YBR_FULL") {
      ybr_full_to_rgb(im.stored, im.bits_stored);
      im.photometric = "RGB";
    } else if (im.photometric != "RGB") {
      throw Error(at(name, "unsupported photometric interpretation " + im.photometric + " for color pixels"));
    }
  } else if (im.photometric != "MONOCHROME1" && im.photometric != "MONOCHROME2") {
    throw Error(at(name, "unsupported photometric interpretation " + im.photometric));
  }

  // Modality and VOI attributes.
  if (auto v = get_doubles(ds, DCM_RescaleSlope); !v.empty()) im.rescale_slope = v[0];
  if (auto v = get_doubles(ds, DCM_RescaleIntercept); !v.empty()) im.rescale_intercept = v[0];
  if (!std::isfinite(im.rescale_slope) || im.rescale_slope == 0.0 || !std::isfinite(im.rescale_intercept)) {
    log::warn(name + ": ignoring Rescale Slope/Intercept " + std::to_string(im.rescale_slope) + "/" +
              std::to_string(im.rescale_intercept));
    im.rescale_slope = 1.0;
    im.rescale_intercept = 0.0;
  }
  {
    // Finite but huge (1e308): the rescaled values, and the window arithmetic on them
    // (differences, halves), would overflow to inf and give a black image.
    const double reach = std::fabs(im.rescale_slope) * std::ldexp(1.0, im.bits_stored) + std::fabs(im.rescale_intercept);
    if (!std::isfinite(reach * 16)) {
      std::ostringstream msg;
      msg << "Rescale Slope " << im.rescale_slope << " / Intercept " << im.rescale_intercept << " map " << im.bits_stored
          << "-bit stored values beyond the range of finite numbers";
      throw Error(at(name, msg.str()));
    }
  }
  im.modality_lut = read_lut(ds, DCM_ModalityLUTSequence, im.is_signed, name);
  const auto centers = get_doubles(ds, DCM_WindowCenter);
  const auto widths = get_doubles(ds, DCM_WindowWidth);
  for (std::size_t i = 0; i < std::min(centers.size(), widths.size()); ++i) im.windows.emplace_back(centers[i], widths[i]);
  im.window_explanations = get_strings(ds, DCM_WindowCenterWidthExplanation);
  im.voi_lut_function = get_string(ds, DCM_VOILUTFunction);
  im.voi_lut = read_lut(ds, DCM_VOILUTSequence, im.is_signed, name);
  im.presentation_lut_shape = get_string(ds, DCM_PresentationLUTShape);

  im.patient_id = get_string(ds, DCM_PatientID);
  im.patient_sex = get_string(ds, DCM_PatientSex);
  im.patient_age = get_string(ds, DCM_PatientAge);
  im.view_position = get_string(ds, DCM_ViewPosition);
  im.modality = get_string(ds, DCM_Modality);
  im.body_part_examined = get_string(ds, DCM_BodyPartExamined);
  im.sop_instance_uid = get_string(ds, DCM_SOPInstanceUID);
  im.study_instance_uid = get_string(ds, DCM_StudyInstanceUID);
  im.series_instance_uid = get_string(ds, DCM_SeriesInstanceUID);
  im.sop_class_uid = get_string(ds, DCM_SOPClassUID);
  for (const DcmTagKey& tag : {DCM_PixelSpacing, DCM_ImagerPixelSpacing}) {
    const auto v = get_doubles(ds, tag);
    if (v.size() >= 2 && v[0] > 0 && v[1] > 0) {
      im.pixel_spacing = std::make_pair(v[0], v[1]);
      im.pixel_spacing_source = tag == DCM_PixelSpacing ? "PixelSpacing" : "ImagerPixelSpacing";
      break;
    }
  }
  return im;
}

[[noreturn]] void throw_load_error(const OFCondition& c, const std::string& name) {
  const std::string text = c.text();
  if (is_truncation(c)) {
    throw TruncatedError(at(name, "truncated DICOM file: the data ends inside an element (DCMTK: " + text + ")"));
  }
  throw Error(at(name, "not a readable DICOM file (" + text + ")"));
}

// Rejects what is plainly not DICOM before DCMTK tries to parse it (DCMTK would read any bytes
// as a bare dataset and report a "premature end of stream", which reads like truncation).
// DICOM: "DICM" after a 128-byte preamble, or a meta group (0002,xxxx) at offset 0, or a bare
// dataset whose first tag is in a low even group (0008 in practice) with a plausible VR/length.
void check_looks_like_dicom(const std::uint8_t* head, std::size_t n, std::size_t total, const std::string& name) {
  if (total == 0) throw Error(at(name, "not a DICOM file (empty)"));
  if (n >= 132 && std::memcmp(head + 128, "DICM", 4) == 0) return;
  if (n >= 8) {
    for (bool little : {true, false}) {
      const unsigned group = little ? head[0] | head[1] << 8 : head[0] << 8 | head[1];
      if (group == 0 || group > 0x0028 || group % 2) continue;
      const bool vr_letters = std::isupper(head[4]) && std::isupper(head[5]);
      const std::uint32_t len = little ? (head[4] | head[5] << 8 | head[6] << 16 | static_cast<std::uint32_t>(head[7]) << 24)
                                       : (static_cast<std::uint32_t>(head[4]) << 24 | head[5] << 16 | head[6] << 8 | head[7]);
      if (vr_letters || len == 0xFFFFFFFFu || len <= total) return;
    }
  }
  throw Error(at(name, "not a DICOM file (no DICM marker and no DICOM data elements at the start)"));
}

void check_dictionary(const std::string& name) {
  if (!dcmDataDict.isDictionaryLoaded()) {
    throw Error(at(name, "DCMTK data dictionary not loaded (set DCMDICTPATH to dicom.dic)"));
  }
}

}  // namespace

bool transfer_syntax_supported(const std::string& uid) {
  init_dcmtk_once();
  if (uid == kJ2kLossless || uid == kJ2k) return true;
  const DcmXfer x(uid.c_str());
  if (x.getXfer() == EXS_Unknown) return false;
  return !x.isEncapsulated() || DcmCodecList::canChangeCoding(x.getXfer(), EXS_LittleEndianExplicit);
}

DicomImage read_dicom(const std::string& path) {
  init_dcmtk_once();
  check_dictionary(path);
  {
    std::error_code ec;
    if (std::filesystem::is_directory(path, ec)) throw Error(at(path, "is a directory, not a DICOM file"));
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(at(path, std::string("cannot open (") + std::strerror(errno) + ")"));
    std::uint8_t head[132];
    in.read(reinterpret_cast<char*>(head), sizeof head);
    const auto n = static_cast<std::size_t>(in.gcount());
    const auto total = std::filesystem::file_size(path, ec);
    check_looks_like_dicom(head, n, ec ? n : static_cast<std::size_t>(total), path);
  }
  DcmFileFormat file;
  // EXS_Unknown + ERM_autoDetect: Part 10 files and bare datasets (the syntax is then guessed).
  const OFCondition c = file.loadFile(path.c_str(), EXS_Unknown, EGL_noChange, DCM_MaxReadLength, ERM_autoDetect);
  if (c.bad()) {
    if (c == EC_InvalidFilename || std::strstr(c.text(), "No such file") || std::strstr(c.text(), "ermission")) {
      throw Error(at(path, std::string("cannot open (") + c.text() + ")"));
    }
    throw_load_error(c, path);
  }
  return decode(file, path);
}

DicomImage read_dicom_bytes(const std::uint8_t* data, std::size_t size, const std::string& name) {
  init_dcmtk_once();
  check_dictionary(name);
  check_looks_like_dicom(data, std::min<std::size_t>(size, 132), size, name);
  // From a memory buffer DCMTK allocates each element's declared length before it finds the bytes
  // missing (a 12-byte file asked for 4 GB, fuzz finding F3). Through a file it checks the length
  // against the file and loads large values lazily: give it the bytes as an in-memory file.
  const int fd = ::memfd_create("cx-dicom", MFD_CLOEXEC);
  if (fd >= 0) {
    struct Closer {
      int fd;
      ~Closer() { ::close(fd); }
    } closer{fd};
    std::size_t done = 0;
    while (done < size) {
      const ssize_t n = ::write(fd, data + done, size - done);
      if (n <= 0) break;
      done += static_cast<std::size_t>(n);
    }
    if (done == size) {
      const std::string path = "/proc/self/fd/" + std::to_string(fd);
      DcmFileFormat file;
      const OFCondition c = file.loadFile(path.c_str(), EXS_Unknown, EGL_noChange, DCM_MaxReadLength, ERM_autoDetect);
      if (c.bad()) throw_load_error(c, name);
      return decode(file, name);  // lazily loaded values are read while the file is open
    }
  }
  DcmInputBufferStream stream;
  stream.setBuffer(data, static_cast<offile_off_t>(size));
  stream.setEos();  // the whole file is here: running out of bytes is truncation
  DcmFileFormat file;
  file.transferInit();
  const OFCondition c = file.read(stream, EXS_Unknown, EGL_noChange, DCM_MaxReadLength);
  file.transferEnd();
  if (c.bad()) throw_load_error(c, name);
  return decode(file, name);
}

nlohmann::json dicom_metadata_json(const DicomImage& im) {
  nlohmann::json j;
  j["width"] = im.width;
  j["height"] = im.height;
  j["samples_per_pixel"] = im.samples_per_pixel;
  j["frames"] = im.frames;
  j["bits_allocated"] = im.bits_allocated;
  j["bits_stored"] = im.bits_stored;
  j["signed"] = im.is_signed;
  j["photometric"] = im.photometric;
  j["transfer_syntax"] = {{"uid", im.transfer_syntax_uid}, {"name", im.transfer_syntax_name}};
  j["rescale"] = {{"slope", im.rescale_slope}, {"intercept", im.rescale_intercept}};
  if (im.modality_lut) j["modality_lut"] = {{"entries", im.modality_lut->data.size()}, {"first_mapped", im.modality_lut->first_mapped}, {"bits", im.modality_lut->bits}};
  if (!im.windows.empty()) {
    nlohmann::json w = nlohmann::json::array();
    for (const auto& [c, wd] : im.windows) w.push_back({c, wd});
    j["windows"] = w;
  }
  if (!im.voi_lut_function.empty()) j["voi_lut_function"] = im.voi_lut_function;
  if (im.voi_lut) j["voi_lut"] = {{"entries", im.voi_lut->data.size()}, {"first_mapped", im.voi_lut->first_mapped}, {"bits", im.voi_lut->bits}};
  auto put = [&](const char* key, const std::string& v) {
    if (!v.empty()) j[key] = v;
  };
  put("presentation_lut_shape", im.presentation_lut_shape);
  // PatientID stays out: records travel further than the PACS export they came from.
  put("sex", im.patient_sex);
  put("age", im.patient_age);
  put("view_position", im.view_position);
  put("modality", im.modality);
  put("body_part", im.body_part_examined);
  put("sop_instance_uid", im.sop_instance_uid);
  put("study_instance_uid", im.study_instance_uid);
  put("series_instance_uid", im.series_instance_uid);
  put("sop_class_uid", im.sop_class_uid);
  if (im.pixel_spacing) {
    j["pixel_spacing"] = {im.pixel_spacing->first, im.pixel_spacing->second};
    j["pixel_spacing_source"] = im.pixel_spacing_source;
  }
  return j;
}

}  // namespace cx::dicom
