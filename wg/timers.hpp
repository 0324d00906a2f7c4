// The five per-peer timers of WireGuard (whitepaper §6), driven by events named after what
// happened, as in the Linux module's timers.c: protocol code reports "data sent",
// "handshake complete" ..., and this class decides what is due and when.
//
//   timer                 armed by                        fires as
//   retransmit_handshake  handshake_initiated             send_initiation (retry) or give_up
//   send_keepalive        data_received                   send_keepalive
//   new_handshake         data_sent                       send_initiation (fresh)
//   zero_key_material     session_derived, give-up        zero_keys
//   persistent_keepalive  any_authenticated_packet_traversal, set_persistent_keepalive
//                                                          send_keepalive
//
// No clock is read and nothing is sent here: events take `now`, poll(now) fires what is due
// and returns the actions, next_deadline() tells the caller when to poll again.
//
// Contract with the caller (the device), as in the kernel's send and receive paths:
//   sending an initiation: any_authenticated_packet_traversal, any_authenticated_packet_sent,
//     handshake_initiated; a fresh (not retry) one first calls reset_handshake_attempts;
//   sending data or a keepalive: data_sent (data only), any_authenticated_packet_sent,
//     any_authenticated_packet_traversal;
//   receiving any authenticated packet: any_authenticated_packet_received and _traversal,
//     plus data_received for data, handshake_complete on key confirmation and
//     session_derived when a new session's keys are derived.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <optional>

#include "base/random.hpp"
#include "base/time.hpp"

namespace knit::wg {

// What poll() asks the caller to do; several may be set at once. Act on zero_keys first,
// then give_up, then send_initiation, then send_keepalive.
struct TimerActions {
  bool send_initiation = false;      // start (or retry) a handshake
  bool initiation_is_retry = false;  // only the retransmit timer asked: keep the attempt count
  bool send_keepalive = false;       // an empty data packet (or a handshake if no session)
  bool give_up = false;              // retries exhausted: drop the packets staged for this peer
  bool zero_keys = false;            // zero all keypairs and handshake state

  bool any() const { return send_initiation || send_keepalive || give_up || zero_keys; }
};

class PeerTimers {
 public:
  enum class Timer : std::size_t {
    retransmit_handshake,
    send_keepalive,
    new_handshake,
    zero_key_material,
    persistent_keepalive,
  };
  static constexpr std::size_t kTimerCount = 5;

  // rng is the jitter source and must outlive this object.
  explicit PeerTimers(Random& rng);

  // An initiation was sent: retransmit it after REKEY_TIMEOUT + jitter (whitepaper §6.4).
  void handshake_initiated(Instant now);
  // A handshake response was processed, or the first data packet confirmed the session:
  // stop retransmitting and forget the attempts.
  void handshake_complete(Instant now);
  // A session's keys were derived: zero all key material unless a newer session comes
  // within 3 * REJECT_AFTER_TIME (§6.3).
  void session_derived(Instant now);
  // A data packet (not a keepalive) was sent: if nothing is heard back within
  // KEEPALIVE_TIMEOUT + REKEY_TIMEOUT (+ jitter), start a new handshake (§6.5). An armed
  // timer is not pushed back: it counts from the first unanswered packet.
  void data_sent(Instant now);
  // Authenticated data was received: if we send nothing within KEEPALIVE_TIMEOUT, send a
  // keepalive (§6.5). If that timer is already armed, remember that another one is needed.
  void data_received(Instant now);
  // Any authenticated packet (handshake, data, keepalive) was sent: no keepalive needed.
  void any_authenticated_packet_sent(Instant now);
  // Any authenticated packet was received: the peer is alive, no new handshake needed.
  void any_authenticated_packet_received(Instant now);
  // Any authenticated packet was sent or received: push the persistent keepalive back.
  void any_authenticated_packet_traversal(Instant now);
  // A fresh initiation (not a retry) is being sent: the retry count starts again.
  void reset_handshake_attempts();

  // 0 disables. Turning it on from off sends a keepalive at once (due at `now`), as
  // wireguard-go and the kernel do when it is set on a running device; a shorter interval
  // brings an armed timer forward.
  void set_persistent_keepalive(std::chrono::seconds interval, Instant now);
  std::chrono::seconds persistent_keepalive() const { return persistent_interval_; }

  // The peer is removed or the device goes down: disarm everything and forget the attempts.
  void stop();

  // Fires every timer due at `now` (deadline <= now), in deadline order, and reports what to
  // do. A retransmission past kMaxTimerHandshakes retries gives up instead (REKEY_ATTEMPT_TIME
  // of trying): give_up, the keepalive timer is cancelled and key material is zeroed
  // kZeroKeysAfter later if that timer is not already armed. Afterwards next_deadline() > now.
  TimerActions poll(Instant now);

  // The earliest armed timer; nullopt when none is armed.
  std::optional<Instant> next_deadline() const;
  // One timer's deadline, nullopt when it is not armed.
  std::optional<Instant> deadline_of(Timer timer) const { return deadlines_[index(timer)]; }
  // Retransmissions since the last fresh initiation or completed handshake.
  int handshake_attempts() const { return attempts_; }

 private:
  static constexpr std::size_t index(Timer timer) { return static_cast<std::size_t>(timer); }
  std::optional<Instant>& deadline(Timer timer) { return deadlines_[index(timer)]; }
  bool armed(Timer timer) const { return deadlines_[index(timer)].has_value(); }
  // Uniform in [0, kRekeyTimeoutJitterMax), so simultaneous peers spread their handshakes.
  Duration jitter();
  void fire(Timer timer, Instant now, TimerActions& actions, bool& fresh_initiation);

  Random* rng_;
  std::array<std::optional<Instant>, kTimerCount> deadlines_{};
  int attempts_ = 0;
  bool need_another_keepalive_ = false;
  std::chrono::seconds persistent_interval_{0};
};

}  // namespace knit::wg
