// What the kernel knows of the path MTU to an address: the MTU of its route there, including
// what an ICMP "fragmentation needed" / "packet too big" taught it (a PMTU exception), as a
// connected UDP socket reads it (IP_MTU / IPV6_MTU, ip(7), ipv6(7)). The socket carries knitd's
// underlay mark, so the route is the one knitd's own datagrams take (not an exit node's tunnel).
// A few system calls and no packet sent: ask rarely (agent/path_mtu_hints.hpp).
#pragma once

#include <cstddef>
#include <optional>

#include "base/ip.hpp"

namespace knit::net {

// nullopt when the kernel cannot say (no route, or the calls failed).
std::optional<std::size_t> kernel_path_mtu(const Endpoint& to);

}  // namespace knit::net
