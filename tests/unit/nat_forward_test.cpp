// Static port forwards (DNAT) with their own counters, and the human-readable dump.
#include <gtest/gtest.h>

#include "nat/nat_engine.hpp"
#include "nat/packet_builder.hpp"
#include "nat/wire.hpp"

namespace knit::nat {
namespace {

using namespace std::chrono_literals;

Endpoint ep(const char* text) { return Endpoint::parse(text).value(); }
IpAddress ip(const char* text) { return IpAddress::parse(text).value(); }

const Endpoint kSsh = ep("10.0.0.5:22");
const Endpoint kForwarded = ep("203.0.113.1:2222");
const Endpoint kClient = ep("192.0.2.40:50000");

struct Nat {
  explicit Nat(Mapping mapping = Mapping::endpoint_independent)
      : rng(1), engine(make(mapping), rng) {}
  static Config make(Mapping mapping) {
    Config c;
    c.external_addresses = {ip("203.0.113.1"), ip("203.0.113.2")};
    c.mapping = mapping;
    c.filtering = Filtering::address_and_port_dependent;
    c.port_forwards = {PortForward{Protocol::tcp, 2222, kSsh.address(), 22, {}}};
    return c;
  }
  SeededRandom rng;
  NatEngine engine;
  Instant now{};
};

TEST(NatForward, InboundFromAnyoneReachesTheInternalEndpoint) {
  Nat nat;
  Bytes syn = make_tcp(kClient, kForwarded, kTcpSyn);
  ASSERT_EQ(nat.engine.inbound(nat.now, syn).verdict, Verdict::forward);
  EXPECT_EQ(summarize(syn).destination, kSsh);
  EXPECT_TRUE(verify_checksums(syn).all());
  // The server's answer leaves from the forwarded port.
  Bytes syn_ack = make_tcp(kSsh, kClient, kTcpSyn | kTcpAck);
  ASSERT_EQ(nat.engine.outbound(nat.now, syn_ack).verdict, Verdict::forward);
  EXPECT_EQ(summarize(syn_ack).source, kForwarded);
  Bytes ack = make_tcp(kClient, kForwarded, kTcpAck);
  ASSERT_EQ(nat.engine.inbound(nat.now, ack).verdict, Verdict::forward);
  const auto forwards = nat.engine.port_forwards();
  ASSERT_EQ(forwards.size(), 1u);
  EXPECT_EQ(forwards[0].inbound_packets, 2u);
  EXPECT_EQ(forwards[0].outbound_packets, 1u);
  EXPECT_EQ(forwards[0].sessions_opened, 1u);
  EXPECT_EQ(forwards[0].forward.external_address, ip("203.0.113.1"));
  const Stats s = nat.engine.stats();
  EXPECT_EQ(s.port_forward_inbound, 2u);
  EXPECT_EQ(s.port_forward_outbound, 1u);
  // Other protocols on that port are not forwarded.
  Bytes udp = make_udp(kClient, kForwarded);
  EXPECT_EQ(nat.engine.inbound(nat.now, udp).reason, DropReason::no_mapping);
}

TEST(NatForward, OutboundFlowsOfTheServerUseTheForwardEvenWhenSymmetric) {
  Nat nat(Mapping::address_and_port_dependent);
  Bytes a = make_tcp(kSsh, ep("198.51.100.1:443"), kTcpSyn);
  Bytes b = make_tcp(kSsh, ep("198.51.100.2:443"), kTcpSyn);
  ASSERT_EQ(nat.engine.outbound(nat.now, a).verdict, Verdict::forward);
  ASSERT_EQ(nat.engine.outbound(nat.now, b).verdict, Verdict::forward);
  EXPECT_EQ(summarize(a).source, kForwarded);
  EXPECT_EQ(summarize(b).source, kForwarded);
}

TEST(NatForward, AddRemoveAndConflicts) {
  Nat nat;
  EXPECT_EQ(nat.engine.add_port_forward({Protocol::tcp, 2222, ip("10.0.0.6"), 22, {}}),
            ForwardError::port_in_use);
  EXPECT_EQ(nat.engine.add_port_forward({Protocol::icmp, 1, ip("10.0.0.6"), 1, {}}),
            ForwardError::bad_protocol);
  EXPECT_EQ(nat.engine.add_port_forward({Protocol::udp, 0, ip("10.0.0.6"), 53, {}}),
            ForwardError::bad_port);
  EXPECT_EQ(
      nat.engine.add_port_forward({Protocol::udp, 53, ip("10.0.0.6"), 53, ip("198.51.100.1")}),
      ForwardError::not_external_address);
  // A dynamic mapping holds 5000: a forward cannot take it.
  Bytes p = make_udp(ep("10.0.0.9:5000"), ep("198.51.100.1:1"));
  ASSERT_EQ(nat.engine.outbound(nat.now, p).verdict, Verdict::forward);
  const Endpoint taken = summarize(p).source;
  EXPECT_EQ(nat.engine.add_port_forward(
                {Protocol::udp, taken.port(), ip("10.0.0.6"), 53, taken.address()}),
            ForwardError::port_in_use);
  // A forward on the second address.
  ASSERT_EQ(
      nat.engine.add_port_forward({Protocol::udp, 53, ip("10.0.0.6"), 5353, ip("203.0.113.2")}),
      ForwardError::none);
  Bytes dns = make_udp(kClient, ep("203.0.113.2:53"));
  ASSERT_EQ(nat.engine.inbound(nat.now, dns).verdict, Verdict::forward);
  EXPECT_EQ(summarize(dns).destination, ep("10.0.0.6:5353"));
  // Dynamic ports never land on a forwarded one.
  for (std::uint32_t i = 0; i < 500; ++i) {
    Bytes q = make_udp(Endpoint(IpAddress::v4(0x0a000a00 + i), 53), ep("198.51.100.1:53"));
    ASSERT_EQ(nat.engine.outbound(nat.now, q).verdict, Verdict::forward);
    EXPECT_FALSE(summarize(q).source == ep("203.0.113.2:53"));
  }
  EXPECT_TRUE(nat.engine.remove_port_forward(Protocol::udp, 53, ip("203.0.113.2")));
  EXPECT_FALSE(nat.engine.remove_port_forward(Protocol::udp, 53, ip("203.0.113.2")));
  EXPECT_EQ(nat.engine.port_forwards().size(), 1u);
}

TEST(NatForward, RemovalLeavesExistingConnectionsAlone) {
  Nat nat;
  Bytes syn = make_tcp(kClient, kForwarded, kTcpSyn);
  ASSERT_EQ(nat.engine.inbound(nat.now, syn).verdict, Verdict::forward);
  ASSERT_TRUE(nat.engine.remove_port_forward(Protocol::tcp, 2222));
  // The connection in progress continues...
  Bytes ack = make_tcp(kClient, kForwarded, kTcpAck);
  EXPECT_EQ(nat.engine.inbound(nat.now, ack).verdict, Verdict::forward);
  Bytes reply = make_tcp(kSsh, kClient, kTcpAck);
  ASSERT_EQ(nat.engine.outbound(nat.now, reply).verdict, Verdict::forward);
  EXPECT_EQ(summarize(reply).source, kForwarded);
  // ...new ones are not admitted.
  Bytes other = make_tcp(ep("192.0.2.41:1"), kForwarded, kTcpSyn);
  EXPECT_EQ(nat.engine.inbound(nat.now, other).reason, DropReason::syn_held);
  // And when it ends, the port is free again.
  nat.now += 5min;
  nat.engine.expire(nat.now);
  EXPECT_EQ(nat.engine.stats().mappings_live, 0u);
  EXPECT_EQ(nat.engine.add_port_forward({Protocol::tcp, 2222, kSsh.address(), 22, {}}),
            ForwardError::none);
}

TEST(NatDump, ReadableTable) {
  Nat nat;
  Bytes out = make_udp(ep("10.0.0.2:41641"), ep("198.51.100.1:3478"));
  ASSERT_EQ(nat.engine.outbound(nat.now, out).verdict, Verdict::forward);
  Bytes syn = make_tcp(ep("10.0.0.2:40000"), ep("198.51.100.1:443"), kTcpSyn);
  ASSERT_EQ(nat.engine.outbound(nat.now, syn).verdict, Verdict::forward);
  Bytes ping = make_icmp_query(ip("10.0.0.3"), ip("198.51.100.1"), kIcmpEchoRequest, 7, 1);
  ASSERT_EQ(nat.engine.outbound(nat.now, ping).verdict, Verdict::forward);
  nat.now += 10s;
  const std::string dump = nat.engine.dump(nat.now);
  SCOPED_TRACE(dump);
  EXPECT_NE(dump.find("4/65536 mappings, 3/262144 sessions"), std::string::npos);
  EXPECT_NE(dump.find("proto"), std::string::npos);
  EXPECT_NE(dump.find("udp   10.0.0.2:41641"), std::string::npos);
  const auto udp =
      nat.engine.find_session(Protocol::udp, ep("10.0.0.2:41641"), ep("198.51.100.1:3478"));
  ASSERT_TRUE(udp);
  EXPECT_NE(dump.find(udp->external.to_string()), std::string::npos);
  EXPECT_NE(dump.find("198.51.100.1:3478"), std::string::npos);
  EXPECT_NE(dump.find("290s"), std::string::npos);  // UDP: 300 s - 10 s
  EXPECT_NE(dump.find("syn_sent"), std::string::npos);
  EXPECT_NE(dump.find("230s"), std::string::npos);  // TCP transitory: 240 s - 10 s
  EXPECT_NE(dump.find("icmp  10.0.0.3:7"), std::string::npos);
  EXPECT_NE(dump.find("10.0.0.5:22"), std::string::npos);  // the idle port forward
  EXPECT_NE(dump.find("forward"), std::string::npos);
  std::printf("%s", dump.c_str());
}

}  // namespace
}  // namespace knit::nat
