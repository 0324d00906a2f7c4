// The path MTU search (punch/path/pmtu.hpp) on a manual clock against a simulated path that
// carries packets up to some size: a full path, a 1280 path, random loss, a path that shrinks
// (black hole detection) and grows (raise), a path change, the ICMP hint; and the tunnel MTU
// a path gives.
#include <gtest/gtest.h>

#include <functional>

#include "base/random.hpp"
#include "punch/path/pmtu.hpp"

using namespace knit;
using namespace knit::punch;
using namespace std::chrono_literals;

namespace {

struct Sim {
  PmtuSearch search;
  Instant now{std::chrono::seconds(1000)};
  std::size_t path = 1500;                 // the largest packet the path carries
  std::function<bool()> lose = [] { return false; };
  int probes = 0;

  // Runs for `d` in 50 ms steps; a probe that fits and is not lost is acked 20 ms later.
  void run(Duration d) {
    const Instant end = now + d;
    while (now < end) {
      if (const auto size = search.poll(now)) {
        search.sent(now, *size);
        ++probes;
        if (*size <= path && !lose()) search.acked(now + 20ms, *size);
      }
      now += 50ms;
    }
  }
};

}  // namespace

TEST(PunchPmtu, FullPathIsConfirmedWithOneProbe) {
  Sim s;
  s.search.start(s.now, kPmtuBase, 1480);
  EXPECT_EQ(s.search.mtu(), kPmtuBase) << "the base until something bigger is acked";
  s.run(200ms);
  EXPECT_EQ(s.search.state(), PmtuSearch::State::complete);
  EXPECT_EQ(s.search.mtu(), 1480u);
  EXPECT_EQ(s.search.ceiling(), 1480u) << "nothing limits it";
  EXPECT_EQ(s.probes, 1);
}

TEST(PunchPmtu, SmallPathConvergesWithinGranularity) {
  for (std::size_t path : {1280u, 1300u, 1400u, 1479u}) {
    Sim s;
    s.path = path;
    s.search.start(s.now, kPmtuBase, 1480);
    s.run(40s);
    SCOPED_TRACE(path);
    EXPECT_EQ(s.search.state(), PmtuSearch::State::complete);
    EXPECT_LE(s.search.mtu(), path) << "never more than the path carries";
    EXPECT_GT(s.search.mtu() + PmtuSearch::kGranularity, path);
    EXPECT_LT(s.search.ceiling(), 1480u) << "proven smaller than the tunnel wants";
    EXPECT_GE(s.search.ceiling(), s.search.mtu());
  }
  // Proven as soon as the full size has gone unanswered three times, long before the search
  // ends; until then nothing is proven.
  Sim s;
  s.path = 1300;
  s.search.start(s.now, kPmtuBase, 1480);
  EXPECT_EQ(s.search.ceiling(), 1480u);
  s.run(2500ms);
  EXPECT_EQ(s.search.ceiling(), 1480u);
  s.run(1000ms);
  EXPECT_LT(s.search.ceiling(), 1480u);
  EXPECT_EQ(s.search.state(), PmtuSearch::State::searching);
}

TEST(PunchPmtu, OneLostProbeIsRetriedNotTakenForTooBig) {
  Sim s;
  int n = 0;
  s.lose = [&] { return ++n <= 2; };  // the first two probes of 1480 are lost
  s.search.start(s.now, kPmtuBase, 1480);
  s.run(5s);
  EXPECT_EQ(s.search.mtu(), 1480u);
  EXPECT_EQ(s.probes, 3);
}

TEST(PunchPmtu, RandomLossNeverOverestimates) {
  SeededRandom rng(7);
  Sim s;
  s.path = 1350;
  s.lose = [&] { return rng.next_u64() % 4 == 0; };  // 25 % loss
  s.search.start(s.now, kPmtuBase, 1480);
  s.run(120s);
  EXPECT_LE(s.search.mtu(), 1350u);
  EXPECT_GE(s.search.mtu(), kPmtuBase);
}

TEST(PunchPmtu, ShrinkingPathIsDetectedByConfirmProbes) {
  Sim s;
  s.search.start(s.now, kPmtuBase, 1480);
  s.run(1s);
  ASSERT_EQ(s.search.mtu(), 1480u);
  s.path = 1320;  // a route change to a smaller link, no ICMP
  s.run(PmtuSearch::kConfirmInterval + 3 * PmtuSearch::kProbeTimeout + 1s);
  EXPECT_LE(s.search.mtu(), 1320u) << "back to the base at least, once three confirms failed";
  s.run(40s);
  EXPECT_EQ(s.search.state(), PmtuSearch::State::complete);
  EXPECT_LE(s.search.mtu(), 1320u);
  EXPECT_GT(s.search.mtu() + PmtuSearch::kGranularity, 1320u);
}

