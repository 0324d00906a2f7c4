#include "agent/path_mtu_hints.hpp"

#include <algorithm>

namespace knit::agent {

namespace {

// An IPv4-mapped IPv6 address (a dual-stack socket's view of an IPv4 peer) as the IPv4 it is.
IpAddress unmapped(const IpAddress& address) {
  if (address.is_v4()) return address;
  const std::uint8_t* b = address.bytes();
  static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::equal(kMapped, kMapped + 12, b)) return IpAddress::v4(b + 12);
  return address;
}

bool believable(const IpAddress& address, std::size_t mtu) {
  return mtu >= (address.is_v4() ? PathMtuHints::kMinMtuV4 : PathMtuHints::kMinMtuV6) && mtu <= 65535;
}

constexpr std::size_t kUdpAndWireGuard = 8 + 32;  // UDP header, WireGuard's data header and tag

}  // namespace

PathMtuHints::Entry* PathMtuHints::find(const IpAddress& address) {
  const auto it = std::find_if(entries_.begin(), entries_.end(), [&](const Entry& e) { return e.address == address; });
  return it == entries_.end() ? nullptr : &*it;
}

const PathMtuHints::Entry* PathMtuHints::find(const IpAddress& address) const {
  const auto it = std::find_if(entries_.begin(), entries_.end(), [&](const Entry& e) { return e.address == address; });
  return it == entries_.end() ? nullptr : &*it;
}

PathMtuHints::Entry& PathMtuHints::entry(Instant now, const IpAddress& address) {
  if (Entry* e = find(address)) {
    e->touched = now;
    return *e;
  }
  if (entries_.size() >= kMaxEntries) {
    const auto stalest = std::min_element(entries_.begin(), entries_.end(),
                                          [](const Entry& a, const Entry& b) { return a.touched < b.touched; });
    entries_.erase(stalest);
  }
  Entry e;
  e.address = address;
  e.touched = now;
  entries_.push_back(e);
  return entries_.back();
}

bool PathMtuHints::record_icmp(Instant now, const IpAddress& raw, std::size_t mtu) {
  const IpAddress address = unmapped(raw);
  if (!believable(address, mtu)) return false;
  Entry& e = entry(now, address);
  const bool in_force = e.icmp_mtu != 0 && now < e.icmp_expires;
  const bool news = !in_force || mtu < e.icmp_mtu;
  e.icmp_mtu = in_force ? std::min(e.icmp_mtu, mtu) : mtu;
  e.icmp_expires = now + kIcmpLifetime;
  return news;
}

bool PathMtuHints::should_ask(Instant now, const IpAddress& raw) const {
  const Entry* e = find(unmapped(raw));
  return e == nullptr || !e->was_asked || now - e->asked >= kAskInterval;
}

void PathMtuHints::record_kernel(Instant now, const IpAddress& raw, std::optional<std::size_t> mtu) {
  const IpAddress address = unmapped(raw);
  Entry& e = entry(now, address);
  e.asked = now;
  e.was_asked = true;
  e.kernel_mtu = mtu && believable(address, *mtu) ? *mtu : 0;
}

std::size_t PathMtuHints::tunnel_mtu(Instant now, const Endpoint& endpoint) const {
  if (entries_.empty()) return 0;
  const IpAddress address = unmapped(endpoint.address());
  const Entry* e = find(address);
  if (e == nullptr) return 0;
  std::size_t mtu = e->kernel_mtu;
  if (e->icmp_mtu != 0 && now < e->icmp_expires && (mtu == 0 || e->icmp_mtu < mtu)) mtu = e->icmp_mtu;
  const std::size_t overhead = (address.is_v4() ? 20 : 40) + kUdpAndWireGuard;
  if (mtu <= overhead) return 0;
  return (mtu - overhead) / 16 * 16;
}

}  // namespace knit::agent
