// MeshConfigurator: the host routes of accepted subnet routes (route_choice.hpp), through the TUN.
#include <algorithm>

#include "agent/mesh.hpp"
#include "control/route_rules.hpp"

namespace knit::agent {

std::vector<std::string> MeshConfigurator::apply_routes(LinkControl& link, const RouteCarriers& carriers) {
  std::vector<std::string> failures;
  std::vector<IpPrefix> wanted;
  for (const auto& [route, carrier] : carriers)
    if (!control::is_default_route(route)) wanted.push_back(route);  // an exit's: exit_plan.hpp
  for (const IpPrefix& route : routes_) {
    if (std::find(wanted.begin(), wanted.end(), route) != wanted.end()) continue;
    // Gone already (removed by hand, or with the link) is fine.
    if (auto ec = link.remove_route(route); ec && ec != std::errc::no_such_process && ec != std::errc::no_such_device)
      failures.push_back("cannot remove the route to " + route.to_string() + ": " + ec.message());
  }
  std::vector<IpPrefix> installed;
  for (const IpPrefix& route : wanted) {
    const bool had = std::find(routes_.begin(), routes_.end(), route) != routes_.end();
    if (!had) {
      if (auto ec = link.add_route(route)) {
        // EEXIST: the host routes it through another interface already; that route stays.
        failures.push_back(ec == std::errc::file_exists
                               ? "not routing " + route.to_string() + " into the mesh: the host has a route to it already"
                               : "cannot add a route to " + route.to_string() + ": " + ec.message());
        continue;
      }
    }
    installed.push_back(route);
  }
  routes_ = std::move(installed);
  return failures;
}

}  // namespace knit::agent
