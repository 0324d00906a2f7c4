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

}  // namespace knit::punch
