// Dataset adapters on the real label files in ../shared/samples/labels (CheXpert, NIH, RSNA,
// VinDr), checked record by record against an independent parse with Python's csv module
// (tests/data/adapter_reference.py); the other layouts on small files written here. Also the
// streaming CSV reader and the key rules (the label coding is data_labels_test.cpp's).
#include <gtest/gtest.h>

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cx/cli/error.hpp"
#include "cx/data/adapters.hpp"
#include "cx/data/csv_reader.hpp"
#include "cx/data/labels.hpp"
#include "io_python_helper.hpp"
#include "test_support.hpp"

using cx_test::error_of;

namespace fs = std::filesystem;
using nlohmann::json;
using namespace cx::data;

namespace {

std::string shared_dir() {
  if (const char* e = std::getenv("CX_SHARED"); e && *e) return e;
  return CX_SHARED_DIR;
}

std::string sample(const std::string& rel) { return shared_dir() + "/samples/" + rel; }

// Runs tests/data/adapter_reference.py; one JSON object per output line, parsed on access
// (the NIH file has 112k rows: holding them all as json would cost hundreds of MB).
class Reference {
 public:
  std::vector<std::string> lines;
  std::size_t size() const { return lines.size(); }
  bool empty() const { return lines.empty(); }
  json operator[](std::size_t i) const { return json::parse(lines.at(i)); }
  std::vector<json>::size_type count() const { return lines.size(); }
};

Reference reference(const std::vector<std::string>& args, std::string* why_not) {
  std::ifstream f(std::string(CX_TEST_DATA_DIR) + "/adapter_reference.py");
  std::stringstream ss;
  ss << f.rdbuf();
  auto r = cx_test::run_python(ss.str(), args);
  Reference out;
  if (!r.ran) {
    *why_not = r.why_not;
    return out;
  }
  if (r.status != 0) {
    *why_not = "reference failed: " + r.output.substr(0, 2000);
    return out;
  }
  std::istringstream lines(r.output);
  std::string line;
  while (std::getline(lines, line))
    if (!line.empty()) out.lines.push_back(line);
  return out;
}

class TempDir {
 public:
  TempDir() {
    path_ = fs::temp_directory_path() / ("cx_adapters_" + std::to_string(::getpid()) + "_" + std::to_string(counter_++));
    fs::create_directories(path_);
  }
  ~TempDir() { fs::remove_all(path_); }
  std::string operator/(const std::string& rel) const { return (path_ / rel).string(); }
  std::string str() const { return path_.string(); }

 private:
  fs::path path_;
  static inline int counter_ = 0;
};

void write(const std::string& path, const std::string& text) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary) << text;
}

std::vector<IngestItem> take(ItemSource& src, std::size_t n = SIZE_MAX) {
  std::vector<IngestItem> items;
  IngestItem it;
  while (items.size() < n && src.next(it)) items.push_back(it);
  return items;
}


#define REQUIRE_SAMPLE(path) \
  if (!fs::exists(path)) GTEST_SKIP() << "sample not found: " << (path) << " (set CX_SHARED)"

}  // namespace

// --- the streaming CSV reader ---

