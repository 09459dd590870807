#pragma once
// Radiology report text: FINDINGS / IMPRESSION sections from MIMIC-CXR free-text reports and from
// Indiana University / Open-i XML (Demner-Fushman et al. 2016), the ".txt" layout cx streams carry,
// the cleaning rule of decoder targets, and report corpora for tokenizer training read straight
// from the sources as distributed (the Open-i .tgz without unpacking, a MIMIC-CXR reports tree).
#include <functional>
#include <cstdint>
#include <string>
#include <vector>

namespace cx::text {

struct ReportSections {
  // Section bodies. Open-i: the AbstractText exactly as XML-decoded (nothing else changed, so a
  // corpus from them is byte for byte what the XML holds). MIMIC-CXR and cx ".txt": the section's
  // lines joined, white space runs collapsed to one space (line wraps carry no meaning there).
  std::string findings, impression;
  // The whole report, trimmed, when it has no FINDINGS / IMPRESSION header at all (free-text
  // MIMIC reports, a TSV cell without headers); empty otherwise (headers with empty bodies give an
  // empty report).
  std::string text;
  std::string source;               // the file, or "archive.tgz:ecgen-radiology/1.xml"
  std::string id;                   // Open-i uId ("CXR1"); empty elsewhere
  std::vector<std::string> images;  // Open-i parentImage ids, in file order
  std::vector<std::string> mesh;    // Open-i MeSH <major> terms, white space collapsed

  bool empty() const { return findings.empty() && impression.empty() && text.empty(); }
};

// Sections of a MIMIC-CXR report (also the cx ".txt" layout): a header is an upper-case name
// followed by ':' at the start of a line ("FINDINGS:", "IMPRESSION:", "INDICATION:", ...), and the
// text up to the next header belongs to it. FINDING(S) -> findings; IMPRESSION(S) / CONCLUSION ->
// impression; a section named twice is joined with a space. Placeholders ("___") are kept.
ReportSections parse_mimic_report(const std::string& text);
// An Open-i ecgen XML report. Throws cx::Error naming `where` for a file that is not one
// (no <eCitation>) or has an unclosed tag. AbstractText sections that are only white space count
// as absent.
ReportSections parse_iu_xml(const std::string& xml, const std::string& where);
// The text cx-ingest stores in <key>.txt: "FINDINGS: ...\n\nIMPRESSION: ...\n" from the sections
// present (each through clean_report), or the whole report (`text`, trimmed) plus "\n" when
// neither is there; "" for an empty report.
std::string report_text(const ReportSections& sections);
// The decoder-target rule: every run of white space (space, tab, CR, LF, VT, FF) becomes one
// space, leading and trailing white space goes; nothing else changes (case, punctuation,
// de-identification placeholders "XXXX" / "___" kept as written).
std::string clean_report(const std::string& text);
// The lines a report adds to a tokenizer corpus: FINDINGS then IMPRESSION, or the whole text when
// it has neither; empty ones skipped; line breaks (CR, LF) inside a section become spaces, so one
// section is one line. Nothing else changes.
std::vector<std::string> corpus_lines(const ReportSections& sections);

// The sections a report-generation target names: "findings" keeps FINDINGS (a report without any
// section header counts as findings: its whole text), "impression" keeps IMPRESSION, "both" keeps
// everything. Anything else is a cx::UsageError naming --section.
ReportSections sections_only(const ReportSections& sections, const std::string& section);
// The decoder target of a report text (a cx ".txt" or MIMIC-CXR report): the chosen sections'
// corpus_lines through clean_report, joined with a space ("both": FINDINGS then IMPRESSION). Empty
// when the report has none of them.
std::string report_section(const std::string& report, const std::string& section);

// Report texts from
//  - an Open-i archive (.tgz / .tar.gz / .tar): every *.xml member (ecgen-radiology/N.xml), read
//    without unpacking, in natural order of member names (1, 2, ..., 10, ...), keyed by uId;
//  - a folder: a MIMIC-CXR reports tree (files/pXX/pNNN/sNNN.txt, walked recursively, sorted by
//    path, keyed by the study "sNNN") or a folder of Open-i XML (natural order as above);
//  - one Open-i .xml or MIMIC-CXR .txt file;
//  - a TSV (.tsv, optionally gzip/zstd compressed): a header row, then key<TAB>report per line
//    (the report cell parsed as a MIMIC/cx ".txt" report);
//  - a cx stream (.cx, .tar, .tar.gz, .tar.zst, .tgz, or "-"): the .txt field of every record that has
//    one, keyed by the record key, in stream order.
// Calls each(key, sections) in that deterministic order; reports that are empty() are skipped.
// Errors (cx::Error / TruncatedError) name the file (and the member inside an archive).
void for_each_report(const std::string& path,
                     const std::function<void(const std::string& key, const ReportSections& sections)>& each);

// A tokenizer corpus from report files: every report for_each_report finds in `paths`, in order, as
// the corpus_lines of its `section` (sections_only: findings, impression or both). `reports` counts
// the reports read.
struct ReportCorpus {
  std::vector<std::string> lines;
  std::int64_t reports = 0;
};
ReportCorpus report_file_corpus(const std::vector<std::string>& paths, const std::string& section);

// Name order with digit runs compared as numbers ("ecgen-radiology/9.xml" < ".../10.xml").
bool natural_less(const std::string& a, const std::string& b);

}  // namespace cx::text
