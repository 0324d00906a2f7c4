// The IP headers around what the resolver reads from and writes to the TUN: it listens on an
// address routed into the TUN, so knitd sees whole IP packets, not a socket. UDP queries
// (parse_udp_packet / build_udp_packet) and the segments of DNS over TCP (tcp_server.hpp).
//
//   IPv4  | 4 | IHL | TOS | total length | id | flags+fragment | TTL | proto | checksum | src | dst |
//   IPv6  | 6 | class+flow | payload length | next header | hop limit | src (16) | dst (16) |
//   UDP   | src port | dst port | length | checksum (RFC 768; over a pseudo-header) |
//
// Parsing is hostile-input safe: anything but one unfragmented packet whose lengths fit is
// refused. IPv6 packets with extension headers are refused too (a query never needs one).
#pragma once

#include <algorithm>
#include <cstdint>
#include <optional>

#include "base/bytes.hpp"
#include "base/ip.hpp"

namespace knit::dns {

inline constexpr std::uint8_t kProtocolTcp = 6;
inline constexpr std::uint8_t kProtocolUdp = 17;

// The transport payload of an IPv4 or IPv6 packet.
struct IpPayload {
  IpAddress source;
  IpAddress destination;
  std::uint8_t protocol = 0;
  ByteSpan payload;  // into the packet parsed, cut to the IP length
};
std::optional<IpPayload> parse_ip_packet(ByteSpan packet);

// An IP packet from `from` to `to` (same family) around `transport` (a TCP or UDP header with
// its payload), with the IPv4 header checksum and the transport checksum at
// `checksum_offset` of `transport` filled in over the RFC 793/768/8200 pseudo-header.
Bytes build_ip_packet(const IpAddress& from, const IpAddress& to, std::uint8_t protocol, ByteSpan transport,
                      std::size_t checksum_offset);

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
