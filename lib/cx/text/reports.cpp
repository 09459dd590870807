#include "cx/text/reports.hpp"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string_view>
#include <utility>

#include "cx/cli/error.hpp"
#include "cx/io/decompress.hpp"
#include "cx/io/file_bytes.hpp"
#include "cx/io/stream.hpp"
#include "cx/io/tar.hpp"
#include "cx/util/strings.hpp"

namespace cx::text {

namespace {

namespace fs = std::filesystem;

void append_utf8(std::string& out, unsigned long cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

// The five predefined entities and numeric character references; anything else stays as written.
std::string xml_unescape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '&') {
      out += s[i];
      continue;
    }
    const std::size_t semi = s.find(';', i);
    if (semi == std::string::npos || semi - i > 10) {
      out += s[i];
      continue;
    }
    const std::string_view ent = s.substr(i + 1, semi - i - 1);
    bool ok = true;
    if (ent == "amp") out += '&';
    else if (ent == "lt") out += '<';
    else if (ent == "gt") out += '>';
    else if (ent == "quot") out += '"';
    else if (ent == "apos") out += '\'';
    else if (!ent.empty() && ent[0] == '#') {
      const std::string num(ent.substr(1));
      char* end = nullptr;
      const unsigned long cp = (!num.empty() && (num[0] == 'x' || num[0] == 'X'))
                                   ? std::strtoul(num.c_str() + 1, &end, 16)
                                   : std::strtoul(num.c_str(), &end, 10);
      ok = end && *end == '\0' && cp > 0 && cp < 0x110000;
      if (ok) append_utf8(out, cp);
    } else {
      ok = false;
    }
    if (!ok) {
      out += s[i];
      continue;
    }
    i = semi;
  }
  return out;
}

// The value of attribute `name` inside the start tag `tag` (e.g. `<parentImage id="x">`).
std::string attribute(std::string_view tag, std::string_view name) {
  std::size_t p = 0;
  while ((p = tag.find(name, p)) != std::string::npos) {
    const bool boundary =
        p > 0 && (tag[p - 1] == ' ' || tag[p - 1] == '\t' || tag[p - 1] == '\n' || tag[p - 1] == '\r');
    std::size_t q = p + name.size();
    while (q < tag.size() && tag[q] == ' ') ++q;
    if (boundary && q < tag.size() && tag[q] == '=') {
      ++q;
      while (q < tag.size() && tag[q] == ' ') ++q;
      if (q < tag.size() && (tag[q] == '"' || tag[q] == '\'')) {
        const std::size_t e = tag.find(tag[q], q + 1);
        if (e != std::string::npos) return xml_unescape(tag.substr(q + 1, e - q - 1));
      }
    }
    p = q;
  }
  return "";
}

// "findings", "impression" or "" (a section we do not keep).
std::string section_key(const std::string& header) {
  const std::string h = util::upper(util::trim(header));
  if (h == "FINDINGS" || h == "FINDING") return "findings";
  if (h == "IMPRESSION" || h == "IMPRESSIONS" || h == "CONCLUSION") return "impression";
  return "";
}

bool is_header_name(const std::string& name) {
  return std::all_of(name.begin(), name.end(),
                     [](char c) {
                       return std::isupper(static_cast<unsigned char>(c)) || c == ' ' || c == '/' || c == '&' ||
                              c == '-' || c == '(' || c == ')';
                     }) &&
         std::any_of(name.begin(), name.end(), [](char c) { return std::isupper(static_cast<unsigned char>(c)); });
}

bool has_suffix(const std::string& s, std::string_view suffix) { return util::ends_with_ci(s, suffix); }

bool is_archive_name(const std::string& p) {
  // .cx: the name cx's own streams go by (cx-embed -o train.cx), plain or compressed.
  return has_suffix(p, ".tar") || has_suffix(p, ".tgz") || has_suffix(p, ".tar.gz") || has_suffix(p, ".tar.zst") ||
         has_suffix(p, ".tzst") || has_suffix(p, ".cx") || has_suffix(p, ".cx.gz") || has_suffix(p, ".cx.zst");
}

bool is_tsv_name(const std::string& p) {
  return has_suffix(p, ".tsv") || has_suffix(p, ".tsv.gz") || has_suffix(p, ".tsv.zst");
}

