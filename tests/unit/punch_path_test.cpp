// PathManager on a manual clock, between public hosts of the simulated world (no NATs, so
// only path choice is under test): relay from the first moment, direct after one RTT, choice by
// RTT with hysteresis and LAN preference, heartbeats only while in use, fallback to the relay
// when pongs stop and the upgrade back, roaming, and the rate bounds.
#include <gtest/gtest.h>

#include <algorithm>

#include "punch/path/constants.hpp"
#include "punch/path/pmtu.hpp"
#include "punch/path/select.hpp"
#include "punch_path_pair.hpp"

namespace knit::punch::sim {
namespace {

TEST(PunchPath, RelayFirstThenDirectAfterOneRoundTrip) {
  Pair p({kA}, {kB});
  EXPECT_EQ(p.ab().kind, PathKind::none);  // unknown peer
  p.start();
  EXPECT_EQ(p.ab().kind, PathKind::relay);  // reachable from the first moment
  // Neither has a NAT (public interface addresses): no openers; each side's full pings wait for
  // the other's call-me-maybe (one relay leg, 40 ms), so that no ping reaches a router before
  // the flow it answers exists there. Then one RTT (2 x 15 ms).
  p.run(milliseconds(69));
  EXPECT_EQ(p.ab().kind, PathKind::relay);
  p.run(milliseconds(2));
  const PathInfo info = p.ab();
  EXPECT_EQ(info.kind, PathKind::direct);
  EXPECT_TRUE(info.endpoint.same_remote(Endpoint(kB, kWgPort)));
  EXPECT_EQ(info.rtt, milliseconds(30));
  EXPECT_GE(p.a->path_changes, 2u);  // none -> relay -> direct
}

TEST(PunchPath, WithoutRelayOrDirectPathThereIsNone) {
  Pair p({kA}, {kB});
  p.w.set_relay(false);
  p.w.blackholed.insert(kB);
  p.start();
  p.run(seconds(3));
  EXPECT_EQ(p.ab().kind, PathKind::none);
  p.w.set_relay(true);
  EXPECT_EQ(p.ab().kind, PathKind::relay);
}

TEST(PunchPath, ChoosesLowestRttWithHysteresis) {
  Pair p({kA}, {kB, kB2});
  p.w.extra_delay[kB2] = milliseconds(10);  // B2: 50 ms RTT, B: 30 ms
  p.start();
  p.run(seconds(1));
  ASSERT_EQ(p.ab().kind, PathKind::direct);
  EXPECT_TRUE(p.ab().endpoint.same_remote(Endpoint(kB, kWgPort)));
  // B gets slower than B2, but only by 4 ms: not clearly better (< kSwitchMinGain). The
  // upgrade probe measures both; the path stays.
  p.w.extra_delay[kB] = milliseconds(12);  // B: 54 ms
  p.run(kUpgradeInterval + seconds(1));
  EXPECT_TRUE(p.ab().endpoint.same_remote(Endpoint(kB, kWgPort)));
  EXPECT_EQ(p.a->pm->stats().path_switches, 0u);
  // Now B2 is better by 60 ms and 55 %: switch at the next upgrade probe.
  p.w.extra_delay[kB] = milliseconds(40);  // B: 110 ms
  p.run(kUpgradeInterval + seconds(1));
  EXPECT_TRUE(p.ab().endpoint.same_remote(Endpoint(kB2, kWgPort)));
  EXPECT_EQ(p.a->pm->stats().path_switches, 1u);
  EXPECT_EQ(p.ab().rtt, milliseconds(50));
}

TEST(PunchPath, PrefersLanEndpointWhenClose) {
  const IpAddress lan = ip("192.168.7.2");
  Pair p({kA}, {kB, lan});
  p.w.extra_delay[lan] = milliseconds(1);  // LAN 32 ms vs public 30 ms: close
  p.start();
  p.run(seconds(1));
  ASSERT_EQ(p.ab().kind, PathKind::direct);
  EXPECT_TRUE(p.ab().endpoint.same_remote(Endpoint(lan, kWgPort)));
  EXPECT_TRUE(p.ab().lan);
  // But not when it is much slower.
  Pair q({kA}, {kB, lan});
  q.w.extra_delay[lan] = milliseconds(20);  // 70 ms vs 30 ms
  q.start();
  q.run(seconds(1));
  EXPECT_TRUE(q.ab().endpoint.same_remote(Endpoint(kB, kWgPort)));
}

TEST(PunchPath, HeartbeatsOnlyWhileInUse) {
  Pair p({kA}, {kB});
  p.start();
  p.run(seconds(10));
  const auto heartbeats = [&] {
    return std::count_if(p.a->sends.begin(), p.a->sends.end(),
                         [](const SendRecord& s) { return s.purpose == SendPurpose::heartbeat; });
  };
  // 10 s of traffic: one heartbeat per kHeartbeatInterval (+1 for the first).
  EXPECT_GE(heartbeats(), 4);
  EXPECT_LE(heartbeats(), 6);
  EXPECT_EQ(p.ab().kind, PathKind::direct);
  // Idle: after kActiveTimeout no more pings at all.
  p.traffic = false;
  p.run(kActiveTimeout);
  const std::size_t sent = p.a->sends.size();
  p.run(seconds(120));
  EXPECT_EQ(p.a->sends.size(), sent);
  // Trust ran out while idle: the relay until traffic resumes, then direct after one RTT.
  EXPECT_EQ(p.ab().kind, PathKind::relay);
  p.traffic = true;
  auto t = p.run_until_ab([](const PathInfo& i) { return i.kind == PathKind::direct; }, seconds(2));
  ASSERT_TRUE(t);
  EXPECT_LE(*t, milliseconds(80));  // the call-me-maybe exchange (40 ms) and one RTT (30 ms)
}

TEST(PunchPath, FallsBackToRelayWhenPongsStopAndUpgradesAgain) {
  Pair p({kA}, {kB});
  p.start();
  p.run(seconds(5));
  ASSERT_EQ(p.ab().kind, PathKind::direct);
  // The direct path dies (a firewall, a NAT reboot).
  p.w.blackholed.insert(kB);
  auto down = p.run_until_ab([](const PathInfo& i) { return i.kind == PathKind::relay; }, seconds(10));
  ASSERT_TRUE(down);
  EXPECT_LE(*down, kPathTrust);  // at most kPathTrust after the last pong
  EXPECT_GE(*down, kPathTrust - kHeartbeatInterval - milliseconds(100));
  EXPECT_EQ(p.a->pm->stats().fallbacks_to_relay, 1u);
  // Re-probing on the relay backs off: 5, 10, 20, 40, 60, 60 s ...
  const std::size_t before = p.a->pm->stats().pings_sent;
  p.run(seconds(60));
  const std::size_t probes = p.a->pm->stats().pings_sent - before;
  EXPECT_GE(probes, 3u);
  EXPECT_LE(probes, 8u);
  // The path comes back: found by the next re-probe, within kReprobeMax.
  p.w.blackholed.clear();
  auto up = p.run_until_ab([](const PathInfo& i) { return i.kind == PathKind::direct; }, kReprobeMax + seconds(2));
  ASSERT_TRUE(up);
  EXPECT_EQ(p.ba().kind, PathKind::direct);
}

// Route carriers' liveness (agent/carrier_health.hpp): ping_peer goes along the path in use and
// last_heard records every authenticated disco message, on the direct path and through the relay.
TEST(PunchPath, LivenessPingsOnTheDirectPathAndThroughTheRelay) {
  Pair p({kA}, {kB});
  p.traffic = false;
  EXPECT_FALSE(p.a->pm->last_heard(p.b->node_key));
  p.start();
  p.run(seconds(1));
  ASSERT_EQ(p.ab().kind, PathKind::direct);
  ASSERT_TRUE(p.a->pm->last_heard(p.b->node_key));
  // Direct: a ping to the chosen endpoint, answered after one RTT.
  p.run(seconds(3));
  const Instant sent = p.w.now;
  ASSERT_TRUE(p.a->pm->ping_peer(p.w.now, p.b->node_key));
  p.w.drain(*p.a);
  ASSERT_FALSE(p.a->sends.empty());
  EXPECT_EQ(p.a->sends.back().purpose, SendPurpose::liveness);
  EXPECT_TRUE(p.a->sends.back().to.same_remote(Endpoint(kB, kWgPort)));
  p.run(milliseconds(100));
  EXPECT_EQ(*p.a->pm->last_heard(p.b->node_key), sent + milliseconds(30));
  // The direct path dies; once the relay is the path, the ping goes through it and its pong
  // comes back that way (accepted: it answers a ping we sent).
  p.w.blackholed.insert(kB);
  p.run(kPathTrust + seconds(1));
  ASSERT_EQ(p.ab().kind, PathKind::relay);
  const std::size_t udp_before = p.a->sends.size();
  const Instant relayed = p.w.now;
  ASSERT_TRUE(p.a->pm->ping_peer(p.w.now, p.b->node_key));
  p.w.drain(*p.a);
  EXPECT_EQ(p.a->sends.size(), udp_before) << "nothing over UDP";
  p.run(milliseconds(100));
  EXPECT_EQ(*p.a->pm->last_heard(p.b->node_key), relayed + 2 * p.w.relay_delay);
  EXPECT_EQ(p.a->pm->stats().liveness_pongs, 1u);
  EXPECT_EQ(p.a->pm->stats().liveness_pings_sent, 2u);
  EXPECT_EQ(p.a->pm->stats().drops_of(DiscoError::unexpected_pong), 0u);
  // B vanishes from the relay too: pings go unanswered and last_heard stays.
  p.w.relay_cut.insert(p.b->node_key);
  const Instant last = *p.a->pm->last_heard(p.b->node_key);
  for (int i = 0; i < 3; ++i) {
    p.a->pm->ping_peer(p.w.now, p.b->node_key);
    p.w.drain(*p.a);
    p.run(seconds(1));
  }
  EXPECT_EQ(*p.a->pm->last_heard(p.b->node_key), last);
  // Rate: through the relay, no more than the call-me-maybe bucket allows.
  std::size_t sent_now = 0;
  for (int i = 0; i < 20; ++i) sent_now += p.a->pm->ping_peer(p.w.now, p.b->node_key) ? 1 : 0;
  EXPECT_LE(sent_now, static_cast<std::size_t>(kCallMeMaybeBurst));
  // A stranger cannot be pinged.
  EXPECT_FALSE(p.a->pm->ping_peer(p.w.now, NodeKey{}));
}

// A peer's endpoint inside a subnet this host routes into the tunnel (a router's LAN address,
// for a node that accepts the router's route) is no path: pings to it would enter the tunnel.
TEST(PunchPath, EndpointsInsideTunnelledPrefixesAreNeverPaths) {
  const IpAddress lan = ip("192.168.7.2");
  Pair p({kA}, {kB, lan});
  p.start();
  p.run(seconds(1));
  ASSERT_EQ(p.ab().kind, PathKind::direct);
  ASSERT_TRUE(p.ab().endpoint.same_remote(Endpoint(lan, kWgPort))) << "the LAN endpoint is preferred: " << p.ab().endpoint.to_string();
  p.a->pm->set_tunnelled_prefixes(p.w.now, {IpPrefix::parse("192.168.7.0/24").value()});
  p.w.drain(*p.a);
  EXPECT_EQ(p.ab().kind, PathKind::direct);
  EXPECT_TRUE(p.ab().endpoint.same_remote(Endpoint(kB, kWgPort)));
  EXPECT_GE(p.a->pm->stats().candidates_tunnelled, 1u);
  // Call-me-maybes and re-probes list it again: never pinged, never chosen.
  const std::size_t before = p.a->sends.size();
  p.a->pm->network_changed(p.w.now);
  p.run(kUpgradeInterval + seconds(2));
  for (std::size_t i = before; i < p.a->sends.size(); ++i)
    EXPECT_NE(p.a->sends[i].to.address(), lan) << "a ping into the tunnel";
  EXPECT_TRUE(p.ab().endpoint.same_remote(Endpoint(kB, kWgPort)));
  // The route goes: the LAN endpoint is a candidate again, probed at once.
  p.a->pm->set_tunnelled_prefixes(p.w.now, {});
  p.run(seconds(2));
  EXPECT_TRUE(p.ab().endpoint.same_remote(Endpoint(lan, kWgPort)));
}

TEST(PunchPath, NetworkChangeReprobesAtOnce) {
  Pair p({kA}, {kB});
  p.start();
  p.run(seconds(3));
  ASSERT_EQ(p.ab().kind, PathKind::direct);
  ASSERT_EQ(p.ba().kind, PathKind::direct);
  // A roams to a new address: the old one is gone, B does not know the new one yet.
  const IpAddress roamed = ip("198.51.100.77");
  p.a->addresses = {roamed};
  p.a->pm->network_changed(p.w.now);
  p.w.drain(*p.a);
  EXPECT_EQ(p.ab().kind, PathKind::relay);  // nothing trusted until proven again
  p.a->pm->set_local_candidates(p.w.now, p.candidates(*p.a));
  p.w.drain(*p.a);
  auto t = p.run_until_ab([](const PathInfo& i) { return i.kind == PathKind::direct; }, seconds(2));
  ASSERT_TRUE(t);
  EXPECT_LE(*t, milliseconds(120));  // B's answer to our call-me-maybe (2 x 40 ms), one RTT
  // B learns A's new address from its pings (and the call-me-maybe) and moves too.
  p.run(milliseconds(200));
  const PathInfo back = p.ba();
  EXPECT_EQ(back.kind, PathKind::direct);
  EXPECT_EQ(back.endpoint.address(), roamed);
}

TEST(PunchPath, PeerRestartWithTheSameDiscoKey) {
  Pair p({kA}, {kB});
  p.start();
  p.run(seconds(3));
  ASSERT_EQ(p.ba().kind, PathKind::direct);
  p.a->pm->network_changed(p.w.now);  // A's epoch moves on in its first life
  p.w.drain(*p.a);
  p.run(seconds(2));
  // A restarts 10 s later: same keys from its state directory, a new PathManager whose counter
  // and epoch are seeded from a later wall clock.
  p.traffic = false;
  p.run(seconds(10));
  p.a->pm = std::make_unique<PathManager>(p.a->disco_private, p.a->node_key, p.a->rng,
                                           1'000'000'000ULL * 2 + 10'000'000'000ULL);
  p.a->pm->set_relay_available(p.w.now, true);
  p.a->pm->set_local_candidates(p.w.now, p.candidates(*p.a));
  p.a->pm->set_peer(p.w.now, p.b->node_key, p.b->disco_public, {Endpoint(kB, kWgPort)});
  p.w.drain(*p.a);
  p.traffic = true;
  const auto drops = p.b->pm->stats().drops;
  p.run(seconds(2));
  EXPECT_EQ(p.ab().kind, PathKind::direct);
  EXPECT_EQ(p.ba().kind, PathKind::direct);
  EXPECT_EQ(p.b->pm->stats().drops, drops) << "B dropped the restarted A's messages";
}

TEST(PunchPath, CallMeMaybeMakesTheReceiverPingEveryCandidateAtOnce) {
  Pair p({kA}, {kB});
  p.w.blackholed.insert(kA);  // nothing gets through: only the pings' timing is under test
  p.w.blackholed.insert(kB);
  p.b->pm->set_peer(p.w.now, p.a->node_key, p.a->disco_public, {});  // B knows no endpoint of A
  p.w.drain(*p.b);
  p.b->sends.clear();
  LocalCandidates ca;
  for (int i = 0; i < 6; ++i)
    ca.local.push_back(Endpoint(IpAddress::v4(0xc0a80100u + static_cast<std::uint32_t>(i)), 51820));
  ca.reflexive = Endpoint(kA, 41641);
  p.a->pm->set_local_candidates(p.w.now, ca);
  p.a->pm->set_peer(p.w.now, p.b->node_key, p.b->disco_public, {Endpoint(kB, kWgPort)});
  p.w.drain(*p.a);
  const Instant sent = p.w.now;
  p.w.run_for(p.w.relay_delay);  // the call-me-maybe crosses the relay
  std::set<Endpoint> pinged;
  for (const SendRecord& s : p.b->sends)
    if (s.purpose == SendPurpose::probe) {
      EXPECT_EQ(s.at, sent + p.w.relay_delay);  // all in the same instant
      pinged.insert(Endpoint(s.to.address(), s.to.port()));
    }
  EXPECT_EQ(pinged.size(), 7u);
  EXPECT_TRUE(pinged.count(Endpoint(kA, 41641)));
}

TEST(PunchPath, FloodsAreDroppedAndMemoryStaysBounded) {
  Pair p({kA}, {kB});
  p.start();
  p.run(seconds(1));
  PathManager& pm = *p.b->pm;
  DiscoSession real;
  ASSERT_TRUE(real.init(p.a->disco_private, p.a->disco_public, p.b->disco_public));
  SeededRandom rng(3);
  const auto before = pm.stats();
  // 10000 pings from A's key at 10000 spoofed source endpoints, all in one second.
  std::uint64_t counter = 9'000'000'000'000ULL;
  for (int i = 0; i < 10000; ++i) {
    DiscoMessage ping;
    ping.type = DiscoType::ping;
    ping.ping.node_key = p.a->node_key;
    rng.fill(ping.ping.tx_id);
    const Endpoint from(IpAddress::v4(0x0a000000u + static_cast<std::uint32_t>(i)), 1000);
    pm.handle_disco(p.w.now + std::chrono::microseconds(100 * i), DiscoSource::udp(0, from),
                    real.seal(ping, counter++, rng));
  }
  const auto actions = pm.take_actions();
  std::size_t udp = 0;
  for (const PathAction& a : actions) udp += a.kind == ActionKind::send_udp;
  // Answers are bounded by the global bucket, pings back by the per-peer one.
  EXPECT_LE(udp, kGlobalDiscoBurst + kGlobalDiscoRate + 1);
  EXPECT_GT(pm.stats().drops_of(DiscoError::rate_limited), before.drops_of(DiscoError::rate_limited));
  for (const PeerPathStatus& s : pm.status(p.w.now)) EXPECT_LE(s.candidates, kMaxCandidates);
  EXPECT_EQ(pm.peer_count(), 1u);
}

TEST(PunchPath, GlobalAndPerPeerRateBounds) {
  // 300 peers at once: every one is probed, yet never faster than the global bound.
  SeededRandom rng(5);
  wg::PrivateKey priv;
  DiscoKey pub{};
  generate_disco_key(priv, pub, rng);
  PathManager pm(priv, NodeKey{}, rng, 1);
  pm.set_relay_available(Instant{}, true);
  std::vector<SendRecord> sends;
  std::vector<NodeKey> keys;
  Instant now{};
  for (int i = 0; i < 300; ++i) {
    wg::PrivateKey pp;
    DiscoKey pk{};
    generate_disco_key(pp, pk, rng);
    NodeKey nk{};
    rng.fill(nk);
    keys.push_back(nk);
    std::vector<Endpoint> eps;
    for (int j = 0; j < 4; ++j)
      eps.push_back(Endpoint(IpAddress::v4(0x0a000000u + static_cast<std::uint32_t>(i * 8 + j)), 51820));
    pm.set_peer(now, nk, pk, eps);
  }
  std::set<NodeKey> pinged;
  for (int step = 0; step < 10000; ++step) {
    for (const PathAction& a : pm.take_actions())
      if (a.kind == ActionKind::send_udp) {
        sends.push_back(SendRecord{now, a.purpose, a.socket, a.endpoint});
        pinged.insert(a.peer);
      }
    auto d = pm.next_deadline();
    if (!d) break;
    now = std::max(now, *d);
    pm.on_timers(now);
    // Data to every peer: each would like a full probe at once.
    if (step % 50 == 0)
      for (const NodeKey& k : keys) pm.note_data_sent(now, k);
    if (now > Instant{} + seconds(20)) break;
  }
  EXPECT_EQ(pinged.size(), keys.size());
  EXPECT_GT(pm.stats().sends_deferred, 0u);
  for (Duration window : {Duration(milliseconds(100)), Duration(seconds(1)), Duration(seconds(5))}) {
    const auto n = max_in_window(sends, window, [](const SendRecord&) { return true; });
    const double bound = kGlobalDiscoBurst +
                         kGlobalDiscoRate * std::chrono::duration<double>(window).count();
    EXPECT_LE(static_cast<double>(n), bound) << "window " << window.count();
  }
  // Per peer: no more than kPeerPingBurst + kPeerPingRate pings to one peer in any second.
  for (int i = 0; i < 5; ++i) {
    std::vector<SendRecord> mine;
    for (const SendRecord& s : sends)
      if ((s.to.address().v4_host_order() - 0x0a000000u) / 8 == static_cast<std::uint32_t>(i)) mine.push_back(s);
    EXPECT_LE(max_in_window(mine, seconds(1), [](const SendRecord&) { return true; }),
              kPeerPingBurst + kPeerPingRate);
  }
}

TEST(PunchPath, DropsStrangersReplaysAndUnexpectedPongs) {
  Pair p({kA}, {kB});
  p.start();
  p.run(seconds(1));
  PathManager& pm = *p.b->pm;
  // Capture what A sends next (a heartbeat ping) and replay it.
  p.a->pm->note_data_sent(p.w.now, p.b->node_key);
  p.run(seconds(2));
  const auto before = pm.stats();
  // A stranger: a well-formed box from a key B does not know.
  SeededRandom rng(77);
  wg::PrivateKey sp;
  DiscoKey spub{};
  generate_disco_key(sp, spub, rng);
  DiscoSession stranger;
  ASSERT_TRUE(stranger.init(sp, spub, p.b->disco_public));
  DiscoMessage ping;
  ping.type = DiscoType::ping;
  const Bytes s = stranger.seal(ping, 1, rng);
  EXPECT_EQ(pm.handle_disco(p.w.now, DiscoSource::udp(0, Endpoint(kA, 1)), s), DiscoError::unknown_sender);
  // A's own session, forged by someone without A's key: the box does not open.
  DiscoSession forger;
  ASSERT_TRUE(forger.init(sp, p.a->disco_public, p.b->disco_public));
  EXPECT_EQ(pm.handle_disco(p.w.now, DiscoSource::udp(0, Endpoint(kA, 1)), forger.seal(ping, 99, rng)),
            DiscoError::bad_box);
  // A genuine pong for a ping B never sent.
  DiscoSession real;
  ASSERT_TRUE(real.init(p.a->disco_private, p.a->disco_public, p.b->disco_public));
  DiscoMessage pong;
  pong.type = DiscoType::pong;
  const Bytes pb = real.seal(pong, 5'000'000'000'000ULL, rng);
  EXPECT_EQ(pm.handle_disco(p.w.now, DiscoSource::udp(0, Endpoint(kA, kWgPort)), pb),
            DiscoError::unexpected_pong);
  // ... and the same bytes again: a replay.
  EXPECT_EQ(pm.handle_disco(p.w.now, DiscoSource::udp(0, Endpoint(kA, kWgPort)), pb),
            DiscoError::replay);
  // A ping naming another node key.
  DiscoMessage liar;
  liar.type = DiscoType::ping;
  liar.ping.node_key[0] = 0x55;
  EXPECT_EQ(pm.handle_disco(p.w.now, DiscoSource::udp(0, Endpoint(kA, kWgPort)),
                            real.seal(liar, 5'000'000'000'001ULL, rng)),
            DiscoError::node_key_mismatch);
  // Through the relay, claimed by a node key other than the sender's.
  DiscoMessage cmm;
  cmm.type = DiscoType::call_me_maybe;
  cmm.call_me_maybe.epoch = 1000;
  EXPECT_EQ(pm.handle_disco(p.w.now, DiscoSource::relay(NodeKey{}), real.seal(cmm, 5'000'000'000'002ULL, rng)),
            DiscoError::node_key_mismatch);
  // A call-me-maybe older than one already processed.
  cmm.call_me_maybe.epoch = 0;
  EXPECT_EQ(pm.handle_disco(p.w.now, DiscoSource::relay(p.a->node_key),
                            real.seal(cmm, 5'000'000'000'003ULL, rng)),
            DiscoError::stale);
  const auto& after = pm.stats();
  for (DiscoError e : {DiscoError::unknown_sender, DiscoError::bad_box, DiscoError::unexpected_pong,
                       DiscoError::replay, DiscoError::node_key_mismatch, DiscoError::stale})
    EXPECT_EQ(after.drops_of(e), before.drops_of(e) + (e == DiscoError::node_key_mismatch ? 2 : 1))
        << to_string(e);
  // The path survived all of it, and no forged or replayed pong told B anything about its NAT.
  EXPECT_EQ(p.ba().kind, PathKind::direct);
  EXPECT_EQ(after.mapping_observations, before.mapping_observations);
  EXPECT_FALSE(pm.observed_mapping_varies());
}

TEST(PunchPath, SelectionRules) {
  // Numbered edge table for choose_path (rtt in ms, lan, trusted).
  struct Row {
    int line;
    std::vector<PathChoiceInput> in;
    std::optional<std::size_t> current, want;
  };
  const auto ms = [](int v) { return Duration(milliseconds(v)); };
  const std::vector<Row> rows = {
      {1, {}, std::nullopt, std::nullopt},
      {2, {{false, ms(10), false}}, std::nullopt, std::nullopt},
      {3, {{true, ms(30), false}, {true, ms(20), false}}, std::nullopt, 1},
      {4, {{true, ms(30), false}, {true, ms(26), false}}, 0, 0},   // 4 ms: below the gain
      {5, {{true, ms(100), false}, {true, ms(94), false}}, 0, 0},  // 6 ms but 6 %: below 20 %
      {6, {{true, ms(100), false}, {true, ms(79), false}}, 0, 1},  // 21 ms and 21 %
      {7, {{false, ms(30), false}, {true, ms(90), false}}, 0, 1},  // current lost trust
      {8, {{true, ms(30), false}, {true, ms(32), true}}, 0, 1},    // LAN, close
      {9, {{true, ms(30), false}, {true, ms(45), true}}, 0, 0},    // LAN, too slow
      {10, {{true, ms(1), true}, {true, ms(0), false}}, 0, 0},     // LAN kept over public
  };
  for (const Row& r : rows)
    EXPECT_EQ(choose_path(r.in, r.current), r.want) << "row " << r.line;
  EXPECT_TRUE(is_private_address(ip("10.1.2.3")));
  EXPECT_TRUE(is_private_address(ip("172.31.0.1")));
  EXPECT_FALSE(is_private_address(ip("172.32.0.1")));
  EXPECT_TRUE(is_private_address(ip("fd00::1")));
  EXPECT_TRUE(is_private_address(ip("fe80::1")));
  EXPECT_FALSE(is_private_address(ip("100.64.0.1")));
  EXPECT_FALSE(is_private_address(ip("2001:db8::1")));
}

}  // namespace
}  // namespace knit::punch::sim

