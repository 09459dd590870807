// The CheXmask RLE decoder (data/rle) as a chexmask row's mask is decoded: the input is
// "HEIGHT WIDTH\nLEFT\nRIGHT\nHEART" (missing lines are empty runs). A label map decoded must
// encode back to runs that decode to the same map.
#include "common.hpp"
#include "cx/data/rle.hpp"

#include <sstream>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  std::istringstream in(text);
  std::string dims, left, right, heart;
  std::getline(in, dims);
  std::getline(in, left);
  std::getline(in, right);
  std::getline(in, heart);
  long long h = 0, w = 0;
  if (std::sscanf(dims.c_str(), "%lld %lld", &h, &w) != 2) return 0;
  if (h < INT32_MIN || h > INT32_MAX || w < INT32_MIN || w > INT32_MAX) return 0;  // the CSV cell is an int
  cx::fuzz::run([&] {
    const cx::Image map = cx::data::chexmask_label_map(left, right, heart, int(h), int(w), "train.csv:2");
    if (map.samples() > (std::size_t{1} << 20)) return;  // the round trip of a large map costs seconds
    for (std::uint8_t v = 1; v <= 3; ++v) {
      const std::string runs = cx::data::rle_encode_value(map.u8(), map.height, map.width, v);
      const std::vector<std::uint8_t> back = cx::data::rle_decode(runs, map.height, map.width, "round trip");
      for (std::size_t i = 0; i < back.size(); ++i)
        if (back[i] != (map.u8()[i] == v)) {
          CX_FUZZ_REPORT("RLE round trip differs at %zu\n", i);
          std::abort();
        }
    }
  });
  cx::fuzz::run([&] { (void)cx::data::rle_decode(left, int(h), int(w), "train.csv:2: Left Lung"); });
  return 0;
}
