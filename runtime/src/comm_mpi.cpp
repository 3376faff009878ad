// The `mpi` communicator (communicator.h): one process per rank, started by mpirun. Messages
// between ranks are non-blocking MPI point-to-point messages (the 40-byte header, then the
// payload), the rank collectives non-blocking MPI collectives, and every wait a polling loop
// bounded by the timeout, serviced by a small liveness protocol (PING / PONG / LOST on a control
// tag) so that a rank that died or stopped answering is named in a CommError instead of hanging
// the job.
#include <fmt/format.h>

#include <stdexcept>

#include "spush/runtime/communicator.h"

#ifdef SPUSH_HAVE_MPI
// The C API only: no MPI C++ bindings (removed from the standard, and not in MPI::MPI_C).
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>
#include <list>
#include <optional>
#include <thread>
#include <utility>
#endif

namespace spush::runtime {

std::unique_ptr<Communicator> make_mpi_communicator(int world_nodes, const CommOptions& options);

#ifdef SPUSH_HAVE_MPI

namespace {

// Distinct tags, never MPI_ANY_TAG for data: headers and payloads each match in posting order
// per (source, tag), which both ends list identically (Communicator::post).
constexpr int kTagHeader = 5301;
constexpr int kTagPayload = 5302;
constexpr int kTagControl = 5303;

// Control messages: two int32 {type, rank}.
enum ControlType : int32_t { kPing = 1, kPong = 2, kLost = 3 };

using Clock = std::chrono::steady_clock;
// A waiting rank spins this long, then naps between tests: on an oversubscribed machine the
// ranks that wait must leave the cores to the ranks that compute.
constexpr auto kSpin = std::chrono::microseconds(20);
constexpr auto kNap = std::chrono::microseconds(120);
// How long abort() keeps answering and delivering LOST notices before MPI_Abort.
constexpr auto kAbortGrace = std::chrono::milliseconds(1500);

// Process-wide MPI state: whether this code initialized MPI (and registered the finalization),
// and what rules finalization out at exit.
bool g_initialized_here = false;
bool g_aborting = false;  // abort() was called: MPI_Abort ends the job
// A wait was abandoned (a lost rank, a failed post): MPI_Finalize could wait forever for the
// requests left pending, so the process exits without it and mpirun ends the job.
bool g_abandoned = false;

std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) return fmt::format("MPI error {}", code);
  return std::string(text, static_cast<size_t>(std::max(len, 0)));
}

void mpi_check(int code, const char* function) {
  if (code != MPI_SUCCESS)
    throw CommError(fmt::format("mpi communicator: {} failed: {}", function, mpi_error_text(code)));
}
// SPUSH_MPI_CHECK(MPI_Irecv, buf, ...): the call, with a CommError naming it when it fails.
#define SPUSH_MPI_CHECK(function, ...) mpi_check(function(__VA_ARGS__), #function)

void finalize_at_exit() {
  if (g_aborting || g_abandoned) return;
  int finalized = 0;
  if (MPI_Finalized(&finalized) != MPI_SUCCESS || finalized) return;
  MPI_Finalize();  // at exit, a failure has no one left to report to
}

void ensure_mpi_initialized() {
  int finalized = 0, initialized = 0;
  SPUSH_MPI_CHECK(MPI_Finalized, &finalized);
  if (finalized)
    throw CommError(
        "mpi communicator: MPI was already finalized in this process; create the "
        "communicator before MPI_Finalize");
  SPUSH_MPI_CHECK(MPI_Initialized, &initialized);
  if (initialized) return;
  // Only the main thread calls MPI (OpenMP threads never do).
  int provided = 0;
  SPUSH_MPI_CHECK(MPI_Init_thread, nullptr, nullptr, MPI_THREAD_FUNNELED, &provided);
  if (!g_initialized_here) {
    g_initialized_here = true;
    std::atexit(finalize_at_exit);
  }
}

