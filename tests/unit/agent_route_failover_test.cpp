// Route failover between two routers of one prefix, on a manual clock: the carriers' liveness
// (CarrierHealth: down after kCarrierDownAfter of silence, pings only when nothing else was
// heard, back up after kCarrierUpAfter of answers), the route choice it feeds (a down carrier
// avoided, the carrier in use kept: no move back), which carriers are watched, and what
// `status --json` says about them.
#include <gtest/gtest.h>

#include <algorithm>

#include "agent/carrier_health.hpp"
#include "agent/carrier_status.hpp"
#include "agent/route_choice.hpp"
#include "tests/support/route_peers.hpp"

namespace knit::agent {
namespace {

using knit::testing::routes::key;
using knit::testing::routes::peer;
using std::chrono::milliseconds;
using std::chrono::seconds;

IpPrefix P(const char* text) { return IpPrefix::parse(text).value(); }

const control::NodeKey kSelf = key(9);

TEST(CarrierHealth, SilentCarrierIsDownAfterDownAfterAndPingedMeanwhile) {
  CarrierHealth h;
  Instant now{};
  h.watch(now, {key(1), key(2)});
  EXPECT_TRUE(h.watching());
  // First look: the rx counters become the baseline; nothing heard yet, so both get a ping.
  h.observe(now, key(1), std::nullopt, 100);
  h.observe(now, key(2), std::nullopt, 100);
  EXPECT_FALSE(h.on_timers(now));
  EXPECT_EQ(h.take_pings(now).size(), 2u);
  EXPECT_TRUE(h.take_pings(now + milliseconds(500)).empty()) << "at most one ping per interval";
  // Key 1 keeps answering over WireGuard (its rx grows); key 2 says nothing.
  std::uint64_t rx = 100;
  std::size_t pings_to_1 = 0, pings_to_2 = 0;
  std::optional<Instant> down_at;
  for (Instant t = now + milliseconds(250); t <= now + seconds(10); t += milliseconds(250)) {
    rx += 500;
    h.observe(t, key(1), std::nullopt, rx);
    h.observe(t, key(2), std::nullopt, 100);
    if (h.on_timers(t) && !down_at) down_at = t;
    for (const control::NodeKey& k : h.take_pings(t)) (k == key(1) ? pings_to_1 : pings_to_2)++;
  }
  ASSERT_TRUE(down_at);
  EXPECT_GT(*down_at - now, kCarrierDownAfter);
  EXPECT_LE(*down_at - now, kCarrierDownAfter + milliseconds(250));
  EXPECT_FALSE(h.down(key(1)));
  EXPECT_TRUE(h.down(key(2)));
  EXPECT_EQ(h.down_carriers(), std::vector<control::NodeKey>{key(2)});
  EXPECT_EQ(pings_to_1, 0u) << "a carrier heard from needs no ping";
  EXPECT_GE(pings_to_2, 9u);  // one a second, down or not
  EXPECT_LE(pings_to_2, 11u);
  const auto status = h.status(key(2), now + seconds(10));
  ASSERT_TRUE(status);
  EXPECT_EQ(status->liveness, CarrierLiveness::down);
  EXPECT_EQ(status->reason, "never answered (watched for 10.0 s)");
  EXPECT_FALSE(h.status(key(3), now));
}

TEST(CarrierHealth, DiscoEvidenceAndRecoveryWithHysteresis) {
  CarrierHealth h;
  Instant now{};
  h.watch(now, {key(1)});
  h.observe(now, key(1), now, 0);
  // Pongs until t = 3 s, then silence.
  for (int ms = 250; ms <= 3000; ms += 250) h.observe(now + milliseconds(ms), key(1), now + milliseconds(ms), 0);
  EXPECT_FALSE(h.on_timers(now + seconds(7)));  // 4.0 s after the last pong: not yet
  EXPECT_TRUE(h.on_timers(now + seconds(7) + milliseconds(1)));
  EXPECT_TRUE(h.down(key(1)));
  EXPECT_EQ(h.status(key(1), now + seconds(8))->reason, "no answer for 5.0 s");
  // A disco time from before it went down (a late look) is no evidence.
  h.observe(now + seconds(8), key(1), now + seconds(6), 0);
  EXPECT_EQ(h.status(key(1), now + seconds(8))->liveness, CarrierLiveness::down);
  // It answers again at 10 s: recovering (still avoided), pinged every second.
  h.observe(now + seconds(10), key(1), now + seconds(10), 0);
  EXPECT_FALSE(h.on_timers(now + seconds(10)));
  EXPECT_TRUE(h.down(key(1)));
  EXPECT_EQ(h.status(key(1), now + seconds(11))->liveness, CarrierLiveness::recovering);
  EXPECT_EQ(h.take_pings(now + seconds(10)).size(), 1u) << "a recovering carrier is pinged to prove itself";
  // Silent again before kCarrierUpAfter: back to down, no change reported.
  EXPECT_FALSE(h.on_timers(now + seconds(15)));
  EXPECT_EQ(h.status(key(1), now + seconds(15))->liveness, CarrierLiveness::down);
  // Answers from 20 s on, every second: up after kCarrierUpAfter.
  bool up = false;
  Instant up_at{};
  for (int s = 20; s <= 25 && !up; ++s) {
    h.observe(now + seconds(s), key(1), now + seconds(s), 0);
    if (h.on_timers(now + seconds(s))) {
      up = true;
      up_at = now + seconds(s);
    }
  }
  ASSERT_TRUE(up);
  EXPECT_EQ(up_at - (now + seconds(20)), kCarrierUpAfter);
  EXPECT_FALSE(h.down(key(1)));
  // Unwatched: forgotten; watched again: a fresh grace period.
  h.watch(now + seconds(30), {});
  EXPECT_FALSE(h.watching());
  h.watch(now + seconds(40), {key(1)});
  EXPECT_FALSE(h.on_timers(now + seconds(44)));
  EXPECT_TRUE(h.on_timers(now + seconds(44) + milliseconds(1)));
}

TEST(RouteFailover, ChoiceAvoidsDownCarriersAndKeepsTheOneInUse) {
  const std::vector<control::PeerInfo> two{peer(1, {P("10.7.0.0/24")}), peer(2, {P("10.7.0.0/24")})};
  const control::NodeKey low = std::min(key(1), key(2));
  const control::NodeKey high = std::max(key(1), key(2));
  // By the map alone: the lower key.
  RouteCarriers in_use = choose_route_carriers(two, kSelf, {});
  EXPECT_EQ(in_use.at(P("10.7.0.0/24")), low);
  // The lower one is down: the other.
  RouteCarriers moved = choose_route_carriers(two, kSelf, {}, {&in_use, {low}});
  EXPECT_EQ(moved.at(P("10.7.0.0/24")), high);
  // It comes back: no move back while the one in use works.
  EXPECT_EQ(choose_route_carriers(two, kSelf, {}, {&moved, {}}).at(P("10.7.0.0/24")), high);
  // Both down: the one in use stays (no pointless move to another dead router).
  EXPECT_EQ(choose_route_carriers(two, kSelf, {}, {&moved, {low, high}}).at(P("10.7.0.0/24")), high);
  EXPECT_EQ(choose_route_carriers(two, kSelf, {}, {&in_use, {low, high}}).at(P("10.7.0.0/24")), low);
  // Offline at the coordinator ranks below down: a live-but-silent one is still the better bet.
  std::vector<control::PeerInfo> offline = two;
  for (auto& p : offline)
    if (p.node_key == high) p.online = false;
  EXPECT_EQ(choose_route_carriers(offline, kSelf, {}, {&moved, {low}}).at(P("10.7.0.0/24")), low);
  // The previous carrier no longer carries the prefix: the choice falls back to the rules.
  const std::vector<control::PeerInfo> only_low{peer(low == key(1) ? 1 : 2, {P("10.7.0.0/24")})};
  EXPECT_EQ(choose_route_carriers(only_low, kSelf, {}, {&moved, {}}).at(P("10.7.0.0/24")), low);
}

TEST(RouteFailover, OnlyCarriersOfContestedPrefixesAreWatched) {
  const std::vector<control::PeerInfo> peers{
      peer(1, {P("10.1.0.0/24"), P("10.7.0.0/24")}),
      peer(2, {P("10.7.0.0/24")}),
      peer(3, {P("10.7.0.0/24")}, /*online=*/false),
      peer(4, {P("10.8.0.0/24"), P("0.0.0.0/0")}),
      peer(5, {P("10.8.0.0/24")}, /*online=*/false),
      peer(6, {P("0.0.0.0/0")}),
      peer(9, {P("10.7.0.0/24")}),  // ourselves
  };
  std::vector<control::NodeKey> want{key(1), key(2)};
  std::sort(want.begin(), want.end());
  EXPECT_EQ(contested_carriers(peers, kSelf, {}), want);
  // Our own LAN is never routed, so never contested.
  const InterfaceAddress on_lan{"eth0", P("10.7.0.20/24"), false};
  EXPECT_TRUE(contested_carriers(peers, kSelf, {on_lan}).empty());
}

// The whole loop on a manual clock, as knitd runs it: evidence every 250 ms, the choice re-made
// when the health changes. Router A vanishes silently; the prefix moves to B within 10 s (here:
// just over kCarrierDownAfter); A returns and the prefix stays on B.
TEST(RouteFailover, SwitchesWithinTenSecondsAndDoesNotMoveBack) {
  const std::vector<control::PeerInfo> peers{peer(1, {P("10.7.0.0/24")}), peer(2, {P("10.7.0.0/24")})};
  CarrierHealth health;
  Instant now{};
  health.watch(now, contested_carriers(peers, kSelf, {}));
  RouteCarriers carriers = choose_route_carriers(peers, kSelf, {});
  const control::NodeKey a = carriers.at(P("10.7.0.0/24"));
  const control::NodeKey b = a == key(1) ? key(2) : key(1);
  bool a_alive = true;
  std::uint64_t rx_a = 0, rx_b = 0;
  std::optional<Instant> b_heard;
  std::optional<Instant> switched;
  const Instant vanish = now + seconds(5);
  std::size_t changes = 0;
  for (; now <= Instant{} + seconds(40); now += milliseconds(250)) {
    if (now == vanish) a_alive = false;
    if (now == Instant{} + seconds(20)) a_alive = true;  // A returns
    // Traffic goes to the carrier in use; it answers if alive. B answers its pings (disco).
    if (carriers.at(P("10.7.0.0/24")) == a && a_alive) rx_a += 100;
    if (carriers.at(P("10.7.0.0/24")) == b) rx_b += 100;
    health.observe(now, a, std::nullopt, rx_a);
    health.observe(now, b, b_heard, rx_b);
    if (health.on_timers(now)) {
      ++changes;
      const RouteCarriers previous = carriers;
      carriers = choose_route_carriers(peers, kSelf, {}, {&previous, health.down_carriers()});
      if (!switched && carriers.at(P("10.7.0.0/24")) == b) switched = now;
    }
    for (const control::NodeKey& k : health.take_pings(now)) {
      if (k == b) b_heard = now;
      if (k == a && a_alive) rx_a += 32;  // its pong (counted as WireGuard for brevity)
    }
  }
  ASSERT_TRUE(switched);
  EXPECT_LE(*switched - vanish, seconds(10));
  EXPECT_LE(*switched - vanish, kCarrierDownAfter + milliseconds(500));
  EXPECT_EQ(carriers.at(P("10.7.0.0/24")), b) << "no move back after A returned";
  EXPECT_FALSE(health.down(a)) << "A is up again (pinged, answering)";
  EXPECT_EQ(changes, 2u);  // A down, A up: nothing else flapped
}

TEST(RouteFailover, StatusSaysWhoCarriesAndWhyNotTheOthers) {
  std::vector<control::PeerInfo> peers{peer(1, {P("10.7.0.0/24")}), peer(2, {P("10.7.0.0/24")}),
                                       peer(3, {P("10.7.0.0/24")}, /*online=*/false), peer(4, {P("10.8.0.0/24")})};
  CarrierHealth health;
  const Instant t0{};
  health.watch(t0, contested_carriers(peers, kSelf, {}));
  const control::NodeKey low = std::min(key(1), key(2));
  const control::NodeKey high = std::max(key(1), key(2));
  health.observe(t0, low, std::nullopt, 0);
  health.observe(t0, high, t0, 0);
  health.observe(t0 + seconds(5), high, t0 + seconds(5), 0);
  ASSERT_TRUE(health.on_timers(t0 + seconds(5)));  // low never heard: down
  const RouteCarriers carriers = choose_route_carriers(peers, kSelf, {}, {nullptr, health.down_carriers()});
  const auto status = route_carrier_status(peers, kSelf, {}, carriers, health, t0 + seconds(6));
  ASSERT_EQ(status.size(), 2u);
  const localapi::RouteCarrierStatus& lan = status[0];
  EXPECT_EQ(lan.prefix, P("10.7.0.0/24"));
  const auto name = [&](const control::NodeKey& k) { return k == key(1) ? "node-1" : "node-2"; };
  EXPECT_EQ(lan.via, name(high));
  ASSERT_EQ(lan.candidates.size(), 3u);
  for (const localapi::RouteCarrierCandidate& c : lan.candidates) {
    if (c.node_key == high) {
      EXPECT_EQ(c.state, "active");
      EXPECT_EQ(c.silent_ms, 1000);
    } else if (c.node_key == low) {
      EXPECT_EQ(c.state, "down");
      EXPECT_EQ(c.reason, "never answered (watched for 6.0 s)");
      EXPECT_FALSE(c.silent_ms);
    } else {
      EXPECT_EQ(c.name, "node-3");
      EXPECT_EQ(c.state, "offline");
      EXPECT_EQ(c.reason, "offline at the coordinator");
    }
  }
  // A lone carrier is not watched: active, nothing known of its silence.
  EXPECT_EQ(status[1].via, "node-4");
  ASSERT_EQ(status[1].candidates.size(), 1u);
  EXPECT_EQ(status[1].candidates[0].state, "active");
  EXPECT_FALSE(status[1].candidates[0].silent_ms);
}

}  // namespace
}  // namespace knit::agent
