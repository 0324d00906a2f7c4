// IPv6 packets for the agent's routing tests (nat/packet_builder.hpp builds IPv4 only): TCP,
// UDP, ICMPv6 echo and ICMPv6 errors with valid checksums, and a checksum check.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#include "base/bytes.hpp"
#include "base/checksum.hpp"
#include "base/ip.hpp"

namespace knit::testing {

inline constexpr std::uint8_t kV6Tcp = 6;
inline constexpr std::uint8_t kV6Udp = 17;
inline constexpr std::uint8_t kV6Icmp = 58;

inline std::uint64_t v6_pseudo_sum(ByteSpan packet, std::size_t length, std::uint8_t next) {
  std::uint8_t pseudo[40] = {};
  std::memcpy(pseudo, &packet[8], 32);
  pseudo[34] = static_cast<std::uint8_t>(length >> 8);
  pseudo[35] = static_cast<std::uint8_t>(length);
  pseudo[39] = next;
  return checksum_accumulate(ByteSpan(pseudo, 40));
}

// Does the transport checksum of the IPv6 packet (no extension headers) hold?
inline bool v6_checksum_ok(ByteSpan packet) {
  const std::size_t length = packet.size() - 40;
  const std::uint64_t sum = checksum_accumulate(packet.subspan(40, length), v6_pseudo_sum(packet, length, packet[6]));
  return checksum_fold(sum) == 0xffff;
}

inline void v6_fill_checksum(Bytes& p) {
  const std::uint8_t next = p[6];
  const std::size_t at = 40 + (next == kV6Tcp ? 16 : next == kV6Udp ? 6 : 2);
  p[at] = p[at + 1] = 0;
  const std::size_t length = p.size() - 40;
  auto c = static_cast<std::uint16_t>(~checksum_fold(checksum_accumulate(ByteSpan(p).subspan(40, length),
                                                                          v6_pseudo_sum(p, length, next))));
  if (next == kV6Udp && c == 0) c = 0xffff;
  store_be16(&p[at], c);
}

inline Bytes v6_header(const IpAddress& source, const IpAddress& destination, std::uint8_t next, std::size_t payload) {
  Bytes p(40 + payload, 0);
  p[0] = 0x60;
  store_be16(&p[4], static_cast<std::uint16_t>(payload));
  p[6] = next;
  p[7] = 64;
  std::memcpy(&p[8], source.bytes(), 16);
  std::memcpy(&p[24], destination.bytes(), 16);
  return p;
}

// TCP (with `flags`) or UDP between two IPv6 endpoints, 8 payload bytes.
inline Bytes make_tcp6(const Endpoint& source, const Endpoint& destination, std::uint8_t flags) {
  Bytes p = v6_header(source.address(), destination.address(), kV6Tcp, 28);
  store_be16(&p[40], source.port());
  store_be16(&p[42], destination.port());
  p[52] = 5 << 4;
  p[53] = flags;
  v6_fill_checksum(p);
  return p;
}
inline Bytes make_udp6(const Endpoint& source, const Endpoint& destination) {
  Bytes p = v6_header(source.address(), destination.address(), kV6Udp, 16);
  store_be16(&p[40], source.port());
  store_be16(&p[42], destination.port());
  store_be16(&p[44], 16);
  v6_fill_checksum(p);
  return p;
}
// An ICMPv6 echo request (128) or reply (129) with this identifier.
inline Bytes make_echo6(const IpAddress& source, const IpAddress& destination, std::uint8_t type, std::uint16_t id) {
  Bytes p = v6_header(source, destination, kV6Icmp, 16);
  p[40] = type;
  store_be16(&p[44], id);
  store_be16(&p[46], 1);
  v6_fill_checksum(p);
  return p;
}
// An ICMPv6 error (type 1-4) from `source` about `quoted`, sent to the quoted packet's source.
inline Bytes make_error6(const IpAddress& source, std::uint8_t type, const Bytes& quoted) {
  Bytes p = v6_header(source, IpAddress::v6(&quoted[8]), kV6Icmp, 8 + quoted.size());
  p[40] = type;
  std::copy(quoted.begin(), quoted.end(), p.begin() + 48);
  v6_fill_checksum(p);
  return p;
}

inline IpAddress v6_source(const Bytes& p) { return IpAddress::v6(&p[8]); }
inline IpAddress v6_destination(const Bytes& p) { return IpAddress::v6(&p[24]); }

}  // namespace knit::testing
