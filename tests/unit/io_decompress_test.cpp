// lib/cx/io/decompress: one decompressing input for streams, tables and label files. gzip and zstd
// read exactly as the plain bytes, members and frames back to back, a cut anywhere refused as
// truncated, corrupt data and unsupported formats refused by name.
#include <gtest/gtest.h>
#include <unistd.h>
#include <zlib.h>
#include <zstd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "cx/cli/error.hpp"
#include "cx/io/decompress.hpp"

namespace fs = std::filesystem;
using cx::io::Compression;
using cx::io::DecompressingInput;

namespace {

struct FileCloser {
  void operator()(std::FILE* f) const {
    if (f) std::fclose(f);
  }
};
using FilePtr = std::unique_ptr<std::FILE, FileCloser>;

FilePtr input_of(const std::string& bytes) {
  FilePtr f(std::tmpfile());
  if (!bytes.empty()) std::fwrite(bytes.data(), 1, bytes.size(), f.get());
  std::rewind(f.get());
  return f;
}

// Bytes that compress somewhat but not to nothing: text-like runs and noise.
std::string sample(std::size_t n) {
  std::string s(n, '\0');
  std::uint32_t x = 7;
  for (std::size_t i = 0; i < n; ++i) {
    x = x * 1103515245u + 12345u;
    s[i] = (i / 64) % 3 == 0 ? static_cast<char>(x >> 24) : static_cast<char>('a' + (i % 26));
  }
  return s;
}

std::string gzip(const std::string& data) {
  z_stream z{};
  EXPECT_EQ(deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY), Z_OK);
  std::string out(deflateBound(&z, data.size()) + 64, '\0');
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(data.data()));
  z.avail_in = static_cast<uInt>(data.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  EXPECT_EQ(deflate(&z, Z_FINISH), Z_STREAM_END);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

std::string zstd(const std::string& data, bool checksum = true) {
  std::unique_ptr<ZSTD_CCtx, std::size_t (*)(ZSTD_CCtx*)> c(ZSTD_createCCtx(), ZSTD_freeCCtx);
  ZSTD_CCtx_setParameter(c.get(), ZSTD_c_checksumFlag, checksum ? 1 : 0);
  std::string out(ZSTD_compressBound(data.size()), '\0');
  const std::size_t n = ZSTD_compress2(c.get(), out.data(), out.size(), data.data(), data.size());
  EXPECT_FALSE(ZSTD_isError(n)) << ZSTD_getErrorName(n);
  out.resize(n);
  return out;
}

// Everything the input gives, read in pieces of `piece` bytes.
std::string read_all(const std::string& bytes, std::size_t piece = 1 << 16, Compression* seen = nullptr) {
  FilePtr f = input_of(bytes);
  DecompressingInput in(f.get(), "test.bin");
  if (seen) *seen = in.compression();
  std::string out, buf(piece, '\0');
  for (;;) {
    const std::size_t n = in.read(buf.data(), piece);
    out.append(buf.data(), n);
    if (n < piece) break;
  }
  EXPECT_EQ(in.offset(), out.size());
  EXPECT_EQ(in.read(buf.data(), piece), 0u) << "read after the end stays at the end";
  return out;
}

template <class E>
std::string error_reading(const std::string& bytes) {
  try {
    read_all(bytes);
  } catch (const E& e) {
    return e.what();
  } catch (const std::exception& e) {
    return std::string("wrong exception type: ") + e.what();
  }
  return "(no error)";
}

}  // namespace

TEST(Decompress, GzipAndZstdReadAsThePlainBytes) {
  const std::string plain = sample(1 << 20);
  for (std::size_t piece : {std::size_t{1} << 20, std::size_t{65536}, std::size_t{4097}, std::size_t{7}}) {
    Compression c{};
    EXPECT_EQ(read_all(plain, piece, &c), plain) << piece;
    EXPECT_EQ(c, Compression::none);
    EXPECT_EQ(read_all(gzip(plain), piece, &c), plain) << piece;
    EXPECT_EQ(c, Compression::gzip);
    EXPECT_EQ(read_all(zstd(plain), piece, &c), plain) << piece;
    EXPECT_EQ(c, Compression::zstd);
  }
  // Empty data, compressed or not, is empty.
  EXPECT_EQ(read_all(""), "");
  EXPECT_EQ(read_all(gzip("")), "");
  EXPECT_EQ(read_all(zstd("")), "");
  // One byte that merely starts like a magic is plain.
  EXPECT_EQ(read_all("\x1f"), "\x1f");
}

