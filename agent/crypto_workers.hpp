// The AEAD of a batch of WireGuard packets on several cores (wg/crypto_job.hpp): the loop's
// thread and threads-1 workers take jobs from the batch until none is left, and run() returns
// when every job is done. The jobs' order does not matter here: the loop finishes them in the
// order it prepared them (data_plane.hpp), so counters, the replay window and delivery stay in
// order per peer, and only the loop touches protocol state.
//
//   loop:    run(jobs) ── publish ──► cursor = [run:32 | count:16 | next:16]
//            │                        wake ─► workers (futex: std::atomic::notify_all)
//            ├─ claims jobs (CAS on cursor), run_crypto each
//            └─ waits for done == count (futex: std::atomic::wait)
//   worker:  sleeps on wake; claims jobs of the current run until none is left; the last job
//            done wakes the loop; then stays awake for `spin` in case the next run follows (in
//            a bulk transfer it does, within tens of microseconds), yielding the core to any
//            ready thread between polls, and sleeps again
//
// No lock and no allocation per packet or per batch: the hand-off is the cursor (one atomic
// word holding which run, how many jobs and the next to claim), the completion a counter. A
// worker reads the job array only for a job it claimed, and the loop publishes the next run only
// after every job of this one is done, so no worker is ever inside an old run. Small batches
// (below parallel_min_bytes of crypto) run on the loop alone: waking a worker costs more.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <span>
#include <thread>
#include <vector>

#include "wg/crypto_job.hpp"

namespace knit::agent {

class CryptoWorkers {
 public:
  struct Options {
    unsigned threads = 1;                       // the loop's thread included; 1: no workers
    std::size_t parallel_min_bytes = 16 * 1024;  // smaller batches stay on the loop
    // How long a worker polls for the next run before it sleeps: a woken worker starts late
    // (a futex wake and a reschedule), and a batch it is late for runs on the loop alone.
    std::chrono::microseconds spin{50};
  };
  struct Stats {
    std::uint64_t batches = 0;           // run() calls with at least one job
    std::uint64_t parallel_batches = 0;  // of those, shared with the workers
    std::uint64_t jobs = 0;
    std::uint64_t jobs_on_workers = 0;   // jobs a worker ran (counted at the end of each run)
  };
  // The most threads knitd accepts (--crypto-threads).
  static constexpr unsigned kMaxThreads = 64;

  explicit CryptoWorkers(Options options);
  ~CryptoWorkers();  // stops and joins the workers
  CryptoWorkers(const CryptoWorkers&) = delete;
  CryptoWorkers& operator=(const CryptoWorkers&) = delete;

  unsigned threads() const { return static_cast<unsigned>(workers_.size()) + 1; }
  // Runs every job and returns when all are done. The loop's thread only, never concurrently.
  void run(std::span<wg::CryptoJob> jobs);
  const Stats& stats() const { return stats_; }

  // The default: the machine's cores (1 on a 1-core machine, at most 8: a batch is too small
  // to share among more).
  static unsigned default_threads();
  // The thread count from the flag (0: not given), else KNIT_CRYPTO_THREADS (env, may be null),
  // else the default; clamped to 1..kMaxThreads. Throws std::invalid_argument on a malformed
  // environment value.
  static unsigned resolve_threads(unsigned flag, const char* env);

 private:
  static constexpr std::size_t kMaxRun = 0xffff;  // count and next are 16 bits in the cursor

  void run_part(std::span<wg::CryptoJob> jobs);
  // Claims and runs one job of the current run; false when none is left.
  bool work_one(bool on_worker);
  void worker_main();

  Options options_;
  std::vector<std::thread> workers_;
  wg::CryptoJob* jobs_ = nullptr;           // the current run's; written only between runs
  std::uint32_t run_ = 0;                   // the loop's run number
  alignas(64) std::atomic<std::uint64_t> cursor_{0};
  alignas(64) std::atomic<std::uint32_t> done_{0};
  alignas(64) std::atomic<std::uint32_t> wake_{0};
  std::atomic<std::uint32_t> worker_jobs_{0};  // jobs run by workers in the current run
  std::atomic<bool> stopping_{false};
  Stats stats_;
};

}  // namespace knit::agent