// A duplicate of MPI_COMM_WORLD, freed unless a communicator took it over.
struct WorldCopy {
  MPI_Comm comm = MPI_COMM_NULL;
  int ranks = 1, rank = 0;
  WorldCopy() = default;
  WorldCopy(WorldCopy&& o) noexcept : comm(o.comm), ranks(o.ranks), rank(o.rank) {
    o.comm = MPI_COMM_NULL;
  }
  WorldCopy& operator=(WorldCopy&&) = delete;
  ~WorldCopy() {
    if (comm != MPI_COMM_NULL) MPI_Comm_free(&comm);  // only on an error path: best effort
  }
};

WorldCopy copy_world() {
  ensure_mpi_initialized();
  WorldCopy w;
  SPUSH_MPI_CHECK(MPI_Comm_dup, MPI_COMM_WORLD, &w.comm);
  // Errors come back as codes (turned into CommError) instead of aborting the job.
  SPUSH_MPI_CHECK(MPI_Comm_set_errhandler, w.comm, MPI_ERRORS_RETURN);
  SPUSH_MPI_CHECK(MPI_Comm_size, w.comm, &w.ranks);
  SPUSH_MPI_CHECK(MPI_Comm_rank, w.comm, &w.rank);
  return w;
}

// MPI counts are int: larger buffers would need derived datatypes.
int mpi_count(size_t bytes, const char* what) {
  if (bytes > static_cast<size_t>(INT_MAX))
    throw std::invalid_argument(
        fmt::format("mpi communicator: {} of {} bytes exceeds MPI's largest count ({} bytes)", what,
                    bytes, INT_MAX));
  return static_cast<int>(bytes);
}

class MpiCommunicator final : public Communicator {
 public:
  MpiCommunicator(int world_nodes, const CommOptions& options)
      : MpiCommunicator(world_nodes, options, copy_world()) {}
  ~MpiCommunicator() override;

  std::string name() const override { return "mpi"; }
  bool accepts(kernels::MemoryKind memory) const override {
    return memory == kernels::MemoryKind::kHost;
  }
  void allgather_ranks(const void* mine, size_t bytes, void* all) override;
  void broadcast(void* data, size_t bytes, int root) override;
  void barrier() override;
  void poll() override;
  void abort(int exit_code) noexcept override;

 protected:
  void post(std::vector<Remote>& sends, std::vector<Remote>& recvs) override;
  void wait_posted() override;

 private:
  MpiCommunicator(int world_nodes, const CommOptions& options, WorldCopy world)
      : Communicator(world_nodes, world.ranks, world.rank, options),
        comm_(std::exchange(world.comm, MPI_COMM_NULL)),
        answered_(static_cast<size_t>(world.ranks), 0) {}

  // One posted message of the round in progress: requests_[k] belongs to ops_[k].
  enum class OpKind { kSendHeader, kSendPayload, kRecvHeader, kRecvPayload };
  struct Op {
    OpKind kind;
    Remote* remote;
  };
  struct ControlSend {
    std::array<int32_t, 2> message{};
    MPI_Request request = MPI_REQUEST_NULL;
  };

  // Records the first failure that leaves requests pending (a lost rank): every later call
  // throws it, and the process exits without MPI_Finalize.
  void abandon(const std::string& why) {
    g_abandoned = true;
    if (broken_.empty()) broken_ = why;
  }
  // Throws the failure abandon() recorded.
  void require_usable() const;
  // Best effort: a notice that cannot be posted is dropped (its target is then silent).
  void send_control(int peer, int32_t type, int32_t rank);
  // Answers PINGs, records PONGs, completes finished control sends; with `report`, throws
  // CommError for a LOST notice (abort() passes false and keeps going).
  void service_control(bool report = true);
  // Completes every request of `requests` (polling, servicing control messages), calling
  // done(k, status) as request k completes (status.MPI_ERROR set). After half the timeout it
  // pings every rank; half a timeout later, the ranks of owing() (those we still wait for) that
  // did not answer are lost: CommError "<ranks> lost ... while waiting <context(lost)>". When
  // every rank answered, the wait goes on (slow, not lost).
  void wait_bounded(std::vector<MPI_Request>& requests,
                    const std::function<void(size_t, const MPI_Status&)>& done,
                    const std::function<std::vector<int>()>& owing,
                    const std::function<std::string(const std::vector<int>&)>& context);
  [[noreturn]] void declare_lost(const std::vector<int>& lost, const std::string& context);
  // One collective request, bounded like a round; every other rank may owe its part.
  void wait_collective(MPI_Request request, const std::string& what);
  std::string round_text() const;
  std::string edge_text(const Remote& r) const;

