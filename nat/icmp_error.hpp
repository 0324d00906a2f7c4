// ICMP errors the engine itself originates: 3/13 when the table is full (RFC 5508 REQ-8),
// 11/0 when a TTL runs out, 3/3 for an unsolicited SYN after its hold (RFC 5382 REQ-4).
//
//   [ IPv4 header, 20 B, TTL 64, DF ][ type | code | checksum | unused (4) ]
//   [ offending IP header (with options) | first 8 bytes of its payload ]   (RFC 792)
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "base/bytes.hpp"
#include "nat/packet_view.hpp"

namespace knit::nat {

// RFC 1122 §3.2.2: never about an ICMP error, a non-first fragment, or a packet whose source
// is not one host (zero, loopback, multicast, broadcast, class E).
bool may_send_icmp_error_about(const PacketView& offending);

// The bytes of `packet` an error quotes: its IP header and up to 8 bytes of payload.
ByteSpan icmp_error_quote(ByteSpan packet, const PacketView& offending);

// Writes the error from `source` to `destination` into `out`. Returns the bytes written, or 0
// when `out` is too small (kIcmpErrorMaxSize always suffices).
std::size_t write_icmp_error(std::span<std::uint8_t> out, std::uint8_t type, std::uint8_t code,
                             std::uint32_t source, std::uint32_t destination, ByteSpan quote);

// Addresses no NAT forwards from or to: 0/8, 127/8, multicast and 240/4 (broadcast included).
inline bool is_martian(std::uint32_t address) {
  const std::uint32_t first = address >> 24;
  return first == 0 || first == 127 || first >= 224;
}

}  // namespace knit::nat
