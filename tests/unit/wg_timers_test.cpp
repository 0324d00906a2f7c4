// Peer timers on a manual clock: Instant{} advanced by hand, SeededRandom for the jitter.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <optional>
#include <set>

#include "base/random.hpp"
#include "base/time.hpp"
#include "wg/constants.hpp"
#include "wg/timers.hpp"

namespace knit::wg {
namespace {

using Timer = PeerTimers::Timer;
constexpr std::array kAllTimers = {Timer::retransmit_handshake, Timer::send_keepalive,
                                   Timer::new_handshake, Timer::zero_key_material,
                                   Timer::persistent_keepalive};

Instant at(Duration since_start) { return Instant{} + since_start; }

// What the device does around each packet (the kernel's send and receive paths), so the
// tests report events in the same combinations the device will.
void send_initiation(PeerTimers& t, Instant now, bool is_retry) {
  if (!is_retry) t.reset_handshake_attempts();
  t.any_authenticated_packet_traversal(now);
  t.any_authenticated_packet_sent(now);
  t.handshake_initiated(now);
}
void send_data(PeerTimers& t, Instant now) {
  t.data_sent(now);
  t.any_authenticated_packet_sent(now);
  t.any_authenticated_packet_traversal(now);
}
void send_keepalive(PeerTimers& t, Instant now) {
  t.any_authenticated_packet_sent(now);
  t.any_authenticated_packet_traversal(now);
}
void receive_data(PeerTimers& t, Instant now) {
  t.any_authenticated_packet_received(now);
  t.any_authenticated_packet_traversal(now);
  t.data_received(now);
}
void receive_keepalive(PeerTimers& t, Instant now) {
  t.any_authenticated_packet_received(now);
  t.any_authenticated_packet_traversal(now);
}

std::optional<Instant> earliest_armed(const PeerTimers& t) {
  std::optional<Instant> earliest;
  for (Timer timer : kAllTimers) {
    auto d = t.deadline_of(timer);
    if (d && (!earliest || *d < *earliest)) earliest = d;
  }
  return earliest;
}

TEST(PeerTimers, NothingArmedAtFirst) {
  SeededRandom rng(1);
  PeerTimers t(rng);
  EXPECT_EQ(t.next_deadline(), std::nullopt);
  EXPECT_FALSE(t.poll(at(1000s)).any());
  EXPECT_EQ(t.handshake_attempts(), 0);
  EXPECT_EQ(t.persistent_keepalive(), 0s);
}

// Whitepaper §6.4: retry after REKEY_TIMEOUT plus a jitter that differs each time, then give
// up after REKEY_ATTEMPT_TIME (kMaxTimerHandshakes retries).
TEST(PeerTimers, RetransmitsWithJitterThenGivesUp) {
  SeededRandom rng(2);
  PeerTimers t(rng);
  Instant now = at(0s);
  send_initiation(t, now, false);
  std::set<Duration> jitters;
  Instant last_retry = now;
  for (int retry = 1; retry <= kMaxTimerHandshakes; ++retry) {
    const auto deadline = t.next_deadline();
    ASSERT_TRUE(deadline);
    ASSERT_EQ(deadline, t.deadline_of(Timer::retransmit_handshake));
    const Duration jitter = *deadline - now - kRekeyTimeout;
    EXPECT_GE(jitter, Duration::zero()) << "retry " << retry;
    EXPECT_LT(jitter, kRekeyTimeoutJitterMax) << "retry " << retry;
    jitters.insert(jitter);

    EXPECT_FALSE(t.poll(*deadline - 1ns).any()) << "retry " << retry;
    now = *deadline;
    const TimerActions a = t.poll(now);
    EXPECT_TRUE(a.send_initiation) << "retry " << retry;
    EXPECT_TRUE(a.initiation_is_retry) << "retry " << retry;
    EXPECT_FALSE(a.give_up || a.send_keepalive || a.zero_keys) << "retry " << retry;
    EXPECT_EQ(t.handshake_attempts(), retry);
    send_initiation(t, now, true);
    last_retry = now;
  }
  EXPECT_EQ(jitters.size(), static_cast<std::size_t>(kMaxTimerHandshakes))
      << "the jitter must vary";
  // The last retry went out REKEY_ATTEMPT_TIME (plus jitters) after the first initiation.
  EXPECT_GE(last_retry - at(0s), kRekeyAttemptTime);
  EXPECT_LT(last_retry - at(0s), kRekeyAttemptTime + kMaxTimerHandshakes * kRekeyTimeoutJitterMax);

  // A keepalive still pending when we give up is cancelled with the rest.
  t.data_received(now);
  ASSERT_TRUE(t.deadline_of(Timer::send_keepalive));

  now = *t.next_deadline();
  const TimerActions give_up = t.poll(now);
  EXPECT_TRUE(give_up.give_up);
  EXPECT_FALSE(give_up.send_initiation);
  EXPECT_FALSE(give_up.send_keepalive);
  EXPECT_EQ(t.deadline_of(Timer::retransmit_handshake), std::nullopt);
  EXPECT_EQ(t.deadline_of(Timer::send_keepalive), std::nullopt);
  // The residue of the partial exchange is zeroed later.
  EXPECT_EQ(t.next_deadline(), now + kZeroKeysAfter);

  // No further initiations, ever: only the zeroing remains.
  EXPECT_FALSE(t.poll(now + kZeroKeysAfter - 1ns).any());
  const TimerActions zero = t.poll(now + kZeroKeysAfter);
  EXPECT_TRUE(zero.zero_keys);
  EXPECT_FALSE(zero.send_initiation || zero.give_up || zero.send_keepalive);
  EXPECT_EQ(t.next_deadline(), std::nullopt);
}

TEST(PeerTimers, GiveUpKeepsAnEarlierZeroKeyDeadline) {
  SeededRandom rng(3);
  PeerTimers t(rng);
  t.session_derived(at(0s));
  Instant now = at(1s);
  send_initiation(t, now, false);
  for (;;) {
    now = *t.deadline_of(Timer::retransmit_handshake);
    const TimerActions a = t.poll(now);
    if (a.give_up) break;
    ASSERT_TRUE(a.send_initiation);
    send_initiation(t, now, true);
  }
  EXPECT_EQ(t.deadline_of(Timer::zero_key_material), at(0s) + kZeroKeysAfter);
}

TEST(PeerTimers, AFreshInitiationAfterGivingUpRetriesAgain) {
  SeededRandom rng(4);
  PeerTimers t(rng);
  Instant now = at(0s);
  send_initiation(t, now, false);
  int initiations = 1;
  for (;;) {
    now = *t.deadline_of(Timer::retransmit_handshake);
    const TimerActions a = t.poll(now);
    if (a.give_up) break;
    send_initiation(t, now, true);
    ++initiations;
  }
  EXPECT_EQ(initiations, 1 + kMaxTimerHandshakes);
  // Later the user sends a packet again: a fresh initiation, and the retry count restarts.
  now += 30s;
  send_initiation(t, now, false);
  EXPECT_EQ(t.handshake_attempts(), 0);
  now = *t.deadline_of(Timer::retransmit_handshake);
  const TimerActions a = t.poll(now);
  EXPECT_TRUE(a.send_initiation);
  EXPECT_TRUE(a.initiation_is_retry);
  EXPECT_EQ(t.handshake_attempts(), 1);
}

TEST(PeerTimers, HandshakeCompleteStopsRetransmitting) {
  SeededRandom rng(5);
  PeerTimers t(rng);
  send_initiation(t, at(0s), false);
  const TimerActions retry = t.poll(*t.next_deadline());
  ASSERT_TRUE(retry.send_initiation);
  send_initiation(t, at(6s), true);
  EXPECT_EQ(t.handshake_attempts(), 1);
  t.handshake_complete(at(6100ms));
  t.session_derived(at(6100ms));
  EXPECT_EQ(t.handshake_attempts(), 0);
  EXPECT_EQ(t.deadline_of(Timer::retransmit_handshake), std::nullopt);
  EXPECT_EQ(t.next_deadline(), at(6100ms) + kZeroKeysAfter);
  EXPECT_FALSE(t.poll(at(60s)).any());
}

// Whitepaper §6.5, passive keepalive.
TEST(PeerTimers, KeepaliveTenSecondsAfterReceivingWhenNothingWasSent) {
  SeededRandom rng(6);
  PeerTimers t(rng);
  receive_data(t, at(0s));
  EXPECT_EQ(t.next_deadline(), at(0s) + kKeepaliveTimeout);
  EXPECT_FALSE(t.poll(at(kKeepaliveTimeout) - 1ns).any());
  const TimerActions a = t.poll(at(kKeepaliveTimeout));
  EXPECT_TRUE(a.send_keepalive);
  EXPECT_FALSE(a.send_initiation || a.give_up || a.zero_keys);
  send_keepalive(t, at(kKeepaliveTimeout));
  // A keepalive is not data: it arms no "new handshake", and nothing else is pending.
  EXPECT_EQ(t.next_deadline(), std::nullopt);
}

TEST(PeerTimers, NoKeepaliveWhenDataWasSentInBetween) {
  SeededRandom rng(7);
  PeerTimers t(rng);
  receive_data(t, at(0s));
  send_data(t, at(3s));
  EXPECT_EQ(t.deadline_of(Timer::send_keepalive), std::nullopt);
  EXPECT_FALSE(t.poll(at(10s)).send_keepalive);
  // A reply before KEEPALIVE + REKEY_TIMEOUT cancels the "new handshake" the data armed.
  receive_keepalive(t, at(12s));
  EXPECT_EQ(t.next_deadline(), std::nullopt);
  EXPECT_FALSE(t.poll(at(60s)).any());
}

TEST(PeerTimers, ReceivingAgainWhileArmedAsksForAnotherKeepalive) {
  SeededRandom rng(8);
  PeerTimers t(rng);
  receive_data(t, at(0s));
  receive_data(t, at(4s));  // does not push the armed timer back ...
  EXPECT_EQ(t.deadline_of(Timer::send_keepalive), at(10s));
  const TimerActions first = t.poll(at(10s));
  EXPECT_TRUE(first.send_keepalive);
  // ... but asks for one more, KEEPALIVE_TIMEOUT later, as the kernel does.
  EXPECT_EQ(t.deadline_of(Timer::send_keepalive), at(20s));
  EXPECT_TRUE(t.poll(at(20s)).send_keepalive);
  EXPECT_EQ(t.next_deadline(), std::nullopt);

  // Reporting the first keepalive as sent cancels the second, exactly as in the kernel,
  // where the send path's any_authenticated_packet_sent deletes the re-armed timer.
  receive_data(t, at(100s));
  receive_data(t, at(104s));
  ASSERT_TRUE(t.poll(at(110s)).send_keepalive);
  send_keepalive(t, at(110s));
  EXPECT_EQ(t.next_deadline(), std::nullopt);
}

TEST(PeerTimers, NewHandshakeWhenDataSentAndNothingHeardBack) {
  SeededRandom rng(9);
  PeerTimers t(rng);
  send_data(t, at(0s));
  const auto deadline = t.next_deadline();
  ASSERT_TRUE(deadline);
  EXPECT_GE(*deadline, at(kKeepaliveTimeout + kRekeyTimeout));
  EXPECT_LT(*deadline, at(kKeepaliveTimeout + kRekeyTimeout + kRekeyTimeoutJitterMax));
  // More data does not push it back: it counts from the first unanswered packet.
  send_data(t, at(5s));
  send_data(t, at(14s));
  EXPECT_EQ(t.next_deadline(), deadline);
  EXPECT_FALSE(t.poll(*deadline - 1ns).any());
  const TimerActions a = t.poll(*deadline);
  EXPECT_TRUE(a.send_initiation);
  EXPECT_FALSE(a.initiation_is_retry);
  EXPECT_FALSE(a.send_keepalive || a.give_up || a.zero_keys);
}

TEST(PeerTimers, ZeroKeysAfterThreeRejectAfterTimes) {
  SeededRandom rng(10);
  PeerTimers t(rng);
  t.session_derived(at(0s));
  EXPECT_EQ(t.next_deadline(), at(540s));
  EXPECT_FALSE(t.poll(at(540s) - 1ns).any());
  EXPECT_TRUE(t.poll(at(540s)).zero_keys);
  EXPECT_EQ(t.next_deadline(), std::nullopt);
  // A newer session pushes the deadline.
  t.session_derived(at(600s));
  t.session_derived(at(700s));
  EXPECT_FALSE(t.poll(at(1239s)).any());
  EXPECT_TRUE(t.poll(at(1240s)).zero_keys);
}

TEST(PeerTimers, PersistentKeepaliveEveryIntervalOfSilence) {
  SeededRandom rng(11);
  PeerTimers t(rng);
  t.any_authenticated_packet_traversal(at(0s));  // off: arms nothing
  EXPECT_EQ(t.next_deadline(), std::nullopt);

  t.set_persistent_keepalive(25s, at(1s));
  EXPECT_EQ(t.persistent_keepalive(), 25s);
  EXPECT_EQ(t.next_deadline(), at(1s));  // one at once
  Instant now = at(1s);
  for (int i = 0; i < 10; ++i) {
    const TimerActions a = t.poll(now);
    EXPECT_TRUE(a.send_keepalive) << i;
    EXPECT_FALSE(a.send_initiation || a.give_up || a.zero_keys) << i;
    send_keepalive(t, now);
    EXPECT_EQ(t.next_deadline(), now + 25s) << i;
    EXPECT_FALSE(t.poll(now + 25s - 1ns).any()) << i;
    now += 25s;
  }
  // Traffic pushes it back: a keepalive received 20 s into the interval.
  ASSERT_TRUE(t.poll(now).send_keepalive);
  send_keepalive(t, now);
  receive_keepalive(t, now + 20s);
  EXPECT_FALSE(t.poll(now + 25s).any());
  EXPECT_EQ(t.next_deadline(), now + 45s);
  // Without the send being reported, the timer still keeps its period.
  EXPECT_TRUE(t.poll(now + 45s).send_keepalive);
  EXPECT_EQ(t.next_deadline(), now + 70s);
  now += 45s;

  // Setting the same interval again sends nothing extra; a shorter one brings it forward.
  t.set_persistent_keepalive(25s, now);
  EXPECT_EQ(t.next_deadline(), now + 25s);
  t.set_persistent_keepalive(10s, now);
  EXPECT_EQ(t.next_deadline(), now + 10s);
  t.set_persistent_keepalive(60s, now);
  EXPECT_EQ(t.next_deadline(), now + 10s);
  // 0 disables it.
  t.set_persistent_keepalive(0s, now);
  EXPECT_EQ(t.persistent_keepalive(), 0s);
  EXPECT_EQ(t.next_deadline(), std::nullopt);
  t.any_authenticated_packet_traversal(now);
  EXPECT_FALSE(t.poll(now + 1000s).any());
}

TEST(PeerTimers, DueTimersFireInDeadlineOrder) {
  SeededRandom rng(12);
  PeerTimers t(rng);
  // Retransmit and "new handshake" due together: one fresh initiation.
  send_initiation(t, at(0s), false);
  send_data(t, at(0s));
  TimerActions a = t.poll(at(30s));
  EXPECT_TRUE(a.send_initiation);
  EXPECT_FALSE(a.initiation_is_retry);

  // A give-up due before the keepalive cancels it; due after, it does not.
  PeerTimers late(rng);
  for (bool give_up_first : {true, false}) {
    late.stop();
    Instant now = at(0s);
    send_initiation(late, now, false);
    for (int i = 0; i < kMaxTimerHandshakes; ++i) {
      now = *late.deadline_of(Timer::retransmit_handshake);
      ASSERT_TRUE(late.poll(now).send_initiation);
      send_initiation(late, now, true);
    }
    const Instant give_up_at = *late.deadline_of(Timer::retransmit_handshake);
    late.data_received(give_up_first ? give_up_at - kKeepaliveTimeout + 1ms
                                     : give_up_at - kKeepaliveTimeout - 1ms);
    a = late.poll(give_up_at + 1s);
    EXPECT_TRUE(a.give_up) << give_up_first;
    EXPECT_EQ(a.send_keepalive, !give_up_first) << give_up_first;
  }
}

TEST(PeerTimers, StopDisarmsEverything) {
  SeededRandom rng(13);
  PeerTimers t(rng);
  t.set_persistent_keepalive(25s, at(0s));
  send_initiation(t, at(0s), false);
  const Instant retry_at = *t.deadline_of(Timer::retransmit_handshake);
  ASSERT_TRUE(t.poll(retry_at).send_initiation);
  send_initiation(t, retry_at, true);
  t.session_derived(at(1s));
  receive_data(t, at(2s));
  receive_data(t, at(3s));  // and another keepalive needed
  t.data_sent(at(4s));      // raw event: the whole send path would cancel the keepalive
  for (Timer timer : kAllTimers) ASSERT_TRUE(t.deadline_of(timer)) << static_cast<int>(timer);
  EXPECT_EQ(t.handshake_attempts(), 1);

  t.stop();
  EXPECT_EQ(t.next_deadline(), std::nullopt);
  for (Timer timer : kAllTimers) EXPECT_EQ(t.deadline_of(timer), std::nullopt);
  EXPECT_EQ(t.handshake_attempts(), 0);
  EXPECT_FALSE(t.poll(at(10000s)).any());
  // The configuration survives: the interval is still set for when the peer comes back.
  EXPECT_EQ(t.persistent_keepalive(), 25s);
  // "Another keepalive needed" was forgotten too.
  t.data_received(at(20000s));
  EXPECT_TRUE(t.poll(at(20010s)).send_keepalive);
  EXPECT_EQ(t.deadline_of(Timer::send_keepalive), std::nullopt);
}

// Random events on an advancing clock: next_deadline() is always the earliest armed timer,
// nullopt when none is, and after poll(now) nothing is left due at now.
TEST(PeerTimers, NextDeadlineIsAlwaysTheEarliestArmedTimer) {
  SeededRandom rng(14);
  SeededRandom events(15);
  PeerTimers t(rng);
  Instant now = at(0s);
  int with_deadline = 0;
  int without = 0;
  for (int step = 0; step < 200000; ++step) {
    now += Duration{std::chrono::milliseconds(events.uniform(3000))};
    switch (events.uniform(14)) {
      case 0: send_initiation(t, now, events.uniform(2) == 0); break;
      case 1: t.handshake_complete(now); break;
      case 2: t.session_derived(now); break;
      case 3: send_data(t, now); break;
      case 4: receive_data(t, now); break;
      case 5: send_keepalive(t, now); break;
      case 6: receive_keepalive(t, now); break;
      case 7: t.set_persistent_keepalive(std::chrono::seconds(events.uniform(3) * 15), now); break;
      case 8:
        if (events.uniform(50) == 0) t.stop();
        break;
      default: {
        const TimerActions a = t.poll(now);
        // The device answers the way it would.
        if (a.send_initiation) send_initiation(t, now, a.initiation_is_retry);
        if (a.send_keepalive) send_keepalive(t, now);
        const auto next = t.next_deadline();
        if (next) {
          ASSERT_GT(*next, now) << "step " << step;
        }
        break;
      }
    }
    ASSERT_EQ(t.next_deadline(), earliest_armed(t)) << "step " << step;
    ++(t.next_deadline() ? with_deadline : without);
    ASSERT_GE(t.handshake_attempts(), 0);
    ASSERT_LE(t.handshake_attempts(), kMaxTimerHandshakes);
  }
  EXPECT_GT(with_deadline, 1000);
  EXPECT_GT(without, 100);
}

}  // namespace
}  // namespace knit::wg
