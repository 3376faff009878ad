// The settings registry (settings.h): strict conversion of command-line text and JSON values,
// the command-line grammar, validation, help, and the setting groups shared by spush-train and
// spush-gossip. The command line is tokenized here rather than by CLI11: CLI11 (2.1) reads
// `--out=` as "no value yet" and takes the next argument as the value, which is the fault this
// registry removes, and every value must be converted by the registry's own strict rules anyway.
#include "spush/runtime/settings.h"

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <fstream>
#include <limits>
#include <sstream>
#include <variant>

#include "spush/kernels/compress.h"
#include "spush/runtime/algorithm.h"

namespace spush::runtime {
namespace detail {

using FieldPtr = std::variant<bool*, int*, int64_t*, uint64_t*, double*, std::string*>;
using Value = std::variant<bool, int, int64_t, uint64_t, double, std::string>;
// Returns what is expected when the rule is broken, nothing when it holds.
using Rule = std::function<std::optional<std::string>()>;

struct Entry {
  std::string key, help, section;
  FieldPtr field;
  std::string default_text;  // the field's value when declared, as help() shows it
  bool allow_empty = false;
  bool allow_non_finite = false;
  std::string empty_expected = "a non-empty value";  // what a string setting wants instead of ""
  std::vector<Rule> rules;
  std::shared_ptr<void> bounds;  // the Bounds<T> behind the entry's interval rule, if any
};

template <typename T>
struct Bounds {
  std::optional<T> lo, hi;
  bool lo_inclusive = true, hi_inclusive = true;
};

}  // namespace detail

namespace {

using detail::Entry;
using detail::Value;

template <typename T>
constexpr bool kIsInteger = std::is_integral_v<T> && !std::is_same_v<T, bool>;

// How a value is shown in messages and help: strings quoted, numbers in their shortest form.
std::string show(const Value& v) {
  return std::visit(
      [](const auto& x) -> std::string {
        using T = std::decay_t<decltype(x)>;
        if constexpr (std::is_same_v<T, std::string>)
          return "'" + x + "'";
        else if constexpr (std::is_same_v<T, bool>)
          return x ? "true" : "false";
        else
          return fmt::format("{}", x);
      },
      v);
}

Value current(const Entry& e) {
  return std::visit([](auto* p) -> Value { return *p; }, e.field);
}

std::string metavar(const Entry& e) {
  return std::visit(
      [](auto* p) -> std::string {
        using T = std::remove_pointer_t<decltype(p)>;
        if constexpr (std::is_same_v<T, bool>)
          return "";
        else if constexpr (std::is_same_v<T, std::string>)
          return "TEXT";
        else if constexpr (std::is_same_v<T, double>)
          return "NUM";
        else
          return "INT";
      },
      e.field);
}

template <typename T>
std::string integer_range() {
  return fmt::format("an integer in [{}, {}]", std::numeric_limits<T>::min(),
                     std::numeric_limits<T>::max());
}

// What a value of the entry's type must look like (for "missing" and "invalid value" messages).
std::string expected_value(const Entry& e) {
  return std::visit(
      [&](auto* p) -> std::string {
        using T = std::remove_pointer_t<decltype(p)>;
        if constexpr (std::is_same_v<T, bool>)
          return "true, false, 1 or 0";
        else if constexpr (std::is_same_v<T, std::string>)
          return e.empty_expected;
        else if constexpr (std::is_same_v<T, double>)
          return e.allow_non_finite ? "a number" : "a finite number";
        else if constexpr (std::is_same_v<T, uint64_t>)
          return "an integer >= 0";
        else
          return "an integer";
      },
      e.field);
}

bool is_string(const Entry& e) { return std::holds_alternative<std::string*>(e.field); }

// Converts command-line text to the entry's type; throws UsageError naming the flag.
Value from_text(const Entry& e, const std::string& text) {
  const std::string flag = "--" + e.key;
  auto invalid = [&](const std::string& expected) {
    return UsageError(fmt::format("{}: invalid value '{}', expected {}", flag, text, expected));
  };
  if (text.empty() && !(is_string(e) && e.allow_empty))
    throw UsageError(fmt::format("{}: empty value, expected {}", flag, expected_value(e)));
  return std::visit(
      [&](auto* p) -> Value {
        using T = std::remove_pointer_t<decltype(p)>;
        if constexpr (std::is_same_v<T, std::string>) {
          return text;
        } else if constexpr (std::is_same_v<T, bool>) {
          if (text == "true" || text == "1") return true;
          if (text == "false" || text == "0") return false;
          throw invalid(expected_value(e));
        } else {
          T v{};
          const char* end = text.data() + text.size();
          const auto [ptr, ec] = std::from_chars(text.data(), end, v);
          if constexpr (kIsInteger<T>) {
            if (ec == std::errc::result_out_of_range && ptr == end)
              throw UsageError(fmt::format("{}: value '{}' is out of range, expected {}", flag,
                                           text, integer_range<T>()));
          }
          if (ec != std::errc() || ptr != end) throw invalid(expected_value(e));
          if constexpr (std::is_same_v<T, double>)
            if (!e.allow_non_finite && !std::isfinite(v)) throw invalid(expected_value(e));
          return v;
        }
      },
      e.field);
}

// Converts a JSON value to the entry's type; throws UsageError naming source and key.
template <typename Json>
Value from_json(const Entry& e, const Json& j, const std::string& source) {
  auto fail = [&](const std::string& expected) {
    return UsageError(
        fmt::format("{}: setting '{}' = {}: expected {}", source, e.key, j.dump(), expected));
  };
  return std::visit(
      [&](auto* p) -> Value {
        using T = std::remove_pointer_t<decltype(p)>;
        if constexpr (std::is_same_v<T, std::string>) {
          if (!j.is_string()) throw fail("a string: " + e.empty_expected);
          std::string s = j.template get<std::string>();
          if (s.empty() && !e.allow_empty) throw fail(e.empty_expected);
          return s;
        } else if constexpr (std::is_same_v<T, bool>) {
          if (!j.is_boolean()) throw fail("true or false");
          return j.template get<bool>();
        } else if constexpr (std::is_same_v<T, double>) {
          if (!j.is_number()) throw fail("a number");
          return j.template get<double>();
        } else {
          if (!j.is_number_integer())
            throw fail(expected_value(e) + " (a number without fraction)");
          if (j.is_number_unsigned()) {
            const uint64_t u = j.template get<uint64_t>();
            if (u > static_cast<uint64_t>(std::numeric_limits<T>::max()))
              throw fail(integer_range<T>());
            return static_cast<T>(u);
          }
          const int64_t s = j.template get<int64_t>();
          if constexpr (std::is_same_v<T, uint64_t>) {
            if (s < 0) throw fail(integer_range<T>());
          } else if constexpr (std::is_same_v<T, int>) {
            if (s < std::numeric_limits<T>::min() || s > std::numeric_limits<T>::max())
              throw fail(integer_range<T>());
          }
          return static_cast<T>(s);
        }
      },
      e.field);
}

void assign(Entry& e, const Value& v) {
  std::visit(
      [&](auto* p) {
        using T = std::remove_pointer_t<decltype(p)>;
        *p = std::get<T>(v);
      },
      e.field);
}

std::string join(const std::vector<std::string>& names, const char* sep) {
  std::string s;
  for (const auto& n : names) s += (s.empty() ? "" : sep) + n;
  return s;
}

// Greedy word wrap of `text` to `width` columns, continuation lines indented by `indent`.
std::string wrap(const std::string& text, size_t indent, size_t first_column, size_t width) {
  std::istringstream words(text);
  std::string out, word;
  size_t column = first_column;
  bool first = true;
  while (words >> word) {
    if (!first && column + 1 + word.size() > width) {
      out += '\n';
      out.append(indent, ' ');
      column = indent;
    } else if (!first) {
      out += ' ';
      ++column;
    }
    out += word;
    column += word.size();
    first = false;
  }
  return out;
}

template <typename Json>
std::vector<std::pair<Entry*, Value>> stage_json(
    const Json& object, const std::string& source,
    const std::function<Entry*(std::string_view)>& find, const std::string& program) {
  if (!object.is_object())
    throw UsageError(fmt::format("{}: expected a JSON object of settings, found {}", source,
                                 object.type_name()));
  std::vector<std::pair<Entry*, Value>> staged;
  for (auto it = object.begin(); it != object.end(); ++it) {
    Entry* e = find(it.key());
    if (e == nullptr)
      throw UsageError(
          fmt::format("{}: unknown setting '{}', expected a setting listed by {} --help", source,
                      it.key(), program));
    staged.emplace_back(e, from_json(*e, it.value(), source));
  }
  return staged;
}

}  // namespace

// ---- Setting<T> ------------------------------------------------------------------------------

template <SettingType T>
Setting<T>& Setting<T>::bound(T value, bool lower, bool inclusive) requires NumericSetting<T> {
  using B = detail::Bounds<T>;
  if (!entry_->bounds) {
    auto b = std::make_shared<B>();
    entry_->bounds = b;
    const T* field = field_;
    entry_->rules.push_back([b, field]() -> std::optional<std::string> {
      const T v = *field;
      const bool ok = (!b->lo || (b->lo_inclusive ? v >= *b->lo : v > *b->lo)) &&
                      (!b->hi || (b->hi_inclusive ? v <= *b->hi : v < *b->hi));
      if (ok) return std::nullopt;
      const char* what = kIsInteger<T> ? "an integer" : "a value";
      if (b->lo && b->hi)
        return fmt::format("{} in {}{}, {}{}", what, b->lo_inclusive ? "[" : "(", *b->lo, *b->hi,
                           b->hi_inclusive ? "]" : ")");
      if (b->lo) return fmt::format("{} {} {}", what, b->lo_inclusive ? ">=" : ">", *b->lo);
      return fmt::format("{} {} {}", what, b->hi_inclusive ? "<=" : "<", *b->hi);
    });
  }
  auto b = std::static_pointer_cast<B>(entry_->bounds);
  if (lower) {
    b->lo = value;
    b->lo_inclusive = inclusive;
  } else {
    b->hi = value;
    b->hi_inclusive = inclusive;
  }
  return *this;
}

template <SettingType T>
Setting<T>& Setting<T>::in_range(T lo, T hi) requires NumericSetting<T> {
  bound(lo, true, true);
  return bound(hi, false, true);
}
template <SettingType T>
Setting<T>& Setting<T>::at_least(T lo) requires NumericSetting<T> {
  return bound(lo, true, true);
}
template <SettingType T>
Setting<T>& Setting<T>::above(T lo) requires NumericSetting<T> {
  return bound(lo, true, false);
}
template <SettingType T>
Setting<T>& Setting<T>::at_most(T hi) requires NumericSetting<T> {
  return bound(hi, false, true);
}
template <SettingType T>
Setting<T>& Setting<T>::below(T hi) requires NumericSetting<T> {
  return bound(hi, false, false);
}

template <SettingType T>
Setting<T>& Setting<T>::allow_non_finite() requires std::same_as<T, double> {
  entry_->allow_non_finite = true;
  return *this;
}

template <SettingType T>
Setting<T>& Setting<T>::one_of(
    std::vector<std::string> names) requires std::same_as<T, std::string> {
  const std::string expected = "one of " + join(names, " | ");
  entry_->empty_expected = expected;
  const std::string* field = field_;
  entry_->rules.push_back(
      [names = std::move(names), expected, field]() -> std::optional<std::string> {
        if (std::find(names.begin(), names.end(), *field) != names.end()) return std::nullopt;
        return expected;
      });
  return *this;
}

template <SettingType T>
Setting<T>& Setting<T>::parsed_by_impl(std::function<void(const std::string&)> parse,
                                       std::string what) requires std::same_as<T, std::string> {
  entry_->empty_expected = what;
  const std::string* field = field_;
  entry_->rules.push_back(
      [parse = std::move(parse), what = std::move(what), field]() -> std::optional<std::string> {
        try {
          parse(*field);
          return std::nullopt;
        } catch (const std::invalid_argument& e) {
          return what + " (" + e.what() + ")";
        }
      });
  return *this;
}

template <SettingType T>
Setting<T>& Setting<T>::non_empty(std::string expected) requires std::same_as<T, std::string> {
  entry_->empty_expected = std::move(expected);
  entry_->allow_empty = false;
  return *this;
}

template <SettingType T>
Setting<T>& Setting<T>::allow_empty() requires std::same_as<T, std::string> {
  entry_->allow_empty = true;
  return *this;
}

template <SettingType T>
Setting<T>& Setting<T>::check(std::function<bool(const T&)> ok, std::string expected) {
  const T* field = field_;
  entry_->rules.push_back(
      [ok = std::move(ok), expected = std::move(expected), field]() -> std::optional<std::string> {
        if (ok(*field)) return std::nullopt;
        return expected;
      });
  return *this;
}

// Each member is instantiated for the types its requires-clause admits (clang 14 rejects
// `template class Setting<bool>;` because it instantiates in_range for bool as well).
#define SPUSH_NUMERIC_SETTING(T)                   \
  template Setting<T>& Setting<T>::in_range(T, T); \
  template Setting<T>& Setting<T>::at_least(T);    \
  template Setting<T>& Setting<T>::above(T);       \
  template Setting<T>& Setting<T>::at_most(T);     \
  template Setting<T>& Setting<T>::below(T);       \
  template Setting<T>& Setting<T>::check(std::function<bool(const T&)>, std::string);
SPUSH_NUMERIC_SETTING(int)
SPUSH_NUMERIC_SETTING(int64_t)
SPUSH_NUMERIC_SETTING(uint64_t)
SPUSH_NUMERIC_SETTING(double)
#undef SPUSH_NUMERIC_SETTING
template Setting<bool>& Setting<bool>::check(std::function<bool(const bool&)>, std::string);
template Setting<double>& Setting<double>::allow_non_finite();
template Setting<std::string>& Setting<std::string>::one_of(std::vector<std::string>);
template Setting<std::string>& Setting<std::string>::non_empty(std::string);
template Setting<std::string>& Setting<std::string>::allow_empty();
template Setting<std::string>& Setting<std::string>::parsed_by_impl(
    std::function<void(const std::string&)>, std::string);
template Setting<std::string>& Setting<std::string>::check(std::function<bool(const std::string&)>,
                                                           std::string);

// ---- Settings --------------------------------------------------------------------------------

Settings::Settings(std::string program, std::string description)
    : program_(std::move(program)), description_(std::move(description)) {}
Settings::~Settings() = default;

void Settings::section(std::string title) { section_ = std::move(title); }

template <SettingType T>
Setting<T> Settings::add(std::string key, T& field, std::string help) {
  if (key.empty() || key.rfind("-", 0) == 0 || key.find('=') != std::string::npos ||
      key == "config" || key == "help")
    throw std::logic_error("Settings: '" + key + "' cannot be a setting key");
  if (find(key) != nullptr) throw std::logic_error("Settings: '" + key + "' declared twice");
  auto e = std::make_unique<Entry>();
  e->key = std::move(key);
  e->help = std::move(help);
  e->section = section_;
  e->field = &field;
  if constexpr (std::is_same_v<T, std::string>)
    e->default_text = field.empty() ? "\"\"" : field;
  else
    e->default_text = show(field);
  Entry* raw = e.get();
  entries_.push_back(std::move(e));
  return Setting<T>(raw, &field);
}

template Setting<bool> Settings::add(std::string, bool&, std::string);
template Setting<int> Settings::add(std::string, int&, std::string);
template Setting<int64_t> Settings::add(std::string, int64_t&, std::string);
template Setting<uint64_t> Settings::add(std::string, uint64_t&, std::string);
template Setting<double> Settings::add(std::string, double&, std::string);
template Setting<std::string> Settings::add(std::string, std::string&, std::string);

void Settings::pass_through(std::string prefix, std::string help) {
  pass_through_.emplace_back(std::move(prefix), std::move(help));
}

Entry* Settings::find(std::string_view key) const {
  for (const auto& e : entries_)
    if (e->key == key) return e.get();
  return nullptr;
}

bool Settings::contains(std::string_view key) const { return find(key) != nullptr; }

std::vector<std::string> Settings::keys() const {
  std::vector<std::string> k;
  for (const auto& e : entries_) k.push_back(e->key);
  return k;
}

Settings::CommandLine Settings::parse(int argc, const char* const* argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) args.emplace_back(argv[i]);
  return parse(args);
}

