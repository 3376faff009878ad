// An in-process communicator for tests: a world of R ranks run as R threads of one process
// (ThreadComm), messages between ranks through FIFO mailboxes, collectives through a
// rendezvous. It exercises the round logic that the mpi communicator shares without mpirun.
#pragma once
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "spush/runtime/communicator.h"

namespace spush::test {

using runtime::CommError;
using runtime::CommOptions;
using runtime::Communicator;
using runtime::MessageHeader;

// Mailboxes between the ranks of a ThreadComm world, and the slots of its collectives.
struct Hub {
  explicit Hub(int ranks) : ranks(ranks), slots(ranks) {}
  int ranks;
  std::mutex mu;
  std::condition_variable cv;
  // (from, to) -> FIFO of messages (header bytes + payload bytes).
  std::map<std::pair<int, int>, std::deque<std::vector<uint8_t>>> boxes;
  // Collectives: a generation-counted rendezvous.
  std::vector<std::vector<uint8_t>> slots;
  int arrived = 0;
  uint64_t generation = 0;
};

class ThreadComm final : public Communicator {
 public:
  ThreadComm(Hub& hub, int nodes, int rank)
      : Communicator(nodes, hub.ranks, rank, CommOptions{5}), hub_(hub) {}
  std::string name() const override { return "threads"; }
  bool accepts(kernels::MemoryKind m) const override { return m == kernels::MemoryKind::kHost; }
  void allgather_ranks(const void* mine, size_t bytes, void* all) override {
    std::unique_lock lock(hub_.mu);
    const auto* p = static_cast<const uint8_t*>(mine);
    hub_.slots[rank()].assign(p, p + bytes);
    const uint64_t gen = hub_.generation;
    if (++hub_.arrived == hub_.ranks) {
      hub_.arrived = 0;
      ++hub_.generation;
      hub_.cv.notify_all();
    } else {
      ASSERT_TRUE(hub_.cv.wait_for(lock, std::chrono::seconds(20),
                                   [&] { return hub_.generation != gen; }))
          << "collective timed out";
    }
    for (int r = 0; r < ranks(); ++r)
      std::memcpy(static_cast<uint8_t*>(all) + r * bytes, hub_.slots[r].data(), bytes);
    // Everyone must have read the slots before they are reused.
    const uint64_t gen2 = hub_.generation;
    if (++hub_.arrived == hub_.ranks) {
      hub_.arrived = 0;
      ++hub_.generation;
      hub_.cv.notify_all();
    } else {
      hub_.cv.wait(lock, [&] { return hub_.generation != gen2; });
    }
  }
  void broadcast(void* data, size_t bytes, int root) override {
    std::vector<uint8_t> all(bytes * static_cast<size_t>(ranks()));
    allgather_ranks(data, bytes, all.data());
    std::memcpy(data, all.data() + static_cast<size_t>(root) * bytes, bytes);
  }
  void barrier() override {
    char c = 0;
    std::vector<char> all(static_cast<size_t>(ranks()));
    allgather_ranks(&c, 1, all.data());
  }
  void abort(int) noexcept override {}

 protected:
  void post(std::vector<Remote>& sends, std::vector<Remote>& recvs) override {
    {
      std::lock_guard lock(hub_.mu);
      for (const Remote& s : sends) {
        std::vector<uint8_t> m(sizeof(MessageHeader) + s.payload_bytes);
        std::memcpy(m.data(), &s.header, sizeof(MessageHeader));
        if (s.payload_bytes) std::memcpy(m.data() + sizeof(MessageHeader), s.send, s.payload_bytes);
        hub_.boxes[{rank(), s.peer}].push_back(std::move(m));
      }
      hub_.cv.notify_all();
    }
    recvs_ = &recvs;
  }
  void wait_posted() override {
    std::unique_lock lock(hub_.mu);
    for (Remote& r : *recvs_) {
      auto& box = hub_.boxes[{r.peer, rank()}];
      if (!hub_.cv.wait_for(lock, std::chrono::seconds(20), [&] { return !box.empty(); }))
        throw CommError(describe_rank(r.peer) + " did not send");
      const std::vector<uint8_t> m = std::move(box.front());
      box.pop_front();
      std::memcpy(&r.header, m.data(), sizeof(MessageHeader));
      r.payload_bytes = m.size() - sizeof(MessageHeader);
      std::memcpy(r.recv, m.data() + sizeof(MessageHeader), r.payload_bytes);
    }
  }

 private:
  Hub& hub_;
  std::vector<Remote>* recvs_ = nullptr;
};

// Runs body(comm) on `ranks` threads, one ThreadComm each.
template <typename Body>
void on_ranks(int ranks, int nodes, Body body) {
  Hub hub(ranks);
  std::vector<std::thread> threads;
  for (int r = 0; r < ranks; ++r)
    threads.emplace_back([&, r] {
      ThreadComm comm(hub, nodes, r);
      body(comm);
    });
  for (auto& t : threads) t.join();
}

}  // namespace spush::test
