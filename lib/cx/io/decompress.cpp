#include "cx/io/decompress.hpp"

#include <zlib.h>
#include <zstd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "cx/cli/names.hpp"

namespace cx::io {

const char* compression_name(Compression c) {
  switch (c) {
    case Compression::gzip: return "gzip";
    case Compression::zstd: return "zstd";
    default: return "none";
  }
}

TruncatedInput::TruncatedInput(const std::string& where, Compression format, std::string detail)
    : TruncatedError(at(where, std::string("truncated ") + compression_name(format) + " data (" + detail + ")")),
      detail_(std::move(detail)) {}

struct DecompressingInput::Impl {
  std::FILE* file = nullptr;
  bool owned = false;
  std::string where;
  Compression format = Compression::none;
  std::vector<char> raw = std::vector<char>(256 << 10);
  std::size_t raw_pos = 0, raw_len = 0;
  bool raw_eof = false;
  bool done = false;          // the compressed data ended at a member/frame end with no input after it
  z_stream z{};
  bool z_init = false;
  ZSTD_DCtx* zstd = nullptr;
  bool zstd_in_frame = true;  // ZSTD_decompressStream's last answer was not 0 (frame incomplete)
  std::uint64_t delivered = 0;

  ~Impl() {
    if (z_init) inflateEnd(&z);
    if (zstd) ZSTD_freeDCtx(zstd);
    if (owned && file) std::fclose(file);
  }

  [[noreturn]] void read_error() const {
    throw Error(at(where, std::string("read error: ") + std::strerror(errno)));
  }

  // Keeps the unread bytes, moved to the front, and appends what the file gives; false when
  // nothing new came (the end of the file).
  bool refill() {
    if (raw_eof) return false;
    if (raw_pos > 0) {
      std::memmove(raw.data(), raw.data() + raw_pos, raw_len - raw_pos);
      raw_len -= raw_pos;
      raw_pos = 0;
    }
    std::size_t got = std::fread(raw.data() + raw_len, 1, raw.size() - raw_len, file);
    if (got < raw.size() - raw_len) {
      if (std::ferror(file)) read_error();
      raw_eof = true;
    }
    raw_len += got;
    return got > 0;
  }

  std::size_t read_plain(char* buf, std::size_t n) {
    std::size_t got = 0;
    if (raw_pos < raw_len) {
      got = std::min(n, raw_len - raw_pos);
      std::memcpy(buf, raw.data() + raw_pos, got);
      raw_pos += got;
    }
    if (got < n && !raw_eof) {
      // Big reads go straight into the caller's buffer: no copy for tar member data.
      std::size_t more = std::fread(buf + got, 1, n - got, file);
      got += more;
      if (got < n) {
        if (std::ferror(file)) read_error();
        raw_eof = true;
      }
    }
    return got;
  }

  std::size_t read_gzip(char* buf, std::size_t n) {
    std::size_t got = 0;
    while (got < n && !done) {
      if (raw_pos == raw_len && !refill())
        throw TruncatedInput(where, format, "the input ends inside a gzip member");
      z.next_in = reinterpret_cast<Bytef*>(raw.data() + raw_pos);
      z.avail_in = static_cast<uInt>(raw_len - raw_pos);
      z.next_out = reinterpret_cast<Bytef*>(buf + got);
      const std::size_t want = std::min<std::size_t>(n - got, 1u << 30);
      z.avail_out = static_cast<uInt>(want);
      const int rc = inflate(&z, Z_NO_FLUSH);
      got += want - z.avail_out;
      raw_pos = raw_len - z.avail_in;
      if (rc == Z_STREAM_END) {
        // Members back to back are one input: go on if more input follows.
        if (raw_pos == raw_len && !refill()) {
          done = true;
          break;
        }
        inflateReset(&z);
      } else if (rc != Z_OK && rc != Z_BUF_ERROR) {
        throw Error(at(where, std::string("corrupt gzip data: ") + (z.msg ? z.msg : "inflate failed")));
      }
    }
    return got;
  }

