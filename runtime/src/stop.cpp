// SIGINT / SIGTERM handling for a graceful stop (stop.h): an async-signal-safe handler that
// records the signal in a lock-free atomic and restores the default action of both signals, so
// that a second one (of either kind) terminates the process immediately.
#include "spush/runtime/stop.h"

#include <signal.h>

#include <atomic>

namespace spush::runtime {
namespace {

std::atomic<int> g_stop{0};
static_assert(std::atomic<int>::is_always_lock_free, "the signal handler needs a lock-free flag");

extern "C" void on_stop_signal(int signal) {
  g_stop.store(signal, std::memory_order_relaxed);
  struct sigaction fallback {};  // sigaction is async-signal-safe
  fallback.sa_handler = SIG_DFL;
  sigemptyset(&fallback.sa_mask);
  sigaction(SIGINT, &fallback, nullptr);
  sigaction(SIGTERM, &fallback, nullptr);
}

}  // namespace

void install_stop_handlers() {
  // A file-size limit (ulimit -f) reached makes a write fail with EFBIG, which the writers report
  // naming the file, instead of killing the process in the middle of it.
  ::signal(SIGXFSZ, SIG_IGN);
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  sigaction(SIGINT, &action, nullptr);
  sigaction(SIGTERM, &action, nullptr);
}

int stop_requested() { return g_stop.load(std::memory_order_relaxed); }

void clear_stop_request() { g_stop.store(0, std::memory_order_relaxed); }

const char* signal_name(int signal) {
  switch (signal) {
    case SIGINT:
      return "SIGINT";
    case SIGTERM:
      return "SIGTERM";
    default:
      return "a signal";
  }
}

}  // namespace spush::runtime
