// The endpoints knitd reports to the coordinator: every address of this host's interfaces that a
// peer could send to, with knitd's UDP port. For now that is each non-loopback IPv4 address and
// each IPv6 address of global scope (unique-local included; link-local needs a zone a peer cannot
// know); STUN-reflexive and mapped addresses come with hole punching.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/ip.hpp"

namespace knit::agent {

// One address of one interface, with its prefix length ("192.0.2.7/24").
struct InterfaceAddress {
  std::string interface;
  IpPrefix prefix;
  bool loopback = false;
  friend bool operator==(const InterfaceAddress&, const InterfaceAddress&) = default;
};

// The addresses of the interfaces that are up (getifaddrs). Empty when the call fails.
std::vector<InterfaceAddress> interface_addresses();

// True when address is inside prefix (same family, the first prefix.length bits equal).
bool prefix_contains(const IpPrefix& prefix, const IpAddress& address);

// The endpoints to report, IPv4 ones first, each once, at most `limit`: skips loopback
// interfaces, the mesh's own TUN (skip_interface) and any address inside skip_prefixes (the
// mesh's ranges), link-local, multicast and unspecified addresses.
std::vector<Endpoint> endpoints_to_report(const std::vector<InterfaceAddress>& addresses,
                                          std::uint16_t port, std::string_view skip_interface,
                                          const std::vector<IpPrefix>& skip_prefixes,
                                          std::size_t limit);

}  // namespace knit::agent
