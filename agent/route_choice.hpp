// Which peer carries each subnet route this node accepts (`knit set --accept-routes`), without
// I/O. A route is left out when it holds one of this host's own interface addresses (the host
// is on that network already: a route into the tunnel would cut it off) or is a default route
// (exit nodes are chosen separately). When several peers carry the same prefix (two routers
// for one LAN), one online peer is chosen, the lowest node key first: WireGuard's allowed IPs
// give each prefix to one peer. When it goes offline the next map moves the prefix.
#pragma once

#include <map>
#include <vector>

#include "agent/local_endpoints.hpp"
#include "base/ip.hpp"
#include "control/messages.hpp"

namespace knit::agent {

using RouteCarriers = std::map<IpPrefix, control::NodeKey>;

RouteCarriers choose_route_carriers(const std::vector<control::PeerInfo>& peers, const control::NodeKey& self,
                                    const std::vector<InterfaceAddress>& local);

// The prefixes of `carriers` that `peer` carries.
std::vector<IpPrefix> routes_carried_by(const RouteCarriers& carriers, const control::NodeKey& peer);

}  // namespace knit::agent
