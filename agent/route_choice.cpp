#include "agent/route_choice.hpp"

#include <algorithm>
#include <tuple>

#include "control/route_rules.hpp"

namespace knit::agent {

std::map<IpPrefix, std::vector<const control::PeerInfo*>> route_candidates(
    const std::vector<control::PeerInfo>& peers, const control::NodeKey& self, const std::vector<InterfaceAddress>& local) {
  std::map<IpPrefix, std::vector<const control::PeerInfo*>> out;
  for (const control::PeerInfo& peer : peers) {
    if (peer.node_key == self) continue;
    for (const IpPrefix& route : peer.routes) {
      if (control::is_default_route(route)) continue;
      const bool ours = std::any_of(local.begin(), local.end(), [&](const InterfaceAddress& a) {
        return !a.loopback && control::prefix_holds(route, a.prefix.address);
      });
      if (ours) continue;
      std::vector<const control::PeerInfo*>& list = out[route];
      if (std::find(list.begin(), list.end(), &peer) == list.end()) list.push_back(&peer);
    }
  }
  for (auto& [route, list] : out)
    std::sort(list.begin(), list.end(), [](const control::PeerInfo* a, const control::PeerInfo* b) {
      return std::pair(!a->online, a->node_key) < std::pair(!b->online, b->node_key);
    });
  return out;
}

RouteCarriers choose_route_carriers(const std::vector<control::PeerInfo>& peers, const control::NodeKey& self,
                                    const std::vector<InterfaceAddress>& local, const CarrierPreference& preference) {
  const auto is_down = [&](const control::NodeKey& key) {
    return std::find(preference.down.begin(), preference.down.end(), key) != preference.down.end();
  };
  RouteCarriers out;
  for (const auto& [route, candidates] : route_candidates(peers, self, local)) {
    std::optional<control::NodeKey> previous;
    if (preference.previous != nullptr)
      if (auto it = preference.previous->find(route); it != preference.previous->end()) previous = it->second;
    // The smallest rank wins (the header's order).
    using Rank = std::tuple<bool, bool, bool, control::NodeKey>;
    std::optional<Rank> best;
    for (const control::PeerInfo* peer : candidates) {
      const Rank rank{!peer->online, is_down(peer->node_key), previous != peer->node_key, peer->node_key};
      if (!best || rank < *best) best = rank;
    }
    if (best) out.emplace(route, std::get<3>(*best));
  }
  return out;
}

std::vector<control::NodeKey> contested_carriers(const std::vector<control::PeerInfo>& peers, const control::NodeKey& self,
                                                 const std::vector<InterfaceAddress>& local) {
  std::vector<control::NodeKey> out;
  for (const auto& [route, candidates] : route_candidates(peers, self, local)) {
    const auto online = std::count_if(candidates.begin(), candidates.end(),
                                      [](const control::PeerInfo* p) { return p->online; });
    if (online < 2) continue;
    for (const control::PeerInfo* peer : candidates)
      if (peer->online) out.push_back(peer->node_key);
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
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