TEST(CsvReader, QuotesCrlfBomAndGzip) {
  TempDir t;
  write(t / "a.csv", "\xEF\xBB\xBFid,text,n\r\n1,\"a, \"\"quoted\"\"\nline\",3\r\n\r\n2,plain,4\n");
  CsvReader r(t / "a.csv");
  EXPECT_EQ(r.columns(), (std::vector<std::string>{"id", "text", "n"}));
  std::vector<std::string> row;
  ASSERT_TRUE(r.next(row));
  EXPECT_EQ(row, (std::vector<std::string>{"1", "a, \"quoted\"\nline", "3"}));
  EXPECT_EQ(r.line(), 2u);
  ASSERT_TRUE(r.next(row));
  EXPECT_EQ(row, (std::vector<std::string>{"2", "plain", "4"}));
  EXPECT_EQ(r.line(), 5u);  // the quoted line break and the blank line count
  EXPECT_FALSE(r.next(row));

  ASSERT_EQ(std::system(("gzip -c " + t / "a.csv" + " > " + t / "b.csv.gz").c_str()), 0);
  CsvReader g(t / "b.csv.gz");
  ASSERT_TRUE(g.next(row));
  EXPECT_EQ(row[1], "a, \"quoted\"\nline");

  write(t / "bad.csv", "a,b\n1,2\n1,2,3\n");
  CsvReader b(t / "bad.csv");
  ASSERT_TRUE(b.next(row));
  EXPECT_NE(error_of([&] { b.next(row); }).find("bad.csv: line 3: 3 fields, the header has 2"), std::string::npos);
  EXPECT_NE(error_of([&] { b.require_column("zzz"); }).find("no column 'zzz' (columns: a, b)"), std::string::npos);
  EXPECT_NE(error_of([&] { CsvReader x(t / "missing.csv"); }).find("missing.csv: cannot open"), std::string::npos);

  // A gzip file cut in the middle is reported, not read as a short file.
  std::string gz;
  {
    std::ifstream f(t / "b.csv.gz", std::ios::binary);
    std::stringstream ss;
    ss << f.rdbuf();
    gz = ss.str();
  }
  write(t / "cut.csv.gz", gz.substr(0, gz.size() - 12));
  EXPECT_NE(error_of([&] {
              CsvReader c(t / "cut.csv.gz");
              while (c.next(row)) {
              }
            }).find("cut.csv.gz"),
            std::string::npos);
}

// --- real label files ---

TEST(Adapters, ChexpertMatchesCsv) {
  const std::string csv = sample("labels/chexpert_train.csv.gz");
  REQUIRE_SAMPLE(csv);
  const std::size_t n = 5000;
  std::string why;
  auto ref = reference({"chexpert", csv, std::to_string(n)}, &why);
  if (ref.empty()) GTEST_SKIP() << why;
  AdapterOptions o;
  o.label_file = csv;  // read gzipped as it is
  o.root = "/data/chexpert-root";
  auto src = open_dataset("chexpert", o);
  ASSERT_NE(src->label_set(), nullptr);
  EXPECT_EQ(src->label_set()->name, "chexpert14");
  auto items = take(*src, n);
  ASSERT_EQ(items.size(), ref.size());
  std::size_t uncertain = 0, blank = 0;
  for (std::size_t i = 0; i < items.size(); ++i) {
    const auto& m = items[i].meta;
    const json r = ref[i];
    ASSERT_EQ(m["source"], r["path"]) << i;
    EXPECT_EQ(items[i].image_path, "/data/chexpert-root/" + r["path"].get<std::string>());
    EXPECT_EQ(m["labels"], r["labels"]) << "row " << i + 2;
    EXPECT_EQ(m["view"], r["view"]) << i;
    EXPECT_EQ(m["age"], r["age"]) << i;
    if (!r["sex"].is_null()) {
      EXPECT_EQ(m["sex"], r["sex"]) << i;
    }
    EXPECT_EQ(m["split"], "train");
    EXPECT_EQ(items[i].origin, csv + ":" + std::to_string(i + 2));
    for (auto& [k, v] : r["labels"].items()) {
      uncertain += v == json(-1);
      blank += v.is_null();
    }
  }
  // The sample exercises all four codes (else this comparison would prove less).
  EXPECT_GT(uncertain, 100u);
  EXPECT_GT(blank, 1000u);
  EXPECT_EQ(items[0].key, "patient00001_study1_view1_frontal");
  EXPECT_EQ(items[3].meta["view"], "LATERAL");
  // The default root: the label file's folder's parent (Path starts with the dataset folder).
  o.root.clear();
  o.label_file = "/d/CheXpert-v1.0-small/train.csv";
  TempDir t;
  write(t / "CheXpert-v1.0-small/train.csv",
        "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,Lung Opacity,"
        "Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,Pleural Other,Fracture,"
        "Support Devices\n"
        "CheXpert-v1.0-small/train/patient1/study1/view1_frontal.jpg,Male,50,Frontal,PA,,,1.0,,,,,,,,,,,\n"
        "CheXpert-v1.0-small/train/patient1/study1/view2_frontal.jpg,Male,50,Frontal,PA,,,7.0,,,,,,,,,,,\n");
  o.label_file = t / "CheXpert-v1.0-small/train.csv";
  auto small = open_dataset("chexpert", o);
  IngestItem it;
  ASSERT_TRUE(small->next(it));
  EXPECT_EQ(it.image_path, t / "CheXpert-v1.0-small/train/patient1/study1/view1_frontal.jpg");
  std::string err = error_of([&] { small->next(it); });
  EXPECT_NE(err.find("train.csv:3: Cardiomegaly: label cell '7.0'"), std::string::npos) << err;
}

