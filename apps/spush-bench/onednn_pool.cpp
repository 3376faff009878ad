// The oneDNN baseline of the maxpool cases (train_cases.cpp). Built with oneDNN when the
// project found it (bench/CMakeLists.txt); otherwise onednn_pool_available() is false and the
// case is not registered.
#include "onednn_pool.h"

#include <stdexcept>

#ifdef SPUSH_HAVE_DNNL
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace spush::bench {

#ifdef SPUSH_HAVE_DNNL

bool onednn_pool_available() { return true; }

struct OnednnMaxPool::Impl {
  dnnl::engine eng{dnnl::engine::kind::cpu, 0};
  dnnl::stream strm{eng};
  dnnl::memory::desc xd, yd;
  dnnl::pooling_forward::primitive_desc fpd;
  dnnl::pooling_backward::primitive_desc bpd;
  dnnl::pooling_forward fwd;
  dnnl::pooling_backward bwd;
  dnnl::memory ws;
};

OnednnMaxPool::OnednnMaxPool(int64_t n, int64_t c, int64_t h, int64_t w, int64_t k)
    : impl_(std::make_unique<Impl>()) {
  using dnnl::memory;
  Impl& d = *impl_;
  const memory::dims strides{k, k}, kernel{k, k}, pad{0, 0};
  d.xd = memory::desc({n, c, h, w}, memory::data_type::f32, memory::format_tag::nchw);
  d.yd = memory::desc({n, c, h / k, w / k}, memory::data_type::f32, memory::format_tag::nchw);
  d.fpd = dnnl::pooling_forward::primitive_desc(
      dnnl::pooling_forward::desc(dnnl::prop_kind::forward_training, dnnl::algorithm::pooling_max,
                                  d.xd, d.yd, strides, kernel, pad, pad),
      d.eng);
  d.bpd = dnnl::pooling_backward::primitive_desc(
      dnnl::pooling_backward::desc(dnnl::algorithm::pooling_max, d.xd, d.yd, strides, kernel, pad,
                                   pad),
      d.eng, d.fpd);
  d.fwd = dnnl::pooling_forward(d.fpd);
  d.bwd = dnnl::pooling_backward(d.bpd);
  d.ws = memory(d.fpd.workspace_desc(), d.eng);
}

OnednnMaxPool::~OnednnMaxPool() = default;

void OnednnMaxPool::forward(const float* x, float* y) {
  Impl& d = *impl_;
  dnnl::memory xm(d.xd, d.eng, const_cast<float*>(x)), ym(d.yd, d.eng, y);
  d.fwd.execute(d.strm, {{DNNL_ARG_SRC, xm}, {DNNL_ARG_DST, ym}, {DNNL_ARG_WORKSPACE, d.ws}});
  d.strm.wait();
}

void OnednnMaxPool::backward(const float* dy, float* dx) {
  Impl& d = *impl_;
  dnnl::memory dym(d.yd, d.eng, const_cast<float*>(dy)), dxm(d.xd, d.eng, dx);
  d.bwd.execute(d.strm,
                {{DNNL_ARG_DIFF_DST, dym}, {DNNL_ARG_DIFF_SRC, dxm}, {DNNL_ARG_WORKSPACE, d.ws}});
  d.strm.wait();
}

#else

bool onednn_pool_available() { return false; }
struct OnednnMaxPool::Impl {};
OnednnMaxPool::OnednnMaxPool(int64_t, int64_t, int64_t, int64_t, int64_t) {
  throw std::runtime_error("OnednnMaxPool: spush-bench was built without oneDNN");
}
OnednnMaxPool::~OnednnMaxPool() = default;
void OnednnMaxPool::forward(const float*, float*) {}
void OnednnMaxPool::backward(const float*, float*) {}

#endif

}  // namespace spush::bench