bool is_mimic_name(const std::string& name) {
  return util::ends_with_ci(name, ".txt") && name.size() > 5 && name[0] == 's';
}

std::string xml_key(const ReportSections& s, const std::string& name) {
  if (!s.id.empty()) return s.id;
  std::string base = name.substr(name.find_last_of('/') + 1);
  return base.substr(0, base.find('.'));
}

using Each = std::function<void(const std::string&, const ReportSections&)>;

void emit(const Each& each, const std::string& key, const ReportSections& s) {
  if (!s.empty()) each(key, s);
}

// Open-i members of an archive are collected, then called back in natural order of their names.
void open_i_archive(io::tar::Reader& tar, io::tar::Member first, const std::string& path, const Each& each) {
  std::vector<std::pair<std::string, ReportSections>> found;
  io::tar::Member m = std::move(first);
  do {
    if (util::ends_with_ci(m.name, ".xml")) {
      const std::string where = path + ":" + m.name;
      ReportSections s = parse_iu_xml(m.data, where);
      s.source = where;
      found.emplace_back(m.name, std::move(s));
    }
  } while (tar.next(m));
  std::stable_sort(found.begin(), found.end(),
                   [](const auto& a, const auto& b) { return natural_less(a.first, b.first); });
  for (const auto& [name, s] : found) emit(each, xml_key(s, name), s);
}

void cx_stream(const std::string& path, const Each& each) {
  auto reader = io::StreamReader::open(path);
  io::Record r;
  while (reader->next(r)) {
    const io::Field* f = r.find("txt");
    if (!f) continue;
    ReportSections s = parse_mimic_report(f->data);
    s.source = reader->where() + ":" + r.key;
    emit(each, r.key, s);
  }
}

void archive(const std::string& path, const Each& each) {
  // The first member tells an Open-i archive (XML members) from a cx stream / WebDataset tar;
  // standard input cannot be read twice, so there it is a stream.
  if (path != "-") {
    std::FILE* f = std::fopen(path.c_str(), "rb");
    if (!f) throw Error(at(path, std::string("cannot open: ") + std::strerror(errno)));
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> closer(f, &std::fclose);
    io::tar::Reader tar(f, path);
    io::tar::Member m;
    if (!tar.next(m)) return;  // an empty archive holds no report
    if (util::ends_with_ci(m.name, ".xml")) {
      open_i_archive(tar, std::move(m), path, each);
      return;
    }
  }
  cx_stream(path, each);
}

void tsv(const std::string& path, const Each& each) {
  const std::string data = io::read_decompressed(path);
  std::size_t pos = 0, line_no = 0;
  while (pos < data.size()) {
    std::size_t nl = data.find('\n', pos);
    if (nl == std::string::npos) nl = data.size();
    std::string line = data.substr(pos, nl - pos);
    pos = nl + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line_no == 1) continue;  // the header row
    if (line.empty()) continue;
    const std::size_t tab = line.find('\t');
    if (tab == std::string::npos)
      throw Error(at(path, "line " + std::to_string(line_no) + ": expected key<TAB>report"));
    const std::string key = line.substr(0, tab);
    if (key.empty()) throw Error(at(path, "line " + std::to_string(line_no) + ": empty key"));
    ReportSections s = parse_mimic_report(line.substr(tab + 1));
    s.source = path + ":" + std::to_string(line_no);
    emit(each, key, s);
  }
}

void folder(const std::string& path, const Each& each) {
  std::vector<std::string> xml, txt;
  std::error_code ec;
  for (fs::recursive_directory_iterator it(path, ec), end; !ec && it != end; it.increment(ec)) {
    if (!it->is_regular_file(ec)) continue;
    const std::string p = it->path().string(), name = it->path().filename().string();
    if (util::ends_with_ci(name, ".xml")) xml.push_back(p);
    else if (is_mimic_name(name)) txt.push_back(p);
  }
  if (ec) throw Error(at(path, "cannot read folder: " + ec.message()));
  if (xml.empty() && txt.empty()) throw Error(at(path, "no Open-i .xml or MIMIC-CXR sNNN.txt reports found"));
  if (!xml.empty() && !txt.empty())
    throw Error(at(path, "both Open-i .xml and MIMIC-CXR .txt reports found: read them separately"));
  std::sort(xml.begin(), xml.end(), natural_less);
  std::sort(txt.begin(), txt.end());
  for (const auto& p : xml) {
    ReportSections s = parse_iu_xml(io::read_file_bytes(p), p);
    s.source = p;
    emit(each, xml_key(s, p), s);
  }
  for (const auto& p : txt) {
    ReportSections s = parse_mimic_report(io::read_file_bytes(p));
    s.source = p;
    emit(each, fs::path(p).stem().string(), s);
  }
}

}  // namespace

