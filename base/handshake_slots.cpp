#include "base/handshake_slots.hpp"

#include <algorithm>

namespace knit {

SourceKey source_key(const IpAddress& address) {
  SourceKey key{};
  static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (address.is_v4()) {
    std::copy_n(kMapped, 12, key.begin());
    std::copy_n(address.bytes(), 4, key.begin() + 12);
  } else if (std::equal(kMapped, kMapped + 12, address.bytes())) {
    std::copy_n(address.bytes(), 16, key.begin());  // v4-mapped: the IPv4 address's own key
  } else {
    std::copy_n(address.bytes(), 8, key.begin());  // the /64
  }
  return key;
}

std::size_t SourceKeyHash::operator()(const SourceKey& key) const {
  // FNV-1a: sources are chosen by whoever connects, but a slow bucket costs only while the
  // table is full, and the table is bounded.
  std::uint64_t h = 1469598103934665603ull;
  for (std::uint8_t byte : key) {
    h ^= byte;
    h *= 1099511628211ull;
  }
  return static_cast<std::size_t>(h);
}

}  // namespace knit
