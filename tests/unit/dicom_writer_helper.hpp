#pragma once
// A small DICOM writer for tests: builds datasets element by element (explicit or implicit VR
// little endian, defined-length sequences, encapsulated pixel data) and Part 10 files with or
// without the preamble. Written from PS3.5 independently of DCMTK, so tests can craft exactly the
// bytes a case needs (odd lengths, garbage high bits, odd transfer syntaxes, truncation).
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace cx_test {

using Bytes = std::vector<std::uint8_t>;

inline void put16(Bytes& b, std::uint16_t v) {
  b.push_back(v & 0xFF);
  b.push_back(v >> 8);
}
inline void put32(Bytes& b, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) b.push_back((v >> (8 * i)) & 0xFF);
}

class Dataset {
 public:
  // Raw value; `keep_odd` writes an odd length as is (PS3.5 forbids it; some writers do it).
  Dataset& raw(std::uint16_t g, std::uint16_t e, const std::string& vr, Bytes v, bool keep_odd = false) {
    Entry& en = entries_[key(g, e)];
    en = Entry{};
    en.vr = vr;
    if (v.size() % 2 && !keep_odd) v.push_back(vr == "UI" || vr == "OB" ? 0 : ' ');
    en.value = std::move(v);
    return *this;
  }
  Dataset& str(std::uint16_t g, std::uint16_t e, const std::string& vr, const std::string& s) {
    return raw(g, e, vr, Bytes(s.begin(), s.end()));
  }
  Dataset& us(std::uint16_t g, std::uint16_t e, std::vector<std::uint16_t> v, const std::string& vr = "US") {
    Bytes b;
    for (auto x : v) put16(b, x);
    return raw(g, e, vr, b);
  }
  Dataset& seq(std::uint16_t g, std::uint16_t e, std::vector<Dataset> items) {
    Entry& en = entries_[key(g, e)];
    en = Entry{};
    en.vr = "SQ";
    en.items = std::move(items);
    return *this;
  }
  // Encapsulated Pixel Data: Basic Offset Table item (may be empty), then one item per fragment.
  Dataset& encapsulated(std::vector<Bytes> fragments, std::vector<std::uint32_t> offsets = {}) {
    Entry& en = entries_[key(0x7FE0, 0x0010)];
    en = Entry{};
    en.vr = "OB";
    en.encapsulated = true;
    en.fragments = std::move(fragments);
    en.offsets = std::move(offsets);
    return *this;
  }
  Dataset& remove(std::uint16_t g, std::uint16_t e) {
    entries_.erase(key(g, e));
    return *this;
  }

  Bytes encode(bool explicit_vr) const {
    Bytes out;
    for (const auto& [k, en] : entries_) {
      const std::uint16_t g = k >> 16, e = k & 0xFFFF;
      Bytes value;
      bool undefined = false;
      if (en.vr == "SQ") {
        for (const Dataset& item : en.items) {
          const Bytes ib = item.encode(explicit_vr);
          put16(value, 0xFFFE);
          put16(value, 0xE000);
          put32(value, static_cast<std::uint32_t>(ib.size()));
          value.insert(value.end(), ib.begin(), ib.end());
        }
      } else if (en.encapsulated) {
        undefined = true;
        put16(value, 0xFFFE);
        put16(value, 0xE000);
        put32(value, static_cast<std::uint32_t>(4 * en.offsets.size()));
        for (auto o : en.offsets) put32(value, o);
        for (const Bytes& f : en.fragments) {
          put16(value, 0xFFFE);
          put16(value, 0xE000);
          put32(value, static_cast<std::uint32_t>(f.size()));
          value.insert(value.end(), f.begin(), f.end());
        }
        put16(value, 0xFFFE);
        put16(value, 0xE0DD);
        put32(value, 0);
      } else {
        value = en.value;
      }
      put16(out, g);
      put16(out, e);
      const std::uint32_t len = undefined ? 0xFFFFFFFFu : static_cast<std::uint32_t>(value.size());
      if (explicit_vr) {
        out.push_back(en.vr[0]);
        out.push_back(en.vr[1]);
        if (long_vr(en.vr)) {
          put16(out, 0);
          put32(out, len);
        } else {
          put16(out, static_cast<std::uint16_t>(len));
        }
      } else {
        put32(out, len);
      }
      out.insert(out.end(), value.begin(), value.end());
    }
    return out;
  }

