// spush-bench: times the spush kernels and their baselines with Google Benchmark (manual time:
// CUDA events around each GPU run, a steady clock for CPU runs), inputs rotated past the L2,
// and prints one row per case (median time, GB/s of the op's bytes floor, % of the D2D copy
// bandwidth measured in the same run, speed-up over the CUB / unfused / CPU baselines of the
// same shape), the targets of docs/BENCHMARKS.md, and a JSON report (--json FILE).
// Usage: spush-bench [--quick] [--max-log2n N] [--json FILE] [--benchmark_filter=REGEX] ...
// Its own flags go through the settings registry (runtime/settings.h); --benchmark_* flags are
// passed to Google Benchmark.
#include <benchmark/benchmark.h>
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <map>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "bench.h"
#include "spush/kernels/backend.h"
#include "spush/kernels/device.h"
#include "spush/runtime/json_out.h"
#include "spush/runtime/settings.h"

#ifdef SPUSH_HAVE_CUDA
#include <cuda_runtime.h>

#include "spush/kernels/cuda_check.cuh"
#endif

namespace spush::bench {
namespace {

struct Result {
  CaseInfo info;
  double median_us = 0, min_us = 0;
  std::string check = "-";
};

std::vector<Case> g_cases;
std::map<std::string, Result> g_results;
std::vector<std::string> g_order;
void* g_stream = nullptr;
std::unique_ptr<kernels::Backend> g_backend;  // the GPU cases' backend (with a GPU)

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n == 0 ? 0.0 : (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]));
}

// Runs one case: build, validate, warm up, then one timed run per benchmark iteration.
void run_case(benchmark::State& state, size_t index) {
  const Case& c = g_cases[index];
  std::unique_ptr<Instance> inst;
  std::string check;
  try {
    inst = c.make(g_stream);
    check = inst->check();
    for (int w = 0; w < 3; ++w) inst->run(w % inst->rotations());
#ifdef SPUSH_HAVE_CUDA
    if (c.info.gpu) CUDA_CHECK(cudaStreamSynchronize(static_cast<cudaStream_t>(g_stream)));
#endif
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());
    for (auto _ : state) {
    }
    return;
  }
  std::vector<double> times;
  int rot = 0;
#ifdef SPUSH_HAVE_CUDA
  cudaEvent_t start = nullptr, stop = nullptr;
  if (c.info.gpu) {
    CUDA_CHECK(cudaEventCreate(&start));
    CUDA_CHECK(cudaEventCreate(&stop));
  }
#endif
  for (auto _ : state) {
    double seconds = 0;
    if (c.info.gpu) {
#ifdef SPUSH_HAVE_CUDA
      const cudaStream_t s = static_cast<cudaStream_t>(g_stream);
      CUDA_CHECK(cudaEventRecord(start, s));
      inst->run(rot);
      CUDA_CHECK(cudaEventRecord(stop, s));
      CUDA_CHECK(cudaEventSynchronize(stop));
      float ms = 0;
      CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop));
      seconds = ms * 1e-3;
#endif
    } else {
      const auto t0 = std::chrono::steady_clock::now();
      inst->run(rot);
      seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    }
    state.SetIterationTime(seconds);
    times.push_back(seconds * 1e6);
    rot = (rot + 1) % inst->rotations();
  }
#ifdef SPUSH_HAVE_CUDA
  if (c.info.gpu) {
    CUDA_CHECK(cudaEventDestroy(start));
    CUDA_CHECK(cudaEventDestroy(stop));
  }
#endif
  Result r;
  r.info = c.info;
  r.median_us = median(times);
  r.min_us = times.empty() ? 0 : *std::min_element(times.begin(), times.end());
  r.check = check;
  state.counters["median_us"] = r.median_us;
  state.counters["GB/s"] = r.median_us > 0 ? c.info.bytes / (r.median_us * 1e3) : 0;
  const std::string name = c.info.name();
  if (!g_results.count(name)) g_order.push_back(name);
  g_results[name] = r;
}

struct Target {
  std::string what, name;
  double limit_us;        // > 0: time limit
  double floor_multiple;  // > 0: limit = multiple * bytes floor at the measured copy bandwidth
  std::string command;
};

std::vector<Target> targets() {
  const std::string n27 = std::to_string(int64_t{1} << 27);
  return {
      {"top-K 2^27, K = 1%", "topk/n=" + n27 + "/rows=1/K=1%/normal/spush", 450, 0,
       "spush-bench --benchmark_filter='^topk/n=" + n27 + "/rows=1/K=1%/normal/'"},
      {"top-K 269,722, K = 1%", "topk/n=269722/rows=1/K=1%/normal/spush", 20, 0,
       "spush-bench --benchmark_filter='^topk/n=269722/rows=1/K=1%/normal/'"},
      {"per-layer top-K, 16 nodes x ResNet-20, K = 1%",
       "topk_layers/n=269722/rows=16/K=1%/normal/spush", 60, 0,
       "spush-bench --benchmark_filter='^topk_layers/n=269722/rows=16/K=1%/normal/'"},
      {"error-feedback top-1%, 2^27", "ef_topk/n=" + n27 + "/rows=1/K=1%/normal/spush", 800, 0,
       "spush-bench --benchmark_filter='^ef_topk/n=" + n27 + "/'"},
      {"QSGD 8-bit, 2^27", "qsgd/n=" + n27 + "/rows=1/bits=8/normal/spush", 600, 0,
       "spush-bench --benchmark_filter='^qsgd/n=" + n27 + "/rows=1/bits=8/'"},
      {"gossip mixing, 16-node ring, sparse 1%", "mix_ring/n=269722/rows=16/K=1%/normal/spush", 0,
       2.0, "spush-bench --benchmark_filter='^(mix_ring/n=269722/|copy/)'"},
  };
}

