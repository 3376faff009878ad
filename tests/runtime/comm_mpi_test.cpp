// The mpi communicator (runtime/src/comm_mpi.cpp) under mpirun. Each CommMpi test re-launches
// this executable under mpirun with SPUSH_COMM_TEST_WORKER=<scenario>; the worker entry
// (CommMpiWorker.Run) runs the scenario on every rank, prints one line per rank, and fails
// (non-zero exit) when a check fails. Scenarios: gossip rounds against the local communicator,
// collectives against one rank, corrupted messages (a test-only MPI_Isend wrapper), a rank
// lost (SIGSTOP) in a round or a collective, and a slow rank that must not be taken for lost.
#include <fcntl.h>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "spush/runtime/communicator.h"
#include "spush/runtime/topology.h"

#ifdef SPUSH_HAVE_MPI
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace spush::runtime {
namespace {

using Clock = std::chrono::steady_clock;
constexpr const char* kWorkerEnv = "SPUSH_COMM_TEST_WORKER";

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// One line on stdout, whole (mpirun forwards the ranks' output line by line).
template <typename... Args>
void say(fmt::format_string<Args...> f, Args&&... args) {
  const std::string line = fmt::format(f, std::forward<Args>(args)...) + "\n";
  std::fwrite(line.data(), 1, line.size(), stdout);
  std::fflush(stdout);
}

// The first failed check of a rank, with what was expected.
struct Checks {
  std::string first;
  void fail(const std::string& what) {
    if (first.empty()) first = what;
  }
  void expect(bool ok, const std::function<std::string()>& what) {
    if (!ok) fail(what());
  }
  bool ok() const { return first.empty(); }
};

// ---- the parent: launching mpirun -------------------------------------------------------------

struct Launch {
  bool started = false;
  int exit_code = -1;  // -1: killed by a signal (see signal) or timed out
  int signal = 0;
  bool timed_out = false;
  double seconds = 0;
  std::string output;
  std::string describe() const {
    return fmt::format("mpirun {} after {:.1f} s; output:\n{}",
                       timed_out ? std::string("timed out")
                       : signal  ? fmt::format("killed by signal {}", signal)
                                 : fmt::format("exited with {}", exit_code),
                       seconds, output);
  }
};

std::string self_exe() {
  std::error_code ec;
  const auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  return ec ? std::string() : p.string();
}

bool mpirun_found() {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  size_t a = 0;
  while (a <= dirs.size()) {
    size_t b = dirs.find(':', a);
    if (b == std::string::npos) b = dirs.size();
    const std::string file = dirs.substr(a, b - a) + "/mpirun";
    if (b > a && ::access(file.c_str(), X_OK) == 0) return true;
    a = b + 1;
  }
  return false;
}

// Kills the worker processes that outlived mpirun (a stopped rank): every "worker pid N" line
// whose process still runs this executable.
void kill_leftovers(const std::string& output) {
  const std::string exe = self_exe();
  const std::string marker = "worker pid ";
  for (size_t at = output.find(marker); at != std::string::npos;
       at = output.find(marker, at + marker.size())) {
    const size_t digits = at + marker.size();
    const size_t end = output.find_first_not_of("0123456789", digits);
    if (end == digits) continue;
    const pid_t pid = static_cast<pid_t>(std::stol(output.substr(digits, end - digits)));
    std::error_code ec;
    const auto target = std::filesystem::read_symlink(fmt::format("/proc/{}/exe", pid), ec);
    if (!ec && target.string() == exe) ::kill(pid, SIGKILL);
  }
}

// Runs `mpirun -np <np> <this executable> --gtest_filter=CommMpiWorker.Run` with the scenario
// in the environment; kills it (and its process group) after limit_s.
Launch launch(const std::string& scenario, int np, double limit_s) {
  Launch result;
  std::vector<std::string> args = {"mpirun"};
  if (::geteuid() == 0) args.push_back("--allow-run-as-root");
  for (const char* a : {"--oversubscribe", "-np"}) args.push_back(a);
  args.push_back(std::to_string(np));
  args.push_back(self_exe());
  args.push_back("--gtest_filter=CommMpiWorker.Run");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return result;
  std::fflush(nullptr);
  ::setenv(kWorkerEnv, scenario.c_str(), 1);
  const auto t0 = Clock::now();
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::setpgid(0, 0);
    ::dup2(fds[1], 1);
    ::dup2(fds[1], 2);
    // In sanitizer builds: Open MPI keeps allocations past exit that LeakSanitizer reports
    // through frames of its unloaded plugins, which no suppression can name, so the ranks run
    // without the leak check (address and undefined-behaviour checks stay on). The round logic
    // the ranks share is leak-checked in process by communicator_test.cpp.
    ::setenv("ASAN_OPTIONS", "detect_leaks=0:abort_on_error=1", 1);
    ::execvp("mpirun", argv.data());
    ::_exit(127);
  }
  ::unsetenv(kWorkerEnv);
  ::close(fds[1]);
  if (pid < 0) {
    ::close(fds[0]);
    return result;
  }
  result.started = true;
  bool exited = false, eof = false;
  Clock::time_point exited_at{};
  int status = 0;
  // Until mpirun exits (or is killed at the limit) and its output ends; a leftover rank may
  // hold the pipe open after mpirun is gone, so that end waits one second at most.
  for (;;) {
    if (!eof) {
      pollfd p{fds[0], POLLIN, 0};
      if (::poll(&p, 1, 50) > 0) {
        char buf[4096];
        const ssize_t n = ::read(fds[0], buf, sizeof buf);
        if (n > 0) result.output.append(buf, static_cast<size_t>(n));
        if (n == 0 || (n < 0 && errno != EINTR)) eof = true;
      }
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!exited && ::waitpid(pid, &status, WNOHANG) == pid) {
      exited = true;
      exited_at = Clock::now();
      result.seconds = seconds_since(t0);
    }
    if (exited && (eof || seconds_since(exited_at) > 1.0)) break;
    if (!exited && seconds_since(t0) > limit_s) {
      result.timed_out = true;
      ::kill(-pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      exited = true;
      exited_at = Clock::now();
      result.seconds = seconds_since(t0);
    }
  }
  ::close(fds[0]);
  if (WIFEXITED(status) && !result.timed_out) result.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) result.signal = WTERMSIG(status);
  kill_leftovers(result.output);
  return result;
}

// Skips unless this build has MPI, mpirun is there, and this process is not itself a worker.
#define SKIP_WITHOUT_MPIRUN()                                             \
  do {                                                                    \
    if (!mpi_compiled()) GTEST_SKIP() << "this build has no MPI support"; \
    if (std::getenv(kWorkerEnv) || launch_info().launched)                \
      GTEST_SKIP() << "already running under mpirun";                     \
    if (!mpirun_found()) GTEST_SKIP() << "mpirun is not on the PATH";     \
    if (self_exe().empty()) GTEST_SKIP() << "cannot read /proc/self/exe"; \
  } while (0)

void expect_passed(const std::string& scenario, int np, double limit_s = 120) {
  const Launch l = launch(scenario, np, limit_s);
  ASSERT_TRUE(l.started) << "could not start mpirun";
  EXPECT_EQ(l.exit_code, 0) << scenario << " -np " << np << ": " << l.describe();
  for (int r = 0; r < np; ++r)
    EXPECT_NE(l.output.find(fmt::format("rank {}: {} passed", r, scenario)), std::string::npos)
        << scenario << " -np " << np << ": no pass line from rank " << r << "; " << l.describe();
}

// ---- the scenarios (run on every rank) --------------------------------------------------------

uint8_t payload_byte(int src, uint64_t round, size_t j) {
  return static_cast<uint8_t>(src * 37 + round * 11 + j * 3 + (j >> 8));
}

float u_of(int node, uint64_t round) {
  return 0.75f + 0.125f * static_cast<float>(node) + static_cast<float>(round % 5);
}

// One round over g with the mpi communicator and the local one; every local node's inbox must
// be what the local communicator delivers (order, weights, u, payload bytes).
void compare_round(Communicator& mpi, Communicator& local, const Graph& g, uint64_t round,
                   size_t payload, Checks& checks) {
  const int n = g.nodes(), first = mpi.first_local(), mine = mpi.local_nodes();
  const size_t pitch = payload + 24;
  std::vector<uint8_t> all(static_cast<size_t>(n) * pitch, 0xAB);
  std::vector<float> u(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    u[static_cast<size_t>(i)] = u_of(i, round);
    for (size_t j = 0; j < payload; ++j)
      all[static_cast<size_t>(i) * pitch + j] = payload_byte(i, round, j);
  }
  RoundMessages lm;
  lm.round = round;
  lm.kind = MessageKind::kModel;
  lm.codec = 0x21;
  lm.u = u.data();
  lm.send = all.data();
  lm.payload_bytes = payload;
  lm.pitch = pitch;
  const Inbox want = local.exchange(g, lm);

  std::vector<uint8_t> send(all.begin() + static_cast<ptrdiff_t>(first * pitch),
                            all.begin() + static_cast<ptrdiff_t>((first + mine) * pitch));
  const size_t rows = mpi.remote_in_edges(g);
  std::vector<uint8_t> recv(std::max<size_t>(rows, 1) * pitch, 0xEE);
  RoundMessages mm = lm;
  mm.u = u.data() + first;
  mm.send = send.data();
  mm.recv = recv.data();
  mm.recv_rows = rows;
  const Inbox& got = mpi.exchange(g, mm);

  const std::string where =
      fmt::format("graph {} ({} nodes), round {}, {} bytes", g.name(), n, round, payload);
  if (static_cast<int>(got.size()) != mine) {
    checks.fail(fmt::format("{}: {} inboxes, expected {}", where, got.size(), mine));
    return;
  }
  for (int i = 0; i < mine; ++i) {
    const auto& a = got[static_cast<size_t>(i)];
    const auto& b = want[static_cast<size_t>(first + i)];
    if (a.size() != b.size()) {
      checks.fail(fmt::format("{}: node {} got {} messages, the local communicator {}", where,
                              first + i, a.size(), b.size()));
      continue;
    }
    for (size_t k = 0; k < a.size(); ++k) {
      const Incoming &x = a[k], &y = b[k];
      if (x.src != y.src || x.dst != y.dst || x.weight != y.weight || x.u != y.u) {
        checks.fail(fmt::format(
            "{}: node {} message {}: (src {}, dst {}, weight {}, u {}), expected (src {}, dst {}, "
            "weight {}, u {})",
            where, first + i, k, x.src, x.dst, x.weight, x.u, y.src, y.dst, y.weight, y.u));
        continue;
      }
      const uint8_t* p = nullptr;
      if (x.row >= 0 && x.row < mine) {
        if (x.row != x.src - first)
          checks.fail(
              fmt::format("{}: node {} from local {} has row {}", where, first + i, x.src, x.row));
        p = send.data() + static_cast<size_t>(x.row) * pitch;
      } else if (x.row >= mine && static_cast<size_t>(x.row - mine) < rows) {
        p = recv.data() + static_cast<size_t>(x.row - mine) * pitch;
      } else {
        checks.fail(fmt::format("{}: node {} from {}: row {} outside [0, {})", where, first + i,
                                x.src, x.row, mine + static_cast<int64_t>(rows)));
        continue;
      }
      const uint8_t* q = all.data() + static_cast<size_t>(y.row) * pitch;
      if (payload && std::memcmp(p, q, payload) != 0)
        checks.fail(fmt::format("{}: node {} from {}: payload differs from the local one", where,
                                first + i, x.src));
    }
  }
}

std::vector<uint64_t> dense_bytes(const ByteCounter& c, int n) {
  std::vector<uint64_t> d(static_cast<size_t>(n) * static_cast<size_t>(n), 0);
  for (const auto& [edge, bytes] : c.edges())
    d[static_cast<size_t>(edge.first) * static_cast<size_t>(n) + static_cast<size_t>(edge.second)] =
        bytes;
  return d;
}

void scenario_rounds(Checks& checks) {
  uint64_t round = 1000;
  for (int n : {4, 5, 7}) {
    auto mpi = make_communicator("mpi", n, CommOptions{.timeout_seconds = 60});
    auto local = make_local_communicator(n);
    if (mpi->name() != "mpi" || mpi->world_nodes() != n)
      checks.fail(fmt::format("communicator {} with {} nodes", mpi->name(), mpi->world_nodes()));
    std::vector<Graph> graphs = {directed_ring(n), bidirectional_ring(n),
                                 make_schedule({.name = "torus", .nodes = n}).graphs().at(0),
                                 fully_connected(n)};
    if (n == 4)
      for (int r = 0; r < 2; ++r) graphs.push_back(exponential_graph(n, r));
    // Time-varying graphs: random link failures change the edges every round.
    const Schedule failing = make_schedule({.name = "full",
                                            .nodes = n,
                                            .period = 1,
                                            .unit = PeriodUnit::kIterations,
                                            .failure_prob = 0.5,
                                            .seed = 11});
    for (int it = 0; it < 4; ++it) graphs.push_back(failing.graph(it, 0));
    // Zero bytes, short (eager) and long (rendezvous) messages.
    const size_t sizes[] = {0, 1, 40, 1000, 100000};
    size_t s = 0;
    for (const Graph& g : graphs) {
      for (int rep = 0; rep < 2; ++rep, ++s)
        compare_round(*mpi, *local, g, round++, sizes[s % std::size(sizes)], checks);
    }
    // Bytes per edge, summed over the ranks (each counts the edges of its own senders).
    const std::vector<uint64_t> mine = dense_bytes(mpi->bytes(), n);
    std::vector<uint64_t> all(mine.size() * static_cast<size_t>(mpi->ranks()));
    mpi->allgather_ranks(mine.data(), mine.size() * sizeof(uint64_t), all.data());
    std::vector<uint64_t> sum(mine.size(), 0);
    for (size_t k = 0; k < all.size(); ++k) sum[k % mine.size()] += all[k];
    const std::vector<uint64_t> want = dense_bytes(local->bytes(), n);
    for (size_t k = 0; k < want.size(); ++k)
      checks.expect(sum[k] == want[k], [&] {
        return fmt::format(
            "{} nodes: edge {} -> {} counted {} bytes over the ranks, the local "
            "communicator {}",
            n, k / static_cast<size_t>(n), k % static_cast<size_t>(n), sum[k], want[k]);
      });
    for (int src = 0; src < n; ++src)
      for (int dst = 0; dst < n; ++dst)
        if (!mpi->is_local(src) && mpi->bytes().edge(src, dst) != 0)
          checks.fail(
              fmt::format("rank {} counted edge {} -> {} of another rank", mpi->rank(), src, dst));
  }
}

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

// Values whose sum depends on the order of the additions.
double awkward(int node, int k) {
  return (node % 2 ? 1e16 : 1.0) * (k + 1) - (node % 3 == 0 ? 1e16 : 0.0) + 0.1 * node + k / 7.0;
}

void scenario_collectives(Checks& checks) {
  for (int n : {4, 5, 7}) {
    auto mpi = make_communicator("mpi", n);
    auto local = make_local_communicator(n);
    const int first = mpi->first_local(), mine = mpi->local_nodes(), ranks = mpi->ranks();
    const std::string where = fmt::format("{} nodes", n);

    // allgather_nodes: 24 bytes per node.
    std::vector<uint8_t> rows(static_cast<size_t>(mine) * 24), want(static_cast<size_t>(n) * 24),
        got(want.size(), 0);
    for (size_t k = 0; k < want.size(); ++k) want[k] = static_cast<uint8_t>(k * 7 + 3);
    std::memcpy(rows.data(), want.data() + static_cast<size_t>(first) * 24, rows.size());
    mpi->allgather_nodes(rows.data(), 24, got.data());
    checks.expect(got == want, [&] { return where + ": allgather_nodes differs"; });

    // allreduce_sum: the same bits as one rank.
    constexpr int m = 6;
    std::vector<double> all_rows(static_cast<size_t>(n) * m);
    for (int i = 0; i < n; ++i)
      for (int k = 0; k < m; ++k) all_rows[static_cast<size_t>(i * m + k)] = awkward(i, k);
    std::vector<double> my_rows(all_rows.begin() + first * m,
                                all_rows.begin() + (first + mine) * m);
    local->allreduce_sum(all_rows.data(), m);
    mpi->allreduce_sum(my_rows.data(), m);
    for (int i = 0; i < mine; ++i)
      for (int k = 0; k < m; ++k)
        checks.expect(same_bits(my_rows[static_cast<size_t>(i * m + k)], all_rows[k]), [&] {
          return fmt::format("{}: allreduce_sum row {} [{}] = {:.17g}, one rank gives {:.17g}",
                             where, first + i, k, my_rows[static_cast<size_t>(i * m + k)],
                             all_rows[k]);
        });

    // sum_over_nodes.
    std::vector<double> values(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) values[static_cast<size_t>(i)] = awkward(i, 2) / 3;
    const double a = mpi->sum_over_nodes(values.data() + first);
    const double b = local->sum_over_nodes(values.data());
    checks.expect(same_bits(a, b), [&] {
      return fmt::format("{}: sum_over_nodes {:.17g}, one rank gives {:.17g}", where, a, b);
    });

    // sum_over_ranks, in rank order.
    auto per_rank = [](int r) { return (r % 2 ? 1e16 : 0.3) - (r == 2 ? 1e16 : 0.0) + r / 3.0; };
    double expected = 0;
    for (int r = 0; r < ranks; ++r) expected += per_rank(r);
    const double over = mpi->sum_over_ranks(per_rank(mpi->rank()));
    checks.expect(same_bits(over, expected), [&] {
      return fmt::format("{}: sum_over_ranks {:.17g}, expected {:.17g}", where, over, expected);
    });

    // allgather_ranks.
    const uint64_t tag = 0x1000u + static_cast<uint64_t>(mpi->rank());
    std::vector<uint64_t> tags(static_cast<size_t>(ranks), 0);
    mpi->allgather_ranks(&tag, sizeof tag, tags.data());
    for (int r = 0; r < ranks; ++r)
      checks.expect(tags[static_cast<size_t>(r)] == 0x1000u + static_cast<uint64_t>(r),
                    [&] { return fmt::format("{}: allgather_ranks [{}] wrong", where, r); });

    // broadcast from every root, small and large (and empty).
    for (int root = 0; root < ranks; ++root) {
      for (size_t size : {size_t{0}, size_t{100}, size_t{1} << 20}) {
        std::vector<uint8_t> data(size, 0), expect_data(size);
        for (size_t k = 0; k < size; ++k) expect_data[k] = static_cast<uint8_t>(root * 5 + k);
        if (mpi->rank() == root) data = expect_data;
        mpi->broadcast(data.data(), size, root);
        checks.expect(data == expect_data, [&] {
          return fmt::format("{}: broadcast of {} bytes from rank {} differs", where, size, root);
        });
      }
    }
    try {
      uint8_t x = 0;
      mpi->broadcast(&x, 1, ranks);
      checks.fail(where + ": broadcast from a root outside the ranks did not throw");
    } catch (const std::invalid_argument&) {
    }

    // agree: nobody failed, the last rank failed, everybody failed.
    const std::string none = mpi->agree("");
    checks.expect(none.empty(), [&] { return where + ": agree without errors gave " + none; });
    const int last = ranks - 1;
    const std::string one = mpi->agree(mpi->rank() == last ? "disk full" : "");
    checks.expect(one == fmt::format("rank {}: disk full", last),
                  [&] { return where + ": agree gave '" + one + "'"; });
    const std::string every = mpi->agree(fmt::format("bad {}", mpi->rank()));
    checks.expect(every == "rank 0: bad 0", [&] { return where + ": agree gave '" + every + "'"; });
    const std::string local_agree = local->agree("x");
    checks.expect(local_agree == "x", [&] { return "local agree gave " + local_agree; });

    mpi->barrier();
    mpi->poll();
  }
  // More ranks than nodes.
  const int ranks = launch_info().size;
  if (ranks > 1) {
    try {
      make_communicator("mpi", ranks - 1);
      checks.fail(fmt::format("{} nodes over {} ranks did not throw", ranks - 1, ranks));
    } catch (const std::invalid_argument& e) {
      checks.expect(std::string(e.what()).find("cannot be split") != std::string::npos,
                    [&] { return fmt::format("too few nodes: '{}'", e.what()); });
    }
  }
}

#ifdef SPUSH_HAVE_MPI
// A test-only corruption of one message, applied by the MPI_Isend wrapper below on the rank that
// sets it: the header of edge src -> dst (and the payload that follows it).
struct Corruption {
  bool on = false;
  std::string field;
  uint32_t src = 0, dst = 0;
  int stage = 0;  // 0: waiting for the header, 1: for its payload, 2: done
};
Corruption g_corrupt;
alignas(8) uint8_t g_header_copy[64];
std::vector<uint8_t> g_payload_copy;
#endif

struct BadCase {
  const char* field;
  std::function<std::string(uint64_t round, size_t payload)> phrase;  // what the error says
};

void scenario_bad_header(Checks& checks) {
#ifdef SPUSH_HAVE_MPI
  const int n = 6;
  auto mpi = make_communicator("mpi", n, CommOptions{.timeout_seconds = 30});
  if (mpi->ranks() != 3) {
    checks.fail(fmt::format("bad_header needs 3 ranks, got {}", mpi->ranks()));
    return;
  }
  auto local = make_local_communicator(n);
  const Graph g = bidirectional_ring(n);
  // Node 2 (rank 1) -> node 1 (rank 0).
  const uint32_t src = 2, dst = 1;
  const BadCase cases[] = {
      {"round",
       [](uint64_t r, size_t) { return fmt::format("header round is {}, expected {}", r + 1, r); }},
      {"kind", [](uint64_t, size_t) { return std::string("header kind is 3, expected 1"); }},
      {"codec", [](uint64_t, size_t) { return std::string("header codec is 32, expected 33"); }},
      {"length",
       [](uint64_t, size_t p) {
         return fmt::format("header payload length is {} bytes, expected {}", p + 8, p);
       }},
      {"payload-shorter",
       [](uint64_t, size_t p) {
         return fmt::format("{} payload bytes arrived, expected {}", p - 16, p);
       }},
      {"both-shorter",  // header and payload agree with each other, not with the round
       [](uint64_t, size_t p) {
         return fmt::format("header payload length is {} bytes, expected {}", p - 16, p);
       }},
      {"payload-longer",
       [](uint64_t, size_t p) {
         return fmt::format("payload longer than the expected {} bytes", p);
       }},
      {"header-longer",
       [](uint64_t, size_t) { return std::string("header longer than the expected 40 bytes"); }},
      {"header-shorter",
       [](uint64_t, size_t) { return std::string("header of 32 bytes, expected 40"); }},
      {"src", [](uint64_t,
                 size_t) { return std::string("header src is 4, expected the in-neighbour 2"); }},
      {"magic", [](uint64_t, size_t) { return std::string("bad magic"); }},
      {"weight", [](uint64_t, size_t) { return std::string("mixing weight"); }},
  };
  uint64_t round = 7;
  for (const BadCase& c : cases) {
    const size_t payload = 64 + round;
    const uint64_t bad_round = round++;
    if (mpi->rank() == 1) g_corrupt = Corruption{true, c.field, src, dst, 0};
    std::string error;
    Checks round_checks;
    try {
      compare_round(*mpi, *local, g, bad_round, payload, round_checks);
    } catch (const CommError& e) {
      error = e.what();
    }
    if (mpi->rank() == 1 && g_corrupt.stage != 2)
      checks.fail(
          fmt::format("{}: the wrapper did not see the message {} -> {}", c.field, src, dst));
    g_corrupt.on = false;
    if (mpi->rank() == 0) {
      const std::string want = fmt::format("message {} -> {} (round {}): {}", src, dst, bad_round,
                                           c.phrase(bad_round, payload));
      checks.expect(error.find(want) != std::string::npos, [&] {
        return fmt::format("{}: rank 0 got '{}', expected it to contain '{}'", c.field, error,
                           want);
      });
    } else {
      checks.expect(error.empty() && round_checks.ok(), [&] {
        return fmt::format("{}: rank {} failed: {}{}", c.field, mpi->rank(), error,
                           round_checks.first);
      });
    }
    // Every rank learns of it, and the communicator still works.
    const std::string agreed = mpi->agree(error);
    checks.expect(agreed.rfind("rank 0: message 2 -> 1", 0) == 0,
                  [&] { return fmt::format("{}: agree gave '{}'", c.field, agreed); });
    Checks clean;
    try {
      compare_round(*mpi, *local, g, round++, 100, clean);
    } catch (const std::exception& e) {
      clean.fail(e.what());
    }
    checks.expect(clean.ok(), [&] {
      return fmt::format("{}: the next round failed: {}", c.field, clean.first);
    });
  }
#else
  checks.fail("no MPI");
#endif
}

// Rank 2 stops (SIGSTOP) after a barrier; ranks 0 and 1, in rounds with it (or in collectives),
// must name it within the timeout, and end the job.
void scenario_lost(Checks& checks, bool collective) {
  const double timeout = 2;
  auto mpi = make_communicator("mpi", 6, CommOptions{.timeout_seconds = timeout});
  if (mpi->ranks() != 3) {
    checks.fail(fmt::format("lost needs 3 ranks, got {}", mpi->ranks()));
    return;
  }
  auto local = make_local_communicator(6);
  const Graph g = bidirectional_ring(6);
  mpi->barrier();
  if (mpi->rank() == 2) {
    std::fflush(nullptr);
    ::raise(SIGSTOP);
    checks.fail("rank 2 was continued after SIGSTOP");
    return;
  }
  const auto t0 = Clock::now();
  try {
    for (uint64_t r = 0; r < 100; ++r) {
      if (collective)
        mpi->sum_over_ranks(1.0);
      else
        compare_round(*mpi, *local, g, r, 256, checks);
    }
    checks.fail("100 steps with a stopped rank completed");
  } catch (const CommError& e) {
    const double dt = seconds_since(t0);
    say("rank {}: caught after {:.2f} s: {}", mpi->rank(), dt, e.what());
    checks.expect(std::string(e.what()).find("rank 2 (nodes 4..5) is lost") != std::string::npos,
                  [&] { return fmt::format("the error does not name rank 2: {}", e.what()); });
    checks.expect(dt < timeout + 1, [&] {
      return fmt::format("the error came after {:.2f} s, expected < {} s", dt, timeout + 1);
    });
  }
  // Later calls fail at once instead of waiting again.
  try {
    mpi->barrier();
    checks.fail("barrier after a lost rank did not throw");
  } catch (const CommError&) {
  }
  say("rank {}: {}", mpi->rank(), checks.ok() ? "lost passed" : "FAIL: " + checks.first);
  std::fflush(nullptr);
  mpi->abort(3);
}

// Rank 2 computes for 2.5 timeouts (calling poll()) while the others wait in a round and a
// barrier: slow, not lost.
void scenario_slow(Checks& checks) {
  const double timeout = 1;
  auto mpi = make_communicator("mpi", 3, CommOptions{.timeout_seconds = timeout});
  auto local = make_local_communicator(3);
  const Graph g = bidirectional_ring(3);
  auto busy = [&] {
    const auto t0 = Clock::now();
    while (seconds_since(t0) < 2.5 * timeout) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      mpi->poll();
    }
  };
  try {
    for (int step = 0; step < 2; ++step) {
      const auto t0 = Clock::now();
      if (mpi->rank() == mpi->ranks() - 1) busy();
      if (step == 0)
        compare_round(*mpi, *local, g, 5, 300, checks);
      else
        mpi->barrier();
      const double dt = seconds_since(t0);
      checks.expect(dt > 2 * timeout, [&] {
        return fmt::format("step {} took {:.2f} s, expected the slow rank's {} s", step, dt,
                           2.5 * timeout);
      });
    }
  } catch (const std::exception& e) {
    checks.fail(fmt::format("a slow rank was taken for a lost one: {}", e.what()));
  }
}

