// What one message of a UDP socket's error queue says (IP_RECVERR / IPV6_RECVERR, read with
// recvmsg(MSG_ERRQUEUE)): above all, an ICMP "fragmentation needed" or ICMPv6 "packet too big"
// about one of our outer datagrams, which names the largest packet the next hop carries. That
// is only a hint for the path MTU search (punch/path/pmtu.hpp): nothing depends on it arriving.
// Sans-I/O: the control and name bytes in, a verdict out; both are treated as hostile.
//
// The control bytes: cmsghdrs, each aligned to sizeof(size_t):
//
//   cmsghdr { size_t cmsg_len; int cmsg_level; int cmsg_type; }          16 bytes on 64-bit
//     level IPPROTO_IP   type IP_RECVERR    (an IPv4 socket)
//     level IPPROTO_IPV6 type IPV6_RECVERR  (a dual-stack socket, for IPv4 errors too)
//   sock_extended_err (linux/errqueue.h), 16 bytes:
//     u32 ee_errno | u8 ee_origin | u8 ee_type | u8 ee_code | u8 ee_pad | u32 ee_info | u32 ee_data
//     origin SO_EE_ORIGIN_ICMP,  type 3 code 4 (RFC 1191): ee_info = the next-hop MTU
//     origin SO_EE_ORIGIN_ICMP6, type 2 (RFC 8201):        ee_info = the MTU
//   then the offender's address (SO_EE_OFFENDER: sockaddr_in or sockaddr_in6, AF_UNSPEC when
//   none), the hop that sent the error: SocketError::offender.
//   Other messages (IP_PKTINFO / IPV6_PKTINFO, which the kernel adds to an error of a socket
//   that asks for them) are skipped.
//
// The name: the destination of the datagram the error is about (sockaddr_in / sockaddr_in6; a
// dual-stack socket names IPv4 destinations v4-mapped, reported here as IPv4).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "base/bytes.hpp"
#include "base/ip.hpp"

namespace knit::net {

enum class SocketErrorKind : std::uint8_t {
  too_big,    // ICMP frag-needed / ICMPv6 packet too big with a usable MTU, and a destination
  other,      // a well-formed error of any other kind (port unreachable, time exceeded, local)
  malformed,  // no error message, a short one, or a too-big one without a destination or MTU
};

struct SocketError {
  SocketErrorKind kind = SocketErrorKind::malformed;
  std::optional<Endpoint> destination;  // the datagram's destination, when the name holds one
  std::size_t mtu = 0;                  // too_big: the largest packet the next hop carries
  std::uint32_t error = 0;              // ee_errno (EMSGSIZE, ECONNREFUSED, ...)
  std::uint8_t origin = 0, type = 0, code = 0;
  // The address of the hop that sent the ICMP error (SO_EE_OFFENDER), when the kernel named one
  // (a v4-mapped one is reported as IPv4).
  std::optional<IpAddress> offender;
  // ICMP "time exceeded in transit" / ICMPv6 "hop limit exceeded": a datagram sent with a
  // short TTL (an opener, punch/path/manager.hpp) died at `offender`. Counted as `other`.
  bool time_exceeded() const;
};

// A too-big hint below this is not an MTU (IPv4's minimum is 68, RFC 791): malformed.
inline constexpr std::size_t kMinHintMtu = 68;

// control: the msg_control bytes recvmsg filled (msg_controllen of them); name: the msg_name
// bytes (msg_namelen of them). Never reads outside either.
SocketError parse_socket_error(ByteSpan control, ByteSpan name);

// The control bytes the kernel writes for one error (tests, fuzz seeds): a cmsghdr at
// IPPROTO_IPV6/IPV6_RECVERR (v6_level) or IPPROTO_IP/IP_RECVERR, then the sock_extended_err
// fields and an empty offender address.
Bytes encode_socket_error(bool v6_level, std::uint32_t error, std::uint8_t origin, std::uint8_t type,
                          std::uint8_t code, std::uint32_t info,
                          const std::optional<IpAddress>& offender = std::nullopt);
// The name bytes of a destination (sockaddr_in, or sockaddr_in6 when v6 or mapped).
Bytes encode_socket_name(const Endpoint& destination, bool dual_stack);

}  // namespace knit::net
