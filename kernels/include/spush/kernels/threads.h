// OpenMP thread-count scoping for code that runs one task per thread.
#pragma once
#include <omp.h>

namespace spush::kernels {

// Limits the calling thread's OpenMP parallel regions (and oneDNN, which sizes its primitives'
// work split and reductions by omp_get_max_threads()) to one thread while in scope, when `on`;
// restores the caller's setting. The setting is per thread, so tasks of an enclosing parallel
// loop each run their kernels on their own thread.
class OneThread {
 public:
  explicit OneThread(bool on = true) : saved_(on ? omp_get_max_threads() : 1) {
    if (saved_ != 1) omp_set_num_threads(1);
  }
  ~OneThread() {
    if (saved_ != 1) omp_set_num_threads(saved_);
  }
  OneThread(const OneThread&) = delete;
  OneThread& operator=(const OneThread&) = delete;

 private:
  int saved_;
};

}  // namespace spush::kernels
