#include "agent/route_choice.hpp"

#include <algorithm>

#include "control/route_rules.hpp"

namespace knit::agent {

RouteCarriers choose_route_carriers(const std::vector<control::PeerInfo>& peers, const control::NodeKey& self,
                                    const std::vector<InterfaceAddress>& local) {
  // Candidates per prefix: (offline?, key), so the smallest is an online peer with the lowest key.
  std::map<IpPrefix, std::pair<bool, control::NodeKey>> best;
  for (const control::PeerInfo& peer : peers) {
    if (peer.node_key == self) continue;
    for (const IpPrefix& route : peer.routes) {
      if (control::is_default_route(route)) continue;
      const bool ours = std::any_of(local.begin(), local.end(), [&](const InterfaceAddress& a) {
        return !a.loopback && control::prefix_holds(route, a.prefix.address);
      });
      if (ours) continue;
      const std::pair<bool, control::NodeKey> candidate{!peer.online, peer.node_key};
      auto [it, inserted] = best.emplace(route, candidate);
      if (!inserted && candidate < it->second) it->second = candidate;
    }
  }
  RouteCarriers out;
  for (const auto& [route, candidate] : best) out.emplace(route, candidate.second);
  return out;
}

std::vector<IpPrefix> routes_carried_by(const RouteCarriers& carriers, const control::NodeKey& peer) {
  std::vector<IpPrefix> out;
  for (const auto& [route, carrier] : carriers)
    if (carrier == peer) out.push_back(route);
  return out;
}

}  // namespace knit::agent
