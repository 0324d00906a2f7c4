// ICMP echo for `knit ping`: one socket towards one mesh address. Unprivileged ping sockets
// (SOCK_DGRAM with IPPROTO_ICMP / IPPROTO_ICMPV6, allowed by net.ipv4.ping_group_range) first,
// a raw socket (root or CAP_NET_RAW) otherwise.
//
//   echo request / reply (RFC 792, RFC 4443 §4.1-4.2):
//   0 type u8 | 1 code u8 | 2 checksum be16 | 4 identifier be16 | 6 sequence be16 | 8 data...
//   type: request 8 (v4) / 128 (v6); reply 0 (v4) / 129 (v6)
//
// A ping socket's identifier is chosen by the kernel and replies are matched to the socket by
// it; on a raw socket we pick the identifier and match replies ourselves. A raw IPv4 socket hands
// over the IP header too; ICMPv6 checksums are always the kernel's.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>

#include "base/bytes.hpp"
#include "base/ip.hpp"

namespace knit::cli {

class IcmpPinger {
 public:
  // Throws CliError when no ICMP socket can be had.
  explicit IcmpPinger(const IpAddress& target);
  ~IcmpPinger();
  IcmpPinger(const IcmpPinger&) = delete;
  IcmpPinger& operator=(const IcmpPinger&) = delete;

  // Sends echo request `sequence` and waits up to timeout for its reply: the round trip in
  // milliseconds, or nullopt on timeout. Throws CliError when sending fails outright.
  std::optional<double> echo(std::uint16_t sequence, std::chrono::milliseconds timeout);

 private:
  IpAddress target_;
  int fd_ = -1;
  bool raw_ = false;
  std::uint16_t identifier_ = 0;
};

// The echo request as sent (checksum filled for IPv4; the kernel fills it for IPv6).
Bytes make_echo_request(bool v6, std::uint16_t identifier, std::uint16_t sequence, ByteSpan data);
// Whether a received datagram is the reply to (identifier, sequence). skip_ip_header: a raw IPv4
// socket's datagram, which starts with the IP header. check_identifier: false on ping sockets,
// where the kernel already matched it.
bool is_echo_reply(ByteSpan datagram, bool v6, bool skip_ip_header, bool check_identifier,
                   std::uint16_t identifier, std::uint16_t sequence);

}  // namespace knit::cli
