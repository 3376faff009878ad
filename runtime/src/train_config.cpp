// Training settings: validation and JSON form.
#include "spush/runtime/train_config.h"

#include <cmath>
#include <set>
#include <sstream>

#include "spush/kernels/compress.h"
#include "spush/runtime/algorithm.h"

namespace spush::runtime {
namespace {

template <typename T>
std::string str(const T& v) {
  std::ostringstream os;
  os << v;
  return os.str();
}

void check(bool ok, const std::string& key, const std::string& value, const std::string& expected) {
  if (!ok) throw ConfigError("invalid setting " + key + " = " + value + ": expected " + expected);
}

void one_of(const std::string& key, const std::string& value, std::set<std::string> allowed) {
  if (allowed.count(value)) return;
  std::string list;
  for (const auto& a : allowed) list += (list.empty() ? "" : " | ") + a;
  check(false, key, "'" + value + "'", "one of " + list);
}

}  // namespace

void TrainConfig::validate() const {
  check(nodes >= 1, "nodes", str(nodes), "an integer >= 1");
  schedule_period();
  check(failure_prob >= 0 && failure_prob < 1, "failure-prob", str(failure_prob),
        "a value in [0, 1)");
  try {
    algorithm_kind_from_string(algorithm);
  } catch (const std::exception& e) {
    throw ConfigError("invalid setting algorithm = '" + algorithm + "': " + e.what());
  }
  try {
    kernels::compressor_kind_from_string(compressor);
    kernels::index_codec_from_string(index_codec);
  } catch (const std::exception& e) {
    throw ConfigError(std::string("invalid compression setting: ") + e.what());
  }
  check(density > 0 && density <= 1, "density", str(density), "a value in (0, 1]");
  check(bits >= 1 && bits <= 9, "bits", str(bits), "1, 2, 4 or 8 (qsgd) or 2..9 (fractional)");
  check(eta < 0 || (eta > 0 && eta <= 1), "eta", str(eta),
        "a value in (0, 1], or negative for the default");
  check(local_steps >= 1, "local-steps", str(local_steps), "an integer >= 1");
  check(scsp_final_rounds >= 0, "scsp-final-rounds", str(scsp_final_rounds), "an integer >= 0");
  one_of("norm", norm, {"batch", "group", "evonorm", "none"});
  check(groups >= 0, "groups", str(groups), "an integer >= 0");
  check(group_size >= 0, "group-size", str(group_size), "an integer >= 0");
  check(groups == 0 || group_size == 0, "groups", str(groups), "only one of groups and group-size");
  one_of("shortcut", shortcut, {"zeropad", "conv1x1"});
  one_of("dataset", dataset, {"fashion-mnist", "cifar10"});
  one_of("partition", partition, {"skew", "dirichlet", "exclusive"});
  check(skew >= 0 && skew <= 1, "skew", str(skew), "a value in [0, 1]");
  check(alpha > 0 && std::isfinite(alpha), "alpha", str(alpha), "a finite value > 0");
  check(augment_pad >= 0, "augment-pad", str(augment_pad), "an integer >= 0");
  check(eval_samples >= 0, "eval-samples", str(eval_samples), "an integer >= 0");
  check(epochs >= 1, "epochs", str(epochs), "an integer >= 1");
  check(batch >= 1, "batch", str(batch), "an integer >= 1");
  check(lr > 0 && std::isfinite(lr), "lr", str(lr), "a finite value > 0");
  one_of("lr-schedule", lr_schedule, {"step", "const"});
  check(warmup_epochs >= 0 && warmup_epochs < epochs, "warmup-epochs", str(warmup_epochs),
        "an integer in [0, epochs)");
  check(momentum >= 0 && momentum < 1, "momentum", str(momentum), "a value in [0, 1)");
  check(weight_decay >= 0, "weight-decay", str(weight_decay), "a value >= 0");
  check(!out.empty(), "out", "''", "a directory");
  one_of("device", device, {"auto", "cpu", "cuda"});
  check(stop_after >= 0, "stop-after", str(stop_after), "an integer >= 0");
  check(threads >= 0, "threads", str(threads), "an integer >= 0");
  check(!(resume && overwrite), "resume", "true", "not together with overwrite");
}

std::pair<std::string, int64_t> TrainConfig::schedule_period() const {
  const auto colon = schedule.find(':');
  const std::string unit = schedule.substr(0, colon);
  int64_t n = 0;
  bool ok = colon != std::string::npos && (unit == "epochs" || unit == "iterations");
  if (ok) {
    try {
      size_t used = 0;
      n = std::stoll(schedule.substr(colon + 1), &used);
      ok = used == schedule.size() - colon - 1 && n >= 1;
    } catch (const std::exception&) {
      ok = false;
    }
  }
  check(ok, "schedule", "'" + schedule + "'", "epochs:N or iterations:N with N >= 1");
  return {unit, n};
}

nlohmann::json TrainConfig::to_json() const {
  nlohmann::json j = nlohmann::json::object();
  TrainConfig copy = *this;
  copy.visit([&](const char* key, auto& field, const char*) { j[key] = field; });
  return j;
}

nlohmann::json TrainConfig::trajectory_json() const {
  nlohmann::json j = to_json();
  for (const char* key : {"data-dir", "eval-samples", "out", "resume", "overwrite", "device",
                          "stop-after", "threads", "quiet"})
    j.erase(key);
  return j;
}

}  // namespace spush::runtime
