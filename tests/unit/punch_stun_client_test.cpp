// STUN binding transactions on a manual clock: the RFC 8489 retransmission schedule, a
// configurable short one, transaction-id matching, RTT, and drops of strangers' answers.
#include <gtest/gtest.h>

#include "base/random.hpp"
#include "punch/stun/client.hpp"
#include "punch/stun/responder.hpp"

namespace knit::punch {
namespace {

using std::chrono::milliseconds;

Endpoint ep(const char* text) { return Endpoint::parse(text).value(); }

// Send times (ms since start) until the transaction times out; the time of the timeout last.
std::vector<long> schedule(const StunClientOptions& options) {
  SeededRandom rng(1);
  StunClient c(rng, options);
  const Instant t0{};
  c.begin(t0, ep("192.0.2.1:3478"));
  std::vector<long> sends;
  Instant now = t0;
  for (int i = 0; i < 100; ++i) {
    for (const auto& d : c.take_outgoing()) {
      (void)d;
      sends.push_back(std::chrono::duration_cast<milliseconds>(now - t0).count());
    }
    auto results = c.take_results();
    if (!results.empty()) {
      EXPECT_EQ(results[0].outcome, StunOutcome::timeout);
      EXPECT_EQ(results[0].sends, options.retransmit.max_sends);
      sends.push_back(std::chrono::duration_cast<milliseconds>(now - t0).count());
      return sends;
    }
    auto next = c.next_deadline();
    if (!next) break;
    EXPECT_GT(*next, now);
    now = *next;
    c.on_timers(now);
  }
  ADD_FAILURE() << "no timeout";
  return sends;
}

TEST(StunClient, Rfc8489RetransmissionSchedule) {
  // RFC 8489 §6.2.1: 0, 500, 1500, 3500, 7500, 15500, 31500; give up at 39500.
  const StunClientOptions rfc;
  EXPECT_EQ(schedule(rfc), (std::vector<long>{0, 500, 1500, 3500, 7500, 15500, 31500, 39500}));
  EXPECT_EQ(rfc.retransmit.total(), milliseconds(39500));
}

TEST(StunClient, ShortSchedule) {
  const StunClientOptions fast{.retransmit = {.rto = milliseconds(100), .max_sends = 3, .last_wait_rtos = 2}};
  EXPECT_EQ(schedule(fast), (std::vector<long>{0, 100, 300, 500}));
  EXPECT_EQ(fast.retransmit.total(), milliseconds(500));
}

TEST(StunClient, MatchesAnswerAndMeasuresRtt) {
  SeededRandom rng(2);
  StunClient c(rng);
  StunResponder server({.primary = ep("198.51.100.1:3478"), .alternate_ip = IpAddress::parse("198.51.100.2"),
                        .alternate_port = 3479});
  const Instant t0{};
  const Endpoint me = ep("203.0.113.9:51820");
  auto id = c.begin(t0, ep("198.51.100.1:3478"));
  ASSERT_TRUE(id);
  EXPECT_EQ(c.pending(), 1u);
  auto out = c.take_outgoing();
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].to, ep("198.51.100.1:3478"));
  // First copy lost; the retransmission is answered 40 ms after it went out.
  c.on_timers(t0 + milliseconds(500));
  out = c.take_outgoing();
  ASSERT_EQ(out.size(), 1u);
  auto reply = server.handle(me, out[0].to, out[0].bytes);
  ASSERT_TRUE(reply);
  // A stranger's answer (another transaction id) first: consumed, counted, not matched.
  auto stranger = server.handle(me, out[0].to, build_binding_request({0xEE}));
  EXPECT_TRUE(c.handle(t0 + milliseconds(530), stranger->from, stranger->datagram));
  EXPECT_EQ(c.counters().drop_unknown_id, 1u);
  EXPECT_TRUE(c.take_results().empty());
  EXPECT_TRUE(c.handle(t0 + milliseconds(540), reply->from, reply->datagram));
  auto results = c.take_results();
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].outcome, StunOutcome::success);
  EXPECT_EQ(results[0].id, *id);
  EXPECT_EQ(results[0].rtt, milliseconds(40));
  EXPECT_EQ(results[0].sends, 2u);
  EXPECT_EQ(results[0].response.xor_mapped, me);
  EXPECT_EQ(results[0].response.other_address, ep("198.51.100.2:3479"));
  EXPECT_EQ(c.pending(), 0u);
  EXPECT_FALSE(c.next_deadline());
  // The same answer again (a duplicate) is a stranger now.
  EXPECT_TRUE(c.handle(t0 + milliseconds(550), reply->from, reply->datagram));
  EXPECT_EQ(c.counters().drop_unknown_id, 2u);
  EXPECT_EQ(c.counters().retransmits, 1u);
}

TEST(StunClient, ErrorResponseAndDrops) {
  SeededRandom rng(3);
  StunClient c(rng);
  StunResponder plain({.primary = ep("198.51.100.1:3478")});
  const Instant t0{};
  c.begin(t0, ep("198.51.100.1:3478"), stun::kChangeIp | stun::kChangePort);
  auto out = c.take_outgoing();
  auto reply = plain.handle(ep("203.0.113.9:1"), out[0].to, out[0].bytes);
  ASSERT_TRUE(reply);
  // Corrupted copies first: a bad fingerprint and garbage are consumed and counted.
  Bytes bad = reply->datagram;
  bad[bad.size() - 1] ^= 1;
  EXPECT_TRUE(c.handle(t0, reply->from, bad));
  Bytes wg(148, 0);
  wg[0] = 1;
  EXPECT_FALSE(c.handle(t0, reply->from, wg));  // not STUN: left to the caller
  EXPECT_TRUE(c.handle(t0, reply->from, build_binding_request({})));  // a request: not for us
  EXPECT_TRUE(c.handle(t0 + milliseconds(5), reply->from, reply->datagram));
  auto results = c.take_results();
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].outcome, StunOutcome::error_response);
  ASSERT_TRUE(results[0].response.error_code);
  EXPECT_EQ(results[0].response.error_code->code, 420);
  EXPECT_EQ(c.counters().drop_bad_fingerprint, 1u);
  EXPECT_EQ(c.counters().drop_not_response, 1u);
  EXPECT_EQ(c.counters().error_responses, 1u);
}

TEST(StunClient, PendingIsBounded) {
  SeededRandom rng(4);
  StunClient c(rng, {.max_pending = 3});
  for (int i = 0; i < 5; ++i) c.begin(Instant{}, ep("198.51.100.1:3478"));
  EXPECT_EQ(c.pending(), 3u);
  EXPECT_EQ(c.counters().refused, 2u);
  c.cancel_all();
  EXPECT_EQ(c.pending(), 0u);
}

}  // namespace
}  // namespace knit::punch
