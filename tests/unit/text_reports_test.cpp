// cx::text report sections, cleaning and corpora: hand-written MIMIC-CXR and Open-i reports, and
// the Open-i corpus of ../shared/fixtures/llm/README.md from the archive as distributed.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

#include "cx/cli/error.hpp"
#include "cx/io/sha256.hpp"
#include "cx/io/stream.hpp"
#include "cx/io/tar.hpp"
#include "cx/text/reports.hpp"
#include "test_support.hpp"

namespace fs = std::filesystem;
using namespace cx::text;

namespace {

void write(const std::string& path, const std::string& data) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream f(path, std::ios::binary);
  f << data;
}

std::string iu_xml(const std::string& uid, const std::string& findings, const std::string& impression) {
  return "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n<eCitation>\n   <uId id=\"" + uid +
         "\"/>\n   <Abstract>\n      <AbstractText Label=\"COMPARISON\">None.</AbstractText>\n"
         "      <AbstractText Label=\"FINDINGS\">" + findings + "</AbstractText>\n"
         "      <AbstractText Label=\"IMPRESSION\">" + impression + "</AbstractText>\n   </Abstract>\n"
         "   <MeSH><major>Lung/hypoinflation</major></MeSH>\n"
         "   <parentImage id=\"" + uid + "_IM-0001-1001\"><figureId>F1</figureId></parentImage>\n</eCitation>\n";
}

using Seen = std::vector<std::pair<std::string, ReportSections>>;

Seen read_all(const std::string& path) {
  Seen seen;
  for_each_report(path, [&](const std::string& key, const ReportSections& s) { seen.emplace_back(key, s); });
  return seen;
}

const char* kMimic =
    "                                 FINAL REPORT\n"
    " EXAMINATION:  CHEST (PA AND LAT)\n"
    " \n"
    " INDICATION:  ___ year old woman with cough  // ? pneumonia\n"
    " \n"
    " COMPARISON:  ___\n"
    " \n"
    " FINDINGS: \n"
    " \n"
    " The lungs are clear.  No pleural effusion or\n"
    " pneumothorax.  Heart size is normal; ___ catheter tip in the\n"
    " SVC.\n"
    " \n"
    " IMPRESSION: \n"
    " \n"
    " No acute cardiopulmonary process.\n"
    " \n"
    " RECOMMENDATION(S):  Follow-up in ___ weeks.\n";

}  // namespace

TEST(TextReports, MimicSections) {
  ReportSections s = parse_mimic_report(kMimic);
  EXPECT_EQ(s.findings,
            "The lungs are clear. No pleural effusion or pneumothorax. Heart size is normal; ___ catheter tip in the SVC.");
  EXPECT_EQ(s.impression, "No acute cardiopulmonary process.");
  EXPECT_EQ(s.text, "");
  EXPECT_EQ(report_text(s),
            "FINDINGS: The lungs are clear. No pleural effusion or pneumothorax. Heart size is normal; ___ catheter tip "
            "in the SVC.\n\nIMPRESSION: No acute cardiopulmonary process.\n");

  // Impression only (CONCLUSION counts as one), a header with text on its line, a repeated section.
  s = parse_mimic_report("INDICATION: chest pain\nCONCLUSION: Mild cardiomegaly.\nIMPRESSION:  ___ is unchanged.\n");
  EXPECT_EQ(s.findings, "");
  EXPECT_EQ(s.impression, "Mild cardiomegaly. ___ is unchanged.");
  EXPECT_EQ(report_text(s), "IMPRESSION: Mild cardiomegaly. ___ is unchanged.\n");

  // Lower-case "Findings:" is not a header: it stays in the section it is in.
  s = parse_mimic_report("FINDINGS: Heart normal.\nFindings: none else.\n");
  EXPECT_EQ(s.findings, "Heart normal. Findings: none else.");

  // Neither section: the whole report, trimmed, is the text.
  s = parse_mimic_report("\n  PA and lateral views of the chest.\n  No change since ___.  \n");
  EXPECT_TRUE(s.findings.empty() && s.impression.empty());
  EXPECT_EQ(s.text, "PA and lateral views of the chest.\n  No change since ___.");
  EXPECT_EQ(report_text(s), "PA and lateral views of the chest.\n  No change since ___.\n");
  EXPECT_EQ(corpus_lines(s), (std::vector<std::string>{"PA and lateral views of the chest.   No change since ___."}));

  // Headers with empty bodies give no section; the cx .txt layout parses back to itself.
  s = parse_mimic_report("FINDINGS:\n\nIMPRESSION: \n");
  EXPECT_TRUE(s.empty());
  EXPECT_EQ(report_text(s), "");
  const std::string layout = "FINDINGS: a b.\n\nIMPRESSION: c.\n";
  EXPECT_EQ(report_text(parse_mimic_report(layout)), layout);
}

