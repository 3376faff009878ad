// SIGINT / SIGTERM handling for a graceful stop (stop.h): an async-signal-safe handler, run on an
// alternate signal stack, that records the signal in a lock-free atomic and restores the default
// action of both signals, so that a second one (of either kind) terminates the process
// immediately.
#include "spush/runtime/stop.h"

#include <signal.h>

#include <atomic>

namespace spush::runtime {
namespace {

std::atomic<int> g_stop{0};
static_assert(std::atomic<int>::is_always_lock_free, "the signal handler needs a lock-free flag");

// The default action of both signals, filled in before the handler is installed, so that the
// handler keeps no local of its own.
struct sigaction g_default_action {};

// The alternate signal stack of the thread that installs the handlers (when it has none yet:
// the sanitizers set their own). The handler runs there (SA_ONSTACK), so neither it nor the
// kernel's signal frame (several KiB with the AVX-512 state) lands below whatever stack pointer
// the interrupted code had. In the AddressSanitizer build of the MPI stop test
// (tests/apps/mpi_test.cpp), about one run in 25 interrupted a rank while its stack pointer
// was about 2 KiB inside a heap block, and the handler's own frame was reported as a
// heap-buffer-overflow.
alignas(64) char g_signal_stack[1 << 16];

extern "C" void on_stop_signal(int signal) {
  g_stop.store(signal, std::memory_order_relaxed);
  sigaction(SIGINT, &g_default_action, nullptr);  // sigaction is async-signal-safe
  sigaction(SIGTERM, &g_default_action, nullptr);
}

}  // namespace

void install_stop_handlers() {
  // A file-size limit (ulimit -f) reached makes a write fail with EFBIG, which the writers report
  // naming the file, instead of killing the process in the middle of it.
  ::signal(SIGXFSZ, SIG_IGN);
  stack_t current{};
  if (sigaltstack(nullptr, &current) == 0 && (current.ss_flags & SS_DISABLE) != 0) {
    stack_t ours{};
    ours.ss_sp = g_signal_stack;
    ours.ss_size = sizeof g_signal_stack;
    sigaltstack(&ours, nullptr);
  }
  g_default_action.sa_handler = SIG_DFL;
  sigemptyset(&g_default_action.sa_mask);
  struct sigaction action {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART | SA_ONSTACK;
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
