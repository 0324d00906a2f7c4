#include "net/socket_error.hpp"

#include <linux/errqueue.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <algorithm>
#include <cstring>

namespace knit::net {

namespace {

// ICMP types and codes (RFC 792, RFC 4443).
constexpr std::uint8_t kIcmpDestUnreachable = 3;
constexpr std::uint8_t kIcmpFragNeeded = 4;
constexpr std::uint8_t kIcmp6PacketTooBig = 2;
constexpr std::uint8_t kIcmpTimeExceeded = 11;
constexpr std::uint8_t kIcmp6TimeExceeded = 3;

// The cmsg walk by hand, with memcpy: the bytes may be anyone's and unaligned (a fuzzer's),
// and CMSG_NXTHDR would read the header through a pointer before checking it fits.
constexpr std::size_t align(std::size_t n) { return CMSG_ALIGN(n); }
constexpr std::size_t kHeader = align(sizeof(cmsghdr));

std::optional<Endpoint> destination(ByteSpan name) {
  if (name.size() < sizeof(sa_family_t)) return std::nullopt;
  sockaddr_storage ss{};
  std::memcpy(&ss, name.data(), std::min(name.size(), sizeof ss));
  if (ss.ss_family == AF_INET && name.size() >= sizeof(sockaddr_in))
    return Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss));
  if (ss.ss_family == AF_INET6 && name.size() >= sizeof(sockaddr_in6))
    return Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&ss));
  return std::nullopt;
}

}  // namespace

bool SocketError::time_exceeded() const {
  return (origin == SO_EE_ORIGIN_ICMP && type == kIcmpTimeExceeded) ||
         (origin == SO_EE_ORIGIN_ICMP6 && type == kIcmp6TimeExceeded);
}

SocketError parse_socket_error(ByteSpan control, ByteSpan name) {
  SocketError out;
  std::size_t off = 0;
  while (off + kHeader <= control.size()) {
    cmsghdr h;
    std::memcpy(&h, control.data() + off, sizeof h);
    // A length that cannot hold its own header, or runs past the buffer: nothing after it is
    // trustworthy either.
    if (h.cmsg_len < sizeof(cmsghdr) || h.cmsg_len > control.size() - off) break;
    const bool v4 = h.cmsg_level == IPPROTO_IP && h.cmsg_type == IP_RECVERR;
    const bool v6 = h.cmsg_level == IPPROTO_IPV6 && h.cmsg_type == IPV6_RECVERR;
    if (v4 || v6) {
      if (h.cmsg_len < CMSG_LEN(sizeof(sock_extended_err))) return out;  // malformed
      sock_extended_err ee;
      std::memcpy(&ee, control.data() + off + kHeader, sizeof ee);
      out.error = ee.ee_errno;
      out.origin = ee.ee_origin;
      out.type = ee.ee_type;
      out.code = ee.ee_code;
      out.destination = destination(name);
      // SO_EE_OFFENDER: the sockaddr right after the sock_extended_err, inside this cmsg.
      const std::size_t after = kHeader + sizeof ee;
      if (h.cmsg_len > after) {
        if (auto o = destination(ByteSpan(control.data() + off + after, h.cmsg_len - after)))
          out.offender = o->address();
      }
      const bool too_big =
          (ee.ee_origin == SO_EE_ORIGIN_ICMP && ee.ee_type == kIcmpDestUnreachable && ee.ee_code == kIcmpFragNeeded) ||
          (ee.ee_origin == SO_EE_ORIGIN_ICMP6 && ee.ee_type == kIcmp6PacketTooBig);
      if (!too_big) {
        out.kind = SocketErrorKind::other;
        return out;
      }
      // RFC 1191 §4: an old router says 0; that, or a destination we cannot name, is no hint.
      if (ee.ee_info < kMinHintMtu || !out.destination) return out;  // malformed
      out.kind = SocketErrorKind::too_big;
      out.mtu = ee.ee_info;
      return out;
    }
    off += align(h.cmsg_len);
  }
  return out;  // no error message at all: malformed
}

Bytes encode_socket_error(bool v6_level, std::uint32_t error, std::uint8_t origin, std::uint8_t type,
                          std::uint8_t code, std::uint32_t info, const std::optional<IpAddress>& offender) {
  // sock_extended_err and the (empty) offender sockaddr_in6 after it, as ipv6_recv_error writes.
  const std::size_t payload = sizeof(sock_extended_err) + sizeof(sockaddr_in6);
  Bytes out(CMSG_SPACE(payload), 0);
  cmsghdr h{};
  h.cmsg_len = CMSG_LEN(payload);
  h.cmsg_level = v6_level ? IPPROTO_IPV6 : IPPROTO_IP;
  h.cmsg_type = v6_level ? IPV6_RECVERR : IP_RECVERR;
  std::memcpy(out.data(), &h, sizeof h);
  sock_extended_err ee{};
  ee.ee_errno = error;
  ee.ee_origin = origin;
  ee.ee_type = type;
  ee.ee_code = code;
  ee.ee_info = info;
  std::memcpy(out.data() + kHeader, &ee, sizeof ee);
  if (offender) {
    sockaddr_storage ss{};
    const unsigned length = Endpoint(*offender, 0).to_sockaddr(ss);
    std::memcpy(out.data() + kHeader + sizeof ee, &ss, std::min<std::size_t>(length, sizeof(sockaddr_in6)));
  }
  return out;
}

Bytes encode_socket_name(const Endpoint& to, bool dual_stack) {
  sockaddr_storage ss{};
  unsigned length;
  if (dual_stack && to.address().is_v4()) {
    std::uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    std::memcpy(mapped + 12, to.address().bytes(), 4);
    length = Endpoint(IpAddress::v6(mapped), to.port()).to_sockaddr(ss);
  } else {
    length = to.to_sockaddr(ss);
  }
  const auto* p = reinterpret_cast<const std::uint8_t*>(&ss);
  return Bytes(p, p + length);
}

}  // namespace knit::net