TEST(TextReports, CleaningAndCorpusLines) {
  EXPECT_EQ(clean_report("  FINDINGS: The  heart\tis\r\nnormal.\n\nIMPRESSION: XXXX  XXXX, ___ .  "),
            "FINDINGS: The heart is normal. IMPRESSION: XXXX XXXX, ___ .");
  EXPECT_EQ(clean_report(" \n\t "), "");
  ReportSections s;
  s.findings = "Heart  size\nnormal.";
  s.impression = "Normal chest x-XXXX.";
  s.text = "ignored when a section is there";
  // Only line breaks change (one section, one line); double spaces stay.
  EXPECT_EQ(corpus_lines(s), (std::vector<std::string>{"Heart  size normal.", "Normal chest x-XXXX."}));
  s.findings.clear();
  EXPECT_EQ(corpus_lines(s), (std::vector<std::string>{"Normal chest x-XXXX."}));
  EXPECT_EQ(report_text(s), "IMPRESSION: Normal chest x-XXXX.\n");
}

TEST(TextReports, OpenIXml) {
  const std::string xml = iu_xml("CXR7", "Heart size  normal. &lt;BR&gt; A &amp;lt; sign, caf&#233;.", " \n ");
  ReportSections s = parse_iu_xml(xml, "7.xml");
  EXPECT_EQ(s.findings, "Heart size  normal. <BR> A &lt; sign, caf\xC3\xA9.");  // decoded once, spaces kept
  EXPECT_EQ(s.impression, "");  // white space only: absent
  EXPECT_EQ(s.id, "CXR7");
  EXPECT_EQ(s.images, (std::vector<std::string>{"CXR7_IM-0001-1001"}));
  EXPECT_EQ(s.mesh, (std::vector<std::string>{"Lung/hypoinflation"}));
  EXPECT_EQ(report_text(s), "FINDINGS: Heart size normal. <BR> A &lt; sign, caf\xC3\xA9.\n");
  EXPECT_EQ(cx_test::error_of([] { parse_iu_xml("<root/>", "x.xml"); }), "x.xml: not an Open-i report (no <eCitation>)");
  EXPECT_EQ(cx_test::error_of([] { parse_iu_xml("<eCitation><AbstractText Label=\"FINDINGS\">a", "x.xml"); }),
            "x.xml: <AbstractText> not closed");
  EXPECT_EQ(cx_test::error_of([] { parse_iu_xml("<eCitation><uId", "x.xml"); }), "x.xml: XML tag not closed at offset 11");
}

TEST(TextReports, NaturalOrder) {
  EXPECT_TRUE(natural_less("ecgen-radiology/9.xml", "ecgen-radiology/10.xml"));
  EXPECT_FALSE(natural_less("ecgen-radiology/10.xml", "ecgen-radiology/9.xml"));
  EXPECT_TRUE(natural_less("a/2.xml", "b/1.xml"));
  EXPECT_TRUE(natural_less("1.xml", "01.xml"));
  EXPECT_FALSE(natural_less("1.xml", "1.xml"));
  EXPECT_TRUE(natural_less("x", "x1"));
}

