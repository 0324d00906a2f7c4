// The coordinator session without sockets, against a responder Channel playing the coordinator;
// and the reconnect backoff schedule on a manual clock.
#include <gtest/gtest.h>

#include <set>

#include "agent/coordinator_client.hpp"
#include "agent/coordinator_session.hpp"
#include "base/random.hpp"
#include "control/channel.hpp"
#include "wg/crypto.hpp"

namespace knit::agent {
namespace {

using Kind = SessionEvent::Kind;

ByteSpan bytes_of(const std::string& s) { return ByteSpan(reinterpret_cast<const std::uint8_t*>(s.data()), s.size()); }

control::PeerInfo peer(std::uint8_t n) {
  control::PeerInfo info;
  info.name = "node-" + std::to_string(n);
  info.node_key.fill(n);
  info.disco_key.fill(static_cast<std::uint8_t>(n + 100));
  info.ipv4 = *IpAddress::parse("100.64.0." + std::to_string(n));
  info.ipv6 = *IpAddress::parse("fd7a::" + std::to_string(n));
  return info;
}

// The coordinator's end of one session.
class Coordinator {
 public:
  explicit Coordinator(Random& rng, const wg::PrivateKey& key) : rng_(rng), channel_(control::Channel::responder(key)) {}

  // Reads message 1; returns the register request.
  control::RegisterRequest read_request(const Bytes& frame) {
    ByteSpan input(frame);
    auto event = channel_.feed(input);
    EXPECT_EQ(event.kind, control::ChannelEvent::Kind::request);
    auto parsed = control::parse_message(std::string(event.data.begin(), event.data.end()));
    EXPECT_TRUE(std::holds_alternative<control::RegisterRequest>(parsed));
    return std::holds_alternative<control::RegisterRequest>(parsed) ? std::get<control::RegisterRequest>(parsed)
                                                                    : control::RegisterRequest{};
  }
  Bytes answer(const control::RegisterResponse& response) {
    Bytes frame;
    EXPECT_EQ(channel_.answer(rng_, bytes_of(control::encode(response)), frame), control::ChannelError::ok);
    return frame;
  }
  Bytes send(const control::Message& message) {
    Bytes frame;
    EXPECT_EQ(channel_.seal(bytes_of(control::encode(message)), frame), control::ChannelError::ok);
    return frame;
  }
  Bytes send_text(const std::string& text) {
    Bytes frame;
    EXPECT_EQ(channel_.seal(bytes_of(text), frame), control::ChannelError::ok);
    return frame;
  }
  std::optional<control::Message> receive(const Bytes& frame) {
    ByteSpan input(frame);
    auto event = channel_.feed(input);
    if (event.kind != control::ChannelEvent::Kind::message) return std::nullopt;
    return control::to_message(control::parse_message(std::string(event.data.begin(), event.data.end())));
  }

 private:
  Random& rng_;
  control::Channel channel_;
};

class SessionTest : public ::testing::Test {
 protected:
  SessionTest()
      : node_key_(wg::crypto::generate_private_key(rng_)),
        coordinator_key_(wg::crypto::generate_private_key(rng_)),
        coordinator_(rng_, coordinator_key_),
        session_(node_key_, wg::crypto::public_key_of(coordinator_key_)) {}

  control::RegisterRequest request() {
    control::RegisterRequest r;
    r.token = "knit1-token";
    r.disco_key.fill(9);
    r.hostname = "host-a";
    r.os = "linux";
    r.endpoints = {*Endpoint::parse("192.0.2.1:41641")};
    r.version = "0.1.0";
    return r;
  }
  static control::RegisterResponse accepted() {
    control::RegisterResponse r;
    r.ok = true;
    r.node = {"host-a", *IpAddress::parse("100.64.0.1"), *IpAddress::parse("fd7a::1"), {}};
    r.node.node_key.fill(1);  // all-zero keys are refused on the wire
    r.mesh = {*IpPrefix::parse("100.64.0.0/10"), *IpPrefix::parse("fd7a::/48")};
    return r;
  }
  std::vector<SessionEvent> feed(const Bytes& frame) {
    std::vector<SessionEvent> events;
    session_.feed(frame, events);
    return events;
  }
  void register_ok() {
    auto frame = session_.start(rng_, request());
    ASSERT_TRUE(frame);
    EXPECT_EQ(coordinator_.read_request(*frame), request());
    auto events = feed(coordinator_.answer(accepted()));
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].kind, Kind::registered) << events[0].failure;
    EXPECT_EQ(events[0].response, accepted());
  }

  SeededRandom rng_{11};
  wg::PrivateKey node_key_;
  wg::PrivateKey coordinator_key_;
  Coordinator coordinator_;
  CoordinatorSession session_;
};

TEST_F(SessionTest, RegistersThenFollowsTheMapAndDeltas) {
  register_ok();
  EXPECT_TRUE(session_.registered());
  control::RelayMap relays;
  auto events = feed(coordinator_.send(relays));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, Kind::relay_map);

  // Several frames in one read.
  Bytes stream = coordinator_.send(control::PeerMapPage{5, 0, 1, {peer(3), peer(2)}});
  control::PeerDelta delta;
  delta.version = 6;
  delta.added = {peer(4)};
  delta.removed = {peer(2).node_key};
  const Bytes second = coordinator_.send(delta);
  stream.insert(stream.end(), second.begin(), second.end());
  events = feed(stream);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind, Kind::peers_changed);
  EXPECT_EQ(events[1].kind, Kind::peers_changed);
  EXPECT_EQ(session_.peer_map().version, 6u);
  ASSERT_EQ(session_.peer_map().peers.size(), 2u);
  EXPECT_EQ(session_.peer_map().peers[0].name, "node-3");
  EXPECT_EQ(session_.peer_map().peers[1].name, "node-4");

  // Our messages reach the coordinator.
  auto ping = session_.seal(control::Ping{7});
  ASSERT_TRUE(ping);
  EXPECT_EQ(coordinator_.receive(*ping), control::Message(control::Ping{7}));
  events = feed(coordinator_.send(control::Pong{7}));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, Kind::pong);
}

