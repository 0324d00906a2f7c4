// Internal to localapi/: the JSON of the routing parts of the status report and of `knit nat`
// (subnet routes, their carriers, the router's SNAT, the exit node), written and read.
#pragma once

#include <vector>

#include "localapi/json_fields.hpp"
#include "localapi/protocol.hpp"

namespace knit::localapi::detail {

json prefixes_json(const std::vector<IpPrefix>& list);
std::vector<IpPrefix> prefixes_from(const json& list, const char* name);
json snat_json(const SnatStatus& s);
SnatStatus snat_from(const json& object);
json route_settings_json(const RouteSettingsStatus& r);
json exit_node_json(const ExitNodeStatus& e);
ExitNodeStatus exit_node_from(const json& object);
RouteSettingsStatus route_settings_from(const json& object);

}  // namespace knit::localapi::detail