TEST(TextReports, OpenICorpusFromTheArchive) {
  const std::string tgz = cx_test::shared_dir() + "/samples/reports/NLMCXR_reports.tgz";
  if (!fs::exists(tgz)) GTEST_SKIP() << tgz << " not found (../shared/samples absent)";
  std::string corpus;
  std::size_t lines = 0, reports = 0;
  std::string first_key, first_source;
  for_each_report(tgz, [&](const std::string& key, const ReportSections& s) {
    if (reports++ == 0) {
      first_key = key;
      first_source = s.source;
    }
    for (const auto& l : corpus_lines(s)) {
      corpus += l + "\n";
      ++lines;
    }
  });
  // The fixture README / tokenizer_cases.json "training": 7346 lines, 1,067,311 bytes.
  EXPECT_EQ(lines, 7346u);
  EXPECT_EQ(corpus.size(), 1067311u);
  EXPECT_EQ(cx::io::sha256_hex(corpus), "a5c0bd9c7a7c9b8c67ae58537ce7a4b4757eb6777b013f9a643dc8287990139e");
  EXPECT_EQ(first_key, "CXR1");
  EXPECT_EQ(first_source, tgz + ":ecgen-radiology/1.xml");
  EXPECT_LE(reports, 3955u);  // 3955 XML files; those with neither section are skipped
}

