// SHA-256 against the FIPS 180-4 / NIST example vectors and coreutils' sha256sum.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <unistd.h>

#include "cx/cli/error.hpp"
#include "cx/io/sha256.hpp"

namespace {

TEST(Sha256, NistVectors) {
  EXPECT_EQ(cx::io::sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(cx::io::sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // 56 bytes: the length no longer fits in the first block's padding.
  EXPECT_EQ(cx::io::sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  EXPECT_EQ(cx::io::sha256_hex(std::string(1000000, 'a')),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

// Feeding the data in pieces of every size gives the one-shot digest (buffering across blocks).
TEST(Sha256, IncrementalUpdatesMatchOneShot) {
  std::string data;
  for (int i = 0; i < 1000; ++i) data += static_cast<char>(i % 256);
  const std::string expected = "a8af099bf2e878609558dbf69d8f88f4a31040a8cf84b549a0cfa912f12ffc3f";  // Python hashlib
  ASSERT_EQ(cx::io::sha256_hex(data), expected);
  for (size_t piece : {1, 3, 63, 64, 65, 127, 500}) {
    cx::io::Sha256 h;
    for (size_t i = 0; i < data.size(); i += piece) h.update(data.data() + i, std::min(piece, data.size() - i));
    EXPECT_EQ(h.hex_digest(), expected) << "piece " << piece;
  }
}

// A copy carries the state: the digest of a prefix, then the whole, from one pass (Python hashlib's
// figures for "abc" and "abcdef").
TEST(Sha256, CopyDigestsAPrefixAndTheOriginalGoesOn) {
  cx::io::Sha256 h;
  h.update("abc", 3);
  cx::io::Sha256 prefix(h);
  h.update("def", 3);
  EXPECT_EQ(prefix.hex_digest(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(h.hex_digest(), "bef57ec7f53a6d40beb640a780a639c83bc29ac8a9816f1fc6c5c6dcd93c4721");
  cx::io::Sha256 assigned;
  assigned.update("zzz", 3);
  cx::io::Sha256 fresh;
  fresh.update("ab", 2);
  assigned = fresh;  // replaces the state
  assigned.update("c", 1);
  EXPECT_EQ(assigned.hex_digest(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(Sha256, FileAndMissingFile) {
  char path[] = "/tmp/cx_sha256_XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  const std::string data(1000000, 'a');
  ASSERT_EQ(write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  close(fd);
  EXPECT_EQ(cx::io::sha256_file_hex(path), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  std::remove(path);
  try {
    cx::io::sha256_file_hex(path);
    FAIL() << "no error";
  } catch (const cx::Error& e) {
    EXPECT_NE(std::string(e.what()).find(path), std::string::npos) << e.what();
  }
}

}  // namespace
