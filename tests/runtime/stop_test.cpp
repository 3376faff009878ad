// The SIGINT / SIGTERM handler (runtime/src/stop.cpp): it records the signal, gives both
// signals back their default action, and runs on an alternate signal stack, so that a signal
// arriving while the interrupted code's stack pointer is near the bottom of a small stack writes
// nothing below that stack.
#include "spush/runtime/stop.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <ucontext.h>

#include <algorithm>
#include <cstddef>
#include <vector>

namespace spush::runtime {
namespace {

// The memory under the coroutine's stack, filled with a pattern that the signal must not touch.
constexpr std::size_t kBelow = 16384;
// Smaller than the kernel's signal frame (about 3.4 KiB with the AVX-512 state, over 1 KiB with
// SSE alone), so that a handler run on the interrupted stack would write below it.
constexpr std::size_t kStack = 1024;
constexpr unsigned char kPattern = 0xA5;

ucontext_t g_main, g_coroutine;

void raise_sigterm() { ::raise(SIGTERM); }

TEST(StopHandlers, FirstSignalSetsTheFlagAndRestoresTheDefaultAction) {
  install_stop_handlers();
  clear_stop_request();
  ASSERT_EQ(stop_requested(), 0);
  ASSERT_EQ(::raise(SIGINT), 0);
  EXPECT_EQ(stop_requested(), SIGINT);
  for (int sig : {SIGINT, SIGTERM}) {
    struct sigaction now {};
    ASSERT_EQ(::sigaction(sig, nullptr, &now), 0);
    EXPECT_EQ(now.sa_handler, SIG_DFL) << signal_name(sig);
  }
  clear_stop_request();
  install_stop_handlers();
  EXPECT_EQ(stop_requested(), 0);
  EXPECT_STREQ(signal_name(SIGTERM), "SIGTERM");
}

TEST(StopHandlers, SignalOnATinyStackWritesNothingBelowIt) {
  install_stop_handlers();
  clear_stop_request();
  // Bind raise() now: a first call through the PLT runs the dynamic linker's resolver, which
  // saves the vector registers on the stack and alone needs more than the coroutine has.
  ASSERT_EQ(::raise(0), 0);
  std::vector<unsigned char> memory(kBelow + kStack, kPattern);
  ASSERT_EQ(::getcontext(&g_coroutine), 0);
  g_coroutine.uc_stack.ss_sp = memory.data() + kBelow;
  g_coroutine.uc_stack.ss_size = kStack;
  g_coroutine.uc_link = &g_main;
  ::makecontext(&g_coroutine, raise_sigterm, 0);
  ASSERT_EQ(::swapcontext(&g_main, &g_coroutine), 0);
  EXPECT_EQ(stop_requested(), SIGTERM);
  clear_stop_request();
  install_stop_handlers();  // the handler gave SIGTERM back its default action
  const auto below = memory.begin() + kBelow;
  const auto touched =
      std::find_if(memory.begin(), below, [](unsigned char b) { return b != kPattern; });
  EXPECT_EQ(touched, below) << "the signal wrote " << (below - touched)
                            << " bytes below the interrupted stack";
}

}  // namespace
}  // namespace spush::runtime
