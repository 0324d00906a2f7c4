// net/socket_error.hpp: the error-queue messages of a UDP socket, from hand-built control
// buffers (the layout the kernel writes: ip_recv_error, ipv6_recv_error): too-big hints from
// ICMP and ICMPv6, other errors, and hostile input (short, truncated, wrong level or type,
// lengths that lie) counted as malformed and never read past.
#include <gtest/gtest.h>

#include <linux/errqueue.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "net/socket_error.hpp"

namespace knit::net {
namespace {

Endpoint ep(const char* text) { return Endpoint::parse(text).value(); }

// A cmsghdr of this level and type with `payload` bytes of data (zeros), padded.
Bytes cmsg(int level, int type, std::size_t payload) {
  Bytes out(CMSG_SPACE(payload), 0);
  cmsghdr h{};
  h.cmsg_len = CMSG_LEN(payload);
  h.cmsg_level = level;
  h.cmsg_type = type;
  std::memcpy(out.data(), &h, sizeof h);
  return out;
}

Bytes concat(Bytes a, const Bytes& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

TEST(NetSocketError, Ipv4FragmentationNeededIsAHint) {
  const Bytes control = encode_socket_error(false, EMSGSIZE, SO_EE_ORIGIN_ICMP, 3, 4, 1280);
  const Bytes name = encode_socket_name(ep("203.0.113.14:41641"), false);
  const SocketError e = parse_socket_error(control, name);
  EXPECT_EQ(e.kind, SocketErrorKind::too_big);
  EXPECT_EQ(e.mtu, 1280u);
  EXPECT_EQ(e.destination, ep("203.0.113.14:41641"));
  EXPECT_EQ(e.error, static_cast<std::uint32_t>(EMSGSIZE));
}

TEST(NetSocketError, DualStackSocketNamesIpv4ErrorsMappedAtTheIpv6Level) {
  // What a dual-stack socket reads for an ICMP (v4) error: IPV6_RECVERR, a v4-mapped name,
  // and the IPV6_PKTINFO the socket asked for, first.
  const Bytes control = concat(cmsg(IPPROTO_IPV6, IPV6_PKTINFO, sizeof(in6_pktinfo)),
                               encode_socket_error(true, EMSGSIZE, SO_EE_ORIGIN_ICMP, 3, 4, 1400));
  const SocketError e = parse_socket_error(control, encode_socket_name(ep("198.51.100.2:9"), true));
  EXPECT_EQ(e.kind, SocketErrorKind::too_big);
  EXPECT_EQ(e.mtu, 1400u);
  EXPECT_EQ(e.destination, ep("198.51.100.2:9")) << "reported as IPv4";
}

TEST(NetSocketError, Icmpv6PacketTooBigIsAHint) {
  const Bytes control = encode_socket_error(true, EMSGSIZE, SO_EE_ORIGIN_ICMP6, 2, 0, 1280);
  const SocketError e = parse_socket_error(control, encode_socket_name(ep("[2001:db8::2]:41641"), true));
  EXPECT_EQ(e.kind, SocketErrorKind::too_big);
  EXPECT_EQ(e.mtu, 1280u);
  EXPECT_EQ(e.destination, ep("[2001:db8::2]:41641"));
}

// Numbered: well-formed errors that are not too-big hints.
TEST(NetSocketError, OtherErrorsAreOther) {
  struct Row {
    int line;
    std::uint32_t error;
    std::uint8_t origin, type, code;
  };
  const Row rows[] = {
      {1, ECONNREFUSED, SO_EE_ORIGIN_ICMP, 3, 3},   // port unreachable
      {2, EHOSTUNREACH, SO_EE_ORIGIN_ICMP, 11, 0},  // time exceeded (our short-TTL openers)
      {3, EHOSTUNREACH, SO_EE_ORIGIN_ICMP, 3, 1},   // host unreachable
      {4, EMSGSIZE, SO_EE_ORIGIN_LOCAL, 0, 0},      // our own interface said so: not a router
      {5, ECONNREFUSED, SO_EE_ORIGIN_ICMP6, 1, 4},  // ICMPv6 port unreachable
      {6, EMSGSIZE, SO_EE_ORIGIN_ICMP6, 3, 4},      // ICMPv6 type 3 is time exceeded, not too big
      {7, EMSGSIZE, SO_EE_ORIGIN_ICMP, 2, 0},       // ICMP type 2 is no too-big (that is ICMPv6's)
  };
  const Bytes name = encode_socket_name(ep("192.0.2.1:1"), false);
  for (const Row& r : rows) {
    for (bool v6 : {false, true}) {
      const SocketError e = parse_socket_error(encode_socket_error(v6, r.error, r.origin, r.type, r.code, 1280), name);
      EXPECT_EQ(e.kind, SocketErrorKind::other) << "row " << r.line;
      EXPECT_EQ(e.error, r.error) << "row " << r.line;
      EXPECT_EQ(e.mtu, 0u) << "row " << r.line;
    }
  }
}

// An opener that died on the way: the hop that said so (SO_EE_OFFENDER), from an IPv4 socket
// and from a dual-stack one (a v4-mapped offender is IPv4); an ICMPv6 hop limit exceeded.
TEST(NetSocketError, TimeExceededNamesTheHopThatSentIt) {
  const IpAddress carrier = IpAddress::parse("100.64.5.1").value();
  for (bool v6_level : {false, true}) {
    const Bytes control = encode_socket_error(v6_level, EHOSTUNREACH, SO_EE_ORIGIN_ICMP, 11, 0, 0, carrier);
    const SocketError e = parse_socket_error(control, encode_socket_name(ep("203.0.113.33:41641"), v6_level));
    EXPECT_EQ(e.kind, SocketErrorKind::other);
    EXPECT_TRUE(e.time_exceeded());
    EXPECT_EQ(e.offender, carrier);
    EXPECT_EQ(e.destination, ep("203.0.113.33:41641"));
  }
  const IpAddress router6 = IpAddress::parse("fd00::1").value();
  const SocketError e6 = parse_socket_error(encode_socket_error(true, EHOSTUNREACH, SO_EE_ORIGIN_ICMP6, 3, 0, 0, router6),
                                            encode_socket_name(ep("[2001:db8::2]:41641"), true));
  EXPECT_TRUE(e6.time_exceeded());
  EXPECT_EQ(e6.offender, router6);
  // No offender named (AF_UNSPEC), and errors of other kinds.
  EXPECT_FALSE(parse_socket_error(encode_socket_error(false, EHOSTUNREACH, SO_EE_ORIGIN_ICMP, 11, 0, 0),
                                  encode_socket_name(ep("192.0.2.1:1"), false)).offender);
  EXPECT_FALSE(parse_socket_error(encode_socket_error(false, ECONNREFUSED, SO_EE_ORIGIN_ICMP, 3, 3, 0, carrier),
                                  encode_socket_name(ep("192.0.2.1:1"), false)).time_exceeded());
  EXPECT_FALSE(parse_socket_error(encode_socket_error(false, EMSGSIZE, SO_EE_ORIGIN_LOCAL, 11, 0, 0),
                                  encode_socket_name(ep("192.0.2.1:1"), false)).time_exceeded());
}

// An offender cut short by a cmsg_len that ends inside it is no offender (never read past).
TEST(NetSocketError, ATruncatedOffenderIsNone) {
  Bytes control = encode_socket_error(false, EHOSTUNREACH, SO_EE_ORIGIN_ICMP, 11, 0, 0, IpAddress::parse("10.0.0.1").value());
  cmsghdr h;
  std::memcpy(&h, control.data(), sizeof h);
  h.cmsg_len = CMSG_LEN(sizeof(sock_extended_err) + 4);  // the family and port, not the address
  std::memcpy(control.data(), &h, sizeof h);
  const SocketError e = parse_socket_error(control, encode_socket_name(ep("192.0.2.1:1"), false));
  EXPECT_TRUE(e.time_exceeded());
  EXPECT_FALSE(e.offender);
}

// Numbered: hostile or useless input, all malformed.
TEST(NetSocketError, HostileInputIsMalformed) {
  const Bytes good = encode_socket_error(false, EMSGSIZE, SO_EE_ORIGIN_ICMP, 3, 4, 1280);
  const Bytes name = encode_socket_name(ep("192.0.2.1:1"), false);
  auto with_len = [&](std::size_t len) {
    Bytes b = good;
    cmsghdr h;
    std::memcpy(&h, b.data(), sizeof h);
    h.cmsg_len = len;
    std::memcpy(b.data(), &h, sizeof h);
    return b;
  };
  struct Row {
    int line;
    Bytes control;
    Bytes name;
  };
  const std::vector<Row> rows = {
      {1, {}, name},                                                      // nothing at all
      {2, Bytes(good.begin(), good.begin() + 8), name},                   // shorter than a header
      {3, Bytes(good.begin(), good.begin() + 20), name},                  // the error cut short
      {4, with_len(CMSG_LEN(8)), name},                                   // a cmsg too short for it
      {5, with_len(0), name},                                             // a length below the header
      {6, with_len(good.size() + 1), name},                               // a length past the buffer
      {7, with_len(~std::size_t{0}), name},                               // ... far past it
      {8, cmsg(IPPROTO_IP, IP_PKTINFO, 64), name},                        // another type only
      {9, cmsg(IPPROTO_UDP, IP_RECVERR, 64), name},                       // the type at a wrong level
      {10, cmsg(IPPROTO_IPV6, IP_RECVERR, 64), name},                     // IP_RECVERR (11) at IPv6
      {11, good, {}},                                                     // no destination
      {12, good, Bytes(name.begin(), name.begin() + 4)},                  // a cut destination
      {13, good, Bytes(16, 0xff)},                                        // an unknown family
      {14, encode_socket_error(false, EMSGSIZE, SO_EE_ORIGIN_ICMP, 3, 4, 0), name},   // RFC 1191: no MTU
      {15, encode_socket_error(true, EMSGSIZE, SO_EE_ORIGIN_ICMP6, 2, 0, 67), name},  // below any MTU
  };
  for (const Row& r : rows) {
    const SocketError e = parse_socket_error(r.control, r.name);
    EXPECT_EQ(e.kind, SocketErrorKind::malformed) << "row " << r.line;
    EXPECT_EQ(e.mtu, 0u) << "row " << r.line;
  }
  // Wrong-level messages before a good one are skipped, not fatal.
  const SocketError e = parse_socket_error(concat(cmsg(IPPROTO_UDP, IP_RECVERR, 5), good), name);
  EXPECT_EQ(e.kind, SocketErrorKind::too_big);
}

}  // namespace
}  // namespace knit::net
