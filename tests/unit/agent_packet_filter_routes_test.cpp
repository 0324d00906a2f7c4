// PacketFilter on a subnet router (set_routed_prefixes): packets between the mesh and a subnet
// this node routes pass untranslated and unfiltered; without it the engine would translate a
// LAN host's reply as an inside host's flow (the peer then resets the connection). A port
// forward's target inside the subnet still has its replies translated.
#include <gtest/gtest.h>

#include "agent/packet_filter.hpp"
#include "tests/support/filter_harness.hpp"
#include "nat/packet_builder.hpp"
#include "tests/support/ipv6_packets.hpp"

namespace knit::agent {
namespace {

using nat::make_tcp;

Endpoint ep(const char* text) { return Endpoint::parse(text).value(); }

using Fixture = testing::FilterHarness;

const Endpoint kPeer = ep("100.64.0.2:40000");
const Endpoint kLanHost = ep("10.77.0.2:5001");

TEST(AgentPacketFilterRoutes, WithoutRoutedPrefixesALanReplyIsTranslated) {
  Fixture f;
  const Bytes syn_ack = make_tcp(kLanHost, kPeer, nat::kTcpSyn | nat::kTcpAck);
  auto out = f.out(syn_ack);
  ASSERT_TRUE(out);
  EXPECT_NE(*out, syn_ack);  // the engine took 10.77.0.2 for an inside host of this node
}

TEST(AgentPacketFilterRoutes, RoutedTrafficPassesUntouchedEvenWithShieldsUp) {
  Fixture f;
  f.filter.set_shields_up(true);
  f.filter.set_routed_prefixes({IpPrefix::parse("10.77.0.0/24").value()});
  const Bytes syn = make_tcp(kPeer, kLanHost, nat::kTcpSyn);
  EXPECT_EQ(f.in(syn), syn);
  const Bytes syn_ack = make_tcp(kLanHost, kPeer, nat::kTcpSyn | nat::kTcpAck);
  EXPECT_EQ(f.out(syn_ack), syn_ack);
  EXPECT_EQ(f.filter.routed_packets(), 2u);
  // This host itself stays behind the shields.
  EXPECT_FALSE(f.in(make_tcp(kPeer, ep("100.64.0.1:22"), nat::kTcpSyn)));
  // Outside the routed subnet: as before.
  const Bytes other = make_tcp(ep("10.78.0.2:5001"), kPeer, nat::kTcpSyn | nat::kTcpAck);
  EXPECT_NE(f.out(other), std::optional<Bytes>(other));
}

// An exit node routes 0.0.0.0/0 (the membership adds it when the node advertises an exit):
// peers' internet traffic passes untranslated both ways, as the exit's own SYN-ACK translated
// by the engine would make the peer reset the connection; the exit host's own mesh address
// stays behind the engine and the shields.
TEST(AgentPacketFilterRoutes, AnExitRoutesEverythingButItsOwnMeshAddress) {
  Fixture f;
  f.filter.set_shields_up(true);
  f.filter.set_routed_prefixes({IpPrefix::parse("0.0.0.0/0").value(), IpPrefix::parse("::/0").value()});
  const Endpoint internet = ep("198.51.100.2:5004");
  const Bytes syn = make_tcp(kPeer, internet, nat::kTcpSyn);
  EXPECT_EQ(f.in(syn), syn);
  const Bytes syn_ack = make_tcp(internet, kPeer, nat::kTcpSyn | nat::kTcpAck);
  EXPECT_EQ(f.out(syn_ack), syn_ack);
  EXPECT_EQ(f.filter.routed_packets(), 2u);
  EXPECT_FALSE(f.in(make_tcp(kPeer, ep("100.64.0.1:22"), nat::kTcpSyn)));  // shields up for the host
  EXPECT_EQ(f.filter.routed_packets(), 2u);
}

TEST(AgentPacketFilterRoutes, ForwardTargetsInsideARoutedSubnetAreStillTranslated) {
  Fixture f;
  f.filter.set_routed_prefixes({IpPrefix::parse("10.77.0.0/24").value()});
  ASSERT_EQ(f.filter.add_forward(localapi::ForwardRule{localapi::ForwardProtocol::tcp, 8080, ep("10.77.0.5:80")}), "");
  auto in = f.in(make_tcp(kPeer, ep("100.64.0.1:8080"), nat::kTcpSyn));
  ASSERT_TRUE(in);
  EXPECT_EQ(*in, make_tcp(kPeer, ep("10.77.0.5:80"), nat::kTcpSyn));
  auto out = f.out(make_tcp(ep("10.77.0.5:80"), kPeer, nat::kTcpSyn | nat::kTcpAck));
  ASSERT_TRUE(out);
  EXPECT_EQ(*out, make_tcp(ep("100.64.0.1:8080"), kPeer, nat::kTcpSyn | nat::kTcpAck));
}

}  // namespace
}  // namespace knit::agent

namespace knit::agent {
namespace {

// IPv6 on an exit (::/0 routed), without translation (no IPv6 egress address, or
// `--snat-routes=false`): peers' IPv6 passes both ways past the host's tracker and shields; the
// exit's own ULA stays behind them; without its own ULA known, no IPv6 is taken for routed.
TEST(AgentPacketFilterRoutes, AnExitRoutesIpv6ButItsOwnUla) {
  using namespace knit::testing;
  Fixture f;
  f.filter.set_shields_up(true);
  f.filter.set_routed_prefixes({IpPrefix::parse("0.0.0.0/0").value(), IpPrefix::parse("::/0").value()});
  const Endpoint peer = ep("[fd7a:115c:a1e0::2]:40000");
  const Endpoint internet = ep("[2001:db8:100::2]:443");
  const Bytes syn = make_tcp6(peer, internet, nat::kTcpSyn);
  EXPECT_FALSE(f.in(syn)) << "own ULA unknown: the host's shields decide";
  f.filter.set_mesh_ipv6(IpAddress::parse("fd7a:115c:a1e0::1").value());
  EXPECT_EQ(f.in(syn), syn);
  const Bytes syn_ack = make_tcp6(internet, peer, nat::kTcpSyn | nat::kTcpAck);
  EXPECT_EQ(f.out(syn_ack), syn_ack);
  EXPECT_EQ(f.filter.routed_packets(), 2u);
  EXPECT_FALSE(f.in(make_tcp6(peer, ep("[fd7a:115c:a1e0::1]:22"), nat::kTcpSyn)));
  EXPECT_EQ(f.filter.routed_packets(), 2u);
  EXPECT_EQ(f.filter.counters().refused_v6, 2u);
  f.filter.set_mesh_ipv6(std::nullopt);
  EXPECT_FALSE(f.in(syn));
}

}  // namespace
}  // namespace knit::agent
