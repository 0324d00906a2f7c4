#include "wg/timers.hpp"

#include <algorithm>
#include <cstdint>
#include <limits>

#include "wg/constants.hpp"

namespace knit::wg {

PeerTimers::PeerTimers(Random& rng) : rng_(&rng) {}

Duration PeerTimers::jitter() {
  constexpr auto kTicks = std::chrono::duration_cast<Duration>(kRekeyTimeoutJitterMax).count();
  static_assert(kTicks > 0 && kTicks <= std::numeric_limits<std::uint32_t>::max());
  return Duration{rng_->uniform(static_cast<std::uint32_t>(kTicks))};
}

void PeerTimers::handshake_initiated(Instant now) {
  deadline(Timer::retransmit_handshake) = now + kRekeyTimeout + jitter();
}

void PeerTimers::handshake_complete(Instant /*now*/) {
  deadline(Timer::retransmit_handshake).reset();
  attempts_ = 0;
}

void PeerTimers::session_derived(Instant now) {
  deadline(Timer::zero_key_material) = now + kZeroKeysAfter;
}

void PeerTimers::data_sent(Instant now) {
  if (!armed(Timer::new_handshake))
    deadline(Timer::new_handshake) = now + kKeepaliveTimeout + kRekeyTimeout + jitter();
}

void PeerTimers::data_received(Instant now) {
  if (!armed(Timer::send_keepalive))
    deadline(Timer::send_keepalive) = now + kKeepaliveTimeout;
  else
    need_another_keepalive_ = true;
}

void PeerTimers::any_authenticated_packet_sent(Instant /*now*/) {
  deadline(Timer::send_keepalive).reset();
}

void PeerTimers::any_authenticated_packet_received(Instant /*now*/) {
  deadline(Timer::new_handshake).reset();
}

void PeerTimers::any_authenticated_packet_traversal(Instant now) {
  if (persistent_interval_.count() > 0)
    deadline(Timer::persistent_keepalive) = now + persistent_interval_;
}

void PeerTimers::reset_handshake_attempts() { attempts_ = 0; }

void PeerTimers::set_persistent_keepalive(std::chrono::seconds interval, Instant now) {
  if (interval.count() < 0) interval = std::chrono::seconds{0};
  const bool turning_on = persistent_interval_.count() == 0 && interval.count() > 0;
  persistent_interval_ = interval;
  std::optional<Instant>& timer = deadline(Timer::persistent_keepalive);
  if (interval.count() == 0) {
    timer.reset();
  } else if (turning_on) {
    timer = now;  // one keepalive at once, to open the path through NATs
  } else if (timer && now + interval < *timer) {
    timer = now + interval;
  }
}

void PeerTimers::stop() {
  for (auto& timer : deadlines_) timer.reset();
  attempts_ = 0;
  need_another_keepalive_ = false;
}

void PeerTimers::fire(Timer timer, Instant now, TimerActions& actions, bool& fresh_initiation) {
  switch (timer) {
    case Timer::retransmit_handshake:
      if (attempts_ >= kMaxTimerHandshakes) {
        // §6.4: after REKEY_ATTEMPT_TIME of retries, stop; drop what waits for a session and
        // clear any residue of the partial exchange later.
        actions.give_up = true;
        deadline(Timer::send_keepalive).reset();
        if (!armed(Timer::zero_key_material))
          deadline(Timer::zero_key_material) = now + kZeroKeysAfter;
      } else {
        ++attempts_;
        actions.send_initiation = true;
      }
      break;
    case Timer::send_keepalive:
      actions.send_keepalive = true;
      if (need_another_keepalive_) {
        need_another_keepalive_ = false;
        deadline(Timer::send_keepalive) = now + kKeepaliveTimeout;
      }
      break;
    case Timer::new_handshake:
      // We sent data and heard nothing back: the session may be dead on the other side.
      actions.send_initiation = true;
      fresh_initiation = true;
      break;
    case Timer::zero_key_material: actions.zero_keys = true; break;
    case Timer::persistent_keepalive:
      if (persistent_interval_.count() > 0) {
        actions.send_keepalive = true;
        // Sending the keepalive re-arms it too (traversal); arming here keeps the period even
        // if the keepalive turns into a handshake that is rate-limited away.
        deadline(Timer::persistent_keepalive) = now + persistent_interval_;
      }
      break;
  }
}

TimerActions PeerTimers::poll(Instant now) {
  TimerActions actions;
  bool fresh_initiation = false;
  // Fire in deadline order (ties in declaration order): an earlier timer may cancel a later
  // one, as the give-up cancels the keepalive. A timer re-armed while firing is due no
  // sooner than now + 1 s, so each fires at most once per poll.
  for (;;) {
    std::optional<std::size_t> earliest;
    for (std::size_t i = 0; i < kTimerCount; ++i) {
      const auto& d = deadlines_[i];
      if (d && *d <= now && (!earliest || *d < *deadlines_[*earliest])) earliest = i;
    }
    if (!earliest) break;
    deadlines_[*earliest].reset();
    fire(static_cast<Timer>(*earliest), now, actions, fresh_initiation);
  }
  actions.initiation_is_retry = actions.send_initiation && !fresh_initiation;
  return actions;
}

std::optional<Instant> PeerTimers::next_deadline() const {
  std::optional<Instant> earliest;
  for (const auto& d : deadlines_)
    if (d && (!earliest || *d < *earliest)) earliest = d;
  return earliest;
}

}  // namespace knit::wg
