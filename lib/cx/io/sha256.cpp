#include "cx/io/sha256.hpp"

#include <openssl/evp.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include "cx/cli/error.hpp"

namespace cx::io {

namespace {
EVP_MD_CTX* new_context() {
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  if (!ctx) throw std::bad_alloc();
  return ctx;
}
[[noreturn]] void evp_failed(const char* what) { throw Error(std::string("sha256: libcrypto ") + what + " failed"); }
}  // namespace

Sha256::Sha256() : ctx_(new_context()) {
  if (EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1) {
    EVP_MD_CTX_free(ctx_);
    evp_failed("EVP_DigestInit_ex");
  }
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_); }

Sha256::Sha256(const Sha256& other) : ctx_(new_context()) {
  if (EVP_MD_CTX_copy_ex(ctx_, other.ctx_) != 1) {
    EVP_MD_CTX_free(ctx_);
    evp_failed("EVP_MD_CTX_copy_ex");
  }
}

Sha256& Sha256::operator=(const Sha256& other) {
  if (this != &other && EVP_MD_CTX_copy_ex(ctx_, other.ctx_) != 1) evp_failed("EVP_MD_CTX_copy_ex");
  return *this;
}

void Sha256::update(const void* data, std::size_t size) {
  if (size > 0 && EVP_DigestUpdate(ctx_, data, size) != 1) evp_failed("EVP_DigestUpdate");
}

std::array<std::uint8_t, 32> Sha256::digest() {
  std::array<std::uint8_t, 32> out;
  unsigned len = 0;
  if (EVP_DigestFinal_ex(ctx_, out.data(), &len) != 1 || len != out.size()) evp_failed("EVP_DigestFinal_ex");
  return out;
}

std::string Sha256::hex_digest() {
  static const char* digits = "0123456789abcdef";
  std::string hex;
  for (std::uint8_t byte : digest()) {
    hex += digits[byte >> 4];
    hex += digits[byte & 15];
  }
  return hex;
}

std::string sha256_hex(const void* data, std::size_t size) {
  Sha256 h;
  h.update(data, size);
  return h.hex_digest();
}

std::string sha256_hex(const std::string& bytes) { return sha256_hex(bytes.data(), bytes.size()); }

std::string sha256_file_hex(const std::string& path) {
  std::unique_ptr<std::FILE, int (*)(std::FILE*)> file(std::fopen(path.c_str(), "rb"), &std::fclose);
  if (!file) throw Error(at(path, std::string("cannot open: ") + std::strerror(errno)));
  Sha256 h;
  std::vector<std::uint8_t> chunk(1 << 20);
  for (;;) {
    std::size_t n = std::fread(chunk.data(), 1, chunk.size(), file.get());
    if (n > 0) h.update(chunk.data(), n);
    if (n < chunk.size()) {
      if (std::ferror(file.get())) throw Error(at(path, std::string("read error: ") + std::strerror(errno)));
      break;
    }
  }
  return h.hex_digest();
}

}  // namespace cx::io
