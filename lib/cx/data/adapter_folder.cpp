// Any folder of DICOM, PNG and JPEG files (a PACS export, a hospital share): walked recursively,
// sorted by path. Keys are the path relative to the folder without its extension, with '/' and
// '.' turned into '_' (PACS exports reuse file names like IM00001 in every series folder, so the
// stem alone would collide). An optional labels table (TSV or CSV: a key column first, then one
// column per class, cells 1/0/-1/blank) gives the labels; its columns become the label set.
#include <memory>
#include <unordered_map>

#include "cx/cli/error.hpp"
#include "cx/cli/log.hpp"
#include "cx/data/adapter_common.hpp"
#include "cx/data/table.hpp"
#include "cx/util/strings.hpp"

namespace cx::data::detail {

namespace {

class FolderSource : public ItemSource {
 public:
  explicit FolderSource(const AdapterOptions& o) : dir_(o.label_file) {
    if (!is_dir(dir_)) throw Error(at(dir_, "not a folder"));
    files_ = list_image_files(dir_);
    if (files_.empty()) throw Error(at(dir_, "no DICOM, PNG or JPEG files in this folder"));
    std::unordered_map<std::string, std::size_t> seen;
    std::string base = dir_;
    while (base.size() > 1 && base.back() == '/') base.pop_back();
    for (std::size_t i = 0; i < files_.size(); ++i) {
      std::string rel = files_[i].substr(base.size() + 1);
      std::string key = sanitize_key(strip_extension(rel), files_[i]);
      auto [it, fresh] = seen.emplace(key, i);
      if (!fresh)
        throw Error(at(files_[i], "record key '" + key + "' is also the key of " + files_[it->second]));
      keys_.push_back(key);
    }
    if (!o.labels_tsv.empty()) {
      Table t = read_table(o.labels_tsv);
      if (t.columns.size() < 2) throw Error(at(o.labels_tsv, "labels table needs a key column and at least one class column"));
      set_.name = o.labels_tsv;
      set_.classes.assign(t.columns.begin() + 1, t.columns.end());
      std::size_t unmatched = 0;
      for (std::size_t r = 0; r < t.rows.size(); ++r) {
        std::vector<LabelValue> v;
        for (std::size_t c = 1; c < t.columns.size(); ++c)
          v.push_back(parse_label_cell(t.rows[r][c], t.where_row(r) + ": " + t.columns[c]));
        const std::string key = util::trim(t.rows[r][0]);
        if (!seen.count(key)) ++unmatched;
        if (!labels_.emplace(key, std::move(v)).second) throw Error(at(t.where_row(r), "key '" + key + "' listed twice"));
      }
      if (unmatched)
        log::warn(o.labels_tsv + ": " + std::to_string(unmatched) + " of " + std::to_string(t.rows.size()) +
                  " keys match no image file in " + dir_);
      have_labels_ = true;
    }
  }

  bool next(IngestItem& item) override {
    if (i_ >= files_.size()) return false;
    item = IngestItem{};
    item.key = keys_[i_];
    item.image_path = files_[i_];
    item.origin = files_[i_];
    auto& m = item.meta;
    m["dataset"] = "folder";
    m["source"] = files_[i_];
    if (have_labels_) {
      auto it = labels_.find(item.key);
      m["labels"] = labels_json(set_, it != labels_.end() ? it->second
                                                         : std::vector<LabelValue>(set_.classes.size(), LabelValue::blank));
    }
    ++i_;
    return true;
  }

  std::string dataset() const override { return "folder"; }
  const LabelSet* label_set() const override { return have_labels_ ? &set_ : nullptr; }

 private:
  std::string dir_;
  std::vector<std::string> files_, keys_;
  bool have_labels_ = false;
  LabelSet set_;
  std::unordered_map<std::string, std::vector<LabelValue>> labels_;
  std::size_t i_ = 0;
};

}  // namespace

std::unique_ptr<ItemSource> open_folder(const AdapterOptions& options) { return std::make_unique<FolderSource>(options); }

}  // namespace cx::data::detail
