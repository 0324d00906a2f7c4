// When a client of the coordinator (knitd, knit-relay) tries again: exponential from `initial`,
// doubling up to `max`, each wait drawn uniformly from [ceiling / 2, ceiling] so a fleet does not
// reconnect in lockstep. For `recovering_window` after losing an established session the
// ceiling is `recovering_max`, so clients are back within seconds of a coordinator restart.
// Pure: the caller passes `now`; randomness is injected.
#pragma once

#include <chrono>
#include <optional>

#include "base/random.hpp"
#include "base/time.hpp"

namespace knit::control {

class ReconnectBackoff {
 public:
  struct Config {
    Duration initial = std::chrono::milliseconds(500);
    Duration max = std::chrono::seconds(30);
    Duration recovering_max = std::chrono::seconds(2);
    Duration recovering_window = std::chrono::seconds(60);
  };

  explicit ReconnectBackoff(Random& rng) : ReconnectBackoff(rng, Config{}) {}
  ReconnectBackoff(Random& rng, Config config) : rng_(rng), config_(config) {}

  // A session was established: the next wait starts from `initial` again.
  void on_session();
  // An established session ended at `now`.
  void on_session_lost(Instant now);
  // The wait before the next attempt, after a failed attempt (or a lost session) at `now`.
  Duration next_delay(Instant now);
  // The ceiling next_delay would draw from at `now`, without drawing.
  Duration ceiling(Instant now) const;
  int failures() const { return failures_; }

 private:
  Random& rng_;
  Config config_;
  int failures_ = 0;
  std::optional<Instant> lost_at_;
};

}  // namespace knit::control
