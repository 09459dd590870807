// decoder.json of a small report decoder folder (train/report_decoder_config.cpp, in cx_core), as
// cx-report generate and load_report_decoder read it: read_report_decoder_config(path), the parameter
// count and layout derived from it, and the JSON written back, which must read back to the same
// config (a changed tree is a finding: a folder written by cx-report would then load as another model).
#include "common.hpp"
#include "cx/io/json_file.hpp"
#include "cx/train/report_decoder_config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string path = cx::fuzz::write_input("decoder.json", data, size);
  cx::fuzz::run([&] {
    const cx::train::ReportDecoderConfig c = cx::train::read_report_decoder_config(path);
    (void)c.parameter_count();
    (void)c.memory.slots();
    (void)c.memory.describe();
    const nlohmann::json j = cx::train::report_decoder_config_to_json(c);
    const std::string text = j.dump(2);
    const cx::train::ReportDecoderConfig back =
        cx::train::parse_report_decoder_config(cx::io::parse_json(text, "round-trip"), "round-trip");
    if (cx::train::report_decoder_config_to_json(back) != j) {
      CX_FUZZ_REPORT("the decoder.json round trip changed the config:\n%s\n", text.c_str());
      std::abort();
    }
  });
  return 0;
}