// ---- the worker entry --------------------------------------------------------------------------

TEST(CommMpiWorker, Run) {
  const char* scenario = std::getenv(kWorkerEnv);
  if (!scenario) GTEST_SKIP() << "the CommMpi tests run this under mpirun";
  say("rank {}: worker pid {}", launch_info().rank, ::getpid());
  const std::string name = scenario;
  Checks checks;
  try {
    if (name == "rounds") {
      scenario_rounds(checks);
    } else if (name == "collectives") {
      scenario_collectives(checks);
    } else if (name == "bad_header") {
      scenario_bad_header(checks);
    } else if (name == "lost") {
      scenario_lost(checks, false);  // ends the job with abort()
    } else if (name == "lost_in_collective") {
      scenario_lost(checks, true);
    } else if (name == "slow") {
      scenario_slow(checks);
    } else {
      checks.fail("unknown scenario " + name);
    }
  } catch (const std::exception& e) {
    checks.fail(fmt::format("exception: {}", e.what()));
  }
  // Every rank learns whether any failed, so that all exit the same way.
  auto control = make_communicator("mpi", launch_info().size);
  const std::string failure = control->agree(checks.first);
  const int rank = control->rank();
  if (checks.ok())
    say("rank {}: {} passed", rank, name);
  else
    say("rank {}: FAIL: {}", rank, checks.first);
  EXPECT_TRUE(failure.empty()) << failure;
}

