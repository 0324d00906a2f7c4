// The reconnect backoff every client of the coordinator follows (control/reconnect_backoff.hpp),
// on a manual clock.
#include <gtest/gtest.h>

#include <set>

#include "base/random.hpp"
#include "control/reconnect_backoff.hpp"

namespace knit::control {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;

TEST(ReconnectBackoff, DoublesFromHalfASecondToThirtyWithJitter) {
  SeededRandom rng(1);
  ReconnectBackoff backoff(rng);
  Instant now{};
  const std::vector<Duration> ceilings = {milliseconds(500), seconds(1), seconds(2), seconds(4), seconds(8),
                                          seconds(16), seconds(30), seconds(30), seconds(30)};
  for (const Duration ceiling : ceilings) {
    EXPECT_EQ(backoff.ceiling(now), ceiling);
    const Duration delay = backoff.next_delay(now);
    EXPECT_GE(delay, ceiling / 2);
    EXPECT_LE(delay, ceiling);
    now += delay;
  }
  backoff.on_session();
  EXPECT_EQ(backoff.ceiling(now), milliseconds(500));
}

TEST(ReconnectBackoff, JitterSpreadsTheDelays) {
  SeededRandom rng(2);
  ReconnectBackoff::Config config;
  std::set<Duration::rep> seen;
  for (int i = 0; i < 50; ++i) {
    ReconnectBackoff backoff(rng, config);
    for (int k = 0; k < 6; ++k) backoff.next_delay(Instant{});
    seen.insert(backoff.next_delay(Instant{}).count());
  }
  EXPECT_GT(seen.size(), 20u);
}

TEST(ReconnectBackoff, RetriesEveryTwoSecondsForAMinuteAfterLosingASession) {
  SeededRandom rng(3);
  ReconnectBackoff backoff(rng);
  Instant now = Instant{} + seconds(1000);
  backoff.on_session();
  backoff.on_session_lost(now);
  // A coordinator restart: every wait in the first minute is at most 2 s, so an agent is back
  // within 2 s (plus a connect) of the coordinator.
  const Instant lost = now;
  while (now - lost < seconds(60)) {
    const Duration delay = backoff.next_delay(now);
    EXPECT_LE(delay, seconds(2));
    now += delay;
  }
  // Then the ordinary schedule resumes, already far along.
  EXPECT_EQ(backoff.ceiling(now), seconds(30));
}

TEST(ReconnectBackoff, AFirstJoinIsNotCapped) {
  SeededRandom rng(4);
  ReconnectBackoff backoff(rng);
  for (int i = 0; i < 10; ++i) backoff.next_delay(Instant{});
  EXPECT_EQ(backoff.ceiling(Instant{}), seconds(30));
  EXPECT_EQ(backoff.failures(), 10);
}

}  // namespace
}  // namespace knit::control
