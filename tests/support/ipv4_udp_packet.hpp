// The smallest IPv4/UDP packet a WireGuard test pushes through a device: version/IHL, total
// length, TTL 64, protocol 17 and the addresses set, every other byte (the rest of the headers,
// no checksums, and `payload` bytes) `fill`. Enough for cryptokey routing, which reads only the
// addresses; not a packet for the NAT engine (nat/packet_builder.hpp builds checked ones).
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/bytes.hpp"

namespace knit::testing {

inline Bytes ipv4_udp_packet(std::uint32_t src, std::uint32_t dst, std::size_t payload, std::uint8_t fill = 0xab) {
  Bytes p(28 + payload, fill);
  p[0] = 0x45;
  store_be16(p.data() + 2, static_cast<std::uint16_t>(p.size()));
  p[8] = 64;
  p[9] = 17;
  store_be32(p.data() + 12, src);
  store_be32(p.data() + 16, dst);
  return p;
}

}  // namespace knit::testing
