#include "punch/portmap/types.hpp"

namespace knit::punch {

std::string_view to_string(PortMapProtocol protocol) {
  switch (protocol) {
    case PortMapProtocol::pcp: return "pcp";
    case PortMapProtocol::natpmp: return "natpmp";
    case PortMapProtocol::upnp: return "upnp";
  }
  return "unknown";
}

std::optional<PortMapProtocol> parse_port_map_protocol(std::string_view text) {
  if (text == "pcp") return PortMapProtocol::pcp;
  if (text == "natpmp" || text == "nat-pmp") return PortMapProtocol::natpmp;
  if (text == "upnp") return PortMapProtocol::upnp;
  return std::nullopt;
}

std::string_view to_string(PortMapErrc error) {
  switch (error) {
    case PortMapErrc::no_gateway: return "no default IPv4 gateway";
    case PortMapErrc::socket_error: return "socket error";
    case PortMapErrc::timeout: return "no answer before the deadline";
    case PortMapErrc::refused: return "gateway port unreachable";
    case PortMapErrc::unsupported: return "gateway does not speak the protocol";
    case PortMapErrc::not_authorized: return "gateway refused the mapping";
    case PortMapErrc::server_error: return "gateway error";
    case PortMapErrc::no_igd: return "no UPnP Internet Gateway Device found";
    case PortMapErrc::upnp_error: return "UPnP action failed";
    case PortMapErrc::bad_external: return "unusable external address";
    case PortMapErrc::cancelled: return "cancelled";
  }
  return "unknown";
}

std::string PortMapFailure::to_string() const {
  std::string s(punch::to_string(protocol));
  s += ": ";
  s += punch::to_string(error);
  if (!detail.empty()) {
    s += " (";
    s += detail;
    s += ')';
  }
  return s;
}

}  // namespace knit::punch
