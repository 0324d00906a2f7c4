// Config::own_address_flows: the engine on the host that owns its external address, as knitd's
// stateful filter. The host's own flows pass untranslated and open the way for their replies;
// unsolicited inbound packets are refused; port forwards still translate.
#include <gtest/gtest.h>

#include "nat/nat_engine.hpp"
#include "nat/packet_builder.hpp"
#include "nat/wire.hpp"

namespace knit::nat {
namespace {

Endpoint ep(const char* text) { return Endpoint::parse(text).value(); }
IpAddress ip(const char* text) { return IpAddress::parse(text).value(); }

const Endpoint kHost = ep("100.64.0.1:40000");
const Endpoint kPeer = ep("100.64.0.2:22");

struct Host {
  explicit Host(bool own = true) : rng(7), engine(make(own), rng) {}
  static Config make(bool own) {
    Config c;
    c.external_addresses = {ip("100.64.0.1")};
    c.filtering = Filtering::address_and_port_dependent;
    c.own_address_flows = own;
    c.decrement_ttl = false;
    c.hairpinning = false;
    c.unsolicited_syn_hold = Duration::zero();
    return c;
  }
  SeededRandom rng;
  NatEngine engine;
  Instant now{};
};

TEST(NatHostFilter, OwnFlowsPassUntranslatedAndAdmitTheirReplies) {
  Host host;
  Bytes syn = make_tcp(kHost, kPeer, kTcpSyn);
  const Bytes before = syn;
  ASSERT_EQ(host.engine.outbound(host.now, syn).verdict, Verdict::forward);
  EXPECT_EQ(syn, before);  // same address, same port, same checksums, same TTL
  Bytes syn_ack = make_tcp(kPeer, kHost, kTcpSyn | kTcpAck);
  const Bytes reply_before = syn_ack;
  ASSERT_EQ(host.engine.inbound(host.now, syn_ack).verdict, Verdict::forward);
  EXPECT_EQ(syn_ack, reply_before);
  // The same peer from another port is a stranger.
  Bytes other = make_tcp(ep("100.64.0.2:23"), kHost, kTcpSyn | kTcpAck);
  EXPECT_EQ(host.engine.inbound(host.now, other).verdict, Verdict::drop);
}

TEST(NatHostFilter, UnsolicitedInboundIsRefusedAtOnce) {
  Host host;
  Bytes syn = make_tcp(kPeer, ep("100.64.0.1:22"), kTcpSyn);
  const Result r = host.engine.inbound(host.now, syn);
  EXPECT_EQ(r.verdict, Verdict::drop);
  EXPECT_EQ(r.reason, DropReason::no_mapping);  // no hold: unsolicited_syn_hold is zero
  Bytes udp = make_udp(kPeer, ep("100.64.0.1:53"));
  EXPECT_EQ(host.engine.inbound(host.now, udp).verdict, Verdict::drop);
  Bytes echo = make_icmp_query(ip("100.64.0.2"), ip("100.64.0.1"), kIcmpEchoRequest, 9, 1);
  EXPECT_EQ(host.engine.inbound(host.now, echo).verdict, Verdict::drop);
}

TEST(NatHostFilter, EchoIdentifierIsKept) {
  Host host;
  Bytes echo = make_icmp_query(ip("100.64.0.1"), ip("100.64.0.2"), kIcmpEchoRequest, 4242, 1);
  ASSERT_EQ(host.engine.outbound(host.now, echo).verdict, Verdict::forward);
  EXPECT_EQ(summarize(echo).source.port(), 4242);
  Bytes reply = make_icmp_query(ip("100.64.0.2"), ip("100.64.0.1"), kIcmpEchoReply, 4242, 1);
  ASSERT_EQ(host.engine.inbound(host.now, reply).verdict, Verdict::forward);
  EXPECT_EQ(summarize(reply).destination.port(), 4242);
}

TEST(NatHostFilter, OwnFlowOnAForwardedPortIsTranslatedRatherThanBroken) {
  Host host;
  ASSERT_EQ(host.engine.add_port_forward({Protocol::tcp, 40000, ip("10.9.0.2"), 80, {}}),
            ForwardError::none);
  Bytes syn = make_tcp(kHost, kPeer, kTcpSyn);
  ASSERT_EQ(host.engine.outbound(host.now, syn).verdict, Verdict::forward);
  const Endpoint source = summarize(syn).source;
  EXPECT_EQ(source.address(), kHost.address());
  EXPECT_NE(source.port(), 40000);
  EXPECT_TRUE(verify_checksums(syn).all());
}

TEST(NatHostFilter, ForwardTranslatesBothWays) {
  Host host;
  ASSERT_EQ(host.engine.add_port_forward({Protocol::tcp, 8080, ip("10.9.0.2"), 80, {}}),
            ForwardError::none);
  Bytes syn = make_tcp(ep("100.64.0.2:50000"), ep("100.64.0.1:8080"), kTcpSyn);
  ASSERT_EQ(host.engine.inbound(host.now, syn).verdict, Verdict::forward);
  EXPECT_EQ(summarize(syn).destination, ep("10.9.0.2:80"));
  EXPECT_EQ(summarize(syn).source, ep("100.64.0.2:50000"));
  EXPECT_TRUE(verify_checksums(syn).all());
  Bytes syn_ack = make_tcp(ep("10.9.0.2:80"), ep("100.64.0.2:50000"), kTcpSyn | kTcpAck);
  ASSERT_EQ(host.engine.outbound(host.now, syn_ack).verdict, Verdict::forward);
  EXPECT_EQ(summarize(syn_ack).source, ep("100.64.0.1:8080"));
  EXPECT_TRUE(verify_checksums(syn_ack).all());
}

TEST(NatHostFilter, OffARouterRefusesItsOwnAddressAsASource) {
  Host router(false);
  Bytes syn = make_tcp(kHost, kPeer, kTcpSyn);
  EXPECT_EQ(router.engine.outbound(router.now, syn).reason, DropReason::not_inside);
}

}  // namespace
}  // namespace knit::nat
