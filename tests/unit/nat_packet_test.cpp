// The IPv4 parser against hostile input: a numbered table of malformed packets, each with the
// error it must produce, plus the well-formed kinds.
#include <gtest/gtest.h>

#include <functional>

#include "nat/checksum.hpp"
#include "nat/packet_builder.hpp"
#include "nat/packet_view.hpp"
#include "nat/wire.hpp"

namespace knit::nat {
namespace {

Endpoint ep(const char* text) { return Endpoint::parse(text).value(); }
IpAddress ip(const char* text) { return IpAddress::parse(text).value(); }

Bytes udp() { return make_udp(ep("10.0.0.2:5000"), ep("198.51.100.7:3478"), Bytes(12, 1)); }
Bytes tcp() { return make_tcp(ep("10.0.0.2:40000"), ep("198.51.100.7:443"), kTcpSyn); }

void fix_ip_checksum(Bytes& p) {
  const std::size_t header = std::size_t{p[0] & 0x0fu} * 4;
  store_be16(&p[kIpv4OffChecksum], 0);
  store_be16(&p[kIpv4OffChecksum],
             internet_checksum(ByteSpan(p.data(), std::min(header, p.size()))));
}

// An ICMP error from a router about `offending`, with a freshly fixed ICMP checksum after
// `mutate` edits the quoted bytes.
Bytes error_about(Bytes offending, std::size_t quote, const std::function<void(Bytes&)>& mutate) {
  Bytes e = make_icmp_error(ip("192.0.2.1"), ip("203.0.113.1"), kIcmpDestinationUnreachable, 1,
                            offending, quote);
  mutate(e);
  store_be16(&e[kIpv4MinHeader + kIcmpOffChecksum], 0);
  store_be16(&e[kIpv4MinHeader + kIcmpOffChecksum],
             internet_checksum(ByteSpan(e.data() + kIpv4MinHeader, e.size() - kIpv4MinHeader)));
  return e;
}

struct Case {
  const char* name;
  std::function<Bytes()> make;
  ParseError expected;
};

TEST(NatPacket, HostileInputTable) {
  const std::vector<Case> cases = {
      {"1 empty", [] { return Bytes{}; }, ParseError::truncated},
      {"2 19 bytes", [] { return Bytes(19, 0x45); }, ParseError::truncated},
      {"3 version 6",
       [] {
         Bytes p = udp();
         p[0] = 0x65;
         return p;
       },
       ParseError::not_ipv4},
      {"4 IHL 4",
       [] {
         Bytes p = udp();
         p[0] = 0x44;
         return p;
       },
       ParseError::bad_header_length},
      {"5 IHL beyond packet",
       [] {
         Bytes p = udp();
         p.resize(24);
         p[0] = 0x4f;
         return p;
       },
       ParseError::bad_header_length},
      {"6 total length < header",
       [] {
         Bytes p = udp();
         store_be16(&p[2], 19);
         fix_ip_checksum(p);
         return p;
       },
       ParseError::bad_total_length},
      {"7 total length > buffer",
       [] {
         Bytes p = udp();
         store_be16(&p[2], static_cast<std::uint16_t>(p.size() + 1));
         fix_ip_checksum(p);
         return p;
       },
       ParseError::truncated},
      {"8 bad header checksum",
       [] {
         Bytes p = udp();
         p[kIpv4OffChecksum] ^= 1;
         return p;
       },
       ParseError::bad_checksum},
      {"9 UDP header cut",
       [] {
         Bytes p = udp();
         p.resize(24);
         store_be16(&p[2], 24);
         fix_ip_checksum(p);
         return p;
       },
       ParseError::truncated},
      {"10 UDP length > datagram",
       [] {
         Bytes p = udp();
         store_be16(&p[24], 200);
         return p;
       },
       ParseError::bad_transport},
      {"11 UDP length < 8",
       [] {
         Bytes p = udp();
         store_be16(&p[24], 7);
         return p;
       },
       ParseError::bad_transport},
      {"12 UDP source port 0",
       [] {
         Bytes p = udp();
         store_be16(&p[20], 0);
         return p;
       },
       ParseError::bad_transport},
      {"13 TCP header cut",
       [] {
         Bytes p = tcp();
         p.resize(30);
         store_be16(&p[2], 30);
         fix_ip_checksum(p);
         return p;
       },
       ParseError::truncated},
      {"14 TCP data offset 4",
       [] {
         Bytes p = tcp();
         p[20 + kTcpOffDataOffset] = 0x40;
         return p;
       },
       ParseError::bad_transport},
      {"15 TCP data offset past segment",
       [] {
         Bytes p = tcp();
         p[20 + kTcpOffDataOffset] = 0xf0;
         return p;
       },
       ParseError::bad_transport},
      {"16 TCP destination port 0",
       [] {
         Bytes p = tcp();
         store_be16(&p[22], 0);
         return p;
       },
       ParseError::bad_transport},
      {"17 GRE", [] { return make_ipv4(ip("10.0.0.2"), ip("198.51.100.7"), 47, Bytes(8, 0)); },
       ParseError::unsupported_protocol},
      {"18 ICMP redirect",
       [] { return make_icmp_query(ip("10.0.0.2"), ip("198.51.100.7"), 5, 1, 1); },
       ParseError::unsupported_icmp},
      {"19 ICMP header cut",
       [] {
         return make_ipv4(ip("10.0.0.2"), ip("198.51.100.7"), kProtoIcmp, Bytes{8, 0, 0});
       },
       ParseError::truncated},
      {"20 ICMP error bad checksum",
       [] {
         Bytes e = make_icmp_error(ip("192.0.2.1"), ip("203.0.113.1"), 3, 3, udp());
         e[22] ^= 0xff;
         return e;
       },
       ParseError::bad_checksum},
      {"21 ICMP error quoting 27 bytes", [] { return error_about(udp(), 27, [](Bytes&) {}); },
       ParseError::bad_quoted_packet},
      {"22 ICMP error quoting a bad IP checksum",
       [] { return error_about(udp(), 0, [](Bytes& e) { e[28 + kIpv4OffChecksum] ^= 1; }); },
       ParseError::bad_checksum},
      {"23 ICMP error quoting IHL 3",
       [] { return error_about(udp(), 0, [](Bytes& e) { e[28] = 0x43; }); },
       ParseError::bad_quoted_packet},
      {"24 ICMP error quoting IHL 15 (beyond the quote)",
       [] {
         return error_about(udp(), 0, [](Bytes& e) {
           e[28] = 0x4f;
           store_be16(&e[28 + kIpv4OffChecksum], 0);
           store_be16(&e[28 + kIpv4OffChecksum], internet_checksum(ByteSpan(e.data() + 28, 20)));
         });
       },
       ParseError::bad_quoted_packet},
      {"25 ICMP error quoting GRE",
       [] {
         return error_about(make_ipv4(ip("203.0.113.1"), ip("198.51.100.7"), 47, Bytes(8, 0)), 0,
                            [](Bytes&) {});
       },
       ParseError::unsupported_protocol},
      {"26 ICMP error quoting an ICMP error",
       [] {
         Bytes inner = make_icmp_error(ip("203.0.113.1"), ip("198.51.100.7"), 3, 3, udp());
         return error_about(inner, 0, [](Bytes&) {});
       },
       ParseError::bad_quoted_packet},
      {"27 ICMP error quoting a non-first fragment",
       [] {
         Ipv4Options o;
         o.fragment_offset = 10;
         return error_about(
             make_ipv4(ip("203.0.113.1"), ip("198.51.100.7"), kProtoUdp, Bytes(16, 1), o), 0,
             [](Bytes&) {});
       },
       ParseError::bad_quoted_packet},
      {"28 ICMP error quoting port 0",
       [] { return error_about(udp(), 0, [](Bytes& e) { store_be16(&e[48], 0); }); },
       ParseError::bad_quoted_packet},
      {"29 ICMP error in fragments",
       [] {
         Bytes e = make_icmp_error(ip("192.0.2.1"), ip("203.0.113.1"), 3, 3, udp());
         e[kIpv4OffFragment] |= 0x20;  // MF
         fix_ip_checksum(e);
         return e;
       },
       ParseError::fragmented_error},
      {"30 quoted total length shorter than its header + 8",
       [] {
         return error_about(udp(), 0, [](Bytes& e) {
           store_be16(&e[28 + 2], 24);
           store_be16(&e[28 + kIpv4OffChecksum], 0);
           store_be16(&e[28 + kIpv4OffChecksum], internet_checksum(ByteSpan(e.data() + 28, 20)));
         });
       },
       ParseError::bad_quoted_packet},
  };
  for (const Case& c : cases) {
    PacketView view;
    const Bytes packet = c.make();
    EXPECT_EQ(parse_packet(packet, view), c.expected)
        << c.name << ": got " << to_string(parse_packet(packet, view));
  }
}

TEST(NatPacket, WellFormedKinds) {
  PacketView view;
  Bytes u = udp();
  ASSERT_EQ(parse_packet(u, view), ParseError::none);
  EXPECT_EQ(view.kind, PacketKind::flow);
  EXPECT_EQ(view.transport.protocol, Protocol::udp);
  EXPECT_EQ(view.transport.source_port, 5000);
  EXPECT_EQ(view.transport.destination_port, 3478);

  Bytes request = make_icmp_query(ip("10.0.0.2"), ip("198.51.100.7"), kIcmpEchoRequest, 77, 1);
  ASSERT_EQ(parse_packet(request, view), ParseError::none);
  EXPECT_EQ(view.kind, PacketKind::icmp_query_request);
  EXPECT_EQ(view.transport.source_port, 77);
  EXPECT_EQ(view.transport.destination_port, 0);

  Bytes reply = make_icmp_query(ip("198.51.100.7"), ip("203.0.113.1"), kIcmpEchoReply, 77, 1);
  ASSERT_EQ(parse_packet(reply, view), ParseError::none);
  EXPECT_EQ(view.kind, PacketKind::icmp_query_reply);
  EXPECT_EQ(view.transport.source_port, 0);
  EXPECT_EQ(view.transport.destination_port, 77);

  // Ethernet-style padding after the datagram is ignored, not an error.
  Bytes padded = udp();
  padded.resize(padded.size() + 6, 0);
  ASSERT_EQ(parse_packet(padded, view), ParseError::none);
  EXPECT_EQ(view.ip.total_length, padded.size() - 6);

  // An ICMP error quoting only 8 bytes of TCP: enough (ports), TCP checksum not quoted.
  Bytes error = make_icmp_error(ip("192.0.2.1"), ip("203.0.113.1"), kIcmpTimeExceeded, 0, tcp());
  ASSERT_EQ(parse_packet(error, view), ParseError::none);
  EXPECT_EQ(view.kind, PacketKind::icmp_error);
  EXPECT_EQ(view.quoted.transport.protocol, Protocol::tcp);
  EXPECT_EQ(view.quoted.l4_size, 8u);
  EXPECT_EQ(view.quoted.transport.source_port, 40000);

  // First and later fragments.
  auto fragments =
      fragment_packet(make_udp(ep("10.0.0.2:5000"), ep("198.51.100.7:9"), Bytes(100, 7)), 48);
  ASSERT_EQ(fragments.size(), 3u);
  ASSERT_EQ(parse_packet(fragments[0], view), ParseError::none);
  EXPECT_EQ(view.kind, PacketKind::flow);
  EXPECT_TRUE(view.ip.more_fragments);
  ASSERT_EQ(parse_packet(fragments[1], view), ParseError::none);
  EXPECT_EQ(view.kind, PacketKind::non_first_fragment);
}

TEST(NatPacket, TinyFirstTcpFragmentIsRejected) {
  // RFC 1858: a first fragment too short to hold the TCP header is an attack, not traffic.
  auto fragments = fragment_packet(tcp(), 8);
  ASSERT_GE(fragments.size(), 2u);
  PacketView view;
  EXPECT_EQ(parse_packet(fragments[0], view), ParseError::truncated);
}

}  // namespace
}  // namespace knit::nat
