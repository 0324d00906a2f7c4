// What the mesh already knows about our NAT's mapping: the source each peer saw our pings come
// from (the `observed` field of its pongs) on direct paths from the main socket. A STUN server
// on one IP cannot show a mapping that varies by destination *address*; peers at different
// addresses can. Sans-I/O: the PathManager feeds it authenticated pongs and asks varies().
//
//   evidence.add(now, peer_endpoint, pong.observed);   // only pongs that matched our ping
//   evidence.varies(now)  → our public address was seen with 3+ different ports from 3+
//                           destinations (the STUN mapping counts as one)
//
// Why three and not two: behind a Linux router without a WAN firewall, a peer's probe that
// arrives before our own flow to it exists takes the port, and our flow to that one peer leaves
// from another port (tests/unit/punch_sim_world.hpp, "inbound probe takes the port"). That is
// one odd destination on an otherwise endpoint-independent mapping; calling it symmetric would
// make two easy nodes treat each other as hard (relay only). A symmetric NAT shows a new port
// for every destination, so a third one settles it.
//
// Such a router moves more than that one flow: Linux masquerade gives every NEW flow from our
// socket the mapping of the newest flow from it (nf_nat's find_appropriate_src), so while the
// moved flow lives, every peer we meet from then on sees us at the moved port, and the port
// STUN saw (which we published) is wrong for them. remapped() notices it: two or more peers
// saw us at one port that is not STUN's, no third port was seen (that would be a symmetric NAT),
// and the newest observation says that port. The PathManager counts it (not acted on yet:
// heartbeats of older flows make "newest" flap in a long-lived mesh; PathManager::update_remapped).
//
// Bounded (kMaxObservations, newest kept); observations age out after kLifetime; a network
// change forgets them all.
#pragma once

#include <cstddef>
#include <optional>
#include <vector>

#include "base/ip.hpp"
#include "base/time.hpp"

namespace knit::punch {

class MappingEvidence {
 public:
  static constexpr std::size_t kMaxObservations = 32;
  static constexpr Duration kLifetime = std::chrono::minutes(10);
  static constexpr std::size_t kDistinctPortsForVaries = 3;

  // A pong from `to` (where our ping went) says it came from `observed`.
  void add(Instant now, const Endpoint& to, const Endpoint& observed);
  // The STUN servers' view (our reflexive address): one more destination.
  void set_stun(const std::optional<Endpoint>& reflexive);
  void clear();

  bool varies(Instant now) const;
  // Our endpoint-independent mapping moved away from STUN's port (above): where new flows leave
  // from now. nullopt without a STUN view, when it varies, or when nothing moved.
  std::optional<Endpoint> remapped(Instant now) const;
  static constexpr std::size_t kDestinationsForRemap = 2;
  std::size_t size() const { return observations_.size(); }

 private:
  struct Observation {
    IpAddress destination;
    Endpoint observed;
    Instant at{};
  };
  std::vector<Observation> observations_;
  std::optional<Observation> stun_;
};

}  // namespace knit::punch
