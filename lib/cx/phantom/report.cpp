#include "cx/phantom/report.hpp"

#include <cstdio>

namespace cx::phantom {
namespace {

template <std::size_t N>
std::string pick(random::Rng& rng, const char* const (&choices)[N]) {
  return choices[rng.below(N)];
}

std::string fmt(const char* pattern, const std::string& a, const std::string& b = "", const std::string& c = "") {
  // Patterns use %1 %2 %3 for the arguments.
  std::string out;
  for (const char* p = pattern; *p; ++p) {
    if (p[0] == '%' && p[1] >= '1' && p[1] <= '3') {
      out += p[1] == '1' ? a : (p[1] == '2' ? b : c);
      ++p;
    } else {
      out += *p;
    }
  }
  return out;
}

std::string number(double v, const char* f) {
  char buf[32];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

std::string capitalise(std::string s) {
  if (!s.empty() && s[0] >= 'a' && s[0] <= 'z') s[0] = static_cast<char>(s[0] - 'a' + 'A');
  return s;
}

}  // namespace

std::string write_report(const ReportFacts& f, random::Rng& rng) {
  std::string findings, impression;
  auto sentence = [](std::string& to, const std::string& s) {
    if (!to.empty()) to += ' ';
    to += s;
  };
  const std::string ctr = number(f.ctr, "%.2f");

  // Heart and mediastinum.
  if (f.cardiomegaly) {
    static const char* const kEnlarged[] = {
        "The cardiac silhouette is enlarged, with a cardiothoracic ratio of %1.",
        "The heart is enlarged (cardiothoracic ratio %1).",
        "Cardiomegaly, cardiothoracic ratio approximately %1.",
    };
    sentence(findings, fmt(pick(rng, kEnlarged).c_str(), ctr));
    static const char* const kImp[] = {"Cardiomegaly.", "Enlarged cardiac silhouette (cardiomegaly)."};
    sentence(impression, pick(rng, kImp));
  } else {
    static const char* const kNormal[] = {
        "The heart size is normal.",
        "The cardiomediastinal silhouette is within normal limits.",
        "Heart size is within normal limits (cardiothoracic ratio %1).",
    };
    sentence(findings, fmt(pick(rng, kNormal).c_str(), ctr));
  }

  // Lungs.
  if (f.nodule) {
    static const char* const kNodule[] = {
        "A %1 mm round nodule projects over the %2 %3 zone.",
        "There is a well-defined %1 mm nodule in the %2 %3 zone.",
        "A solitary pulmonary nodule measuring about %1 mm is seen in the %2 %3 zone.",
    };
    sentence(findings, fmt(pick(rng, kNodule).c_str(), number(f.nodule_mm, "%.0f"), f.nodule_side, f.nodule_zone));
    static const char* const kImp[] = {"%1 %2 zone pulmonary nodule; CT recommended for further characterisation.",
                                       "Solitary pulmonary nodule in the %1 %2 zone."};
    std::string side = f.nodule_side;
    const std::string imp = pick(rng, kImp);
    sentence(impression, imp[0] == '%' ? capitalise(fmt(imp.c_str(), side, f.nodule_zone)) : fmt(imp.c_str(), side, f.nodule_zone));
  } else {
    static const char* const kClear[] = {
        "The lungs are clear.",
        "No focal consolidation or suspicious pulmonary nodule.",
        "Both lungs are clear without focal opacity.",
    };
    sentence(findings, pick(rng, kClear));
  }

  // Pleura.
  if (!f.effusion_sides.empty()) {
    const bool both = f.effusion_sides.size() == 2;
    const std::string where = both ? "bilateral" : f.effusion_sides[0];
    const std::string effusions = both ? "pleural effusions" : "pleural effusion";
    static const char* const kEff[] = {
        "%1 %2 %3 blunting the costophrenic angle with a meniscus.",
        "There is a %1 %2 %3 with blunting of the costophrenic angle.",
        "Blunting of the costophrenic angle by a %1 %2 %3.",
    };
    std::string s = fmt(pick(rng, kEff).c_str(), f.effusion_size, where, effusions);
    if (both) {
      // "angles" for two sides
      auto pos = s.find("angle");
      if (pos != std::string::npos) s.insert(pos + 5, "s");
    }
    sentence(findings, capitalise(s));
    sentence(impression, capitalise(f.effusion_size + " " + where + " " + effusions + "."));
  }
  if (f.pneumothorax) {
    static const char* const kPtx[] = {
        "A %1 %2 apical pneumothorax is present, with a visible visceral pleural line and absent lung markings lateral to it.",
        "There is a %1 %2 pneumothorax; the visceral pleural line is seen with no lung markings beyond it.",
        "Visceral pleural line in the %2 hemithorax consistent with a %1 pneumothorax.",
    };
    sentence(findings, capitalise(fmt(pick(rng, kPtx).c_str(), f.pneumothorax_size, f.pneumothorax_side)));
    sentence(impression, capitalise(f.pneumothorax_size + " " + f.pneumothorax_side + " pneumothorax."));
  }
  if (f.effusion_sides.empty() && !f.pneumothorax) {
    static const char* const kNoPleural[] = {"No pleural effusion or pneumothorax.",
                                             "There is no pleural effusion or pneumothorax.",
                                             "The costophrenic angles are sharp; no pneumothorax."};
    sentence(findings, pick(rng, kNoPleural));
  } else if (f.effusion_sides.empty()) {
    sentence(findings, "No pleural effusion.");
  } else if (!f.pneumothorax) {
    sentence(findings, "No pneumothorax.");
  }
  static const char* const kBones[] = {"The visualised bones are unremarkable.", "No acute osseous abnormality.", ""};
  const std::string bones = pick(rng, kBones);
  if (!bones.empty()) sentence(findings, bones);

  if (impression.empty()) {
    static const char* const kNormalImp[] = {"No acute cardiopulmonary abnormality.", "Normal chest radiograph.",
                                             "No active disease in the chest."};
    impression = pick(rng, kNormalImp);
  }
  return "FINDINGS: " + findings + "\nIMPRESSION: " + impression + "\n";
}

}  // namespace cx::phantom
