// cx-embed: an encoder (Hugging Face folder) turns a stream of X-rays into CLS, patch and register
// tokens. See man/cx-embed.1.
#include <filesystem>
#include <functional>

#include "cx/cli/bad_inputs.hpp"
#include "cx/cli/error.hpp"
#include "cx/cli/log.hpp"
#include "cx/cli/options.hpp"
#include "cx/cli/output.hpp"
#include "cx/cli/progress.hpp"
#include "cx/cli/stream_output.hpp"
#include "cx/cli/tool.hpp"
#include "cx/data/record_source.hpp"
#include "cx/io/npy_matrix.hpp"
#include "cx/model/embed.hpp"
#include "cx/model/hf_loader.hpp"
#include "cx/model/model_dir.hpp"

int main(int argc, char** argv) {
  cx::cli::Tool tool("cx-embed", "Embed chest X-rays with a ViT encoder (CXformer, DINOv2, RAD-DINO: Hugging Face folders)");
  auto& app = tool.app();
  std::vector<std::string> inputs;
  std::string model_name, emit = "cls", patch_dtype = "f16", preprocess = "hf", format = "cx", precision = "f32";
  bool keep_image = false, equalize = false;
  int batch = 8;
  app.add_option("inputs", inputs, "cx streams, or image files and folders (DICOM, PNG, JPEG); - for standard input");
  app.add_option("-m,--model", model_name, "Model folder, or a name looked up in $CX_MODEL_PATH and the Hugging Face cache")
      ->required()
      ->envname("CX_MODEL");
  app.add_option("--emit", emit, "Fields to write, comma-separated: cls, patch, patch4, reg, last_hidden_state, pixel_values, cx5")
      ->capture_default_str();
  app.add_option("--patch-dtype", patch_dtype, "patch.npy precision")->check(CLI::IsMember({"f16", "f32"}))->capture_default_str();
  app.add_option("--preprocess", preprocess, "hf: the folder's preprocessor_config.json; cxformer: gray, [equalize], 518 bicubic, crop 518, ImageNet")
      ->check(CLI::IsMember({"hf", "cxformer"}))
      ->capture_default_str();
  app.add_flag("--equalize", equalize, "Histogram-equalise before resizing (with --preprocess cxformer)");
  app.add_flag("--keep-image", keep_image, "Pass the image field through (for overlays and fine-tuning downstream)");
  app.add_option("--format", format, "cx: a record stream; npy: PREFIX.npy (N x D of the one --emit field, cls or cx5) + PREFIX.keys.tsv")
      ->check(CLI::IsMember({"cx", "npy"}))
      ->capture_default_str();
  app.add_option("--batch", batch, "Images per forward pass")->check(cx::cli::count_range(1, 4096))->capture_default_str();
  app.add_option("--precision", precision, "f32; bf16 autocast on CUDA or on a CPU with bf16 units (AVX512_BF16, AMX); f16 on CUDA")->check(CLI::IsMember({"f32", "bf16", "f16"}))->capture_default_str();
  tool.add_shared_options(cx::cli::Tool::kSkipBad | cx::cli::Tool::kOutput | cx::cli::Tool::kThreads |
                          cx::cli::Tool::kDevice | cx::cli::Tool::kProvenance);

  return tool.run(argc, argv, [&]() -> int {
    cx::model::set_threads(tool.threads());
    auto device = cx::model::parse_device(tool.common().device);

    cx::model::EmbedOptions options;
    options.emit.clear();
    for (const auto& f : cx::cli::parse_list(emit, "--emit")) options.emit.insert(f);
    if (options.emit.empty()) throw cx::UsageError("--emit: no field given");
    if (format == "npy" && (options.emit.size() != 1 || !(options.emit.count("cls") || options.emit.count("cx5"))))
      throw cx::UsageError("--format npy writes one matrix: give exactly one of --emit cls or --emit cx5");
    if (format == "npy" && (tool.common().output.empty() || tool.common().output == "-"))
      throw cx::UsageError("--format npy writes files: give -o PREFIX");
    options.patch_f16 = patch_dtype == "f16";
    options.keep_image = keep_image;
    options.batch = batch;
    options.device = device;
    options.precision = cx::model::parse_precision(precision, device);
    cx::log::debug("compute: " + cx::model::precision_path(options.precision, device) + ", " +
                  std::to_string(at::get_num_threads()) + " thread(s), allocator " + cx::model::allocator_name());

    std::string folder = cx::model::resolve_model_dir(model_name);
    if (preprocess == "cxformer") {
      options.preprocess = cx::image::PreprocessConfig::cxformer(equalize);
    } else {
      if (equalize) throw cx::UsageError("--equalize belongs to --preprocess cxformer");
      const std::string pp = folder + "/preprocessor_config.json";
      if (std::filesystem::exists(pp)) options.preprocess = cx::image::PreprocessConfig::from_file(pp);
      else options.preprocess_missing = pp;
    }
    cx::model::LoadOptions lo;
    lo.device = device;
    cx::model::LoadedVit loaded = cx::model::load_hf_vit(folder, lo);
    cx::log::debug("model " + loaded.model_id + " sha256 " + loaded.weights_sha256 + " from " + folder);

    // HF's processors convert to RGB themselves: with --preprocess hf a colour file stays colour.
    cx::cli::BadInputs bad(tool.common().skip_bad);
    auto source = cx::data::RecordSource::open(
        tool.inputs_or_stdin(inputs), preprocess == "hf",
        bad.skipping() ? cx::data::RecordSource::BadImage([&](const std::string& why) { bad.report(why); }) : nullptr);
    cx::model::Embedder embedder(loaded.model, options,
                                 bad.skipping() ? cx::model::Embedder::BadRecord([&](const std::string& key, const std::string& why) {
                                   (void)key;  // the message names the record already
                                   bad.report(why);
                                 })
                                                : nullptr);

    nlohmann::json model_info = {{"id", loaded.model_id},
                                 {"sha256", loaded.weights_sha256},
                                 {"model_type", loaded.config.model_type},
                                 {"hidden_size", loaded.config.hidden_size},
                                 {"num_hidden_layers", loaded.config.num_hidden_layers},
                                 {"patch_size", loaded.config.patch_size},
                                 {"num_register_tokens", loaded.config.num_register_tokens},
                                 {"preprocess", cx::image::pipeline_name(options.preprocess.pipeline)}};
    nlohmann::json header = embedder.output_header(source->header(), model_info);
    tool.add_provenance_detail("model", loaded.model_id);
    tool.add_provenance_detail("model_sha256", loaded.weights_sha256);

    cx::cli::Progress progress("images");
    // Every record through the embedder, each finished one handed to `emit` in input order.
    auto run_all = [&](const std::function<void(const cx::io::Record&)>& emit) {
      std::vector<cx::io::Record> done;
      auto drain = [&] {
        for (auto& r : done) {
          emit(r);
          progress.add();
        }
        done.clear();
      };
      cx::io::Record record;
      while (source->next(record)) {
        embedder.push(std::move(record), done);
        drain();
      }
      embedder.flush(done);
      drain();
    };
    if (format == "npy") {
      const std::string field = *options.emit.begin();
      const std::string prefix = tool.common().output;
      cx::io::NpyMatrixWriter matrix(prefix + ".npy");
      cx::cli::OutputFile keys(prefix + ".keys.tsv", false);
      keys.write("index\tkey\n");
      run_all([&](const cx::io::Record& r) {
        keys.write(std::to_string(matrix.rows()) + "\t" + r.key + "\n");
        matrix.append(cx::model::Embedder::field_floats(r, field));
      });
      matrix.commit();
      keys.commit();
    } else {
      cx::cli::StreamOutput out(tool, header);
      run_all([&](const cx::io::Record& r) { out.write(r); });
      out.finish();
    }
    progress.finish();
    return bad.finish(progress.done() + bad.count(), progress.done(), "record", "embedding");
  });
}
