// .npy fields (io/npy) as cx-embed, cx-classify and cx-segment read them: read_npy on the member's
// bytes, then to_floats(). A file that parses must write back (write_npy, npy_header of
// io/npy_matrix) and read back as the same array.
#include <cstring>

#include "common.hpp"
#include "cx/io/npy.hpp"
#include "cx/io/npy_matrix.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string bytes(reinterpret_cast<const char*>(data), size);
  cx::fuzz::run([&] {
    cx::io::NdArray a = cx::io::read_npy(bytes, "0001.cls.npy");
    const std::vector<float> v = a.to_floats();
    if (static_cast<std::int64_t>(v.size()) != a.numel()) std::abort();
    const cx::io::NdArray b = cx::io::read_npy(cx::io::write_npy(a), "round trip");
    if (b.dtype != a.dtype || b.shape != a.shape || b.data != a.data) {
      CX_FUZZ_REPORT(".npy round trip differs\n");
      std::abort();
    }
    if (a.dtype == cx::io::DType::f32 && a.shape.size() == 2) (void)cx::io::npy_header("<f4", a.shape);
  });
  return 0;
}
