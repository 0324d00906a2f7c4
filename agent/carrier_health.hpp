// Whether the peers that carry a subnet route for us are alive, without I/O: the coordinator
// marks a router offline at once when its knitd's session closes, but only after its 45 s idle
// timeout when the host silently vanishes (links cut, process stopped). Two routers advertise one
// prefix so that peers keep the LAN when one goes: this tells route_choice.hpp within seconds.
//
// Evidence, on any path (direct or relayed), is anything authenticated from the carrier:
//   - a disco message (PathManager::last_heard: a heartbeat's pong, the answer to our liveness
//     ping, its own pings and call-me-maybes);
//   - WireGuard packets (its rx byte counter grew since we last looked: data, keepalives).
// A carrier heard from within kProbeInterval costs nothing; otherwise it gets a liveness ping
// (PathManager::ping_peer, through the relay when there is no direct path) every kProbeInterval.
//
//   watched ──(nothing heard for kDownAfter)──► down ──(heard again)──► recovering
//     ▲                                            ▲                        │ │
//     └───────(heard for kUpAfter, still fresh)────┼────────────────────────┘ │
//                                                  └──(silent again)───────────┘
//
// Only carriers of a prefix that some other online peer also carries are watched (a lone
// carrier has no stand-in: probing it would change nothing). A carrier starts as up with the
// moment it was first watched as its evidence, so it has kDownAfter to be heard.
//
// Timings: a vanished carrier is down within kDownAfter (4 s) of the last thing heard from it;
// with the pings it is noticed after at most 3 unanswered ones. route_choice.hpp then moves its
// prefixes at once, so traffic moves within about 5 s (the issue asks for 10 s). A carrier that
// comes back must answer for kUpAfter (2 s) before it counts as up again; the route choice
// stays with the carrier in use meanwhile and after (route_choice.hpp: no move back).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/time.hpp"
#include "control/messages.hpp"

namespace knit::agent {

inline constexpr Duration kCarrierProbeInterval = std::chrono::seconds(1);
inline constexpr Duration kCarrierDownAfter = std::chrono::seconds(4);
inline constexpr Duration kCarrierUpAfter = std::chrono::seconds(2);
// The shell looks at the evidence this often while something is watched (the rx counters
// cannot wake it).
inline constexpr Duration kCarrierCheckInterval = std::chrono::milliseconds(250);

enum class CarrierLiveness : std::uint8_t {
  up,          // heard within kDownAfter (or watched for less than that)
  down,        // nothing heard for kDownAfter
  recovering,  // down, heard again, not yet for kUpAfter: still treated as down
};
std::string_view to_string(CarrierLiveness liveness);

struct CarrierHealthStatus {
  control::NodeKey node_key{};
  CarrierLiveness liveness = CarrierLiveness::up;
  std::optional<Duration> silent_for;  // since the last evidence; nullopt: never heard
  std::optional<Duration> down_for;    // since it went down (down, recovering)
  // A line a person can act on: "no answer for 6.2 s", "answering again for 0.8 s".
  std::string reason;
};

class CarrierHealth {
 public:
  // The carriers to watch; the others are forgotten. New ones start as up (see above).
  void watch(Instant now, const std::vector<control::NodeKey>& carriers);
  // What the shell found about one watched carrier: when a disco message last came from it
  // (nullopt: never) and its WireGuard rx byte counter now.
  void observe(Instant now, const control::NodeKey& carrier, std::optional<Instant> disco_heard,
               std::uint64_t rx_bytes);
  // Advances the states; true when a carrier went down or came back up (re-choose routes).
  bool on_timers(Instant now);
  // The carriers to send a liveness ping now (each at most every kCarrierProbeInterval).
  std::vector<control::NodeKey> take_pings(Instant now);

  bool watching() const { return !carriers_.empty(); }
  bool watched(const control::NodeKey& carrier) const { return carriers_.count(carrier) != 0; }
  // Down or recovering: route_choice.hpp avoids it.
  bool down(const control::NodeKey& carrier) const;
  std::vector<control::NodeKey> down_carriers() const;
  std::optional<CarrierHealthStatus> status(const control::NodeKey& carrier, Instant now) const;

 private:
  struct Carrier {
    Instant heard{};                    // the latest evidence (or when first watched)
    bool ever_heard = false;
    std::optional<Instant> disco_seen;  // the last disco time observed, to notice a newer one
    std::optional<std::uint64_t> rx;    // the rx counter last observed
    std::optional<Instant> last_ping;
    CarrierLiveness liveness = CarrierLiveness::up;
    Instant down_since{};
    Instant recovering_since{};
  };
  std::map<control::NodeKey, Carrier> carriers_;
};

}  // namespace knit::agent
