#include "cx/io/tar.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <vector>

#include "cx/cli/log.hpp"

namespace cx::io::tar {

namespace {

// ustar header layout (POSIX.1-1988 / pax): offset and length of each field.
constexpr std::size_t kName = 0, kNameLen = 100;
constexpr std::size_t kMode = 100, kUid = 108, kGid = 116, kIdLen = 8;
constexpr std::size_t kSize = 124, kSizeLen = 12;
constexpr std::size_t kMtime = 136, kMtimeLen = 12;
constexpr std::size_t kChksum = 148, kChksumLen = 8;
constexpr std::size_t kType = 156;
constexpr std::size_t kMagic = 257;  // "ustar\0" then version "00" (POSIX); "ustar  \0" (GNU)
constexpr std::size_t kDevMajor = 329, kDevMinor = 337;
constexpr std::size_t kPrefix = 345, kPrefixLen = 155;

constexpr std::uint64_t kMaxOctalSize = 077777777777ULL;  // 11 octal digits: 8 GiB - 1
// pax and GNU long-name members hold metadata only; bigger ones are corrupt or hostile.
constexpr std::uint64_t kMaxExtendedHeader = 1 << 20;
constexpr std::size_t kChunk = 16 << 20;  // data is read in chunks so a lying size field on a
                                          // cut stream fails as truncated, not as bad_alloc

bool all_zero(const char* p, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i)
    if (p[i] != 0) return false;
  return true;
}

std::string field_string(const char* p, std::size_t n) {
  const void* nul = std::memchr(p, 0, n);
  return std::string(p, nul ? static_cast<const char*>(nul) - p : n);
}

// Octal digits, optionally led by spaces and ended by NUL or space (every tar writes one of these).
bool parse_octal(const char* p, std::size_t n, std::uint64_t& value) {
  std::size_t i = 0;
  while (i < n && p[i] == ' ') ++i;
  std::size_t digits = 0;
  value = 0;
  for (; i < n && p[i] >= '0' && p[i] <= '7'; ++i, ++digits) {
    if (value >> 60) return false;
    value = value * 8 + static_cast<std::uint64_t>(p[i] - '0');
  }
  for (; i < n; ++i)
    if (p[i] != 0 && p[i] != ' ') return false;
  return digits > 0 || all_zero(p, n);
}

// A numeric field in octal or in GNU/star base-256 (first byte 0x80, big-endian after it).
bool parse_number(const unsigned char* p, std::size_t n, std::uint64_t& value) {
  if (p[0] & 0x80) {
    if (p[0] != 0x80) return false;  // 0xff: negative, never valid for a size
    value = 0;
    for (std::size_t i = 1; i < n; ++i) {
      if (value >> 55) return false;
      value = (value << 8) | p[i];
    }
    return true;
  }
  return parse_octal(reinterpret_cast<const char*>(p), n, value);
}

void put_octal(char* p, std::size_t n, std::uint64_t value) {
  // n-1 zero-padded octal digits then NUL, as POSIX and Python's tarfile write them.
  for (std::size_t i = n - 1; i-- > 0;) {
    p[i] = static_cast<char>('0' + (value & 7));
    value >>= 3;
  }
  p[n - 1] = 0;
}

unsigned checksum_unsigned(const char* block) {
  unsigned sum = 0;
  for (std::size_t i = 0; i < kBlock; ++i)
    sum += (i >= kChksum && i < kChksum + kChksumLen) ? ' ' : static_cast<unsigned char>(block[i]);
  return sum;
}

// Some old tars summed signed chars; POSIX readers accept either.
int checksum_signed(const char* block) {
  int sum = 0;
  for (std::size_t i = 0; i < kBlock; ++i)
    sum += (i >= kChksum && i < kChksum + kChksumLen) ? ' ' : static_cast<signed char>(block[i]);
  return sum;
}

void fill_header(char block[kBlock], std::string_view name, std::string_view prefix,
                 std::uint64_t size, char type) {
  std::memset(block, 0, kBlock);
  if (!name.empty()) std::memcpy(block + kName, name.data(), std::min(name.size(), kNameLen));
  put_octal(block + kMode, kIdLen, 0644);
  put_octal(block + kUid, kIdLen, 0);
  put_octal(block + kGid, kIdLen, 0);
  put_octal(block + kSize, kSizeLen, size);
  put_octal(block + kMtime, kMtimeLen, 0);
  block[kType] = type;
  std::memcpy(block + kMagic, "ustar\0" "00", 8);
  // uname/gname stay empty: `tar tvf` then shows 0/0, and the bytes do not depend on the host.
  put_octal(block + kDevMajor, kIdLen, 0);
  put_octal(block + kDevMinor, kIdLen, 0);
  if (!prefix.empty()) std::memcpy(block + kPrefix, prefix.data(), std::min(prefix.size(), kPrefixLen));
  unsigned sum = checksum_unsigned(block);
  // Six octal digits, NUL, space: what GNU tar and Python write.
  put_octal(block + kChksum, 7, sum);
  block[kChksum + 7] = ' ';
}

// Splits a long name into ustar prefix and name at a '/', taking the longest prefix that fits
// (as Python's tarfile does): the shortest possible remainder.
bool split_ustar_name(std::string_view name, std::string_view& prefix, std::string_view& rest) {
  if (name.size() <= kNameLen) {
    prefix = {};
    rest = name;
    return true;
  }
  std::size_t limit = std::min(name.size() - 1, kPrefixLen);
  std::size_t slash = name.rfind('/', limit);
  if (slash == std::string_view::npos || slash == 0) return false;
  prefix = name.substr(0, slash);
  rest = name.substr(slash + 1);
  return !rest.empty() && rest.size() <= kNameLen;
}

std::string pax_record(const std::string& key, const std::string& value) {
  // "<len> <key>=<value>\n", where <len> counts the whole record including its own digits.
  std::size_t body = 1 + key.size() + 1 + value.size() + 1;
  std::size_t len = body + std::to_string(body).size();
  while (std::to_string(len).size() + body != len) len = body + std::to_string(len).size();
  return std::to_string(len) + " " + key + "=" + value + "\n";
}

std::string printable(std::string_view name) {
  std::string out;
  for (char c : name) {
    unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

Truncated::Truncated(const std::string& where, std::string detail)
    : TruncatedError(at(where, "truncated tar: " + detail)), detail_(std::move(detail)) {}

std::string unsafe_name_reason(std::string_view name) {
  if (name.empty()) return "empty member name";
  if (name.front() == '/') return "absolute path";
  if (name.find('\0') != std::string_view::npos) return "NUL byte in the name";
  std::size_t start = 0;
  while (start <= name.size()) {
    std::size_t end = name.find('/', start);
    if (end == std::string_view::npos) end = name.size();
    if (name.substr(start, end - start) == "..") return "'..' path component";
    start = end + 1;
  }
  return {};
}

bool format_ustar_header(char block[kBlock], std::string_view name, std::uint64_t size, char type) {
  std::string_view prefix, rest;
  if (size > kMaxOctalSize || !split_ustar_name(name, prefix, rest)) return false;
  fill_header(block, rest, prefix, size, type);
  return true;
}

// ---------------------------------------------------------------------------------------------
// Reader

Reader::Reader(std::FILE* in, std::string where) : input_(in, where), where_(std::move(where)) {}
Reader::~Reader() = default;

std::size_t Reader::read(char* buf, std::size_t n) {
  try {
    return input_.read(buf, n);
  } catch (const TruncatedInput& e) {
    throw Truncated(where_, e.detail());
  }
}

bool Reader::read_block(char* block, const char* what_if_cut) {
  std::size_t got = read(block, kBlock);
  if (got == 0) return false;
  if (got < kBlock) throw Truncated(where_, what_if_cut);
  return true;
}

void Reader::read_data(std::string& out, std::uint64_t size, const std::string& what) {
  out.clear();
  if (size <= kChunk * 16) out.reserve(size);
  std::uint64_t done = 0;
  while (done < size) {
    std::size_t chunk = static_cast<std::size_t>(std::min<std::uint64_t>(size - done, kChunk));
    out.resize(done + chunk);
    std::size_t got = read(out.data() + done, chunk);
    done += got;
    if (got < chunk) throw Truncated(where_, "cut inside the data of " + what);
  }
  std::size_t pad = static_cast<std::size_t>((kBlock - size % kBlock) % kBlock);
  char zeros[kBlock];
  if (pad && read(zeros, pad) < pad) throw Truncated(where_, "cut inside the padding after " + what);
}

void Reader::skip_data(std::uint64_t size, const std::string& what) {
  std::uint64_t total = (size + kBlock - 1) / kBlock * kBlock;
  std::vector<char> scratch(std::min<std::uint64_t>(total, 1 << 16));
  while (total > 0) {
    std::size_t chunk = static_cast<std::size_t>(std::min<std::uint64_t>(total, scratch.size()));
    if (read(scratch.data(), chunk) < chunk) throw Truncated(where_, "cut inside the data of " + what);
    total -= chunk;
  }
}

void Reader::check_trailer() {
  // After the end-of-archive blocks only zero padding may follow (tar pads to its record size,
  // 10240 bytes for Python and GNU tar). Anything else is most likely a second archive
  // concatenated to the first, which tar readers silently drop: refuse rather than lose it.
  std::vector<char> scratch(1 << 16);
  for (;;) {
    std::uint64_t base = input_.offset();
    std::size_t got = read(scratch.data(), scratch.size());
    if (got == 0) return;
    for (std::size_t i = 0; i < got; ++i)
      if (scratch[i] != 0)
        throw Error(at(where_, "data after the end-of-archive blocks at byte offset " +
                                   std::to_string(base + i) + " (concatenated archives are not read)"));
  }
}

bool Reader::next(Member& member) {
  if (ended_) return false;
  std::string long_name;  // from a GNU 'L' member
  std::string pax_path;
  bool have_long = false, have_pax_path = false, have_pax_size = false;
  std::uint64_t pax_size = 0;
  char block[kBlock];
  for (;;) {
    const bool pending = have_long || have_pax_path || have_pax_size;
    std::uint64_t offset = input_.offset();
    if (!read_block(block, pending ? "cut inside the header after an extended header"
                                   : "cut inside a member header")) {
      if (pending) throw Truncated(where_, "ended after an extended header, before its member");
      if (offset == 0) throw Truncated(where_, "empty input");
      throw Truncated(where_, "input ended at byte offset " + std::to_string(offset) + ", between two members");
    }
    if (all_zero(block, kBlock)) {
      if (pending) throw Error(at(where_, "extended header not followed by a member at byte offset " +
                                              std::to_string(offset)));
      if (!read_block(block, "cut inside the end-of-archive blocks"))
        throw Truncated(where_, "cut inside the end-of-archive blocks (one zero block of two)");
      if (!all_zero(block, kBlock))
        throw Error(at(where_, "a lone zero block at byte offset " + std::to_string(offset) +
                                   " is followed by more members"));
      check_trailer();
      ended_ = true;
      return false;
    }

    std::uint64_t stored = 0;
    bool sum_ok = parse_octal(block + kChksum, kChksumLen, stored) &&
                  (stored == checksum_unsigned(block) ||
                   static_cast<std::int64_t>(stored) == checksum_signed(block));
    if (!sum_ok) {
      if (offset == 0)
        throw Error(at(where_, "not a tar stream (no valid tar header at the start)"));
      throw Error(at(where_, "bad tar header checksum at byte offset " + std::to_string(offset) +
                                 " (corrupt stream)"));
    }
    std::uint64_t size = 0;
    if (!parse_number(reinterpret_cast<const unsigned char*>(block + kSize), kSizeLen, size))
      throw Error(at(where_, "bad size field in the tar header at byte offset " + std::to_string(offset)));
    if (have_pax_size) size = pax_size;
    const char type = block[kType];

    std::string name;
    if (have_long) {
      name = long_name;
    } else if (have_pax_path) {
      name = pax_path;
    } else {
      name = field_string(block + kName, kNameLen);
      // The prefix field exists only in POSIX ustar; GNU's "ustar  " keeps other data there.
      if (std::memcmp(block + kMagic, "ustar\0", 6) == 0) {
        std::string prefix = field_string(block + kPrefix, kPrefixLen);
        if (!prefix.empty()) name = prefix + "/" + name;
      }
    }

    if (type == 'x' || type == 'L' || type == 'g' || type == 'K') {
      const char* kind = type == 'x' ? "pax header" : type == 'g' ? "pax global header"
                                     : type == 'L' ? "GNU long name" : "GNU long link name";
      if (type == 'g' || type == 'K') {
        if (log::level() >= log::Level::verbose)
          log::debug(at(where_, std::string("ignoring a ") + kind + " at byte offset " + std::to_string(offset)));
        skip_data(size, std::string("a ") + kind);
        continue;
      }
      if (size > kMaxExtendedHeader)
        throw Error(at(where_, std::string(kind) + " of " + std::to_string(size) +
                                   " bytes at byte offset " + std::to_string(offset) + " is too large"));
      std::string data;
      read_data(data, size, std::string("a ") + kind);
      if (type == 'L') {
        long_name = field_string(data.data(), data.size());
        have_long = true;
        continue;
      }
      // pax records: "<len> <key>=<value>\n", <len> counting the whole record.
      std::size_t pos = 0;
      while (pos < data.size()) {
        if (data[pos] == 0) break;  // some writers pad the record area with NULs
        std::size_t sp = data.find(' ', pos);
        std::uint64_t len = 0;
        bool ok = sp != std::string::npos && sp > pos && sp - pos < 20;
        for (std::size_t i = pos; ok && i < sp; ++i) {
          if (data[i] < '0' || data[i] > '9') ok = false;
          else len = len * 10 + static_cast<std::uint64_t>(data[i] - '0');
        }
        ok = ok && len > sp - pos + 1 && pos + len <= data.size() && data[pos + len - 1] == '\n';
        std::size_t eq = ok ? data.find('=', sp + 1) : std::string::npos;
        if (!ok || eq == std::string::npos || eq >= pos + len - 1)
          throw Error(at(where_, "malformed pax header at byte offset " + std::to_string(offset)));
        std::string key = data.substr(sp + 1, eq - sp - 1);
        std::string value = data.substr(eq + 1, pos + len - 1 - (eq + 1));
        if (key == "path") {
          pax_path = value;
          have_pax_path = true;
        } else if (key == "size") {
          std::uint64_t v = 0;
          bool digits = !value.empty() && value.size() < 19;
          for (char c : value) {
            if (c < '0' || c > '9') digits = false;
            else v = v * 10 + static_cast<std::uint64_t>(c - '0');
          }
          if (!digits) throw Error(at(where_, "bad pax size '" + printable(value) + "' at byte offset " + std::to_string(offset)));
          pax_size = v;
          have_pax_size = true;
        } else if (key.rfind("GNU.sparse.", 0) == 0) {
          throw Error(at(where_, "sparse tar members are not supported (byte offset " + std::to_string(offset) + ")"));
        }
        pos += len;
      }
      continue;
    }

    std::string reason = unsafe_name_reason(name);
    if (!reason.empty())
      throw Error(at(where_, "refusing tar member '" + printable(name) + "': " + reason));

    if (type == '0' || type == '\0' || type == '7') {
      member.name = std::move(name);
      member.offset = offset;
      read_data(member.data, size, member.name);
      ++members_;
      return true;
    }
    if (type == 'S') throw Error(at(where_, "sparse tar member '" + printable(name) + "' is not supported"));
    // Links, devices, fifos and directories carry no data (POSIX; Python's tarfile reads them so);
    // other types (vendor extensions) are skipped with their data, as tar does.
    const bool no_data = type >= '1' && type <= '6';
    if (log::level() >= log::Level::verbose)
      log::debug(at(where_, std::string("skipping tar member '") + printable(name) + "' of type '" +
                                std::string(1, type) + "' (" + (type == '5' ? "directory" : "not a regular file") + ")"));
    if (!no_data) skip_data(size, "'" + printable(name) + "'");
    have_long = have_pax_path = have_pax_size = false;
  }
}

// ---------------------------------------------------------------------------------------------
// Writer

Writer::Writer(std::FILE* out, std::string where) : out_(out), where_(std::move(where)) {}

void Writer::put(const void* data, std::size_t size) {
  if (size == 0) return;
  if (std::fwrite(data, 1, size, out_) != size)
    throw Error(at(where_, std::string("write failed: ") + std::strerror(errno)));
  written_ += size;
}

void Writer::add(std::string_view name, std::string_view data) {
  if (name.empty() || name.find('\0') != std::string_view::npos)
    throw Error(at(where_, "cannot write a tar member named '" + printable(name) + "'"));
  char block[kBlock];
  if (!format_ustar_header(block, name, data.size(), '0')) {
    std::string records;
    std::string_view prefix, rest;
    const bool name_fits = split_ustar_name(name, prefix, rest);
    if (!name_fits) records += pax_record("path", std::string(name));
    const bool size_fits = data.size() <= kMaxOctalSize;
    if (!size_fits) records += pax_record("size", std::to_string(data.size()));
    // The pax member's name is Python's ("././@PaxHeader"): fixed, so the bytes stay deterministic.
    fill_header(block, "././@PaxHeader", {}, records.size(), 'x');
    put(block, kBlock);
    put(records.data(), records.size());
    static const char zeros[kBlock] = {};
    put(zeros, (kBlock - records.size() % kBlock) % kBlock);
    // The ustar header keeps what fits, for readers without pax: the name's first 100 bytes.
    if (name_fits) fill_header(block, rest, prefix, size_fits ? data.size() : 0, '0');
    else fill_header(block, name.substr(0, kNameLen), {}, size_fits ? data.size() : 0, '0');
  }
  put(block, kBlock);
  put(data.data(), data.size());
  static const char zeros[kBlock] = {};
  put(zeros, (kBlock - data.size() % kBlock) % kBlock);
}

void Writer::finish() {
  static const char zeros[2 * kBlock] = {};
  put(zeros, sizeof zeros);
  if (std::fflush(out_) != 0 || std::ferror(out_))
    throw Error(at(where_, std::string("write failed: ") + std::strerror(errno)));
}

}  // namespace cx::io::tar
