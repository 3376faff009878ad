// SkewScout's controller (skewscout.h).
#include "spush/runtime/skewscout.h"

#include <fmt/format.h>

#include <charconv>
#include <cmath>
#include <stdexcept>

namespace spush::runtime {

nlohmann::json SkewScoutDecision::to_json() const {
  return {{"accuracy_loss", accuracy_loss}, {"index_before", index_before},
          {"index_after", index_after},     {"value_before", value_before},
          {"value_after", value_after},     {"reason", reason}};
}

SkewScout::SkewScout(SkewScoutSpec spec, int start_index) : spec_(std::move(spec)) {
  if (spec_.grid.empty()) throw std::invalid_argument("SkewScout: the grid is empty");
  for (size_t i = 0; i < spec_.grid.size(); ++i) {
    if (!std::isfinite(spec_.grid[i]))
      throw std::invalid_argument(fmt::format("SkewScout: grid value {} is not finite", i));
    if (i > 0 && !(spec_.grid[i] > spec_.grid[i - 1]))
      throw std::invalid_argument(fmt::format(
          "SkewScout: the grid must be strictly ascending, {} follows {}", spec_.grid[i],
          spec_.grid[i - 1]));
  }
  if (!(spec_.target >= 0 && spec_.target <= 1))
    throw std::invalid_argument(
        fmt::format("SkewScout: target {} is outside [0, 1] (an accuracy loss)", spec_.target));
  if (start_index < 0 || start_index >= static_cast<int>(spec_.grid.size()))
    throw std::invalid_argument(fmt::format("SkewScout: start index {} is off the grid of {}",
                                            start_index, spec_.grid.size()));
  index_ = start_index;
  memo_.assign(spec_.grid.size(), std::nullopt);
}

SkewScoutDecision SkewScout::observe(double al) {
  if (!std::isfinite(al))
    throw std::invalid_argument(fmt::format("SkewScout: accuracy loss {} is not finite", al));
  SkewScoutDecision d;
  d.accuracy_loss = al;
  d.index_before = index_;
  d.value_before = value();
  memo_[static_cast<size_t>(index_)] = al;
  const int last = static_cast<int>(spec_.grid.size()) - 1;
  if (al > spec_.target) {
    if (index_ > 0) {
      --index_;
      d.reason = fmt::format("accuracy loss {:.4f} > target {:.4f}: more communication", al,
                             spec_.target);
    } else {
      d.reason = fmt::format("accuracy loss {:.4f} > target {:.4f}, already at the most "
                             "communication",
                             al, spec_.target);
    }
  } else if (al < spec_.target) {
    if (index_ == last) {
      d.reason = fmt::format("accuracy loss {:.4f} < target {:.4f}, already at the least "
                             "communication",
                             al, spec_.target);
    } else if (const auto& m = memo_[static_cast<size_t>(index_ + 1)]; m && *m > spec_.target) {
      d.reason = fmt::format("accuracy loss {:.4f} < target {:.4f}, but {:.4f} was seen at {}: stay",
                             al, spec_.target, *m, spec_.grid[static_cast<size_t>(index_ + 1)]);
    } else {
      ++index_;
      d.reason = fmt::format("accuracy loss {:.4f} < target {:.4f}: less communication", al,
                             spec_.target);
    }
  } else {
    d.reason = fmt::format("accuracy loss {:.4f} at the target: stay", al);
  }
  d.index_after = index_;
  d.value_after = value();
  return d;
}

int SkewScout::nearest(double v) const {
  int best = 0;
  double best_dist = HUGE_VAL;
  const bool logs = v > 0 && spec_.grid.front() > 0;
  for (size_t i = 0; i < spec_.grid.size(); ++i) {
    const double dist = logs ? std::fabs(std::log(spec_.grid[i] / v)) : std::fabs(spec_.grid[i] - v);
    if (dist < best_dist) {
      best_dist = dist;
      best = static_cast<int>(i);
    }
  }
  return best;
}

nlohmann::json SkewScout::state() const {
  nlohmann::json memo = nlohmann::json::array();
  for (const auto& m : memo_) memo.push_back(m ? nlohmann::json(*m) : nlohmann::json(nullptr));
  return {{"index", index_}, {"grid", spec_.grid}, {"memo", memo}};
}

void SkewScout::restore(const nlohmann::json& s) {
  auto bad = [](const std::string& what) {
    return std::invalid_argument("SkewScout state: " + what);
  };
  if (!s.is_object() || !s.contains("index") || !s["index"].is_number_integer() ||
      !s.contains("grid") || !s["grid"].is_array() || !s.contains("memo") || !s["memo"].is_array())
    throw bad("expected an object with integer 'index', arrays 'grid' and 'memo'");
  if (s["grid"].size() != spec_.grid.size() || s["memo"].size() != spec_.grid.size())
    throw bad(fmt::format("saved for a grid of {} values, this run has {}", s["grid"].size(),
                          spec_.grid.size()));
  for (size_t i = 0; i < spec_.grid.size(); ++i)
    if (!s["grid"][i].is_number() || s["grid"][i].get<double>() != spec_.grid[i])
      throw bad(fmt::format("grid value {} differs from this run's {}", i, spec_.grid[i]));
  const auto index = s["index"].get<int64_t>();
  if (index < 0 || index >= static_cast<int64_t>(spec_.grid.size()))
    throw bad(fmt::format("index {} is off the grid", index));
  std::vector<std::optional<double>> memo(spec_.grid.size());
  for (size_t i = 0; i < memo.size(); ++i) {
    const auto& m = s["memo"][i];
    if (m.is_null()) continue;
    if (!m.is_number() || !std::isfinite(m.get<double>()))
      throw bad(fmt::format("memo {} is not a finite number or null", i));
    memo[i] = m.get<double>();
  }
  index_ = static_cast<int>(index);
  memo_ = std::move(memo);
}

std::vector<double> parse_grid(const std::string& text) {
  std::vector<double> grid;
  size_t at = 0;
  while (at < text.size()) {
    size_t comma = text.find(',', at);
    if (comma == std::string::npos) comma = text.size();
    const std::string item = text.substr(at, comma - at);
    double v = 0;
    const auto [ptr, ec] = std::from_chars(item.data(), item.data() + item.size(), v);
    if (item.empty() || ec != std::errc() || ptr != item.data() + item.size())
      throw std::invalid_argument(fmt::format("grid entry '{}' is not a number", item));
    if (!std::isfinite(v) || v <= 0)
      throw std::invalid_argument(fmt::format("grid entry {} is not a finite value > 0", item));
    if (!grid.empty() && !(v > grid.back()))
      throw std::invalid_argument(
          fmt::format("grid entry {} does not exceed the one before ({}): expected ascending "
                      "values",
                      item, grid.back()));
    grid.push_back(v);
    at = comma + 1;
    if (comma == text.size() - 1) throw std::invalid_argument("grid ends with a comma");
  }
  return grid;
}

}  // namespace spush::runtime