namespace knit::punch::sim {
namespace {

TEST(PunchPath, PathMtuIsSearchedOnTheDirectPathAndGivesTheTunnelMtu) {
  Pair p({kA}, {kB});
  p.w.path_mtu = 1280;  // and no ICMP
  p.a->pm->set_pmtu(true, 1420);
  p.b->pm->set_pmtu(true, 1420);
  p.start();
  EXPECT_EQ(p.a->pm->tunnel_mtu_of(p.b->node_key, p.w.now), 0u) << "relay only: the device's MTU";
  p.run(seconds(1));
  ASSERT_EQ(p.ab().kind, PathKind::direct);
  // Direct, not searched to the end yet: the base (1280) is what is safe.
  EXPECT_EQ(p.a->pm->tunnel_mtu_of(p.b->node_key, p.w.now), 1216u);
  // ...but nothing is proven yet (the full size is still being tried): no host is told.
  EXPECT_TRUE(p.a->pm->proven_tunnel_limits(p.w.now).empty());
  p.run(seconds(40));
  EXPECT_EQ(p.a->pm->tunnel_mtu_of(p.b->node_key, p.w.now), 1216u);
  EXPECT_EQ(p.b->pm->tunnel_mtu_of(p.a->node_key, p.w.now), 1216u);
  // The search has proven the path smaller than the tunnel needs: packets above 1216 to b are
  // answered "too big" (nat/too_big.hpp).
  using Limits = std::vector<std::pair<NodeKey, std::size_t>>;
  EXPECT_EQ(p.a->pm->proven_tunnel_limits(p.w.now), (Limits{{p.b->node_key, 1216u}}));
  EXPECT_EQ(p.b->pm->proven_tunnel_limits(p.w.now), (Limits{{p.a->node_key, 1216u}}));
  const auto probes = std::count_if(p.a->sends.begin(), p.a->sends.end(),
                                    [](const SendRecord& s) { return s.purpose == SendPurpose::pmtu_probe; });
  EXPECT_GE(probes, 6 * PmtuSearch::kMaxProbes) << "each size above 1280 tried three times";
  EXPECT_LE(probes, 8 * PmtuSearch::kMaxProbes + 4) << "and not much more (one confirm probe)";
  EXPECT_EQ(p.ab().kind, PathKind::direct) << "lost probes never cost the path its trust";
  const auto st = p.a->pm->status(p.w.now);
  ASSERT_EQ(st.size(), 1u);
  EXPECT_EQ(st[0].tunnel_mtu, 1216u);
  EXPECT_EQ(st[0].path_mtu, std::optional<std::size_t>(1280));

  // The path grows (a route change): a network change searches again from the base, up.
  p.w.path_mtu = 0;
  p.a->pm->network_changed(p.w.now);
  p.run(seconds(5));
  EXPECT_EQ(p.a->pm->tunnel_mtu_of(p.b->node_key, p.w.now), 1420u);
  EXPECT_TRUE(p.a->pm->proven_tunnel_limits(p.w.now).empty()) << "the full path limits nothing";
}

TEST(PunchPath, IcmpTooBigIsAHintForTheSearchOfThatAddressOnly) {
  Pair p({kA}, {kB});
  p.w.path_mtu = 1280;  // the sim sends no ICMP: the test hands in what the socket would
  p.a->pm->set_pmtu(true, 1420);
  p.b->pm->set_pmtu(true, 1420);
  p.start();
  p.run(seconds(1));
  ASSERT_EQ(p.ab().kind, PathKind::direct);
  const Endpoint to = p.ab().endpoint;
  const auto probes = [&] {
    return std::count_if(p.a->sends.begin(), p.a->sends.end(),
                         [](const SendRecord& s) { return s.purpose == SendPurpose::pmtu_probe; });
  };

  // About an address no search runs to: counted, nothing changes.
  EXPECT_FALSE(p.a->pm->on_too_big(p.w.now, Endpoint(IpAddress::parse("198.51.100.7").value(), to.port()), 1280));
  EXPECT_EQ(p.a->pm->stats().icmp_too_big_unknown, 1u);
  EXPECT_EQ(p.a->pm->stats().icmp_too_big_used, 0u);
  EXPECT_TRUE(p.a->pm->proven_tunnel_limits(p.w.now).empty());

  // About b's address (any port: the path is the address's): the search skips to the hint
  // at once instead of losing three probes of each larger size.
  ASSERT_TRUE(p.a->pm->on_too_big(p.w.now, Endpoint(to.address(), 9), 1280));
  EXPECT_EQ(p.a->pm->stats().icmp_too_big_used, 1u);
  ASSERT_TRUE(p.a->pm->next_deadline());
  EXPECT_LE(*p.a->pm->next_deadline(), p.w.now) << "the smaller probe goes now";
  const auto before = probes();
  p.run(milliseconds(100));
  using Limits = std::vector<std::pair<NodeKey, std::size_t>>;
  EXPECT_EQ(p.a->pm->proven_tunnel_limits(p.w.now), (Limits{{p.b->node_key, 1216u}}))
      << "proven within 100 ms of the hint";
  EXPECT_EQ(p.a->pm->tunnel_mtu_of(p.b->node_key, p.w.now), 1216u);
  EXPECT_LE(probes() - before, 1) << "no size above the hint is tried";

  // A hint never raises anything, nor pushes below the base.
  EXPECT_FALSE(p.a->pm->on_too_big(p.w.now, to, 9000));
  EXPECT_FALSE(p.a->pm->on_too_big(p.w.now, to, 500));
  EXPECT_EQ(p.a->pm->tunnel_mtu_of(p.b->node_key, p.w.now), 1216u);
  EXPECT_EQ(p.a->pm->stats().icmp_too_big_used, 3u);

  // b never got a hint: it finds the same by losing probes, later.
  EXPECT_TRUE(p.b->pm->proven_tunnel_limits(p.w.now).empty());
}

TEST(PunchPath, PathMtuOffLeavesEverythingAlone) {
  Pair p({kA}, {kB});
  p.w.path_mtu = 1280;
  p.start();
  p.run(seconds(10));
  ASSERT_EQ(p.ab().kind, PathKind::direct);
  EXPECT_EQ(p.a->pm->tunnel_mtu_of(p.b->node_key, p.w.now), 0u);
  EXPECT_TRUE(p.a->pm->proven_tunnel_limits(p.w.now).empty());
  EXPECT_EQ(p.a->pm->stats().pmtu_probes_sent, 0u);
  EXPECT_FALSE(p.a->pm->on_too_big(p.w.now, p.ab().endpoint, 1280));
  EXPECT_EQ(p.a->pm->stats().icmp_too_big_unknown, 1u) << "no search: the hint is nobody's";
}

}  // namespace
}  // namespace knit::punch::sim