Settings::CommandLine Settings::parse(const std::vector<std::string>& args) {
  CommandLine result;
  for (const std::string& a : args)
    if (a == "--help" || a == "-h") {
      result.help = true;
      return result;
    }
  const std::string see = fmt::format(" (see {} --help)", program_);
  std::vector<std::pair<Entry*, Value>> staged;
  std::optional<std::string> config;
  const std::string* previous_flag = nullptr;  // the last bool flag, for a stray "true"
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (std::any_of(pass_through_.begin(), pass_through_.end(),
                    [&](const auto& p) { return a.rfind(p.first, 0) == 0; })) {
      result.passed.push_back(a);
      continue;
    }
    if (a.size() <= 2 || a.rfind("--", 0) != 0) {
      if (a.rfind("-", 0) == 0 && a.size() > 1)
        throw UsageError(fmt::format("unknown option {}{}", a, see));
      if (previous_flag != nullptr)
        throw UsageError(fmt::format(
            "unexpected argument '{}' after {}: a flag takes its value as {}=true|false{}", a,
            *previous_flag, *previous_flag, see));
      throw UsageError(
          fmt::format("unexpected argument '{}': expected --KEY VALUE or --KEY=VALUE{}", a, see));
    }
    previous_flag = nullptr;
    const size_t eq = a.find('=');
    const bool inline_value = eq != std::string::npos;
    const std::string name = a.substr(2, inline_value ? eq - 2 : std::string::npos);
    const std::string flag = "--" + name;
    // The value after '=', or the next argument unless that is another flag.
    auto value_of = [&](const std::string& expected) -> std::string {
      if (inline_value) return a.substr(eq + 1);
      if (i + 1 >= args.size() || args[i + 1].rfind("--", 0) == 0)
        throw UsageError(fmt::format("{}: missing value, expected {}", flag, expected));
      return args[++i];
    };
    if (name == "config") {
      const std::string file = value_of("a JSON file of settings");
      if (file.empty()) throw UsageError("--config: empty value, expected a JSON file of settings");
      if (config)
        throw UsageError(
            fmt::format("--config: given twice ('{}' and '{}'), expected one file", *config, file));
      config = file;
      continue;
    }
    Entry* e = find(name);
    if (e == nullptr) throw UsageError(fmt::format("unknown option {}{}", flag, see));
    std::string text;
    if (std::holds_alternative<bool*>(e->field)) {
      text = inline_value ? a.substr(eq + 1) : "true";
      if (!inline_value) previous_flag = &a;
    } else {
      text = value_of(expected_value(*e));
    }
    staged.emplace_back(e, from_text(*e, text));
  }
  std::vector<std::pair<Entry*, Value>> from_file;
  if (config) {
    std::ifstream in(*config);
    if (!in)
      throw UsageError(fmt::format("--config {}: cannot open the file for reading", *config));
    nlohmann::ordered_json j;
    try {
      j = nlohmann::ordered_json::parse(in);
    } catch (const std::exception& ex) {
      throw UsageError(fmt::format("--config {}: not valid JSON: {}", *config, ex.what()));
    }
    from_file = stage_json(
        j, "--config " + *config, [this](std::string_view k) { return find(k); }, program_);
  }
  for (auto& [e, v] : from_file) assign(*e, v);
  for (auto& [e, v] : staged) assign(*e, v);
  return result;
}

