// The client's control session (ClientSession, what knitd and knit-relay speak over
// net/coordinator_connection) without sockets, against the coordinator's end of the channel
// (tests/support/coordinator_end.hpp).
#include <gtest/gtest.h>

#include "base/random.hpp"
#include "control/channel.hpp"
#include "control/client_session.hpp"
#include "tests/support/coordinator_end.hpp"
#include "wg/crypto.hpp"

namespace knit::control {
namespace {

using knit::testing::accepted;
using knit::testing::peer;
using Coordinator = knit::testing::CoordinatorEnd;

// What knitd makes of a session event: an answer is a registration or a refusal.
enum class Kind { registered, refused, peers_changed, relay_map, dns_config, policy_rules, self_update, pong, coordinator_error, failed };

Kind kind_of(const ClientEvent& event) {
  switch (event.kind) {
    case ClientEvent::Kind::answered: {
      const auto* response = std::get_if<RegisterResponse>(&event.answer);
      return response != nullptr && response->ok ? Kind::registered : Kind::refused;
    }
    case ClientEvent::Kind::peers_changed: return Kind::peers_changed;
    case ClientEvent::Kind::relay_map: return Kind::relay_map;
    case ClientEvent::Kind::dns_config: return Kind::dns_config;
    case ClientEvent::Kind::policy_rules: return Kind::policy_rules;
    case ClientEvent::Kind::self_update: return Kind::self_update;
    case ClientEvent::Kind::pong: return Kind::pong;
    case ClientEvent::Kind::coordinator_error: return Kind::coordinator_error;
    case ClientEvent::Kind::failed: return Kind::failed;
  }
  return Kind::failed;
}

RegisterResponse response_of(const ClientEvent& event) {
  const auto* response = std::get_if<RegisterResponse>(&event.answer);
  return response != nullptr ? *response : RegisterResponse{};
}

class SessionTest : public ::testing::Test {
 protected:
  SessionTest()
      : node_key_(wg::crypto::generate_private_key(rng_)),
        coordinator_key_(wg::crypto::generate_private_key(rng_)),
        coordinator_(rng_, coordinator_key_),
        session_(node_key_, wg::crypto::public_key_of(coordinator_key_)) {}

  RegisterRequest request() {
    RegisterRequest r;
    r.token = "knit1-token";
    r.disco_key.fill(9);
    r.hostname = "host-a";
    r.os = "linux";
    r.endpoints = {Endpoint::parse("192.0.2.1:41641").value()};
    r.version = "0.1.0";
    return r;
  }
  std::vector<ClientEvent> feed(const Bytes& frame) {
    std::vector<ClientEvent> events;
    session_.feed(frame, events);
    return events;
  }
  // Starts the session and feeds it the coordinator's answer to the hello.
  std::vector<ClientEvent> answered_with(const Message& response) {
    auto frame = session_.start(rng_, request());
    coordinator_.read_request(*frame);
    return feed(coordinator_.answer(response));
  }
  void register_ok() {
    auto frame = session_.start(rng_, request());
    ASSERT_TRUE(frame);
    EXPECT_EQ(coordinator_.read_request(*frame), request());
    auto events = feed(coordinator_.answer(accepted()));
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(kind_of(events[0]), Kind::registered) << events[0].failure;
    EXPECT_EQ(response_of(events[0]), accepted());
  }

