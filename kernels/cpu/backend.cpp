// The parts of backend.h shared by every backend: the workspace pool, the error word, the
// factory by name, and (in builds without CUDA) the cuda factory that says so.
#include "spush/kernels/backend.h"

#include <stdexcept>
#include <string>

namespace spush::kernels {

std::string BackendErrors::describe() const {
  std::string what;
  if (compressor == kErrorNonFinite)
    what = "a node's model holds NaN or +-inf (or a quantizer's norm overflowed fp32)";
  else if (compressor != 0)
    what = "the compressor's segment tables are inconsistent";
  else if (messages != 0)
    what = "a malformed message or mixing table was detected";
  else
    return "no error";
  if (!detail.empty()) what += " (" + detail + ")";
  return what;
}

Backend::~Backend() = default;

void Backend::release_owned() noexcept {
  if (pool_) deallocate(pool_);
  if (errors_) deallocate(errors_);
  pool_ = nullptr;
  errors_ = nullptr;
  pool_bytes_ = 0;
}

void Backend::reserve_workspace(size_t bytes) {
  if (bytes <= pool_bytes_ && pool_) return;
  synchronize();  // the old pool may still be in use by queued work
  void* p = allocate(bytes);
  if (pool_) deallocate(pool_);
  pool_ = p;
  pool_bytes_ = bytes;
}

int* Backend::error_word() {
  if (!errors_) {
    errors_ = static_cast<int*>(allocate(2 * sizeof(int)));
    fill_bytes(errors_, 0, 2 * sizeof(int));
  }
  return errors_;
}

BackendErrors Backend::take_errors() {
  BackendErrors e;
  int w[2] = {0, 0};
  download(w, error_word(), sizeof(w));  // waits for the stream
  e.compressor = w[0];
  e.messages = w[1];
  if (e.any()) {
    fill_bytes(errors_, 0, sizeof(w));
    e.detail = std::move(detail_);
    detail_.clear();
  }
  return e;
}

void Backend::note_error(const std::string& detail) {
  if (detail_.empty()) detail_ = detail;
}

void array_overflow(const char* what, size_t n, size_t capacity) {
  throw std::logic_error("Array::" + std::string(what) + ": " + std::to_string(n) +
                         " elements into an array of " + std::to_string(capacity));
}

std::unique_ptr<Backend> make_backend(std::string_view name) {
  if (name == "cpu") return make_cpu_backend();
  if (name == "cuda") return make_cuda_backend(0);
  if (name == "auto") return cuda_available() ? make_cuda_backend(0) : make_cpu_backend();
  throw std::invalid_argument("unknown backend '" + std::string(name) +
                              "': expected cpu, cuda or auto");
}

#ifndef SPUSH_HAVE_CUDA
std::unique_ptr<Backend> make_cuda_backend(int) {
  throw std::runtime_error(
      "the cuda backend is not available: this build of spush has no CUDA support (rebuild with "
      "-DSPUSH_ENABLE_CUDA=ON and a CUDA compiler), use the cpu backend");
}
#endif

}  // namespace spush::kernels