ReportSections parse_mimic_report(const std::string& text) {
  ReportSections out;
  std::string current;
  std::string body;
  bool named = false;  // a FINDINGS or IMPRESSION header was there, even if empty
  auto flush = [&] {
    if (!current.empty()) {
      const std::string t = util::collapse_space(body);
      if (!t.empty()) {
        std::string& dst = current == "findings" ? out.findings : out.impression;
        dst = dst.empty() ? t : dst + " " + t;
      }
    }
    body.clear();
  };
  std::size_t pos = 0;
  while (pos <= text.size()) {
    const std::size_t nl = text.find('\n', pos);
    const std::string line = text.substr(pos, nl == std::string::npos ? std::string::npos : nl - pos);
    const std::string t = util::trim(line);
    const std::size_t colon = t.find(':');
    bool header = false;
    if (colon != std::string::npos && colon > 0) {
      const std::string name = t.substr(0, colon);
      header = is_header_name(name);
      if (header) {
        flush();
        current = section_key(name);
        named = named || !current.empty();
        body = t.substr(colon + 1) + "\n";
      }
    }
    if (!header) body += line + "\n";
    if (nl == std::string::npos) break;
    pos = nl + 1;
  }
  flush();
  if (!named) out.text = util::trim(text);
  return out;
}

ReportSections parse_iu_xml(const std::string& xml, const std::string& where) {
  ReportSections r;
  if (xml.find("<eCitation") == std::string::npos) throw Error(at(where, "not an Open-i report (no <eCitation>)"));
  std::size_t p = 0;
  while ((p = xml.find('<', p)) != std::string::npos) {
    const std::size_t e = xml.find('>', p);
    if (e == std::string::npos) throw Error(at(where, "XML tag not closed at offset " + std::to_string(p)));
    const std::string_view tag(xml.data() + p, e - p + 1);
    auto starts = [&](std::string_view name) {
      return tag.size() > name.size() + 1 && tag.substr(1, name.size()) == name &&
             (tag[name.size() + 1] == ' ' || tag[name.size() + 1] == '>' || tag[name.size() + 1] == '/');
    };
    if (starts("AbstractText")) {
      const std::string label = util::upper(attribute(tag, "Label"));
      std::string body;
      std::size_t next = e + 1;
      if (tag[tag.size() - 2] != '/') {
        const std::size_t close = xml.find("</AbstractText>", e);
        if (close == std::string::npos) throw Error(at(where, "<AbstractText> not closed"));
        body = xml_unescape(std::string_view(xml).substr(e + 1, close - e - 1));
        next = close + 15;
      }
      if (!util::trim(body).empty()) {
        if (label == "FINDINGS") r.findings = body;
        else if (label == "IMPRESSION") r.impression = body;
      }
      p = next;
      continue;
    }
    if (starts("parentImage")) {
      std::string id = attribute(tag, "id");
      if (!id.empty()) r.images.push_back(std::move(id));
    } else if (starts("uId")) {
      r.id = attribute(tag, "id");
    } else if (starts("major")) {
      const std::size_t close = xml.find("</major>", e);
      if (close != std::string::npos) {
        std::string t = util::collapse_space(xml_unescape(std::string_view(xml).substr(e + 1, close - e - 1)));
        if (!t.empty()) r.mesh.push_back(std::move(t));
      }
    }
    p = e + 1;
  }
  return r;
}

