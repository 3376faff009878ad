// Shared layer helpers: argument checks, OpenBLAS threading, initializer fills.
#include <cblas.h>

#include <mutex>
#include <random>

#include "layers_internal.h"

namespace spush::nets::detail {

void blas_single_thread() {
  static std::once_flag once;
  std::call_once(once, [] { openblas_set_num_threads(1); });
}

void check_input(const Layer& l, const Tensor& in, const NodeMatrix& params) {
  if (in.nodes <= 0 || in.batch <= 0)
    throw std::invalid_argument(who(l) + ": input " + in.shape_str() +
                                " must have at least one node and one sample");
  if (in.nodes != params.rows())
    throw std::invalid_argument(who(l) + ": input has " + std::to_string(in.nodes) +
                                " nodes but the parameter matrix has " +
                                std::to_string(params.rows()) + " rows");
  if (static_cast<int64_t>(in.data.size()) != in.numel())
    throw std::invalid_argument(who(l) + ": input data size does not match its shape " +
                                in.shape_str());
  l.output_shape(in.shape3());  // throws when the shape does not fit
}

void check_declared(const Layer& l, int64_t offset, const NodeMatrix& params) {
  if (offset < 0) throw std::logic_error(who(l) + ": used before declare()");
  if (offset + l.num_params() > params.cols())
    throw std::invalid_argument(who(l) + ": parameter matrix has " + std::to_string(params.cols()) +
                                " columns, the layer needs " +
                                std::to_string(offset + l.num_params()));
}

void check_backward(const Layer& l, const Tensor& in, const Tensor& out, const Tensor& dout,
                    const NodeMatrix& params, const NodeMatrix& dparams) {
  if (!out.same_shape(dout))
    throw std::invalid_argument(who(l) + ": dout " + dout.shape_str() +
                                " does not match the forward output " + out.shape_str());
  if (in.nodes != out.nodes || in.batch != out.batch ||
      !(l.output_shape(in.shape3()) == out.shape3()))
    throw std::invalid_argument(who(l) + ": input " + in.shape_str() +
                                " does not produce the forward output " + out.shape_str());
  if (dparams.rows() != params.rows() || dparams.cols() != params.cols())
    throw std::invalid_argument(who(l) + ": gradient matrix is " + std::to_string(dparams.rows()) +
                                "x" + std::to_string(dparams.cols()) + ", parameters are " +
                                std::to_string(params.rows()) + "x" +
                                std::to_string(params.cols()));
}

void fill_normal(float* x, int64_t n, float std, std::mt19937_64& rng) {
  std::normal_distribution<float> dist(0.0f, std);
  for (int64_t i = 0; i < n; ++i) x[i] = dist(rng);
}

void fill_uniform(float* x, int64_t n, float bound, std::mt19937_64& rng) {
  std::uniform_real_distribution<float> dist(-bound, bound);
  for (int64_t i = 0; i < n; ++i) x[i] = dist(rng);
}

}  // namespace spush::nets::detail
