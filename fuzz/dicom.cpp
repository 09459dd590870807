// DICOM through DCMTK (dicom/dicom; the JPEG 2000 transfer syntaxes go to dicom/j2k): read_dicom
// on a file, the header as JSON, and the display rendering cx-ingest applies.
#include "common.hpp"
#include "cx/dicom/dicom.hpp"
#include "cx/image/window.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = cx::fuzz::write_input("image.dcm", data, size);
  cx::fuzz::run([&] {
    const cx::dicom::DicomImage d = cx::dicom::read_dicom(path);
    cx::fuzz::dump_like_ingest(cx::dicom::dicom_metadata_json(d));
    if (d.stored.size() != d.pixel_count() * d.samples_per_pixel) {
      CX_FUZZ_REPORT("%zu stored values for %dx%dx%d\n", d.stored.size(), d.width, d.height,
                   d.samples_per_pixel);
      std::abort();
    }
    (void)cx::image::render_dicom(d);
  });
  return 0;
}
