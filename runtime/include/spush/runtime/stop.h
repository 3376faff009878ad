// Graceful stop on SIGINT and SIGTERM: the first signal only sets a flag that the programs
// check between iterations (they finish the iteration, write a checkpoint where they write
// them, and exit with status 5); a second signal ends the process at once (the default action,
// restored by the first). Checkpoints and outputs are written atomically, so even that loses
// nothing already committed.
//
//   install_stop_handlers();
//   for (...) { ...; if (stop_requested()) break; }
#pragma once

namespace spush::runtime {

// Exit status of a run stopped by SIGINT or SIGTERM after saving its state.
inline constexpr int kExitStopped = 5;

// Installs the handlers for SIGINT and SIGTERM (idempotent), and ignores SIGXFSZ so that a
// write beyond a file-size limit fails with an error naming the file.
void install_stop_handlers();
// The signal that asked to stop (SIGINT or SIGTERM), or 0.
int stop_requested();
// Name of a signal number ("SIGTERM").
const char* signal_name(int signal);
// For tests: forget a request.
void clear_stop_request();

}  // namespace spush::runtime
