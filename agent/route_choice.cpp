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

std::string_view to_string(ExitState state) {
  switch (state) {
    case ExitState::none: return "none";
    case ExitState::active: return "active";
    case ExitState::unknown: return "unknown";
    case ExitState::not_exit: return "not an exit node";
    case ExitState::offline: return "offline";
  }
  return "none";
}

bool offers_exit(const control::PeerInfo& peer) {
  return std::any_of(peer.routes.begin(), peer.routes.end(),
                     [](const IpPrefix& p) { return control::is_default_route(p); });
}

ExitChoice choose_exit(const std::vector<control::PeerInfo>& peers, const control::NodeKey& self,
                       const std::string& wanted, const std::optional<control::NodeKey>& known) {
  ExitChoice out;
  if (wanted.empty()) return out;
  out.state = ExitState::unknown;
  const std::optional<IpAddress> ip = IpAddress::parse(wanted);
  auto names = [&](const control::PeerInfo& peer) {
    return ip ? (peer.ipv4 == *ip || peer.ipv6 == *ip)
              : (peer.name == wanted || (wanted.size() > peer.name.size() && !peer.name.empty() &&
                                         wanted.compare(0, peer.name.size(), peer.name) == 0 &&
                                         wanted[peer.name.size()] == '.'));
  };
  const bool known_present = known && std::any_of(peers.begin(), peers.end(), [&](const control::PeerInfo& p) {
    return p.node_key == *known && p.node_key != self;
  });
  for (const control::PeerInfo& peer : peers) {
    if (peer.node_key == self) continue;
    if (known_present ? peer.node_key != *known : !names(peer)) continue;
    out.name = peer.name;
    out.node = peer.node_key;
    if (!peer.ipv4.is_unspecified()) out.ip = peer.ipv4;
    if (!offers_exit(peer)) out.state = ExitState::not_exit;
    else if (!peer.online) out.state = ExitState::offline;
    else {
      out.state = ExitState::active;
      out.carrier = peer.node_key;
    }
    return out;
  }
  return out;
}

void add_exit_routes(RouteCarriers& carriers, const ExitChoice& exit, const std::vector<control::PeerInfo>& peers) {
  if (!exit.carrier) return;
  for (const control::PeerInfo& info : peers)
    if (info.node_key == *exit.carrier)
      for (const IpPrefix& route : info.routes)
        if (control::is_default_route(route)) carriers[route] = info.node_key;
}

std::vector<IpPrefix> routes_carried_by(const RouteCarriers& carriers, const control::NodeKey& peer) {
  std::vector<IpPrefix> out;
  for (const auto& [route, carrier] : carriers)
    if (carrier == peer) out.push_back(route);
  return out;
}

}  // namespace knit::agent