double copy_gbps() {
  double best = 0;
  for (const auto& [name, r] : g_results)
    if (r.info.op == "copy" && r.median_us > 0)
      best = std::max(best, r.info.bytes / (r.median_us * 1e3));
  return best;
}

std::string fmt_or_dash(double v, const char* spec) {
  return v > 0 ? fmt::format(fmt::runtime(spec), v) : std::string("-");
}

nlohmann::json report(const std::string& header) {
  const double copy = copy_gbps();
  nlohmann::json j;
  j["device"] = header;
  j["copy_gbps"] = copy;
  j["rows"] = nlohmann::json::array();
  fmt::print("\n{}\n", header);
  fmt::print(
      "{:<14} {:>10} {:>5} {:>8} {:>10} {:>10} {:>10} {:>8} {:>6} {:>7} {:>7} {:>8} {:>7} {:>7}  "
      "{}\n",
      "op", "N", "rows", "K/bits", "dist", "impl", "median_us", "GB/s", "%copy", "GOP/s", "x_lib",
      "x_unfused", "x_cpu", "x_fp32", "check");
  for (const std::string& name : g_order) {
    const Result& r = g_results.at(name);
    const double gbps = r.median_us > 0 ? r.info.bytes / (r.median_us * 1e3) : 0;
    const double pct = r.info.gpu && copy > 0 ? 100.0 * gbps / copy : 0;
    auto speedup = [&](const char* impl) {
      auto it = g_results.find(r.info.key() + "/" + impl);
      if (it == g_results.end() || it->second.median_us <= 0 || r.info.impl == impl) return 0.0;
      return it->second.median_us / r.median_us;
    };
    // The rows the ratios are printed for: spush's kernels, and the 8-bit path (whose x_fp32 is
    // over the fp32 path of the same case, "spush").
    const bool int8 = r.info.impl == "int8";
    const bool main_impl = r.info.impl == "spush" || int8;
    // x_lib: over the library a user would call instead (CUB's sort on the GPU, gemmlowp,
    // oneDNN's pooling).
    const double xcub = main_impl ? speedup("cub_sort") : 0,
                 xlowp = main_impl ? speedup("gemmlowp") : 0,
                 xdnnl = main_impl ? speedup("onednn") : 0, xc = std::max({xcub, xlowp, xdnnl}),
                 xu = main_impl ? speedup("unfused") : 0,
                 xp = main_impl
                          ? std::max({speedup("cpu"), speedup("reference"), speedup("im2col")})
                          : 0,
                 xf = int8 ? speedup("spush") : (main_impl ? speedup("sgemm_fp32") : 0);
    const double gops = r.info.ops > 0 && r.median_us > 0 ? r.info.ops / (r.median_us * 1e3) : 0;
    fmt::print(
        "{:<14} {:>10} {:>5} {:>8} {:>10} {:>10} {:>10.1f} {:>8} {:>6} {:>7} {:>7} {:>8} {:>7} "
        "{:>7}  {}\n",
        r.info.op, r.info.n, r.info.rows, r.info.param, r.info.dist, r.info.impl, r.median_us,
        fmt_or_dash(gbps, "{:.1f}"), fmt_or_dash(pct, "{:.0f}"), fmt_or_dash(gops, "{:.1f}"),
        fmt_or_dash(xc, "{:.2f}"), fmt_or_dash(xu, "{:.2f}"), fmt_or_dash(xp, "{:.1f}"),
        fmt_or_dash(xf, "{:.2f}"), r.check);
    j["rows"].push_back({{"name", name},
                         {"key", r.info.key()},
                         {"op", r.info.op},
                         {"impl", r.info.impl},
                         {"n", r.info.n},
                         {"rows", r.info.rows},
                         {"param", r.info.param},
                         {"dist", r.info.dist},
                         {"gpu", r.info.gpu},
                         {"bytes", r.info.bytes},
                         {"median_us", r.median_us},
                         {"min_us", r.min_us},
                         {"gbps", gbps},
                         {"pct_copy", pct},
                         {"speedup_vs_cub_sort", xcub},
                         {"speedup_vs_gemmlowp", xlowp},
                         {"speedup_vs_onednn", xdnnl},
                         {"speedup_vs_unfused", xu},
                         {"speedup_vs_cpu", xp},
                         {"ops", r.info.ops},
                         {"gops", gops},
                         {"speedup_vs_fp32", xf},
                         {"check", r.check}});
  }
  fmt::print("\nTargets (docs/BENCHMARKS.md):\n");
  j["targets"] = nlohmann::json::array();
  for (const Target& t : targets()) {
    auto it = g_results.find(t.name);
    std::string status = "not measured (no GPU run of this case)";
    double measured = 0, limit = t.limit_us;
    if (it != g_results.end() && it->second.info.gpu) {
      measured = it->second.median_us;
      if (t.floor_multiple > 0)
        limit = copy > 0 ? t.floor_multiple * it->second.info.bytes / (copy * 1e3) : 0;
      status = limit > 0 ? (measured <= limit ? "met" : "missed") : "no copy bandwidth measured";
    }
    fmt::print("  {:<48} limit {:>9} us  measured {:>9} us  {}\n", t.what,
               fmt_or_dash(limit, "{:.1f}"), fmt_or_dash(measured, "{:.1f}"), status);
    j["targets"].push_back({{"what", t.what},
                            {"case", t.name},
                            {"limit_us", limit},
                            {"measured_us", measured},
                            {"status", status},
                            {"command", t.command}});
  }
  return j;
}

