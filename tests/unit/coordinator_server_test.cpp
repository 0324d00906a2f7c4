// The control server in-process on 127.0.0.1:0 with a temporary state directory, driven by real
// TCP clients that speak the Noise IK channel as an agent does: joins and rejoins, every kind of
// refused token, peer maps and deltas (checked by applying them), endpoint updates, Ping/Pong,
// an admin removing a node through its own Store handle, ephemeral expiry on a manual clock,
// and hostile or slow clients (garbage, a stalled handshake, oversized frames, bad JSON, an
// idle agent, one that never reads) that are dropped without disturbing the others.
#include <gtest/gtest.h>

#include "tests/support/coordinator_server_fixture.hpp"

namespace knit::coordinator {
namespace {

TEST_F(ServerTest, JoinGetsAddressesRelayMapAndPeerMap) {
  start();
  auto a = agent();
  auto response = a->join(reusable_token(), "Web Server");
  ASSERT_TRUE(response);
  ASSERT_TRUE(response->ok) << response->error_message;
  EXPECT_EQ(response->node.name, "web-server");
  EXPECT_EQ(response->node.node_key, a->public_key());
  EXPECT_TRUE(response->node.ipv4.is_v4());
  EXPECT_TRUE(response->node.ipv6.is_v6());
  EXPECT_EQ(response->mesh.ipv4_prefix, mesh_.ipv4_prefix);
  EXPECT_EQ(response->mesh.ipv6_prefix, mesh_.ipv6_prefix);

  auto relays = a->next();
  ASSERT_TRUE(relays);
  ASSERT_TRUE(std::holds_alternative<control::RelayMap>(*relays));
  auto map = a->next();
  ASSERT_TRUE(map);
  ASSERT_TRUE(std::holds_alternative<control::PeerMapPage>(*map));
  EXPECT_EQ(std::get<control::PeerMapPage>(*map), (control::PeerMapPage{1, 0, 1, {}}));

  auto node = admin_->find_node(a->public_key());
  ASSERT_TRUE(node && *node);
  EXPECT_TRUE((*node)->online);
  EXPECT_EQ((*node)->ipv4, response->node.ipv4);
  EXPECT_EQ(counters().registered, 1u);
}

TEST_F(ServerTest, SecondJoinIsADeltaForTheFirstAndDisconnectGoesOffline) {
  start();
  const std::string t = reusable_token();
  auto a = joined(t, "alpha");
  auto b = agent();
  auto response = b->join(t, "beta");
  ASSERT_TRUE(response && response->ok);

  ASSERT_TRUE(a->wait_until([&] { return a->peer(b->public_key()) != nullptr; }));
  const control::PeerInfo* seen = a->peer(b->public_key());
  EXPECT_EQ(seen->name, "beta");
  EXPECT_EQ(seen->ipv4, response->node.ipv4);
  EXPECT_EQ(seen->ipv6, response->node.ipv6);
  EXPECT_TRUE(seen->online);
  EXPECT_EQ(seen->last_seen, kStart);
  // B's first map already holds A.
  ASSERT_TRUE(b->wait_until([&] { return b->peer(a->public_key()) != nullptr; }));
  EXPECT_EQ(b->map().peers.size(), 1u);

  clock_ += 30;
  b->disconnect();
  ASSERT_TRUE(a->wait_until(
      [&] { return a->peer(b->public_key()) && !a->peer(b->public_key())->online; }));
  EXPECT_EQ(a->peer(b->public_key())->last_seen, kStart + 30);
  EXPECT_FALSE(a->map_broken());
  EXPECT_FALSE(b->map_broken());
  auto stored = admin_->find_node(b->public_key());
  ASSERT_TRUE(stored && *stored);
  EXPECT_FALSE((*stored)->online);
}

TEST_F(ServerTest, RejoinWithoutTokenKeepsNameAndAddresses) {
  start();
  auto a = agent();
  auto first = a->join(reusable_token(), "laptop");
  ASSERT_TRUE(first && first->ok);
  const wg::PrivateKey key = a->node_key();
  a.reset();

  Agent again(port_, coordinator_public_, key);
  auto second = again.join(std::nullopt, "laptop");
  ASSERT_TRUE(second);
  ASSERT_TRUE(second->ok) << second->error_message;
  EXPECT_EQ(second->node, first->node);
  auto nodes = admin_->list_nodes();
  ASSERT_TRUE(nodes);
  EXPECT_EQ(nodes->size(), 1u);
}

TEST_F(ServerTest, HostnameTakenByAnotherKeyGetsASuffix) {
  start();
  const std::string t = reusable_token();
  auto a = joined(t, "box");
  auto b = agent();
  auto response = b->join(t, "box");
  ASSERT_TRUE(response && response->ok);
  EXPECT_EQ(response->node.name, "box-2");
}

TEST_F(ServerTest, UnknownKeyWithoutTokenIsNotRegistered) {
  start();
  auto a = agent();
  auto response = a->join(std::nullopt, "stranger");
  ASSERT_TRUE(response);
  EXPECT_FALSE(response->ok);
  EXPECT_EQ(response->error_code, ErrorCode::not_registered);
  EXPECT_TRUE(a->closed_by_server());
  EXPECT_EQ(counters().rejected, 1u);
}

// ---- refused tokens ----

void expect_refused(Agent& a, const std::string& join_token, ErrorCode code) {
  auto response = a.join(join_token, "refused");
  ASSERT_TRUE(response);
  EXPECT_FALSE(response->ok);
  EXPECT_EQ(response->error_code, code) << response->error_message;
  EXPECT_FALSE(response->error_message.empty());
  EXPECT_TRUE(a.closed_by_server());
}

TEST_F(ServerTest, ExpiredTokenIsRefused) {
  start();
  TokenOptions options;
  options.lifetime = 60;
  const std::string t = token(options);
  clock_ += 61;
  expect_refused(*agent(), t, ErrorCode::token_expired);
}

TEST_F(ServerTest, RevokedTokenIsRefused) {
  start();
  const std::string t = reusable_token();
  control::JoinToken decoded;
  ASSERT_EQ(control::decode_token(t, decoded), control::TokenError::ok);
  ASSERT_TRUE(admin_->revoke_token(control::token_id_hex(decoded.id)));
  expect_refused(*agent(), t, ErrorCode::token_revoked);
}

TEST_F(ServerTest, OneUseTokenServesOneNodeButItsOwnRejoin) {
  start();
  const std::string t = token();  // one use
  auto a = agent();
  auto first = a->join(t, "first");
  ASSERT_TRUE(first && first->ok);
  expect_refused(*agent(), t, ErrorCode::token_used);
  // The node that used it may present it again (a restart before it saved its state).
  const wg::PrivateKey key = a->node_key();
  a.reset();
  Agent again(port_, coordinator_public_, key);
  auto second = again.join(t, "first");
  ASSERT_TRUE(second && second->ok);
  EXPECT_EQ(second->node, first->node);
}

TEST_F(ServerTest, WrongSecretAndGarbageTokensAreInvalid) {
  start();
  const std::string t = reusable_token();
  control::JoinToken decoded;
  ASSERT_EQ(control::decode_token(t, decoded), control::TokenError::ok);
  decoded.secret.data()[0] ^= 1;
  expect_refused(*agent(), control::encode_token(decoded), ErrorCode::token_invalid);
  expect_refused(*agent(), "knit1-not-a-token", ErrorCode::token_invalid);
  EXPECT_EQ(counters().rejected, 2u);
}

TEST_F(ServerTest, TokenOfAnotherCoordinatorIsInvalid) {
  start();
  control::JoinToken decoded;
  ASSERT_EQ(control::decode_token(reusable_token(), decoded), control::TokenError::ok);
  decoded.coordinator_key[0] ^= 1;
  expect_refused(*agent(), control::encode_token(decoded), ErrorCode::token_invalid);
}

TEST_F(ServerTest, ReplayedMessage1ChangesNothing) {
  start();
  const std::string t = token();  // one use: a second use would be refused
  auto a = agent();
  auto response = a->join(t, "original");
  ASSERT_TRUE(response && response->ok);
  // An eavesdropper replays message 1 on its own connection: the server answers (it cannot tell),
  // but the node, its addresses and the token's use count stay as they were.
  int fd = connect_to(port_);
  ASSERT_TRUE(write_all(fd, a->message1()));
  pollfd p{fd, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 3000), 1);
  ::close(fd);
  auto nodes = admin_->list_nodes();
  ASSERT_TRUE(nodes);
  ASSERT_EQ(nodes->size(), 1u);
  EXPECT_EQ(nodes->front().ipv4, response->node.ipv4);
  auto tokens = admin_->list_tokens();
  ASSERT_TRUE(tokens);
  EXPECT_EQ(tokens->front().uses, 1u);
}

// ---- the session ----

TEST_F(ServerTest, PingIsAnsweredWithPong) {
  start();
  auto a = joined(reusable_token(), "pinger");
  ASSERT_TRUE(a->send(control::Ping{42}));
  auto pong = a->wait_for<control::Pong>();
  ASSERT_TRUE(pong);
  EXPECT_EQ(pong->seq, 42u);
}

TEST_F(ServerTest, EndpointUpdateReachesOtherAgents) {
  start();
  const std::string t = reusable_token();
  auto a = joined(t, "a");
  auto b = joined(t, "b");
  ASSERT_TRUE(a->wait_until([&] { return a->peer(b->public_key()) != nullptr; }));
  const std::vector<Endpoint> endpoints{Endpoint::parse("192.0.2.7:41641").value(),
                                        Endpoint::parse("[2001:db8::7]:41641").value()};
  clock_ += 5;
  ASSERT_TRUE(b->send(control::EndpointUpdate{endpoints}));
  ASSERT_TRUE(a->wait_until(
      [&] { return a->peer(b->public_key())->endpoints == endpoints; }));
  EXPECT_EQ(a->peer(b->public_key())->last_seen, kStart + 5);
  // B's own stream stays consistent: deltas about itself come without its entry.
  ASSERT_TRUE(b->send(control::Ping{1}));
  ASSERT_TRUE(b->wait_for<control::Pong>());
  EXPECT_FALSE(b->map_broken());
  EXPECT_FALSE(a->map_broken());
  auto stored = admin_->find_node(b->public_key());
  ASSERT_TRUE(stored && *stored);
  EXPECT_EQ((*stored)->endpoints, endpoints);
}

TEST_F(ServerTest, NatReportPicksTheNearestRelayAsHome) {
  start();
  const std::string t = reusable_token();
  auto a = joined(t, "a");
  auto b = joined(t, "b");
  // Relays register through the store (knit-relay's join); the server hears of it by its feed.
  TokenOptions relay_token;
  relay_token.relay = true;
  relay_token.reusable = true;
  control::JoinToken decoded;
  ASSERT_EQ(control::decode_token(token(relay_token), decoded), control::TokenError::ok);
  for (std::uint8_t n : {1, 2}) {
    RelayRegistration relay;
    relay.name = "relay-" + std::to_string(n);
    relay.node_key.fill(n);
    relay.addresses = {"192.0.2." + std::to_string(n) + ":443"};
    ASSERT_TRUE(admin_->join_relay(relay,
                                   PresentedToken{control::token_id_hex(decoded.id),
                                                  control::secret_hash(decoded.secret)},
                                   kStart));
  }
  ASSERT_TRUE(b->wait_until([&] { return b->relays().relays.size() == 2; }));
  control::NatReport report;
  report.udp = true;
  report.relay_latency_ms = {{"relay-1", 40}, {"relay-2", 12}, {"unknown", 1}};
  ASSERT_TRUE(b->send(report));
  ASSERT_TRUE(a->wait_until([&] {
    return a->peer(b->public_key()) && a->peer(b->public_key())->home_relay == "relay-2";
  }));
}

TEST_F(ServerTest, SameKeyConnectingAgainReplacesTheOldSession) {
  start();
  const std::string t = reusable_token();
  auto a = joined(t, "twice");
  Agent again(port_, coordinator_public_, a->node_key());
  auto response = again.join(std::nullopt, "twice");
  ASSERT_TRUE(response && response->ok);
  EXPECT_TRUE(a->closed_by_server());
  ASSERT_TRUE(again.send(control::Ping{7}));
  ASSERT_TRUE(again.wait_for<control::Pong>());
  auto stored = admin_->find_node(a->public_key());
  ASSERT_TRUE(stored && *stored);
  EXPECT_TRUE((*stored)->online);  // the old session's end did not take the node offline
}

// ---- hostile and slow clients ----

TEST_F(ServerTest, GarbageAndAStalledHandshakeAreDroppedWithoutDisturbingOthers) {
  ServerOptions options;
  options.session.handshake_timeout = 300ms;
  start(options);
  auto a = joined(reusable_token(), "steady");

  int garbage = connect_to(port_);
  Bytes junk(4 + 200);
  rng_.fill(junk);
  store_be32(junk.data(), 200);  // a frame of the right size, that does not decrypt
  ASSERT_TRUE(write_all(garbage, junk));
  int stalled = connect_to(port_);
  ASSERT_TRUE(write_all(stalled, Bytes{0, 0, 1}));  // half a header, then nothing

  EXPECT_TRUE(closed_by_server(garbage, 3000ms));
  EXPECT_TRUE(closed_by_server(stalled, 3000ms));
  ::close(garbage);
  ::close(stalled);

  ASSERT_TRUE(a->send(control::Ping{9}));
  ASSERT_TRUE(a->wait_for<control::Pong>());
  const ServerCounters c = counters();
  EXPECT_EQ(c.handshake_failures, 1u);
  EXPECT_EQ(c.timeouts, 1u);
  EXPECT_EQ(c.accepted, 3u);
}

TEST_F(ServerTest, OversizedFramesDisconnect) {
  start();
  auto a = joined(reusable_token(), "steady");
  // Before the handshake: a header announcing 2 MiB, over the 1 MiB an agent may send.
  int early = connect_to(port_);
  Bytes header(4);
  store_be32(header.data(), 2u << 20);
  ASSERT_TRUE(write_all(early, header));
  EXPECT_TRUE(closed_by_server(early, 3000ms));
  ::close(early);
  // After it, from a registered agent.
  auto b = joined(reusable_token(), "big");
  ASSERT_TRUE(b->send_raw(header));
  EXPECT_TRUE(b->closed_by_server());

  ASSERT_TRUE(a->send(control::Ping{1}));
  ASSERT_TRUE(a->wait_for<control::Pong>());
  const ServerCounters c = counters();
  EXPECT_EQ(c.handshake_failures, 1u);
  EXPECT_EQ(c.malformed, 1u);
}

TEST_F(ServerTest, MalformedOrUnexpectedMessagesDisconnect) {
  start();
  const std::string t = reusable_token();
  auto a = joined(t, "steady");

  auto bad_json = joined(t, "json");
  ASSERT_TRUE(bad_json->send_text("{\"v\":1,\"type\":"));
  EXPECT_TRUE(bad_json->closed_by_server());
  auto wrong_way = joined(t, "pong");
  ASSERT_TRUE(wrong_way->send(control::Pong{1}));  // a coordinator's message, from an agent
  EXPECT_TRUE(wrong_way->closed_by_server());

  // Message 1 whose payload is not a register request.
  Bytes frame;
  int fd = connect_to(port_);
  control::Channel channel =
      control::Channel::initiator(wg::crypto::generate_private_key(rng_), coordinator_public_);
  ASSERT_EQ(channel.start(rng_, bytes_of("{\"v\":1,\"type\":\"ping\",\"seq\":1}"), frame),
            control::ChannelError::ok);
  ASSERT_TRUE(write_all(fd, frame));
  EXPECT_TRUE(closed_by_server(fd, 3000ms));
  ::close(fd);

  ASSERT_TRUE(a->send(control::Ping{2}));
  ASSERT_TRUE(a->wait_for<control::Pong>());
  EXPECT_EQ(counters().malformed, 3u);
  EXPECT_FALSE(a->map_broken());
}

TEST_F(ServerTest, IdleAgentIsDisconnectedAndGoesOffline) {
  ServerOptions options;
  options.session.idle_timeout = 300ms;
  start(options);
  auto a = joined(reusable_token(), "sleepy");
  EXPECT_TRUE(a->closed_by_server(3000ms));
  EXPECT_EQ(counters().timeouts, 1u);
  // The store is told on the loop's next turn after the close.
  EXPECT_TRUE(eventually([&] {
    auto stored = admin_->find_node(a->public_key());
    return stored && *stored && !(*stored)->online;
  }));
}

TEST_F(ServerTest, AgentThatDoesNotReadIsDisconnectedOnQueueOverflow) {
  ServerOptions options;
  options.session.send_queue_bytes = 16 * 1024;
  start(options);
  const std::string t = reusable_token();
  auto a = joined(t, "steady");
  Agent slow(port_, coordinator_public_, wg::crypto::generate_private_key(rng_), 4096);
  auto response = slow.join(t, "slow");
  ASSERT_TRUE(response && response->ok);
  // Pings, never reading the pongs: the kernel buffers fill, then the server's queue.
  const auto until = SteadyClock::now() + 20s;
  std::uint64_t seq = 0;
  while (SteadyClock::now() < until && slow.send(control::Ping{++seq})) {
    if (seq % 1000 == 0 && on_loop([this] { return server_->counters().queue_overflows; }) > 0)
      break;
  }
  EXPECT_EQ(counters().queue_overflows, 1u);
  ASSERT_TRUE(a->send(control::Ping{1}));
  ASSERT_TRUE(a->wait_for<control::Pong>());
}

// ---- changes made elsewhere ----

TEST_F(ServerTest, AdminRemovingANodeReachesOthersWithinTwoSeconds) {
  start();
  const std::string t = reusable_token();
  auto a = joined(t, "keeper");
  auto b = joined(t, "goner");
  ASSERT_TRUE(a->wait_until([&] { return a->peer(b->public_key()) != nullptr; }));

  const auto removed_at = SteadyClock::now();
  ASSERT_TRUE(admin_->remove_node("goner"));
  ASSERT_TRUE(a->wait_until([&] { return a->peer(b->public_key()) == nullptr; }, 2000ms));
  EXPECT_LT(SteadyClock::now() - removed_at, 2s);
  EXPECT_FALSE(a->map_broken());

  // The removed node is told and disconnected, and cannot come back without a token.
  auto error = b->wait_for<control::ErrorMessage>();
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, ErrorCode::not_registered);
  EXPECT_TRUE(b->closed_by_server());
  Agent again(port_, coordinator_public_, b->node_key());
  auto response = again.join(std::nullopt, "goner");
  ASSERT_TRUE(response);
  EXPECT_EQ(response->error_code, ErrorCode::not_registered);
}

