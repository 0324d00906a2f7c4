#include "agent/local_endpoints.hpp"

#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>

namespace knit::agent {

namespace {

// Number of leading one bits of a netmask (a non-contiguous mask counts up to its first zero).
std::uint8_t mask_length(const sockaddr* mask, std::size_t max_bits) {
  if (mask == nullptr) return static_cast<std::uint8_t>(max_bits);
  const std::uint8_t* bytes = nullptr;
  if (mask->sa_family == AF_INET)
    bytes = reinterpret_cast<const std::uint8_t*>(&reinterpret_cast<const sockaddr_in*>(mask)->sin_addr);
  else if (mask->sa_family == AF_INET6)
    bytes = reinterpret_cast<const std::uint8_t*>(&reinterpret_cast<const sockaddr_in6*>(mask)->sin6_addr);
  else
    return static_cast<std::uint8_t>(max_bits);
  std::size_t bits = 0;
  while (bits < max_bits && (bytes[bits / 8] & (0x80 >> (bits % 8))) != 0) ++bits;
  return static_cast<std::uint8_t>(bits);
}

bool reportable(const IpAddress& address) {
  if (address.is_unspecified()) return false;
  const std::uint8_t* b = address.bytes();
  if (address.is_v4()) {
    if (b[0] == 127) return false;                 // loopback
    if (b[0] == 169 && b[1] == 254) return false;  // link-local (RFC 3927)
    if (b[0] >= 224) return false;                 // multicast, reserved, broadcast
    return true;
  }
  if (b[0] == 0xff) return false;                        // multicast
  if (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) return false;  // link-local fe80::/10
  static constexpr std::uint8_t kLoopback[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  if (std::equal(b, b + 16, kLoopback)) return false;
  // v4-mapped ::ffff:0:0/96 is not an interface address a peer can use.
  static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::equal(b, b + 12, kMapped)) return false;
  return true;
}

}  // namespace

std::vector<InterfaceAddress> interface_addresses() {
  std::vector<InterfaceAddress> out;
  ifaddrs* list = nullptr;
  if (::getifaddrs(&list) != 0) return out;
  for (const ifaddrs* entry = list; entry != nullptr; entry = entry->ifa_next) {
    if (entry->ifa_addr == nullptr || (entry->ifa_flags & IFF_UP) == 0) continue;
    const int family = entry->ifa_addr->sa_family;
    if (family != AF_INET && family != AF_INET6) continue;
    auto endpoint = Endpoint::from_sockaddr(entry->ifa_addr);
    if (!endpoint) continue;
    InterfaceAddress address;
    address.interface = entry->ifa_name != nullptr ? entry->ifa_name : "";
    address.prefix.address = endpoint->address();
    address.prefix.length = mask_length(entry->ifa_netmask, family == AF_INET ? 32 : 128);
    address.loopback = (entry->ifa_flags & IFF_LOOPBACK) != 0;
    out.push_back(std::move(address));
  }
  ::freeifaddrs(list);
  return out;
}

bool prefix_contains(const IpPrefix& prefix, const IpAddress& address) {
  if (prefix.address.family() != address.family()) return false;
  const std::size_t bits = std::min<std::size_t>(prefix.length, address.size() * 8);
  const std::uint8_t* a = prefix.address.bytes();
  const std::uint8_t* b = address.bytes();
  const std::size_t whole = bits / 8;
  if (!std::equal(a, a + whole, b)) return false;
  const std::size_t rest = bits % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xff << (8 - rest));
  return (a[whole] & mask) == (b[whole] & mask);
}

std::vector<Endpoint> endpoints_to_report(const std::vector<InterfaceAddress>& addresses,
                                          std::uint16_t port, std::string_view skip_interface,
                                          const std::vector<IpPrefix>& skip_prefixes,
                                          std::size_t limit) {
  std::vector<Endpoint> v4;
  std::vector<Endpoint> v6;
  for (const InterfaceAddress& entry : addresses) {
    if (entry.loopback || (!skip_interface.empty() && entry.interface == skip_interface)) continue;
    const IpAddress& address = entry.prefix.address;
    if (!reportable(address)) continue;
    if (std::any_of(skip_prefixes.begin(), skip_prefixes.end(),
                    [&](const IpPrefix& p) { return prefix_contains(p, address); }))
      continue;
    auto& list = address.is_v4() ? v4 : v6;
    Endpoint endpoint(address, port);
    if (std::find(list.begin(), list.end(), endpoint) == list.end()) list.push_back(endpoint);
  }
  v4.insert(v4.end(), v6.begin(), v6.end());
  if (v4.size() > limit) v4.resize(limit);
  return v4;
}

}  // namespace knit::agent