TEST(Adapters, NihMatchesCsvEveryRow) {
  const std::string csv = sample("labels/Data_Entry_2017_v2020.csv.gz");
  REQUIRE_SAMPLE(csv);
  std::string why;
  auto ref = reference({"nih", csv}, &why);
  if (ref.empty()) GTEST_SKIP() << why;
  TempDir t;
  // Three rows' images in the Kaggle layout (images_NNN/images/), one at the root.
  write(t / "images_001/images/00000001_000.png", "x");
  write(t / "images_002/images/00000001_001.png", "x");
  write(t / "00000002_000.png", "x");
  AdapterOptions o;
  o.label_file = csv;
  o.root = t.str();
  auto src = open_dataset("nih", o);
  ASSERT_EQ(ref.size(), 112120u);
  std::vector<IngestItem> first;  // the first rows, for the path checks below
  std::size_t boxed = 0, i = 0;
  for (IngestItem item; src->next(item); ++i) {
    ASSERT_LT(i, ref.size());
    if (i < 4) first.push_back(item);
    const auto& m = item.meta;
    const json r = ref[i];
    ASSERT_EQ(m["source"], r["image"]) << i;
    ASSERT_EQ(m["labels"], r["labels"]) << "row " << i + 2;
    EXPECT_EQ(m["view"], r["view"]);
    EXPECT_EQ(m["sex"], r["sex"]);
    EXPECT_EQ(m["age"], r["age"]);
    EXPECT_EQ(m["patient"], r["patient"]);
    const auto& rb = r["boxes"];
    if (!rb.empty()) {
      ++boxed;
      ASSERT_TRUE(m.contains("boxes")) << i;
      ASSERT_EQ(m["boxes"].size(), rb.size());
      for (std::size_t k = 0; k < rb.size(); ++k) {
        EXPECT_EQ(m["boxes"][k]["x"].get<double>(), rb[k][0].get<double>());
        EXPECT_EQ(m["boxes"][k]["height"].get<double>(), rb[k][3].get<double>());
      }
    } else {
      EXPECT_FALSE(m.contains("boxes")) << i;
    }
  }
  EXPECT_EQ(i, ref.size());
  EXPECT_EQ(boxed, 880u);  // BBox_List_2017 covers 984 boxes on 880 images
  ASSERT_EQ(first.size(), 4u);
  EXPECT_EQ(first[0].image_path, t / "images_001/images/00000001_000.png");
  EXPECT_EQ(first[1].image_path, t / "images_002/images/00000001_001.png");
  EXPECT_EQ(first[3].image_path, t / "00000002_000.png");
  EXPECT_EQ(first[0].key, "00000001_000");
  // Acquisition facts for the pixel spacing: 2682 x 2749 at 0.143 mm.
  EXPECT_EQ(first[0].meta["acquisition"]["width"], 2682);
  EXPECT_DOUBLE_EQ(first[0].meta["acquisition"]["pixel_spacing"][0].get<double>(), 0.14300000000000002);
}

TEST(Adapters, NihSplitListsAndUnknownFinding) {
  TempDir t;
  write(t / "Data_Entry_2017.csv",
        "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
        "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y],\n"
        "a_000.png,Hernia|Mass,0,1,058Y,F,PA,2500,2048,0.171,0.171,\n"
        "b_000.png,No Finding,0,2,60,M,AP,2500,2048,0.171,0.171,\n"
        "c_000.png,Hernia|Bogus,0,3,60,M,AP,2500,2048,0.171,0.171,\n");
  write(t / "train_val_list.txt", "a_000.png\n");
  write(t / "test_list.txt", "b_000.png\n");
  AdapterOptions o;
  o.label_file = t / "Data_Entry_2017.csv";
  auto src = open_dataset("nih", o);
  IngestItem a, b, c;
  ASSERT_TRUE(src->next(a));
  ASSERT_TRUE(src->next(b));
  EXPECT_EQ(a.meta["split"], "train");
  EXPECT_EQ(b.meta["split"], "test");
  EXPECT_EQ(a.meta["age"], 58);  // the 2017 release's "058Y"
  EXPECT_EQ(a.meta["labels"]["Hernia"], 1);
  EXPECT_EQ(a.meta["labels"]["Mass"], 1);
  EXPECT_EQ(a.meta["labels"]["Atelectasis"], 0);
  for (auto& [k, v] : b.meta["labels"].items()) EXPECT_EQ(v, 0) << k;
  EXPECT_NE(error_of([&] { src->next(c); }).find("Data_Entry_2017.csv:4: Finding Labels: unknown finding 'Bogus'"),
            std::string::npos);
}

