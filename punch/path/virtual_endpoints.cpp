#include "punch/path/virtual_endpoints.hpp"

#include <array>

#include "base/bytes.hpp"

namespace knit::punch {

namespace {
constexpr std::uint16_t kVirtualPort = 1;
}  // namespace

bool VirtualEndpoints::is_virtual(const Endpoint& endpoint) {
  const IpAddress& a = endpoint.address();
  if (!a.is_v6() || endpoint.port() != kVirtualPort) return false;
  const std::uint8_t* b = a.bytes();
  // 0100:0000:0000:0000::/64
  return b[0] == 0x01 && b[1] == 0 && b[2] == 0 && b[3] == 0 && b[4] == 0 && b[5] == 0 &&
         b[6] == 0 && b[7] == 0;
}

Endpoint VirtualEndpoints::endpoint_of(std::uint32_t slot) {
  std::array<std::uint8_t, 16> b{};
  b[0] = 0x01;
  store_be32(b.data() + 12, slot);
  return Endpoint(IpAddress::v6(b.data()), kVirtualPort);
}

Endpoint VirtualEndpoints::assign(const wg::PublicKey& key) {
  if (auto it = by_key_.find(key); it != by_key_.end()) return endpoint_of(it->second);
  std::uint32_t slot;
  if (!free_.empty()) {
    slot = free_.back();
    free_.pop_back();
  } else {
    slot = next_++;
  }
  by_key_.emplace(key, slot);
  by_slot_.emplace(slot, key);
  return endpoint_of(slot);
}

std::optional<Endpoint> VirtualEndpoints::find(const wg::PublicKey& key) const {
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return std::nullopt;
  return endpoint_of(it->second);
}

std::optional<wg::PublicKey> VirtualEndpoints::key_of(const Endpoint& endpoint) const {
  if (!is_virtual(endpoint)) return std::nullopt;
  const std::uint32_t slot = load_be32(endpoint.address().bytes() + 12);
  auto it = by_slot_.find(slot);
  if (it == by_slot_.end()) return std::nullopt;
  return it->second;
}

void VirtualEndpoints::release(const wg::PublicKey& key) {
  auto it = by_key_.find(key);
  if (it == by_key_.end()) return;
  by_slot_.erase(it->second);
  free_.push_back(it->second);
  by_key_.erase(it);
}

}  // namespace knit::punch