// ---- the tests --------------------------------------------------------------------------------

TEST(CommMpi, WithoutMpiTheFactoryNamesTheMissingSupport) {
  if (mpi_compiled()) GTEST_SKIP() << "this build has MPI";
  try {
    make_communicator("mpi", 4);
    FAIL() << "make_communicator(\"mpi\") did not throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("no MPI support"), std::string::npos) << e.what();
  }
}

TEST(CommMpi, RoundsMatchTheLocalCommunicator) {
  SKIP_WITHOUT_MPIRUN();
  for (int np : {2, 3, 4}) expect_passed("rounds", np);
}

TEST(CommMpi, CollectivesMatchOneRank) {
  SKIP_WITHOUT_MPIRUN();
  for (int np : {2, 3}) expect_passed("collectives", np);
}

TEST(CommMpi, BadMessagesNameTheEdge) {
  SKIP_WITHOUT_MPIRUN();
  expect_passed("bad_header", 3);
}

TEST(CommMpi, SlowRankIsNotLost) {
  SKIP_WITHOUT_MPIRUN();
  expect_passed("slow", 3);
}

// The job must end (non-zero) soon after the timeout, both survivors naming the stopped rank.
void expect_lost_reported(const std::string& scenario) {
  const Launch l = launch(scenario, 3, 60);
  ASSERT_TRUE(l.started) << "could not start mpirun";
  EXPECT_FALSE(l.timed_out) << l.describe();
  EXPECT_NE(l.exit_code, 0) << l.describe();
  EXPECT_LT(l.seconds, 10) << l.describe();
  for (int r = 0; r < 2; ++r) {
    EXPECT_NE(l.output.find(fmt::format("rank {}: caught after", r)), std::string::npos)
        << "rank " << r << " did not report the lost rank; " << l.describe();
    EXPECT_NE(l.output.find(fmt::format("rank {}: lost passed", r)), std::string::npos)
        << l.describe();
  }
  EXPECT_EQ(l.output.find("FAIL"), std::string::npos) << l.describe();
}

