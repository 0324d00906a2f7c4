// Renewal schedule and epoch checks on a manual clock (RFC 6886 §3.3, §3.6; RFC 6887 §8.5,
// §11.2.1).
#include <gtest/gtest.h>

#include "punch/portmap/schedule.hpp"

namespace knit::punch {
namespace {

using Action = RenewalSchedule::Action;

TEST(PortMapSchedule, NothingBeforeAGrant) {
  RenewalSchedule s;
  EXPECT_EQ(s.poll(Instant{} + 10h), Action::none);
  EXPECT_FALSE(s.next_deadline());
}

TEST(PortMapSchedule, RenewsAtHalfLifetime) {
  RenewalSchedule s;
  Instant now{};
  s.granted(now, 7200s);
  EXPECT_EQ(*s.next_deadline(), now + 3600s);
  EXPECT_EQ(s.poll(now + 3599s), Action::none);
  EXPECT_EQ(s.poll(now + 3600s), Action::renew);
  // Renewed an hour in: the next renewal is half the new lifetime later.
  now += 3600s;
  s.granted(now, 120s);
  EXPECT_EQ(*s.next_deadline(), now + 60s);
  EXPECT_EQ(*s.expires_at(), now + 120s);
}

TEST(PortMapSchedule, FailedRenewalsThickenTowardsExpiry) {
  RenewalSchedule s(RenewalSchedule::Config{.min_retry = 5s, .permanent_refresh = 20min});
  Instant now{};
  s.granted(now, 800s);
  std::vector<Duration> offsets;
  now += 400s;  // first renewal, fails
  for (int i = 0; i < 20 && s.poll(now) != Action::expired; ++i) {
    ASSERT_EQ(s.poll(now), Action::renew) << i;
    s.renewal_failed(now);
    offsets.push_back(s.renew_at() - Instant{});
    now = *s.next_deadline();
  }
  // 400 left -> retry at 600 (3/4), 700 (7/8), 750, 775, 787.5, 793.75, then 5 s steps.
  ASSERT_GE(offsets.size(), 4u);
  EXPECT_EQ(offsets[0], 600s);
  EXPECT_EQ(offsets[1], 700s);
  EXPECT_EQ(offsets[2], 750s);
  for (std::size_t i = 1; i < offsets.size(); ++i) EXPECT_GT(offsets[i], offsets[i - 1]);
  EXPECT_EQ(s.poll(now), Action::expired);
  EXPECT_EQ(now, Instant{} + 800s);
  EXPECT_LE(offsets.size(), 12u) << "retries are bounded by min_retry";
}

TEST(PortMapSchedule, ExpiredWinsOverRenew) {
  RenewalSchedule s;
  s.granted(Instant{}, 10s);
  EXPECT_EQ(s.poll(Instant{} + 11s), Action::expired);
  s.clear();
  EXPECT_EQ(s.poll(Instant{} + 11s), Action::none);
}

TEST(PortMapSchedule, PermanentLeaseIsRefreshedAndNeverExpires) {
  RenewalSchedule s(RenewalSchedule::Config{.min_retry = 5s, .permanent_refresh = 20min});
  s.granted(Instant{}, 0s);
  EXPECT_FALSE(s.expires_at());
  EXPECT_EQ(*s.next_deadline(), Instant{} + 20min);
  EXPECT_EQ(s.poll(Instant{} + 100h), Action::renew);
  s.renewal_failed(Instant{} + 20min);
  EXPECT_EQ(*s.next_deadline(), Instant{} + 25min);
}

TEST(PortMapEpoch, FirstAnswerIsNeverAReset) {
  EpochTracker e;
  EXPECT_FALSE(e.observe(Instant{} + 5s, 1000));
}

TEST(PortMapEpoch, StepsInLockStepAreFine) {
  EpochTracker e;
  Instant now{};
  EXPECT_FALSE(e.observe(now, 1000));
  now += 3600s;
  EXPECT_FALSE(e.observe(now, 4600));
  now += 60s;
  EXPECT_FALSE(e.observe(now, 4661));  // a second of rounding
}

TEST(PortMapEpoch, BackwardsOrStalledEpochIsAReset) {
  EpochTracker e;
  Instant now{};
  e.observe(now, 5000);
  now += 10s;
  EXPECT_TRUE(e.observe(now, 12));  // the gateway rebooted
  now += 100s;
  EXPECT_FALSE(e.observe(now, 112));
  now += 1000s;
  EXPECT_TRUE(e.observe(now, 200)) << "server advanced 88 s while we advanced 1000 s";
}

TEST(PortMapEpoch, ServerRunningFarAheadIsAReset) {
  EpochTracker e;
  e.observe(Instant{}, 100);
  EXPECT_TRUE(e.observe(Instant{} + 10s, 5000));
}

}  // namespace
}  // namespace knit::punch
