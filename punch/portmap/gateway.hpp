// The default IPv4 gateway, which is where NAT-PMP, PCP and (usually) the UPnP IGD live. Read
// from /proc/net/route (the kernel's IPv4 FIB as text), parsed here without I/O so tests can feed
// sample text:
//
//   Iface  Destination  Gateway   Flags  RefCnt  Use  Metric  Mask      MTU  Window  IRTT
//   eth0   00000000     0101A8C0  0003   0       0    100     00000000  0    0       0
//
// Addresses are the 32-bit value in host byte order printed as hex (little-endian on x86:
// 0101A8C0 is 192.168.1.1). A default route has destination and mask 0 and the flags RTF_UP
// (0x1) and RTF_GATEWAY (0x2); the lowest metric wins, the first line on a tie.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/ip.hpp"

namespace knit::punch {

struct DefaultGateway {
  std::string interface;
  IpAddress address;
  unsigned metric = 0;
};

// Malformed lines are skipped; nullopt when no line is a usable default route.
std::optional<DefaultGateway> parse_proc_net_route(std::string_view text);
// Reads the file (default /proc/net/route) and parses it; nullopt when unreadable.
std::optional<DefaultGateway> read_default_gateway(const std::string& path = "/proc/net/route");

}  // namespace knit::punch