TEST(TextReports, SourcesOfEveryKind) {
  cx_test::TempDir t("cx_text_reports");
  // A MIMIC-CXR reports tree, walked sorted; non-report files ignored.
  write(t / "mimic/files/p10/p10000032/s50414267.txt", kMimic);
  write(t / "mimic/files/p10/p10000032/s53189527.txt", "IMPRESSION: Stable.\n");
  write(t / "mimic/files/p10/p10000764/s57375967.txt", "FINDINGS:\n\n");  // empty: skipped
  write(t / "mimic/files/p10/p10000032/notes.txt", "not a report\n");
  write(t / "mimic/files/p10/p10000001/s50000001.txt", "FINDINGS: First.\n");
  Seen seen = read_all(t / "mimic");
  ASSERT_EQ(seen.size(), 3u);
  EXPECT_EQ(seen[0].first, "s50000001");
  EXPECT_EQ(seen[1].first, "s50414267");
  EXPECT_EQ(seen[1].second.impression, "No acute cardiopulmonary process.");
  EXPECT_EQ(seen[1].second.source, t / "mimic/files/p10/p10000032/s50414267.txt");
  EXPECT_EQ(seen[2].first, "s53189527");
  // One MIMIC file alone.
  seen = read_all(t / "mimic/files/p10/p10000032/s53189527.txt");
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].second.impression, "Stable.");

  // A folder of Open-i XML: natural order, keyed by uId.
  write(t / "iu/ecgen-radiology/10.xml", iu_xml("CXR10", "Ten.", "X."));
  write(t / "iu/ecgen-radiology/9.xml", iu_xml("CXR9", "Nine.", ""));
  seen = read_all(t / "iu");
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].first, "CXR9");
  EXPECT_EQ(seen[1].first, "CXR10");
  EXPECT_EQ(seen[1].second.impression, "X.");

  // An Open-i archive (members out of order; a non-XML member ignored): natural order; a broken
  // member is named inside the archive.
  {
    std::FILE* f = std::fopen((t / "reports.tar").c_str(), "wb");
    cx::io::tar::Writer w(f, "reports.tar");
    w.add("ecgen-radiology/10.xml", iu_xml("CXR10", "Ten.", ""));
    w.add("ecgen-radiology/2.xml", iu_xml("CXR2", "Two.", "II."));
    w.add("README", "hello");
    w.finish();
    std::fclose(f);
  }
  seen = read_all(t / "reports.tar");
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].first, "CXR2");
  EXPECT_EQ(seen[0].second.source, t / "reports.tar" + ":ecgen-radiology/2.xml");
  EXPECT_EQ(seen[1].first, "CXR10");
  {
    std::FILE* f = std::fopen((t / "bad.tgz").c_str(), "wb");
    cx::io::tar::Writer w(f, "bad.tgz");  // not compressed: the format is told by content
    w.add("ecgen-radiology/1.xml", iu_xml("CXR1", "One.", ""));
    w.add("ecgen-radiology/3.xml", "<html/>");
    w.finish();
    std::fclose(f);
  }
  EXPECT_EQ(cx_test::error_of([&] { read_all(t / "bad.tgz"); }),
            t / "bad.tgz" + ":ecgen-radiology/3.xml: not an Open-i report (no <eCitation>)");

  // A TSV: header row, key<TAB>report (cx-report generate's layout), CRLF tolerated.
  write(t / "reports.tsv", "key\treport\r\nb\tFINDINGS: Clear. IMPRESSION: Normal.\r\na\tNo acute process.\n\nc\t\n");
  seen = read_all(t / "reports.tsv");
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].first, "b");
  EXPECT_EQ(seen[0].second.findings, "Clear. IMPRESSION: Normal.");  // headers start lines; a TSV cell is one line
  EXPECT_EQ(seen[1].first, "a");
  EXPECT_EQ(seen[1].second.text, "No acute process.");
  // The tokenizer corpus of files: every report of every file in order, its chosen sections' lines.
  write(t / "more.txt", "FINDINGS: Heart normal.\nIMPRESSION: Stable.\n");
  const std::vector<std::string> files = {t / "mimic/files/p10/p10000032/s53189527.txt", t / "more.txt"};
  cx::text::ReportCorpus corpus = cx::text::report_file_corpus(files, "both");
  EXPECT_EQ(corpus.reports, 2);
  EXPECT_EQ(corpus.lines, (std::vector<std::string>{"Stable.", "Heart normal.", "Stable."}));
  corpus = cx::text::report_file_corpus(files, "findings");
  EXPECT_EQ(corpus.reports, 2);
  EXPECT_EQ(corpus.lines, (std::vector<std::string>{"Heart normal."}));
  EXPECT_TRUE(cx::text::report_file_corpus({t / "mimic/files/p10/p10000764/s57375967.txt"}, "both").lines.empty());
  write(t / "bad.tsv", "key\treport\nno tab here\n");
  EXPECT_EQ(cx_test::error_of([&] { read_all(t / "bad.tsv"); }), t / "bad.tsv" + ": line 2: expected key<TAB>report");

  // A cx stream: the .txt field of each record that has one.
  {
    std::FILE* f = std::fopen((t / "s.tar").c_str(), "wb");
    cx::io::StreamWriter w(f, cx::io::new_stream_header(), "s.tar");
    cx::io::Record r;
    r.key = "0001";
    r.set("txt", "FINDINGS: Lungs clear.\n\nIMPRESSION: Normal.\n");
    w.write(r);
    cx::io::Record r2;
    r2.key = "0002";
    r2.set("json", "{}");
    w.write(r2);
    cx::io::Record r3;
    r3.key = "0003";
    r3.set("txt", "Free text.\n");
    w.write(r3);
    w.finish();
    std::fclose(f);
  }
  seen = read_all(t / "s.tar");
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].first, "0001");
  EXPECT_EQ(seen[0].second.findings, "Lungs clear.");
  EXPECT_EQ(seen[0].second.impression, "Normal.");
  EXPECT_EQ(seen[1].first, "0003");
  EXPECT_EQ(seen[1].second.text, "Free text.");
  // cx's own name for a stream reads the same.
  fs::copy_file(t / "s.tar", t / "s.cx");
  std::vector<std::pair<std::string, ReportSections>> again;
  for_each_report(t / "s.cx", [&](const std::string& k, const ReportSections& r) { again.emplace_back(k, r); });
  ASSERT_EQ(again.size(), seen.size());
  EXPECT_EQ(again[1].second.text, "Free text.");
  // A cut stream is an error naming it.
  fs::resize_file(t / "s.tar", 1536);
  EXPECT_NE(cx_test::error_of([&] { read_all(t / "s.tar"); }).find(t / "s.tar"), std::string::npos);

  // Other names and missing files.
  write(t / "notes.md", "x");
  EXPECT_EQ(cx_test::error_of([&] { read_all(t / "notes.md"); }).rfind(t / "notes.md: expected an Open-i archive", 0), 0u);
  EXPECT_EQ(cx_test::error_of([&] { read_all(t / "missing.tgz"); }).rfind(t / "missing.tgz: cannot open", 0), 0u);
  fs::create_directories(t / "empty");
  EXPECT_EQ(cx_test::error_of([&] { read_all(t / "empty"); }),
            t / "empty" + ": no Open-i .xml or MIMIC-CXR sNNN.txt reports found");
}
