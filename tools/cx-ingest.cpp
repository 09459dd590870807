// cx-ingest: radiographs and dataset label files into a cx record stream (man 1 cx-ingest).
#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>
#ifdef __GLIBC__  // defined by the C library's headers above
#include <malloc.h>
#endif

#include "cx/cli/error.hpp"
#include "cx/cli/log.hpp"
#include "cx/cli/output.hpp"
#include "cx/cli/progress.hpp"
#include "cx/cli/tool.hpp"
#include "cx/data/adapters.hpp"
#include "cx/data/ingest.hpp"
#include "cx/io/stream.hpp"

namespace {

std::vector<std::string> split_list(const std::string& s, bool to_upper) {
  std::vector<std::string> out;
  std::size_t b = 0;
  while (b <= s.size()) {
    std::size_t e = s.find(',', b);
    if (e == std::string::npos) e = s.size();
    std::string t = s.substr(b, e - b);
    t.erase(0, t.find_first_not_of(" \t"));
    t.erase(t.find_last_not_of(" \t") + 1);
    if (to_upper)
      for (char& c : t) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    if (!t.empty()) out.push_back(t);
    b = e + 1;
  }
  return out;
}

double parse_double(const std::string& s, const std::string& what) {
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  if (s.empty() || end != s.c_str() + s.size() || !std::isfinite(v)) throw cx::UsageError(what + ": '" + s + "' is not a number");
  return v;
}

}  // namespace

