// One registry of typed program settings: each setting is declared once (key, field, help,
// validation rules) and the registry builds from that the command line (--key value,
// --key=value, --flag, --config FILE, --help), the typed JSON config-file reader, the JSON form
// and the validation. Also the setting groups that spush-train and spush-gossip share (graph,
// algorithm and compression, execution), so both programs accept the same names and values.
#pragma once
#include <concepts>
#include <cstdint>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace spush::runtime {

// A well-formed setting that breaks one of its rules; what() is
// "invalid setting KEY = VALUE: expected ..." (the programs exit with status 1).
struct ConfigError : std::invalid_argument {
  using std::invalid_argument::invalid_argument;
};

// A malformed command line or config file: unknown flag or key, missing, empty or unparsable
// value, value of the wrong JSON type, unreadable file. what() names the flag, key or file, what
// was wrong and what is expected (the programs exit with status 2).
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <typename T>
concept SettingType = std::same_as<T, bool> || std::same_as<T, int> || std::same_as<T, int64_t> ||
    std::same_as<T, uint64_t> || std::same_as<T, double> || std::same_as<T, std::string>;

template <typename T>
concept NumericSetting = SettingType<T> && !std::same_as<T, bool> && !std::same_as<T, std::string>;

namespace detail {
struct Entry;
}

// The handle add() returns to declare the rules of one setting; rules are checked by
// Settings::validate() in the order they are declared. Bounds compose into one interval rule:
// at_least(0).below(1) is checked (and reported) as "a value in [0, 1)".
template <SettingType T>
class Setting {
 public:
  Setting& in_range(T lo, T hi) requires NumericSetting<T>;  // [lo, hi]
  Setting& at_least(T lo) requires NumericSetting<T>;        // >= lo
  Setting& above(T lo) requires NumericSetting<T>;           // > lo
  Setting& at_most(T hi) requires NumericSetting<T>;         // <= hi
  Setting& below(T hi) requires NumericSetting<T>;           // < hi
  // Doubles must be finite unless this is declared.
  Setting& allow_non_finite() requires std::same_as<T, double>;

  // One of a fixed list of names.
  Setting& one_of(std::vector<std::string> names) requires std::same_as<T, std::string>;
  // Accepted when parse(value) returns; a library parser that throws std::invalid_argument
  // listing the accepted names (runtime::algorithm_kind_from_string, ...). `what` names the kind
  // of value ("an algorithm name") in messages.
  template <typename F>
  Setting& parsed_by(F parse, std::string what) requires std::same_as<T, std::string> {
    return parsed_by_impl([parse](const std::string& v) { (void)parse(v); }, std::move(what));
  }
  // String settings refuse "" (on the command line, in config files and in validate()) unless
  // allow_empty() is declared; non_empty() only names what is expected instead ("a directory").
  Setting& non_empty(std::string expected) requires std::same_as<T, std::string>;
  Setting& allow_empty() requires std::same_as<T, std::string>;

  // Any other condition; `expected` completes "expected ..." when ok(value) is false.
  Setting& check(std::function<bool(const T&)> ok, std::string expected);

 private:
  friend class Settings;
  Setting(detail::Entry* entry, T* field) : entry_(entry), field_(field) {}
  Setting& parsed_by_impl(std::function<void(const std::string&)> parse,
                          std::string what) requires std::same_as<T, std::string>;
  Setting& bound(T value, bool lower, bool inclusive) requires NumericSetting<T>;
  detail::Entry* entry_;
  T* field_;
};

// The registry. It holds pointers to the declared fields, so it must not outlive them; the
// value of a field when it is declared is its default (shown by help()).
class Settings {
 public:
  // program: the name used in messages and help; description: help's first paragraph.
  explicit Settings(std::string program, std::string description = "");
  ~Settings();
  Settings(const Settings&) = delete;
  Settings& operator=(const Settings&) = delete;

  // Settings declared after this call are listed under `title` in help().
  void section(std::string title);
  // Declares the setting `key` (the flag without dashes and the JSON key) bound to `field`.
  // Throws std::logic_error when the key is already declared.
  template <SettingType T>
  Setting<T> add(std::string key, T& field, std::string help);

  // Command-line arguments starting with `prefix` (e.g. "--benchmark_") are left alone and
  // returned by parse() in their order; they never take the next argument as a value.
  void pass_through(std::string prefix, std::string help);

