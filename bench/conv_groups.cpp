// Nodes as convolution groups against one convolution per node (oneDNN, fp32, CPU).
//
// The question behind the layers' design (docs/BUILDING.md, "CPU convolutions"): should the
// convolutions of N local nodes run as one grouped primitive (G = N groups, batch B) instead of
// one primitive per node on its own thread, as nets/src/layers_conv.cpp does? This times both,
// primitive execution only (operands already in the blocked layouts oneDNN picks, so the
// node-major to sample-major permute a grouped primitive would also need is not counted), for
// ResNet-20's three 3x3 stage shapes, 4 nodes x batch 32, forward, backward-data and
// backward-weights, and prints the medians of 11 runs and the ratio (and writes them as JSON to
// the file named by the first argument, if any).
//
// Build and run (Debian's libdnnl-dev and nlohmann-json3-dev):
//   g++ -O2 -fopenmp -std=c++17 bench/conv_groups.cpp -ldnnl -o /tmp/conv_groups
//   OMP_NUM_THREADS=2 /tmp/conv_groups conv_groups.json
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <oneapi/dnnl/dnnl.hpp>
#include <vector>

using namespace dnnl;
using tag = memory::format_tag;
using dt = memory::data_type;

namespace {

// One 3x3, padding-1, stride-1 convolution over B samples of G groups of C channels (G = 1:
// an ordinary convolution), its three primitives and operands, built on the calling thread's
// OpenMP setting (oneDNN sizes its work split by it).
struct Conv {
  engine eng{engine::kind::cpu, 0};
  convolution_forward::primitive_desc f;
  convolution_backward_data::primitive_desc bd;
  convolution_backward_weights::primitive_desc bw;
  memory src, wei, dst, dsrc, dwei, ddst;
  convolution_forward fp;
  convolution_backward_data bdp;
  convolution_backward_weights bwp;

  Conv(int b, int g, int c, int h) {
    memory::desc s({b, g * c, h, h}, dt::f32, tag::any), d({b, g * c, h, h}, dt::f32, tag::any);
    memory::desc w(g == 1 ? memory::dims{c, c, 3, 3} : memory::dims{g, c, c, 3, 3}, dt::f32,
                   tag::any);
    const memory::dims st{1, 1}, p{1, 1};
    f = convolution_forward::primitive_desc(
        {prop_kind::forward_training, algorithm::convolution_direct, s, w, d, st, p, p}, eng);
    bd = convolution_backward_data::primitive_desc(
        {algorithm::convolution_direct, s, w, d, st, p, p}, eng, f);
    bw = convolution_backward_weights::primitive_desc(
        {algorithm::convolution_direct, s, w, d, st, p, p}, eng, f);
    src = memory(f.src_desc(), eng);
    wei = memory(f.weights_desc(), eng);
    dst = memory(f.dst_desc(), eng);
    dsrc = memory(bd.diff_src_desc(), eng);
    ddst = memory(bw.diff_dst_desc(), eng);
    dwei = memory(bw.diff_weights_desc(), eng);
    fp = convolution_forward(f);
    bdp = convolution_backward_data(bd);
    bwp = convolution_backward_weights(bw);
    for (memory* m : {&src, &wei, &dst, &dsrc, &ddst, &dwei}) {
      float* x = static_cast<float*>(m->get_data_handle());
      const size_t n = m->get_desc().get_size() / sizeof(float);
      for (size_t i = 0; i < n; ++i) x[i] = static_cast<float>(i % 7) * 0.1f - 0.3f;
    }
  }
  void run(int op) {
    stream s(eng);
    if (op == 0) fp.execute(s, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DST, dst}});
    if (op == 1)
      bdp.execute(s,
                  {{DNNL_ARG_DIFF_DST, ddst}, {DNNL_ARG_WEIGHTS, wei}, {DNNL_ARG_DIFF_SRC, dsrc}});
    if (op == 2)
      bwp.execute(s,
                  {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, ddst}, {DNNL_ARG_DIFF_WEIGHTS, dwei}});
    s.wait();
  }
};

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  const int nodes = 4, batch = 32, reps = 11;
  const int threads = omp_get_max_threads();
  nlohmann::json rows = nlohmann::json::array();
  struct Shape {
    int c, h;
  };
  const char* ops[] = {"forward", "backward-data", "backward-weights"};
  std::printf("%d nodes x batch %d, %d threads; medians of %d runs\n", nodes, batch, threads, reps);
  for (const Shape& sh : {Shape{16, 32}, Shape{32, 16}, Shape{64, 8}}) {
    Conv grouped(batch, nodes, sh.c, sh.h);
    std::vector<std::unique_ptr<Conv>> per;
    omp_set_num_threads(1);  // one thread per node's primitive, as the layers run them
    for (int n = 0; n < nodes; ++n) per.push_back(std::make_unique<Conv>(batch, 1, sh.c, sh.h));
    omp_set_num_threads(threads);
    for (int op = 0; op < 3; ++op) {
      std::vector<double> tg, tp;
      for (int r = 0; r < reps; ++r) {
        auto t0 = std::chrono::steady_clock::now();
        grouped.run(op);
        tg.push_back(ms_since(t0));
        t0 = std::chrono::steady_clock::now();
#pragma omp parallel for schedule(dynamic, 1)
        for (int n = 0; n < nodes; ++n) {
          const int saved = omp_get_max_threads();
          omp_set_num_threads(1);
          per[n]->run(op);
          omp_set_num_threads(saved);
        }
        tp.push_back(ms_since(t0));
      }
      std::sort(tg.begin(), tg.end());
      std::sort(tp.begin(), tp.end());
      const double g = tg[reps / 2], p = tp[reps / 2];
      const double ops2 = 2.0 * nodes * batch * sh.c * sh.c * 9.0 * sh.h * sh.h;
      std::printf(
          "%2dx%2dx%2d-%2d %-16s grouped %6.3f ms %4.0f GOP/s  per-node %6.3f ms %4.0f GOP/s"
          "  grouped / per-node time %.2f\n",
          sh.c, sh.h, sh.h, sh.c, ops[op], g, ops2 / g / 1e6, p, ops2 / p / 1e6, g / p);
      rows.push_back({{"channels", sh.c},
                      {"size", sh.h},
                      {"op", ops[op]},
                      {"grouped_ms", g},
                      {"per_node_ms", p},
                      {"grouped_gops", ops2 / g / 1e6},
                      {"per_node_gops", ops2 / p / 1e6},
                      {"grouped_over_per_node", g / p}});
    }
  }
  if (argc > 1) {
    std::ofstream out(argv[1]);
    out << nlohmann::json{{"nodes", nodes},
                          {"batch", batch},
                          {"threads", threads},
                          {"reps", reps},
                          {"rows", rows}}
               .dump(1)
        << "\n";
    if (!out.flush()) {
      std::fprintf(stderr, "conv_groups: cannot write %s\n", argv[1]);
      return 1;
    }
  }
}
