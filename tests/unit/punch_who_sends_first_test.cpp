// Who sends first (punch/path/manager.hpp): behind a Linux router without a WAN input firewall a
// probe that arrives before the flow it answers exists is kept as a flow to the router itself and
// takes the port, so PathManager sends short-TTL openers first and full pings only once the peer
// has opened its side. On a manual clock: the relay not up yet, the opener TTL learnt from ICMP,
// a held-back call-me-maybe, a hard side holding its full pings, fresh facts answered.
#include <gtest/gtest.h>

#include <algorithm>

#include "punch/path/constants.hpp"
#include "punch_path_pair.hpp"

namespace knit::punch::sim {
namespace {

// Who sends first while joining: the relay map lists a relay that has not admitted us yet, so a
// peer may not know us and a full ping could reach its router before its flow to us exists
// (tests/unit/punch_sim_world.hpp, "inbound probe takes the port"). Only openers go to public
// candidates (LAN ones are pinged); once the relay is up the call-me-maybe goes at once, with no
// probe spacing, and the full pings follow the peer's answer, or kOpenerFallback. A mesh without
// any relay pings at once.
TEST(PunchPath, AnExpectedRelayNotUpYetMeansOpenersOnly) {
  for (bool expected : {true, false}) {
    SCOPED_TRACE(expected ? "relay expected" : "no relay in the mesh");
    Pair p({kA}, {kB});
    p.w.blackholed.insert(kB);  // only what A sends is under test
    p.w.set_relay(false);
    p.a->pm->set_relay_expected(p.w.now, expected);
    LocalCandidates ca;
    ca.local.push_back(Endpoint(ip("10.0.1.2"), kWgPort));
    ca.reflexive = Endpoint(kA, kWgPort);  // behind a NAT: the reflexive is none of our addresses
    p.a->pm->set_local_candidates(p.w.now, ca);
    const Endpoint pub(kB, kWgPort), lan(ip("10.0.1.3"), kWgPort);
    p.a->pm->set_peer(p.w.now, p.b->node_key, p.b->disco_public, {pub, lan});
    p.w.drain(*p.a);
    const auto count = [&](SendPurpose purpose, const Endpoint& to) {
      return std::count_if(p.a->sends.begin(), p.a->sends.end(), [&](const SendRecord& r) {
        return r.purpose == purpose && r.to.same_remote(to);
      });
    };
    EXPECT_EQ(count(SendPurpose::probe, lan), 1);
    EXPECT_EQ(count(SendPurpose::probe, pub), expected ? 0 : 1);
    EXPECT_EQ(count(SendPurpose::opener, pub), expected ? 1 : 0);
    if (!expected) continue;
    p.run(milliseconds(300));
    EXPECT_EQ(p.a->pm->stats().call_me_maybes_sent, 0u);
    p.a->pm->set_relay_available(p.w.now, true);  // admitted 300 ms later: no spacing holds it back
    p.w.drain(*p.a);
    EXPECT_EQ(p.a->pm->stats().call_me_maybes_sent, 1u);
    EXPECT_EQ(count(SendPurpose::probe, pub), 0);  // B has not answered
    p.run(kOpenerFallback);
    EXPECT_GE(count(SendPurpose::probe, pub), 1);  // the safety net
  }
}

// A behind a NAT (10.0.1.2 inside, kA outside), its relay listed but not up yet, meets B at
// B's public endpoint (returned): A's full probe sends that endpoint an opener, nothing more.
Endpoint meet_behind_nat_before_the_relay(Pair& p) {
  p.w.set_relay(false);
  PathManager& pm = *p.a->pm;
  pm.set_relay_expected(p.w.now, true);
  LocalCandidates ca;
  ca.local.push_back(Endpoint(ip("10.0.1.2"), kWgPort));
  ca.reflexive = Endpoint(kA, kWgPort);
  pm.set_local_candidates(p.w.now, ca);
  const Endpoint pub(kB, kWgPort);
  pm.set_peer(p.w.now, p.b->node_key, p.b->disco_public, {pub});
  return pub;
}

// The opener TTL (constants.hpp, kOpenerTtlMax): an ICMP "time exceeded" about an opener at the
// current TTL from a private or shared address (a carrier NAT of ours) makes the openers go again
// one hop further, at once, while the full pings still wait; once per round, up to the bound.
// Any other such ICMP (about a datagram we did not send as an opener, or from a public hop) is
// counted and changes nothing; a network change starts from kOpenerTtl again.
TEST(PunchPath, OpenersThatDieInsideOurNatsGoAgainOneHopFurther) {
  Pair p({kA}, {kB});
  PathManager& pm = *p.a->pm;
  const Endpoint pub = meet_behind_nat_before_the_relay(p);
  const auto opener_ttls = [&] {
    std::vector<unsigned> ttls;
    for (const PathAction& a : pm.take_actions())
      if (a.kind == ActionKind::send_udp && a.purpose == SendPurpose::opener) ttls.push_back(a.ttl);
    return ttls;
  };
  EXPECT_EQ(opener_ttls(), std::vector<unsigned>{kOpenerTtl});
  const IpAddress carrier = ip("100.64.3.1"), home = ip("192.168.1.1"), beyond = ip("192.0.2.254");
  // Not about an opener of ours, or from past our NATs: nothing changes.
  EXPECT_FALSE(pm.on_time_exceeded(p.w.now, Endpoint(ip("198.51.100.9"), 1), carrier));
  EXPECT_FALSE(pm.on_time_exceeded(p.w.now, pub, beyond));
  EXPECT_EQ(pm.opener_ttl(), kOpenerTtl);
  EXPECT_EQ(pm.stats().time_exceeded_ignored, 2u);
  // From the carrier: TTL 3, the openers again at the next timer (now), and only them.
  EXPECT_TRUE(pm.on_time_exceeded(p.w.now, pub, carrier));
  EXPECT_EQ(pm.opener_ttl(), kOpenerTtl + 1);
  ASSERT_TRUE(pm.next_deadline());
  EXPECT_LE(*pm.next_deadline(), p.w.now);
  pm.on_timers(p.w.now);
  EXPECT_EQ(opener_ttls(), std::vector<unsigned>{kOpenerTtl + 1u});
  // A second answer right after (about the TTL-2 round, or this one: ICMP cannot tell) raises
  // nothing more; one about a later round does (three NATs).
  EXPECT_FALSE(pm.on_time_exceeded(p.w.now, pub, carrier));
  EXPECT_EQ(pm.opener_ttl(), kOpenerTtl + 1);
  p.w.now += kMinFullProbeSpacing;  // longer than kOpenerTtlHoldoff
  pm.set_peer(p.w.now, p.b->node_key, p.b->disco_public, {pub, Endpoint(kB, kWgPort + 1)});  // a new round
  ASSERT_EQ(opener_ttls().size(), 2u);
  EXPECT_TRUE(pm.on_time_exceeded(p.w.now, pub, home));
  pm.on_timers(p.w.now);
  EXPECT_EQ(opener_ttls(), (std::vector<unsigned>{kOpenerTtlMax, kOpenerTtlMax}));
  p.w.now += kOpenerTtlHoldoff;
  EXPECT_FALSE(pm.on_time_exceeded(p.w.now, pub, home));  // the bound
  EXPECT_EQ(pm.opener_ttl(), kOpenerTtlMax);
  EXPECT_EQ(pm.stats().opener_ttl_raised, 2u);
  pm.network_changed(p.w.now);
  EXPECT_EQ(pm.opener_ttl(), kOpenerTtl);
}

// A late answer about an older opener (a busy host reads its error queue after the holdoff,
// while the raised round is outstanding to the same endpoint) comes from the hop that made us
// raise the TTL, where no opener at the raised TTL can die: it must not raise it again. Behind a
// double NAT (carrier 2 hops away) a second raise made the openers cross the next router and
// reach the peer's, which on a router without a WAN firewall takes the port there.
TEST(PunchPath, ALateAnswerFromTheSameHopRaisesTheOpenerTtlOnce) {
  Pair p({kA}, {kB});
  PathManager& pm = *p.a->pm;
  const Endpoint pub = meet_behind_nat_before_the_relay(p);
  (void)pm.take_actions();
  const IpAddress carrier = ip("100.64.3.1");
  ASSERT_TRUE(pm.on_time_exceeded(p.w.now, pub, carrier));
  pm.on_timers(p.w.now);  // the openers again at TTL 3, outstanding to `pub`
  (void)pm.take_actions();
  p.w.now += kOpenerTtlHoldoff + milliseconds(100);
  EXPECT_FALSE(pm.on_time_exceeded(p.w.now, pub, carrier));
  EXPECT_EQ(pm.opener_ttl(), kOpenerTtl + 1);
  EXPECT_EQ(pm.stats().opener_ttl_raised, 1u);
  // Another NAT of ours further on still raises it.
  EXPECT_TRUE(pm.on_time_exceeded(p.w.now, pub, ip("100.64.9.1")));
  EXPECT_EQ(pm.opener_ttl(), kOpenerTtl + 2);
  pm.network_changed(p.w.now);  // other NATs: the carrier's answer counts again
  EXPECT_EQ(pm.opener_ttl(), kOpenerTtl);
  pm.on_timers(p.w.now);
  (void)pm.take_actions();
  p.w.now += kOpenerTtlHoldoff;
  EXPECT_TRUE(pm.on_time_exceeded(p.w.now, pub, carrier));
}

// Who sends first when the call-me-maybe's own rate bound holds it back: a burst of candidate
// changes spent it (each sends one), then a full probe comes (here a network change). The peer
// may not know us: the full pings still wait for its answer (or kOpenerFallback), only openers go
// to public candidates, and our call-me-maybe follows as soon as the bound allows. Before, a
// full probe whose call-me-maybe was held back pinged every candidate at full TTL at once.
TEST(PunchPath, AHeldBackCallMeMaybeStillMeansOpenersOnly) {
  Pair p({kA}, {kB});
  p.w.blackholed.insert(kB);  // B never answers: only what A sends is under test
  PathManager& pm = *p.a->pm;
  pm.set_relay_expected(p.w.now, true);
  LocalCandidates ca;
  ca.local.push_back(Endpoint(ip("10.0.1.2"), kWgPort));
  ca.reflexive = Endpoint(kA, kWgPort);  // behind a NAT
  pm.set_local_candidates(p.w.now, ca);
  const Endpoint pub(kB, kWgPort);
  pm.set_peer(p.w.now, p.b->node_key, p.b->disco_public, {pub});
  p.w.drain(*p.a);
  ASSERT_EQ(pm.stats().call_me_maybes_sent, 1u);
  for (std::uint32_t i = 1; i <= kCallMeMaybeBurst; ++i) {  // candidate changes, one after another
    ca.local.push_back(Endpoint(IpAddress::v4(0x0a000200u + i), kWgPort));
    pm.set_local_candidates(p.w.now, ca);
    p.w.drain(*p.a);
  }
  const std::uint64_t sent = pm.stats().call_me_maybes_sent;
  ASSERT_EQ(sent, kCallMeMaybeBurst);  // the bound held the last one back
  pm.network_changed(p.w.now);  // a full probe at once, no spacing
  p.w.drain(*p.a);
  const auto full_pings = [&] {
    return std::count_if(p.a->sends.begin(), p.a->sends.end(), [&](const SendRecord& r) {
      return r.to.same_remote(pub) && r.purpose != SendPurpose::opener;
    });
  };
  EXPECT_EQ(full_pings(), 0);
  EXPECT_EQ(pm.stats().call_me_maybes_sent, sent);
  p.w.run_for(seconds(2));
  EXPECT_GT(pm.stats().call_me_maybes_sent, sent);  // when the bound allowed
  EXPECT_EQ(full_pings(), 0);
  p.w.run_for(kOpenerFallback);
  EXPECT_GE(full_pings(), 1);  // the safety net
}

// A hard side's main socket sends a NATed peer's public candidates openers only, never a full
// ping, until the peer has sent to it: behind a router without a WAN firewall the full ping
// (from a port the peer never sent to: the mapping varies) would be kept as a flow to the router
// itself, and the peer's own prediction probe that later hits that port would leave from
// another one, for this and every later flow (the lab's rare easy <-> hard trials that never
// went direct). A peer whose call-me-maybe says full pings are welcome (no NAT, or a filter
// measured not to depend on the port) still gets them at once.
TEST(PunchPath, AHardSideSendsANatedPeerOpenersNotFullPings) {
  for (const bool welcome : {false, true}) {
    SCOPED_TRACE(welcome);
    Pair p({kA}, {kB});
    p.w.blackholed.insert(kA);  // nothing arrives over UDP: only what A sends is under test
    p.w.blackholed.insert(kB);
    LocalCandidates ca = p.candidates(*p.a), cb = p.candidates(*p.b);
    ca.reflexive = Endpoint(kA, kWgPort);
    ca.local = {Endpoint(ip("10.0.1.2"), kWgPort)};
    ca.mapping_varies = true;  // A is hard, behind a NAT
    cb.reflexive = Endpoint(kB, kWgPort);
    cb.local = {Endpoint(ip("10.0.2.2"), kWgPort)};  // B is behind a NAT
    cb.open_filter = welcome;
    p.a->pm->set_local_candidates(p.w.now, ca);
    p.b->pm->set_local_candidates(p.w.now, cb);
    p.w.introduce(*p.a, ca, *p.b, cb);
    p.run(seconds(20));  // past the opener fallback, with traffic both ways
    ASSERT_TRUE(p.a->pm->hard());
    const Endpoint pub(kB, kWgPort);
    const auto count = [&](bool openers) {
      return std::count_if(p.a->sends.begin(), p.a->sends.end(), [&](const SendRecord& r) {
        return r.socket == kMainSocket && r.to.same_remote(pub) &&
               (r.purpose == SendPurpose::opener) == openers;
      });
    };
    EXPECT_GE(count(true), 1);
    if (welcome)
      EXPECT_GE(count(false), 1);
    else
      EXPECT_EQ(count(false), 0);
    // B, easy, is not held back: its full pings go to A as before.
    EXPECT_GE(std::count_if(p.b->sends.begin(), p.b->sends.end(), [&](const SendRecord& r) {
                return r.to.same_remote(Endpoint(kA, kWgPort)) && r.purpose == SendPurpose::probe;
              }),
              1);
  }
}

// A call-me-maybe carrying facts new to us is answered with ours even if we sent one a moment
// ago: that one may have gone to a peer the relay had not admitted yet, and the peer (a double
// NAT, whose openers cannot open its carrier NAT) waits for our "opened" before its full pings.
TEST(PunchPath, FreshFactsAreAnsweredWithOurCallMeMaybe) {
  Pair p({kA}, {kB});
  p.w.blackholed.insert(kA);
  p.w.blackholed.insert(kB);
  p.a->pm->set_peer(p.w.now, p.b->node_key, p.b->disco_public, {Endpoint(kB, kWgPort)});
  p.w.drain(*p.a);
  ASSERT_EQ(p.a->pm->stats().call_me_maybes_sent, 1u);  // B does not know A yet: dropped
  p.w.run_for(p.w.relay_delay + milliseconds(1));
  p.b->pm->set_peer(p.w.now, p.a->node_key, p.a->disco_public, {Endpoint(kA, kWgPort)});
  p.w.drain(*p.b);
  p.w.run_for(p.w.relay_delay + milliseconds(1));
  EXPECT_EQ(p.a->pm->stats().call_me_maybes_sent, 2u);
  p.w.run_for(p.w.relay_delay + milliseconds(1));  // B's answer is not fresh: no third one
  EXPECT_EQ(p.a->pm->stats().call_me_maybes_sent, 2u);
}

}  // namespace
}  // namespace knit::punch::sim
