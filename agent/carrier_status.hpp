// `status --json` "self.routes.carriers" (localapi/status.hpp: RouteCarrierStatus): for each
// accepted subnet route, the peer that carries it now and what is known of the others (offline
// at the coordinator, down or recovering by carrier_health.hpp, standing by). No I/O.
#pragma once

#include <vector>

#include "agent/carrier_health.hpp"
#include "agent/local_endpoints.hpp"
#include "agent/route_choice.hpp"
#include "localapi/status.hpp"

namespace knit::agent {

std::vector<localapi::RouteCarrierStatus> route_carrier_status(const std::vector<control::PeerInfo>& peers,
                                                               const control::NodeKey& self,
                                                               const std::vector<InterfaceAddress>& local,
                                                               const RouteCarriers& carriers,
                                                               const CarrierHealth& health, Instant now);

}  // namespace knit::agent
