// Hairpinning (RFC 4787 REQ-9, RFC 5382 REQ-8): inside-to-inside through external endpoints,
// with the sender's external endpoint as source and filtering applied as from outside.
#include <gtest/gtest.h>

#include "nat/nat_engine.hpp"
#include "nat/packet_builder.hpp"
#include "nat/wire.hpp"

namespace knit::nat {
namespace {

Endpoint ep(const char* text) { return Endpoint::parse(text).value(); }
IpAddress ip(const char* text) { return IpAddress::parse(text).value(); }

const Endpoint kA = ep("10.0.0.2:4000");
const Endpoint kB = ep("10.0.0.3:5000");
const Endpoint kStun = ep("198.51.100.1:3478");

struct Nat {
  explicit Nat(Filtering filtering, bool hairpinning = true)
      : rng(1), engine(make(filtering, hairpinning), rng) {}
  static Config make(Filtering filtering, bool hairpinning) {
    Config c;
    c.external_addresses = {ip("203.0.113.1"), ip("203.0.113.2")};
    c.filtering = filtering;
    c.hairpinning = hairpinning;
    return c;
  }
  // Learns a host's external endpoint the way STUN would.
  Endpoint stun(const Endpoint& host) {
    Bytes p = make_udp(host, kStun);
    EXPECT_EQ(engine.outbound(now, p).verdict, Verdict::forward);
    return summarize(p).source;
  }
  SeededRandom rng;
  NatEngine engine;
  Instant now{};
};

TEST(NatHairpin, Rfc4787Req9UdpLoopsBackWithExternalSource) {
  Nat nat(Filtering::endpoint_independent);
  const Endpoint a_ext = nat.stun(kA);
  const Endpoint b_ext = nat.stun(kB);
  Bytes p = make_udp(kA, b_ext, Bytes(30, 1));
  const Result r = nat.engine.outbound(nat.now, p);
  ASSERT_EQ(r.verdict, Verdict::hairpin);
  EXPECT_EQ(r.length, p.size());
  EXPECT_TRUE(verify_checksums(p).all());
  EXPECT_EQ(summarize(p).source, a_ext);  // REQ-9a: the external endpoint, not 10.0.0.2
  EXPECT_EQ(summarize(p).destination, kB);
  EXPECT_EQ(summarize(p).ttl, 63);  // one hop, decremented once
  Bytes back = make_udp(kB, a_ext, Bytes(30, 2));
  ASSERT_EQ(nat.engine.outbound(nat.now, back).verdict, Verdict::hairpin);
  EXPECT_EQ(summarize(back).source, b_ext);
  EXPECT_EQ(summarize(back).destination, kA);
  EXPECT_EQ(nat.engine.stats().hairpinned, 2u);
}

TEST(NatHairpin, Rfc4787Req9FilteredAsIfFromOutside) {
  Nat nat(Filtering::address_and_port_dependent);
  const Endpoint a_ext = nat.stun(kA);
  const Endpoint b_ext = nat.stun(kB);
  Bytes p = make_udp(kA, b_ext);
  EXPECT_EQ(nat.engine.outbound(nat.now, p).reason, DropReason::filtered);  // B never sent to A
  // B opens its side (its packet toward A is itself filtered by A's... A did send to b_ext).
  Bytes q = make_udp(kB, a_ext);
  EXPECT_EQ(nat.engine.outbound(nat.now, q).verdict, Verdict::hairpin);
  Bytes again = make_udp(kA, b_ext);
  EXPECT_EQ(nat.engine.outbound(nat.now, again).verdict, Verdict::hairpin);
}

TEST(NatHairpin, DisabledHairpinningDrops) {
  Nat nat(Filtering::endpoint_independent, false);
  const Endpoint b_ext = nat.stun(kB);
  Bytes p = make_udp(kA, b_ext);
  EXPECT_EQ(nat.engine.outbound(nat.now, p).reason, DropReason::hairpin_disabled);
  EXPECT_EQ(nat.engine.stats().mappings_live, 1u);  // no mapping made for A
}

TEST(NatHairpin, ToAnExternalPortNobodyHolds) {
  Nat nat(Filtering::endpoint_independent);
  Bytes p = make_udp(kA, ep("203.0.113.2:9999"));
  EXPECT_EQ(nat.engine.outbound(nat.now, p).reason, DropReason::no_mapping);
}

TEST(NatHairpin, Rfc5382Req8TcpHandshake) {
  Nat nat(Filtering::endpoint_independent);
  Bytes b_syn = make_tcp(kB, kStun, kTcpSyn);  // B's listening mapping, made by a connection
  ASSERT_EQ(nat.engine.outbound(nat.now, b_syn).verdict, Verdict::forward);
  const Endpoint b_ext = summarize(b_syn).source;
  Bytes syn = make_tcp(kA, b_ext, kTcpSyn);
  ASSERT_EQ(nat.engine.outbound(nat.now, syn).verdict, Verdict::hairpin);
  const Endpoint a_ext = summarize(syn).source;
  EXPECT_EQ(summarize(syn).destination, kB);
  Bytes syn_ack = make_tcp(kB, a_ext, kTcpSyn | kTcpAck);
  ASSERT_EQ(nat.engine.outbound(nat.now, syn_ack).verdict, Verdict::hairpin);
  EXPECT_EQ(summarize(syn_ack).destination, kA);
  Bytes ack = make_tcp(kA, b_ext, kTcpAck);
  ASSERT_EQ(nat.engine.outbound(nat.now, ack).verdict, Verdict::hairpin);
  EXPECT_TRUE(verify_checksums(ack).all());
  EXPECT_EQ(nat.engine.find_session(Protocol::tcp, kA, b_ext)->tcp_state, TcpState::established);
  EXPECT_EQ(nat.engine.find_session(Protocol::tcp, kB, a_ext)->tcp_state, TcpState::established);
}

}  // namespace
}  // namespace knit::nat
