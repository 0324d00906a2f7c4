// Port prediction schedules: the easy side's spray (random ports, no repeats, in range, paced,
// bounded, stoppable) and the hard side's probe-socket round; and the birthday-paradox numbers
// they rely on (../shared/NAT.md), by Monte Carlo.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdio>
#include <set>
#include <vector>

#include "base/random.hpp"
#include "punch/path/predict.hpp"

namespace knit::punch {
namespace {

using std::chrono::milliseconds;

TEST(PunchPredict, SprayIsPacedBoundedAndNeverRepeats) {
  SeededRandom rng(1);
  const Instant start = Instant{} + milliseconds(500);
  PortSpray spray(rng, start);
  EXPECT_EQ(spray.next(Instant{}), std::nullopt);  // not before its start
  EXPECT_EQ(spray.next_deadline(), start);
  std::set<std::uint16_t> seen;
  std::vector<Instant> times;
  // A caller polling every millisecond for 30 s.
  for (Instant now = start; now < start + std::chrono::seconds(30); now += milliseconds(1)) {
    while (auto port = spray.next(now)) {
      EXPECT_GE(*port, kSprayPortMin);
      EXPECT_TRUE(seen.insert(*port).second) << "port " << *port << " repeated";
      times.push_back(now);
      EXPECT_EQ(spray.probed_at(*port), now);
    }
  }
  EXPECT_EQ(seen.size(), kSprayMaxProbes);
  EXPECT_TRUE(spray.done());
  EXPECT_EQ(spray.next_deadline(), std::nullopt);
  for (std::size_t i = 1; i < times.size(); ++i) EXPECT_GE(times[i] - times[i - 1], milliseconds(10));
  // 2048 probes at 100/s: 20.47 s from the first to the last.
  EXPECT_EQ(times.back() - times.front(), milliseconds(20470));
  // Ports spread over the whole range (not clustered at the low end).
  EXPECT_GT(*seen.rbegin(), 60000);
  EXPECT_LT(*seen.begin(), 5000);
}

TEST(PunchPredict, LateCallerGetsNoBurst) {
  SeededRandom rng(2);
  PortSpray spray(rng, Instant{});
  ASSERT_TRUE(spray.next(Instant{}));
  // The loop was stalled for 5 s: one probe now, the next 10 ms later, no catch-up.
  const Instant late = Instant{} + std::chrono::seconds(5);
  EXPECT_TRUE(spray.next(late));
  EXPECT_FALSE(spray.next(late));
  EXPECT_FALSE(spray.next(late + milliseconds(9)));
  EXPECT_TRUE(spray.next(late + milliseconds(10)));
  EXPECT_EQ(spray.sent(), 3u);
}

TEST(PunchPredict, StopEndsTheSpray) {
  SeededRandom rng(3);
  PortSpray spray(rng, Instant{});
  ASSERT_TRUE(spray.next(Instant{}));
  spray.stop();
  EXPECT_TRUE(spray.done());
  EXPECT_FALSE(spray.next(Instant{} + std::chrono::seconds(1)));
  EXPECT_EQ(spray.next_deadline(), std::nullopt);
}

TEST(PunchPredict, SmallRangeIsCoveredExactlyOnce) {
  SeededRandom rng(4);
  PortSpray spray(rng, Instant{}, 1000, 5000, 40000, 40099);
  std::set<std::uint16_t> seen;
  for (Instant now{}; !spray.done(); now += milliseconds(1))
    if (auto p = spray.next(now)) seen.insert(*p);
  EXPECT_EQ(spray.sent(), 100u);
  EXPECT_EQ(seen.size(), 100u);
  EXPECT_EQ(*seen.begin(), 40000);
  EXPECT_EQ(*seen.rbegin(), 40099);
}

TEST(PunchPredict, SameSeedSameSchedule) {
  SeededRandom r1(7), r2(7), r3(8);
  PortSpray a(r1, Instant{}), b(r2, Instant{}), c(r3, Instant{});
  bool differs = false;
  for (Instant now{}; now < Instant{} + std::chrono::seconds(1); now += milliseconds(10)) {
    auto pa = a.next(now), pb = b.next(now), pc = c.next(now);
    EXPECT_EQ(pa, pb);
    differs |= pa != pc;
  }
  EXPECT_TRUE(differs);
}

TEST(PunchPredict, ProbeSocketRound) {
  ProbeSocketRound round(Instant{});
  std::vector<std::size_t> order;
  Instant last{};
  for (Instant now{}; !round.done(); now += milliseconds(1)) {
    if (auto k = round.next(now)) {
      if (!order.empty()) {
        EXPECT_GE(now - last, milliseconds(5));  // 200/s
      }
      order.push_back(*k);
      last = now;
    }
  }
  ASSERT_EQ(order.size(), kProbeSockets);
  for (std::size_t i = 0; i < order.size(); ++i) EXPECT_EQ(order[i], i);
  EXPECT_EQ(last, Instant{} + milliseconds(5 * 255));
  ProbeSocketRound stopped(Instant{});
  stopped.stop();
  EXPECT_FALSE(stopped.next(Instant{}));
}

// NAT.md: P(hit) = 1 - (1 - 256/65536)^k; 1024 probes ~98 %, 2048 ~99.97 %. Checked against the
// spray itself: 256 random open ports on the hard side, the spray's ports on the easy side.
TEST(PunchPredict, BirthdayOdds) {
  SeededRandom rng(11);
  const int trials = 2000;
  int hit1024 = 0, hit2048 = 0;
  std::vector<std::size_t> probes_needed;
  for (int t = 0; t < trials; ++t) {
    std::set<std::uint16_t> open;
    while (open.size() < kProbeSockets)
      open.insert(static_cast<std::uint16_t>(1024 + rng.uniform(65536 - 1024)));
    PortSpray spray(rng, Instant{});
    std::size_t n = 0;
    for (Instant now{}; !spray.done(); now += milliseconds(10)) {
      auto p = spray.next(now);
      if (!p) continue;
      ++n;
      if (open.count(*p)) {
        probes_needed.push_back(n);
        if (n <= 1024) ++hit1024;
        ++hit2048;
        break;
      }
    }
  }
  const double p1024 = static_cast<double>(hit1024) / trials;
  const double p2048 = static_cast<double>(hit2048) / trials;
  EXPECT_GT(p1024, 0.97);
  EXPECT_GT(p2048, 0.998);
  std::sort(probes_needed.begin(), probes_needed.end());
  std::printf("birthday: P(hit <= 1024) = %.4f, P(hit <= 2048) = %.4f, median probes %zu (%.2f s at %u/s)\n",
              p1024, p2048, probes_needed[probes_needed.size() / 2],
              static_cast<double>(probes_needed[probes_needed.size() / 2]) / kSprayRate, kSprayRate);
}

}  // namespace
}  // namespace knit::punch