TEST(CommMpi, LostRankIsNamedWithinTheTimeout) {
  SKIP_WITHOUT_MPIRUN();
  expect_lost_reported("lost");
}

TEST(CommMpi, LostRankIsNamedInCollectives) {
  SKIP_WITHOUT_MPIRUN();
  expect_lost_reported("lost_in_collective");
}

}  // namespace
}  // namespace spush::runtime

#ifdef SPUSH_HAVE_MPI
// Test-only profiling wrapper (the MPI profiling interface: this definition takes the place of
// the library's, which stays reachable as PMPI_Isend): corrupts the one message g_corrupt names.
extern "C" int MPI_Isend(const void* buf, int count, MPI_Datatype type, int dest, int tag,
                         MPI_Comm comm, MPI_Request* request) {
  using spush::runtime::g_corrupt;
  using spush::runtime::MessageHeader;
  if (g_corrupt.on && type == MPI_BYTE) {
    if (g_corrupt.stage == 0 && count == static_cast<int>(sizeof(MessageHeader))) {
      MessageHeader h;
      std::memcpy(&h, buf, sizeof h);
      if (h.magic == MessageHeader::kMagic && h.src == g_corrupt.src && h.dst == g_corrupt.dst) {
        g_corrupt.stage = 1;
        const std::string& f = g_corrupt.field;
        int n = count;
        if (f == "round") h.round += 1;
        if (f == "kind") h.kind = 3;
        if (f == "codec") h.codec ^= 1;
        if (f == "length") h.payload_bytes += 8;
        if (f == "both-shorter") h.payload_bytes -= 16;
        if (f == "src") h.src = 4;
        if (f == "magic") h.magic ^= 0x100;
        if (f == "weight") h.weight = std::numeric_limits<float>::quiet_NaN();
        if (f == "header-longer") n += 8;
        if (f == "header-shorter") n -= 8;
        std::memset(spush::runtime::g_header_copy, 0, sizeof spush::runtime::g_header_copy);
        std::memcpy(spush::runtime::g_header_copy, &h, sizeof h);
        return PMPI_Isend(spush::runtime::g_header_copy, n, type, dest, tag, comm, request);
      }
    } else if (g_corrupt.stage == 1) {
      // The payload of the same message follows its header (Communicator::post's order).
      g_corrupt.stage = 2;
      auto& copy = spush::runtime::g_payload_copy;
      int n = count;
      if (g_corrupt.field == "payload-longer") n += 16;
      if (g_corrupt.field == "payload-shorter" || g_corrupt.field == "both-shorter") n -= 16;
      copy.assign(static_cast<size_t>(std::max(n, count)) + 1, 0x5A);
      std::memcpy(copy.data(), buf, static_cast<size_t>(count));
      return PMPI_Isend(copy.data(), n, type, dest, tag, comm, request);
    }
  }
  return PMPI_Isend(buf, count, type, dest, tag, comm, request);
}
#endif