std::string report_text(const ReportSections& s) {
  std::string out;
  const std::string findings = clean_report(s.findings), impression = clean_report(s.impression);
  if (!findings.empty()) out += "FINDINGS: " + findings + "\n";
  if (!impression.empty()) {
    if (!out.empty()) out += "\n";
    out += "IMPRESSION: " + impression + "\n";
  }
  if (out.empty()) {
    out = util::trim(s.text);
    if (!out.empty()) out += "\n";
  }
  return out;
}

std::string clean_report(const std::string& text) { return util::collapse_space(text); }

std::vector<std::string> corpus_lines(const ReportSections& s) {
  std::vector<std::string> out;
  auto add = [&](std::string t) {
    for (char& c : t)
      if (c == '\n' || c == '\r') c = ' ';
    if (!t.empty()) out.push_back(std::move(t));
  };
  if (!s.findings.empty() || !s.impression.empty()) {
    add(s.findings);
    add(s.impression);
  } else {
    add(s.text);
  }
  return out;
}

ReportSections sections_only(const ReportSections& s, const std::string& section) {
  ReportSections out = s;
  if (section == "both") return out;
  if (section == "findings") {
    out.impression.clear();
    if (!s.findings.empty() || !s.impression.empty()) out.text.clear();
    return out;
  }
  if (section == "impression") {
    out.findings.clear();
    out.text.clear();
    return out;
  }
  throw UsageError("--section " + section + ": unknown (findings, impression, both)");
}

std::string report_section(const std::string& report, const std::string& section) {
  std::string out;
  for (const auto& line : corpus_lines(sections_only(parse_mimic_report(report), section))) {
    const std::string t = clean_report(line);
    if (t.empty()) continue;
    if (!out.empty()) out += ' ';
    out += t;
  }
  return out;
}

bool natural_less(const std::string& a, const std::string& b) {
  std::size_t i = 0, j = 0;
  auto digit = [](char c) { return c >= '0' && c <= '9'; };
  while (i < a.size() && j < b.size()) {
    if (digit(a[i]) && digit(b[j])) {
      std::size_t ie = i, je = j;
      while (ie < a.size() && digit(a[ie])) ++ie;
      while (je < b.size() && digit(b[je])) ++je;
      std::size_t is = i, js = j;  // leading zeros do not count towards the value
      while (is + 1 < ie && a[is] == '0') ++is;
      while (js + 1 < je && b[js] == '0') ++js;
      if (ie - is != je - js) return ie - is < je - js;
      const int c = a.compare(is, ie - is, b, js, je - js);
      if (c != 0) return c < 0;
      if (ie - i != je - j) return ie - i < je - j;  // "01" after "1"
      i = ie;
      j = je;
      continue;
    }
    if (a[i] != b[j]) return static_cast<unsigned char>(a[i]) < static_cast<unsigned char>(b[j]);
    ++i;
    ++j;
  }
  return a.size() - i < b.size() - j;
}

void for_each_report(const std::string& path, const Each& each) {
  if (path != "-" && fs::is_directory(path)) {
    folder(path, each);
  } else if (path != "-" && is_tsv_name(path)) {
    tsv(path, each);
  } else if (path == "-" || is_archive_name(path)) {
    archive(path, each);
  } else if (util::ends_with_ci(path, ".xml")) {
    ReportSections s = parse_iu_xml(io::read_file_bytes(path), path);
    s.source = path;
    emit(each, xml_key(s, path), s);
  } else if (util::ends_with_ci(path, ".txt")) {
    ReportSections s = parse_mimic_report(io::read_file_bytes(path));
    s.source = path;
    emit(each, fs::path(path).stem().string(), s);
  } else {
    throw Error(at(path,
                   "expected an Open-i archive (.tgz), a folder of MIMIC-CXR or Open-i reports, a .xml or .txt "
                   "report, a TSV (key<TAB>report) or a cx stream (.cx, .tar, .tar.gz, .tar.zst)"));
  }
}

ReportCorpus report_file_corpus(const std::vector<std::string>& paths, const std::string& section) {
  ReportCorpus corpus;
  for (const auto& path : paths)
    for_each_report(path, [&](const std::string&, const ReportSections& s) {
      ++corpus.reports;
      for (auto& line : corpus_lines(sections_only(s, section))) corpus.lines.push_back(std::move(line));
    });
  return corpus;
}

}  // namespace cx::text
