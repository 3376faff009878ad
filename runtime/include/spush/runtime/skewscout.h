// SkewScout's communication controller (docs/ALGORITHMS.md, "SkewScout").
//
// Every model-travel period the trainer measures the accuracy loss across partitions,
// AL = mean over nodes of (accuracy of node i's model on a sample of its own training data -
// accuracy of the same model on a sample of its partner's), and hands it to observe(), which
// moves the communication knob theta one step along a fixed grid ordered from the most
// communication (index 0) to the least:
//  - AL > target: one step toward more communication (index - 1), if there is one;
//  - AL < target: one step toward less communication (index + 1), unless the accuracy loss
//    last seen at that value (the memo) exceeded the target: then stay;
//  - otherwise (AL == target, or at the end of the grid): stay.
// The memo keeps the last AL seen at every grid value. The knob is the period H (local steps)
// of FedAvg, the SSGD family and the gossip algorithms, or Gaia's threshold T0; both
// communicate less as they grow, so a grid is strictly ascending.
//
//   SkewScout s({.grid = {1, 2, 4, 8, 16}, .target = 0.05}, s.nearest(4));
//   SkewScoutDecision d = s.observe(al);  // then apply s.value()
#pragma once
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

namespace spush::runtime {

struct SkewScoutSpec {
  std::vector<double> grid;  // knob values, strictly ascending (ascending = less communication)
  double target = 0.05;      // sigma_AL: the accuracy loss tolerated
};

struct SkewScoutDecision {
  double accuracy_loss = 0;
  int index_before = 0, index_after = 0;
  double value_before = 0, value_after = 0;
  std::string reason;  // why it moved or stayed, in words
  nlohmann::json to_json() const;
};

class SkewScout {
 public:
  // Throws std::invalid_argument for an empty or non-ascending grid, a non-finite value, a
  // target outside [0, 1] or a start index off the grid.
  SkewScout(SkewScoutSpec spec, int start_index);

  SkewScoutDecision observe(double accuracy_loss);

  int index() const { return index_; }
  double value() const { return spec_.grid[static_cast<size_t>(index_)]; }
  const SkewScoutSpec& spec() const { return spec_; }
  // The last accuracy loss seen at each grid value (nullopt: never visited).
  const std::vector<std::optional<double>>& memo() const { return memo_; }
  // The grid index whose value is closest to v (in log scale for positive grids).
  int nearest(double v) const;

  // The controller's state (index and memo) for checkpoints; restore() checks it against the
  // grid and throws std::invalid_argument naming what does not fit.
  nlohmann::json state() const;
  void restore(const nlohmann::json& state);

 private:
  SkewScoutSpec spec_;
  int index_ = 0;
  std::vector<std::optional<double>> memo_;
};

// "1,2,4,8" -> {1, 2, 4, 8}; throws std::invalid_argument naming the bad entry (not a number,
// not finite, not > 0, not ascending). An empty text gives an empty grid.
std::vector<double> parse_grid(const std::string& text);

}  // namespace spush::runtime
