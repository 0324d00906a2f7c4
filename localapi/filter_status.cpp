#include "localapi/filter_status.hpp"

namespace knit::localapi {

std::string_view to_string(ForwardProtocol protocol) {
  return protocol == ForwardProtocol::tcp ? "tcp" : "udp";
}

std::optional<ForwardProtocol> parse_forward_protocol(std::string_view text) {
  if (text == "tcp") return ForwardProtocol::tcp;
  if (text == "udp") return ForwardProtocol::udp;
  return std::nullopt;
}

std::string check_forward_rule(const ForwardRule& rule) {
  if (rule.mesh_port == 0) return "the mesh port must be 1 to 65535";
  if (rule.target.port() == 0) return "the target port must be 1 to 65535";
  const IpAddress& address = rule.target.address();
  if (!address.is_v4()) return "the target must be an IPv4 address (forwards are on the mesh IPv4)";
  const std::uint32_t a = address.v4_host_order();
  if ((a >> 24) == 127)
    return "the target cannot be a loopback address: the kernel does not accept 127/8 from the "
           "TUN; use an address of another interface of this host";
  if ((a >> 24) == 0 || (a >> 24) >= 224)  // 0/8, multicast, reserved and broadcast
    return "the target must be a unicast address (not 0/8, multicast or broadcast)";
  return {};
}

}  // namespace knit::localapi