TEST(Decompress, MembersAndFramesBackToBackAreOneInput) {
  const std::string a = sample(100000), b = sample(3000) + "tail";
  EXPECT_EQ(read_all(gzip(a) + gzip(b)), a + b);
  EXPECT_EQ(read_all(zstd(a) + zstd(b, false) + zstd("")), a + b);
  // A skippable frame (magic 0x184D2A50, little-endian length, data) between two frames.
  const std::string skippable = std::string("\x50\x2a\x4d\x18\x05\x00\x00\x00", 8) + "ignore";
  EXPECT_EQ(read_all(zstd(a) + skippable.substr(0, 13) + zstd(b)), a + b);
}

// A compressed input cut at any byte is truncated, never a short clean read, wherever the cut falls
// (inside the header, the data, or only the trailer's checksum and length).
TEST(Decompress, CutCompressedInputIsTruncatedAtEveryByte) {
  const std::string plain = sample(5000);
  const std::string gz = gzip(plain), zs = zstd(plain);
  for (std::size_t cut = 2; cut < gz.size(); ++cut) {
    const std::string msg = error_reading<cx::io::TruncatedInput>(gz.substr(0, cut));
    ASSERT_EQ(msg, "test.bin: truncated gzip data (the input ends inside a gzip member)") << cut;
  }
  for (std::size_t cut = 4; cut < zs.size(); ++cut) {
    const std::string msg = error_reading<cx::io::TruncatedInput>(zs.substr(0, cut));
    ASSERT_EQ(msg, "test.bin: truncated zstd data (the input ends inside a zstd frame)") << cut;
  }
  // A second member or frame cut short too.
  EXPECT_NE(error_reading<cx::TruncatedError>(gz + gz.substr(0, 30)).find("truncated gzip"), std::string::npos);
  EXPECT_NE(error_reading<cx::TruncatedError>(zs + zs.substr(0, 30)).find("truncated zstd"), std::string::npos);
}

TEST(Decompress, CorruptDataAndOtherFormatsAreRefusedByName) {
  std::string gz = gzip(sample(20000)), zs = zstd(sample(20000));
  gz[gz.size() / 2] ^= 0x55;
  zs[zs.size() / 2] ^= 0x55;
  EXPECT_NE(error_reading<cx::Error>(gz).find("test.bin: corrupt gzip data"), std::string::npos);
  EXPECT_NE(error_reading<cx::Error>(zs).find("test.bin: corrupt zstd data"), std::string::npos);
  // Bytes after a gzip member that are not another member.
  EXPECT_NE(error_reading<cx::Error>(gzip("abc") + "garbage!").find("corrupt gzip data"), std::string::npos);
  EXPECT_NE(error_reading<cx::Error>(std::string("\xfd" "7zXZ\0", 6) + "xxxx").find("xz-compressed input is not supported"),
            std::string::npos);
  EXPECT_NE(error_reading<cx::Error>("BZh91AY&SYxxxx").find("bzip2-compressed input is not supported"), std::string::npos);
}

TEST(Decompress, OpenNamesThePathAndReadsWholeFiles) {
  const fs::path dir = fs::temp_directory_path() / ("cx_decompress_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string plain = sample(300000);
  std::ofstream(dir / "a.zst", std::ios::binary) << zstd(plain);
  EXPECT_EQ(cx::io::read_decompressed((dir / "a.zst").string()), plain);
  auto in = DecompressingInput::open((dir / "a.zst").string());
  EXPECT_EQ(in->where(), (dir / "a.zst").string());
  EXPECT_TRUE(in->compressed());
  try {
    DecompressingInput::open((dir / "absent.gz").string());
    ADD_FAILURE() << "opened a missing file";
  } catch (const cx::Error& e) {
    EXPECT_EQ(std::string(e.what()), (dir / "absent.gz").string() + ": cannot open: No such file or directory");
  }
  fs::remove_all(dir);
}

// Through a pipe, in small writes: no seeking, the magic is found in a short first read.
TEST(Decompress, ReadsCompressedInputFromAPipe) {
  const std::string plain = sample(2 << 20);
  for (const std::string& packed : {gzip(plain), zstd(plain)}) {
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    std::thread writer([&] {
      for (std::size_t at = 0, n = 0; at < packed.size(); at += n) {
        n = std::min<std::size_t>(at < 30 ? 3 : 4096, packed.size() - at);  // the magic in pieces too
        if (::write(fds[1], packed.data() + at, n) != static_cast<ssize_t>(n)) break;
      }
      ::close(fds[1]);
    });
    FilePtr r(::fdopen(fds[0], "rb"));
    DecompressingInput in(r.get(), "pipe");
    std::string out, buf(1 << 16, '\0');
    for (std::size_t n; (n = in.read(buf.data(), buf.size())) > 0;) out.append(buf.data(), n);
    writer.join();
    EXPECT_EQ(out, plain);
  }
}
