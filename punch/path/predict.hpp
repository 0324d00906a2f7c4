// Port prediction for an easy (EIM) <-> hard (mapping varies) pair: the birthday-paradox method
// of ../shared/NAT.md, as two pacing schedules. Sans-I/O: the PathManager asks what is due now.
//
//   hard side H                                   easy side E (reflexive endpoint E:e)
//   probe socket 0..255 ── one ping each ──► E:e  (opens 256 mappings H:p_i whose filter admits E:e;
//                            200/s               the pings themselves are filtered away by E's NAT)
//                                           ◄── pings to H:<random port>, no repeats, 100/s,
//                                                 at most 2048: P(hit) = 1 - (1 - 256/65536)^k
//   socket i gets a ping from E:e ─ pong ─►  E proves (main socket -> H:p_i)
//   socket i pings E:e back       ◄─ pong ─  H proves (socket i -> E:e), closes the 255 others
//
// Hard <-> hard would need ~65k probes per side: not tried; such pairs use the relay.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <unordered_map>

#include "base/random.hpp"
#include "base/time.hpp"
#include "punch/path/constants.hpp"

namespace knit::punch {

// The easy side: random ports of the hard side's address, each at most once, strictly paced.
class PortSpray {
 public:
  PortSpray(Random& rng, Instant start, std::uint32_t rate = kSprayRate,
            std::size_t max_probes = kSprayMaxProbes, std::uint16_t port_min = kSprayPortMin,
            std::uint16_t port_max = kSprayPortMax);

  // The next port to probe if one is due at `now`. Consecutive probes are at least 1/rate
  // apart (a late caller gets no catch-up burst), so any 1 s holds at most `rate` of them.
  std::optional<std::uint16_t> next(Instant now);
  // When next() will have a port; nullopt once done.
  std::optional<Instant> next_deadline() const;
  // A hit ends the spray early.
  void stop() { stopped_ = true; }
  bool done() const { return stopped_ || sent_ >= max_probes_; }
  std::size_t sent() const { return sent_; }
  // When `port` was probed, if it was.
  std::optional<Instant> probed_at(std::uint16_t port) const;

 private:
  std::uint16_t draw();

  Random* rng_;  // a pointer so a spray can be assigned
  Instant next_at_;
  Duration interval_;
  std::size_t max_probes_;
  std::uint16_t port_min_;
  std::uint32_t range_;  // number of ports in [port_min, port_max]
  std::size_t sent_ = 0;
  bool stopped_ = false;
  // Sparse Fisher-Yates: position -> value for the positions swapped so far (O(probes) memory).
  std::unordered_map<std::uint32_t, std::uint32_t> swapped_;
  std::unordered_map<std::uint16_t, Instant> probed_;
};

// The hard side: one ping from each of `sockets` probe sockets, paced.
class ProbeSocketRound {
 public:
  ProbeSocketRound(Instant start, std::size_t sockets = kProbeSockets,
                   std::uint32_t rate = kProbeSocketPingRate);

  // The index (0..sockets-1) of the next socket whose ping is due now.
  std::optional<std::size_t> next(Instant now);
  std::optional<Instant> next_deadline() const;
  void stop() { stopped_ = true; }
  bool done() const { return stopped_ || sent_ >= sockets_; }
  std::size_t sent() const { return sent_; }

 private:
  Instant next_at_;
  Duration interval_;
  std::size_t sockets_;
  std::size_t sent_ = 0;
  bool stopped_ = false;
};

}  // namespace knit::punch
