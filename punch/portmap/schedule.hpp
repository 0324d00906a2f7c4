// When to renew a port mapping, and whether the gateway lost it. Sans-I/O: every call takes
// `now`; the PortMapper sleeps until next_deadline() and asks poll().
//
//   granted at t0, lifetime L          renew at t0 + L/2 (RFC 6886 §3.3; RFC 6887 §11.2.1)
//   renewal fails at t                 retry at t + (expiry - t)/2, at least min_retry later,
//                                      so retries thicken towards the expiry (RFC 6887 §11.2.1
//                                      asks for the same: 1/2, 3/4, 7/8 ... of the lifetime)
//   now >= expiry                      expired: the mapping is gone, start over
//   L = 0 (a permanent UPnP lease)     renew every permanent_refresh, never expires by itself
//
// EpochTracker applies RFC 6887 §8.5 (the same rule as RFC 6886 §3.6): a gateway whose epoch
// went backwards, or moved too differently from our own clock, restarted and forgot our
// mappings, so they must be asked for again at once.
#pragma once

#include <cstdint>
#include <optional>

#include "base/time.hpp"

namespace knit::punch {

class RenewalSchedule {
 public:
  struct Config {
    Duration min_retry = 5s;
    Duration permanent_refresh = 20min;
  };
  enum class Action { none, renew, expired };

  RenewalSchedule() = default;
  explicit RenewalSchedule(Config config) : config_(config) {}

  // A mapping was obtained or renewed at now for lifetime (0 = permanent).
  void granted(Instant now, Duration lifetime);
  // The renewal attempt that started at or before now failed.
  void renewal_failed(Instant now);
  // Forget the mapping (stopped or lost).
  void clear() { active_ = false; }

  bool active() const { return active_; }
  // What is due at now: expired wins over renew.
  Action poll(Instant now) const;
  // The next instant poll() can change its answer; nullopt when nothing is scheduled.
  std::optional<Instant> next_deadline() const;
  Instant renew_at() const { return renew_at_; }
  std::optional<Instant> expires_at() const { return expires_at_; }

 private:
  Config config_;
  bool active_ = false;
  Instant renew_at_{};
  std::optional<Instant> expires_at_;  // none for a permanent lease
};

class EpochTracker {
 public:
  // Feeds the epoch of an answer received at now; true when the gateway lost its state since
  // the previous answer. The first answer never counts as a reset.
  bool observe(Instant now, std::uint32_t epoch_s);
  void reset() { last_.reset(); }

 private:
  struct Sample {
    Instant at;
    std::uint32_t epoch_s;
  };
  std::optional<Sample> last_;
};

}  // namespace knit::punch