  MPI_Comm comm_ = MPI_COMM_NULL;
  std::vector<MPI_Request> requests_;
  std::vector<Op> ops_;
  // The round in progress while a round's messages are posted (none in collectives).
  std::optional<uint64_t> round_;
  std::vector<char> answered_;            // per rank: a PONG since our last PING
  std::list<ControlSend> control_sends_;  // a list: MPI holds the buffers' addresses
  std::string broken_;                    // why requests were left pending ("" while usable)
};

// Best effort, without checks: a destructor cannot report the MPI errors.
MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  if (MPI_Finalized(&finalized) != MPI_SUCCESS || finalized) return;
  // Pending receives would write into the caller's matrices after they are freed.
  for (size_t k = 0; k < requests_.size(); ++k) {
    if (requests_[k] == MPI_REQUEST_NULL) continue;
    const OpKind kind = ops_[k].kind;
    if (kind == OpKind::kRecvHeader || kind == OpKind::kRecvPayload) MPI_Cancel(&requests_[k]);
    MPI_Request_free(&requests_[k]);
  }
  for (ControlSend& c : control_sends_)
    if (c.request != MPI_REQUEST_NULL) MPI_Request_free(&c.request);
  // A collective left pending by a lost rank never completes: keep its communicator.
  if (broken_.empty() && comm_ != MPI_COMM_NULL) MPI_Comm_free(&comm_);
}

void MpiCommunicator::require_usable() const {
  if (!broken_.empty())
    throw CommError(fmt::format("mpi communicator unusable after an earlier failure: {}", broken_));
}

std::string MpiCommunicator::round_text() const {
  return round_ ? fmt::format("round {}", *round_) : std::string("round unknown");
}

std::string MpiCommunicator::edge_text(const Remote& r) const {
  return fmt::format("message {} -> {} ({})", r.src, r.dst, round_text());
}

void MpiCommunicator::send_control(int peer, int32_t type, int32_t rank) {
  ControlSend& c = control_sends_.emplace_back();
  c.message = {type, rank};
  if (MPI_Isend(c.message.data(), 2, MPI_INT32_T, peer, kTagControl, comm_, &c.request) !=
      MPI_SUCCESS)
    control_sends_.pop_back();
}

