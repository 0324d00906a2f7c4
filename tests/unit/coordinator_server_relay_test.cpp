// The coordinator's side of knit-relay: a fake relay (the fixture's client speaking
// relay_register) registers with a relay token, is refused with anything else, receives the
// relay map, the membership and its deltas like an agent, appears in agents' relay maps, and
// never shares a key with a node.
#include "tests/support/coordinator_server_fixture.hpp"

namespace knit::coordinator {
namespace {

class RelayServerTest : public ServerTest {
 protected:
  std::string relay_token(bool reusable = false) {
    TokenOptions options;
    options.relay = true;
    options.reusable = reusable;
    return token(options);
  }

  static control::RelayRegister relay_hello(std::optional<std::string> token,
                                            std::string name = "fra") {
    control::RelayRegister hello;
    hello.token = std::move(token);
    hello.name = std::move(name);
    hello.addresses = {*control::HostPort::parse("relay.example:443")};
    hello.stun_port = 3478;
    hello.version = "test";
    return hello;
  }

  // Registers `relay` and returns the answer; nullopt when there was none of the relay kind.
  static std::optional<control::RelayRegisterResponse> register_relay(
      Agent& relay, const control::RelayRegister& hello) {
    auto answer = relay.hello(hello);
    auto* response = answer ? std::get_if<control::RelayRegisterResponse>(&*answer) : nullptr;
    if (response == nullptr) return std::nullopt;
    return *response;
  }

  // A registered relay that has its relay map and first full peer map.
  std::unique_ptr<Agent> joined_relay(const std::string& join_token, std::string name = "fra") {
    auto relay = agent();
    auto response = register_relay(*relay, relay_hello(join_token, std::move(name)));
    EXPECT_TRUE(response && response->ok) << (response ? response->error_message : "no answer");
    EXPECT_TRUE(relay->wait_until([&] { return relay->have_map() && !relay->relays().relays.empty(); }));
    return relay;
  }

  std::optional<Relay> stored_relay(const std::string& name) {
    auto relays = admin_->list_relays();
    if (!relays) return std::nullopt;
    for (const Relay& r : *relays)
      if (r.name == name) return r;
    return std::nullopt;
  }

