// spush-train: decentralized training of a network over a simulated graph of nodes.
// Every setting is a flag and a key of an optional JSON config file (--config FILE); flags
// given on the command line override the file. See docs/TRAINING.md.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "spush/runtime/trainer.h"

namespace {

using spush::runtime::TrainConfig;

// Turns the JSON config file into "--key=value" arguments placed before the user's flags.
std::vector<std::string> config_args(const std::string& path, TrainConfig& keys_of) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("config " + path + ": cannot open for reading");
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const std::exception& e) {
    throw std::runtime_error("config " + path + ": not valid JSON: " + e.what());
  }
  if (!j.is_object()) throw std::runtime_error("config " + path + ": expected a JSON object");
  std::set<std::string> known;
  keys_of.visit([&](const char* key, auto&, const char*) { known.insert(key); });
  std::vector<std::string> args;
  for (auto it = j.begin(); it != j.end(); ++it) {
    if (!known.count(it.key()))
      throw std::runtime_error("config " + path + ": unknown setting '" + it.key() +
                               "' (see spush-train --help)");
    const auto& v = it.value();
    std::string value;
    if (v.is_string())
      value = v.get<std::string>();
    else if (v.is_boolean() || v.is_number())
      value = v.dump();
    else
      throw std::runtime_error("config " + path + ": setting '" + it.key() +
                               "' must be a string, number or boolean");
    args.push_back("--" + it.key() + "=" + value);
  }
  return args;
}

}  // namespace

int main(int argc, char** argv) {
  TrainConfig cfg;
  CLI::App app{"spush-train: decentralized training over a simulated graph of nodes"};
  app.option_defaults()->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  std::string config_file;
  app.add_option("--config", config_file, "JSON file of settings (flags override it)");
  cfg.visit([&](const char* key, auto& field, const char* help) {
    using T = std::remove_reference_t<decltype(field)>;
    const std::string flag = std::string("--") + key;
    if constexpr (std::is_same_v<T, bool>)
      app.add_flag(flag, field, help);
    else
      app.add_option(flag, field, help)->capture_default_str();
  });

  // The config file's settings go first so that command-line flags win.
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  try {
    for (size_t i = 0; i < args.size(); ++i) {
      std::string file;
      if (args[i] == "--config" && i + 1 < args.size())
        file = args[i + 1];
      else if (args[i].rfind("--config=", 0) == 0)
        file = args[i].substr(9);
      if (!file.empty()) {
        TrainConfig probe;
        auto extra = config_args(file, probe);
        args.insert(args.begin(), extra.begin(), extra.end());
        break;
      }
    }
  } catch (const std::exception& e) {
    std::cerr << "spush-train: error: " << e.what() << "\n";
    return 2;
  }
  std::reverse(args.begin(), args.end());  // CLI11 consumes a reversed vector
  try {
    app.parse(args);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);
    std::cerr << "spush-train: error: " << e.what() << " (see spush-train --help)\n";
    return 2;
  }

  try {
    spush::runtime::Trainer trainer(cfg, std::cout, std::cerr);
    const auto summary = trainer.run();
    return 0;
  } catch (const spush::runtime::DivergenceError& e) {
    std::cerr << "spush-train: error: " << e.what() << "\n";
    return 3;
  } catch (const std::exception& e) {
    std::cerr << "spush-train: error: " << e.what() << "\n";
    return 1;
  }
}