TEST(Adapters, RsnaMatchesCsvEveryPatient) {
  const std::string zip = sample("labels/kaggle_stage_2_train_labels.csv.zip");
  REQUIRE_SAMPLE(zip);
  std::string why;
  auto ref = reference({"rsna", zip}, &why);
  if (ref.empty()) GTEST_SKIP() << why;
  TempDir t;
  ASSERT_EQ(std::system(("unzip -q -o " + zip + " -d " + t.str()).c_str()), 0) << "unzip";
  fs::create_directories(t / "stage_2_train_images");
  AdapterOptions o;
  o.label_file = t / "stage_2_train_labels.csv";
  auto src = open_dataset("rsna", o);
  auto items = take(*src);
  ASSERT_EQ(items.size(), ref.size());
  std::size_t positives = 0;
  for (std::size_t i = 0; i < items.size(); ++i) {
    const auto& m = items[i].meta;
    const json r = ref[i];
    ASSERT_EQ(items[i].key, r["patientId"]) << i;
    EXPECT_EQ(m["labels"]["Pneumonia"], r["target"]);
    positives += r["target"] == json(1);
    ASSERT_EQ(m["boxes"].size(), r["boxes"].size()) << i;
    for (std::size_t k = 0; k < r["boxes"].size(); ++k) {
      EXPECT_EQ(m["boxes"][k]["x"].get<double>(), r["boxes"][k][0].get<double>());
      EXPECT_EQ(m["boxes"][k]["y"].get<double>(), r["boxes"][k][1].get<double>());
      EXPECT_EQ(m["boxes"][k]["width"].get<double>(), r["boxes"][k][2].get<double>());
      EXPECT_EQ(m["boxes"][k]["height"].get<double>(), r["boxes"][k][3].get<double>());
    }
    EXPECT_EQ(items[i].image_path, t / ("stage_2_train_images/" + r["patientId"].get<std::string>() + ".dcm"));
  }
  EXPECT_GT(positives, 5000u);
}

TEST(Adapters, VindrVotesAndMajorityMatchCsv) {
  const std::string csv = sample("labels/vinbigdata-train.csv.gz");
  REQUIRE_SAMPLE(csv);
  std::string why;
  auto ref = reference({"vindr", csv}, &why);
  if (ref.empty()) GTEST_SKIP() << why;
  TempDir t;
  AdapterOptions o;
  o.label_file = csv;
  o.root = t.str();
  const std::string first = ref[0]["image_id"].get<std::string>(), second = ref[1]["image_id"].get<std::string>();
  write(t / (second + ".png"), "x");  // the Kaggle PNG conversion: found instead of .dicom
  auto src = open_dataset("vindr", o);
  auto items = take(*src);
  ASSERT_EQ(items.size(), ref.size());
  std::size_t split_votes = 0;
  for (std::size_t i = 0; i < items.size(); ++i) {
    const auto& m = items[i].meta;
    const json r = ref[i];
    ASSERT_EQ(items[i].key, r["image_id"]) << i;
    ASSERT_EQ(m["votes"], r["votes"]) << i;
    ASSERT_EQ(m["labels"], r["labels"]) << i;
    EXPECT_EQ(m["boxes"].size(), r["boxes"].get<std::size_t>());
    std::set<std::string> all;
    for (auto& [rad, cls] : r["votes"].items())
      for (auto& c : cls) all.insert(c);
    for (auto& [c, v] : r["labels"].items())
      if (all.count(c) && v == json(0)) ++split_votes;  // named by a minority: negative by majority
  }
  EXPECT_GT(split_votes, 1000u);  // the majority rule is exercised, not only unanimous readings
  EXPECT_EQ(items[0].image_path, t / (first + ".dicom"));
  EXPECT_EQ(items[1].image_path, t / (second + ".png"));
}

