// The settings registry (runtime/include/spush/runtime/settings.h): every rule kind at its
// boundaries, strict conversion of command-line values, empty values, typed config files and
// their errors, --config precedence, the JSON round trip, help, and the shared setting groups.
#include "spush/runtime/settings.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>

#include "spush/runtime/algorithm.h"
#include "spush/runtime/train_config.h"

namespace spush::runtime {
namespace {

namespace fs = std::filesystem;

// Expects f() to throw E with a message containing every needle.
template <typename E, typename F>
void expect_throw(F&& f, std::initializer_list<std::string> needles) {
  try {
    f();
    ADD_FAILURE() << "expected an exception mentioning " << *needles.begin();
  } catch (const E& e) {
    const std::string what = e.what();
    for (const auto& n : needles) EXPECT_NE(what.find(n), std::string::npos) << what;
    EXPECT_EQ(what.find('\n'), std::string::npos) << "more than one line: " << what;
  }
}

// One setting of every type, with a rule of every kind.
struct Fields {
  bool flag = false;
  int count = 4;
  int64_t big = 0;
  uint64_t seed = 1;
  double ratio = 0.5;
  double rate = 1;
  std::string name = "a";
  std::string out = "runs/x";
  std::string dir;
  std::string algorithm = "sgp";
};

struct Registry {
  Fields f;
  Settings s{"prog", "A test program."};
  Registry() {
    s.section("first");
    s.add("flag", f.flag, "a flag");
    s.add("count", f.count, "a count").in_range(1, 9);
    s.add("big", f.big, "a big number").at_least(-5).at_most(int64_t{1} << 40);
    s.add("seed", f.seed, "a seed").at_most(uint64_t{1} << 63);
    s.section("second");
    s.add("ratio", f.ratio, "a ratio").at_least(0.0).below(1.0);
    s.add("rate", f.rate, "a rate").above(0.0).at_most(2.0);
    s.add("name", f.name, "a name").one_of({"a", "b"});
    s.add("out", f.out, "an output directory").non_empty("a directory");
    s.add("dir", f.dir, "a data directory, empty: the default").allow_empty();
    s.add("algorithm", f.algorithm, "an algorithm")
        .parsed_by(algorithm_kind_from_string, "a known algorithm")
        .check([](const std::string& a) { return a != "scsp"; }, "an algorithm other than scsp");
    s.pass_through("--benchmark_", "passed on");
  }
  Settings::CommandLine parse(const std::vector<std::string>& args) { return s.parse(args); }
};

class TempDir : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() /
           ("spush_settings_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::create_directories(dir_);
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string file(const std::string& name, const std::string& text) {
    const fs::path p = dir_ / name;
    std::ofstream(p) << text;
    return p.string();
  }
  fs::path dir_;
};

// ---- rules ------------------------------------------------------------------------------------

TEST(SettingsRules, DefaultsAreValid) {
  Registry r;
  EXPECT_NO_THROW(r.s.validate());
}

TEST(SettingsRules, ClosedRangeAcceptsItsEndsOnly) {
  Registry r;
  for (int v : {1, 5, 9}) {
    r.f.count = v;
    EXPECT_NO_THROW(r.s.validate()) << v;
  }
  for (int v : {0, 10, -1}) {
    r.f.count = v;
    expect_throw<ConfigError>(
        [&] { r.s.validate(); },
        {"invalid setting count = " + std::to_string(v), "expected an integer in [1, 9]"});
  }
}

TEST(SettingsRules, InclusiveAndExclusiveBounds) {
  Registry r;
  // ratio: [0, 1)
  r.f.ratio = 0;
  EXPECT_NO_THROW(r.s.validate());
  r.f.ratio = std::nextafter(1.0, 0.0);
  EXPECT_NO_THROW(r.s.validate());
  for (double v : {1.0, -1e-300}) {
    r.f.ratio = v;
    expect_throw<ConfigError>([&] { r.s.validate(); },
                              {"invalid setting ratio", "expected a value in [0, 1)"});
  }
  r.f.ratio = 0.5;
  // rate: (0, 2]
  r.f.rate = 2;
  EXPECT_NO_THROW(r.s.validate());
  r.f.rate = std::nextafter(0.0, 1.0);
  EXPECT_NO_THROW(r.s.validate());
  for (double v : {0.0, std::nextafter(2.0, 3.0)}) {
    r.f.rate = v;
    expect_throw<ConfigError>([&] { r.s.validate(); }, {"rate", "expected a value in (0, 2]"});
  }
  r.f.rate = 1;
  // 64-bit bounds are compared exactly, not through double.
  r.f.big = int64_t{1} << 40;
  EXPECT_NO_THROW(r.s.validate());
  r.f.big = (int64_t{1} << 40) + 1;
  expect_throw<ConfigError>([&] { r.s.validate(); },
                            {"big = 1099511627777", "[-5, 1099511627776]"});
  r.f.big = -6;
  expect_throw<ConfigError>([&] { r.s.validate(); }, {"big = -6"});
  r.f.big = 0;
  r.f.seed = (uint64_t{1} << 63) + 1;
  expect_throw<ConfigError>([&] { r.s.validate(); }, {"seed", "an integer <= 9223372036854775808"});
}

TEST(SettingsRules, SingleBoundsSayWhichSide) {
  double x = 0;
  int n = 0;
  Settings s("prog");
  s.add("x", x, "").above(0.0);
  s.add("n", n, "").at_least(1);
  expect_throw<ConfigError>([&] { s.validate(); }, {"invalid setting x = 0: expected a value > 0"});
  x = 1;
  expect_throw<ConfigError>([&] { s.validate(); },
                            {"invalid setting n = 0: expected an integer >= 1"});
  n = 1;
  EXPECT_NO_THROW(s.validate());
  double y = 5;
  s.add("y", y, "").below(5.0);
  expect_throw<ConfigError>([&] { s.validate(); }, {"y = 5: expected a value < 5"});
}

TEST(SettingsRules, OneOfAndLibraryParsers) {
  Registry r;
  r.f.name = "b";
  EXPECT_NO_THROW(r.s.validate());
  r.f.name = "c";
  expect_throw<ConfigError>([&] { r.s.validate(); },
                            {"invalid setting name = 'c'", "expected one of a | b"});
  r.f.name = "a";
  for (const char* a : {"sgp", "dpsgd", "quantsgp", "choco", "sparsepush"}) {
    r.f.algorithm = a;
    EXPECT_NO_THROW(r.s.validate()) << a;
  }
  r.f.algorithm = "gossipy";
  // The accepted names come from the library's own message.
  expect_throw<ConfigError>(
      [&] { r.s.validate(); },
      {"invalid setting algorithm = 'gossipy'", "expected a known algorithm", "dpsgd", "quantsgp"});
}

TEST(SettingsRules, PredicateAfterTheParserInDeclarationOrder) {
  Registry r;
  r.f.algorithm = "scsp";
  expect_throw<ConfigError>([&] { r.s.validate(); },
                            {"algorithm = 'scsp'", "expected an algorithm other than scsp"});
  // The first broken setting in declaration order is the one reported.
  r.f.count = 0;
  expect_throw<ConfigError>([&] { r.s.validate(); }, {"count = 0"});
}

TEST(SettingsRules, EmptyStrings) {
  Registry r;
  r.f.dir = "";
  EXPECT_NO_THROW(r.s.validate());
  r.f.out = "";
  expect_throw<ConfigError>([&] { r.s.validate(); },
                            {"invalid setting out = '': expected a directory"});
  Registry fresh;
  fresh.f.name = "";
  expect_throw<ConfigError>([&] { fresh.s.validate(); }, {"name = ''", "one of a | b"});
}

TEST(SettingsRules, DoublesMustBeFiniteUnlessAllowed) {
  Registry r;
  r.f.rate = std::numeric_limits<double>::infinity();
  expect_throw<ConfigError>([&] { r.s.validate(); }, {"rate = inf", "expected a finite number"});
  r.f.rate = std::nan("");
  expect_throw<ConfigError>([&] { r.s.validate(); }, {"rate", "a finite number"});
  double limit = std::numeric_limits<double>::infinity();
  Settings s("prog");
  s.add("limit", limit, "").allow_non_finite().at_least(0.0);
  EXPECT_NO_THROW(s.validate());
  s.parse(std::vector<std::string>{"--limit", "inf"});
  EXPECT_TRUE(std::isinf(limit));
  limit = -limit;
  expect_throw<ConfigError>([&] { s.validate(); }, {"limit = -inf", ">= 0"});
}

TEST(SettingsRules, DeclaringAKeyTwiceIsAProgrammingError) {
  int a = 0, b = 0;
  Settings s("prog");
  s.add("a", a, "");
  EXPECT_THROW(s.add("a", b, ""), std::logic_error);
  EXPECT_THROW(s.add("config", b, ""), std::logic_error);
  EXPECT_THROW(s.add("--b", b, ""), std::logic_error);
}

// ---- command line -----------------------------------------------------------------------------

TEST(SettingsCommandLine, BothFormsAndFlags) {
  Registry r;
  const auto cl = r.parse({"--count", "3", "--ratio=0.25", "--flag", "--name", "b", "--big=-5",
                           "--seed", "18446744073709551615", "--out=o", "--dir", "d"});
  EXPECT_FALSE(cl.help);
  EXPECT_TRUE(cl.passed.empty());
  EXPECT_EQ(r.f.count, 3);
  EXPECT_DOUBLE_EQ(r.f.ratio, 0.25);
  EXPECT_TRUE(r.f.flag);
  EXPECT_EQ(r.f.name, "b");
  EXPECT_EQ(r.f.big, -5);
  EXPECT_EQ(r.f.seed, std::numeric_limits<uint64_t>::max());
  EXPECT_EQ(r.f.out, "o");
  EXPECT_EQ(r.f.dir, "d");
  for (const auto& [arg, value] : std::vector<std::pair<std::string, bool>>{{"--flag=false", false},
                                                                            {"--flag=true", true},
                                                                            {"--flag=0", false},
                                                                            {"--flag=1", true}}) {
    r.parse({arg});
    EXPECT_EQ(r.f.flag, value) << arg;
  }
  // The last of a repeated flag wins.
  r.parse({"--count", "2", "--count", "7"});
  EXPECT_EQ(r.f.count, 7);
}

TEST(SettingsCommandLine, IntegersAreWholeStringsInTheirTypesRange) {
  Registry r;
  r.parse({"--count", "-2147483648"});
  EXPECT_EQ(r.f.count, std::numeric_limits<int>::min());
  r.parse({"--big", "9223372036854775807"});
  EXPECT_EQ(r.f.big, std::numeric_limits<int64_t>::max());
  for (const char* bad : {"12abc", " 12", "12 ", "1.0", "1e3", "0x10", "many", "+-1"})
    expect_throw<UsageError>(
        [&] {
          r.parse({"--count", bad});
        },
        {"--count: invalid value '" + std::string(bad) + "'", "expected an integer"});
  expect_throw<UsageError>(
      [&] {
        r.parse({"--count", "2147483648"});
      },
      {"--count", "out of range", "[-2147483648, 2147483647]"});
  expect_throw<UsageError>([&] { r.parse({"--big=9223372036854775808"}); },
                           {"--big", "out of range"});
  expect_throw<UsageError>(
      [&] {
        r.parse({"--seed", "18446744073709551616"});
      },
      {"--seed", "out of range", "[0, 18446744073709551615]"});
  expect_throw<UsageError>(
      [&] {
        r.parse({"--seed", "-1"});
      },
      {"--seed: invalid value '-1'", "an integer >= 0"});
}

TEST(SettingsCommandLine, DoublesAreFiniteWholeStrings) {
  Registry r;
  for (const auto& [text, value] : std::vector<std::pair<std::string, double>>{
           {"1e-3", 1e-3}, {"0.5", 0.5}, {"-2", -2}, {"3", 3}}) {
    r.parse({"--rate", text});
    EXPECT_DOUBLE_EQ(r.f.rate, value) << text;
  }
  for (const char* bad : {"nan", "inf", "-inf", "1e999", "fast", "0.5x", "0,5", ""})
    expect_throw<UsageError>([&] { r.parse({"--rate=" + std::string(bad)}); },
                             {"--rate", "expected a finite number"});
}

TEST(SettingsCommandLine, BoolsAreTrueFalseOneOrZero) {
  Registry r;
  for (const char* bad : {"yes", "on", "TRUE", "2"})
    expect_throw<UsageError>([&] { r.parse({"--flag=" + std::string(bad)}); },
                             {"--flag: invalid value", "expected true, false, 1 or 0"});
  expect_throw<UsageError>([&] { r.parse({"--flag="}); },
                           {"--flag: empty value", "true, false, 1 or 0"});
  // A flag never takes the next argument.
  expect_throw<UsageError>(
      [&] {
        r.parse({"--flag", "false"});
      },
      {"unexpected argument 'false' after --flag", "--flag=true|false"});
}

TEST(SettingsCommandLine, EmptyValueNeverTakesTheNextArgument) {
  Registry r;
  expect_throw<UsageError>(
      [&] {
        r.parse({"--out=", "--count", "3"});
      },
      {"--out: empty value, expected a directory"});
  EXPECT_EQ(r.f.out, "runs/x");
  EXPECT_EQ(r.f.count, 4) << "nothing is assigned when parse() throws";
  expect_throw<UsageError>(
      [&] {
        r.parse({"--out", "", "--count", "3"});
      },
      {"--out: empty value, expected a directory"});
  expect_throw<UsageError>(
      [&] {
        r.parse({"--count=", "5"});
      },
      {"--count: empty value, expected an integer"});
  expect_throw<UsageError>([&] { r.parse({"--name="}); }, {"--name: empty value", "one of a | b"});
  // A setting that accepts "" takes it and leaves the next flag alone.
  r.f.dir = "before";
  r.parse({"--dir=", "--count", "3"});
  EXPECT_EQ(r.f.dir, "");
  EXPECT_EQ(r.f.count, 3);
  r.f.dir = "before";
  r.parse({"--dir", "", "--count", "5"});
  EXPECT_EQ(r.f.dir, "");
  EXPECT_EQ(r.f.count, 5);
}

TEST(SettingsCommandLine, MalformedCommandLines) {
  Registry r;
  expect_throw<UsageError>(
      [&] {
        r.parse({"--no-such-flag", "1"});
      },
      {"unknown option --no-such-flag", "prog --help"});
  expect_throw<UsageError>([&] { r.parse({"-n", "1"}); }, {"unknown option -n"});
  expect_throw<UsageError>([&] { r.parse({"stray"}); }, {"unexpected argument 'stray'"});
  expect_throw<UsageError>([&] { r.parse({"--count"}); },
                           {"--count: missing value, expected an integer"});
  expect_throw<UsageError>(
      [&] {
        r.parse({"--out", "--count", "3"});
      },
      {"--out: missing value, expected a directory"});
  expect_throw<UsageError>([&] { r.parse({"--count", "3", "4"}); }, {"unexpected argument '4'"});
  expect_throw<UsageError>([&] { r.parse({"--"}); }, {"unknown option --"});
}

TEST(SettingsCommandLine, ValuesAreNotCheckedAgainstRulesWhileParsing) {
  Registry r;
  r.parse({"--count", "100", "--name", "zzz"});
  EXPECT_EQ(r.f.count, 100);
  EXPECT_THROW(r.s.validate(), ConfigError);
}

TEST(SettingsCommandLine, HelpWinsAndListsEverySetting) {
  Registry r;
  EXPECT_TRUE(r.parse({"--no-such-flag", "--help"}).help);
  EXPECT_TRUE(r.parse({"-h"}).help);
  EXPECT_EQ(r.f.count, 4);
  const std::string help = r.s.help();
  for (const std::string& key : r.s.keys())
    EXPECT_NE(help.find("--" + key + " "), std::string::npos) << key << " in\n" << help;
  for (const char* text :
       {"usage: prog", "A test program.", "--config FILE", "--help", "--benchmark_",
        "first:", "second:", "a count (default: 4)", "--ratio NUM", "--count INT", "--name TEXT",
        "(default: runs/x)", "(default: \"\")", "a flag (default: false)"})
    EXPECT_NE(help.find(text), std::string::npos) << text << " in\n" << help;
  EXPECT_EQ(r.s.keys().size(), 10u);
}

TEST(SettingsCommandLine, PassThroughArgumentsAreLeftAlone) {
  Registry r;
  const auto cl = r.parse({"--benchmark_filter=^copy", "--count", "2", "--benchmark_min_time=0.1"});
  EXPECT_EQ(cl.passed,
            (std::vector<std::string>{"--benchmark_filter=^copy", "--benchmark_min_time=0.1"}));
  EXPECT_EQ(r.f.count, 2);
  // The prefix must match exactly; a pass-through argument never takes a value.
  expect_throw<UsageError>([&] { r.parse({"--benchmarkfilter=x"}); }, {"unknown option"});
  expect_throw<UsageError>(
      [&] {
        r.parse({"--benchmark_filter", "x"});
      },
      {"unexpected argument 'x'"});
  Settings plain("plain");
  expect_throw<UsageError>([&] { plain.parse(std::vector<std::string>{"--benchmark_x=1"}); },
                           {"unknown option --benchmark_x"});
}

// ---- config files -----------------------------------------------------------------------------

TEST_F(TempDir, ConfigFileAssignsEveryType) {
  Registry r;
  const std::string path = file("ok.json", R"({"flag": true, "count": 2, "big": -5,
      "seed": 9223372036854775808, "ratio": 0, "rate": 2, "name": "b", "out": "o", "dir": "",
      "algorithm": "dpsgd"})");
  r.f.dir = "before";
  r.parse({"--config", path});
  EXPECT_TRUE(r.f.flag);
  EXPECT_EQ(r.f.count, 2);
  EXPECT_EQ(r.f.big, -5);
  EXPECT_EQ(r.f.seed, uint64_t{1} << 63);  // above the int64_t range
  EXPECT_DOUBLE_EQ(r.f.ratio, 0);
  EXPECT_DOUBLE_EQ(r.f.rate, 2);  // an integral JSON number for a double setting
  EXPECT_EQ(r.f.name, "b");
  EXPECT_EQ(r.f.out, "o");
  EXPECT_EQ(r.f.dir, "");
  EXPECT_EQ(r.f.algorithm, "dpsgd");
  EXPECT_NO_THROW(r.s.validate());
}

TEST_F(TempDir, ConfigFileErrorsNameTheFileTheKeyAndWhatIsExpected) {
  struct Case {
    std::string text;
    std::vector<std::string> mentions;
  };
  const std::vector<Case> cases = {
      {R"({"count": 2, "cuont": 3})", {"unknown setting 'cuont'", "prog --help"}},
      {R"({"count": "3"})", {"'count' = \"3\"", "expected an integer"}},
      {R"({"count": 4.5})", {"'count' = 4.5", "expected an integer"}},
      {R"({"count": 4.0})", {"'count' = 4.0", "expected an integer"}},
      {R"({"count": 3000000000})", {"'count' = 3000000000", "[-2147483648, 2147483647]"}},
      {R"({"count": -3000000000})", {"'count' = -3000000000", "[-2147483648, 2147483647]"}},
      {R"({"count": null})", {"'count' = null", "expected an integer"}},
      {R"({"big": 9223372036854775808})", {"'big'", "[-9223372036854775808, 9223372036854775807]"}},
      {R"({"seed": -1})", {"'seed' = -1", "[0, 18446744073709551615]"}},
      {R"({"flag": 1})", {"'flag' = 1", "expected true or false"}},
      {R"({"flag": "true"})", {"'flag' = \"true\"", "expected true or false"}},
      {R"({"rate": "1"})", {"'rate' = \"1\"", "expected a number"}},
      {R"({"rate": true})", {"'rate' = true", "expected a number"}},
      {R"({"name": 1})", {"'name' = 1", "expected a string"}},
      {R"({"out": ""})", {"'out' = \"\"", "expected a directory"}},
      {R"([1, 2])", {"expected a JSON object of settings", "array"}},
      {R"({"count": )", {"not valid JSON"}},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE(cases[i].text);
    Registry r;
    const std::string path = file("bad" + std::to_string(i) + ".json", cases[i].text);
    std::vector<std::string> mentions = cases[i].mentions;
    mentions.push_back(path);
    try {
      r.parse({"--config", path});
      ADD_FAILURE() << "accepted";
    } catch (const UsageError& e) {
      for (const auto& m : mentions)
        EXPECT_NE(std::string(e.what()).find(m), std::string::npos) << m << " not in: " << e.what();
    }
    EXPECT_EQ(r.f.count, 4) << "nothing is assigned when the file is refused";
  }
  Registry r;
  expect_throw<UsageError>(
      [&] {
        r.parse({"--config", (dir_ / "absent.json").string()});
      },
      {"absent.json", "cannot open"});
  expect_throw<UsageError>([&] { r.s.load_file((dir_ / "absent.json").string()); },
                           {"absent.json", "cannot open"});
  const std::string ok = file("ok.json", "{}");
  expect_throw<UsageError>(
      [&] {
        r.parse({"--config", ok, "--config=" + ok});
      },
      {"--config: given twice"});
}

TEST_F(TempDir, CommandLineFlagsOverrideTheConfigFileWhereverItAppears) {
  const std::string path = file("c.json", R"({"count": 2, "name": "b", "ratio": 0.75})");
  for (const auto& args :
       std::vector<std::vector<std::string>>{{"--config", path, "--count", "7"},
                                             {"--count", "7", "--config", path},
                                             {"--count=7", "--config=" + path}}) {
    Registry r;
    r.parse(args);
    EXPECT_EQ(r.f.count, 7);   // the flag
    EXPECT_EQ(r.f.name, "b");  // the file
    EXPECT_DOUBLE_EQ(r.f.ratio, 0.75);
    EXPECT_EQ(r.f.out, "runs/x");  // the default
  }
  // A bad flag is reported even though the file sets the same key correctly.
  Registry r;
  expect_throw<UsageError>([&] { r.parse({"--config", path, "--count", "x"}); }, {"--count"});
  EXPECT_EQ(r.f.name, "a");
}

TEST(SettingsJson, RoundTripInDeclarationOrderIncludingEmptyStrings) {
  Registry a;
  a.parse({"--flag", "--count", "9", "--big", "-5", "--seed", "18446744073709551615", "--ratio",
           "0.1", "--rate", "1e-300", "--name", "b", "--out", "o", "--dir=", "--algorithm",
           "quantsgp"});
  const nlohmann::ordered_json j = a.s.to_json();
  std::vector<std::string> keys;
  for (auto it = j.begin(); it != j.end(); ++it) keys.push_back(it.key());
  EXPECT_EQ(keys, a.s.keys());
  EXPECT_EQ(j["dir"], "");
  Registry b;
  b.f.dir = "not empty";
  b.s.load_json(j, "round trip");
  EXPECT_EQ(b.s.to_json(), j);
  EXPECT_EQ(b.f.dir, "");
  EXPECT_DOUBLE_EQ(b.f.rate, 1e-300);
  EXPECT_EQ(b.f.seed, std::numeric_limits<uint64_t>::max());
  // Through text, as a run's config.json is read back, and through nlohmann::json.
  Registry c;
  c.s.load_json(nlohmann::json::parse(j.dump()), "text");
  EXPECT_EQ(c.s.to_json(), j);
  expect_throw<UsageError>(
      [&] {
        c.s.load_json(nlohmann::json{{"out", ""}}, "SRC");
      },
      {"SRC: setting 'out'", "a directory"});
}

// ---- shared groups and spush-train's settings -------------------------------------------------

TEST(SettingsGroups, ScheduleParsing) {
  EXPECT_EQ(parse_schedule("epochs:1"), (std::pair<std::string, int64_t>{"epochs", 1}));
  EXPECT_EQ(parse_schedule("iterations:250"), (std::pair<std::string, int64_t>{"iterations", 250}));
  for (const char* bad : {"weekly", "epochs:", "epochs:0", "epochs:-1", "epochs:1x", "epochs: 1",
                          "rounds:5", ":5", "epochs:+1"})
    expect_throw<ConfigError>([&] { parse_schedule(bad); },
                              {"invalid setting schedule = '" + std::string(bad) + "'",
                               "expected epochs:N or iterations:N with N >= 1"});
}

struct Shared {
  int nodes = 4;
  std::string topology = "ring", schedule = "epochs:1";
  double failure_prob = 0;
  std::string algorithm = "sparsepush", compressor = "topk";
  double density = 0.01;
  int bits = 8;
  std::string index_codec = "local16";
  bool global = false;
  double eta = -1;
  int local_steps = 1, scsp_final_rounds = 40;
  uint64_t seed = 1;
  std::string device = "cpu", transport = "auto";
  double comm_timeout = 60;
  int threads = 0;
  Settings s{"shared"};
  Shared() {
    declare_graph(
        s,
        {.nodes = nodes, .topology = topology, .schedule = schedule, .failure_prob = failure_prob});
    declare_algorithm(s, {.algorithm = algorithm,
                          .compressor = compressor,
                          .density = density,
                          .bits = bits,
                          .index_codec = index_codec,
                          .global_compression = global,
                          .eta = eta,
                          .local_steps = local_steps,
                          .scsp_final_rounds = scsp_final_rounds});
    declare_execution(s, {.seed = seed,
                          .device = device,
                          .transport = transport,
                          .comm_timeout = comm_timeout,
                          .threads = threads});
  }
  void accept(const std::vector<std::string>& args) {
    SCOPED_TRACE(args.front() + " " + args.back());
    s.parse(args);
    EXPECT_NO_THROW(s.validate());
  }
  void refuse(const std::vector<std::string>& args, const std::string& needle) {
    Shared fresh;
    fresh.s.parse(args);
    expect_throw<ConfigError>([&] { fresh.s.validate(); }, {needle});
  }
};

TEST(SettingsGroups, AcceptWhatTheLibraryAccepts) {
  Shared g;
  EXPECT_NO_THROW(g.s.validate());
  for (const char* a : {"sgp", "dpsgd", "deepsqueeze", "sparsepush", "scsp", "choco", "quantsgp"})
    g.accept({"--algorithm", a});
  for (const char* c :
       {"topk", "randomk", "qsgd", "sign", "fractional", "minmax8", "identity", "none"})
    g.accept({"--compressor", c});
  for (const char* c : {"raw32", "local16", "block"}) g.accept({"--index-codec", c});
  g.refuse({"--algorithm", "dsgd"}, "algorithm = 'dsgd'");
  g.refuse({"--compressor", "zip"}, "compressor = 'zip'");
  g.refuse({"--index-codec", "raw16"}, "index-codec = 'raw16'");
}

TEST(SettingsGroups, Boundaries) {
  Shared g;
  g.accept({"--nodes", "1"});
  g.refuse({"--nodes", "0"}, "nodes = 0: expected an integer in [1, 65536]");
  g.accept({"--nodes", "65536"});
  g.refuse({"--nodes", "65537"}, "nodes = 65537: expected an integer in [1, 65536]");
  g.accept({"--failure-prob", "0"});
  g.refuse({"--failure-prob", "1"}, "failure-prob = 1: expected a value in [0, 1)");
  g.accept({"--density", "1"});
  g.refuse({"--density", "0"}, "density = 0: expected a value in (0, 1]");
  g.accept({"--bits", "9"});
  g.refuse({"--bits", "10"}, "bits = 10");
  g.accept({"--eta", "1"});
  g.accept({"--eta", "-1"});
  g.refuse({"--eta", "0"}, "eta = 0");
  g.refuse({"--local-steps", "0"}, "local-steps = 0");
  g.refuse({"--scsp-final-rounds", "-1"}, "scsp-final-rounds = -1");
  g.refuse({"--schedule", "iterations:0"}, "schedule = 'iterations:0'");
  for (const char* d : {"auto", "cpu", "cuda"}) g.accept({"--device", d});
  g.refuse({"--device", "gpu"}, "device = 'gpu': expected one of auto | cpu | cuda");
  for (const char* t : {"local", "mpi", "auto"}) g.accept({"--transport", t});
  g.refuse({"--transport", "tcp"}, "transport = 'tcp': expected one of local | mpi | auto");
  g.accept({"--comm-timeout", "0.001"});
  g.refuse({"--comm-timeout", "0"}, "comm-timeout = 0: expected a value in (0, 1000000]");
  g.accept({"--comm-timeout", "1000000"});
  g.refuse({"--comm-timeout", "1e7"}, "comm-timeout = 10000000: expected a value in (0, 1000000]");
  g.accept({"--threads", "0"});
  g.accept({"--threads", "1024"});
  g.refuse({"--threads", "1025"}, "threads = 1025: expected an integer in [0, 1024]");
  g.refuse({"--threads", "-1"}, "threads = -1");
  Shared fresh;
  expect_throw<UsageError>([&] { fresh.s.parse(std::vector<std::string>{"--comm-timeout=inf"}); },
                           {"--comm-timeout", "finite"});
}

TEST(TrainConfigSettings, DeclaredOnceWithTheConfigJsonKeys) {
  TrainConfig cfg;
  Settings s("spush-train");
  cfg.declare(s);
  // The keys of config.json before the registry, plus transport and comm-timeout.
  const std::vector<std::string> expected = {"nodes",
                                             "topology",
                                             "schedule",
                                             "failure-prob",
                                             "algorithm",
                                             "compressor",
                                             "density",
                                             "bits",
                                             "index-codec",
                                             "global-compression",
                                             "eta",
                                             "local-steps",
                                             "scsp-final-rounds",
                                             "scsp-final-with-updates",
                                             "fedavg-fraction",
                                             "gaia-threshold",
                                             "dgc-warmup-epochs",
                                             "dgc-clip",
                                             "add-drop-density",
                                             "dense-epochs",
                                             "skewscout",
                                             "skewscout-target",
                                             "skewscout-samples",
                                             "skewscout-grid",
                                             "model",
                                             "norm",
                                             "groups",
                                             "group-size",
                                             "shortcut",
                                             "precision",
                                             "int8-activations",
                                             "dataset",
                                             "data-dir",
                                             "partition",
                                             "skew",
                                             "alpha",
                                             "augment-pad",
                                             "augment-flip",
                                             "eval-samples",
                                             "epochs",
                                             "batch",
                                             "lr",
                                             "lr-schedule",
                                             "warmup-epochs",
                                             "momentum",
                                             "nesterov",
                                             "weight-decay",
                                             "qgm",
                                             "seed",
                                             "out",
                                             "resume",
                                             "overwrite",
                                             "device",
                                             "transport",
                                             "comm-timeout",
                                             "stop-after",
                                             "threads",
                                             "quiet"};
  std::vector<std::string> keys = s.keys(), want = expected;
  std::sort(keys.begin(), keys.end());
  std::sort(want.begin(), want.end());
  EXPECT_EQ(keys, want);
  const nlohmann::json j = cfg.to_json();
  EXPECT_EQ(j.size(), expected.size());
  EXPECT_EQ(j["transport"], "auto");
  EXPECT_EQ(j["comm-timeout"], 60.0);
  EXPECT_EQ(j["data-dir"], "");
  const nlohmann::json t = cfg.trajectory_json();
  for (const char* k : {"transport", "comm-timeout", "threads", "data-dir", "out", "device"})
    EXPECT_FALSE(t.contains(k)) << k;
  for (const char* k : {"nodes", "algorithm", "seed", "lr"}) EXPECT_TRUE(t.contains(k)) << k;
}

TEST(TrainConfigSettings, ConfigJsonIsAcceptedBack) {
  TrainConfig a;
  a.nodes = 8;
  a.transport = "local";
  a.comm_timeout = 2.5;
  a.data_dir = "";
  TrainConfig b;
  b.data_dir = "elsewhere";
  Settings s("spush-train");
  b.declare(s);
  s.load_json(nlohmann::json::parse(a.to_json().dump(2)), "config.json");
  EXPECT_EQ(b.to_json(), a.to_json());
  EXPECT_EQ(b.comm_timeout, 2.5);
  EXPECT_NO_THROW(b.validate());
}

TEST(TrainConfigSettings, ValidateKeepsItsMessagesAndCrossChecks) {
  TrainConfig c;
  EXPECT_NO_THROW(c.validate());
  auto refuse = [](TrainConfig x, const std::string& needle) {
    expect_throw<ConfigError>([&] { x.validate(); }, {needle});
  };
  TrainConfig x = c;
  x.density = 1.5;
  refuse(x, "invalid setting density = 1.5: expected a value in (0, 1]");
  x = c;
  x.out = "";
  refuse(x, "invalid setting out = '': expected a directory");
  x = c;
  x.schedule = "weekly";
  refuse(x, "invalid setting schedule = 'weekly'");
  x = c;
  x.warmup_epochs = x.epochs;
  refuse(x, "invalid setting warmup-epochs = 4: expected an integer in [0, epochs)");
  x = c;
  x.groups = 2;
  x.group_size = 4;
  refuse(x, "only one of groups and group-size");
  x = c;
  x.resume = x.overwrite = true;
  refuse(x, "not together with overwrite");
  x = c;
  x.comm_timeout = 0;
  refuse(x, "comm-timeout = 0");
  x = c;
  x.threads = 5000;
  refuse(x, "threads = 5000");
  x = c;
  x.algorithm = "dpsgd";
  EXPECT_NO_THROW(x.validate());
  EXPECT_EQ(c.schedule_period(), (std::pair<std::string, int64_t>{"epochs", 1}));
}

}  // namespace
}  // namespace spush::runtime
