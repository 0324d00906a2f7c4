// The IP and UDP headers around a query read from the TUN and around its answer: the resolver
// listens on an address routed into the TUN, so knitd sees whole IP packets, not a socket.
//
//   IPv4  | 4 | IHL | TOS | total length | id | flags+fragment | TTL | 17 | checksum | src | dst |
//   IPv6  | 6 | class+flow | payload length | 17 | hop limit | src (16) | dst (16) |
//   UDP   | src port | dst port | length | checksum (RFC 768; over a pseudo-header) |
//
// Parsing is hostile-input safe: anything but one unfragmented UDP datagram whose lengths fit
// is refused. IPv6 packets with extension headers are refused too (a query never needs one).
#pragma once

#include <algorithm>
#include <optional>

#include "base/bytes.hpp"
#include "base/ip.hpp"

namespace knit::dns {

struct UdpPacket {
  Endpoint source;
  Endpoint destination;
  ByteSpan payload;  // into the packet parsed
};

// The UDP datagram in an IPv4 or IPv6 packet; nullopt for anything else.
std::optional<UdpPacket> parse_udp_packet(ByteSpan packet);
// Is this packet addressed to `address` (any protocol)? For dropping what is not UDP/53.
bool addressed_to(ByteSpan packet, const IpAddress& address);
// An IP packet carrying payload from `from` to `to` (same family), checksums filled in.
Bytes build_udp_packet(const Endpoint& from, const Endpoint& to, ByteSpan payload);

}  // namespace knit::dns
