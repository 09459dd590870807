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

#include "cx/cli/bad_inputs.hpp"
#include "cx/cli/error.hpp"
#include "cx/cli/log.hpp"
#include "cx/cli/options.hpp"
#include "cx/cli/progress.hpp"
#include "cx/cli/stream_output.hpp"
#include "cx/cli/tool.hpp"
#include "cx/data/adapters.hpp"
#include "cx/data/ingest.hpp"
#include "cx/io/stream.hpp"
#include "cx/util/strings.hpp"

namespace {

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
  bool equalize = false;

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
      ->check(cx::cli::count_range(0, 1000000000000));
  app.add_option("--shard", shard, "Take every n-th input starting at i (0 <= i < n), after --view and --split")
      ->type_name("i/n");
  app.add_option("--depth", depth, "Bits per sample of the written images: 8 or 16")
      ->type_name("8|16")
      ->check(CLI::IsMember({8, 16}))
      ->capture_default_str();
  app.add_flag("--equalize", equalize, "Histogram-equalise the image (Pillow's ImageOps.equalize), before resizing");
  app.add_option("--size", size, "Resize so the shorter side is N pixels (default: keep the size)")
      ->type_name("N")
      ->check(cx::cli::count_range(0, 1000000000000));
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
  tool.add_shared_options(cx::cli::Tool::kSkipBad | cx::cli::Tool::kOutput | cx::cli::Tool::kThreads |
                          cx::cli::Tool::kProvenance);

  return tool.run(argc, argv, [&]() -> int {
    namespace data = cx::data;
    data::IngestOptions options;
    options.depth = depth;
    options.equalize = equalize;
    options.size = size;
    options.png_compression = compression;
    options.filter = cx::image::filter_from_name(filter, "--filter");
    if (!window.empty()) {
      auto parts = cx::util::split_list(window);
      if (parts.size() != 2) throw cx::UsageError("--window: expected CENTER,WIDTH, not '" + window + "'");
      double c = parse_double(parts[0], "--window center"), w = parse_double(parts[1], "--window width");
      if (w < 1) throw cx::UsageError("--window: width must be >= 1, not " + parts[1]);
      options.window = std::make_pair(c, w);
    }
    const cx::cli::Shard shard_of = cx::cli::parse_shard(shard);
    const std::vector<std::string> view_list = cx::util::split_list(cx::util::upper(views));
    const std::vector<std::string> split_names = cx::cli::parse_list(splits, "--split");
    if (!views.empty() && view_list.empty()) throw cx::UsageError("--view: empty list");

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
      const std::string d = cx::util::lower(dataset);
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
      mo.classes = cx::cli::parse_list(mask_classes, "--mask-classes");
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
    cx::cli::StreamOutput out(tool, header);

    auto in_list = [](const std::vector<std::string>& list, const std::string& v, bool upper) {
      return std::find(list.begin(), list.end(), upper ? cx::util::upper(v) : v) != list.end();
    };
    cx::cli::BadInputs bad(tool.common().skip_bad);
    long long matched = 0, taken = 0, filtered_after = 0;
    auto pull = [&](data::IngestItem& item) {
      for (;;) {
        if (limit >= 0 && taken >= limit) return false;
        if (!source->next(item)) return false;
        if (!view_list.empty() && item.meta.contains("view") &&
            !in_list(view_list, item.meta["view"].get<std::string>(), true))
          continue;
        if (!split_names.empty() &&
            !(item.meta.contains("split") && in_list(split_names, item.meta["split"].get<std::string>(), false)))
          continue;
        if (!shard_of.takes(matched++)) continue;
        ++taken;
        return true;
      }
    };
    cx::cli::Progress progress("images");
    auto sink = [&](data::Outcome& o) {
      if (!o.error.empty()) {
        bad.report(o.error);
        return;
      }
      if (!view_list.empty() && !in_list(view_list, o.result->view, true)) {
        cx::log::debug(o.item.key + ": view '" + o.result->view + "' not selected");
        ++filtered_after;
        return;
      }
      out.write(o.result->record);
      progress.add();
    };
    const int threads = tool.threads();
    data::run_ordered(threads, static_cast<std::size_t>(2 * threads + 2), pull,
                      [&](const data::IngestItem& item) { return data::ingest_item(item, options); }, sink);
    progress.finish();
    out.finish();
    if (filtered_after) cx::log::debug(std::to_string(filtered_after) + " images dropped by --view after reading their headers");
    if (bad.count()) return bad.finish(taken, out.records());
    if (out.records() == 0) cx::log::warn("no records written (nothing matched the filters)");
    cx::log::debug(std::to_string(out.records()) + " records written");
    return cx::kExitOk;
  });
}