// `knit logout`: the coordinator says it understands it, removes the node on it (the others get
// the removal delta, its address is free), and ends the session with not_registered.
TEST_F(ServerTest, LogoutRemovesTheNodeAndTellsTheOthers) {
  start();
  const std::string t = reusable_token();
  auto a = joined(t, "keeper");
  auto b = agent();
  auto response = b->join(t, "leaver");
  ASSERT_TRUE(response && response->ok);
  EXPECT_EQ(response->features, (std::vector<std::string>{"logout", "routes"}));
  ASSERT_TRUE(a->wait_until([&] { return a->peer(b->public_key()) != nullptr; }));

  ASSERT_TRUE(b->send(control::Logout{}));
  auto error = b->wait_for<control::ErrorMessage>();
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code, ErrorCode::not_registered);
  EXPECT_TRUE(b->closed_by_server());
  ASSERT_TRUE(a->wait_until([&] { return a->peer(b->public_key()) == nullptr; }, 2000ms));
  EXPECT_FALSE(a->map_broken());
  auto stored = admin_->find_node(b->public_key());
  ASSERT_TRUE(stored);
  EXPECT_FALSE(stored->has_value());
  // Gone for good: the key alone does not bring it back.
  Agent again(port_, coordinator_public_, b->node_key());
  auto rejoin = again.join(std::nullopt, "leaver");
  ASSERT_TRUE(rejoin);
  EXPECT_EQ(rejoin->error_code, ErrorCode::not_registered);
}

