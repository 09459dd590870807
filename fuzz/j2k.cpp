// The JPEG 2000 frame decoder read_dicom calls for transfer syntaxes .90/.91 (dicom/j2k, OpenJPEG):
// decode_j2k on the fragment bytes.
#include "common.hpp"
#include "cx/dicom/j2k.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  cx::fuzz::run([&] {
    (void)cx::dicom::looks_like_j2k(data, size);
    const cx::dicom::J2kFrame f = cx::dicom::decode_j2k(data, size, "frame 1");
    if (f.samples.size() != static_cast<std::size_t>(f.width) * f.height * f.components) std::abort();
  });
  return 0;
}
