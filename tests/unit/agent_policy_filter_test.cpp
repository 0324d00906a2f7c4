// The access policy on the packet path: PacketFilter with rules pushed as the coordinator
// sends them. New inbound flows must match a rule; replies to this host's own flows pass;
// accepted flows continue; a rule change cuts flows it no longer allows (counted); ICMP errors
// about accepted flows pass; hostile pushes are refused and counted. IPv4 and IPv6.
#include <gtest/gtest.h>

#include "agent/packet_filter.hpp"
#include "nat/packet_builder.hpp"
#include "nat/wire.hpp"
#include "policy/compile.hpp"
#include "policy/wire.hpp"

namespace knit::agent {
namespace {

using nat::make_icmp_error;
using nat::make_icmp_query;
using nat::make_tcp;
using nat::make_udp;

Endpoint ep(const char* text) { return Endpoint::parse(text).value(); }
IpAddress ip(const char* text) { return IpAddress::parse(text).value(); }

// db (100.64.0.1) is this node; web (.2) may reach it on 5432/tcp and ping it; ops (.3) may
// reach everything; plain (.4) nothing.
policy::Mesh mesh() {
  policy::Mesh m;
  m.nodes.push_back({"db", {"db"}, {ip("100.64.0.1"), ip("fd7a::1")}, {}});
  m.nodes.push_back({"web", {"web"}, {ip("100.64.0.2"), ip("fd7a::2")}, {}});
  m.nodes.push_back({"ops", {"ops"}, {ip("100.64.0.3"), ip("fd7a::3")}, {}});
  m.nodes.push_back({"plain", {}, {ip("100.64.0.4"), ip("fd7a::4")}, {}});
  return m;
}

control::PolicyRules pushed(const char* text, std::uint64_t version = 1) {
  auto parsed = policy::parse_document(text);
  const auto& doc = std::get<policy::Document>(parsed);
  const policy::Mesh m = mesh();
  return control::PolicyRules{true, policy::encode_rules(version, policy::compile_for(doc, m, m.nodes[0]))};
}

constexpr const char* kPolicy = R"({"rules": [
  {"action": "accept", "src": ["tag:web"], "dst": ["tag:db:5432"], "proto": "tcp", "name": "web-db"},
  {"action": "accept", "src": ["tag:web"], "dst": ["tag:db:*"], "proto": "icmp", "name": "web-ping"},
  {"action": "accept", "src": ["tag:ops"], "dst": ["*:*"], "name": "ops"},
]})";

struct Fixture {
  Fixture() : rng(5), filter(rng) { filter.set_mesh_address(ip("100.64.0.1")); }
  bool in(const Bytes& p) {
    Bytes copy = p;
    return filter.inbound(now, copy) != 0;
  }
  bool out(const Bytes& p) {
    Bytes copy = p;
    return filter.outbound(now, copy) != 0;
  }
  SeededRandom rng;
  PacketFilter filter;
  Instant now{};
};

Bytes v6(const char* s, const char* d, std::uint8_t next, Bytes payload) {
  Bytes p(40, 0);
  p[0] = 0x60;
  p[4] = static_cast<std::uint8_t>(payload.size() >> 8);
  p[5] = static_cast<std::uint8_t>(payload.size());
  p[6] = next;
  p[7] = 64;
  const IpAddress a = ip(s), b = ip(d);
  std::copy(a.bytes(), a.bytes() + 16, p.begin() + 8);
  std::copy(b.bytes(), b.bytes() + 16, p.begin() + 24);
  p.insert(p.end(), payload.begin(), payload.end());
  return p;
}
Bytes tcp6(std::uint16_t sport, std::uint16_t dport, std::uint8_t flags) {
  Bytes t(20, 0);
  t[0] = sport >> 8, t[1] = sport & 0xff, t[2] = dport >> 8, t[3] = dport & 0xff;
  t[12] = 5 << 4;
  t[13] = flags;
  return t;
}

const Bytes kWebSyn = make_tcp(ep("100.64.0.2:40000"), ep("100.64.0.1:5432"), nat::kTcpSyn);
const Bytes kWebAck = make_tcp(ep("100.64.0.2:40000"), ep("100.64.0.1:5432"), nat::kTcpAck);

}  // namespace

