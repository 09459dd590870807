// One dataset adapter (data/adapters, adapter_*.cpp) reading its label files as cx-ingest
// --dataset NAME does: open_dataset(NAME, {label_file, root}) and every item pulled, CheXmask rows'
// masks decoded (read_label_map). Built once per dataset with CX_FUZZ_DATASET="NAME".
// The input is the label file, optionally followed by the sibling files the adapter looks for,
// each after a line "#--next-file--" (kFiles below lists them in order). Siblings not given are
// absent.
#include <cstring>
#include <filesystem>
#include <map>
#include <vector>

#include "common.hpp"
#include "cx/data/adapters.hpp"

#ifndef CX_FUZZ_DATASET
#error "CX_FUZZ_DATASET must name the dataset"
#endif

namespace {

const std::map<std::string, std::vector<std::string>> kFiles = {
    {"chexpert", {"train.csv"}},
    {"nih", {"Data_Entry_2017.csv", "BBox_List_2017.csv", "train_val_list.txt", "test_list.txt"}},
    {"mimic", {"mimic-cxr-2.0.0-metadata.csv", "mimic-cxr-2.0.0-chexpert.csv", "mimic-cxr-2.0.0-split.csv"}},
    {"rsna", {"stage_2_train_labels.csv", "stage_2_detailed_class_info.csv"}},
    {"vindr", {"train.csv"}},
    {"padchest", {"PADCHEST_chest_x_ray_images_labels_160K_01.02.19.csv"}},
    {"chexmask", {"CheXpert.csv"}},
    {"reports", {"1.xml"}},      // a report not starting with '<' is written as s50000001.txt instead
    {"folder", {"labels.tsv"}},  // beside a.png and b/c.png, which the folder adapter lists
};

constexpr const char* kSeparator = "\n#--next-file--\n";

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace fs = std::filesystem;
  const std::string dataset = CX_FUZZ_DATASET;
  const std::vector<std::string>& names = kFiles.at(dataset);
  const std::string input(reinterpret_cast<const char*>(data), size);
  std::vector<std::string> parts;
  for (std::size_t p = 0;;) {
    const std::size_t q = input.find(kSeparator, p);
    parts.push_back(input.substr(p, q == std::string::npos ? std::string::npos : q - p));
    if (q == std::string::npos || parts.size() == names.size()) break;
    p = q + std::strlen(kSeparator);
  }
  const std::string dir = cx::fuzz::scratch_dir() + "/" + dataset;
  std::error_code ec;
  fs::remove_all(dir, ec);
  fs::create_directories(dir);
  cx::data::AdapterOptions o;
  o.root = dir;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    std::string name = names[i];
    if (dataset == "reports" && (parts[i].empty() || parts[i][0] != '<')) name = "s50000001.txt";
    cx::fuzz::write_input(dataset + "/" + name, parts[i]);
    if (i == 0) o.label_file = dir + "/" + name;
  }
  if (dataset == "folder") {
    o.labels_tsv = o.label_file;
    o.label_file = dir;
    static const std::uint8_t png[] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    cx::fuzz::write_input(dataset + "/a.png", png, sizeof png);
    fs::create_directories(dir + "/b");
    cx::fuzz::write_input(dataset + "/b/c.png", png, sizeof png);
  }
  cx::fuzz::run([&] {
    auto source = cx::data::open_dataset(dataset, o);
    (void)source->label_set();
    (void)source->mask_classes();
    cx::data::IngestItem item;
    for (int n = 0; n < 100000 && source->next(item); ++n) {
      cx::fuzz::dump_like_ingest(item.meta);  // written as <key>.json
      if (item.key.empty() || item.key.find_first_of("./") != std::string::npos) {
        CX_FUZZ_REPORT("record key '%s' breaks the stream's key rule\n", item.key.c_str());
        std::abort();
      }
      if (item.mask) cx::fuzz::run([&] { (void)cx::data::read_label_map(item); });
    }
  });
  return 0;
}