void MpiCommunicator::service_control(bool report) {
  std::optional<std::pair<int, int>> lost;  // (lost rank, reporting rank)
  for (;;) {
    int flag = 0;
    MPI_Status status;
    SPUSH_MPI_CHECK(MPI_Iprobe, MPI_ANY_SOURCE, kTagControl, comm_, &flag, &status);
    if (!flag) break;
    std::array<int32_t, 2> message{};
    const int from = status.MPI_SOURCE;
    SPUSH_MPI_CHECK(MPI_Recv, message.data(), 2, MPI_INT32_T, from, kTagControl, comm_,
                    MPI_STATUS_IGNORE);
    if (message[0] == kPing) {
      send_control(from, kPong, rank());
    } else if (message[0] == kPong) {
      answered_[static_cast<size_t>(from)] = 1;
    } else if (message[0] == kLost && message[1] >= 0 && message[1] < ranks() && !lost) {
      lost.emplace(message[1], from);
    }
  }
  for (auto it = control_sends_.begin(); it != control_sends_.end();) {
    int done = 0;
    // A control send that fails is dropped like one that completed: best effort.
    if (MPI_Test(&it->request, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS || done)
      it = control_sends_.erase(it);
    else
      ++it;
  }
  if (lost && report && broken_.empty()) {
    abandon(
        fmt::format("{} is lost (reported by rank {})", describe_rank(lost->first), lost->second));
    throw CommError(broken_);
  }
}

void MpiCommunicator::poll() { service_control(); }

void MpiCommunicator::declare_lost(const std::vector<int>& lost, const std::string& context) {
  for (int r = 0; r < ranks(); ++r) {
    if (r == rank() || std::find(lost.begin(), lost.end(), r) != lost.end()) continue;
    for (int x : lost) send_control(r, kLost, x);
  }
  std::string who;
  for (size_t k = 0; k < lost.size(); ++k)
    who += (k == 0 ? "" : k + 1 == lost.size() ? " and " : ", ") + describe_rank(lost[k]);
  const std::string what =
      fmt::format("{} {} lost: no message and no answer for {:g} s while waiting {}", who,
                  lost.size() == 1 ? "is" : "are", options().timeout_seconds, context);
  abandon(what);
  throw CommError(what);
}

void MpiCommunicator::wait_bounded(
    std::vector<MPI_Request>& requests, const std::function<void(size_t, const MPI_Status&)>& done,
    const std::function<std::vector<int>()>& owing,
    const std::function<std::string(const std::vector<int>&)>& context) {
  const auto half = std::chrono::duration_cast<Clock::duration>(
      std::chrono::duration<double>(options().timeout_seconds / 2));
  // Each request is reported once, even if MPI were to keep a failed one active.
  std::vector<char> finished(requests.size());
  size_t pending = 0;
  for (size_t k = 0; k < requests.size(); ++k) {
    finished[k] = requests[k] == MPI_REQUEST_NULL;
    pending += !finished[k];
  }
  std::vector<int> indices(requests.size());
  std::vector<MPI_Status> statuses(requests.size());
  auto phase_start = Clock::now();
  const auto spin_until = phase_start + kSpin;
  bool pinged = false;
  Clock::time_point ping_time{};
  while (pending > 0) {
    service_control();
    int count = 0;
    const int rc = MPI_Testsome(static_cast<int>(requests.size()), requests.data(), &count,
                                indices.data(), statuses.data());
    if (rc != MPI_SUCCESS && rc != MPI_ERR_IN_STATUS)
      throw CommError(fmt::format("mpi communicator: MPI_Testsome failed while waiting {}: {}",
                                  context({}), mpi_error_text(rc)));
    if (count != MPI_UNDEFINED) {
      for (int i = 0; i < count; ++i) {
        const auto k = static_cast<size_t>(indices[static_cast<size_t>(i)]);
        if (finished[k]) continue;
        finished[k] = 1;
        --pending;
        MPI_Status& status = statuses[static_cast<size_t>(i)];
        // MPI sets the error fields only when it reports MPI_ERR_IN_STATUS.
        if (rc == MPI_SUCCESS) status.MPI_ERROR = MPI_SUCCESS;
        done(k, status);
      }
    } else {
      pending = 0;
    }
    if (pending == 0) break;
    const auto now = Clock::now();
    if (!pinged && now - phase_start >= half) {
      std::fill(answered_.begin(), answered_.end(), 0);
      for (int r = 0; r < ranks(); ++r)
        if (r != rank()) send_control(r, kPing, rank());
      pinged = true;
      ping_time = now;
    } else if (pinged && now - ping_time >= half) {
      // Half a timeout of silence after half a timeout of waiting: the ranks we still wait
      // for that did not answer either are gone; if they all answered, they are only slow.
      std::vector<int> lost;
      for (int r : owing())
        if (r != rank() && !answered_[static_cast<size_t>(r)]) lost.push_back(r);
      if (!lost.empty()) declare_lost(lost, context(lost));
      phase_start = now;
      pinged = false;
    }
    if (now >= spin_until) std::this_thread::sleep_for(kNap);
  }
}

void MpiCommunicator::post(std::vector<Remote>& sends, std::vector<Remote>& recvs) {
  require_usable();
  for (const auto* list : {&sends, &recvs})
    for (const Remote& m : *list) mpi_count(m.payload_bytes, "payload");
  round_ = round_in_progress();
  requests_.assign(2 * (sends.size() + recvs.size()), MPI_REQUEST_NULL);
  ops_.clear();
  ops_.reserve(requests_.size());
  auto next = [&](OpKind kind, Remote& r) {
    ops_.push_back({kind, &r});
    return &requests_[ops_.size() - 1];
  };
  try {
    for (Remote& r : recvs) {
      SPUSH_MPI_CHECK(MPI_Irecv, &r.header, static_cast<int>(sizeof(MessageHeader)), MPI_BYTE,
                      r.peer, kTagHeader, comm_, next(OpKind::kRecvHeader, r));
      SPUSH_MPI_CHECK(MPI_Irecv, r.recv, static_cast<int>(r.payload_bytes), MPI_BYTE, r.peer,
                      kTagPayload, comm_, next(OpKind::kRecvPayload, r));
    }
    for (Remote& s : sends) {
      SPUSH_MPI_CHECK(MPI_Isend, &s.header, static_cast<int>(sizeof(MessageHeader)), MPI_BYTE,
                      s.peer, kTagHeader, comm_, next(OpKind::kSendHeader, s));
      SPUSH_MPI_CHECK(MPI_Isend, s.send, static_cast<int>(s.payload_bytes), MPI_BYTE, s.peer,
                      kTagPayload, comm_, next(OpKind::kSendPayload, s));
    }
  } catch (const CommError& e) {
    abandon(fmt::format("posting {} failed: {}", round_text(), e.what()));
    throw;
  }
}

void MpiCommunicator::wait_posted() {
  require_usable();
  std::string error;  // the first bad message; the others still complete
  auto done = [&](size_t k, const MPI_Status& status) {
    Remote& r = *ops_[k].remote;
    const OpKind kind = ops_[k].kind;
    const bool header = kind == OpKind::kSendHeader || kind == OpKind::kRecvHeader;
    const bool receive = kind == OpKind::kRecvHeader || kind == OpKind::kRecvPayload;
    if (status.MPI_ERROR != MPI_SUCCESS) {
      if (!error.empty()) return;
      int error_class = 0;
      if (MPI_Error_class(status.MPI_ERROR, &error_class) != MPI_SUCCESS) error_class = -1;
      if (receive && error_class == MPI_ERR_TRUNCATE) {
        error = fmt::format("{}: {} longer than the expected {} bytes", edge_text(r),
                            header ? "header" : "payload",
                            header ? sizeof(MessageHeader) : r.payload_bytes);
      } else {
        error = fmt::format("{}: {} the {} {} rank {} failed: {}", edge_text(r),
                            receive ? "receiving" : "sending", header ? "header" : "payload",
                            receive ? "from" : "to", r.peer, mpi_error_text(status.MPI_ERROR));
      }
      return;
    }
    if (!receive) return;
    int count = 0;
    if (MPI_Get_count(&status, MPI_BYTE, &count) != MPI_SUCCESS || count == MPI_UNDEFINED) {
      if (error.empty()) error = fmt::format("{}: MPI_Get_count failed", edge_text(r));
      return;
    }
    if (header) {
      if (count != static_cast<int>(sizeof(MessageHeader)) && error.empty())
        error = fmt::format("{}: header of {} bytes, expected {}", edge_text(r), count,
                            sizeof(MessageHeader));
    } else {
      // A shorter payload: the base class reports the length against the header's.
      r.payload_bytes = static_cast<size_t>(count);
    }
  };
  auto owing = [&] {
    std::vector<int> peers;
    for (size_t k = 0; k < requests_.size(); ++k)
      if (requests_[k] != MPI_REQUEST_NULL) peers.push_back(ops_[k].remote->peer);
    std::sort(peers.begin(), peers.end());
    peers.erase(std::unique(peers.begin(), peers.end()), peers.end());
    return peers;
  };
  auto context = [&](const std::vector<int>& lost) {
    std::string edges;
    for (int peer : lost) {
      for (size_t k = 0; k < requests_.size(); ++k) {
        const Remote& r = *ops_[k].remote;
        if (requests_[k] == MPI_REQUEST_NULL || r.peer != peer) continue;
        edges += fmt::format("{}message {} -> {}", edges.empty() ? "" : ", ", r.src, r.dst);
        break;
      }
    }
    return edges.empty() ? fmt::format("in {}", round_text())
                         : fmt::format("in {} (for {})", round_text(), edges);
  };
  try {
    wait_bounded(requests_, done, owing, context);
  } catch (const CommError& e) {
    abandon(e.what());
    throw;
  }
  requests_.clear();
  ops_.clear();
  if (!error.empty()) throw CommError(error);
}

void MpiCommunicator::wait_collective(MPI_Request request, const std::string& what) {
  std::vector<MPI_Request> requests{request};
  std::string error;
  auto done = [&](size_t, const MPI_Status& status) {
    if (status.MPI_ERROR != MPI_SUCCESS)
      error =
          fmt::format("mpi communicator: {} failed: {}", what, mpi_error_text(status.MPI_ERROR));
  };
  auto owing = [&] {
    std::vector<int> all;
    for (int r = 0; r < ranks(); ++r)
      if (r != rank()) all.push_back(r);
    return all;
  };
  try {
    wait_bounded(requests, done, owing, [&](const std::vector<int>&) { return "in " + what; });
  } catch (const std::exception& e) {
    abandon(e.what());  // a pending collective cannot be cancelled
    throw;
  }
  if (!error.empty()) throw CommError(error);
}

void MpiCommunicator::allgather_ranks(const void* mine, size_t bytes, void* all) {
  require_usable();
  const int count = mpi_count(bytes, "allgather_ranks block");
  MPI_Request request = MPI_REQUEST_NULL;
  SPUSH_MPI_CHECK(MPI_Iallgather, mine, count, MPI_BYTE, all, count, MPI_BYTE, comm_, &request);
  wait_collective(request, fmt::format("allgather_ranks ({} bytes per rank)", bytes));
}

void MpiCommunicator::broadcast(void* data, size_t bytes, int root) {
  require_usable();
  if (root < 0 || root >= ranks())
    throw std::invalid_argument(
        fmt::format("broadcast: root rank {} is outside [0, {})", root, ranks()));
  const int count = mpi_count(bytes, "broadcast");
  MPI_Request request = MPI_REQUEST_NULL;
  SPUSH_MPI_CHECK(MPI_Ibcast, data, count, MPI_BYTE, root, comm_, &request);
  wait_collective(request, fmt::format("broadcast from rank {} ({} bytes)", root, bytes));
}

void MpiCommunicator::barrier() {
  require_usable();
  MPI_Request request = MPI_REQUEST_NULL;
  SPUSH_MPI_CHECK(MPI_Ibarrier, comm_, &request);
  wait_collective(request, "barrier");
}

void MpiCommunicator::abort(int exit_code) noexcept {
  g_aborting = true;
  int finalized = 1;
  if (MPI_Finalized(&finalized) != MPI_SUCCESS || finalized) {
    std::fflush(nullptr);
    std::_Exit(exit_code);
  }
  // The LOST notices are small, but the other ranks only see them while they poll: give them a
  // moment to print their own error before MPI_Abort ends everything.
  const auto end = Clock::now() + (ranks() > 1 ? kAbortGrace : Clock::duration::zero());
  while (Clock::now() < end) {
    try {
      service_control(false);
    } catch (...) {
      break;  // MPI itself fails: nothing left to deliver
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  std::cout.flush();
  std::cerr.flush();
  std::fflush(nullptr);
  MPI_Abort(comm_, exit_code);
  std::_Exit(exit_code);  // MPI_Abort does not return; this only keeps the promise of noexcept
}

}  // namespace

std::unique_ptr<Communicator> make_mpi_communicator(int world_nodes, const CommOptions& options) {
  return std::make_unique<MpiCommunicator>(world_nodes, options);
}

bool mpi_compiled() { return true; }

#else  // !SPUSH_HAVE_MPI

std::unique_ptr<Communicator> make_mpi_communicator(int, const CommOptions&) {
  throw std::invalid_argument(
      "transport mpi: this build of spush has no MPI support (install libopenmpi-dev and "
      "rebuild)");
}

bool mpi_compiled() { return false; }

#endif  // SPUSH_HAVE_MPI

}  // namespace spush::runtime
