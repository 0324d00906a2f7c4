// RouteControl: the CLI's subnet-route settings (`knit up/set --advertise-routes CIDR,...`,
// `--advertise-exit-node`, `--accept-routes`, `--exit-node`, `--exit-node-allow-lan`), answered
// in front of the membership. A change is
// checked (route_settings.hpp: no mesh, loopback, link-local, multicast or underlay prefixes;
// one sentence back otherwise), saved (routes.json) and handed to the membership, which tells
// the coordinator and applies accepted routes. `status` answers get "self.routes" and each
// peer's "routes" (what it carries, approved) and "routes_accepted" added.
#pragma once

#include "agent/control_server.hpp"
#include "agent/mesh_membership.hpp"
#include "agent/route_settings.hpp"

namespace knit::agent {

class RouteControl final : public ControlHandler {
 public:
  RouteControl(Membership& membership, RouteSettingsStore store, ControlHandler& next)
      : membership_(membership), store_(std::move(store)), next_(next) {}

  // Hands the saved settings to the membership; problems are logged (knitd starts anyway).
  void restore();

  void handle_request(localapi::ControlRequest request, Reply reply) override;

 private:
  localapi::ControlResponse change(const localapi::RoutesRequest& request);
  void add_status(localapi::StatusReport& status) const;
  // Why `knit set --exit-node wanted` is refused (one sentence), or empty: a node the peer map
  // has that is not an approved exit, or a name the map does not know. Without a map yet the
  // choice is accepted and stays pending.
  std::string exit_problem(const std::string& wanted) const;

  Membership& membership_;
  RouteSettingsStore store_;
  ControlHandler& next_;
};

}  // namespace knit::agent
