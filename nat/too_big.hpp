// "Packet too big" answers the agent gives its own host, as a router gives them for a link
// whose MTU a packet exceeds: the packet came from the TUN for a peer whose path carries less
// than the tunnel MTU (the path MTU search proved it, punch/path/pmtu.hpp), and sealing it
// would make an outer packet the path drops. TCP is already clamped to fit (mss_clamp.hpp);
// this is what makes UDP, QUIC and ping -M do adapt too.
//
//   IPv4 with DF   ICMP 3/4 "fragmentation needed" (RFC 792), the next-hop MTU in the second
//                  word (RFC 1191 §4), quoting the IP header and 8 bytes of payload
//   IPv6           ICMPv6 2/0 "packet too big" (RFC 4443 §3.2), the MTU in the second word,
//                  quoting as much of the packet as fits in 1280 bytes
//   IPv4 without DF: no answer (the sender allowed fragmentation; the packet goes as it is)
//
// The answer comes from the offending packet's destination (its peer's address, routed
// through the TUN, so the host's reverse-path check accepts it; a packet from one of the
// host's own addresses would be a martian) to its source. Never about an ICMP error, a
// non-first fragment, or from/to an address that is not one host (RFC 1122 §3.2.2, RFC 4443
// §2.4 (e)). Sans-I/O: the rate limit takes the time as an argument.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>

#include "base/bytes.hpp"
#include "base/time.hpp"

namespace knit::nat {

inline constexpr std::size_t kTooBigMaxSize = 1280;  // IPv6's minimum MTU bounds both answers
inline constexpr std::size_t kMinLinkMtuV4 = 576;     // never tell a sender less than this...
inline constexpr std::size_t kMinLinkMtuV6 = 1280;    // ...or, for IPv6, than the minimum MTU

enum class TooBigVerdict : std::uint8_t {
  answered,    // `out` holds the ICMP/ICMPv6 packet to write to the TUN
  fragmentable,  // IPv4 without DF: send it as it is
  not_allowed,   // an ICMP error, a later fragment, a martian address: drop silently
  malformed,     // not a whole IP header
};

// Writes the answer about `packet` (an IP packet too big for `mtu`) into `out` (at least
// kTooBigMaxSize bytes) and sets `size`. `mtu` below the protocol's minimum is raised to it.
TooBigVerdict write_too_big(std::span<std::uint8_t> out, ByteSpan packet, std::size_t mtu,
                            std::size_t& size);

// A token bucket for the answers (RFC 4443 §2.4 (f) asks for a limit; Linux's default for its
// own ICMP errors is about this): `rate` a second, bursts of `burst`.
class TooBigLimiter {
 public:
  explicit TooBigLimiter(double rate = 50, double burst = 20) : rate_(rate), burst_(burst), tokens_(burst) {}
  bool allow(Instant now);

 private:
  double rate_;
  double burst_;
  double tokens_;
  Instant last_{};
  bool started_ = false;
};

}  // namespace knit::nat