TEST_F(SessionTest, ADeltaThatDoesNotFitEndsTheSession) {
  register_ok();
  feed(coordinator_.send(control::PeerMapPage{5, 0, 1, {peer(2)}}));
  control::PeerDelta gap;
  gap.version = 7;  // 6 is missing
  gap.added = {peer(4)};
  auto events = feed(coordinator_.send(gap));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, Kind::failed);
  EXPECT_NE(events[0].failure.find("full map"), std::string::npos);
  EXPECT_TRUE(session_.over());
  EXPECT_EQ(session_.peer_map().version, 5u);  // untouched
}

TEST_F(SessionTest, AMapInPagesCountsOnceWholeAndOnlyInOrder) {
  register_ok();
  feed(coordinator_.send(control::PeerMapPage{1, 0, 1, {peer(9)}}));
  // A new map in three pages: the old one stays until the last page is in.
  auto events = feed(coordinator_.send(control::PeerMapPage{8, 0, 3, {peer(2)}}));
  EXPECT_TRUE(events.empty());
  events = feed(coordinator_.send(control::PeerMapPage{8, 1, 3, {peer(3)}}));
  EXPECT_TRUE(events.empty());
  EXPECT_EQ(session_.peer_map().version, 1u);
  events = feed(coordinator_.send(control::PeerMapPage{8, 2, 3, {peer(4)}}));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, Kind::peers_changed);
  EXPECT_EQ(session_.peer_map().version, 8u);
  EXPECT_EQ(session_.peer_map().peers.size(), 3u);
  // A delta while a map is half in, or a page out of order, ends the session.
  feed(coordinator_.send(control::PeerMapPage{9, 0, 2, {peer(2)}}));
  control::PeerDelta delta;
  delta.version = 10;
  events = feed(coordinator_.send(delta));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, Kind::failed);
  EXPECT_EQ(session_.peer_map().version, 8u);
}

TEST_F(SessionTest, PagesOutOfOrderEndTheSession) {
  register_ok();
  auto events = feed(coordinator_.send(control::PeerMapPage{8, 1, 3, {peer(3)}}));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, Kind::failed);
  EXPECT_FALSE(session_.has_peer_map());
}

TEST_F(SessionTest, ADeltaBeforeAnyMapEndsTheSession) {
  register_ok();
  control::PeerDelta delta;
  delta.version = 1;
  auto events = feed(coordinator_.send(delta));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, Kind::failed);
}

TEST_F(SessionTest, ARefusalIsReported) {
  auto frame = session_.start(rng_, request());
  coordinator_.read_request(*frame);
  control::RegisterResponse refused;
  refused.ok = false;
  refused.error_code = control::ErrorCode::token_expired;
  refused.error_message = "expired 2 days ago";
  auto events = feed(coordinator_.answer(refused));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, Kind::refused);
  EXPECT_EQ(events[0].response.error_code, control::ErrorCode::token_expired);
  EXPECT_TRUE(session_.over());
  EXPECT_FALSE(session_.seal(control::Ping{1}));
}

TEST_F(SessionTest, HostileMessagesEndTheSession) {
  for (const std::string& text : {std::string("not json"), std::string(R"({"v":1,"type":"register","disco_key":"x"})"),
                                 control::encode(control::Ping{1})}) {
    SeededRandom rng(3);
    Coordinator coordinator(rng, coordinator_key_);
    CoordinatorSession session(node_key_, wg::crypto::public_key_of(coordinator_key_));
    coordinator.read_request(*session.start(rng, request()));
    std::vector<SessionEvent> events;
    session.feed(coordinator.answer(accepted()), events);
    session.feed(coordinator.send_text(text), events);
    ASSERT_EQ(events.size(), 2u) << text;
    EXPECT_EQ(events[1].kind, Kind::failed) << text;
  }
}

TEST_F(SessionTest, AWrongCoordinatorKeySaysSo) {
  SeededRandom rng(5);
  wg::PrivateKey impostor_key = wg::crypto::generate_private_key(rng);
  auto frame = session_.start(rng_, request());
  // The impostor cannot even read message 1: it was made for another key.
  ByteSpan input(*frame);
  control::Channel channel = control::Channel::responder(impostor_key);
  EXPECT_EQ(channel.feed(input).kind, control::ChannelEvent::Kind::error);
  // And an answer made with another key fails the agent's handshake.
  Coordinator other(rng, impostor_key);
  CoordinatorSession honest(node_key_, wg::crypto::public_key_of(impostor_key));
  other.read_request(*honest.start(rng, request()));
  auto events = feed(other.answer(accepted()));  // session_ expected coordinator_key_
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, Kind::failed);
  EXPECT_NE(events[0].failure.find("join token"), std::string::npos) << events[0].failure;
}

TEST_F(SessionTest, AnAnswerThatIsNotARegisterResponseFails) {
  auto frame = session_.start(rng_, request());
  coordinator_.read_request(*frame);
  auto events = feed(coordinator_.answer(control::RegisterResponse{}));  // ok=false, code internal
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, Kind::refused);
}

// ---------------------------------------------------------------- backoff

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
}  // namespace knit::agent
