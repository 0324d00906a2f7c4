// Timers on a manual clock: UDP mapping lifetime and refresh (RFC 4787 REQ-5, 6, 12), ICMP
// query timeout (RFC 5508 REQ-2), expiry bookkeeping and deadlines.
#include <gtest/gtest.h>

#include "nat/nat_engine.hpp"
#include "nat/packet_builder.hpp"
#include "nat/wire.hpp"

namespace knit::nat {
namespace {

using namespace std::chrono_literals;

Endpoint ep(const char* text) { return Endpoint::parse(text).value(); }
IpAddress ip(const char* text) { return IpAddress::parse(text).value(); }

const Endpoint kHost = ep("10.0.0.2:5000");
const Endpoint kServer = ep("198.51.100.1:3478");
const Endpoint kExternal = ep("203.0.113.1:5000");

struct Nat {
  explicit Nat(Config config) : rng(1), engine(std::move(config), rng) {}
  Result out(const Endpoint& from = kHost, const Endpoint& to = kServer) {
    Bytes p = make_udp(from, to);
    return engine.outbound(now, p);
  }
  Result in(const Endpoint& from = kServer, const Endpoint& to = kExternal) {
    Bytes p = make_udp(from, to);
    return engine.inbound(now, p);
  }
  SeededRandom rng;
  NatEngine engine;
  Instant now{};
};

Config config(Filtering filtering = Filtering::address_and_port_dependent) {
  Config c;
  c.external_addresses = {ip("203.0.113.1")};
  c.filtering = filtering;
  return c;
}

TEST(NatUdpTimer, Rfc4787Req5DefaultsMeetTheMinimums) {
  const Config c;
  EXPECT_GE(c.udp_timeout, 5min);                // RFC 4787 REQ-5c
  EXPECT_GE(c.tcp_established_timeout, 124min);  // RFC 5382 REQ-5
  EXPECT_GE(c.tcp_transitory_timeout, 4min);     // RFC 5382 REQ-5, RFC 7857
  EXPECT_GE(c.icmp_timeout, 60s);                // RFC 5508 REQ-2
  EXPECT_LE(c.unsolicited_syn_hold, 6s);         // RFC 5382 REQ-4 (the hold, at most 6 s)
  EXPECT_TRUE(c.hairpinning);                    // RFC 4787 REQ-9
  EXPECT_TRUE(c.port_parity);                    // RFC 4787 REQ-4
  EXPECT_TRUE(c.icmp_error_on_exhaustion);       // RFC 5508 REQ-8
}

TEST(NatUdpTimer, Rfc4787Req5MappingLivesItsTimeout) {
  Nat nat(config());
  ASSERT_EQ(nat.out().verdict, Verdict::forward);
  nat.now += 299s;
  EXPECT_EQ(nat.in().verdict, Verdict::forward);  // (refreshes it inbound: default)
  nat.now += 300s;
  EXPECT_EQ(nat.in().reason, DropReason::no_mapping);
  EXPECT_EQ(nat.engine.stats().mappings_live, 0u);
}

TEST(NatUdpTimer, Rfc4787Req6OutboundRefreshes) {
  Config c = config();
  c.inbound_refresh = false;
  Nat nat(c);
  ASSERT_EQ(nat.out().verdict, Verdict::forward);
  nat.now += 200s;
  ASSERT_EQ(nat.out().verdict, Verdict::forward);  // refresh: now lives until 500 s
  nat.now += 250s;                                 // 450 s
  EXPECT_EQ(nat.in().verdict, Verdict::forward);
  nat.now += 51s;  // 501 s
  EXPECT_EQ(nat.in().reason, DropReason::no_mapping);
}

TEST(NatUdpTimer, Rfc4787Req6InboundRefreshIsConfigurable) {
  for (const bool inbound_refresh : {true, false}) {
    SCOPED_TRACE(inbound_refresh);
    Config c = config();
    c.inbound_refresh = inbound_refresh;
    Nat nat(c);
    ASSERT_EQ(nat.out().verdict, Verdict::forward);
    nat.now += 200s;
    ASSERT_EQ(nat.in().verdict, Verdict::forward);
    nat.now += 150s;  // 350 s: past the outbound-only lifetime
    EXPECT_EQ(nat.in().verdict == Verdict::forward, inbound_refresh);
  }
}

TEST(NatUdpTimer, MappingOutlivesOneSessionWhileAnotherIsActive) {
  // The EIM mapping lives while any of its sessions does (as Linux conntrack does).
  Nat nat(config(Filtering::endpoint_independent));
  ASSERT_EQ(nat.out(kHost, kServer).verdict, Verdict::forward);
  nat.now += 200s;
  ASSERT_EQ(nat.out(kHost, ep("192.0.2.5:53")).verdict, Verdict::forward);
  nat.now += 200s;  // first session gone, second alive: same external endpoint still
  EXPECT_EQ(nat.in(ep("192.0.2.99:1"), kExternal).verdict, Verdict::forward);
}

TEST(NatUdpTimer, ConfiguredShortTimeoutForLabs) {
  Config c = config();
  c.udp_timeout = 30s;  // like a Linux namespace's nf_conntrack_udp_timeout
  Nat nat(c);
  ASSERT_EQ(nat.out().verdict, Verdict::forward);
  nat.now += 29s;
  EXPECT_EQ(nat.in().verdict, Verdict::forward);
  nat.now += 31s;
  EXPECT_EQ(nat.in().reason, DropReason::no_mapping);
}

TEST(NatUdpTimer, Rfc4787Req12IcmpNeverEndsAMapping) {
  Config c = config();
  c.inbound_refresh = false;
  Nat nat(c);
  ASSERT_EQ(nat.out().verdict, Verdict::forward);
  const auto before = nat.engine.find_session(Protocol::udp, kHost, kServer);
  ASSERT_TRUE(before);
  // The remote says "port unreachable" about our datagram.
  Bytes sent = make_udp(kExternal, kServer, Bytes(4, 1));
  for (std::uint8_t code : {0, 1, 3, 13}) {
    Bytes error = make_icmp_error(kServer.address(), kExternal.address(),
                                  kIcmpDestinationUnreachable, code, sent);
    ASSERT_EQ(nat.engine.inbound(nat.now, error).verdict, Verdict::forward);
  }
  const auto after = nat.engine.find_session(Protocol::udp, kHost, kServer);
  ASSERT_TRUE(after);
  EXPECT_EQ(after->expires, before->expires);  // neither ended nor refreshed (RFC 5508 REQ-6)
  nat.now += 10s;
  EXPECT_EQ(nat.in().verdict, Verdict::forward);
}

TEST(NatIcmpTimer, Rfc5508Req2QueryTimeoutAtLeast60s) {
  Nat nat(config());
  Bytes ping = make_icmp_query(kHost.address(), kServer.address(), kIcmpEchoRequest, 77, 1);
  ASSERT_EQ(nat.engine.outbound(nat.now, ping).verdict, Verdict::forward);
  nat.now += 59s;
  Bytes pong = make_icmp_query(kServer.address(), kExternal.address(), kIcmpEchoReply, 77, 1);
  EXPECT_EQ(nat.engine.inbound(nat.now, pong).verdict, Verdict::forward);
  nat.now += 61s;
  Bytes late = make_icmp_query(kServer.address(), kExternal.address(), kIcmpEchoReply, 77, 2);
  EXPECT_EQ(nat.engine.inbound(nat.now, late).reason, DropReason::no_mapping);
}

TEST(NatExpiry, ExpireAndDeadlinesKeepTheBooks) {
  Nat nat(config());
  EXPECT_FALSE(nat.engine.next_deadline());
  for (std::uint16_t i = 0; i < 100; ++i)
    ASSERT_EQ(
        nat.out(Endpoint(kHost.address(), static_cast<std::uint16_t>(6000 + i)), kServer).verdict,
        Verdict::forward);
  ASSERT_TRUE(nat.engine.next_deadline());
  EXPECT_EQ(*nat.engine.next_deadline(), Instant{} + 300s);
  nat.now += 100s;
  ASSERT_EQ(nat.out(ep("10.0.0.2:6000"), kServer).verdict, Verdict::forward);  // refresh one
  nat.now = Instant{} + 300s;
  nat.engine.expire(nat.now);
  Stats s = nat.engine.stats();
  EXPECT_EQ(s.sessions_live, 1u);
  EXPECT_EQ(s.mappings_live, 1u);
  EXPECT_EQ(s.mappings_removed, 99u);
  // The refreshed one is re-filed at its real expiry, never later.
  ASSERT_TRUE(nat.engine.next_deadline());
  EXPECT_LE(*nat.engine.next_deadline(), Instant{} + 400s);
  nat.now = Instant{} + 400s;
  nat.engine.expire(nat.now);
  s = nat.engine.stats();
  EXPECT_EQ(s.sessions_live, 0u);
  EXPECT_EQ(s.mappings_live, 0u);
  EXPECT_EQ(s.mappings_created, s.mappings_removed);
  EXPECT_EQ(s.sessions_created, s.sessions_removed);
  EXPECT_FALSE(nat.engine.next_deadline());
}

TEST(NatExpiry, PacketsRetireDueEntriesWithoutExpireCalls) {
  Nat nat(config());
  for (std::uint16_t i = 0; i < 64; ++i)
    ASSERT_EQ(
        nat.out(Endpoint(kHost.address(), static_cast<std::uint16_t>(7000 + i)), kServer).verdict,
        Verdict::forward);
  nat.now += 301s;
  for (int i = 0; i < 10; ++i) nat.in(ep("192.0.2.1:1"), ep("203.0.113.1:1"));  // unrelated
  EXPECT_EQ(nat.engine.stats().sessions_live, 0u);
}

}  // namespace
}  // namespace knit::nat
