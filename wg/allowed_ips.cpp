#include "wg/allowed_ips.hpp"

namespace knit::wg::allowed_ips_detail {

Key key_of(const IpAddress& address) {
  return address.is_v4() ? key_v4(address.bytes()) : key_v6(address.bytes());
}

IpPrefix prefix_of(const Key& key, unsigned length, bool v6) {
  std::uint8_t bytes[16];
  store_be64(bytes, key.words[0]);
  store_be64(bytes + 8, key.words[1]);
  return IpPrefix{v6 ? IpAddress::v6(bytes) : IpAddress::v4(bytes),
                  static_cast<std::uint8_t>(length)};
}

}  // namespace knit::wg::allowed_ips_detail
