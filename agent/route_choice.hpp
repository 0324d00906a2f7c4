// Which peer carries each subnet route this node accepts (`knit set --accept-routes`), without
// I/O. A route is left out when it holds one of this host's own interface addresses (the host
// is on that network already: a route into the tunnel would cut it off) or is a default route
// (exit nodes are chosen separately). When several peers carry the same prefix (two routers
// for one LAN), one is chosen (WireGuard's allowed IPs give each prefix to one peer), ranked by
//   1. online at the coordinator (an offline one only when no other carries the prefix),
//   2. alive (carrier_health.hpp: not down, which notices a silently vanished router within
//      seconds where the coordinator takes its 45 s idle timeout),
//   3. the carrier in use now (`previous`): no move back when a failed router returns, so
//      connections through the other one (translated to its address) are not cut a second
//      time and two routers that come and go cannot make the route flap,
//   4. the lowest node key (every peer picks the same one when nothing else decides).
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "agent/local_endpoints.hpp"
#include "base/ip.hpp"
#include "control/messages.hpp"

namespace knit::agent {

using RouteCarriers = std::map<IpPrefix, control::NodeKey>;

// What the choice knows beyond the peer map (both empty: by the map alone).
struct CarrierPreference {
  const RouteCarriers* previous = nullptr;  // the carriers in use now
  std::vector<control::NodeKey> down;       // CarrierHealth::down_carriers()
};

RouteCarriers choose_route_carriers(const std::vector<control::PeerInfo>& peers, const control::NodeKey& self,
                                    const std::vector<InterfaceAddress>& local,
                                    const CarrierPreference& preference = {});

// Every peer that may carry each accepted prefix (the same exclusions as above), online ones
// first, then by node key.
std::map<IpPrefix, std::vector<const control::PeerInfo*>> route_candidates(
    const std::vector<control::PeerInfo>& peers, const control::NodeKey& self, const std::vector<InterfaceAddress>& local);
// The carriers worth watching (carrier_health.hpp): the online peers of every prefix that more
// than one online peer carries, sorted, each once.
std::vector<control::NodeKey> contested_carriers(const std::vector<control::PeerInfo>& peers, const control::NodeKey& self,
                                                 const std::vector<InterfaceAddress>& local);

// The prefixes of `carriers` that `peer` carries.
std::vector<IpPrefix> routes_carried_by(const RouteCarriers& carriers, const control::NodeKey& peer);

// The exit node this node uses (`knit set --exit-node NAME|IP`), looked up in the peer map.
// It carries the default route (0.0.0.0/0 and ::/0 in its allowed IPs, the host's default route
// through the TUN, exit_plan.hpp) only while it is `active`: in the map, online, and carrying
// an approved exit route. Otherwise the host keeps its own default route.
enum class ExitState {
  none,        // no exit node chosen
  active,      // in use
  unknown,     // no such node in the map (or no map yet): pending
  not_exit,    // the node is not an approved exit node (never, or no longer)
  offline,     // the node is offline
};
std::string_view to_string(ExitState state);

struct ExitChoice {
  ExitState state = ExitState::none;
  std::optional<control::NodeKey> carrier;  // set only when active
  std::optional<control::NodeKey> node;     // the node named, once found (active or not)
  std::string name;                         // the node's name, once found
  std::optional<IpAddress> ip;              // its mesh IPv4, once found
  bool active() const { return state == ExitState::active; }
  friend bool operator==(const ExitChoice&, const ExitChoice&) = default;
};

// wanted: a node name (or NAME.domain), or its mesh IPv4/IPv6; empty: none. known: the node
// `wanted` named before (ExitChoice::node of an earlier map): it stays the choice while it is in
// the map, so a rename at the coordinator does not lose the exit node.
ExitChoice choose_exit(const std::vector<control::PeerInfo>& peers, const control::NodeKey& self,
                       const std::string& wanted, const std::optional<control::NodeKey>& known = std::nullopt);
// Adds the exit node's default routes (those of 0.0.0.0/0 and ::/0 it carries) to `carriers`
// when `exit` is active: they join its allowed IPs, and only its.
void add_exit_routes(RouteCarriers& carriers, const ExitChoice& exit, const std::vector<control::PeerInfo>& peers);
// Whether `peer` offers an approved exit route (0.0.0.0/0 or ::/0 in its routes).
bool offers_exit(const control::PeerInfo& peer);

}  // namespace knit::agent
