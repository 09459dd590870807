// A model folder's preprocessor_config.json (image/preprocess) as cx-embed uses it: from_file(path),
// then the pipeline it describes run on a small 8-bit gray image, as every input image would be.
#include "common.hpp"
#include "cx/image/preprocess.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = cx::fuzz::write_input("preprocessor_config.json", data, size);
  cx::fuzz::run([&] {
    const cx::image::PreprocessConfig c = cx::image::PreprocessConfig::from_file(path);
    cx::Image im = cx::Image::gray8(13, 9);
    for (std::size_t i = 0; i < im.data.size(); ++i) im.data[i] = static_cast<std::uint8_t>(i * 7);
    const cx::image::PixelValues pv = cx::image::preprocess(im, c);
    if (pv.data.size() != std::size_t(3) * pv.height * pv.width) std::abort();
    (void)cx::image::input_window(13, 9, c);
  });
  return 0;
}
