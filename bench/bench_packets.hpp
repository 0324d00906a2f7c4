// Packets the data-plane benchmarks feed the device: an IPv4/UDP-shaped packet of `size` bytes
// from src to dst (host order), the rest filler. Its checksums are not right; nothing checks them.
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/bytes.hpp"

namespace knit::bench {

inline Bytes ipv4_packet(std::size_t size, std::uint32_t src, std::uint32_t dst) {
  Bytes p(size, 0x5a);
  p[0] = 0x45;
  store_be16(p.data() + 2, static_cast<std::uint16_t>(size));
  p[9] = 17;
  store_be32(p.data() + 12, src);
  store_be32(p.data() + 16, dst);
  return p;
}

}  // namespace knit::bench
