// PacketFilter: knitd's shields and port forwards on synthetic packets. IPv4 goes through the
// NatEngine (own_address_flows), IPv6 through Ipv6Conntrack; time is a manual clock.
#include <gtest/gtest.h>

#include "agent/packet_filter.hpp"
#include "tests/support/filter_harness.hpp"
#include "nat/packet_builder.hpp"
#include "nat/wire.hpp"

namespace knit::agent {
namespace {

using nat::make_icmp_error;
using nat::make_icmp_query;
using nat::make_tcp;
using nat::make_udp;
using nat::summarize;
using nat::verify_checksums;

Endpoint ep(const char* text) { return Endpoint::parse(text).value(); }
IpAddress ip(const char* text) { return IpAddress::parse(text).value(); }

const IpAddress kSelf = ip("100.64.0.1");
const Endpoint kSelfPort = ep("100.64.0.1:40000");
const Endpoint kPeerSsh = ep("100.64.0.2:22");

using Fixture = testing::FilterHarness;

// ---- IPv4 shields ----

TEST(AgentPacketFilter, OutboundSynThenInboundSynAckPassUnchanged) {
  Fixture f;
  f.filter.set_shields_up(true);
  const Bytes syn = make_tcp(kSelfPort, kPeerSsh, nat::kTcpSyn);
  EXPECT_EQ(f.out(syn), syn);
  const Bytes syn_ack = make_tcp(kPeerSsh, kSelfPort, nat::kTcpSyn | nat::kTcpAck);
  EXPECT_EQ(f.in(syn_ack), syn_ack);
  const Bytes ack = make_tcp(kPeerSsh, kSelfPort, nat::kTcpAck);
  EXPECT_EQ(f.in(ack), ack);
  EXPECT_EQ(f.filter.counters().refused_v4, 0u);
}

TEST(AgentPacketFilter, UnsolicitedSynIsRefusedWithShieldsUp) {
  Fixture f;
  f.filter.set_shields_up(true);
  EXPECT_FALSE(f.in(make_tcp(kPeerSsh, ep("100.64.0.1:22"), nat::kTcpSyn)));
  // A reply from a port the host never talked to is unsolicited too.
  f.out(make_tcp(kSelfPort, kPeerSsh, nat::kTcpSyn));
  EXPECT_FALSE(f.in(make_tcp(ep("100.64.0.2:23"), kSelfPort, nat::kTcpSyn | nat::kTcpAck)));
  // So is a mid-connection segment of nothing.
  EXPECT_FALSE(f.in(make_tcp(kPeerSsh, ep("100.64.0.1:5000"), nat::kTcpAck)));
  EXPECT_EQ(f.filter.counters().refused_v4, 3u);
}

TEST(AgentPacketFilter, UdpRepliesPassAndStrangersDoNot) {
  Fixture f;
  f.filter.set_shields_up(true);
  const Endpoint dns = ep("100.64.0.3:53");
  const Endpoint local = ep("100.64.0.1:50000");
  ASSERT_TRUE(f.out(make_udp(local, dns)));
  const Bytes answer = make_udp(dns, local);
  EXPECT_EQ(f.in(answer), answer);
  EXPECT_FALSE(f.in(make_udp(ep("100.64.0.4:53"), local)));
  EXPECT_FALSE(f.in(make_udp(dns, ep("100.64.0.1:50001"))));
  // The mapping times out (5 min, as the engine's default) and the reply is refused.
  f.now += std::chrono::minutes(6);
  EXPECT_FALSE(f.in(make_udp(dns, local)));
  EXPECT_EQ(f.filter.counters().refused_v4, 3u);
}

TEST(AgentPacketFilter, EchoRepliesPassAndRequestsDoNot) {
  Fixture f;
  f.filter.set_shields_up(true);
  const Bytes request = make_icmp_query(kSelf, ip("100.64.0.2"), nat::kIcmpEchoRequest, 77, 1);
  EXPECT_EQ(f.out(request), request);
  const Bytes reply = make_icmp_query(ip("100.64.0.2"), kSelf, nat::kIcmpEchoReply, 77, 1);
  EXPECT_EQ(f.in(reply), reply);
  EXPECT_FALSE(f.in(make_icmp_query(ip("100.64.0.2"), kSelf, nat::kIcmpEchoRequest, 5, 1)));
  EXPECT_FALSE(f.in(make_icmp_query(ip("100.64.0.2"), kSelf, nat::kIcmpEchoReply, 78, 1)));
  // With the shields down the host answers pings; its echo reply passes out untracked.
  f.filter.set_shields_up(false);
  EXPECT_TRUE(f.in(make_icmp_query(ip("100.64.0.2"), kSelf, nat::kIcmpEchoRequest, 5, 1)));
  const Bytes answer = make_icmp_query(kSelf, ip("100.64.0.2"), nat::kIcmpEchoReply, 5, 1);
  EXPECT_EQ(f.out(answer), answer);
}

TEST(AgentPacketFilter, IcmpErrorAboutAnOwnFlowPasses) {
  Fixture f;
  f.filter.set_shields_up(true);
  const Bytes probe = make_udp(ep("100.64.0.1:50000"), ep("100.64.0.2:33434"));
  ASSERT_TRUE(f.out(probe));
  const Bytes unreachable = make_icmp_error(ip("100.64.0.2"), kSelf, 3, 3, probe);
  EXPECT_TRUE(f.in(unreachable));
  const Bytes stranger = make_udp(ep("100.64.0.1:50001"), ep("100.64.0.2:33434"));
  EXPECT_FALSE(f.in(make_icmp_error(ip("100.64.0.2"), kSelf, 3, 3, stranger)));
}

TEST(AgentPacketFilter, ShieldsDownPassesEverythingAndRaisingThemKeepsOpenConnections) {
  Fixture f;
  const Bytes syn = make_tcp(kPeerSsh, ep("100.64.0.1:22"), nat::kTcpSyn);
  EXPECT_EQ(f.in(syn), syn);
  EXPECT_TRUE(f.in(make_udp(kPeerSsh, ep("100.64.0.1:53"))));
  // The host accepts: its SYN-ACK opens the state, so the connection survives the toggle.
  ASSERT_TRUE(f.out(make_tcp(ep("100.64.0.1:22"), kPeerSsh, nat::kTcpSyn | nat::kTcpAck)));
  f.filter.set_shields_up(true);
  EXPECT_TRUE(f.in(make_tcp(kPeerSsh, ep("100.64.0.1:22"), nat::kTcpAck)));
  EXPECT_FALSE(f.in(make_tcp(ep("100.64.0.2:23"), ep("100.64.0.1:22"), nat::kTcpSyn)));
  f.filter.set_shields_up(false);
  EXPECT_TRUE(f.in(make_tcp(ep("100.64.0.2:23"), ep("100.64.0.1:22"), nat::kTcpSyn)));
  EXPECT_EQ(f.filter.counters().refused_v4, 1u);
}

TEST(AgentPacketFilter, WithoutAMeshAddressIpv4PassesUnfiltered) {
  SeededRandom rng(1);
  PacketFilter filter(rng);
  filter.set_shields_up(true);
  Bytes syn = make_tcp(kPeerSsh, ep("100.64.0.1:22"), nat::kTcpSyn);
  EXPECT_EQ(filter.inbound(Instant{}, syn), syn.size());
}

TEST(AgentPacketFilter, MalformedPacketsAreCountedAndDropped) {
  for (bool shields : {false, true}) {
    Fixture f;
    f.filter.set_shields_up(shields);
    Bytes bad_checksum = make_tcp(kPeerSsh, kSelfPort, nat::kTcpAck);
    bad_checksum[10] ^= 0xff;
    EXPECT_FALSE(f.in(bad_checksum));
    Bytes truncated = make_tcp(kPeerSsh, kSelfPort, nat::kTcpAck);
    truncated.resize(24);
    EXPECT_FALSE(f.in(truncated));
    EXPECT_FALSE(f.out(truncated));
    EXPECT_FALSE(f.in(Bytes{0x50, 0, 0, 0}));  // version 5
    EXPECT_FALSE(f.in(Bytes{}));
    Bytes short_v6(20, 0);
    short_v6[0] = 0x60;
    EXPECT_FALSE(f.in(short_v6));
    EXPECT_EQ(f.filter.counters().malformed, 6u) << "shields " << shields;
    EXPECT_EQ(f.filter.counters().refused_v4, 0u);
  }
}

// ---- port forwards ----

TEST(AgentPacketFilter, ForwardTranslatesBothWaysWithValidChecksums) {
  Fixture f;
  f.filter.set_shields_up(true);
  ASSERT_EQ(f.filter.add_forward({localapi::ForwardProtocol::tcp, 8080, ep("10.9.0.2:80")}), "");
  const Endpoint client = ep("100.64.0.2:50000");
  auto syn = f.in(make_tcp(client, ep("100.64.0.1:8080"), nat::kTcpSyn, Bytes{1, 2, 3}));
  ASSERT_TRUE(syn);
  EXPECT_EQ(summarize(*syn).destination, ep("10.9.0.2:80"));
  EXPECT_EQ(summarize(*syn).source, client);  // DNAT only: the target sees the peer
  EXPECT_TRUE(verify_checksums(*syn).all());
  auto syn_ack = f.out(make_tcp(ep("10.9.0.2:80"), client, nat::kTcpSyn | nat::kTcpAck, Bytes{4, 5}));
  ASSERT_TRUE(syn_ack);
  EXPECT_EQ(summarize(*syn_ack).source, ep("100.64.0.1:8080"));
  EXPECT_EQ(summarize(*syn_ack).destination, client);
  EXPECT_TRUE(verify_checksums(*syn_ack).all());
  auto status = f.filter.forwards();
  ASSERT_EQ(status.size(), 1u);
  EXPECT_TRUE(status[0].active);
  EXPECT_EQ(status[0].packets_in, 1u);
  EXPECT_EQ(status[0].packets_out, 1u);
  EXPECT_EQ(status[0].connections, 1u);
  EXPECT_EQ(f.filter.counters().forwarded_in, 1u);
  // UDP on that port is not forwarded, and refused with the shields up.
  EXPECT_FALSE(f.in(make_udp(client, ep("100.64.0.1:8080"))));
  ASSERT_TRUE(f.filter.remove_forward(localapi::ForwardProtocol::tcp, 8080));
  EXPECT_FALSE(f.filter.remove_forward(localapi::ForwardProtocol::tcp, 8080));
  EXPECT_FALSE(f.in(make_tcp(ep("100.64.0.2:50001"), ep("100.64.0.1:8080"), nat::kTcpSyn)));
}

TEST(AgentPacketFilter, UdpForward) {
  Fixture f;
  ASSERT_EQ(f.filter.add_forward({localapi::ForwardProtocol::udp, 5353, ep("192.168.7.9:53")}), "");
  auto query = f.in(make_udp(ep("100.64.0.2:40000"), ep("100.64.0.1:5353"), Bytes{9, 9}));
  ASSERT_TRUE(query);
  EXPECT_EQ(summarize(*query).destination, ep("192.168.7.9:53"));
  EXPECT_TRUE(verify_checksums(*query).all());
  auto answer = f.out(make_udp(ep("192.168.7.9:53"), ep("100.64.0.2:40000"), Bytes{7}));
  ASSERT_TRUE(answer);
  EXPECT_EQ(summarize(*answer).source, ep("100.64.0.1:5353"));
  EXPECT_TRUE(verify_checksums(*answer).all());
}

TEST(AgentPacketFilter, ForwardRulesAreValidated) {
  Fixture f;
  EXPECT_NE(f.filter.add_forward({localapi::ForwardProtocol::tcp, 80, ep("127.0.0.1:8080")}), "");
  EXPECT_NE(f.filter.add_forward({localapi::ForwardProtocol::tcp, 80, ep("224.0.0.1:8080")}), "");
  EXPECT_NE(f.filter.add_forward({localapi::ForwardProtocol::tcp, 0, ep("10.0.0.1:8080")}), "");
  EXPECT_NE(f.filter.add_forward({localapi::ForwardProtocol::tcp, 80, ep("10.0.0.1:0")}), "");
  EXPECT_NE(f.filter.add_forward({localapi::ForwardProtocol::tcp, 80, ep("[fd00::1]:80")}), "");
  EXPECT_NE(f.filter.add_forward({localapi::ForwardProtocol::tcp, 80, ep("100.64.0.1:22")}), "");
  EXPECT_EQ(f.filter.add_forward({localapi::ForwardProtocol::tcp, 80, ep("10.0.0.1:8080")}), "");
  EXPECT_NE(f.filter.add_forward({localapi::ForwardProtocol::tcp, 80, ep("10.0.0.2:8080")}), "");
  EXPECT_EQ(f.filter.add_forward({localapi::ForwardProtocol::udp, 80, ep("10.0.0.2:8080")}), "");
  EXPECT_EQ(f.filter.forward_rules().size(), 2u);
}

TEST(AgentPacketFilter, ForwardsWaitForTheAddressAndFollowItsChanges) {
  SeededRandom rng(5);
  PacketFilter filter(rng);
  ASSERT_EQ(filter.add_forward({localapi::ForwardProtocol::tcp, 8080, ep("10.9.0.2:80")}), "");
  EXPECT_FALSE(filter.forwards()[0].active);
  filter.set_mesh_address(ip("100.64.0.7"));
  EXPECT_TRUE(filter.forwards()[0].active);
  Bytes syn = make_tcp(ep("100.64.0.2:1000"), ep("100.64.0.7:8080"), nat::kTcpSyn);
  ASSERT_NE(filter.inbound(Instant{}, syn), 0u);
  EXPECT_EQ(summarize(syn).destination, ep("10.9.0.2:80"));
  filter.set_mesh_address(std::nullopt);
  EXPECT_FALSE(filter.forwards()[0].active);
  EXPECT_EQ(filter.counters().forwarded_in, 1u);  // kept across rebuilds
}

// ---- IPv6 ----

Bytes v6_packet(const char* source, const char* destination, std::uint8_t next, const Bytes& payload,
                const Bytes& extensions = {}) {
  Bytes p(40, 0);
  p[0] = 0x60;
  const std::size_t length = extensions.size() + payload.size();
  p[4] = static_cast<std::uint8_t>(length >> 8);
  p[5] = static_cast<std::uint8_t>(length);
  p[6] = next;
  p[7] = 64;
  const IpAddress s = ip(source), d = ip(destination);
  std::copy(s.bytes(), s.bytes() + 16, p.begin() + 8);
  std::copy(d.bytes(), d.bytes() + 16, p.begin() + 24);
  p.insert(p.end(), extensions.begin(), extensions.end());
  p.insert(p.end(), payload.begin(), payload.end());
  return p;
}

Bytes tcp_header(std::uint16_t sport, std::uint16_t dport, std::uint8_t flags) {
  Bytes t(20, 0);
  t[0] = sport >> 8, t[1] = sport & 0xff, t[2] = dport >> 8, t[3] = dport & 0xff;
  t[12] = 5 << 4;
  t[13] = flags;
  return t;
}

Bytes udp_header(std::uint16_t sport, std::uint16_t dport) {
  return Bytes{std::uint8_t(sport >> 8), std::uint8_t(sport), std::uint8_t(dport >> 8), std::uint8_t(dport), 0, 8, 0, 0};
}

Bytes echo(std::uint8_t type, std::uint16_t id) {
  return Bytes{type, 0, 0, 0, std::uint8_t(id >> 8), std::uint8_t(id), 0, 1};
}

constexpr const char* kSelf6 = "fd7a:1::1";
constexpr const char* kPeer6 = "fd7a:1::2";

TEST(AgentPacketFilter, Ipv6TcpRepliesPassAndUnsolicitedSynsDoNot) {
  Fixture f;
  f.filter.set_shields_up(true);
  ASSERT_TRUE(f.out(v6_packet(kSelf6, kPeer6, 6, tcp_header(40000, 22, nat::kTcpSyn))));
  const Bytes syn_ack = v6_packet(kPeer6, kSelf6, 6, tcp_header(22, 40000, nat::kTcpSyn | nat::kTcpAck));
  EXPECT_EQ(f.in(syn_ack), syn_ack);
  EXPECT_FALSE(f.in(v6_packet(kPeer6, kSelf6, 6, tcp_header(22, 40001, nat::kTcpSyn | nat::kTcpAck))));
  EXPECT_FALSE(f.in(v6_packet(kPeer6, kSelf6, 6, tcp_header(5000, 22, nat::kTcpSyn))));
  EXPECT_EQ(f.filter.counters().refused_v6, 2u);
  f.filter.set_shields_up(false);
  EXPECT_TRUE(f.in(v6_packet(kPeer6, kSelf6, 6, tcp_header(5000, 22, nat::kTcpSyn))));
}

TEST(AgentPacketFilter, Ipv6UdpEchoAndErrors) {
  Fixture f;
  f.filter.set_shields_up(true);
  const Bytes query = v6_packet(kSelf6, kPeer6, 17, udp_header(50000, 53));
  ASSERT_TRUE(f.out(query));
  EXPECT_TRUE(f.in(v6_packet(kPeer6, kSelf6, 17, udp_header(53, 50000))));
  EXPECT_FALSE(f.in(v6_packet(kPeer6, kSelf6, 17, udp_header(54, 50000))));
  ASSERT_TRUE(f.out(v6_packet(kSelf6, kPeer6, 58, echo(128, 9))));
  EXPECT_TRUE(f.in(v6_packet(kPeer6, kSelf6, 58, echo(129, 9))));
  EXPECT_FALSE(f.in(v6_packet(kPeer6, kSelf6, 58, echo(129, 10))));
  EXPECT_FALSE(f.in(v6_packet(kPeer6, kSelf6, 58, echo(128, 9))));
  // Packet Too Big (type 2) quoting the host's UDP packet passes; quoting another does not.
  Bytes too_big{2, 0, 0, 0, 0, 0, 0x05, 0x00};
  Bytes ok = too_big;
  ok.insert(ok.end(), query.begin(), query.end());
  EXPECT_TRUE(f.in(v6_packet(kPeer6, kSelf6, 58, ok)));
  Bytes forged = too_big;
  const Bytes other = v6_packet(kSelf6, kPeer6, 17, udp_header(50001, 53));
  forged.insert(forged.end(), other.begin(), other.end());
  EXPECT_FALSE(f.in(v6_packet(kPeer6, kSelf6, 58, forged)));
  Bytes garbage = too_big;
  garbage.resize(20, 0xee);
  EXPECT_FALSE(f.in(v6_packet(kPeer6, kSelf6, 58, garbage)));
  EXPECT_EQ(f.filter.counters().malformed, 1u);
}

TEST(AgentPacketFilter, Ipv6ExtensionHeadersAndFragments) {
  Fixture f;
  f.filter.set_shields_up(true);
  // A destination-options header (8 bytes) before UDP.
  const Bytes options{17, 0, 1, 4, 0, 0, 0, 0};
  ASSERT_TRUE(f.out(v6_packet(kSelf6, kPeer6, 60, udp_header(50000, 53), options)));
  EXPECT_TRUE(f.in(v6_packet(kPeer6, kSelf6, 60, udp_header(53, 50000), options)));
  EXPECT_FALSE(f.in(v6_packet(kPeer6, kSelf6, 60, udp_header(53, 50002), options)));
  // A first fragment is filtered by its ports; a later one carries none and passes.
  const Bytes first{17, 0, 0x00, 0x01, 0, 0, 0, 42};  // offset 0, more fragments
  EXPECT_FALSE(f.in(v6_packet(kPeer6, kSelf6, 44, udp_header(53, 50003), first)));
  const Bytes later{17, 0, 0x00, 0x10, 0, 0, 0, 42};  // offset 2 (16 bytes)
  EXPECT_TRUE(f.in(v6_packet(kPeer6, kSelf6, 44, Bytes(8, 0), later)));
  // A header claiming more bytes than there are, and an endless chain, are malformed.
  const Bytes too_long{17, 9, 0, 0, 0, 0, 0, 0};
  EXPECT_FALSE(f.in(v6_packet(kPeer6, kSelf6, 60, udp_header(53, 50000), too_long)));
  Bytes chain;
  for (int i = 0; i < 12; ++i) chain.insert(chain.end(), {60, 0, 1, 4, 0, 0, 0, 0});
  EXPECT_FALSE(f.in(v6_packet(kPeer6, kSelf6, 60, udp_header(53, 50000), chain)));
  EXPECT_EQ(f.filter.counters().malformed, 2u);
}

TEST(AgentPacketFilter, Ipv6FlowsTimeOut) {
  Fixture f;
  f.filter.set_shields_up(true);
  ASSERT_TRUE(f.out(v6_packet(kSelf6, kPeer6, 17, udp_header(50000, 53))));
  f.now += std::chrono::minutes(4);
  EXPECT_TRUE(f.in(v6_packet(kPeer6, kSelf6, 17, udp_header(53, 50000))));  // refreshes
  f.now += std::chrono::minutes(4);
  EXPECT_TRUE(f.in(v6_packet(kPeer6, kSelf6, 17, udp_header(53, 50000))));
  f.now += std::chrono::minutes(6);
  EXPECT_FALSE(f.in(v6_packet(kPeer6, kSelf6, 17, udp_header(53, 50000))));
}

TEST(AgentPacketFilter, Ipv6TableIsBounded) {
  SeededRandom rng(2);
  PacketFilter filter(rng, PacketFilter::Limits{16384, 65536, 4});
  filter.set_shields_up(true);
  for (std::uint16_t port = 1000; port < 1010; ++port) {
    Bytes p = v6_packet(kSelf6, kPeer6, 17, udp_header(port, 53));
    EXPECT_EQ(filter.outbound(Instant{}, p), p.size());  // passes, tracked or not
  }
  EXPECT_EQ(filter.counters().untracked, 6u);
  Bytes reply = v6_packet(kPeer6, kSelf6, 17, udp_header(53, 1000));
  EXPECT_NE(filter.inbound(Instant{}, reply), 0u);
  Bytes lost = v6_packet(kPeer6, kSelf6, 17, udp_header(53, 1009));
  EXPECT_EQ(filter.inbound(Instant{}, lost), 0u);
}

}  // namespace
}  // namespace knit::agent