TEST(AgentPolicyFilter, NoPolicyEverythingPasses) {
  Fixture f;
  EXPECT_FALSE(f.filter.policy().in_force());
  EXPECT_TRUE(f.in(make_tcp(ep("100.64.0.4:1000"), ep("100.64.0.1:22"), nat::kTcpSyn)));
  EXPECT_EQ(f.filter.policy().counters().denied, 0u);
}

TEST(AgentPolicyFilter, NewInboundFlowsMustMatchARule) {
  Fixture f;
  ASSERT_TRUE(f.filter.policy().apply(pushed(kPolicy)));
  EXPECT_TRUE(f.in(kWebSyn));
  EXPECT_TRUE(f.in(kWebAck));  // the established flow continues
  EXPECT_TRUE(f.out(make_tcp(ep("100.64.0.1:5432"), ep("100.64.0.2:40000"), nat::kTcpSyn | nat::kTcpAck)));
  EXPECT_FALSE(f.in(make_tcp(ep("100.64.0.2:40000"), ep("100.64.0.1:22"), nat::kTcpSyn)));   // wrong port
  EXPECT_FALSE(f.in(make_udp(ep("100.64.0.2:40000"), ep("100.64.0.1:5432"))));               // wrong protocol
  EXPECT_FALSE(f.in(make_tcp(ep("100.64.0.4:40000"), ep("100.64.0.1:5432"), nat::kTcpSyn)));  // untagged
  EXPECT_TRUE(f.in(make_icmp_query(ip("100.64.0.2"), ip("100.64.0.1"), nat::kIcmpEchoRequest, 7, 1)));
  EXPECT_FALSE(f.in(make_icmp_query(ip("100.64.0.4"), ip("100.64.0.1"), nat::kIcmpEchoRequest, 7, 1)));
  EXPECT_TRUE(f.in(make_udp(ep("100.64.0.3:5000"), ep("100.64.0.1:53"))));  // ops: anything
  const PolicyCounters c = f.filter.policy().counters();
  EXPECT_TRUE(c.in_force);
  EXPECT_EQ(c.denied, 4u);
  ASSERT_EQ(c.rules.size(), 3u);
  EXPECT_EQ(c.rules[0].name, "\"web-db\" (line 2)");
  EXPECT_EQ(c.rules[0].accepted_flows, 1u);
  EXPECT_EQ(c.rules[0].accepted_packets, 2u);
  EXPECT_EQ(c.rules[1].accepted_flows, 1u);
  EXPECT_EQ(c.rules[2].accepted_flows, 1u);
  EXPECT_EQ(c.flows, 3u);
}

TEST(AgentPolicyFilter, RepliesToThisHostsOwnFlowsPassWhateverThePolicy) {
  Fixture f;
  ASSERT_TRUE(f.filter.policy().apply(pushed(kPolicy)));
  // db connects to plain, which the policy does not let in: plain's replies still pass.
  ASSERT_TRUE(f.out(make_tcp(ep("100.64.0.1:41000"), ep("100.64.0.4:80"), nat::kTcpSyn)));
  EXPECT_TRUE(f.in(make_tcp(ep("100.64.0.4:80"), ep("100.64.0.1:41000"), nat::kTcpSyn | nat::kTcpAck)));
  ASSERT_TRUE(f.out(make_icmp_query(ip("100.64.0.1"), ip("100.64.0.4"), nat::kIcmpEchoRequest, 9, 1)));
  EXPECT_TRUE(f.in(make_icmp_query(ip("100.64.0.4"), ip("100.64.0.1"), nat::kIcmpEchoReply, 9, 1)));
  EXPECT_EQ(f.filter.policy().counters().denied, 0u);
}

