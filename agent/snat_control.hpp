// SnatControl: `knit nat` (the subnet router's translation table, router_nat.hpp) and the
// "self.routes.snat" part of `status` and of the `routes` answer, in front of RouteControl.
#pragma once

#include "agent/control_server.hpp"
#include "agent/router_nat.hpp"
#include "agent/snat_host.hpp"
#include "localapi/status.hpp"

namespace knit::agent {

// What people see of the SNAT: settings, counters and (with `entries`) every session.
localapi::SnatStatus snat_status(const RouterNat& nat, bool enabled, const std::string& problem, Instant now,
                                 bool entries);

class SnatControl final : public ControlHandler {
 public:
  SnatControl(const RouterNat& nat, const SnatHost& host, ControlHandler& next) : nat_(nat), host_(host), next_(next) {}
  void handle_request(localapi::ControlRequest request, Reply reply) override;

 private:
  const RouterNat& nat_;
  const SnatHost& host_;
  ControlHandler& next_;
};

}  // namespace knit::agent