TEST(PunchPmtu, GrowingPathIsNoticedByRaiseProbes) {
  Sim s;
  s.path = 1280;
  s.search.start(s.now, kPmtuBase, 1480);
  s.run(40s);
  ASSERT_EQ(s.search.mtu(), 1280u);
  s.path = 1500;
  s.run(PmtuSearch::kRaiseInterval);
  EXPECT_EQ(s.search.mtu(), 1480u);
}

TEST(PunchPmtu, PathChangeStartsOverFromTheBase) {
  Sim s;
  s.search.start(s.now, kPmtuBase, 1480);
  s.run(1s);
  ASSERT_EQ(s.search.mtu(), 1480u);
  s.path = 1280;
  s.search.start(s.now, kPmtuBase, 1480);  // the direct path moved
  EXPECT_EQ(s.search.mtu(), kPmtuBase);
  s.run(40s);
  EXPECT_EQ(s.search.mtu(), 1280u);
}

TEST(PunchPmtu, TooBigHintSkipsSizesButNeverRaises) {
  Sim s;
  s.path = 1300;
  s.search.start(s.now, kPmtuBase, 1480);
  s.search.note_too_big(s.now, 1300);
  s.run(1s);
  EXPECT_EQ(s.search.mtu(), 1300u) << "the hinted size is tried first";
  EXPECT_EQ(s.probes, 1);
  s.search.note_too_big(s.now, 9000);  // a forged hint cannot raise anything
  EXPECT_EQ(s.search.mtu(), 1300u);
  s.search.note_too_big(s.now, 600);   // nor push below the base
  EXPECT_GE(s.search.mtu(), kPmtuBase);
}

TEST(PunchPmtu, TooBigHintSaysWhetherItChangedTheSearch) {
  Sim s;
  EXPECT_FALSE(s.search.note_too_big(s.now, 1300)) << "idle: nothing to change";
  s.path = 1300;
  s.search.start(s.now, kPmtuBase, 1480);
  EXPECT_TRUE(s.search.note_too_big(s.now, 1300));
  EXPECT_FALSE(s.search.note_too_big(s.now, 1400)) << "above what is left to try";
  EXPECT_FALSE(s.search.note_too_big(s.now, 1480));
  s.run(1s);
  ASSERT_EQ(s.search.state(), PmtuSearch::State::complete);
  EXPECT_EQ(s.search.mtu(), 1300u);
  EXPECT_FALSE(s.search.note_too_big(s.now, 1300)) << "what got through still does";
  // The path shrinks and says so: searched again below the hint, at once.
  s.path = 1290;
  EXPECT_TRUE(s.search.note_too_big(s.now, 1290));
  EXPECT_EQ(s.search.state(), PmtuSearch::State::searching);
  s.run(1s);
  EXPECT_EQ(s.search.mtu(), 1290u);
}

TEST(PunchPmtu, TooBigHintEndsARaiseProbeAboveIt) {
  Sim s;
  s.path = 1300;
  s.search.start(s.now, kPmtuBase, 1480);
  s.search.note_too_big(s.now, 1300);
  s.run(1s);
  ASSERT_EQ(s.search.mtu(), 1300u);
  // Ten minutes on, a probe of the full size asks whether the path grew.
  s.now += PmtuSearch::kRaiseInterval;
  const auto size = s.search.poll(s.now);
  ASSERT_EQ(size, std::optional<std::size_t>(1480));
  s.search.sent(s.now, *size);
  EXPECT_TRUE(s.search.note_too_big(s.now, 1300)) << "no, it did not";
  const auto next = s.search.poll(s.now);
  EXPECT_TRUE(!next || *next <= 1300u) << "no retries of the raise probe (a confirm may be due)";
  EXPECT_EQ(s.search.mtu(), 1300u);
  EXPECT_EQ(s.search.state(), PmtuSearch::State::complete);
}

TEST(PunchPmtu, IdleAsksForNothing) {
  PmtuSearch search;
  const Instant now{std::chrono::seconds(5)};
  EXPECT_FALSE(search.poll(now));
  EXPECT_FALSE(search.next_deadline(now));
}

TEST(PunchPmtu, TunnelMtuForAPath) {
  EXPECT_EQ(tunnel_mtu_for_path(1500, false, 1420), 1420u);
  EXPECT_EQ(tunnel_mtu_for_path(1480, false, 1420), 1420u);
  EXPECT_EQ(tunnel_mtu_for_path(1500, true, 1420), 1420u);
  // 1280 - 60 = 1220, rounded down to 16: a padded 1216-byte packet is 1276 outside.
  EXPECT_EQ(tunnel_mtu_for_path(1280, false, 1420), 1216u);
  EXPECT_EQ(tunnel_mtu_for_path(1280, true, 1420), 1200u);
  EXPECT_EQ(path_mtu_for_tunnel(1420, false), 1480u);
  EXPECT_EQ(path_mtu_for_tunnel(1420, true), 1500u);
}