// db routes 10.77.0.0/24 untranslated (--snat-routes=false): a LAN host's own flows to a peer
// the policy does not let in get their replies; new flows from that peer into the LAN do not.
TEST(AgentPolicyFilter, RepliesToALanHostsOwnFlowsPassThroughTheRouter) {
  Fixture f;
  f.filter.set_routed_prefixes({IpPrefix::parse("10.77.0.0/24").value()});
  ASSERT_TRUE(f.filter.policy().apply(pushed(kPolicy)));
  // Before the LAN host opened anything, plain's SYN-ACK is a new flow into the LAN: denied.
  EXPECT_FALSE(f.in(make_tcp(ep("100.64.0.4:80"), ep("10.77.0.5:40000"), nat::kTcpSyn | nat::kTcpAck)));
  ASSERT_TRUE(f.out(make_tcp(ep("10.77.0.5:40000"), ep("100.64.0.4:80"), nat::kTcpSyn)));
  EXPECT_TRUE(f.in(make_tcp(ep("100.64.0.4:80"), ep("10.77.0.5:40000"), nat::kTcpSyn | nat::kTcpAck)));
  EXPECT_TRUE(f.in(make_tcp(ep("100.64.0.4:80"), ep("10.77.0.5:40000"), nat::kTcpAck)));
  // Not another port, not another LAN host, not a new flow from plain.
  EXPECT_FALSE(f.in(make_tcp(ep("100.64.0.4:81"), ep("10.77.0.5:40000"), nat::kTcpSyn | nat::kTcpAck)));
  EXPECT_FALSE(f.in(make_tcp(ep("100.64.0.4:80"), ep("10.77.0.6:40000"), nat::kTcpSyn | nat::kTcpAck)));
  EXPECT_FALSE(f.in(make_tcp(ep("100.64.0.4:5000"), ep("10.77.0.5:22"), nat::kTcpSyn)));
  // UDP and ping the same way.
  ASSERT_TRUE(f.out(make_udp(ep("10.77.0.5:5353"), ep("100.64.0.4:53"))));
  EXPECT_TRUE(f.in(make_udp(ep("100.64.0.4:53"), ep("10.77.0.5:5353"))));
  ASSERT_TRUE(f.out(make_icmp_query(ip("10.77.0.5"), ip("100.64.0.4"), nat::kIcmpEchoRequest, 7, 1)));
  EXPECT_TRUE(f.in(make_icmp_query(ip("100.64.0.4"), ip("10.77.0.5"), nat::kIcmpEchoReply, 7, 1)));
  EXPECT_FALSE(f.in(make_icmp_query(ip("100.64.0.4"), ip("10.77.0.5"), nat::kIcmpEchoRequest, 7, 2)));
  // A rule change keeps them (they are the LAN's flows, not the policy's); they go when idle.
  ASSERT_TRUE(f.filter.policy().apply(pushed(kPolicy, 2)));
  EXPECT_TRUE(f.in(make_tcp(ep("100.64.0.4:80"), ep("10.77.0.5:40000"), nat::kTcpAck)));
  f.now += PolicyFilter::kFlowIdle + std::chrono::seconds(1);
  f.filter.policy().expire(f.now);
  EXPECT_FALSE(f.in(make_tcp(ep("100.64.0.4:80"), ep("10.77.0.5:40000"), nat::kTcpAck)));
}

