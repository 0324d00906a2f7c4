#include "agent/carrier_status.hpp"

namespace knit::agent {

std::vector<localapi::RouteCarrierStatus> route_carrier_status(const std::vector<control::PeerInfo>& peers,
                                                               const control::NodeKey& self,
                                                               const std::vector<InterfaceAddress>& local,
                                                               const RouteCarriers& carriers,
                                                               const CarrierHealth& health, Instant now) {
  std::vector<localapi::RouteCarrierStatus> out;
  for (const auto& [route, candidates] : route_candidates(peers, self, local)) {
    localapi::RouteCarrierStatus entry;
    entry.prefix = route;
    const auto in_use = carriers.find(route);
    for (const control::PeerInfo* peer : candidates) {
      localapi::RouteCarrierCandidate c;
      c.name = peer->name;
      c.node_key = peer->node_key;
      const bool active = in_use != carriers.end() && in_use->second == peer->node_key;
      if (active) entry.via = peer->name;
      const std::optional<CarrierHealthStatus> watched = health.status(peer->node_key, now);
      if (watched && watched->silent_for)
        c.silent_ms = std::chrono::duration_cast<std::chrono::milliseconds>(*watched->silent_for).count();
      if (!peer->online) {
        c.state = active ? "active" : "offline";
        c.reason = "offline at the coordinator";
      } else if (watched && watched->liveness != CarrierLiveness::up) {
        // Active while down only when no other carrier is better (all are down).
        c.state = active ? "active" : std::string(to_string(watched->liveness));
        c.reason = watched->reason;
      } else {
        c.state = active ? "active" : "standby";
      }
      entry.candidates.push_back(std::move(c));
    }
    out.push_back(std::move(entry));
  }
  return out;
}

}  // namespace knit::agent
