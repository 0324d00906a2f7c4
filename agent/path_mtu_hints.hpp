// What the host knows of the outer path to each address, for peers configured by hand through
// `wg` (no disco, so no path MTU search, punch/path/pmtu.hpp). In that mode the socket keeps the
// kernel's default (IP_PMTUDISC_WANT): once a router's "fragmentation needed" / "packet too big"
// arrives, the kernel fragments knitd's larger datagrams to fit, so transfers complete, but every
// full-size TCP segment then leaves in two pieces. knitd learns the same path MTU two ways and
// keeps it here, so the MSS clamp (nat/mss_clamp.hpp) fits new TCP connections to the path
// instead, as it does for mesh peers:
//
//   record_icmp(now, address, mtu)    an ICMP about a datagram to `address` (IP_RECVERR,
//                                     net/socket_error.hpp), the moment it arrives; kept as long
//                                     as the kernel keeps it (net.ipv4.route.mtu_expires, 600 s)
//   should_ask / record_kernel        what the kernel's route cache says (net/route_mtu.hpp),
//                                     asked at most every kAskInterval per address: covers what
//                                     the kernel learned before knitd ran
//   tunnel_mtu(now, endpoint)         the smaller of the two, less the outer headers (IPv4 20 /
//                                     IPv6 40, UDP 8, WireGuard 32), down to WireGuard's 16-byte
//                                     padding; 0 when nothing is known
//
// Bounded (the least recently refreshed entry goes). Sans-I/O: time and answers come in.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "base/ip.hpp"
#include "base/time.hpp"

namespace knit::agent {

class PathMtuHints {
 public:
  static constexpr std::size_t kMaxEntries = 1024;
  static constexpr Duration kIcmpLifetime = std::chrono::seconds(600);
  static constexpr Duration kAskInterval = std::chrono::seconds(10);
  // Below these an MTU is not believed (RFC 1191 §3's 68 is legal but would clamp TCP to
  // nothing useful; RFC 8201: IPv6 paths carry 1280).
  static constexpr std::size_t kMinMtuV4 = 576;
  static constexpr std::size_t kMinMtuV6 = 1280;

  // True when this is news (a new address, or a smaller MTU than the last ICMP said); false
  // when refused (below the minimum) or when it only refreshes what was known.
  bool record_icmp(Instant now, const IpAddress& address, std::size_t mtu);
  // Whether the kernel should be asked about `address` now (never asked, or kAskInterval ago).
  bool should_ask(Instant now, const IpAddress& address) const;
  // The kernel's answer: the MTU of its route to `address` (nullopt: it could not say).
  void record_kernel(Instant now, const IpAddress& address, std::optional<std::size_t> mtu);
  std::size_t tunnel_mtu(Instant now, const Endpoint& endpoint) const;
  std::size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    IpAddress address;
    std::size_t icmp_mtu = 0;  // 0: none in force
    Instant icmp_expires{};
    std::size_t kernel_mtu = 0;  // 0: never asked, or no answer
    Instant asked{};
    bool was_asked = false;
    Instant touched{};
  };
  Entry* find(const IpAddress& address);
  const Entry* find(const IpAddress& address) const;
  Entry& entry(Instant now, const IpAddress& address);
  std::vector<Entry> entries_;
};

}  // namespace knit::agent