  struct CommandLine {
    bool help = false;                // --help or -h: print help() and exit with status 0
    std::vector<std::string> passed;  // the pass_through() arguments
  };
  // Parses argv[1..argc): --key value, --key=value, bool flags --flag and --flag=true|false,
  // --config FILE (loaded first; command-line flags override it wherever it appears) and
  // --help. An empty value (--out=, --out "") is an error naming the setting unless the
  // setting allows empty strings; it never takes the next argument. Values are converted
  // strictly (whole-string integers in the type's range, finite doubles, true|false|1|0).
  // Throws UsageError; nothing is assigned when it throws. Rules are not checked here: call
  // validate().
  CommandLine parse(int argc, const char* const* argv);
  CommandLine parse(const std::vector<std::string>& args);

  // Typed assignment from a JSON object: numbers for numeric settings (integral ones for
  // integer settings, within the type's range), booleans for bools, strings for strings ("" only
  // where the command line accepts it). Throws UsageError naming `source`, the key and what is
  // expected; nothing is assigned when it throws.
  void load_json(const nlohmann::ordered_json& object, const std::string& source);
  void load_json(const nlohmann::json& object, const std::string& source);
  // Reads a JSON file and load_json()s it; errors name the file.
  void load_file(const std::string& path);

  // Every setting, in declaration order.
  nlohmann::ordered_json to_json() const;
  // Checks every rule in declaration order; throws ConfigError for the first one broken.
  void validate() const;
  // The usage text: every flag with its value type, help and default.
  std::string help() const;

  const std::string& program() const { return program_; }
  std::vector<std::string> keys() const;  // in declaration order
  bool contains(std::string_view key) const;

 private:
  detail::Entry* find(std::string_view key) const;
  std::string program_, description_, section_;
  std::vector<std::unique_ptr<detail::Entry>> entries_;
  std::vector<std::pair<std::string, std::string>> pass_through_;  // prefix, help
};

// ---- setting groups shared by spush-train and spush-gossip ----------------------------------
// Each declares its settings into a Settings, bound to the caller's fields; the defaults are the
// fields' values.

// The graph of nodes: nodes, topology, schedule, failure-prob.
struct GraphFields {
  int& nodes;
  std::string& topology;  // TopologySpec names (topology.h)
  std::string& schedule;  // epochs:N | iterations:N, see parse_schedule()
  double& failure_prob;
};
void declare_graph(Settings& s, const GraphFields& f);

// The gossip algorithm and its compression: algorithm, compressor, density, bits, index-codec,
// global-compression, eta, local-steps, scsp-final-rounds. Names are checked with the library's
// own parsers (algorithm_kind_from_string, compressor_kind_from_string,
// index_codec_from_string), so every program accepts exactly what the library accepts.
struct AlgorithmFields {
  std::string& algorithm;
  std::string& compressor;
  double& density;
  int& bits;
  std::string& index_codec;
  bool& global_compression;
  double& eta;
  int& local_steps;
  int& scsp_final_rounds;
};
void declare_algorithm(Settings& s, const AlgorithmFields& f);

// Where and how the run executes: seed, device (auto | cpu | cuda), transport (local | mpi |
// auto), comm-timeout (seconds, > 0), threads (OpenMP threads, 0..1024).
struct ExecutionFields {
  uint64_t& seed;
  std::string& device;
  std::string& transport;
  double& comm_timeout;
  int& threads;
};
void declare_execution(Settings& s, const ExecutionFields& f);

// The most nodes a run may have (the `nodes` setting's upper bound).
inline constexpr int kMaxNodes = 65536;

// The cross-setting check of compressor and bits (qsgd: 1, 2, 4, 8; fractional: 2..9); throws
// ConfigError naming `bits`.
void check_compression(const std::string& compressor, int bits);

// Throws ConfigError "invalid setting KEY = VALUE: ..." when a run whose buffers take about
// `bytes` bytes of memory does not fit in what the machine has available (MemAvailable of
// /proc/meminfo; no check where that is unknown). `what` says what the bytes are for.
void check_memory(const std::string& key, const std::string& value, double bytes,
                  const std::string& what);

// A schedule setting ("epochs:N" or "iterations:N", N >= 1) split into (unit, N); throws
// ConfigError "invalid setting schedule = '...': expected ..." when malformed.
std::pair<std::string, int64_t> parse_schedule(const std::string& schedule);

}  // namespace spush::runtime
