// RFC 5382 TCP behaviour: EIM, the state machine and its timers, simultaneous open, the
// unsolicited-SYN hold, RST handling (RFC 7857 §2.2), mid-connection pickup.
#include <gtest/gtest.h>

#include "nat/nat_engine.hpp"
#include "nat/packet_builder.hpp"
#include "nat/packet_view.hpp"
#include "nat/wire.hpp"

namespace knit::nat {
namespace {

using namespace std::chrono_literals;

Endpoint ep(const char* text) { return Endpoint::parse(text).value(); }
IpAddress ip(const char* text) { return IpAddress::parse(text).value(); }

const Endpoint kHost = ep("10.0.0.2:40000");
const Endpoint kServer = ep("198.51.100.1:443");
const Endpoint kExternal = ep("203.0.113.1:40000");
constexpr std::uint8_t kSynAck = kTcpSyn | kTcpAck;
constexpr std::uint8_t kFinAck = kTcpFin | kTcpAck;

struct Nat {
  explicit Nat(Config config) : rng(1), engine(std::move(config), rng) {}
  Result out(std::uint8_t flags, const Endpoint& from = kHost, const Endpoint& to = kServer) {
    Bytes p = make_tcp(from, to, flags);
    const Result r = engine.outbound(now, p, reply);
    if (r.verdict == Verdict::forward) {
      EXPECT_TRUE(verify_checksums(p).all());
    }
    last = p;
    return r;
  }
  Result in(std::uint8_t flags, const Endpoint& from = kServer, const Endpoint& to = kExternal) {
    Bytes p = make_tcp(from, to, flags);
    const Result r = engine.inbound(now, p, reply);
    if (r.verdict == Verdict::forward) {
      EXPECT_TRUE(verify_checksums(p).all());
    }
    last = p;
    return r;
  }
  TcpState state(const Endpoint& host = kHost, const Endpoint& remote = kServer) const {
    auto s = engine.find_session(Protocol::tcp, host, remote);
    return s ? s->tcp_state : TcpState::none;
  }
  Duration expires_in() const {
    auto s = engine.find_session(Protocol::tcp, kHost, kServer);
    return s ? s->expires - now : Duration::zero();
  }
  void handshake() {
    ASSERT_EQ(out(kTcpSyn).verdict, Verdict::forward);
    ASSERT_EQ(in(kSynAck).verdict, Verdict::forward);
    ASSERT_EQ(out(kTcpAck).verdict, Verdict::forward);
    ASSERT_EQ(state(), TcpState::established);
  }
  SeededRandom rng;
  NatEngine engine;
  Instant now{};
  Bytes last;
  std::array<std::uint8_t, kIcmpErrorMaxSize> reply{};
};

Config config(Filtering filtering = Filtering::address_and_port_dependent) {
  Config c;
  c.external_addresses = {ip("203.0.113.1")};
  c.filtering = filtering;
  return c;
}

TEST(NatTcp, Rfc5382Req1EndpointIndependentMapping) {
  Nat nat(config());
  ASSERT_EQ(nat.out(kTcpSyn, kHost, kServer).verdict, Verdict::forward);
  const Endpoint first = summarize(nat.last).source;
  ASSERT_EQ(nat.out(kTcpSyn, kHost, ep("192.0.2.8:80")).verdict, Verdict::forward);
  EXPECT_EQ(summarize(nat.last).source, first);
  EXPECT_EQ(first, kExternal);
}

TEST(NatTcp, Rfc5382Req5HandshakeReachesEstablishedWithLongTimer) {
  Nat nat(config());
  ASSERT_EQ(nat.out(kTcpSyn).verdict, Verdict::forward);
  EXPECT_EQ(nat.state(), TcpState::syn_sent);
  EXPECT_EQ(nat.expires_in(), 4min);  // transitory
  ASSERT_EQ(nat.in(kSynAck).verdict, Verdict::forward);
  EXPECT_EQ(nat.state(), TcpState::syn_both);
  ASSERT_EQ(nat.out(kTcpAck).verdict, Verdict::forward);
  EXPECT_EQ(nat.state(), TcpState::established);
  EXPECT_EQ(nat.expires_in(), 124min);
  // Idle for 2 h 3 min: still there.
  nat.now += 123min;
  EXPECT_EQ(nat.in(kTcpAck).verdict, Verdict::forward);
  nat.now += 124min + 1s;
  EXPECT_NE(nat.in(kTcpAck).verdict, Verdict::forward);
}

TEST(NatTcp, Rfc5382Req5TransitoryTimeoutForHalfOpen) {
  Nat nat(config());
  ASSERT_EQ(nat.out(kTcpSyn).verdict, Verdict::forward);
  nat.now += 4min - 1s;
  EXPECT_EQ(nat.in(kSynAck).verdict, Verdict::forward);
  nat.now += 4min + 1s;  // SYN/ACK seen but never ACKed: still transitory
  EXPECT_NE(nat.in(kTcpAck).verdict, Verdict::forward);
}

TEST(NatTcp, Rfc5382Req5FinBothWaysIsTransitory) {
  Nat nat(config());
  nat.handshake();
  ASSERT_EQ(nat.out(kFinAck).verdict, Verdict::forward);
  EXPECT_EQ(nat.state(), TcpState::fin_outbound);
  EXPECT_EQ(nat.expires_in(), 4min);
  ASSERT_EQ(nat.in(kFinAck).verdict, Verdict::forward);
  EXPECT_EQ(nat.state(), TcpState::closing);
  ASSERT_EQ(nat.out(kTcpAck).verdict, Verdict::forward);
  nat.now += 4min + 1s;
  nat.engine.expire(nat.now);
  EXPECT_EQ(nat.engine.stats().sessions_live, 0u);
}

TEST(NatTcp, InboundFinShortensTheTimerEvenWithoutInboundRefresh) {
  Config c = config();
  c.inbound_refresh = false;
  Nat nat(c);
  nat.handshake();
  ASSERT_EQ(nat.in(kFinAck).verdict, Verdict::forward);
  EXPECT_EQ(nat.state(), TcpState::fin_inbound);
  EXPECT_EQ(nat.expires_in(), 4min);
}

TEST(NatTcp, Rfc7857RstKeepsStateFourMinutesWithoutRefresh) {
  for (const bool inbound_rst : {false, true}) {
    SCOPED_TRACE(inbound_rst);
    Nat nat(config());
    nat.handshake();
    ASSERT_EQ(inbound_rst ? nat.in(kTcpRst).verdict : nat.out(kTcpRst).verdict, Verdict::forward);
    EXPECT_EQ(nat.state(), TcpState::reset);
    EXPECT_EQ(nat.expires_in(), 4min);
    nat.now += 3min;
    ASSERT_EQ(nat.out(kTcpRst).verdict, Verdict::forward);  // a later RST refreshes nothing
    EXPECT_EQ(nat.expires_in(), 1min);
    nat.now += 1min;
    nat.engine.expire(nat.now);
    EXPECT_EQ(nat.engine.stats().sessions_live, 0u);
  }
}

TEST(NatTcp, NewSynReopensAResetTuple) {
  Nat nat(config());
  nat.handshake();
  ASSERT_EQ(nat.out(kTcpRst).verdict, Verdict::forward);
  ASSERT_EQ(nat.out(kTcpSyn).verdict, Verdict::forward);
  EXPECT_EQ(nat.state(), TcpState::syn_sent);
  ASSERT_EQ(nat.in(kSynAck).verdict, Verdict::forward);
  ASSERT_EQ(nat.out(kTcpAck).verdict, Verdict::forward);
  EXPECT_EQ(nat.state(), TcpState::established);
}

TEST(NatTcp, Rfc5382Req2SimultaneousOpen) {
  // Both ends send SYN; each SYN crosses the other. Port-restricted filtering, as hole
  // punching meets it.
  Nat nat(config());
  ASSERT_EQ(nat.out(kTcpSyn).verdict, Verdict::forward);
  ASSERT_EQ(nat.in(kTcpSyn).verdict, Verdict::forward);  // the peer's SYN: let in
  EXPECT_EQ(nat.state(), TcpState::syn_both);
  ASSERT_EQ(nat.out(kSynAck).verdict, Verdict::forward);
  ASSERT_EQ(nat.in(kSynAck).verdict, Verdict::forward);
  ASSERT_EQ(nat.out(kTcpAck).verdict, Verdict::forward);
  EXPECT_EQ(nat.state(), TcpState::established);
}

TEST(NatTcp, Rfc5382Req4UnsolicitedSynHeldThenMatchedByOutboundSyn) {
  Nat nat(config());
  // The peer's SYN arrives first, before our SYN created any mapping.
  EXPECT_EQ(nat.in(kTcpSyn).reason, DropReason::syn_held);
  EXPECT_EQ(nat.in(kTcpSyn).reason, DropReason::syn_held);  // retransmission: held once
  EXPECT_EQ(nat.engine.stats().syns_held, 1u);
  nat.now += 3s;
  ASSERT_EQ(nat.out(kTcpSyn).verdict, Verdict::forward);  // within 6 s: simultaneous open
  EXPECT_EQ(nat.engine.stats().held_syns_matched, 1u);
  ASSERT_EQ(nat.in(kSynAck).verdict, Verdict::forward);
  ASSERT_EQ(nat.out(kTcpAck).verdict, Verdict::forward);
  EXPECT_EQ(nat.state(), TcpState::established);
  nat.now += 10s;
  nat.engine.expire(nat.now);
  std::array<std::uint8_t, kIcmpErrorMaxSize> icmp{};
  EXPECT_EQ(nat.engine.take_timer_icmp(icmp), 0u);  // the held SYN is silently dropped
}

TEST(NatTcp, Rfc5382Req4UnmatchedSynEarnsPortUnreachableAfterSixSeconds) {
  Nat nat(config());
  const Endpoint stranger = ep("192.0.2.66:51000");
  ASSERT_EQ(nat.in(kTcpSyn, stranger, ep("203.0.113.1:22")).reason, DropReason::syn_held);
  const Bytes syn = nat.last;
  ASSERT_TRUE(nat.engine.next_deadline());
  EXPECT_EQ(*nat.engine.next_deadline(), Instant{} + 6s);
  std::array<std::uint8_t, kIcmpErrorMaxSize> icmp{};
  nat.now += 5s;
  nat.engine.expire(nat.now);
  EXPECT_EQ(nat.engine.take_timer_icmp(icmp), 0u);  // not before 6 s (REQ-4: MUST NOT respond)
  nat.now += 1s;
  nat.engine.expire(nat.now);
  const std::size_t n = nat.engine.take_timer_icmp(icmp);
  ASSERT_GT(n, 0u);
  const ByteSpan error(icmp.data(), n);
  EXPECT_TRUE(verify_checksums(error).all());
  const PacketSummary outer = summarize(error);
  EXPECT_EQ(outer.icmp_type, kIcmpDestinationUnreachable);
  EXPECT_EQ(outer.icmp_code, kIcmpCodePortUnreachable);
  EXPECT_EQ(outer.source.address(), ip("203.0.113.1"));
  EXPECT_EQ(outer.destination.address(), stranger.address());
  // It quotes the SYN as it arrived: IP header + 8 bytes.
  EXPECT_TRUE(std::equal(syn.begin(), syn.begin() + 28, error.begin() + 28));
  EXPECT_EQ(nat.engine.take_timer_icmp(icmp), 0u);
  EXPECT_EQ(nat.engine.stats().held_syns_expired, 1u);
}

TEST(NatTcp, Rfc5382Req4HoldCanBeSilent) {
  Config c = config();
  c.unsolicited_syn_icmp = false;
  Nat nat(c);
  ASSERT_EQ(nat.in(kTcpSyn).reason, DropReason::syn_held);
  nat.now += 7s;
  nat.engine.expire(nat.now);
  std::array<std::uint8_t, kIcmpErrorMaxSize> icmp{};
  EXPECT_EQ(nat.engine.take_timer_icmp(icmp), 0u);
}

TEST(NatTcp, HoldTableIsBounded) {
  Config c = config();
  c.max_held_syns = 8;
  Nat nat(c);
  for (std::uint16_t i = 0; i < 100; ++i)
    nat.in(kTcpSyn, Endpoint(ip("192.0.2.1"), static_cast<std::uint16_t>(1000 + i)), kExternal);
  const Stats s = nat.engine.stats();
  EXPECT_EQ(s.syns_held, 8u);
  EXPECT_EQ(s.held_syns_overflow, 92u);
  EXPECT_EQ(s.drops_of(DropReason::syn_held), 8u);
  EXPECT_EQ(s.drops_of(DropReason::no_mapping), 92u);
}

TEST(NatTcp, SynFilteredByApdfIsHeldToo) {
  Nat nat(config());
  nat.handshake();
  // Another remote knocks on our mapping: held like any unsolicited SYN.
  EXPECT_EQ(nat.in(kTcpSyn, ep("192.0.2.70:1234"), kExternal).reason, DropReason::syn_held);
}

TEST(NatTcp, EndpointIndependentFilteringAdmitsNewSyn) {
  Nat nat(config(Filtering::endpoint_independent));
  nat.handshake();
  const Endpoint peer = ep("192.0.2.70:1234");
  ASSERT_EQ(nat.in(kTcpSyn, peer, kExternal).verdict, Verdict::forward);
  EXPECT_EQ(summarize(nat.last).destination, kHost);
  EXPECT_EQ(nat.state(kHost, peer), TcpState::syn_received);
  ASSERT_EQ(nat.out(kSynAck, kHost, peer).verdict, Verdict::forward);
  ASSERT_EQ(nat.in(kTcpAck, peer, kExternal).verdict, Verdict::forward);
  EXPECT_EQ(nat.state(kHost, peer), TcpState::established);
}

TEST(NatTcp, InboundSegmentsWithoutSessionAreDropped) {
  Nat nat(config(Filtering::endpoint_independent));
  nat.handshake();
  const Endpoint peer = ep("192.0.2.70:1234");
  EXPECT_EQ(nat.in(kTcpAck, peer, kExternal).reason, DropReason::tcp_no_session);
  EXPECT_EQ(nat.in(kTcpRst, peer, kExternal).reason, DropReason::tcp_no_session);
  EXPECT_EQ(nat.in(kSynAck, peer, kExternal).reason, DropReason::tcp_no_session);
  EXPECT_EQ(nat.in(kTcpAck, peer, ep("203.0.113.1:9")).reason, DropReason::no_mapping);
  EXPECT_EQ(nat.state(), TcpState::established);  // forged segments touched nothing
}

TEST(NatTcp, OutboundRstOpensNothing) {
  Nat nat(config());
  EXPECT_EQ(nat.out(kTcpRst).reason, DropReason::no_mapping);
  EXPECT_EQ(nat.engine.stats().mappings_live, 0u);
}

TEST(NatTcp, MidstreamPickupAfterRestart) {
  Nat nat(config());
  ASSERT_EQ(nat.out(kTcpAck).verdict, Verdict::forward);
  EXPECT_EQ(nat.state(), TcpState::midstream);
  EXPECT_EQ(nat.expires_in(), 4min);
  ASSERT_EQ(nat.in(kTcpAck).verdict, Verdict::forward);
  EXPECT_EQ(nat.state(), TcpState::established);

  Config strict = config();
  strict.tcp_midstream_pickup = false;
  Nat other(strict);
  EXPECT_EQ(other.out(kTcpAck).reason, DropReason::no_mapping);
}

}  // namespace
}  // namespace knit::nat