  std::size_t read_zstd(char* buf, std::size_t n) {
    std::size_t got = 0;
    while (got < n && !done) {
      if (!zstd_in_frame && raw_pos == raw_len && !refill()) {
        done = true;  // the input ends between two frames
        break;
      }
      ZSTD_inBuffer in{raw.data() + raw_pos, raw_len - raw_pos, 0};
      ZSTD_outBuffer out{buf + got, n - got, 0};
      const std::size_t rc = ZSTD_decompressStream(zstd, &out, &in);
      if (ZSTD_isError(rc)) throw Error(at(where, std::string("corrupt zstd data: ") + ZSTD_getErrorName(rc)));
      raw_pos += in.pos;
      got += out.pos;
      // 0: a frame is complete and flushed; the next byte, if any, starts another frame.
      zstd_in_frame = rc != 0;
      if (in.pos == 0 && out.pos == 0) {
        // No progress: zstd needs more input.
        if (!refill()) {
          if (zstd_in_frame) throw TruncatedInput(where, format, "the input ends inside a zstd frame");
          done = true;
        }
      }
    }
    return got;
  }
};

DecompressingInput::DecompressingInput(std::FILE* in, std::string where) : impl_(std::make_unique<Impl>()) {
  Impl& s = *impl_;
  s.file = in;
  s.where = std::move(where);
  // Peek at the magic without seeking (pipes): gather up to 10 bytes.
  while (s.raw_len < 10 && !s.raw_eof) {
    std::size_t got = std::fread(s.raw.data() + s.raw_len, 1, 10 - s.raw_len, in);
    s.raw_len += got;
    if (got == 0) {
      if (std::ferror(in)) s.read_error();
      s.raw_eof = true;
    }
  }
  const unsigned char* m = reinterpret_cast<const unsigned char*>(s.raw.data());
  auto starts = [&](const char* magic, std::size_t n) { return s.raw_len >= n && std::memcmp(m, magic, n) == 0; };
  if (starts("\x1f\x8b", 2)) {
    s.format = Compression::gzip;
    if (inflateInit2(&s.z, 15 + 16) != Z_OK) throw Error(at(s.where, "cannot initialise zlib"));
    s.z_init = true;
  } else if (starts("\x28\xb5\x2f\xfd", 4)) {
    s.format = Compression::zstd;
    s.zstd = ZSTD_createDCtx();
    if (!s.zstd) throw Error(at(s.where, "cannot initialise zstd"));
  } else if (starts("\xfd" "7zXZ\0", 6)) {
    throw Error(at(s.where, "xz-compressed input is not supported; decompress it first (xz -dc)"));
  } else if (starts("BZh", 3) && s.raw_len >= 10 && m[3] >= '1' && m[3] <= '9' &&
             std::memcmp(m + 4, "\x31\x41\x59\x26\x53\x59", 6) == 0) {
    throw Error(at(s.where, "bzip2-compressed input is not supported; decompress it first (bzip2 -dc)"));
  }
}

std::unique_ptr<DecompressingInput> DecompressingInput::open(const std::string& path, std::string where) {
  if (where.empty()) where = cli::input_name(path);
  if (path == "-") return std::make_unique<DecompressingInput>(stdin, where);
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) throw Error(at(where, std::string("cannot open: ") + std::strerror(errno)));
  std::unique_ptr<DecompressingInput> in;
  try {
    in = std::make_unique<DecompressingInput>(f, where);
  } catch (...) {
    std::fclose(f);
    throw;
  }
  in->impl_->owned = true;
  return in;
}

DecompressingInput::~DecompressingInput() = default;

std::size_t DecompressingInput::read(char* buf, std::size_t n) {
  Impl& s = *impl_;
  std::size_t got = 0;
  switch (s.format) {
    case Compression::gzip: got = s.read_gzip(buf, n); break;
    case Compression::zstd: got = s.read_zstd(buf, n); break;
    default: got = s.read_plain(buf, n); break;
  }
  s.delivered += got;
  return got;
}

Compression DecompressingInput::compression() const { return impl_->format; }
std::uint64_t DecompressingInput::offset() const { return impl_->delivered; }
const std::string& DecompressingInput::where() const { return impl_->where; }

std::string read_decompressed(const std::string& path, std::string where) {
  auto in = DecompressingInput::open(path, std::move(where));
  std::string out;
  std::size_t chunk = 1 << 17;
  for (;;) {
    const std::size_t have = out.size();
    out.resize(have + chunk);
    const std::size_t got = in->read(out.data() + have, chunk);
    out.resize(have + got);
    if (got < chunk) break;
    if (chunk < (std::size_t{16} << 20)) chunk *= 2;
  }
  return out;
}

}  // namespace cx::io