int main(int argc, char** argv) {
#ifdef __GLIBC__
  // Every image allocates and frees a few large buffers. By default glibc hands their pages back
  // to the kernel after each image and faults fresh zeroed pages in for the next: a quarter of
  // the CPU time on PNG input. Keeping freed memory for reuse costs nothing in peak memory, which
  // the in-flight window bounds.
  mallopt(M_MMAP_THRESHOLD, 32 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
#endif
  cx::cli::Tool tool("cx-ingest",
                     "Radiographs (DICOM, PNG, JPEG) and dataset label files into one record stream.\n"
                     "  cx-ingest [options] FILE|FOLDER... > s.cx\n"
                     "  cx-ingest [options] --dataset NAME LABELFILE [--root DIR] > s.cx");
  auto& app = tool.app();
  std::vector<std::string> inputs;
  std::string dataset, root, labels_tsv, reports, views, splits, shard, window, filter = "bicubic";
  std::string masks, mask_classes;
  int mask_threshold = -1;
  long long limit = -1;
  int depth = 8, size = 0, compression = 1;
  bool equalize = false, skip_bad = false;

  app.add_option("inputs", inputs, "Image files and folders (one record each), or the dataset's label file")
      ->type_name("FILE");
  app.add_option("--dataset", dataset,
                 "Read LABELFILE as this dataset: chexpert, nih, mimic, rsna, vindr, padchest, chexmask, folder, reports")
      ->type_name("NAME");
  app.add_option("--root", root, "Image folder of the dataset (default: inferred from the label file's place)")
      ->type_name("DIR");
  app.add_option("--labels", labels_tsv, "folder: a labels table (key, then one column per class; 1/0/-1/blank)")
      ->type_name("FILE");
  app.add_option("--reports", reports, "mimic: attach reports from a mimic-cxr-reports tree (files/pXX/pSUBJECT/sSTUDY.txt)")
      ->type_name("DIR");
  app.add_option("--view", views, "Keep only these views, e.g. PA,AP (case-insensitive; records of unknown view are dropped)")
      ->type_name("LIST");
  app.add_option("--split", splits, "Keep only these splits, e.g. train or validate,test")->type_name("LIST");
  app.add_option("--limit", limit, "Take at most N inputs (after --view, --split and --shard)")
      ->type_name("N")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--shard", shard, "Take every n-th input starting at i (0 <= i < n), after --view and --split")
      ->type_name("i/n");
  app.add_option("--depth", depth, "Bits per sample of the written images: 8 or 16")
      ->type_name("8|16")
      ->check(CLI::IsMember({8, 16}))
      ->capture_default_str();
  app.add_flag("--equalize", equalize, "Histogram-equalise the image (Pillow's ImageOps.equalize), before resizing");
  app.add_option("--size", size, "Resize so the shorter side is N pixels (default: keep the size)")
      ->type_name("N")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--filter", filter, "Resize filter: bicubic (Pillow's, antialiased), area, bilinear, lanczos, nearest")
      ->type_name("NAME")
      ->capture_default_str();
  app.add_option("--window", window, "VOI window CENTER,WIDTH for every image (use --window=-600,1500 for a negative center)")
      ->type_name("C,W");
  auto* masks_opt = app.add_option("--masks", masks,
                                   "Attach a mask file to every item from DIR: <stem>_mask.png, <stem>.mask.png or <stem>.png")
                        ->type_name("DIR");
  app.add_option("--mask-threshold", mask_threshold, "Binarise the mask files: value >= T is 1, else 0 (anti-aliased masks)")
      ->type_name("T")
      ->check(CLI::Range(1, 65535))
      ->needs(masks_opt);
  app.add_option("--mask-classes", mask_classes, "Names of the mask values 1, 2, ... (comma-separated), e.g. lung")
      ->type_name("LIST")
      ->needs(masks_opt);
  app.add_option("--compression", compression, "zlib level of the written PNGs, 0-9")
      ->type_name("N")
      ->check(CLI::Range(0, 9))
      ->capture_default_str();
  app.add_flag("--skip-bad", skip_bad,
               "Skip inputs that cannot be read (each named on stderr); exit 3 when any was skipped");
  tool.add_output_option();
  tool.add_threads_option();
  tool.add_provenance_option();

  return tool.run(argc, argv, [&]() -> int {
    namespace data = cx::data;
    data::IngestOptions options;
    options.depth = depth;
    options.equalize = equalize;
    options.size = size;
    options.png_compression = compression;
    options.filter = cx::image::filter_from_name(filter, "--filter");
    if (!window.empty()) {
      auto parts = split_list(window, false);
      if (parts.size() != 2) throw cx::UsageError("--window: expected CENTER,WIDTH, not '" + window + "'");
      double c = parse_double(parts[0], "--window center"), w = parse_double(parts[1], "--window width");
      if (w < 1) throw cx::UsageError("--window: width must be >= 1, not " + parts[1]);
      options.window = std::make_pair(c, w);
    }
    long long shard_i = 0, shard_n = 1;
    if (!shard.empty()) {
      auto slash = shard.find('/');
      char* e1 = nullptr;
      char* e2 = nullptr;
      std::string a = shard.substr(0, slash), b = slash == std::string::npos ? "" : shard.substr(slash + 1);
      shard_i = std::strtoll(a.c_str(), &e1, 10);
      shard_n = std::strtoll(b.c_str(), &e2, 10);
      if (slash == std::string::npos || a.empty() || b.empty() || *e1 || *e2 || shard_n < 1 || shard_i < 0 || shard_i >= shard_n)
        throw cx::UsageError("--shard: expected i/n with 0 <= i < n, not '" + shard + "'");
    }
    const std::vector<std::string> view_list = split_list(views, true);
    const std::vector<std::string> split_list_ = split_list(splits, false);
    if (!views.empty() && view_list.empty()) throw cx::UsageError("--view: empty list");
    if (!splits.empty() && split_list_.empty()) throw cx::UsageError("--split: empty list");

    std::unique_ptr<data::ItemSource> source;
    if (!dataset.empty()) {
      auto names = tool.inputs_or_stdin(inputs);
      if (names.size() != 1)
        throw cx::UsageError("--dataset " + dataset + " takes one label file (or folder), not " + std::to_string(names.size()));
      data::AdapterOptions ao;
      ao.label_file = names.front();
      ao.root = root;
      ao.labels_tsv = labels_tsv;
      ao.reports = reports;
      std::string d = dataset;
      for (char& c : d) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (!labels_tsv.empty() && d != "folder") throw cx::UsageError("--labels is for --dataset folder");
      if (!reports.empty() && d != "mimic" && d != "mimic-cxr") throw cx::UsageError("--reports is for --dataset mimic");
      if (!masks.empty() && d == "chexmask") throw cx::UsageError("--masks: the chexmask dataset brings its own masks");
      source = data::open_dataset(dataset, ao);
    } else {
      if (!root.empty() || !labels_tsv.empty() || !reports.empty())
        throw cx::UsageError("--root, --labels and --reports need --dataset");
      source = data::open_files(tool.inputs_or_stdin(inputs));
    }
    if (!masks.empty()) {
      data::MaskFileOptions mo;
      mo.dir = masks;
      if (mask_threshold > 0) mo.threshold = mask_threshold;
      mo.classes = split_list(mask_classes, false);
      if (!mask_classes.empty() && mo.classes.empty()) throw cx::UsageError("--mask-classes: empty list");
      source = data::with_mask_files(std::move(source), mo);
    }

    nlohmann::json header = cx::io::new_stream_header();
    header["fields"] = data::ingest_fields(depth, *source);
    header["dataset"] = source->dataset();
    if (const data::LabelSet* set = source->label_set()) {
      header["labels"] = set->classes;
      header["label_set"] = set->name;
    }
    header["label_coding"] = data::label_coding_json();
    header["ingest"] = {{"depth", depth},
                        {"equalize", equalize},
                        {"size", size},
                        {"resize_filter", cx::image::filter_name(options.filter)},
                        {"window", options.window ? nlohmann::json{options.window->first, options.window->second}
                                                  : nlohmann::json(nullptr)}};
    if (!tool.common().no_provenance) header["provenance"].push_back(tool.provenance_entry());

    cx::cli::OutputFile out(tool.common().output);
    cx::io::StreamWriter writer(out.file(), header, out.is_stdout() ? "standard output" : out.path());

    auto in_list = [](const std::vector<std::string>& list, const std::string& v, bool upper) {
      std::string u = v;
      if (upper)
        for (char& c : u) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      return std::find(list.begin(), list.end(), u) != list.end();
    };
    long long matched = 0, taken = 0, bad = 0, filtered_after = 0;
    auto pull = [&](data::IngestItem& item) {
      for (;;) {
        if (limit >= 0 && taken >= limit) return false;
        if (!source->next(item)) return false;
        if (!view_list.empty() && item.meta.contains("view") &&
            !in_list(view_list, item.meta["view"].get<std::string>(), true))
          continue;
        if (!split_list_.empty() &&
            !(item.meta.contains("split") && in_list(split_list_, item.meta["split"].get<std::string>(), false)))
          continue;
        if (matched++ % shard_n != shard_i) continue;
        ++taken;
        return true;
      }
    };
    cx::cli::Progress progress("images");
    auto sink = [&](data::Outcome& o) {
      if (!o.error.empty()) {
        if (!skip_bad) throw cx::Error(o.error);
        cx::log::error(o.error + " (skipped)");
        ++bad;
        return;
      }
      if (!view_list.empty() && !in_list(view_list, o.result->view, true)) {
        cx::log::debug(o.item.key + ": view '" + o.result->view + "' not selected");
        ++filtered_after;
        return;
      }
      writer.write(o.result->record);
      progress.add();
    };
    const int threads = tool.threads();
    data::run_ordered(threads, static_cast<std::size_t>(2 * threads + 2), pull,
                      [&](const data::IngestItem& item) { return data::ingest_item(item, options); }, sink);
    progress.finish();
    writer.finish();
    out.commit();
    if (filtered_after) cx::log::debug(std::to_string(filtered_after) + " images dropped by --view after reading their headers");
    if (bad) {
      cx::log::error(std::to_string(bad) + " of " + std::to_string(taken) + (taken == 1 ? " input" : " inputs") +
                     " skipped (bad input); " + std::to_string(writer.records()) +
                     (writer.records() == 1 ? " record" : " records") + " written");
      return cx::kExitPartial;
    }
    if (writer.records() == 0) cx::log::warn("no records written (nothing matched the filters)");
    cx::log::debug(std::to_string(writer.records()) + " records written");
    return cx::kExitOk;
  });
}
