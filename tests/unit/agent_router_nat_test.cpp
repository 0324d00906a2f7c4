// The subnet router's SNAT (agent/router_nat.hpp) on a manual clock: peers' flows into a routed
// prefix leave with the router's LAN address and a port of the reserved range; replies, ICMP
// echo and ICMP errors (both ways) find their way back; exhaustion and full tables drop and
// count; sessions time out as RFC 4787/5382/5508 say. Also through PacketFilter, as knitd uses it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>

#include "agent/packet_filter.hpp"
#include "agent/router_nat.hpp"
#include "agent/snat_control.hpp"
#include "nat/packet_builder.hpp"
#include "nat/wire.hpp"
#include "tests/support/ipv6_packets.hpp"

namespace knit::agent {
namespace {

using nat::make_icmp_error;
using nat::make_icmp_query;
using nat::make_tcp;
using nat::make_udp;
using nat::summarize;

Endpoint ep(const char* text) { return Endpoint::parse(text).value(); }
IpAddress ip(const char* text) { return IpAddress::parse(text).value(); }
IpPrefix pfx(const char* text) { return IpPrefix::parse(text).value(); }

const Endpoint kPeer = ep("100.64.0.2:40000");
const Endpoint kPeer2 = ep("100.64.0.3:40000");
const Endpoint kLanHost = ep("10.77.0.2:5001");
const IpAddress kRouter = ip("10.77.0.1");

struct Nat {
  explicit Nat(SnatPortRange ports = {}, RouterNat::Limits limits = {}) : rng(7), nat(rng, ports, limits) {
    nat.set_egress({{pfx("10.77.0.0/24"), kRouter}});
  }
  std::optional<Bytes> to_lan(Bytes packet) {
    const RouterNat::Result r = nat.to_lan(now, packet);
    if (r.outcome == RouterNat::Outcome::not_mine) return packet;
    if (r.outcome != RouterNat::Outcome::translated) return std::nullopt;
    packet.resize(r.length);
    return packet;
  }
  std::optional<Bytes> from_lan(Bytes packet) {
    const RouterNat::Result r = nat.from_lan(now, packet);
    if (r.outcome != RouterNat::Outcome::translated) return std::nullopt;
    packet.resize(r.length);
    return packet;
  }
  SeededRandom rng;
  RouterNat nat;
  Instant now{};
};

bool in_range(std::uint16_t port, SnatPortRange r = {}) { return port >= r.min && port <= r.max; }

TEST(AgentRouterNat, TcpLeavesWithTheRoutersAddressAndRepliesComeBack) {
  Nat n;
  auto syn = n.to_lan(make_tcp(kPeer, kLanHost, nat::kTcpSyn));
  ASSERT_TRUE(syn);
  const nat::PacketSummary s = summarize(*syn);
  EXPECT_EQ(s.source.address(), kRouter);
  EXPECT_TRUE(in_range(s.source.port())) << s.source.port();
  EXPECT_EQ(s.destination, kLanHost);
  EXPECT_EQ(s.ttl, 64);  // the kernel forwards and decrements, not the engine
  EXPECT_TRUE(nat::verify_checksums(*syn).all());
  auto syn_ack = n.from_lan(make_tcp(kLanHost, s.source, nat::kTcpSyn | nat::kTcpAck));
  ASSERT_TRUE(syn_ack);
  EXPECT_EQ(*syn_ack, make_tcp(kLanHost, kPeer, nat::kTcpSyn | nat::kTcpAck));
  // Endpoint-independent mapping: the same peer endpoint to another LAN host keeps its port.
  auto other = n.to_lan(make_tcp(kPeer, ep("10.77.0.3:80"), nat::kTcpSyn));
  ASSERT_TRUE(other);
  EXPECT_EQ(summarize(*other).source, s.source);
  const RouterNat::Totals t = n.nat.totals();
  EXPECT_EQ(t.mappings, 1u);
  EXPECT_EQ(t.sessions, 2u);
  ASSERT_EQ(n.nat.sessions().size(), 2u);
  EXPECT_EQ(n.nat.sessions()[0].egress, kRouter);
}

TEST(AgentRouterNat, LowSourcePortsAlsoMapIntoTheReservedRange) {
  Nat n;
  auto syn = n.to_lan(make_tcp(ep("100.64.0.2:22"), kLanHost, nat::kTcpSyn));
  ASSERT_TRUE(syn);
  EXPECT_TRUE(in_range(summarize(*syn).source.port())) << summarize(*syn).source.port();
  auto udp = n.to_lan(make_udp(ep("100.64.0.2:61500"), kLanHost));  // preserved: already in range
  ASSERT_TRUE(udp);
  EXPECT_EQ(summarize(*udp).source.port(), 61500);
}

TEST(AgentRouterNat, UdpRepliesOnlyFromTheEndpointThePeerTalkedTo) {
  Nat n;
  auto out = n.to_lan(make_udp(kPeer, kLanHost, Bytes{1, 2, 3}));
  ASSERT_TRUE(out);
  const Endpoint mapped = summarize(*out).source;
  EXPECT_TRUE(n.from_lan(make_udp(kLanHost, mapped)));
  EXPECT_FALSE(n.from_lan(make_udp(ep("10.77.0.9:5001"), mapped)));  // another LAN host
  EXPECT_FALSE(n.from_lan(make_udp(ep("10.77.0.2:5002"), mapped)));  // another port
  EXPECT_FALSE(n.from_lan(make_udp(kLanHost, Endpoint(kRouter, 61998))));  // nobody's port
  EXPECT_EQ(n.nat.totals().dropped_from_lan, 3u);
}

TEST(AgentRouterNat, NotMine) {
  Nat n;
  const Bytes to_router = make_tcp(kPeer, ep("10.77.0.1:22"), nat::kTcpSyn);  // the router itself
  EXPECT_EQ(n.to_lan(to_router), to_router);
  const Bytes elsewhere = make_tcp(kPeer, ep("10.78.0.2:22"), nat::kTcpSyn);  // not routed
  EXPECT_EQ(n.to_lan(elsewhere), elsewhere);
  Bytes not_to_router = make_udp(kLanHost, ep("100.64.0.2:40000"));
  EXPECT_EQ(n.nat.from_lan(n.now, not_to_router).outcome, RouterNat::Outcome::not_mine);
  n.nat.set_egress({});
  const Bytes syn = make_tcp(kPeer, kLanHost, nat::kTcpSyn);
  EXPECT_EQ(n.to_lan(syn), syn);  // --snat-routes=false: untranslated
}

TEST(AgentRouterNat, IcmpEchoAndErrorsBothWays) {
  Nat n;
  auto echo = n.to_lan(make_icmp_query(kPeer.address(), kLanHost.address(), nat::kIcmpEchoRequest, 0x1234, 1));
  ASSERT_TRUE(echo);
  const nat::PacketSummary e = summarize(*echo);
  EXPECT_EQ(e.source.address(), kRouter);
  auto reply = n.from_lan(make_icmp_query(kLanHost.address(), kRouter, nat::kIcmpEchoReply, e.source.port(), 1));
  ASSERT_TRUE(reply);
  EXPECT_EQ(*reply, make_icmp_query(kLanHost.address(), kPeer.address(), nat::kIcmpEchoReply, 0x1234, 1));

  // The LAN host refuses a translated UDP datagram: its port unreachable reaches the peer, the
  // quoted packet as the peer sent it (RFC 5508 REQ-3).
  auto udp = n.to_lan(make_udp(kPeer, kLanHost, Bytes{9}));
  ASSERT_TRUE(udp);
  auto error = n.from_lan(make_icmp_error(kLanHost.address(), kRouter, nat::kIcmpDestinationUnreachable, 3, *udp));
  ASSERT_TRUE(error);
  EXPECT_EQ(summarize(*error).destination.address(), kPeer.address());
  EXPECT_EQ(summarize(*error, true).source, kPeer);
  EXPECT_EQ(summarize(*error, true).destination, kLanHost);
  EXPECT_TRUE(nat::verify_checksums(*error).all());

  // The other way: the peer answers a LAN host's datagram with an ICMP error; it leaves from the
  // router's address and quotes the datagram as the LAN host sent it.
  const Endpoint mapped = summarize(*udp).source;
  auto lan_reply = n.from_lan(make_udp(kLanHost, mapped, Bytes{7}));
  ASSERT_TRUE(lan_reply);
  auto peer_error = n.to_lan(make_icmp_error(kPeer.address(), kLanHost.address(), nat::kIcmpDestinationUnreachable, 3, *lan_reply));
  ASSERT_TRUE(peer_error);
  EXPECT_EQ(summarize(*peer_error).source.address(), kRouter);
  EXPECT_EQ(summarize(*peer_error, true).source, kLanHost);
  EXPECT_EQ(summarize(*peer_error, true).destination, mapped);
  EXPECT_TRUE(nat::verify_checksums(*peer_error).all());
  EXPECT_GE(n.nat.totals().icmp_errors_translated, 2u);

  // An error about nothing translated is dropped.
  EXPECT_FALSE(n.from_lan(make_icmp_error(kLanHost.address(), kRouter, nat::kIcmpDestinationUnreachable, 3,
                                          make_udp(Endpoint(kRouter, 61001), kLanHost))));
}

TEST(AgentRouterNat, PortRangeExhaustionDropsAndCounts) {
  Nat n(SnatPortRange{61000, 61001});
  EXPECT_TRUE(n.to_lan(make_udp(ep("100.64.0.2:1000"), kLanHost)));
  EXPECT_TRUE(n.to_lan(make_udp(ep("100.64.0.2:1001"), kLanHost)));
  EXPECT_FALSE(n.to_lan(make_udp(ep("100.64.0.2:1002"), kLanHost)));
  EXPECT_EQ(n.nat.totals().drops[static_cast<std::size_t>(nat::DropReason::ports_exhausted)], 1u);
  // An existing mapping keeps working.
  EXPECT_TRUE(n.to_lan(make_udp(ep("100.64.0.2:1000"), ep("10.77.0.3:53"))));
}

TEST(AgentRouterNat, AFullTableDropsAndCounts) {
  Nat n(SnatPortRange{}, RouterNat::Limits{1, 1});
  EXPECT_TRUE(n.to_lan(make_udp(kPeer, kLanHost)));
  EXPECT_FALSE(n.to_lan(make_udp(kPeer2, kLanHost)));
  EXPECT_EQ(n.nat.totals().drops[static_cast<std::size_t>(nat::DropReason::table_full)], 1u);
}

TEST(AgentRouterNat, TimeoutsFollowTheRfcs) {
  Nat n;
  auto udp = n.to_lan(make_udp(kPeer, kLanHost));
  auto tcp = n.to_lan(make_tcp(kPeer2, kLanHost, nat::kTcpSyn));
  ASSERT_TRUE(udp && tcp);
  const Endpoint udp_mapped = summarize(*udp).source;
  const Endpoint tcp_mapped = summarize(*tcp).source;
  ASSERT_TRUE(n.from_lan(make_tcp(kLanHost, tcp_mapped, nat::kTcpSyn | nat::kTcpAck)));
  ASSERT_TRUE(n.to_lan(make_tcp(kPeer2, kLanHost, nat::kTcpAck)));  // established
  n.now += std::chrono::minutes(4) + std::chrono::seconds(59);     // RFC 4787 REQ-5: >= 2 min, 5 by default
  EXPECT_TRUE(n.from_lan(make_udp(kLanHost, udp_mapped)));
  n.now += std::chrono::minutes(5) + std::chrono::seconds(1);
  n.nat.expire(n.now);
  EXPECT_FALSE(n.from_lan(make_udp(kLanHost, udp_mapped)));
  // RFC 5382 REQ-5: an established connection idles 2 h 4 min.
  n.now += std::chrono::minutes(100);
  EXPECT_TRUE(n.from_lan(make_tcp(kLanHost, tcp_mapped, nat::kTcpAck)));
  n.now += std::chrono::minutes(125);
  n.nat.expire(n.now);
  EXPECT_FALSE(n.from_lan(make_tcp(kLanHost, tcp_mapped, nat::kTcpAck)));
  EXPECT_EQ(n.nat.totals().sessions, 0u);
}

TEST(AgentRouterNat, EachPrefixLeavesFromItsOwnEgressAddress) {
  Nat n;
  n.nat.set_egress({{pfx("10.77.0.0/24"), kRouter}, {pfx("192.168.5.0/24"), ip("192.168.5.1")}});
  auto a = n.to_lan(make_udp(kPeer, kLanHost));
  auto b = n.to_lan(make_udp(kPeer, ep("192.168.5.20:53")));
  ASSERT_TRUE(a && b);
  EXPECT_EQ(summarize(*a).source.address(), kRouter);
  EXPECT_EQ(summarize(*b).source.address(), ip("192.168.5.1"));
  EXPECT_EQ(n.nat.addresses().size(), 2u);
  // Dropping one prefix keeps the other's sessions.
  n.nat.set_egress({{pfx("10.77.0.0/24"), kRouter}});
  EXPECT_TRUE(n.from_lan(make_udp(kLanHost, summarize(*a).source)));
  EXPECT_EQ(n.nat.totals().mappings, 1u);
}

// IPv6 egress (an exit's ::/0, a router's IPv6 LAN): nat::Nat66 behind the same calls. A UDP
// datagram from a peer's mesh ULA leaves with the egress address, the reply comes back, the
// sessions and counters are the router's.
TEST(AgentRouterNat, Ipv6EgressTranslatesWithNat66) {
  SeededRandom rng(9);
  RouterNat nat(rng);
  const IpAddress egress6 = ip("2001:db8:1::1");
  nat.set_egress({{pfx("10.77.0.0/24"), kRouter}, {pfx("::/0"), egress6}, {pfx("10.1.0.0/16"), egress6}});
  EXPECT_EQ(nat.addresses(), (std::vector<IpAddress>{kRouter, egress6}));
  EXPECT_EQ(nat.egress().size(), 2u) << "a prefix and an egress address of different families are ignored";
  // fd7a::2 port 40000 -> 2001:db8:99::5 port 53, UDP with a valid checksum.
  Bytes p(48 + 4, 0);
  p[0] = 0x60;
  store_be16(&p[4], 12);
  p[6] = 17;
  p[7] = 64;
  const IpAddress peer = ip("fd7a:115c:a1e0::2");
  const IpAddress remote = ip("2001:db8:99::5");
  std::memcpy(&p[8], peer.bytes(), 16);
  std::memcpy(&p[24], remote.bytes(), 16);
  store_be16(&p[40], 40000);
  store_be16(&p[42], 53);
  store_be16(&p[44], 12);
  p[48] = 'k';
  const Instant now{};
  ASSERT_EQ(nat.to_lan(now, p).outcome, RouterNat::Outcome::translated);
  EXPECT_EQ(IpAddress::v6(&p[8]), egress6);
  const std::uint16_t port = load_be16(&p[40]);
  EXPECT_TRUE(in_range(port));
  Bytes reply = p;
  std::swap_ranges(reply.begin() + 8, reply.begin() + 24, reply.begin() + 24);
  std::swap_ranges(reply.begin() + 40, reply.begin() + 42, reply.begin() + 42);
  ASSERT_EQ(nat.from_lan(now, reply).outcome, RouterNat::Outcome::translated);
  EXPECT_EQ(IpAddress::v6(&reply[24]), peer);
  EXPECT_EQ(load_be16(&reply[42]), 40000);
  // To the egress address itself: this host's, not translated.
  Bytes to_router = p;
  std::memcpy(&to_router[24], egress6.bytes(), 16);
  EXPECT_EQ(nat.to_lan(now, to_router).outcome, RouterNat::Outcome::not_mine);
  const auto sessions = nat.sessions();
  ASSERT_EQ(sessions.size(), 1u);
  EXPECT_EQ(sessions[0].egress, egress6);
  EXPECT_EQ(sessions[0].session.internal, Endpoint(peer, 40000));
  const RouterNat::Totals t = nat.totals();
  EXPECT_EQ(t.translated_to_lan, 1u);
  EXPECT_EQ(t.translated_from_lan, 1u);
  EXPECT_EQ(t.sessions, 1u);
  // The egress goes: its sessions with it, its counters kept.
  nat.set_egress({{pfx("10.77.0.0/24"), kRouter}});
  EXPECT_TRUE(nat.sessions().empty());
  EXPECT_EQ(nat.totals().translated_to_lan, 1u);
}

TEST(AgentRouterNat, ThroughThePacketFilter) {
  SeededRandom rng(5);
  PacketFilter filter(rng);
  filter.set_mesh_address(ip("100.64.0.1"));
  filter.set_routed_prefixes({pfx("10.77.0.0/24")});
  filter.set_shields_up(true);
  filter.router_nat().set_egress({{pfx("10.77.0.0/24"), kRouter}});
  const Instant now{};
  Bytes syn = make_tcp(kPeer, kLanHost, nat::kTcpSyn);
  const std::size_t n = filter.inbound(now, syn);  // mesh -> TUN
  ASSERT_GT(n, 0u);
  syn.resize(n);
  const Endpoint mapped = summarize(syn).source;
  EXPECT_EQ(mapped.address(), kRouter);
  Bytes syn_ack = make_tcp(kLanHost, mapped, nat::kTcpSyn | nat::kTcpAck);
  const std::size_t m = filter.outbound(now, syn_ack);  // TUN -> mesh
  ASSERT_GT(m, 0u);
  syn_ack.resize(m);
  EXPECT_EQ(syn_ack, make_tcp(kLanHost, kPeer, nat::kTcpSyn | nat::kTcpAck));
  // A stranger's packet to a router port nobody holds goes nowhere.
  Bytes stray = make_udp(ep("10.77.0.9:53"), Endpoint(kRouter, 61111));
  EXPECT_EQ(filter.outbound(now, stray), 0u);
}

// An exit node's IPv6 as knitd runs it: the peer's ULA leaves as the exit's egress address
// (PacketFilter::inbound -> RouterNat -> Nat66), replies and ICMPv6 (an echo reply and an error
// from the raw socket) come back to the ULA, the peer's own ICMPv6 error about a reply leaves
// translated too, and the exit's own ULA stays with the host's tracker and its shields.
TEST(AgentRouterNat, Ipv6ThroughThePacketFilterOnAnExit) {
  using namespace knit::testing;
  SeededRandom rng(5);
  PacketFilter filter(rng);
  filter.set_mesh_address(ip("100.64.0.1"));
  filter.set_mesh_ipv6(ip("fd7a:115c:a1e0::1"));
  filter.set_routed_prefixes({pfx("0.0.0.0/0"), pfx("::/0")});
  filter.set_shields_up(true);
  const IpAddress egress = ip("2001:db8:100::1");
  filter.router_nat().set_egress({{pfx("::/0"), egress}});
  const Endpoint peer = ep("[fd7a:115c:a1e0::2]:40000");
  const Endpoint internet = ep("[2001:db8:100::2]:5006");
  const Instant now{};
  auto pass_in = [&](Bytes p) {  // mesh -> TUN
    const std::size_t n = filter.inbound(now, p);
    p.resize(n);
    return p;
  };
  auto pass_out = [&](Bytes p) {  // TUN -> mesh
    const std::size_t n = filter.outbound(now, p);
    p.resize(n);
    return p;
  };
  const Bytes syn = pass_in(make_tcp6(peer, internet, nat::kTcpSyn));
  ASSERT_FALSE(syn.empty());
  EXPECT_EQ(v6_source(syn), egress);
  EXPECT_TRUE(v6_checksum_ok(syn));
  const Endpoint mapped(egress, load_be16(&syn[40]));
  EXPECT_TRUE(in_range(mapped.port()));
  const Bytes syn_ack = pass_out(make_tcp6(internet, mapped, nat::kTcpSyn | nat::kTcpAck));
  ASSERT_FALSE(syn_ack.empty());
  EXPECT_EQ(syn_ack, make_tcp6(internet, peer, nat::kTcpSyn | nat::kTcpAck));
  // UDP: the reply, then the peer's port unreachable about it, which leaves as the exit's.
  const Bytes dns = pass_in(make_udp6(ep("[fd7a:115c:a1e0::2]:5353"), ep("[2001:db8:100::2]:53")));
  ASSERT_FALSE(dns.empty());
  const Endpoint dns_mapped(egress, load_be16(&dns[40]));
  const Bytes answer = pass_out(make_udp6(ep("[2001:db8:100::2]:53"), dns_mapped));
  ASSERT_FALSE(answer.empty());
  const Bytes unreachable = pass_in(make_error6(peer.address(), 1, answer));
  ASSERT_FALSE(unreachable.empty());
  EXPECT_EQ(v6_source(unreachable), egress);
  EXPECT_EQ(IpAddress::v6(&unreachable[48 + 24]), egress) << "the quote's destination";
  EXPECT_EQ(load_be16(&unreachable[48 + 42]), dns_mapped.port());
  EXPECT_TRUE(v6_checksum_ok(unreachable));
  // Echo: the request leaves translated; the reply (read by the raw ICMPv6 socket) comes back.
  const Bytes ping = pass_in(make_echo6(peer.address(), internet.address(), 128, 0x77));
  ASSERT_FALSE(ping.empty());
  const std::uint16_t id = load_be16(&ping[44]);
  const Bytes pong = pass_out(make_echo6(internet.address(), egress, 129, id));
  EXPECT_EQ(pong, make_echo6(internet.address(), peer.address(), 129, 0x77));
  // An error from a router on the way about the SYN (as it left): back to the peer.
  const Bytes too_big = pass_out(make_error6(ip("2001:db8:100::fe"), 2, syn));
  ASSERT_FALSE(too_big.empty());
  EXPECT_EQ(v6_destination(too_big), peer.address());
  EXPECT_TRUE(v6_checksum_ok(too_big));
  // A stranger's packet to a mapped port: filtered (APDF), dropped and counted.
  Bytes stranger = make_udp6(ep("[2001:db8:100::9]:53"), dns_mapped);
  EXPECT_EQ(filter.outbound(now, stranger), 0u);
  const RouterNat::Totals t = filter.router_nat().totals();
  EXPECT_EQ(t.icmp_errors_translated, 2u);
  EXPECT_EQ(t.translated_to_lan, 4u);
  EXPECT_EQ(t.translated_from_lan, 4u);
  // knit nat: IPv6 endpoints in brackets, the egress of ::/0.
  const localapi::SnatStatus status = snat_status(filter.router_nat(), true, "", now, true);
  EXPECT_EQ(status.egress.at("::/0"), "2001:db8:100::1");
  EXPECT_TRUE(std::any_of(status.entries.begin(), status.entries.end(), [](const localapi::SnatEntry& e) {
    return e.protocol == "tcp" && e.internal == "[fd7a:115c:a1e0::2]:40000" && e.remote == "[2001:db8:100::2]:5006";
  }));
  // The exit's own ULA: the host's, behind the shields, never translated.
  Bytes to_self = make_tcp6(peer, ep("[fd7a:115c:a1e0::1]:22"), nat::kTcpSyn);
  EXPECT_EQ(filter.inbound(now, to_self), 0u);
  EXPECT_EQ(filter.counters().refused_v6, 1u);
}

TEST(AgentRouterNat, StatusForKnitNat) {
  Nat n;
  auto udp = n.to_lan(make_udp(kPeer, kLanHost));
  ASSERT_TRUE(udp);
  EXPECT_FALSE(n.to_lan(make_udp(ep("127.0.0.1:1"), kLanHost)));  // a martian source: dropped
  const localapi::SnatStatus s = snat_status(n.nat, true, "", n.now + std::chrono::seconds(10), true);
  EXPECT_TRUE(s.active);
  EXPECT_EQ(s.ports, "61000-61999");
  EXPECT_EQ(s.egress.at("10.77.0.0/24"), "10.77.0.1");
  EXPECT_EQ(s.counters.at("sessions"), 1u);
  EXPECT_EQ(s.counters.at("translated_to_lan"), 1u);
  EXPECT_EQ(s.counters.at("dropped_to_lan"), 1u);
  EXPECT_EQ(s.counters.at("table_full"), 0u);
  ASSERT_EQ(s.entries.size(), 1u);
  const localapi::SnatEntry& e = s.entries[0];
  EXPECT_EQ(e.protocol, "udp");
  EXPECT_EQ(e.internal, "100.64.0.2:40000");
  EXPECT_EQ(e.external, "10.77.0.1:" + std::to_string(summarize(*udp).source.port()));
  EXPECT_EQ(e.remote, "10.77.0.2:5001");
  EXPECT_EQ(e.expires_in, 290);
  EXPECT_EQ(e.idle, 10);
  EXPECT_TRUE(snat_status(n.nat, true, "", n.now, false).entries.empty());
  EXPECT_EQ(snat_status(n.nat, false, "why", n.now, false).problem, "");
}

}  // namespace
}  // namespace knit::agent
