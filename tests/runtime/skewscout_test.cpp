// SkewScout's controller (runtime/skewscout.h) on synthetic accuracy-loss signals: it moves
// toward more communication while the loss exceeds the target, toward less while it is below,
// stops short of a value whose remembered loss exceeded the target, and its state round-trips.
#include "spush/runtime/skewscout.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <stdexcept>
#include <vector>

namespace spush::runtime {
namespace {

const std::vector<double> kGrid{1, 2, 4, 8, 16, 32, 64};

TEST(SkewScout, RaisesCommunicationAboveTheTargetAndLowersItBelow) {
  SkewScout s({.grid = kGrid, .target = 0.05}, 4);  // H = 16
  // Above the target: one step toward more communication per decision, down to the end.
  for (int want : {3, 2, 1, 0, 0}) {
    const SkewScoutDecision d = s.observe(0.3);
    EXPECT_EQ(d.index_after, want);
    EXPECT_EQ(s.index(), want);
    EXPECT_LE(d.value_after, d.value_before);
  }
  // Below the target: toward less communication; the memo at 2 (0.3) blocks the first step.
  SkewScoutDecision d = s.observe(0.01);
  EXPECT_EQ(d.index_after, 0) << d.reason;
  EXPECT_NE(d.reason.find("was seen"), std::string::npos) << d.reason;
  // A fresh controller walks up one step per decision while below.
  SkewScout up({.grid = kGrid, .target = 0.05}, 0);
  for (int want : {1, 2, 3, 4, 5, 6, 6}) EXPECT_EQ(up.observe(0.0).index_after, want);
  EXPECT_DOUBLE_EQ(up.value(), 64);
}

// A synthetic plant: the accuracy loss grows with the period, AL(H) = 0.02 log2(H) + noise-free
// offset. The controller settles at the largest H whose loss is within the target.
TEST(SkewScout, SettlesWhereTheSyntheticLossMeetsTheTarget) {
  auto loss = [](double h) { return 0.015 * std::log2(h); };  // target 0.05: H <= 8 (0.045)
  SkewScout s({.grid = kGrid, .target = 0.05}, 0);
  std::vector<double> path;
  for (int epoch = 0; epoch < 12; ++epoch) {
    s.observe(loss(s.value()));
    path.push_back(s.value());
  }
  // 1 -> 2 -> 4 -> 8 -> 16 (0.06 > target) -> 8, then it stays at 8 (16's memo exceeds it).
  EXPECT_EQ(path, (std::vector<double>{2, 4, 8, 16, 8, 8, 8, 8, 8, 8, 8, 8}));
  ASSERT_TRUE(s.memo()[4].has_value());
  EXPECT_NEAR(*s.memo()[4], 0.06, 1e-12);
  EXPECT_FALSE(s.memo()[6].has_value());
}

TEST(SkewScout, AtTheTargetItStaysAndTheStateRoundTrips) {
  SkewScout s({.grid = {0.01, 0.02, 0.05, 0.1}, .target = 0.1}, 2);
  const SkewScoutDecision d = s.observe(0.1);
  EXPECT_EQ(d.index_after, 2);
  EXPECT_EQ(d.to_json()["value_after"], 0.05);
  s.observe(0.5);
  SkewScout t({.grid = {0.01, 0.02, 0.05, 0.1}, .target = 0.1}, 0);
  t.restore(s.state());
  EXPECT_EQ(t.index(), s.index());
  EXPECT_EQ(t.memo(), s.memo());
  // A state for another grid, a bad index or a non-numeric memo is refused.
  SkewScout other({.grid = kGrid, .target = 0.1}, 0);
  EXPECT_THROW(other.restore(s.state()), std::invalid_argument);
  nlohmann::json bad = s.state();
  bad["index"] = 9;
  EXPECT_THROW(t.restore(bad), std::invalid_argument);
  bad = s.state();
  bad["memo"][0] = "x";
  EXPECT_THROW(t.restore(bad), std::invalid_argument);
  EXPECT_THROW(t.restore(nlohmann::json::array()), std::invalid_argument);
}

TEST(SkewScout, GridsAndArgumentsAreChecked) {
  EXPECT_EQ(parse_grid("1,2,4"), (std::vector<double>{1, 2, 4}));
  EXPECT_TRUE(parse_grid("").empty());
  for (const char* bad : {"1,,2", "2,1", "1,1", "0,1", "-1", "1,x", "1,", ",1", "1,inf", "nan"})
    EXPECT_THROW(parse_grid(bad), std::invalid_argument) << bad;
  EXPECT_THROW(SkewScout({.grid = {}, .target = 0.05}, 0), std::invalid_argument);
  EXPECT_THROW(SkewScout({.grid = {2, 1}, .target = 0.05}, 0), std::invalid_argument);
  EXPECT_THROW(SkewScout({.grid = kGrid, .target = 2}, 0), std::invalid_argument);
  EXPECT_THROW(SkewScout({.grid = kGrid, .target = 0.05}, 7), std::invalid_argument);
  SkewScout s({.grid = kGrid, .target = 0.05}, 0);
  EXPECT_THROW(s.observe(NAN), std::invalid_argument);
  EXPECT_EQ(s.nearest(20), 4);  // 16 is nearer than 32 in log scale
  EXPECT_EQ(s.nearest(0.5), 0);
  EXPECT_EQ(s.nearest(1000), 6);
}

}  // namespace
}  // namespace spush::runtime
