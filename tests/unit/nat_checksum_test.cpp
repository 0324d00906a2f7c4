// RFC 1624 incremental checksum updates against full recomputation (RFC 1071), and header
// rewrites that must round-trip bit for bit.
#include <gtest/gtest.h>

#include "base/random.hpp"
#include "nat/checksum.hpp"
#include "nat/packet_builder.hpp"
#include "nat/packet_view.hpp"
#include "nat/rewrite.hpp"
#include "nat/wire.hpp"

namespace knit::nat {
namespace {

Endpoint ep(const char* text) { return Endpoint::parse(text).value(); }
IpAddress ip(const char* text) { return IpAddress::parse(text).value(); }

// The full sum itself is tested in base_checksum_test.

TEST(NatChecksum, Rfc1624Eqn3MatchesFullRecomputationOnRandomData) {
  SeededRandom rng(7);
  for (int round = 0; round < 20000; ++round) {
    Bytes data(2 + 2 * rng.uniform(40));
    rng.fill(data);
    data[0] |= 0x40;  // like every header the NAT rewrites: never all zeros
    const std::size_t field = 2 * rng.uniform(static_cast<std::uint32_t>(data.size() / 2));
    const std::uint16_t before = internet_checksum(data);
    const std::uint16_t old_word = load_be16(&data[field]);
    std::uint16_t new_word = static_cast<std::uint16_t>(rng.uniform(65536));
    if (round % 7 == 0) new_word = static_cast<std::uint16_t>(~old_word);  // extremes
    store_be16(&data[field], new_word);
    ASSERT_EQ(checksum_adjust16(before, old_word, new_word), internet_checksum(data))
        << "round " << round;
  }
}

TEST(NatChecksum, Rfc1624NoNegativeZeroWhenTheSumBecomesZero) {
  // Data whose new one's-complement sum is 0xffff: the full computation gives 0x0000 and
  // eqn 3 must too (eqn 2 of RFC 1624 would give 0xffff, the bug RFC 1624 fixes).
  Bytes data = {0x40, 0x00, 0x12, 0x34};
  const std::uint16_t before = internet_checksum(data);
  const std::uint16_t old_word = 0x1234;
  const std::uint16_t new_word = 0xffff - 0x4000;
  store_be16(&data[2], new_word);
  ASSERT_EQ(internet_checksum(data), 0x0000);
  EXPECT_EQ(checksum_adjust16(before, old_word, new_word), 0x0000);
}

TEST(NatChecksum, WriterKeepsEnclosingChecksumOverNestedChecksums) {
  // An ICMP error: rewriting a quoted address changes the quoted header checksum, and the
  // ICMP checksum must follow both.
  Bytes udp = make_udp(ep("203.0.113.1:4000"), ep("198.51.100.7:53"), Bytes(12, 0xab));
  Bytes error = make_icmp_error(ip("198.51.100.1"), ip("203.0.113.1"), kIcmpDestinationUnreachable,
                                kIcmpCodePortUnreachable, udp, udp.size());
  ASSERT_TRUE(verify_checksums(error).all());
  PacketView view;
  ASSERT_EQ(parse_packet(error, view), ParseError::none);
  ASSERT_EQ(view.kind, PacketKind::icmp_error);
  rewrite_quoted_source(error, view, 0x0a000002, 40000);
  rewrite_destination_address(error, view, 0x0a000002);
  const ChecksumReport report = verify_checksums(error);
  EXPECT_TRUE(report.ip);
  EXPECT_TRUE(report.transport);         // ICMP checksum
  EXPECT_TRUE(report.quoted_ip);         // quoted IPv4 header checksum
  EXPECT_TRUE(report.quoted_transport);  // quoted UDP checksum (whole datagram quoted)
  EXPECT_EQ(summarize(error, true).source.to_string(), "10.0.0.2:40000");
}

// Rewrite, verify by full recomputation, rewrite back: the bytes must be the original ones.
void round_trip(Bytes packet, const char* what) {
  SCOPED_TRACE(what);
  const Bytes original = packet;
  PacketView view;
  ASSERT_EQ(parse_packet(packet, view), ParseError::none);
  const std::uint32_t source = view.ip.source;
  const std::uint32_t destination = view.ip.destination;
  const std::uint16_t source_port = view.transport.source_port;
  const std::uint16_t destination_port = view.transport.destination_port;
  const bool reply = view.kind == PacketKind::icmp_query_reply;
  SeededRandom rng(source);
  for (int i = 0; i < 500; ++i) {
    const std::uint32_t a = static_cast<std::uint32_t>(rng.next_u64());
    const std::uint16_t port = static_cast<std::uint16_t>(rng.uniform(65535) + 1);
    if (!reply) {
      rewrite_source(packet, view, a, port);
    } else {
      rewrite_destination(packet, view, a, port);
    }
    ASSERT_TRUE(verify_checksums(packet).all()) << "rewrite " << i;
    ASSERT_EQ(parse_packet(packet, view), ParseError::none);
    if (!reply) {
      rewrite_source(packet, view, source, source_port);
    } else {
      rewrite_destination(packet, view, destination, destination_port);
    }
    ASSERT_EQ(packet, original) << "round trip " << i;
  }
}

TEST(NatChecksum, RoundTripUdpTcpIcmp) {
  round_trip(make_udp(ep("10.0.0.2:5000"), ep("198.51.100.7:3478"), Bytes(33, 0x5a)), "udp odd");
  round_trip(make_tcp(ep("10.0.0.2:40000"), ep("198.51.100.7:443"), kTcpSyn, Bytes(10, 1)), "tcp");
  round_trip(
      make_icmp_query(ip("10.0.0.2"), ip("198.51.100.7"), kIcmpEchoRequest, 77, 1, Bytes(56, 0x11)),
      "echo request");
  round_trip(make_icmp_query(ip("198.51.100.7"), ip("203.0.113.1"), kIcmpEchoReply, 77, 1),
             "echo reply");
  Ipv4Options options;
  options.options_bytes = 8;
  round_trip(make_udp(ep("10.0.0.2:5000"), ep("198.51.100.7:53"), Bytes(4, 9), options),
             "udp with IP options");
}

TEST(NatChecksum, UdpZeroChecksumStaysZero) {
  // RFC 768: checksum 0 means "none"; a NAT must not invent one.
  Bytes udp = make_udp(ep("10.0.0.2:5000"), ep("198.51.100.7:3478"), Bytes(8, 3));
  store_be16(&udp[kIpv4MinHeader + kUdpOffChecksum], 0);
  PacketView view;
  ASSERT_EQ(parse_packet(udp, view), ParseError::none);
  rewrite_source(udp, view, 0xcb007101, 1234);
  EXPECT_EQ(load_be16(&udp[kIpv4MinHeader + kUdpOffChecksum]), 0);
  EXPECT_TRUE(verify_checksums(udp).all());
}

TEST(NatChecksum, UdpComputedZeroIsSentAsAllOnes) {
  // Find a rewrite whose correct UDP checksum is 0: RFC 768 sends it as 0xffff.
  Bytes udp = make_udp(ep("10.0.0.2:5000"), ep("198.51.100.7:3478"), Bytes(8, 3));
  PacketView view;
  ASSERT_EQ(parse_packet(udp, view), ParseError::none);
  const std::uint16_t sum = load_be16(&udp[kIpv4MinHeader + kUdpOffChecksum]);
  // Raising the source port by ~sum's complement moves the checksum to 0 (mod 0xffff).
  const std::uint16_t port = view.transport.source_port;
  std::uint32_t target = static_cast<std::uint32_t>(port) + sum;  // adds `sum` to the data sum
  while (target > 0xffff) target = (target & 0xffff) + (target >> 16);
  rewrite_source(udp, view, view.ip.source, static_cast<std::uint16_t>(target));
  EXPECT_EQ(load_be16(&udp[kIpv4MinHeader + kUdpOffChecksum]), 0xffff);
  EXPECT_TRUE(verify_checksums(udp).all());
}

TEST(NatChecksum, TtlDecrementKeepsHeaderChecksum) {
  Bytes udp = make_udp(ep("10.0.0.2:5000"), ep("198.51.100.7:3478"));
  PacketView view;
  ASSERT_EQ(parse_packet(udp, view), ParseError::none);
  for (int i = 0; i < 63; ++i) {
    decrement_ttl(udp, view);
    ASSERT_TRUE(verify_checksums(udp).all());
  }
  EXPECT_EQ(udp[kIpv4OffTtl], 1);
}

}  // namespace
}  // namespace knit::nat
