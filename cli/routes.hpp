// The subnet-route flags of `knit up` and `knit set` (--advertise-routes CIDR,...,
// --advertise-exit-node, --accept-routes), sent to knitd as one localapi::RoutesRequest.
#pragma once

#include <CLI/CLI.hpp>

#include <optional>
#include <string>

#include "localapi/protocol.hpp"

namespace knit::cli {

struct RouteFlags {
  std::optional<std::string> advertise_routes;  // "" withdraws every route
  std::optional<bool> advertise_exit_node;
  std::optional<bool> accept_routes;
  std::optional<bool> snat_routes;
  std::optional<std::string> exit_node;  // "" for none
  std::optional<bool> exit_node_allow_lan;
  bool any() const {
    return advertise_routes || advertise_exit_node || accept_routes || snat_routes || exit_node || exit_node_allow_lan;
  }
};

// `up`: --advertise-routes, --advertise-exit-node (a flag); `set`: the same with =true|false
// and --accept-routes. Both: --snat-routes=true|false, --exit-node NAME|IP ("" for none),
// --exit-node-allow-lan=true|false.
void add_route_flags(CLI::App* command, RouteFlags& flags, bool for_up);
// Throws CliError (one line) for a list that is not CIDR prefixes.
localapi::RoutesRequest routes_request(const RouteFlags& flags);
std::string describe(const localapi::RouteSettingsStatus& routes);
// A line for stderr when IPv4 routes are advertised but this host does not forward IPv4.
std::optional<std::string> forwarding_warning(const localapi::RouteSettingsStatus& routes);

}  // namespace knit::cli