void Settings::load_json(const nlohmann::ordered_json& object, const std::string& source) {
  for (auto& [e, v] : stage_json(
           object, source, [this](std::string_view k) { return find(k); }, program_))
    assign(*e, v);
}

void Settings::load_json(const nlohmann::json& object, const std::string& source) {
  for (auto& [e, v] : stage_json(
           object, source, [this](std::string_view k) { return find(k); }, program_))
    assign(*e, v);
}

void Settings::load_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw UsageError("config " + path + ": cannot open the file for reading");
  nlohmann::ordered_json j;
  try {
    j = nlohmann::ordered_json::parse(in);
  } catch (const std::exception& ex) {
    throw UsageError("config " + path + ": not valid JSON: " + ex.what());
  }
  load_json(j, "config " + path);
}

nlohmann::ordered_json Settings::to_json() const {
  nlohmann::ordered_json j = nlohmann::ordered_json::object();
  for (const auto& e : entries_) std::visit([&](auto* p) { j[e->key] = *p; }, e->field);
  return j;
}

void Settings::validate() const {
  for (const auto& e : entries_) {
    auto fail = [&](const std::string& expected) {
      return ConfigError(
          fmt::format("invalid setting {} = {}: expected {}", e->key, show(current(*e)), expected));
    };
    if (const auto* d = std::get_if<double*>(&e->field))
      if (!e->allow_non_finite && !std::isfinite(**d)) throw fail("a finite number");
    if (const auto* s = std::get_if<std::string*>(&e->field))
      if (!e->allow_empty && (*s)->empty()) throw fail(e->empty_expected);
    for (const auto& rule : e->rules)
      if (const auto expected = rule()) throw fail(*expected);
  }
}