// --- layouts without a real sample here: small files in the datasets' shapes ---

// PhysioNet's VinDr-CXR 1.0.0 image-level labels (annotations/image_labels_train.csv beside train/):
// one 0/1 row per radiologist, global labels such as Tuberculosis included; the test file's
// consensus rows without rad_ID; a value other than 0/1 named by line and column.
TEST(Adapters, VindrImageLabelsWideForm) {
  TempDir t;
  write(t / "annotations/image_labels_train.csv",
        "image_id,rad_ID,Aortic enlargement,Cardiomegaly,Pleural effusion,Tuberculosis,No finding\n"
        "img1,R1,1,1,0,1,0\n"
        "img1,R2,0,1,0,0,0\n"
        "img1,R3,0,1,0,1,0\n"
        "img2,R4,0,0,0,0,1\n"
        "img2,R5,0,0,1,0,0\n"
        "img2,R6,0,0,0,0,1\n");
  std::filesystem::create_directories(t / "train");
  AdapterOptions o;
  o.label_file = t / "annotations/image_labels_train.csv";
  auto src = open_dataset("vindr", o);
  ASSERT_NE(src->label_set(), nullptr);
  EXPECT_EQ(src->label_set()->classes,
            (std::vector<std::string>{"Aortic enlargement", "Cardiomegaly", "Pleural effusion", "Tuberculosis", "No finding"}));
  auto items = take(*src);
  ASSERT_EQ(items.size(), 2u);
  EXPECT_EQ(items[0].key, "img1");
  EXPECT_EQ(items[0].image_path, t / "train/img1.dicom");
  EXPECT_EQ(items[0].meta["readers"], 3);
  EXPECT_EQ(items[0].meta["votes"]["R1"], json({"Aortic enlargement", "Cardiomegaly", "Tuberculosis"}));
  EXPECT_EQ(items[0].meta["votes"]["R2"], json({"Cardiomegaly"}));
  EXPECT_EQ(items[0].meta["labels"], json({{"Aortic enlargement", 0}, {"Cardiomegaly", 1}, {"Pleural effusion", 0},
                                           {"Tuberculosis", 1}, {"No finding", 0}}));
  EXPECT_EQ(items[1].meta["labels"]["No finding"], 1);  // 2 of 3
  EXPECT_EQ(items[1].meta["labels"]["Pleural effusion"], 0);  // 1 of 3
  EXPECT_EQ(items[1].meta["votes"]["R5"], json({"Pleural effusion"}));
  EXPECT_TRUE(items[1].meta["boxes"].empty());

  write(t / "annotations/image_labels_test.csv", "image_id,Cardiomegaly,Tuberculosis,No finding\nimg9,1,0,0\n");
  std::filesystem::create_directories(t / "test");
  o.label_file = t / "annotations/image_labels_test.csv";
  items = take(*open_dataset("vindr", o));
  ASSERT_EQ(items.size(), 1u);
  EXPECT_EQ(items[0].image_path, t / "test/img9.dicom");
  EXPECT_EQ(items[0].meta["votes"], json({{"consensus", {"Cardiomegaly"}}}));
  EXPECT_EQ(items[0].meta["labels"]["Cardiomegaly"], 1);

  write(t / "bad.csv", "image_id,rad_ID,Cardiomegaly\nimg1,R1,1\nimg2,R2,2\n");
  o.label_file = t / "bad.csv";
  try {
    take(*open_dataset("vindr", o));
    FAIL() << "a value of 2 was accepted";
  } catch (const cx::Error& e) {
    EXPECT_EQ(std::string(e.what()), t / "bad.csv" + ":3: Cardiomegaly: '2' is not 0 or 1");
  }
}

