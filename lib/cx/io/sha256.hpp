#pragma once
// SHA-256 (FIPS 180-4), for the provenance of model weights: the hex digest of a file equals what
// `sha256sum` prints and what the Hugging Face hub shows as a weight file's LFS oid. Uses the x86
// SHA extensions when the CPU has them (~1.5-2 GB/s against ~0.2 GB/s portable): a ViT-B checkpoint
// is hashed on every load.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace cx::io {

class Sha256 {
 public:
  Sha256();
  void update(const void* data, std::size_t size);
  std::array<std::uint8_t, 32> digest();  // finishes; the object must not be updated afterwards
  std::string hex_digest();

 private:
  void compress(const std::uint8_t* blocks, std::size_t count);
  std::array<std::uint32_t, 8> state_;
  std::array<std::uint8_t, 64> buffer_;
  std::size_t buffered_ = 0;
  std::uint64_t total_ = 0;
};

std::string sha256_hex(const void* data, std::size_t size);
std::string sha256_hex(const std::string& bytes);
// Reads the file in chunks; throws cx::Error naming the file when it cannot be read.
std::string sha256_file_hex(const std::string& path);

namespace detail {
// The block function, both implementations, for tests: `count` 64-byte blocks into `state`.
void sha256_blocks_portable(std::uint32_t state[8], const std::uint8_t* blocks, std::size_t count);
bool sha256_hardware_available();
void sha256_blocks_hardware(std::uint32_t state[8], const std::uint8_t* blocks, std::size_t count);  // needs it
}  // namespace detail

}  // namespace cx::io
