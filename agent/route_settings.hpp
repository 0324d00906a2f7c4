// What this node offers to route and whether it uses its peers' routes, kept across knitd
// restarts in the state directory (`routes.json`, mode 0600, replaced atomically):
//
//   {"advertise_routes": ["192.168.1.0/24"], "advertise_exit_node": false, "accept_routes": true,
//    "snat_routes": true, "exit_node": "gw", "exit_node_allow_lan": false}
//
// "exit_node" is the exit node this node uses (`knit set --exit-node NAME|IP`; "" or absent for
// none), as the user named it: a name or a mesh IP, looked up in each peer map.
//
// A damaged file is reported and ignored (knitd starts advertising nothing, accepting nothing).
#pragma once

#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "agent/local_endpoints.hpp"
#include "base/ip.hpp"

namespace knit::agent {

inline constexpr const char* kRouteSettingsFile = "routes.json";

struct RouteSettings {
  std::vector<IpPrefix> advertise;
  bool exit_node = false;
  bool accept = false;
  bool snat = true;  // `--snat-routes`: translate routed IPv4 to the router's address (router_nat.hpp)
  std::string use_exit;         // the exit node to use: a node name or mesh IP; empty: none
  bool exit_allow_lan = false;  // --exit-node-allow-lan: the host's LAN stays off the tunnel
  friend bool operator==(const RouteSettings&, const RouteSettings&) = default;
};

std::string encode_route_settings(const RouteSettings& settings);
std::optional<RouteSettings> parse_route_settings(const std::string& text, std::string& why);

// Why `routes` cannot be advertised from this host (one sentence), or empty: control::route_problem
// against the mesh's prefixes and this node's underlay to the mesh (`underlay`: the
// coordinator's addresses; peers taking such a route would send the control connection into
// the tunnel). A router's own LAN (which holds its LAN address) is what it advertises: allowed.
std::string advertise_problem(const std::vector<IpPrefix>& routes, const std::vector<IpPrefix>& mesh,
                              const std::vector<IpAddress>& underlay);

class RouteSettingsStore {
 public:
  explicit RouteSettingsStore(std::filesystem::path state_dir) : file_(std::move(state_dir) / kRouteSettingsFile) {}
  // Defaults when there is no file; throws std::runtime_error (one line) when it is damaged.
  RouteSettings load() const;
  void save(const RouteSettings& settings) const;

 private:
  std::filesystem::path file_;
};

}  // namespace knit::agent