TEST(Adapters, MimicJoinsChexpertSplitAndReports) {
  TempDir t;
  write(t / "mimic-cxr-2.0.0-metadata.csv",
        "dicom_id,subject_id,study_id,PerformedProcedureStepDescription,ViewPosition,Rows,Columns,StudyDate\n"
        "d1-aa,10000032,50414267,CHEST (PA AND LAT),PA,3056,2544,21800506\n"
        "d2-bb,10000032,50414267,CHEST (PA AND LAT),LATERAL,3056,2544,21800506\n"
        "d3-cc,19999999,59999999,CHEST (PORTABLE AP),AP,2544,3056,21800507\n");
  write(t / "chex.csv",
        "subject_id,study_id,Atelectasis,Cardiomegaly,Consolidation,Edema,Enlarged Cardiomediastinum,Fracture,"
        "Lung Lesion,Lung Opacity,No Finding,Pleural Effusion,Pleural Other,Pneumonia,Pneumothorax,Support Devices\n"
        "10000032,50414267,,1.0,-1.0,0.0,,,,,,1.0,,,,\n");
  ASSERT_EQ(std::system(("gzip -c " + t / "chex.csv" + " > " + t / "mimic-cxr-2.0.0-chexpert.csv.gz").c_str()), 0);
  write(t / "mimic-cxr-2.0.0-split.csv", "dicom_id,study_id,subject_id,split\nd1-aa,50414267,10000032,train\n"
                                         "d2-bb,50414267,10000032,train\nd3-cc,59999999,19999999,test\n");
  write(t / "reports/files/p10/p10000032/s50414267.txt",
        "                                 FINAL REPORT\n EXAMINATION:  CHEST (PA AND LAT)\n\n INDICATION:  cough\n\n"
        " FINDINGS:\n \n There is no focal consolidation,  pleural effusion\n or pneumothorax.\n \n"
        " IMPRESSION:\n \n No acute cardiopulmonary process.\n");
  AdapterOptions o;
  o.label_file = t / "mimic-cxr-2.0.0-metadata.csv";
  o.reports = t / "reports";
  auto src = open_dataset("mimic", o);
  EXPECT_TRUE(src->has_reports());
  auto items = take(*src);
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[0].image_path, t / "files/p10/p10000032/s50414267/d1-aa.jpg");
  EXPECT_EQ(items[0].key, "d1-aa");
  EXPECT_EQ(items[0].meta["view"], "PA");
  EXPECT_EQ(items[1].meta["view"], "LATERAL");
  EXPECT_EQ(items[0].meta["split"], "train");
  EXPECT_EQ(items[2].meta["split"], "test");
  EXPECT_EQ(items[0].meta["labels"]["Cardiomegaly"], 1);
  EXPECT_EQ(items[0].meta["labels"]["Consolidation"], -1);
  EXPECT_EQ(items[0].meta["labels"]["Edema"], 0);
  EXPECT_TRUE(items[0].meta["labels"]["Atelectasis"].is_null());
  EXPECT_EQ(items[1].meta["labels"], items[0].meta["labels"]);  // same study
  for (auto& [k, v] : items[2].meta["labels"].items()) EXPECT_TRUE(v.is_null()) << k;  // no chexpert row
  ASSERT_TRUE(items[0].report.has_value());
  EXPECT_EQ(*items[0].report,
            "FINDINGS: There is no focal consolidation, pleural effusion or pneumothorax.\n\n"
            "IMPRESSION: No acute cardiopulmonary process.\n");
  EXPECT_FALSE(items[2].report.has_value());
}

TEST(Adapters, PadchestListsAndFolders) {
  TempDir t;
  write(t / "padchest.csv",
        "ImageID,ImageDir,StudyDate_DICOM,StudyID,PatientID,PatientBirth,PatientSex_DICOM,ViewPosition_DICOM,"
        "Projection,MethodProjection,Labels\n"
        "216840111366964012283393834152009033102258826_00-015-160.png,0,20090331,s1,p1,1939.0,M,POSTEROANTERIOR,PA,"
        "Manual review of DICOM fields,\"['pleural effusion', 'cardiomegaly']\"\n"
        "x_2.png,1,20100101,s2,p2,,F,L,L,Manual,['normal']\n"
        "x_3.png,1,20100101,s3,p3,,F,L,L,Manual,\n");
  fs::create_directories(t / "0");
  AdapterOptions o;
  o.label_file = t / "padchest.csv";
  auto src = open_dataset("padchest", o);
  auto items = take(*src);
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[0].image_path, t / "0/216840111366964012283393834152009033102258826_00-015-160.png");
  EXPECT_EQ(items[1].image_path, t / "x_2.png");  // folder 1 does not exist here
  EXPECT_EQ(items[0].meta["findings"], json::array({"pleural effusion", "cardiomegaly"}));
  EXPECT_EQ(items[0].meta["labels"], json({{"pleural effusion", 1}, {"cardiomegaly", 1}}));
  EXPECT_EQ(items[0].meta["age"], 70);
  EXPECT_EQ(items[0].meta["view"], "PA");
  EXPECT_EQ(items[1].meta["view"], "LATERAL");
  EXPECT_EQ(items[2].meta["labels"], json::object());
  EXPECT_EQ(src->label_set(), nullptr);  // open vocabulary
}

