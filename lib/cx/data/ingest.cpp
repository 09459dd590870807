#include "cx/data/ingest.hpp"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <iterator>
#include <memory>

#include "cx/cli/error.hpp"
#include "cx/cli/names.hpp"
#include "cx/dicom/dicom.hpp"
#include "cx/image/equalize.hpp"
#include "cx/image/preprocess.hpp"
#include "cx/image/window.hpp"
#include "cx/io/file_bytes.hpp"
#include "cx/io/image_file.hpp"
#include "cx/io/png.hpp"
#include "cx/util/ordered_pool.hpp"
#include "cx/util/strings.hpp"

namespace cx::data {

namespace {

std::string read_stdin_bytes() {
  std::string out;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = ::read(STDIN_FILENO, buf, sizeof buf);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error(std::string("standard input: read error: ") + std::strerror(errno));
    }
    out.append(buf, static_cast<std::size_t>(n));
  }
  if (out.empty()) throw Error("standard input: empty (expected a DICOM, PNG or JPEG image)");
  return out;
}

// Gray from RGB at either depth, with the weights of Pillow's convert("L").
Image rgb_to_gray(Image&& in) {
  if (in.channels == 1) return std::move(in);
  if (in.bits == 8) return image::to_gray_u8(in);
  Image out = Image::gray16(in.width, in.height);
  const std::uint16_t* s = in.u16();
  std::uint16_t* d = out.u16();
  for (std::size_t i = 0, n = out.samples(); i < n; ++i, s += 3)
    d[i] = static_cast<std::uint16_t>((19595u * s[0] + 38470u * s[1] + 7471u * s[2] + 0x8000u) >> 16);
  return out;
}

// A decoded PNG/JPEG as stored values, so the DICOM display pipeline can window it.
dicom::DicomImage as_stored(const Image& gray) {
  dicom::DicomImage d;
  d.width = gray.width;
  d.height = gray.height;
  d.bits_allocated = gray.bits;
  d.bits_stored = gray.bits;
  d.photometric = "MONOCHROME2";
  d.stored.resize(gray.samples());
  if (gray.bits == 8) std::copy(gray.u8(), gray.u8() + gray.samples(), d.stored.begin());
  else std::copy(gray.u16(), gray.u16() + gray.samples(), d.stored.begin());
  return d;
}