TEST_F(ServerTest, EphemeralNodeIsRemovedAfterTheGrace) {
  ServerOptions options;
  options.sweep_interval = 50ms;
  options.ephemeral_grace = 600;
  start(options);
  auto a = joined(reusable_token(), "stays");
  TokenOptions ephemeral;
  ephemeral.ephemeral = true;
  auto e = joined(token(ephemeral), "passing");
  ASSERT_TRUE(a->wait_until([&] { return a->peer(e->public_key()) != nullptr; }));
  const wg::PublicKey gone = e->public_key();
  e.reset();
  ASSERT_TRUE(a->wait_until([&] { return !a->peer(gone)->online; }));
  clock_ += 300;
  std::this_thread::sleep_for(200ms);
  EXPECT_NE(a->peer(gone), nullptr);  // within the grace
  clock_ += 301;
  ASSERT_TRUE(a->wait_until([&] { return a->peer(gone) == nullptr; }));
  auto stored = admin_->find_node(gone);
  ASSERT_TRUE(stored);
  EXPECT_FALSE(stored->has_value());
}

TEST_F(ServerTest, StopClosesSessionsAndMarksNodesOffline) {
  start();
  auto a = joined(reusable_token(), "until-stop");
  stop();
  EXPECT_TRUE(a->closed_by_server());
  auto stored = admin_->find_node(a->public_key());
  ASSERT_TRUE(stored && *stored);
  EXPECT_FALSE((*stored)->online);
}

TEST_F(ServerTest, ManyAgentsGetConsistentStreams) {
  ServerOptions options;
  options.publish_delay = 1ms;
  start(options);
  const std::string t = reusable_token();
  std::vector<std::unique_ptr<Agent>> agents;
  for (int i = 0; i < 12; ++i) agents.push_back(joined(t, "n" + std::to_string(i)));
  agents[3].reset();
  agents[7].reset();
  ASSERT_TRUE(agents[0]->send(control::EndpointUpdate{{Endpoint::parse("198.51.100.1:1").value()}}));
  for (auto& a : agents) {
    if (!a) continue;
    ASSERT_TRUE(a->wait_until([&] {
      std::size_t online = 0;
      for (const auto& p : a->map().peers) online += p.online ? 1 : 0;
      return a->map().peers.size() == 11 && online == 9 &&
             (a.get() == agents[0].get() || !a->peer(agents[0]->public_key())->endpoints.empty());
    })) << "agent map has " << a->map().peers.size() << " peers";
    EXPECT_FALSE(a->map_broken());
  }
}

}  // namespace
}  // namespace knit::coordinator