TEST(AgentPolicyFilter, AChangeAppliesToNewFlowsAtOnceAndCutsEstablishedOnes) {
  Fixture f;
  ASSERT_TRUE(f.filter.policy().apply(pushed(kPolicy)));
  ASSERT_TRUE(f.in(kWebSyn));
  // A UDP flow from ops that this host answered: the engine now tracks it as this host's.
  const Bytes ops_udp = make_udp(ep("100.64.0.3:5000"), ep("100.64.0.1:53"));
  ASSERT_TRUE(f.in(ops_udp));
  ASSERT_TRUE(f.out(make_udp(ep("100.64.0.1:53"), ep("100.64.0.3:5000"))));
  ASSERT_TRUE(f.in(ops_udp));
  // The new policy lets web in on 5433 only, and ops nowhere.
  ASSERT_TRUE(f.filter.policy().apply(pushed(R"({"rules": [
    {"action": "accept", "src": ["tag:web"], "dst": ["tag:db:5433"], "proto": "tcp"}]})", 2)));
  EXPECT_EQ(f.filter.policy().counters().cut, 2u);
  EXPECT_FALSE(f.in(kWebAck));   // cut
  EXPECT_FALSE(f.in(ops_udp));   // cut, although the engine tracks it
  EXPECT_TRUE(f.in(make_tcp(ep("100.64.0.2:40001"), ep("100.64.0.1:5433"), nat::kTcpSyn)));  // new rule, at once
  EXPECT_EQ(f.filter.policy().version(), 2u);
  // And back: the cut flow is allowed again.
  ASSERT_TRUE(f.filter.policy().apply(pushed(kPolicy, 3)));
  EXPECT_TRUE(f.in(kWebAck));
  EXPECT_EQ(f.filter.policy().counters().cut, 3u);  // the flow to 5433 is cut in turn
  // Removing the policy opens everything.
  ASSERT_TRUE(f.filter.policy().apply(control::PolicyRules{}));
  EXPECT_TRUE(f.in(make_tcp(ep("100.64.0.4:1"), ep("100.64.0.1:2"), nat::kTcpSyn)));
  EXPECT_EQ(f.filter.policy().counters().flows, 0u);
}

TEST(AgentPolicyFilter, IcmpErrorsAboutAcceptedFlowsPass) {
  Fixture f;
  ASSERT_TRUE(f.filter.policy().apply(pushed(kPolicy)));
  ASSERT_TRUE(f.in(kWebSyn));
  // This host's SYN-ACK, refused on the way: the error comes back from web.
  const Bytes syn_ack = make_tcp(ep("100.64.0.1:5432"), ep("100.64.0.2:40000"), nat::kTcpSyn | nat::kTcpAck);
  EXPECT_TRUE(f.in(make_icmp_error(ip("100.64.0.2"), ip("100.64.0.1"), 3, 3, syn_ack)));
  // About a flow nobody accepted: denied.
  const Bytes other = make_tcp(ep("100.64.0.1:22"), ep("100.64.0.4:50000"), nat::kTcpSyn | nat::kTcpAck);
  EXPECT_FALSE(f.in(make_icmp_error(ip("100.64.0.4"), ip("100.64.0.1"), 3, 3, other)));
}

TEST(AgentPolicyFilter, Ipv6FlowsAreCheckedToo) {
  Fixture f;
  ASSERT_TRUE(f.filter.policy().apply(pushed(kPolicy)));
  EXPECT_TRUE(f.in(v6("fd7a::2", "fd7a::1", 6, tcp6(40000, 5432, nat::kTcpSyn))));
  EXPECT_TRUE(f.in(v6("fd7a::2", "fd7a::1", 6, tcp6(40000, 5432, nat::kTcpAck))));
  EXPECT_FALSE(f.in(v6("fd7a::2", "fd7a::1", 6, tcp6(40000, 22, nat::kTcpSyn))));
  EXPECT_FALSE(f.in(v6("fd7a::4", "fd7a::1", 6, tcp6(40000, 5432, nat::kTcpSyn))));
  EXPECT_TRUE(f.in(v6("fd7a::2", "fd7a::1", 58, Bytes{128, 0, 0, 0, 0, 7, 0, 1})));  // echo request
  // A hop-by-hop header in front does not hide the ports.
  Bytes hop{6, 0, 1, 4, 0, 0, 0, 0};
  Bytes t = tcp6(40000, 22, nat::kTcpSyn);
  hop.insert(hop.end(), t.begin(), t.end());
  EXPECT_FALSE(f.in(v6("fd7a::2", "fd7a::1", 0, hop)));
  // Replies to this host's own IPv6 flows pass.
  ASSERT_TRUE(f.out(v6("fd7a::1", "fd7a::4", 6, tcp6(41000, 80, nat::kTcpSyn))));
  EXPECT_TRUE(f.in(v6("fd7a::4", "fd7a::1", 6, tcp6(80, 41000, nat::kTcpSyn | nat::kTcpAck))));
}

