#include "cli/routes.hpp"

#include <fstream>
#include <memory>

#include "cli/client.hpp"

namespace knit::cli {

void add_route_flags(CLI::App* command, RouteFlags& flags, bool for_up) {
  command->add_option("--advertise-routes", flags.advertise_routes,
                      "CIDR[,CIDR...]: subnets this node routes for the mesh (once an admin approves them; "
                      "--advertise-routes= withdraws them)")
      ->expected(0, 1);
  command->add_option("--snat-routes", flags.snat_routes,
                      "true (default): traffic from peers into the advertised IPv4 subnets leaves with this "
                      "host's LAN address; false: untranslated, for LANs that route the mesh back themselves");
  if (for_up) {
    command->add_flag_callback("--advertise-exit-node", [&flags] { flags.advertise_exit_node = true; },
                               "offer this node as an exit node (once an admin approves it)");
  } else {
    command->add_option("--advertise-exit-node", flags.advertise_exit_node, "true: offer this node as an exit node");
    command->add_option("--accept-routes", flags.accept_routes,
                        "true: send traffic for peers' approved subnet routes through them");
  }
  command->add_option("--exit-node", flags.exit_node,
                      "NAME|IP: send this host's internet traffic through that approved exit node "
                      "(--exit-node= stops)")
      ->expected(0, 1);
  command->add_option("--exit-node-allow-lan", flags.exit_node_allow_lan,
                      "true: this host's LAN stays reachable directly while an exit node is used (default false)");
}

localapi::RoutesRequest routes_request(const RouteFlags& flags) {
  localapi::RoutesRequest request;
  if (flags.advertise_routes) {
    std::vector<IpPrefix> routes;
    std::string_view text = *flags.advertise_routes;
    while (!text.empty()) {
      const std::size_t comma = text.find(',');
      std::string_view item = text.substr(0, comma);
      while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
      while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
      const auto prefix = item.find('/') == std::string_view::npos ? std::nullopt : IpPrefix::parse(item);
      if (!prefix) throw CliError("--advertise-routes: '" + std::string(item) + "' is not a CIDR prefix such as 192.168.1.0/24");
      routes.push_back(*prefix);
      if (comma == std::string_view::npos) break;
      text = text.substr(comma + 1);
    }
    request.advertise_routes = std::move(routes);
  }
  request.advertise_exit_node = flags.advertise_exit_node;
  request.accept_routes = flags.accept_routes;
  request.snat_routes = flags.snat_routes;
  request.exit_node = flags.exit_node;
  request.exit_node_allow_lan = flags.exit_node_allow_lan;
  return request;
}

std::optional<std::string> forwarding_warning(const localapi::RouteSettingsStatus& routes) {
  bool v4 = false;
  for (const IpPrefix& p : routes.advertised) v4 = v4 || p.address.is_v4();
  if (!v4) return std::nullopt;
  std::ifstream file("/proc/sys/net/ipv4/ip_forward");
  char value = '?';
  if (!(file >> value) || value != '0') return std::nullopt;
  return "note: IPv4 forwarding is off on this host (net.ipv4.ip_forward=0): the advertised routes "
         "carry nothing until it is on (knitd does not change it)";
}

std::string describe(const localapi::RouteSettingsStatus& routes) {
  std::string advertised;
  for (const IpPrefix& p : routes.advertised) advertised += (advertised.empty() ? "" : ",") + p.to_string();
  return "advertise-routes " + (advertised.empty() ? std::string("(none)") : advertised) + "\nadvertise-exit-node " +
         (routes.exit_node ? "true" : "false") + "\naccept-routes " + (routes.accept ? "true" : "false") +
         "\nexit-node " + (routes.use_exit.empty() ? std::string("(none)") : routes.use_exit) +
         "\nexit-node-allow-lan " + (routes.exit_allow_lan ? "true" : "false") + "\n" +
         (routes.snat ? std::string("snat-routes ") + (routes.snat->enabled ? "true" : "false") + "\n" : std::string());
}

}  // namespace knit::cli