 private:
  struct Entry {
    std::string vr;
    Bytes value;
    std::vector<Dataset> items;
    bool encapsulated = false;
    std::vector<Bytes> fragments;
    std::vector<std::uint32_t> offsets;
  };
  static std::uint32_t key(std::uint16_t g, std::uint16_t e) { return (std::uint32_t{g} << 16) | e; }
  static bool long_vr(const std::string& vr) {
    for (const char* v : {"OB", "OW", "OF", "OD", "OL", "OV", "SQ", "UT", "UN", "UC", "UR", "SV", "UV"}) {
      if (vr == v) return true;
    }
    return false;
  }
  std::map<std::uint32_t, Entry> entries_;
};

inline const char* kExplicitLE = "1.2.840.10008.1.2.1";
inline const char* kImplicitLE = "1.2.840.10008.1.2";

// Part 10 file: [128-byte preamble + "DICM"] + meta group (explicit VR LE) + dataset.
inline Bytes part10(const Dataset& ds, const std::string& ts_uid, bool preamble = true) {
  Dataset meta;
  meta.raw(0x0002, 0x0001, "OB", Bytes{0x00, 0x01})
      .str(0x0002, 0x0002, "UI", "1.2.840.10008.5.1.4.1.1.1")
      .str(0x0002, 0x0003, "UI", "1.2.826.0.1.3680043.9.7133.1.1")
      .str(0x0002, 0x0010, "UI", ts_uid)
      .str(0x0002, 0x0012, "UI", "1.2.826.0.1.3680043.9.7133.0.1");
  const Bytes mb = meta.encode(true);
  Bytes out;
  if (preamble) {
    out.assign(128, 0);
    out.insert(out.end(), {'D', 'I', 'C', 'M'});
  }
  Dataset gl;
  Bytes len;
  put32(len, static_cast<std::uint32_t>(mb.size()));
  gl.raw(0x0002, 0x0000, "UL", len);
  const Bytes gb = gl.encode(true);
  out.insert(out.end(), gb.begin(), gb.end());
  out.insert(out.end(), mb.begin(), mb.end());
  const bool explicit_vr = ts_uid != kImplicitLE;
  const Bytes db = ds.encode(explicit_vr);
  out.insert(out.end(), db.begin(), db.end());
  return out;
}

// Stored values -> native pixel bytes (little endian), `bits_allocated` 8 or 16.
inline Bytes pixel_bytes(const std::vector<std::int32_t>& v, int bits_allocated) {
  Bytes b;
  for (auto x : v) {
    if (bits_allocated == 8) b.push_back(static_cast<std::uint8_t>(x));
    else put16(b, static_cast<std::uint16_t>(x));
  }
  return b;
}

// A CR image dataset with the attributes the decoder and the tools need.
inline Dataset image_dataset(int width, int height, int bits_allocated, int bits_stored, bool is_signed,
                             const std::string& photometric, const Bytes& pixels, int samples = 1,
                             int high_bit = -1) {
  Dataset ds;
  ds.str(0x0008, 0x0016, "UI", "1.2.840.10008.5.1.4.1.1.1")
      .str(0x0008, 0x0018, "UI", "1.2.826.0.1.3680043.9.7133.1.1")
      .str(0x0008, 0x0060, "CS", "CR")
      .str(0x0010, 0x0020, "LO", "TEST-17")
      .str(0x0010, 0x0040, "CS", "F")
      .str(0x0010, 0x1010, "AS", "045Y")
      .str(0x0018, 0x0015, "CS", "CHEST")
      .str(0x0018, 0x5101, "CS", "AP")
      .str(0x0020, 0x000D, "UI", "1.2.826.0.1.3680043.9.7133.2.1")
      .str(0x0020, 0x000E, "UI", "1.2.826.0.1.3680043.9.7133.3.1")
      .us(0x0028, 0x0002, {static_cast<std::uint16_t>(samples)})
      .str(0x0028, 0x0004, "CS", photometric)
      .us(0x0028, 0x0010, {static_cast<std::uint16_t>(height)})
      .us(0x0028, 0x0011, {static_cast<std::uint16_t>(width)})
      .str(0x0028, 0x0030, "DS", "0.139\\0.143")
      .us(0x0028, 0x0100, {static_cast<std::uint16_t>(bits_allocated)})
      .us(0x0028, 0x0101, {static_cast<std::uint16_t>(bits_stored)})
      .us(0x0028, 0x0102, {static_cast<std::uint16_t>(high_bit >= 0 ? high_bit : bits_stored - 1)})
      .us(0x0028, 0x0103, {static_cast<std::uint16_t>(is_signed ? 1 : 0)})
      .raw(0x7FE0, 0x0010, bits_allocated == 8 ? "OB" : "OW", pixels);
  if (samples == 3) ds.us(0x0028, 0x0006, {0});
  return ds;
}

}  // namespace cx_test