std::string Settings::help() const {
  constexpr size_t kIndent = 30, kWidth = 100;
  std::string out = fmt::format(
      "usage: {} [--config FILE] [--KEY VALUE | --KEY=VALUE | --FLAG | --FLAG=true|false]...\n",
      program_);
  if (!description_.empty()) out += fmt::format("\n{}\n", wrap(description_, 0, 0, kWidth));
  auto line = [&](const std::string& left, const std::string& text) {
    std::string l = "  " + left;
    if (l.size() + 2 > kIndent) {
      l += '\n';
      l.append(kIndent, ' ');
    } else {
      l.append(kIndent - l.size(), ' ');
    }
    out += l + wrap(text, kIndent, kIndent, kWidth) + "\n";
  };
  out += "\n";
  line("--config FILE",
       "a JSON object of settings, keys as the flags below without dashes; command-line flags "
       "override it");
  line("--help", "print this help and exit");
  for (const auto& [prefix, text] : pass_through_) line(prefix + "...", text);
  std::string section;
  for (const auto& e : entries_) {
    if (e->section != section) {
      section = e->section;
      out += fmt::format("\n{}:\n", section);
    }
    const std::string mv = metavar(*e);
    line("--" + e->key + (mv.empty() ? "" : " " + mv),
         e->help + " (default: " + e->default_text + ")");
  }
  return out;
}

