// Two agents of the simulated world (punch_sim_world.hpp) and their PathManagers, for the path
// suites (punch_path_test, punch_who_sends_first_test): public hosts kA and kB (kB2 a second
// address), a relay, data both ways every 100 ms while `traffic` is on.
#pragma once

#include <functional>
#include <optional>
#include <vector>

#include "punch_sim_world.hpp"

namespace knit::punch::sim {

using std::chrono::milliseconds;
using std::chrono::seconds;

struct Pair {
  World w;
  Agent* a = nullptr;
  Agent* b = nullptr;
  bool traffic = true;
  Instant next_data{};

  Pair(std::vector<IpAddress> a_addr, std::vector<IpAddress> b_addr) {
    a = &w.add_agent("A", std::move(a_addr), std::nullopt, 1);
    b = &w.add_agent("B", std::move(b_addr), std::nullopt, 2);
    w.set_relay(true);
  }
  LocalCandidates candidates(const Agent& x) {
    LocalCandidates c;
    for (const IpAddress& ad : x.addresses) c.local.push_back(Endpoint(ad, kWgPort));
    return c;
  }
  void start() {
    a->pm->set_local_candidates(w.now, candidates(*a));
    b->pm->set_local_candidates(w.now, candidates(*b));
    w.introduce(*a, candidates(*a), *b, candidates(*b));
  }
  std::function<void()> tick() {
    return [this] {
      if (!traffic || w.now < next_data) return;
      a->pm->note_data_sent(w.now, b->node_key);
      w.drain(*a);
      b->pm->note_data_sent(w.now, a->node_key);
      w.drain(*b);
      next_data = w.now + milliseconds(100);
    };
  }
  void run(Duration d) { w.run_until(w.now + d, tick(), milliseconds(10)); }
  PathInfo ab() { return a->pm->path(b->node_key, w.now); }
  PathInfo ba() { return b->pm->path(a->node_key, w.now); }
  // Runs until A's path to B satisfies pred; the time it took, or nullopt within `limit`.
  template <typename Pred>
  std::optional<Duration> run_until_ab(Pred pred, Duration limit) {
    const Instant start = w.now;
    while (w.now - start < limit) {
      if (pred(ab())) return w.now - start;
      run(milliseconds(10));
    }
    return std::nullopt;
  }
};

const IpAddress kA = ip("198.51.100.1");
const IpAddress kB = ip("198.51.100.2");
const IpAddress kB2 = ip("198.51.100.3");

}  // namespace knit::punch::sim