  SeededRandom rng_{11};
  wg::PrivateKey node_key_;
  wg::PrivateKey coordinator_key_;
  Coordinator coordinator_;
  ClientSession session_;
};

TEST_F(SessionTest, RegistersThenFollowsTheMapAndDeltas) {
  register_ok();
  EXPECT_TRUE(session_.answered());
  RelayMap relays;
  auto events = feed(coordinator_.send(relays));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(kind_of(events[0]), Kind::relay_map);
  DnsConfig dns{"knit.internal", {{"corp.example", {Endpoint::parse("10.1.0.53:53").value()}}}};
  events = feed(coordinator_.send(dns));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(kind_of(events[0]), Kind::dns_config);
  EXPECT_EQ(events[0].dns, dns);
  const PolicyRules policy{true, std::string("KP\x01\x01\x00", 5)};
  events = feed(coordinator_.send(policy));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(kind_of(events[0]), Kind::policy_rules);
  EXPECT_EQ(events[0].policy, policy);
  const NodeAssignment renamed{"desk", IpAddress::parse("100.64.0.7").value(), IpAddress::parse("fd7a:115c:a1e0::7").value(), peer(7).node_key};
  events = feed(coordinator_.send(SelfUpdate{renamed}));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(kind_of(events[0]), Kind::self_update);
  EXPECT_EQ(events[0].self, renamed);

  // Several frames in one read.
  Bytes stream = coordinator_.send(PeerMapPage{5, 0, 1, {peer(3), peer(2)}});
  PeerDelta delta;
  delta.version = 6;
  delta.added = {peer(4)};
  delta.removed = {peer(2).node_key};
  const Bytes second = coordinator_.send(delta);
  stream.insert(stream.end(), second.begin(), second.end());
  events = feed(stream);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(kind_of(events[0]), Kind::peers_changed);
  EXPECT_EQ(kind_of(events[1]), Kind::peers_changed);
  EXPECT_EQ(session_.peer_map().version, 6u);
  ASSERT_EQ(session_.peer_map().peers.size(), 2u);
  EXPECT_EQ(session_.peer_map().peers[0].name, "node-3");
  EXPECT_EQ(session_.peer_map().peers[1].name, "node-4");

  // Our messages reach the coordinator.
  auto ping = session_.seal(Ping{7});
  ASSERT_TRUE(ping);
  EXPECT_EQ(coordinator_.receive(*ping), Message(Ping{7}));
  events = feed(coordinator_.send(Pong{7}));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(kind_of(events[0]), Kind::pong);
}

TEST_F(SessionTest, ADeltaThatDoesNotFitEndsTheSession) {
  register_ok();
  feed(coordinator_.send(PeerMapPage{5, 0, 1, {peer(2)}}));
  PeerDelta gap;
  gap.version = 7;  // 6 is missing
  gap.added = {peer(4)};
  auto events = feed(coordinator_.send(gap));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(kind_of(events[0]), Kind::failed);
  EXPECT_NE(events[0].failure.find("full map"), std::string::npos);
  EXPECT_TRUE(session_.over());
  EXPECT_EQ(session_.peer_map().version, 5u);  // untouched
}

TEST_F(SessionTest, AMapInPagesCountsOnceWholeAndOnlyInOrder) {
  register_ok();
  feed(coordinator_.send(PeerMapPage{1, 0, 1, {peer(9)}}));
  // A new map in three pages: the old one stays until the last page is in.
  auto events = feed(coordinator_.send(PeerMapPage{8, 0, 3, {peer(2)}}));
  EXPECT_TRUE(events.empty());
  events = feed(coordinator_.send(PeerMapPage{8, 1, 3, {peer(3)}}));
  EXPECT_TRUE(events.empty());
  EXPECT_EQ(session_.peer_map().version, 1u);
  events = feed(coordinator_.send(PeerMapPage{8, 2, 3, {peer(4)}}));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(kind_of(events[0]), Kind::peers_changed);
  EXPECT_EQ(session_.peer_map().version, 8u);
  EXPECT_EQ(session_.peer_map().peers.size(), 3u);
  // A delta while a map is half in, or a page out of order, ends the session.
  feed(coordinator_.send(PeerMapPage{9, 0, 2, {peer(2)}}));
  PeerDelta delta;
  delta.version = 10;
  events = feed(coordinator_.send(delta));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(kind_of(events[0]), Kind::failed);
  EXPECT_EQ(session_.peer_map().version, 8u);
}

TEST_F(SessionTest, PagesOutOfOrderEndTheSession) {
  register_ok();
  auto events = feed(coordinator_.send(PeerMapPage{8, 1, 3, {peer(3)}}));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(kind_of(events[0]), Kind::failed);
  EXPECT_FALSE(session_.has_peer_map());
}

TEST_F(SessionTest, ADeltaBeforeAnyMapEndsTheSession) {
  register_ok();
  PeerDelta delta;
  delta.version = 1;
  auto events = feed(coordinator_.send(delta));
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(kind_of(events[0]), Kind::failed);
}

TEST_F(SessionTest, ARefusalIsReported) {
  RegisterResponse refused;
  refused.ok = false;
  refused.error_code = ErrorCode::token_expired;
  refused.error_message = "expired 2 days ago";
  auto events = answered_with(refused);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(kind_of(events[0]), Kind::refused);
  EXPECT_EQ(response_of(events[0]).error_code, ErrorCode::token_expired);
  EXPECT_TRUE(session_.over());
  EXPECT_FALSE(session_.seal(Ping{1}));
}

TEST_F(SessionTest, HostileMessagesEndTheSession) {
  for (const std::string& text : {std::string("not json"), std::string(R"({"v":1,"type":"register","disco_key":"x"})"),
                                 encode(Ping{1})}) {
    SeededRandom rng(3);
    Coordinator coordinator(rng, coordinator_key_);
    ClientSession session(node_key_, wg::crypto::public_key_of(coordinator_key_));
    coordinator.read_request(*session.start(rng, request()));
    std::vector<ClientEvent> events;
    session.feed(coordinator.answer(accepted()), events);
    session.feed(coordinator.send_text(text), events);
    ASSERT_EQ(events.size(), 2u) << text;
    EXPECT_EQ(kind_of(events[1]), Kind::failed) << text;
  }
}

TEST_F(SessionTest, AWrongCoordinatorKeySaysSo) {
  SeededRandom rng(5);
  wg::PrivateKey impostor_key = wg::crypto::generate_private_key(rng);
  auto frame = session_.start(rng_, request());
  // The impostor cannot even read message 1: it was made for another key.
  ByteSpan input(*frame);
  Channel channel = Channel::responder(impostor_key);
  EXPECT_EQ(channel.feed(input).kind, ChannelEvent::Kind::error);
  // And an answer made with another key fails the agent's handshake.
  Coordinator other(rng, impostor_key);
  ClientSession honest(node_key_, wg::crypto::public_key_of(impostor_key));
  other.read_request(*honest.start(rng, request()));
  auto events = feed(other.answer(accepted()));  // session_ expected coordinator_key_
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(kind_of(events[0]), Kind::failed);
  EXPECT_NE(events[0].failure.find("join token"), std::string::npos) << events[0].failure;
}

TEST_F(SessionTest, AnAnswerThatIsNotARegisterResponseFails) {
  auto events = answered_with(RegisterResponse{});  // ok=false, code internal
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(kind_of(events[0]), Kind::refused);
}

TEST_F(SessionTest, AnAnswerOfTheOtherKindFails) {
  // A node's hello answered as a relay's...
  RelayRegisterResponse relay_answer;
  relay_answer.ok = true;
  relay_answer.name = "fra";
  auto events = answered_with(relay_answer);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(kind_of(events[0]), Kind::failed);
  EXPECT_TRUE(session_.over());
  // ...and a relay's hello answered as a node's.
  SeededRandom rng(6);
  Coordinator coordinator(rng, coordinator_key_);
  ClientSession relay(node_key_, wg::crypto::public_key_of(coordinator_key_));
  RelayRegister hello;
  hello.name = "fra";
  hello.addresses = {*HostPort::parse("192.0.2.7:443")};
  auto hello_frame = relay.start(rng, hello);
  ASSERT_TRUE(hello_frame);
  ByteSpan input(*hello_frame);
  EXPECT_EQ(coordinator.channel().feed(input).kind, ChannelEvent::Kind::request);
  events.clear();
  relay.feed(coordinator.answer(accepted()), events);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(kind_of(events[0]), Kind::failed);
}

}  // namespace
}  // namespace knit::control