// ---- shared groups ---------------------------------------------------------------------------

void check_compression(const std::string& compressor, int bits) {
  kernels::CompressorKind kind;
  try {
    kind = kernels::compressor_kind_from_string(compressor);
  } catch (const std::invalid_argument&) {
    return;  // the compressor setting's own rule reports it
  }
  if (kind == kernels::CompressorKind::kQsgd && bits != 1 && bits != 2 && bits != 4 && bits != 8)
    throw ConfigError(
        fmt::format("invalid setting bits = {}: expected 1, 2, 4 or 8 with compressor qsgd", bits));
  if (kind == kernels::CompressorKind::kFractional && (bits < 2 || bits > 9))
    throw ConfigError(
        fmt::format("invalid setting bits = {}: expected 2..9 with compressor fractional", bits));
}

void check_memory(const std::string& key, const std::string& value, double bytes,
                  const std::string& what) {
  std::ifstream in("/proc/meminfo");
  double available = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("MemAvailable:", 0) != 0) continue;
    available = std::strtod(line.c_str() + 13, nullptr) * 1024.0;  // the value is in kB
    break;
  }
  if (available <= 0 || bytes <= available) return;
  throw ConfigError(fmt::format(
      "invalid setting {} = {}: the run needs about {:.1f} GiB for {}, but {:.1f} GiB of memory "
      "are available",
      key, value, bytes / (1 << 30), what, available / (1 << 30)));
}

