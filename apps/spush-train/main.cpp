// spush-train: decentralized training of a network over a simulated graph of nodes.
// Every setting is a flag and a key of an optional JSON config file (--config FILE); flags
// given on the command line override the file. See docs/TRAINING.md.
// Exit status: 0 done, 1 error (invalid setting, data, checkpoint, output), 2 malformed command
// line or config file, 3 training diverged, 4 a rank was lost (mpirun), 5 stopped by SIGINT or
// SIGTERM after writing a checkpoint (continue with --resume). Under mpirun every rank runs this
// program; rank 0 prints and writes (docs/DISTRIBUTED.md).
#include <fmt/format.h>
#include <unistd.h>

#include <iostream>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>

#include "spush/runtime/communicator.h"
#include "spush/runtime/settings.h"
#include "spush/runtime/stop.h"
#include "spush/runtime/trainer.h"

int main(int argc, char** argv) {
  spush::runtime::TrainConfig cfg;
  spush::runtime::Settings settings(
      "spush-train", "Decentralized training of a network over a simulated graph of nodes.");
  cfg.declare(settings);
  try {
    if (settings.parse(argc, argv).help) {
      std::cout << settings.help();
      return 0;
    }
  } catch (const spush::runtime::UsageError& e) {
    if (spush::runtime::launch_info().rank == 0)
      std::cerr << "spush-train: error: " << e.what() << "\n";
    return 2;
  }

  spush::runtime::install_stop_handlers();
  std::unique_ptr<spush::runtime::Communicator> comm;
  const bool root = spush::runtime::launch_info().rank == 0;
  try {
    cfg.validate();  // before the communicator, which needs a valid node count
    comm = spush::runtime::make_communicator(cfg.transport, cfg.nodes, {cfg.comm_timeout});
  } catch (const std::exception& e) {
    if (root) std::cerr << "spush-train: error: " << e.what() << "\n";
    return 1;
  }
  auto fail = [&](int code, const std::exception& e) {
    // One write(2) of the whole line: under mpirun several ranks report at once into the same
    // stream, and piecewise writes of an unbuffered std::cerr would interleave their lines.
    std::cerr.flush();
    const std::string line =
        fmt::format("spush-train: error: {}{}\n",
                    comm->ranks() > 1 ? fmt::format("rank {}: ", comm->rank()) : "", e.what());
    for (size_t done = 0; done < line.size();) {
      const ssize_t w = ::write(STDERR_FILENO, line.data() + done, line.size() - done);
      if (w <= 0) break;
      done += static_cast<size_t>(w);
    }
    if (comm->ranks() > 1) comm->abort(code);  // the others must not wait for this rank
    return code;
  };
  std::unique_ptr<spush::runtime::Trainer> trainer;
  try {
    trainer = std::make_unique<spush::runtime::Trainer>(cfg, *comm, std::cout, std::cerr);
  } catch (const spush::runtime::CommError& e) {
    return fail(4, e);
  } catch (const std::bad_alloc&) {
    return fail(1, std::runtime_error(fmt::format(
                       "out of memory while setting up {} nodes of model {}; use fewer nodes per "
                       "process",
                       cfg.nodes, cfg.model)));
  } catch (const std::exception& e) {
    // Every rank failed the same agreed step: rank 0 reports it, all exit without an abort.
    if (comm->rank() == 0) std::cerr << "spush-train: error: " << e.what() << "\n";
    return 1;
  }
  try {
    const auto summary = trainer->run();
    return summary.value("stopped", false) ? spush::runtime::kExitStopped : 0;
  } catch (const spush::runtime::DivergenceError& e) {
    return fail(3, e);
  } catch (const spush::runtime::CommError& e) {
    return fail(4, e);
  } catch (const std::bad_alloc&) {
    return fail(1, std::runtime_error(fmt::format(
                       "out of memory while training {} nodes of model {} with batch {} per node; "
                       "use fewer nodes or a smaller batch per process (or more processes)",
                       cfg.nodes, cfg.model, cfg.batch)));
  } catch (const std::exception& e) {
    return fail(1, e);
  }
}