  static bool has_relay(const Agent& a, const std::string& name) {
    for (const auto& r : a.relays().relays)
      if (r.name == name) return true;
    return false;
  }
};

TEST_F(RelayServerTest, RegistersWithARelayTokenAndGetsTheMembership) {
  start();
  auto a = joined(reusable_token(), "alpha");
  auto relay = joined_relay(relay_token());
  ASSERT_EQ(relay->relays().relays.size(), 1u);
  const control::RelayInfo& info = relay->relays().relays[0];
  EXPECT_EQ(info.name, "fra");
  EXPECT_EQ(info.node_key, relay->public_key());
  EXPECT_EQ(info.stun_port, 3478);
  EXPECT_EQ(info.addresses, std::vector<control::HostPort>{*control::HostPort::parse("relay.example:443")});
  ASSERT_TRUE(relay->wait_until([&] { return relay->peer(a->public_key()) != nullptr; }));
  EXPECT_FALSE(relay->map_broken());

  auto stored = stored_relay("fra");
  ASSERT_TRUE(stored);
  EXPECT_TRUE(stored->online);
  EXPECT_EQ(on_loop([this] { return server_->relay_online_count(); }), 1u);

  // Pings are answered; the relay's end takes it offline.
  ASSERT_TRUE(relay->send(control::Ping{9}));
  ASSERT_TRUE(relay->wait_for<control::Pong>());
  relay->disconnect();
  ASSERT_TRUE(eventually([&] {
    auto r = stored_relay("fra");
    return r && !r->online && r->last_seen.has_value();
  }));
}

TEST_F(RelayServerTest, RefusedWithANodeTokenNoTokenARevokedOrUsedToken) {
  start();
  {
    auto relay = agent();
    auto response = register_relay(*relay, relay_hello(reusable_token()));
    ASSERT_TRUE(response);
    EXPECT_FALSE(response->ok);
    EXPECT_EQ(response->error_code, ErrorCode::token_invalid);
    EXPECT_NE(response->error_message.find("--relay"), std::string::npos) << response->error_message;
    EXPECT_TRUE(relay->closed_by_server());
  }
  {
    auto relay = agent();
    auto response = register_relay(*relay, relay_hello(std::nullopt));
    ASSERT_TRUE(response);
    EXPECT_FALSE(response->ok);
    EXPECT_EQ(response->error_code, ErrorCode::not_registered);
  }
  {
    const std::string t = relay_token();
    control::JoinToken decoded;
    ASSERT_EQ(control::decode_token(t, decoded), control::TokenError::ok);
    ASSERT_TRUE(admin_->revoke_token(control::token_id_hex(decoded.id)));
    auto relay = agent();
    auto response = register_relay(*relay, relay_hello(t));
    ASSERT_TRUE(response);
    EXPECT_EQ(response->error_code, ErrorCode::token_revoked);
  }
  {
    const std::string t = relay_token();  // one use
    auto first = joined_relay(t, "one");
    auto second = agent();
    auto response = register_relay(*second, relay_hello(t, "two"));
    ASSERT_TRUE(response);
    EXPECT_EQ(response->error_code, ErrorCode::token_used);
  }
  {
    auto relay = agent();
    auto response = register_relay(*relay, relay_hello("knit1-garbage"));
    ASSERT_TRUE(response);
    EXPECT_EQ(response->error_code, ErrorCode::token_invalid);
  }
  EXPECT_FALSE(stored_relay("fra"));
  EXPECT_EQ(counters().rejected, 5u);
}

TEST_F(RelayServerTest, ReconnectsWithItsKeyAloneAndReplacesItsOldSession) {
  start();
  auto relay = joined_relay(relay_token());
  Agent again(port_, coordinator_public_, relay->node_key());
  control::RelayRegister hello = relay_hello(std::nullopt);
  hello.addresses.push_back(*control::HostPort::parse("192.0.2.9:443"));
  auto response = register_relay(again, hello);
  ASSERT_TRUE(response && response->ok);
  EXPECT_EQ(response->name, "fra");
  EXPECT_TRUE(relay->closed_by_server());
  // The new address is in the relay map it is sent.
  ASSERT_TRUE(again.wait_until([&] {
    return !again.relays().relays.empty() && again.relays().relays[0].addresses.size() == 2;
  }));
  auto stored = stored_relay("fra");
  ASSERT_TRUE(stored);
  EXPECT_TRUE(stored->online);  // the old session's end did not take it offline
}

TEST_F(RelayServerTest, NodeRemovalReachesTheRelayAsADelta) {
  ServerOptions options;
  start(options);
  const std::string t = reusable_token();
  auto a = joined(t, "alpha");
  auto b = joined(t, "beta");
  auto relay = joined_relay(relay_token());
  ASSERT_TRUE(relay->wait_until([&] { return relay->map().peers.size() == 2; }));
  const auto removed_at = SteadyClock::now();
  ASSERT_TRUE(admin_->remove_node("beta"));
  ASSERT_TRUE(relay->wait_until([&] { return relay->peer(b->public_key()) == nullptr; }, 2000ms));
  const auto took = SteadyClock::now() - removed_at;
  EXPECT_LT(took, 1s);
  EXPECT_FALSE(relay->map_broken());
  EXPECT_NE(relay->peer(a->public_key()), nullptr);
  // A new node is added the same way.
  auto c = joined(t, "gamma");
  ASSERT_TRUE(relay->wait_until([&] { return relay->peer(c->public_key()) != nullptr; }));
  EXPECT_FALSE(relay->map_broken());
}

TEST_F(RelayServerTest, AgentsSeeTheRelayJoinAndLeaveTheRelayMap) {
  ServerOptions options;
  start(options);
  auto a = joined(reusable_token(), "alpha");
  EXPECT_TRUE(a->relays().relays.empty());
  auto relay = joined_relay(relay_token());
  ASSERT_TRUE(a->wait_until([&] { return has_relay(*a, "fra"); }, 1000ms));
  EXPECT_EQ(a->relays().relays[0].node_key, relay->public_key());
  // The relay is never one of the agent's peers.
  EXPECT_EQ(a->peer(relay->public_key()), nullptr);
  EXPECT_TRUE(a->map().peers.empty());

  ASSERT_TRUE(admin_->remove_relay("fra"));
  ASSERT_TRUE(a->wait_until([&] { return !has_relay(*a, "fra"); }, 2000ms));
  // The removed relay is told and disconnected; without a token it cannot come back.
  auto error = relay->wait_for<control::ErrorMessage>(2000ms);
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, ErrorCode::not_registered);
  EXPECT_TRUE(relay->closed_by_server());
  Agent again(port_, coordinator_public_, relay->node_key());
  auto response = register_relay(again, relay_hello(std::nullopt));
  ASSERT_TRUE(response);
  EXPECT_EQ(response->error_code, ErrorCode::not_registered);
}

TEST_F(RelayServerTest, ANodeKeyCannotBeARelayNorARelayKeyANode) {
  start();
  auto a = joined(reusable_token(), "alpha");
  {
    Agent as_relay(port_, coordinator_public_, a->node_key());
    auto response = register_relay(as_relay, relay_hello(relay_token(true)));
    ASSERT_TRUE(response);
    EXPECT_FALSE(response->ok);
    EXPECT_EQ(response->error_code, ErrorCode::key_in_use);
  }
  auto relay = joined_relay(relay_token());
  {
    Agent as_node(port_, coordinator_public_, relay->node_key());
    auto response = as_node.join(reusable_token(), "sneaky");
    ASSERT_TRUE(response);
    EXPECT_FALSE(response->ok);
    EXPECT_EQ(response->error_code, ErrorCode::key_in_use);
  }
  auto nodes = admin_->list_nodes();
  ASSERT_TRUE(nodes);
  ASSERT_EQ(nodes->size(), 1u);
  EXPECT_EQ(nodes->front().name, "alpha");
  // Neither the agent nor the relay sees the relay key as a peer.
  auto b = joined(reusable_token(), "beta");
  ASSERT_TRUE(a->wait_until([&] { return a->peer(b->public_key()) != nullptr; }));
  EXPECT_EQ(a->peer(relay->public_key()), nullptr);
  EXPECT_EQ(relay->peer(relay->public_key()), nullptr);
}

TEST_F(RelayServerTest, ARelayMaySendOnlyPings) {
  start();
  auto relay = joined_relay(relay_token());
  ASSERT_TRUE(relay->send(control::EndpointUpdate{{Endpoint::parse("192.0.2.1:5").value()}}));
  EXPECT_TRUE(relay->closed_by_server());
  EXPECT_EQ(counters().malformed, 1u);
  // An agent still may.
  auto a = joined(reusable_token(), "alpha");
  ASSERT_TRUE(a->send(control::EndpointUpdate{{Endpoint::parse("192.0.2.1:5").value()}}));
  ASSERT_TRUE(a->send(control::Ping{1}));
  EXPECT_TRUE(a->wait_for<control::Pong>());
}

}  // namespace
}  // namespace knit::coordinator