// DICOM Age String "062Y" (also "006M", "003W", "010D": under a year), and the plain "62"
// some writers use; anything else is no age.
std::optional<int> dicom_age_years(std::string a) {
  while (!a.empty() && a.back() == ' ') a.pop_back();
  if (a.empty()) return std::nullopt;
  char unit = 'Y';
  if (std::isalpha(static_cast<unsigned char>(a.back()))) {
    unit = static_cast<char>(std::toupper(static_cast<unsigned char>(a.back())));
    a.pop_back();
  }
  if (a.empty() || a.size() > 3 || !std::all_of(a.begin(), a.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  const int v = std::stoi(a);
  if (unit == 'Y') return v < 150 ? std::optional<int>(v) : std::nullopt;
  if (unit == 'M' || unit == 'W' || unit == 'D') return 0;
  return std::nullopt;
}

struct Rendered {
  Image image;
  nlohmann::json intensity;
  nlohmann::json dicom;  // null unless DICOM
  std::optional<std::pair<double, double>> pixel_spacing;
  std::string view, sex;
  std::optional<int> age;
};

Rendered render(const std::string& bytes, const std::string& where, const IngestOptions& o) {
  Rendered r;
  image::WindowOptions wo;
  wo.bits = o.depth;
  wo.window = o.window;
  const io::ImageFormat format = io::sniff_image_format(bytes);
  // A bare ".png" is not a raster name (the old rule wanted a character before the extension).
  auto named = [&](std::string_view ext) { return where.size() > ext.size() && util::ends_with_ci(where, ext); };
  const bool named_raster = named(".png") || named(".jpg") || named(".jpeg");
  // DICOM, with or without preamble (read_dicom says when it is not); a file named .png/.jpg
  // that is neither is reported by the PNG/JPEG reader, whose message fits its name.
  if (format == io::ImageFormat::unknown && !named_raster) {
    dicom::DicomImage d = dicom::read_dicom_bytes(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size(), where);
    image::Rendered out = image::render_dicom(d, wo);
    r.image = rgb_to_gray(std::move(out.image));
    r.intensity = out.applied;
    r.intensity["source"] = "dicom";
    if (d.samples_per_pixel == 3) r.intensity["gray_from_rgb"] = "pillow-L";
    r.dicom = dicom::dicom_metadata_json(d);
    r.pixel_spacing = d.pixel_spacing;
    r.view = d.view_position;
    r.sex = d.patient_sex;
    r.age = dicom_age_years(d.patient_age);
    return r;
  }
  Image decoded = io::decode_image(bytes, where);
  const int in_bits = decoded.bits;
  if (o.keep_rgb && decoded.channels == 3) {  // Pillow's convert("RGB"), as HF's processors open it
    r.image = image::to_rgb_u8(decoded);
    r.intensity = {{"bits", 8}, {"voi", {{"source", "none"}}}, {"inverted", false}, {"rgb", true},
                   {"source", format == io::ImageFormat::png ? "png" : "jpeg"}, {"input_bits", in_bits}};
    return r;
  }
  const bool rgb = decoded.channels == 3;
  Image gray = rgb_to_gray(std::move(decoded));
  if (gray.bits == 8 && !o.window) {
    if (o.depth == 8) {
      r.image = std::move(gray);
    } else {
      r.image = Image::gray16(gray.width, gray.height);
      for (std::size_t i = 0; i < gray.samples(); ++i) r.image.u16()[i] = static_cast<std::uint16_t>(gray.u8()[i] * 257);
    }
    r.intensity = {{"bits", o.depth}, {"voi", {{"source", "none"}}}, {"inverted", false}};
    if (o.depth == 16) r.intensity["scale"] = 257;
  } else {
    image::Rendered out = image::render_dicom(as_stored(gray), wo);
    r.image = std::move(out.image);
    r.intensity = out.applied;
    r.intensity.erase("modality");
    r.intensity.erase("photometric");
  }
  r.intensity["source"] = format == io::ImageFormat::png ? "png" : "jpeg";
  r.intensity["input_bits"] = in_bits;
  if (rgb) r.intensity["gray_from_rgb"] = "pillow-L";
  return r;
}

nlohmann::json scale_boxes(const nlohmann::json& boxes, double sx, double sy) {
  nlohmann::json out = boxes;
  for (auto& b : out) {
    if (!b.is_object()) continue;
    if (b.contains("x")) b["x"] = b["x"].get<double>() * sx;
    if (b.contains("width")) b["width"] = b["width"].get<double>() * sx;
    if (b.contains("y")) b["y"] = b["y"].get<double>() * sy;
    if (b.contains("height")) b["height"] = b["height"].get<double>() * sy;
  }
  return out;
}

}  // namespace

IngestResult ingest_item(const IngestItem& item, const IngestOptions& o) {
  const std::string& path = item.image_path;
  const std::string where = cli::input_name(path);
  try {
    const std::string bytes = path == "-" ? read_stdin_bytes() : io::read_file_bytes(path);
    Rendered r = render(bytes, where, o);
    if (r.image.width <= 0 || r.image.height <= 0) throw Error(at(where, "image has no pixels"));
    const int orig_w = r.image.width, orig_h = r.image.height;
    if (o.equalize) image::equalize(r.image);
    if (o.size > 0) r.image = image::resize_shortest_edge(r.image, o.size, o.filter);
    const int w = r.image.width, h = r.image.height;

    nlohmann::json meta = item.meta;
    meta["key"] = item.key;
    IngestResult res;
    res.view = meta.contains("view") ? meta["view"].get<std::string>() : "";
    if (res.view.empty() && !r.view.empty()) {
      meta["view"] = res.view = util::upper(r.view);
    }
    if (!meta.contains("sex") && (r.sex == "M" || r.sex == "F")) meta["sex"] = r.sex;
    if (!meta.contains("age") && r.age) meta["age"] = *r.age;

    nlohmann::json im = {{"width", w}, {"height", h}, {"bits", o.depth}, {"original_width", orig_w},
                         {"original_height", orig_h}, {"equalized", o.equalize}};
    if (w != orig_w || h != orig_h) im["resize_filter"] = image::filter_name(o.filter);
    // Pixel spacing (row, column) in mm of the written pixels: the DICOM header's, else the
    // label file's acquisition facts (NIH lists the detector's spacing at the original size).
    std::optional<std::pair<double, double>> spacing;
    std::string spacing_source;
    if (r.pixel_spacing) {
      spacing = std::make_pair(r.pixel_spacing->first * orig_h / h, r.pixel_spacing->second * orig_w / w);
      spacing_source = "dicom";
    } else if (meta.contains("acquisition") && meta["acquisition"].contains("pixel_spacing")) {
      const auto& a = meta["acquisition"];
      const double aw = a["width"].get<double>(), ah = a["height"].get<double>();
      spacing = std::make_pair(a["pixel_spacing"][0].get<double>() * ah / h, a["pixel_spacing"][1].get<double>() * aw / w);
      spacing_source = "label file";
    }
    if (spacing) {
      im["pixel_spacing"] = {spacing->first, spacing->second};
      im["pixel_spacing_source"] = spacing_source;
    } else {
      im["pixel_spacing"] = nullptr;
    }
    meta["image"] = im;
    meta["intensity"] = r.intensity;
    if (!r.dicom.is_null()) meta["dicom"] = r.dicom;
    if (meta.contains("boxes") && (w != orig_w || h != orig_h))
      meta["boxes"] = scale_boxes(meta["boxes"], static_cast<double>(w) / orig_w, static_cast<double>(h) / orig_h);

    std::string mask_png;
    if (item.mask) {
      LabelMap lm = read_label_map(item);
      Image& mask = lm.map;
      if (lm.sized_like_image && (mask.width != orig_w || mask.height != orig_h))
        throw Error(at(where, "the image is " + std::to_string(orig_w) + "x" + std::to_string(orig_h) + " but its mask " +
                                  lm.about.value("source", std::string("")) + " is " + std::to_string(mask.width) + "x" +
                                  std::to_string(mask.height)));
      nlohmann::json mj = lm.about;
      if (const auto& classes = item.mask->classes) {
        nlohmann::json labels = nlohmann::json::object();
        for (std::size_t i = 0; i < classes->size(); ++i) labels[std::to_string(i)] = (*classes)[i];
        mj["labels"] = labels;
        meta["classes"] = *classes;
      }
      mj["original_width"] = mask.width;
      mj["original_height"] = mask.height;
      mj["resize_filter"] = "nearest";
      if (mask.width != w || mask.height != h) mask = image::resize(mask, w, h, image::Filter::nearest);
      meta["mask"] = mj;
      mask_png = io::encode_png(mask, o.png_compression);
    }

    res.record.key = item.key;
    // Label cells, file names and DICOM strings need not be UTF-8 (Latin-1 CSVs, ISO_IR 100
    // attributes): invalid bytes become U+FFFD rather than failing the record.
    res.record.fields.push_back({"json", meta.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)});
    res.record.fields.push_back({"png", io::encode_png(r.image, o.png_compression)});
    if (item.mask) res.record.fields.push_back({"mask.png", std::move(mask_png)});
    if (item.report) res.record.fields.push_back({"txt", *item.report});
    return res;
  } catch (const TruncatedError& e) {
    if (item.origin.empty() || item.origin == path) throw;
    throw TruncatedError(std::string(e.what()) + " (row " + item.origin + ")");
  } catch (const Error& e) {
    if (item.origin.empty() || item.origin == path) throw;
    throw Error(std::string(e.what()) + " (row " + item.origin + ")");
  }
}

