#include "punch/path/mapping_evidence.hpp"

#include <algorithm>
#include <map>
#include <set>

namespace knit::punch {

void MappingEvidence::add(Instant now, const Endpoint& to, const Endpoint& observed) {
  if (observed.port() == 0 || observed.address().is_unspecified()) return;
  const Endpoint seen(observed.address(), observed.port());
  // One observation per destination address: the newest.
  std::erase_if(observations_, [&](const Observation& o) { return o.destination == to.address(); });
  if (observations_.size() >= kMaxObservations) observations_.erase(observations_.begin());
  observations_.push_back(Observation{to.address(), seen, now});
}

void MappingEvidence::set_stun(const std::optional<Endpoint>& reflexive) {
  if (!reflexive) {
    stun_.reset();
    return;
  }
  // The unspecified address stands for "the STUN servers", distinct from every peer; it never
  // ages out while netcheck keeps it current.
  stun_ = Observation{IpAddress{}, Endpoint(reflexive->address(), reflexive->port()), Instant::max()};
}

void MappingEvidence::clear() {
  observations_.clear();
  stun_.reset();
}

bool MappingEvidence::varies(Instant now) const {
  // For each public address we were seen at: the destinations and the ports.
  std::map<IpAddress, std::pair<std::set<IpAddress>, std::set<std::uint16_t>>> by_address;
  auto count = [&](const Observation& o) {
    if (o.at != Instant::max() && now - o.at > kLifetime) return;
    auto& [destinations, ports] = by_address[o.observed.address()];
    destinations.insert(o.destination);
    ports.insert(o.observed.port());
  };
  for (const Observation& o : observations_) count(o);
  if (stun_) count(*stun_);
  return std::any_of(by_address.begin(), by_address.end(), [](const auto& entry) {
    const auto& [destinations, ports] = entry.second;
    return destinations.size() >= kDistinctPortsForVaries && ports.size() >= kDistinctPortsForVaries;
  });
}

std::optional<Endpoint> MappingEvidence::remapped(Instant now) const {
  if (!stun_ || varies(now)) return std::nullopt;
  const Endpoint& stun = stun_->observed;
  std::set<IpAddress> destinations;
  std::optional<std::uint16_t> port;
  const Observation* newest = nullptr;
  for (const Observation& o : observations_) {
    if (now - o.at > kLifetime || o.observed.address() != stun.address()) continue;
    if (!newest || o.at >= newest->at) newest = &o;
    if (o.observed.port() == stun.port()) continue;
    if (port && *port != o.observed.port()) return std::nullopt;  // two other ports: not one move
    port = o.observed.port();
    destinations.insert(o.destination);
  }
  if (!port || destinations.size() < kDestinationsForRemap) return std::nullopt;
  if (newest->observed.port() != *port) return std::nullopt;  // new flows are back on STUN's port
  return Endpoint(stun.address(), *port);
}

}  // namespace knit::punch
