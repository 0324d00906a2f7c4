#include "agent/crypto_workers.hpp"

#include <sched.h>

#include <algorithm>
#include <charconv>
#include <stdexcept>
#include <string>
#include <string_view>

namespace knit::agent {

namespace {

constexpr std::uint64_t pack(std::uint32_t run, std::uint32_t count, std::uint32_t next) {
  return (std::uint64_t{run} << 32) | (std::uint64_t{count} << 16) | next;
}
constexpr std::uint32_t count_of(std::uint64_t cursor) { return (cursor >> 16) & 0xffff; }
constexpr std::uint32_t next_of(std::uint64_t cursor) { return cursor & 0xffff; }

// A polite busy-wait step (the other hyperthread gets the core's resources meanwhile).
inline void relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

}  // namespace

CryptoWorkers::CryptoWorkers(Options options) : options_(options) {
  const unsigned threads = std::clamp(options_.threads, 1u, kMaxThreads);
  workers_.reserve(threads - 1);
  for (unsigned i = 1; i < threads; ++i) workers_.emplace_back([this] { worker_main(); });
}

CryptoWorkers::~CryptoWorkers() {
  stopping_.store(true, std::memory_order_release);
  wake_.fetch_add(1, std::memory_order_release);
  wake_.notify_all();
  for (auto& worker : workers_) worker.join();
}

unsigned CryptoWorkers::default_threads() {
  const unsigned cores = std::thread::hardware_concurrency();
  return std::clamp(cores, 1u, 8u);
}

unsigned CryptoWorkers::resolve_threads(unsigned flag, const char* env) {
  unsigned n = flag;
  if (n == 0 && env != nullptr && *env != '\0') {
    const std::string_view text(env);
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (ec != std::errc() || end != text.data() + text.size() || n == 0)
      throw std::invalid_argument("KNIT_CRYPTO_THREADS wants a whole number >= 1, not '" + std::string(text) + "'");
  }
  if (n == 0) n = default_threads();
  return std::min(n, kMaxThreads);
}

void CryptoWorkers::run(std::span<wg::CryptoJob> jobs) {
  if (jobs.empty()) return;
  while (jobs.size() > kMaxRun) {
    run_part(jobs.first(kMaxRun));
    jobs = jobs.subspan(kMaxRun);
  }
  run_part(jobs);
}

void CryptoWorkers::run_part(std::span<wg::CryptoJob> jobs) {
  ++stats_.batches;
  stats_.jobs += jobs.size();
  std::size_t bytes = 0;
  for (const wg::CryptoJob& job : jobs) bytes += job.size;
  if (workers_.empty() || jobs.size() < 2 || bytes < options_.parallel_min_bytes) {
    for (wg::CryptoJob& job : jobs) wg::run_crypto(job);
    return;
  }
  ++stats_.parallel_batches;
  const auto count = static_cast<std::uint32_t>(jobs.size());
  // No worker is inside a run now (the last one ended with done == count), so these plain
  // writes race with nothing; the release store of the cursor publishes them.
  jobs_ = jobs.data();
  done_.store(0, std::memory_order_relaxed);
  worker_jobs_.store(0, std::memory_order_relaxed);
  cursor_.store(pack(++run_, count, 0), std::memory_order_release);
  wake_.fetch_add(1, std::memory_order_release);
  wake_.notify_all();

  while (work_one(false)) {
  }
  // Every job is claimed; wait for those still running on a worker.
  for (std::uint32_t seen = done_.load(std::memory_order_acquire); seen != count;
       seen = done_.load(std::memory_order_acquire))
    done_.wait(seen, std::memory_order_acquire);
  stats_.jobs_on_workers += worker_jobs_.load(std::memory_order_relaxed);
}

bool CryptoWorkers::work_one(bool on_worker) {
  std::uint64_t cursor = cursor_.load(std::memory_order_acquire);
  for (;;) {
    if (next_of(cursor) >= count_of(cursor)) return false;
    if (cursor_.compare_exchange_weak(cursor, cursor + 1, std::memory_order_acq_rel, std::memory_order_acquire))
      break;
  }
  // Claimed: the run cannot end before this job is counted done, so jobs_ is this run's.
  wg::run_crypto(jobs_[next_of(cursor)]);
  if (on_worker) worker_jobs_.fetch_add(1, std::memory_order_relaxed);
  if (done_.fetch_add(1, std::memory_order_acq_rel) + 1 == count_of(cursor)) done_.notify_one();
  return true;
}

void CryptoWorkers::worker_main() {
  for (;;) {
    const std::uint32_t wake = wake_.load(std::memory_order_acquire);
    if (stopping_.load(std::memory_order_acquire)) return;
    while (work_one(true)) {
    }
    if (options_.spin.count() > 0) {
      const auto until = std::chrono::steady_clock::now() + options_.spin;
      bool woken = false;
      while (!woken && std::chrono::steady_clock::now() < until) {
        for (int i = 0; i < 64 && !woken; ++i) {
          woken = wake_.load(std::memory_order_relaxed) != wake;
          relax();
        }
        // Polling must not take the core from work that is ready: the other threads of a
        // busy machine (the peer's agent, the relay, the application) get it meanwhile, and
        // on an idle core this returns at once.
        if (!woken) sched_yield();
      }
      if (woken) continue;
    }
    wake_.wait(wake, std::memory_order_acquire);
  }
}

}  // namespace knit::agent