TEST(Adapters, ChexmaskRowsBecomeMasks) {
  TempDir t;
  write(t / "imgs/sub/a.png", "x");
  write(t / "imgs/b.jpg", "x");
  write(t / "VinDr-CXR.csv",
        ",image_id,Dice RCA (Mean),Dice RCA (Max),Landmarks,Left Lung,Right Lung,Heart,Height,Width\n"
        "0,a,0.9,0.95,\"1,2,3,4\",1 6,5 5,6 2,3,4\n"
        "1,b.jpg,0.8,0.85,\"1,2\",,,,3,4\n"
        "2,c,0.8,0.85,\"1,2\",1 13,,,3,4\n");
  AdapterOptions o;
  o.label_file = t / "VinDr-CXR.csv";
  o.root = t / "imgs";
  auto src = open_dataset("chexmask", o);
  EXPECT_TRUE(src->has_masks());
  auto items = take(*src);
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[0].image_path, t / "imgs/sub/a.png");  // found by stem under the root
  EXPECT_EQ(items[1].image_path, t / "imgs/b.jpg");
  EXPECT_EQ(items[1].key, "b");
  EXPECT_DOUBLE_EQ(items[0].meta["dice_rca_mean"].get<double>(), 0.9);
  EXPECT_EQ(src->mask_classes(), (std::vector<std::string>{"background", "left lung", "right lung", "heart"}));
  ASSERT_TRUE(items[0].mask->classes);
  EXPECT_EQ(*items[0].mask->classes, src->mask_classes());
  LabelMap lm = read_label_map(items[0]);
  EXPECT_FALSE(lm.sized_like_image);  // CheXmask's grid is resampled to the image's
  cx::Image m = lm.map;
  std::vector<std::uint8_t> got(m.u8(), m.u8() + 12);
  EXPECT_EQ(got, (std::vector<std::uint8_t>{1, 1, 1, 1, 2, 3, 3, 2, 2, 0, 0, 0}));
  cx::Image empty = read_label_map(items[1]).map;  // all three structures empty
  EXPECT_EQ(std::vector<std::uint8_t>(empty.u8(), empty.u8() + 12), std::vector<std::uint8_t>(12, 0));
  EXPECT_NE(error_of([&] { read_label_map(items[2]); }).find("VinDr-CXR.csv:4: Left Lung: RLE run 1 13 ends past"),
            std::string::npos);
}