std::pair<std::string, int64_t> parse_schedule(const std::string& schedule) {
  const auto colon = schedule.find(':');
  const std::string unit = schedule.substr(0, colon);
  int64_t n = 0;
  bool ok = colon != std::string::npos && (unit == "epochs" || unit == "iterations");
  if (ok) {
    const char* first = schedule.data() + colon + 1;
    const char* last = schedule.data() + schedule.size();
    const auto [ptr, ec] = std::from_chars(first, last, n);
    ok = ec == std::errc() && ptr == last && n >= 1;
  }
  if (!ok)
    throw ConfigError("invalid setting schedule = '" + schedule +
                      "': expected epochs:N or iterations:N with N >= 1");
  return {unit, n};
}

void declare_graph(Settings& s, const GraphFields& f) {
  s.section("graph");
  // A node count beyond what any graph here runs (and what a topology file may declare, see
  // runtime/src/topology.cpp) is a typo: refused before anything is sized from it.
  s.add("nodes", f.nodes, "number of nodes, 1..65536").in_range(1, kMaxNodes);
  s.add("topology", f.topology,
        "ring | bidir-ring | torus | torus:RxC | exponential | full | rings4 | rings4-3 | "
        "file:PATH, or a comma-separated list to rotate")
      .non_empty("a topology name, file:PATH or a comma-separated list of them");
  s.add("schedule", f.schedule,
        "rotation of a topology list: epochs:N or iterations:N (each graph used for N of them)")
      .check(
          [](const std::string& v) {
            try {
              parse_schedule(v);
              return true;
            } catch (const ConfigError&) {
              return false;
            }
          },
          "epochs:N or iterations:N with N >= 1");
  s.add("failure-prob", f.failure_prob, "probability that a link fails in a round, [0, 1)")
      .at_least(0.0)
      .below(1.0);
}

