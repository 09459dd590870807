#pragma once
// The templated FINDINGS/IMPRESSION text of a phantom (internal to lib/cx/phantom). Phrasing
// varies with the record's own report stream, so it is as deterministic as the pixels.
#include <string>
#include <vector>

#include "cx/random/rng.hpp"

namespace cx::phantom {

struct ReportFacts {
  double ctr = 0.0;
  bool cardiomegaly = false;
  std::vector<std::string> effusion_sides;  // patient's sides: "right", "left"
  std::string effusion_size;                // "small" | "moderate"
  bool nodule = false;
  std::string nodule_side, nodule_zone;  // "right"/"left", "upper"/"middle"/"lower"
  double nodule_mm = 0.0;
  bool pneumothorax = false;
  std::string pneumothorax_side, pneumothorax_size;
};

std::string write_report(const ReportFacts& facts, random::Rng& rng);

}  // namespace cx::phantom
