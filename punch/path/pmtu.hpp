// PmtuSearch: the path MTU of one direct path, found the packetization-layer way (RFC 8899,
// DPLPMTUD) with padded disco pings, and what it means for the tunnel. Sans-I/O: `now` in, the
// size to probe and a deadline out; nothing depends on ICMP getting through (a "packet too
// big" about our outer packets is only a hint, note_too_big).
//
// Sizes are outer IP packet sizes: what the path must carry. A probe of size S is a ping whose
// UDP payload is S minus the outer IP and UDP headers (28 for IPv4, 48 for IPv6).
//
//   start(base 1280, max = tunnel MTU + overhead)     mtu() = base until something bigger is acked
//        │
//        ▼  probe max first (most paths carry it: one round trip and done)
//   SEARCHING ── ack(size) ─► lo = size ──┐      a size unanswered kMaxProbes times in a row:
//        ▲  probe (lo + hi + 1) / 2  ◄────┴────  hi = size - 1 (RFC 8899 MAX_PROBES)
//        │                                        hi - lo < kGranularity: done
//   SEARCH_COMPLETE: every kConfirmInterval a probe of mtu() (black-hole detection: kMaxProbes
//        losses in a row while the path lives: back to base, search again); every
//        kRaiseInterval (RFC 8899 PMTU_RAISE_TIMER) a probe of max, to notice a path that grew.
//
// RFC 8899 §5.1.1's BASE_PLPMTU is 1280 (the IPv6 minimum, and what IPv4 paths carry in
// practice); below it the tunnel does not go (a path that carries less is not usable anyway).
//
// The tunnel MTU for a path of outer MTU P: P minus the outer headers and WireGuard's 32 bytes
// (header 16, tag 16), rounded down to a multiple of 16 when it is below the tunnel's own MTU
// (WireGuard pads the plaintext to a multiple of 16, capped only by the device MTU: whitepaper
// §5.4.6), and never above the tunnel MTU.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "base/time.hpp"

namespace knit::punch {

inline constexpr std::size_t kPmtuBase = 1280;
// Outer overhead of a WireGuard data packet: IP + UDP + type/receiver/counter (16) + tag (16).
inline constexpr std::size_t kWireGuardOverhead = 32;
inline constexpr std::size_t kOuterOverheadV4 = 20 + 8 + kWireGuardOverhead;  // 60
inline constexpr std::size_t kOuterOverheadV6 = 40 + 8 + kWireGuardOverhead;  // 80
inline constexpr std::size_t kUdpIpHeadersV4 = 28;
inline constexpr std::size_t kUdpIpHeadersV6 = 48;

// The inner (tunnel) MTU a path of outer MTU `path_mtu` carries; never above `tunnel_mtu`.
std::size_t tunnel_mtu_for_path(std::size_t path_mtu, bool outer_v6, std::size_t tunnel_mtu);
// The outer size a full tunnel packet needs: the search's upper bound.
inline std::size_t path_mtu_for_tunnel(std::size_t tunnel_mtu, bool outer_v6) {
  return tunnel_mtu + (outer_v6 ? kOuterOverheadV6 : kOuterOverheadV4);
}

class PmtuSearch {
 public:
  // Each probe waits this long for its pong (disco RTTs are milliseconds to a few hundred).
  static constexpr Duration kProbeTimeout = std::chrono::seconds(1);
  static constexpr int kMaxProbes = 3;                 // RFC 8899 MAX_PROBES
  static constexpr std::size_t kGranularity = 8;       // stop when the interval is this narrow
  static constexpr Duration kConfirmInterval = std::chrono::seconds(30);
  static constexpr Duration kRaiseInterval = std::chrono::minutes(10);  // RFC 8899 PMTU_RAISE_TIMER

  enum class State : std::uint8_t { idle, searching, complete };

  // (Re)starts on a new path: mtu() falls back to base until probes show more.
  void start(Instant now, std::size_t base, std::size_t max);
  void stop() { state_ = State::idle; }

  // Runs timeouts and returns the size to probe now, if any: the caller sends a ping padded to
  // it and calls sent(). Call it whenever next_deadline() has passed (or more often).
  std::optional<std::size_t> poll(Instant now);
  void sent(Instant now, std::size_t size);
  // A pong for a probe of `size` arrived.
  void acked(Instant now, std::size_t size);
  // ICMP "fragmentation needed" / "packet too big" said the path carries `mtu`: a hint, which
  // can only lower what is tried (never raise mtu()): the next probe is that size. Returns
  // whether it changed the search (false: idle, or nothing above `mtu` was to be tried).
  bool note_too_big(Instant now, std::size_t mtu);

  State state() const { return state_; }
  std::size_t mtu() const { return lo_; }  // the largest size known to get through
  std::size_t max() const { return max_; }
  // Nothing above this has got through (max until a probe of max went unanswered three times,
  // or an ICMP hint came): below max, the path is proven smaller than the tunnel wants.
  std::size_t ceiling() const { return state_ == State::idle ? max_ : hi_; }
  // When poll() next has something to do; nullopt while idle.
  std::optional<Instant> next_deadline(Instant now) const;

 private:
  void on_timeout(Instant now);  // the probe in flight went unanswered
  void next_size(Instant now);
  void search(std::size_t lo, std::size_t hi, std::size_t first);

  State state_ = State::idle;
  std::size_t base_ = kPmtuBase;
  std::size_t max_ = kPmtuBase;
  std::size_t lo_ = kPmtuBase;   // acked (or the base, assumed)
  std::size_t hi_ = kPmtuBase;   // nothing above this is tried
  std::size_t probe_ = 0;        // the size under test (searching, or a confirm/raise probe)
  int losses_ = 0;               // probes of probe_ unanswered in a row
  std::optional<Instant> in_flight_;  // when the latest probe of probe_ left
  Instant next_confirm_{};
  Instant next_raise_{};
  bool confirming_ = false;      // complete: the probe under test is a confirm (else a raise)
};

}  // namespace knit::punch
