#include "coordinator/handshake_slots.hpp"

#include <algorithm>

namespace knit::coordinator {

SourceKey source_key(const asio::ip::address& address) {
  SourceKey key{};
  if (address.is_v4()) {
    const auto v4 = address.to_v4().to_bytes();
    key[10] = 0xff;
    key[11] = 0xff;
    std::copy(v4.begin(), v4.end(), key.begin() + 12);
    return key;
  }
  const asio::ip::address_v6 v6 = address.to_v6();
  if (v6.is_v4_mapped()) return source_key(asio::ip::make_address_v4(asio::ip::v4_mapped, v6));
  const auto bytes = v6.to_bytes();
  std::copy(bytes.begin(), bytes.begin() + 8, key.begin());  // the /64
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

}  // namespace knit::coordinator