TEST(AgentPolicyFilter, HostilePushesAreRefusedCountedAndChangeNothing) {
  Fixture f;
  ASSERT_TRUE(f.filter.policy().apply(pushed(kPolicy)));
  std::string why;
  control::PolicyRules bad{true, "KP\x01garbage"};
  EXPECT_FALSE(f.filter.policy().apply(bad, &why));
  EXPECT_NE(why.find("malformed policy rules"), std::string::npos);
  bad.rules = pushed(kPolicy).rules + "x";
  EXPECT_FALSE(f.filter.policy().apply(bad));
  EXPECT_EQ(f.filter.policy().counters().rejected_updates, 2u);
  EXPECT_TRUE(f.in(kWebSyn));  // the rules in force stayed
  EXPECT_FALSE(f.in(make_tcp(ep("100.64.0.4:40000"), ep("100.64.0.1:5432"), nat::kTcpSyn)));
  EXPECT_NE(f.filter.policy().describe().find("web-db"), std::string::npos);
}

TEST(AgentPolicyFilter, ShieldsUpStillRefuseWhatThePolicyAllows) {
  Fixture f;
  ASSERT_TRUE(f.filter.policy().apply(pushed(kPolicy)));
  f.filter.set_shields_up(true);
  EXPECT_FALSE(f.in(kWebSyn));
  EXPECT_EQ(f.filter.counters().refused_v4, 1u);
}

// A port forward is a service of this node: who may open a flow into it is the policy's to say,
// judged as traffic into this node on the mesh port (not the target's), and a rule change cuts
// an open forwarded connection like any other flow. The target's replies still go back.
TEST(AgentPolicyFilter, PortForwardsAreUnderThePolicy) {
  Fixture f;
  ASSERT_EQ(f.filter.add_forward({localapi::ForwardProtocol::tcp, 5432, ep("10.9.0.2:15432")}), "");
  ASSERT_EQ(f.filter.add_forward({localapi::ForwardProtocol::udp, 5432, ep("10.9.0.2:15432")}), "");
  ASSERT_TRUE(f.filter.policy().apply(pushed(kPolicy)));
  // web may reach tcp/5432 (rule web-db), and the forward takes it to the target.
  Bytes syn = kWebSyn;
  const std::size_t n = f.filter.inbound(f.now, syn);
  ASSERT_NE(n, 0u);
  EXPECT_EQ(nat::summarize(ByteSpan(syn.data(), n)).destination, ep("10.9.0.2:15432"));
  ASSERT_TRUE(f.out(make_tcp(ep("10.9.0.2:15432"), ep("100.64.0.2:40000"), nat::kTcpSyn | nat::kTcpAck)));
  EXPECT_TRUE(f.in(kWebAck));
  // plain may not; nor may web over UDP (the rule is tcp only). Neither reaches the target.
  EXPECT_FALSE(f.in(make_tcp(ep("100.64.0.4:40000"), ep("100.64.0.1:5432"), nat::kTcpSyn)));
  EXPECT_FALSE(f.in(make_udp(ep("100.64.0.2:40000"), ep("100.64.0.1:5432"))));
  EXPECT_EQ(f.filter.forwards()[0].connections, 1u);
  EXPECT_EQ(f.filter.policy().counters().denied, 2u);
  EXPECT_EQ(f.filter.policy().counters().rules[0].accepted_flows, 1u);
  // A policy that no longer lets web in cuts the forwarded connection.
  ASSERT_TRUE(f.filter.policy().apply(pushed(R"({"rules": [
    {"action": "accept", "src": ["tag:ops"], "dst": ["*:*"]}]})", 2)));
  EXPECT_EQ(f.filter.policy().counters().cut, 1u);
  EXPECT_FALSE(f.in(kWebAck));
  // ops may, and without a policy anyone may.
  EXPECT_TRUE(f.in(make_udp(ep("100.64.0.3:5000"), ep("100.64.0.1:5432"))));
  ASSERT_TRUE(f.filter.policy().apply(control::PolicyRules{}));
  EXPECT_TRUE(f.in(make_tcp(ep("100.64.0.4:40001"), ep("100.64.0.1:5432"), nat::kTcpSyn)));
}

}  // namespace knit::agent