nlohmann::json ingest_fields(int depth, const ItemSource& source) {
  nlohmann::json f = {
      {"json",
       {{"type", "json"},
        {"description",
         "record metadata: dataset, source, view, sex, age, labels (1 positive, 0 negative, -1 uncertain, null blank), "
         "boxes, image (size, original size, pixel spacing), intensity (what was applied)"}}},
      {"png", {{"type", "image/png"}, {"bits", depth}, {"channels", 1}, {"description", std::to_string(depth) + "-bit gray image"}}}};
  if (source.has_masks()) {
    const std::vector<std::string> classes = source.mask_classes();
    std::string d = "8-bit label map";
    if (classes.empty()) {
      d += ", the mask files' values as they are (no class names given)";
    } else {
      for (std::size_t i = 0; i < classes.size(); ++i) d += (i ? ", " : ": ") + std::to_string(i) + " " + classes[i];
    }
    f["mask.png"] = {{"type", "image/png"}, {"bits", 8}, {"channels", 1}, {"description", d}};
    if (!classes.empty()) f["mask.png"]["classes"] = classes;
  }
  if (source.has_reports()) f["txt"] = {{"type", "text/plain"}, {"description", "report text: FINDINGS and IMPRESSION sections"}};
  return f;
}

void run_ordered(int threads, std::size_t window, const std::function<bool(IngestItem&)>& pull,
                 const std::function<IngestResult(const IngestItem&)>& work,
                 const std::function<void(Outcome&)>& sink) {
  util::run_ordered<IngestItem, Outcome>(
      threads, window, pull,
      [&](const IngestItem& item) {
        Outcome o;
        try {
          o.result = work(item);
        } catch (const std::exception& e) {
          o.error = e.what();
        } catch (...) {
          o.error = "unknown error";
        }
        return o;
      },
      [&](IngestItem& item, Outcome& o) {
        o.item = std::move(item);
        sink(o);
      });
}

}  // namespace cx::data