TEST(Adapters, FolderKeysLabelsAndCollisions) {
  TempDir t;
  write(t / "scans/s1/IM0001.dcm", "x");
  write(t / "scans/s2/IM0001.dcm", "x");
  write(t / "scans/s2/1.2.840.5.png", "x");
  write(t / "scans/notes.txt", "not an image");
  write(t / "scans/.hidden.png", "x");
  write(t / "labels.tsv", "key\tEdema\tEffusion\ns1_IM0001\t1\t-1\ns2_IM0001\t0\t\nghost\t1\t1\n");
  AdapterOptions o;
  o.label_file = t / "scans";
  o.labels_tsv = t / "labels.tsv";
  auto src = open_dataset("folder", o);
  auto items = take(*src);
  ASSERT_EQ(items.size(), 3u);
  EXPECT_EQ(items[0].key, "s1_IM0001");
  EXPECT_EQ(items[1].key, "s2_1_2_840_5");
  EXPECT_EQ(items[2].key, "s2_IM0001");
  EXPECT_EQ(items[0].meta["labels"], json({{"Edema", 1}, {"Effusion", -1}}));
  EXPECT_EQ(items[1].meta["labels"], json({{"Edema", nullptr}, {"Effusion", nullptr}}));
  EXPECT_EQ(items[2].meta["labels"], json({{"Edema", 0}, {"Effusion", nullptr}}));
  ASSERT_NE(src->label_set(), nullptr);
  EXPECT_EQ(src->label_set()->classes, (std::vector<std::string>{"Edema", "Effusion"}));

  // Files named on the command line are keyed by stem: the two IM0001 collide, by name.
  std::string err = error_of([&] { open_files({t / "scans"}); });
  EXPECT_NE(err.find("record key 'IM0001' is also the key of " + t / "scans/s1/IM0001.dcm"), std::string::npos) << err;
  auto files = open_files({t / "scans/s1", t / "scans/s2/1.2.840.5.png"});
  auto fi = take(*files);
  ASSERT_EQ(fi.size(), 2u);
  EXPECT_EQ(fi[0].key, "IM0001");
  EXPECT_EQ(fi[1].key, "1_2_840_5");
  fs::create_directories(t / "empty");
  std::string none = error_of([&] { open_files({t / "empty"}); });
  EXPECT_NE(none.find("empty: no DICOM, PNG or JPEG files in this folder"), std::string::npos) << none;
}

TEST(Adapters, OpenIReportsMatchXml) {
  const std::string tgz = sample("reports/NLMCXR_reports.tgz");
  REQUIRE_SAMPLE(tgz);
  TempDir t;
  ASSERT_EQ(std::system(("tar xzf " + tgz + " -C " + t.str() + " ecgen-radiology/1.xml ecgen-radiology/10.xml ecgen-radiology/100.xml").c_str()), 0);
  std::string why;
  auto ref = reference({"iu", t / "ecgen-radiology/1.xml", t / "ecgen-radiology/10.xml", t / "ecgen-radiology/100.xml"}, &why);
  if (ref.empty()) GTEST_SKIP() << why;
  write(t / "CXR1_1_IM-0001-3001.png", "x");
  AdapterOptions o;
  o.label_file = t / "ecgen-radiology";
  auto src = open_dataset("reports", o);
  auto items = take(*src);
  std::size_t k = 0;
  for (std::size_t ri = 0; ri < ref.size(); ++ri) {  // sorted file order 1, 10, 100 = the reference's argument order
    const json r = ref[ri];
    for (const auto& img : r["images"]) {
      ASSERT_LT(k, items.size());
      const auto& it = items[k++];
      EXPECT_EQ(it.key, img.get<std::string>());
      EXPECT_EQ(it.meta["report"]["id"], r["id"]);
      for (const char* s : {"findings", "impression"}) {
        if (r.contains(s)) {
          EXPECT_EQ(it.meta["report"][s], r[s]) << s;
        } else {
          EXPECT_FALSE(it.meta["report"].contains(s)) << s;
        }
      }
      std::string want;
      if (r.contains("findings")) want += "FINDINGS: " + r["findings"].get<std::string>() + "\n";
      if (r.contains("impression")) want += (want.empty() ? "" : "\n") + std::string("IMPRESSION: ") + r["impression"].get<std::string>() + "\n";
      EXPECT_EQ(*it.report, want);
    }
  }
  EXPECT_EQ(k, items.size());
  ASSERT_FALSE(items.empty());
  EXPECT_EQ(items[0].image_path, t / "CXR1_1_IM-0001-3001.png");
}

TEST(Adapters, KeysAndNames) {
  EXPECT_EQ(sanitize_key("a/b.c d", "w"), "a_b_c_d");
  EXPECT_EQ(sanitize_key("__cx__", "w"), "x__cx__");  // never a stream member name
  EXPECT_THROW(sanitize_key("", "w"), cx::Error);
  EXPECT_THROW(open_dataset("nope", AdapterOptions{}), cx::UsageError);
  auto s = mimic_report_sections("INDICATION: x\nFINDINGS: a\n b\nIMPRESSION:\n c.\nRECOMMENDATION(S): d\n");
  EXPECT_EQ(s, json({{"findings", "a b"}, {"impression", "c."}}));
  EXPECT_EQ(report_text(json::object(), "  free text only \n"), "free text only\n");
}
