// Which prefixes a node may offer to route (subnet routers, exit nodes), shared by knitd (which
// refuses them at `knit up/set`) and the coordinator (which refuses them at approval and never
// publishes them). A core: no I/O.
//
// Refused: host bits set; the default routes (offered with --advertise-exit-node, never as a
// subnet); anything overlapping the mesh's own prefixes, loopback (127.0.0.0/8, ::1/128),
// link-local (169.254.0.0/16, fe80::/10), multicast (224.0.0.0/4, ff00::/8) or the unspecified
// and broadcast addresses (0.0.0.0/8, 255.255.255.255/32); and, on the agent, its underlay to
// the mesh (the coordinator's addresses: peers would pull that traffic into the tunnel).
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/ip.hpp"

namespace knit::control {

// The exit node's routes, as the peer map carries them.
inline const IpPrefix& default_route_v4() {
  static const IpPrefix p = *IpPrefix::parse("0.0.0.0/0");
  return p;
}
inline const IpPrefix& default_route_v6() {
  static const IpPrefix p = *IpPrefix::parse("::/0");
  return p;
}
bool is_default_route(const IpPrefix& prefix);

// address inside prefix (same family).
bool prefix_holds(const IpPrefix& prefix, const IpAddress& address);
// Two prefixes share an address.
bool prefixes_overlap(const IpPrefix& a, const IpPrefix& b);

// Why `route` cannot be offered as a subnet route (one sentence), or empty when it can. `mesh`:
// the mesh's prefixes (may be empty when unknown); `underlay`: prefixes the route must not
// overlap (empty on the coordinator).
std::string route_problem(const IpPrefix& route, const std::vector<IpPrefix>& mesh,
                          const std::vector<IpPrefix>& underlay = {});

// "10.0.0.0/8,192.168.1.0/24" -> prefixes (spaces around commas allowed; empty text: none).
// On a bad element, `error` says which and nullopt is returned. Host bits set are refused.
// `allow_exit`: the word "exit" is accepted and sets *exit.
struct RouteList {
  std::vector<IpPrefix> routes;
  bool exit = false;
};
std::optional<RouteList> parse_route_list(std::string_view text, bool allow_exit, std::string& error);
std::string format_route_list(const RouteList& list);

}  // namespace knit::control