void declare_algorithm(Settings& s, const AlgorithmFields& f) {
  s.section("algorithm and compression");
  s.add("algorithm", f.algorithm,
        "sgp (or dpsgd) | deepsqueeze | sparsepush | scsp | choco (or quantsgp); spush-train "
        "also: bsp | fedavg | gaia | dgc | ssgd-topk | ssgd-mv | mv-ad | mv-rs")
      .parsed_by(algorithm_kind_from_string, "a known algorithm");
  s.add("compressor", f.compressor,
        "topk | randomk | qsgd | sign | fractional | minmax8 | identity (or none); ignored by sgp")
      .parsed_by(kernels::compressor_kind_from_string, "a known compressor");
  s.add("density", f.density, "fraction of values kept by topk/randomk/fractional, (0, 1]")
      .above(0.0)
      .at_most(1.0);
  s.add("bits", f.bits, "qsgd bits (1, 2, 4, 8) or fractional bits (2..9)")
      .check([](const int& b) { return b >= 1 && b <= 9; },
             "1, 2, 4 or 8 (qsgd) or 2..9 (fractional)");
  s.add("index-codec", f.index_codec, "how sparse indices go on the wire: raw32 | local16 | block")
      .parsed_by(kernels::index_codec_from_string, "a known index codec");
  s.add("global-compression", f.global_compression,
        "compress the whole model instead of layer by layer");
  s.add("eta", f.eta,
        "averaging rate in (0, 1]; negative: the default (1 without compression, else the "
        "default of the density)")
      .check([](const double& e) { return e < 0 || (e > 0 && e <= 1); },
             "a value in (0, 1], or negative for the default");
  s.add("local-steps", f.local_steps, "communicate every H iterations").at_least(1);
  s.add("scsp-final-rounds", f.scsp_final_rounds, "SCSP: uncompressed gossip rounds at the end")
      .at_least(0);
}

void declare_execution(Settings& s, const ExecutionFields& f) {
  s.section("execution");
  s.add("seed", f.seed, "seed of initialization, data, shuffles, stochastic compression, failures");
  s.add("device", f.device, "auto | cpu | cuda").one_of({"auto", "cpu", "cuda"});
  s.add("transport", f.transport,
        "how nodes exchange messages: local (every node in this process) | mpi (one process per "
        "rank, started by mpirun) | auto (mpi when started by mpirun with several ranks)")
      .one_of({"local", "mpi", "auto"});
  s.add("comm-timeout", f.comm_timeout,
        "seconds a rank waits for another before declaring it lost, in (0, 1e6]")
      .above(0.0)
      .at_most(1e6);
  // 1024 is far above the cores of any machine this runs on; the bound catches typos (10000)
  // that would start thousands of OpenMP threads.
  s.add("threads", f.threads, "OpenMP threads (0: the OpenMP default), at most 1024")
      .in_range(0, 1024);
}

}  // namespace spush::runtime