// This program's flags; the defaults are the fields' initial values.
void declare(spush::runtime::Settings& s, Options& opt, std::string& json_path) {
  s.add("quick", opt.quick, "fewer shapes (N <= 2^24, K = 1%, two distributions)");
  s.add("max-log2n", opt.max_log2n, "skip global shapes above 2^N").in_range(18, 30);
  s.add("json", json_path, "write the result rows and targets as JSON to this file (empty: off)")
      .allow_empty();
  s.pass_through("--benchmark_", "Google Benchmark flags, e.g. --benchmark_filter=REGEX");
}

}  // namespace

kernels::Backend& bench_backend() {
  if (!g_backend) throw std::logic_error("spush-bench: a GPU case without the cuda backend");
  return *g_backend;
}

}  // namespace spush::bench

int main(int argc, char** argv) {
  using namespace spush::bench;
  Options opt;
  std::string json_path;
  spush::runtime::Settings settings(
      "spush-bench", "Times the spush kernels and their baselines (docs/BENCHMARKS.md).");
  declare(settings, opt, json_path);
  std::vector<std::string> passed;
  try {
    const auto cl = settings.parse(argc, argv);
    if (cl.help) {
      fmt::print("{}", settings.help());
      return 0;
    }
    settings.validate();
    passed = cl.passed;
  } catch (const spush::runtime::UsageError& e) {
    fmt::print(stderr, "spush-bench: error: {}\n", e.what());
    return 2;
  } catch (const spush::runtime::ConfigError& e) {
    fmt::print(stderr, "spush-bench: error: {}\n", e.what());
    return 1;
  }
  std::vector<char*> rest{argv[0]};
  for (std::string& a : passed) rest.push_back(a.data());
  int rargc = static_cast<int>(rest.size());
  benchmark::Initialize(&rargc, rest.data());
  if (benchmark::ReportUnrecognizedArguments(rargc, rest.data())) return 2;

  opt.gpu = spush::kernels::cuda_available();
  std::string header;
  if (opt.gpu) {
    header = "spush-bench on " + gpu_description();
#ifdef SPUSH_HAVE_CUDA
    g_backend = spush::kernels::make_cuda_backend(0);
    g_stream = g_backend->stream();
#endif
  } else {
    opt.cpu_max_n = int64_t{1} << 20;
    header = std::string("spush-bench: no usable GPU") +
             (spush::kernels::cuda_compiled() ? "" : " (built without CUDA)") +
             ": CPU cases only, N <= 2^20; GPU rows and targets are not measured";
  }
  fmt::print("{}\n", header);
  g_cases = cpu_cases(opt);
  for (Case& c : gpu_cases(opt)) {
    if (opt.gpu) g_cases.push_back(std::move(c));
  }
  for (size_t i = 0; i < g_cases.size(); ++i) {
    benchmark::RegisterBenchmark(g_cases[i].info.name().c_str(),
                                 [i](benchmark::State& st) { run_case(st, i); })
        ->UseManualTime()
        ->Iterations(g_cases[i].info.iterations)
        ->Unit(benchmark::kMicrosecond);
  }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  // Release the cases and the cuda backend (its stream) while the CUDA runtime is up: g_backend
  // is a namespace-scope object, destroyed after the runtime's own exit-time teardown, when its
  // stream can no longer be synchronized or destroyed ("driver shutting down").
  g_cases.clear();
  g_stream = nullptr;
  g_backend.reset();
  const nlohmann::json j = report(header);
  if (!json_path.empty()) {
    try {
      spush::runtime::write_json_atomic(json_path, j);
    } catch (const std::exception& e) {
      fmt::print(stderr, "spush-bench: error: {}\n", e.what());
      return 1;
    }
    fmt::print("\nwrote {}\n", json_path);
  }
  return 0;
}
