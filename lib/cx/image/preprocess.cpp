#include "cx/io/json_file.hpp"
#include "cx/image/preprocess.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cx/cli/error.hpp"
#include "cx/cli/log.hpp"
#include "cx/image/equalize.hpp"

namespace cx::image {
namespace {

using nlohmann::json;

constexpr std::array<double, 3> kImagenetMean = {0.485, 0.456, 0.406};
constexpr std::array<double, 3> kImagenetStd = {0.229, 0.224, 0.225};

void check_image(const Image& in, const char* what) {
  if (in.width <= 0 || in.height <= 0) throw Error(std::string(what) + ": empty image");
  if ((in.channels != 1 && in.channels != 3) || (in.bits != 8 && in.bits != 16))
    throw Error(std::string(what) + ": unsupported image (" + std::to_string(in.channels) + " channels, " +
                std::to_string(in.bits) + " bits)");
  if (in.data.size() != in.samples() * (in.bits / 8))
    throw Error(std::string(what) + ": image buffer holds " + std::to_string(in.data.size()) + " bytes, expected " +
                std::to_string(in.samples() * (in.bits / 8)));
}

// Pillow's I -> L / RGB conversion clamps; its 16-bit RGB decoder keeps the high byte.
inline std::uint8_t clamp_u16_gray(std::uint16_t v) { return static_cast<std::uint8_t>(v > 255 ? 255 : v); }
inline std::uint8_t high_byte(std::uint16_t v) { return static_cast<std::uint8_t>(v >> 8); }

inline std::uint8_t luma(std::uint32_t r, std::uint32_t g, std::uint32_t b) {
  return static_cast<std::uint8_t>((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16);
}

// ---- JSON field readers, each error naming the file and the field ----

bool get_bool(const json& j, const char* key, bool fallback, const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (!it->is_boolean()) throw Error(at(where, std::string("'") + key + "' must be true or false"));
  return it->get<bool>();
}

int get_positive_int(const json& v, const std::string& what, const std::string& where) {
  if (!v.is_number_integer() || v.get<long long>() <= 0 || v.get<long long>() > (1 << 24))
    throw Error(at(where, what + " must be a positive integer, got " + v.dump()));
  return static_cast<int>(v.get<long long>());
}

std::array<double, 3> get_triple(const json& j, const char* key, const std::array<double, 3>& fallback,
                                 const std::string& where) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return fallback;
  if (it->is_number()) {
    const double v = it->get<double>();
    return {v, v, v};
  }
  if (it->is_array() && (it->size() == 3 || it->size() == 1)) {
    std::array<double, 3> r{};
    for (std::size_t i = 0; i < 3; ++i) {
      const json& e = (*it)[it->size() == 1 ? 0 : i];
      if (!e.is_number()) throw Error(at(where, std::string("'") + key + "' must hold numbers, got " + it->dump()));
      r[i] = e.get<double>();
    }
    return r;
  }
  throw Error(at(where, std::string("'") + key + "' must be a number or a list of 3 numbers, got " + it->dump()));
}

bool is_vit_family(const std::string& type) { return type.rfind("ViT", 0) == 0; }

}  // namespace

Pipeline pipeline_from_name(const std::string& name, const std::string& where) {
  if (name == "hf") return Pipeline::hf;
  if (name == "cxformer") return Pipeline::cxformer;
  throw Error(at(where, "unknown preprocessing '" + name + "' (hf or cxformer)"));
}

std::string pipeline_name(Pipeline pipeline) { return pipeline == Pipeline::hf ? "hf" : "cxformer"; }

PreprocessConfig PreprocessConfig::from_json(const json& j, const std::string& where) {
  if (!j.is_object()) throw Error(at(where, "a preprocessor config must be a JSON object"));
  PreprocessConfig c;
  std::string type;
  for (const char* key : {"image_processor_type", "feature_extractor_type"}) {
    auto it = j.find(key);
    if (it != j.end() && it->is_string()) {
      type = it->get<std::string>();
      break;
    }
  }
  if (!type.empty()) c.processor_type = type;
  const bool vit = is_vit_family(c.processor_type);
  if (vit) {
    // ViTImageProcessor's defaults: 224 x 224, bilinear, no crop, mean = std = 0.5.
    c.shortest_edge = 0;
    c.resize_height = c.resize_width = 224;
    c.resample = Filter::bilinear;
    c.do_center_crop = false;
    c.image_mean = {0.5, 0.5, 0.5};
    c.image_std = {0.5, 0.5, 0.5};
  } else if (!type.empty() && type.rfind("BitImageProcessor", 0) != 0 && type.rfind("CLIPImageProcessor", 0) != 0) {
    log::warn(at(where, "image processor '" + type + "' is read with BitImageProcessor semantics"));
  }

  c.do_convert_rgb = get_bool(j, "do_convert_rgb", c.do_convert_rgb, where);
  c.do_resize = get_bool(j, "do_resize", c.do_resize, where);
  if (auto it = j.find("size"); it != j.end() && !it->is_null()) {
    const json& s = *it;
    if (s.is_number_integer()) {
      // get_size_dict: an int is a shortest edge for Bit/CLIP, a square for ViT.
      const int n = get_positive_int(s, "'size'", where);
      if (vit) {
        c.shortest_edge = 0;
        c.resize_height = c.resize_width = n;
      } else {
        c.shortest_edge = n;
      }
    } else if (s.is_object() && s.contains("shortest_edge")) {
      c.shortest_edge = get_positive_int(s["shortest_edge"], "'size.shortest_edge'", where);
      c.resize_height = c.resize_width = 0;
    } else if (s.is_object() && s.contains("height") && s.contains("width")) {
      c.shortest_edge = 0;
      c.resize_height = get_positive_int(s["height"], "'size.height'", where);
      c.resize_width = get_positive_int(s["width"], "'size.width'", where);
    } else if (s.is_array() && s.size() == 2) {
      c.shortest_edge = 0;
      c.resize_height = get_positive_int(s[0], "'size[0]'", where);
      c.resize_width = get_positive_int(s[1], "'size[1]'", where);
    } else {
      throw Error(at(where, "'size' must hold 'shortest_edge' or 'height' and 'width', got " + s.dump()));
    }
  }
  if (auto it = j.find("resample"); it != j.end() && !it->is_null()) {
    if (!it->is_number_integer()) throw Error(at(where, "'resample' must be a Pillow filter number, got " + it->dump()));
    c.resample = filter_from_pillow(it->get<int>(), where);
  }
  c.do_center_crop = get_bool(j, "do_center_crop", c.do_center_crop, where);
  if (auto it = j.find("crop_size"); it != j.end() && !it->is_null()) {
    const json& s = *it;
    if (s.is_number_integer()) {
      c.crop_height = c.crop_width = get_positive_int(s, "'crop_size'", where);
    } else if (s.is_object() && s.contains("height") && s.contains("width")) {
      c.crop_height = get_positive_int(s["height"], "'crop_size.height'", where);
      c.crop_width = get_positive_int(s["width"], "'crop_size.width'", where);
    } else {
      throw Error(at(where, "'crop_size' must hold 'height' and 'width', got " + s.dump()));
    }
  }
  c.do_rescale = get_bool(j, "do_rescale", c.do_rescale, where);
  if (auto it = j.find("rescale_factor"); it != j.end() && !it->is_null()) {
    if (!it->is_number()) throw Error(at(where, "'rescale_factor' must be a number, got " + it->dump()));
    c.rescale_factor = it->get<double>();
  }
  c.do_normalize = get_bool(j, "do_normalize", c.do_normalize, where);
  c.image_mean = get_triple(j, "image_mean", c.image_mean, where);
  c.image_std = get_triple(j, "image_std", c.image_std, where);
  for (double s : c.image_std)
    if (c.do_normalize && s == 0.0) throw Error(at(where, "'image_std' holds a zero"));
  return c;
}

PreprocessConfig PreprocessConfig::from_file(const std::string& path) { return from_json(io::read_json_file(path), path); }

PreprocessConfig PreprocessConfig::cxformer(bool equalize) {
  PreprocessConfig c;
  c.pipeline = Pipeline::cxformer;
  c.processor_type = "cxformer";
  c.shortest_edge = 518;
  c.resample = Filter::bicubic;
  c.crop_height = c.crop_width = 518;
  c.image_mean = kImagenetMean;
  c.image_std = kImagenetStd;
  c.equalize = equalize;
  return c;
}

Image to_rgb_u8(const Image& in) {
  check_image(in, "to_rgb_u8");
  Image out = Image::make(in.width, in.height, 3, 8);
  const std::size_t n = static_cast<std::size_t>(in.width) * in.height;
  std::uint8_t* o = out.u8();
  if (in.channels == 3) {
    if (in.bits == 8) return in;
    const std::uint16_t* p = in.u16();
    for (std::size_t i = 0; i < 3 * n; ++i) o[i] = high_byte(p[i]);
    return out;
  }
  for (std::size_t i = 0; i < n; ++i) {
    const std::uint8_t v = in.bits == 8 ? in.u8()[i] : clamp_u16_gray(in.u16()[i]);
    o[3 * i] = o[3 * i + 1] = o[3 * i + 2] = v;
  }
  return out;
}

Image to_gray_u8(const Image& in) {
  check_image(in, "to_gray_u8");
  const std::size_t n = static_cast<std::size_t>(in.width) * in.height;
  if (in.channels == 1 && in.bits == 8) return in;
  Image out = Image::gray8(in.width, in.height);
  std::uint8_t* o = out.u8();
  if (in.channels == 1) {
    for (std::size_t i = 0; i < n; ++i) o[i] = clamp_u16_gray(in.u16()[i]);
  } else if (in.bits == 8) {
    const std::uint8_t* p = in.u8();
    for (std::size_t i = 0; i < n; ++i) o[i] = luma(p[3 * i], p[3 * i + 1], p[3 * i + 2]);
  } else {
    const std::uint16_t* p = in.u16();
    for (std::size_t i = 0; i < n; ++i) o[i] = luma(high_byte(p[3 * i]), high_byte(p[3 * i + 1]), high_byte(p[3 * i + 2]));
  }
  return out;
}

Image center_crop(const Image& in, int crop_height, int crop_width) {
  if (crop_height <= 0 || crop_width <= 0)
    throw Error("center_crop: crop size must be positive, got " + std::to_string(crop_height) + "x" +
                std::to_string(crop_width));
  if (in.width <= 0 || in.height <= 0) throw Error("center_crop: empty image");
  // Python's floor division: a negative offset means the crop overhangs and HF zero-pads.
  auto floor_div2 = [](int v) { return v >= 0 ? v / 2 : -((-v + 1) / 2); };
  const int top = floor_div2(in.height - crop_height);
  const int left = floor_div2(in.width - crop_width);
  if (top == 0 && left == 0 && crop_height == in.height && crop_width == in.width) return in;
  Image out = Image::make(crop_width, crop_height, in.channels, in.bits);
  const std::size_t px = static_cast<std::size_t>(in.channels) * (in.bits / 8);
  const int x0 = std::max(0, -left), x1 = std::min(crop_width, in.width - left);
  for (int y = 0; y < crop_height; ++y) {
    const int sy = y + top;
    if (sy < 0 || sy >= in.height || x1 <= x0) continue;
    std::copy_n(in.data.data() + (static_cast<std::size_t>(sy) * in.width + (x0 + left)) * px,
                static_cast<std::size_t>(x1 - x0) * px,
                out.data.data() + (static_cast<std::size_t>(y) * crop_width + x0) * px);
  }
  return out;
}

PixelValues rescale_normalize(const Image& in, const PreprocessConfig& config) {
  check_image(in, "rescale_normalize");
  if (in.bits != 8) throw Error("rescale_normalize: expects 8-bit samples");
  PixelValues pv;
  pv.height = in.height;
  pv.width = in.width;
  const std::size_t plane = static_cast<std::size_t>(in.width) * in.height;
  pv.data.resize(3 * plane);
  // numpy's order and types: uint8 -> float64 * factor -> float32; then float32 (x - mean) / std
  // with mean and std cast to float32 (transformers' rescale() and normalize()).
  std::array<float, 256> lut[3];
  for (int c = 0; c < 3; ++c) {
    const float mean = static_cast<float>(config.image_mean[c]);
    const float sd = static_cast<float>(config.image_std[c]);
    for (int v = 0; v < 256; ++v) {
      float x = config.do_rescale ? static_cast<float>(static_cast<double>(v) * config.rescale_factor)
                                  : static_cast<float>(v);
      if (config.do_normalize) x = (x - mean) / sd;
      lut[c][v] = x;
    }
  }
  const std::uint8_t* p = in.u8();
  for (int c = 0; c < 3; ++c) {
    float* dst = pv.data.data() + c * plane;
    const int src_c = in.channels == 3 ? c : 0;
    for (std::size_t i = 0; i < plane; ++i) dst[i] = lut[c][p[i * in.channels + src_c]];
  }
  return pv;
}

Image scale_to_8bit(Image in) {
  if (in.bits == 8) return in;
  Image out = Image::make(in.width, in.height, in.channels, 8);
  const std::uint16_t* s = in.u16();
  for (std::size_t i = 0; i < in.samples(); ++i) out.data[i] = static_cast<std::uint8_t>((s[i] * 255u + 32767u) / 65535u);
  return out;
}

PixelValues preprocess(const Image& in, const PreprocessConfig& config) {
  check_image(in, "preprocess");
  // Gray stays one channel until the end: Pillow resamples RGB channels independently with the
  // same weights, so resizing the gray plane and replicating it gives the same bytes, 3x cheaper.
  Image work;
  if (config.pipeline == Pipeline::cxformer) {
    work = to_gray_u8(in);
    if (config.equalize) equalize(work);
  } else {
    work = in.channels == 1 ? to_gray_u8(in) : to_rgb_u8(in);
  }
  if (config.do_resize) {
    if (config.shortest_edge > 0)
      work = resize_shortest_edge(work, config.shortest_edge, config.resample);
    else
      work = resize(work, config.resize_width, config.resize_height, config.resample);
  }
  if (config.do_center_crop) work = center_crop(work, config.crop_height, config.crop_width);
  return rescale_normalize(work, config);
}

InputWindow input_window(int image_width, int image_height, const PreprocessConfig& config) {
  if (image_width <= 0 || image_height <= 0) throw Error("input_window: empty image");
  int rw = image_width, rh = image_height;
  if (config.do_resize) {
    if (config.shortest_edge > 0) {
      const Size s = shortest_edge_size(image_width, image_height, config.shortest_edge);
      rw = s.width;
      rh = s.height;
    } else {
      rw = config.resize_width;
      rh = config.resize_height;
    }
  }
  InputWindow w;
  w.width = rw;
  w.height = rh;
  double left = 0, top = 0;
  if (config.do_center_crop) {
    auto floor_div2 = [](int v) { return v >= 0 ? v / 2 : -((-v + 1) / 2); };  // as center_crop
    top = floor_div2(rh - config.crop_height);
    left = floor_div2(rw - config.crop_width);
    w.width = config.crop_width;
    w.height = config.crop_height;
  }
  // Resampling maps the resized image's coordinate u to u * image / resized on the image.
  const double sx = static_cast<double>(image_width) / rw, sy = static_cast<double>(image_height) / rh;
  w.x0 = left * sx;
  w.x1 = (left + w.width) * sx;
  w.y0 = top * sy;
  w.y1 = (top + w.height) * sy;
  return w;
}

}  // namespace cx::image
