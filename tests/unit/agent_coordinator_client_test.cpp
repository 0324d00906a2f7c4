// The coordinator client on real TCP sockets against an in-process fake coordinator (a responder
// Channel on the same Asio loop): register, map delivery, endpoint updates, the error a person
// sees for an unreachable coordinator, trying addresses in order, refusals, dead connections,
// and surviving a coordinator restart.
#include <gtest/gtest.h>

#include <asio.hpp>

#include <functional>
#include <memory>

#include "agent/coordinator_client.hpp"
#include "base/random.hpp"
#include "tests/support/fake_coordinator.hpp"
#include "tests/support/io_loop.hpp"
#include "wg/crypto.hpp"

namespace knit::agent {
namespace {

using namespace std::chrono_literals;
using tcp = asio::ip::tcp;
using testing::FakeCoordinator;

struct Recorder : CoordinatorClient::Listener {
  void on_registered(const control::RegisterResponse& response) override { registered.push_back(response); }
  void on_refused(const control::RegisterResponse& response, bool retrying) override {
    refused.push_back(response);
    refusal_retrying = retrying;
  }
  void on_peers(const control::PeerMap& map) override { maps.push_back(map); }
  void on_relay_map(const control::RelayMap&) override { ++relay_maps; }
  void on_unreachable(const std::string& error, Duration) override { unreachable.push_back(error); }
  void on_disconnected(const std::string& reason) override { disconnected.push_back(reason); }

  std::vector<control::RegisterResponse> registered;
  std::vector<control::RegisterResponse> refused;
  bool refusal_retrying = false;
  std::vector<control::PeerMap> maps;
  int relay_maps = 0;
  std::vector<std::string> unreachable;
  std::vector<std::string> disconnected;
};

std::uint16_t closed_port(asio::io_context& io) {
  tcp::acceptor acceptor(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return acceptor.local_endpoint().port();
}

class ClientTest : public ::testing::Test {
 protected:
  ClientTest() : node_key_(wg::crypto::generate_private_key(rng_)), coordinator_(io_, rng_) {}

  CoordinatorClient::Options options(std::vector<control::HostPort> addresses) {
    CoordinatorClient::Options o;
    o.addresses = std::move(addresses);
    o.coordinator_key = coordinator_.public_key();
    o.token = "knit1-secret";
    o.disco_key.fill(9);
    o.hostname = "host-a";
    o.version = "0.1.0";
    o.endpoints = {Endpoint::parse("192.0.2.1:41641").value()};
    o.connect_timeout = 1s;
    o.handshake_timeout = 1s;
    return o;
  }
  // Runs the loop until done() or the time is up; true when done.
  bool run_until(const std::function<bool()>& done, Duration limit = 5s) {
    return knit::testing::run_until(io_, done, limit);
  }

  SeededRandom rng_{21};
  asio::io_context io_;
  wg::PrivateKey node_key_;
  FakeCoordinator coordinator_;
  Recorder recorder_;
};

TEST_F(ClientTest, RegistersAndFollowsTheMap) {
  CoordinatorClient client(io_, node_key_, options({coordinator_.address()}), recorder_, rng_);
  client.start();
  ASSERT_TRUE(run_until([&] { return recorder_.maps.size() == 2; }));
  ASSERT_EQ(recorder_.registered.size(), 1u);
  EXPECT_EQ(recorder_.registered[0].node.name, "host-a");
  EXPECT_EQ(client.state(), CoordinatorClient::State::connected);
  EXPECT_EQ(client.address(), coordinator_.address().to_string());
  EXPECT_EQ(recorder_.relay_maps, 1);
  EXPECT_EQ(recorder_.maps[1].version, 2u);
  ASSERT_EQ(recorder_.maps[1].peers.size(), 1u);
  EXPECT_EQ(recorder_.maps[1].peers[0].name, "node-2");

  ASSERT_EQ(coordinator_.registers.size(), 1u);
  const auto& request = coordinator_.registers[0];
  EXPECT_EQ(request.token, std::optional<std::string>("knit1-secret"));
  EXPECT_EQ(request.hostname, "host-a");
  EXPECT_EQ(request.os, "linux");
  EXPECT_EQ(request.endpoints, (std::vector<Endpoint>{Endpoint::parse("192.0.2.1:41641").value()}));

  // New endpoints go out as an update; the same ones again do not.
  client.set_endpoints({Endpoint::parse("192.0.2.7:41641").value()});
  client.set_endpoints({Endpoint::parse("192.0.2.7:41641").value()});
  ASSERT_TRUE(run_until([&] { return !coordinator_.received.empty(); }));
  run_until([] { return false; }, 100ms);
  ASSERT_EQ(coordinator_.received.size(), 1u);
  EXPECT_EQ(coordinator_.received[0],
            control::Message(control::EndpointUpdate{{Endpoint::parse("192.0.2.7:41641").value()}}));
  client.stop();
  EXPECT_EQ(client.state(), CoordinatorClient::State::stopped);
}

TEST_F(ClientTest, SurvivesACoordinatorRestartAndRejoinsWithoutTheToken) {
  CoordinatorClient client(io_, node_key_, options({coordinator_.address()}), recorder_, rng_);
  client.start();
  ASSERT_TRUE(run_until([&] { return recorder_.registered.size() == 1; }));
  const std::uint16_t port = coordinator_.port();
  coordinator_.crash();
  ASSERT_TRUE(run_until([&] { return recorder_.disconnected.size() == 1; }));
  EXPECT_NE(client.state(), CoordinatorClient::State::connected);
  // Down for three seconds: attempts fail meanwhile.
  run_until([] { return false; }, 3s);
  EXPECT_FALSE(recorder_.unreachable.empty());
  coordinator_.listen(port);
  const auto back = Clock::now();
  ASSERT_TRUE(run_until([&] { return recorder_.registered.size() == 2; }, 10s));
  EXPECT_LT(Clock::now() - back, 5s);  // DESIGN: agents are back within 5 s
  ASSERT_EQ(coordinator_.registers.size(), 2u);
  EXPECT_EQ(coordinator_.registers[1].token, std::nullopt);
  EXPECT_EQ(client.state(), CoordinatorClient::State::connected);
}

TEST_F(ClientTest, AnUnreachableCoordinatorIsReportedAsAPersonReadsIt) {
  const std::uint16_t port = closed_port(io_);
  CoordinatorClient client(io_, node_key_, options({{"127.0.0.1", port}}), recorder_, rng_);
  client.start();
  ASSERT_TRUE(run_until([&] { return !recorder_.unreachable.empty(); }));
  EXPECT_EQ(recorder_.unreachable[0],
            "cannot reach the coordinator at 127.0.0.1:" + std::to_string(port) + ": connection refused");
  EXPECT_EQ(client.state(), CoordinatorClient::State::waiting);
  EXPECT_EQ(client.last_error(), recorder_.unreachable[0]);
}

TEST_F(ClientTest, TriesEachAddressInOrder) {
  const std::uint16_t dead = closed_port(io_);
  CoordinatorClient client(io_, node_key_, options({{"127.0.0.1", dead}, coordinator_.address()}), recorder_, rng_);
  client.start();
  ASSERT_TRUE(run_until([&] { return recorder_.registered.size() == 1; }));
  EXPECT_TRUE(recorder_.unreachable.empty());
  EXPECT_EQ(client.address(), coordinator_.address().to_string());
}

TEST_F(ClientTest, ARefusalStopsTheClient) {
  coordinator_.behaviour.respond = [](const control::RegisterRequest&) {
    control::RegisterResponse r;
    r.ok = false;
    r.error_code = control::ErrorCode::token_used;
    return r;
  };
  CoordinatorClient client(io_, node_key_, options({coordinator_.address()}), recorder_, rng_);
  client.start();
  ASSERT_TRUE(run_until([&] { return !recorder_.refused.empty(); }));
  EXPECT_FALSE(recorder_.refusal_retrying);
  EXPECT_EQ(recorder_.refused[0].error_code, control::ErrorCode::token_used);
  EXPECT_EQ(client.state(), CoordinatorClient::State::stopped);
  run_until([] { return false; }, 1500ms);
  EXPECT_EQ(coordinator_.registers.size(), 1u);  // no second attempt
}

TEST_F(ClientTest, AnInternalErrorIsRetried) {
  int calls = 0;
  coordinator_.behaviour.respond = [&calls](const control::RegisterRequest& request) {
    control::RegisterResponse r;
    if (++calls == 1) return r;  // ok=false, internal
    r.ok = true;
    r.node = {request.hostname, IpAddress::parse("100.64.0.1").value(), IpAddress::parse("fd7a::1").value(), {}};
    r.node.node_key.fill(1);
    r.mesh = {IpPrefix::parse("100.64.0.0/10").value(), IpPrefix::parse("fd7a::/48").value()};
    return r;
  };
  CoordinatorClient client(io_, node_key_, options({coordinator_.address()}), recorder_, rng_);
  client.start();
  ASSERT_TRUE(run_until([&] { return recorder_.registered.size() == 1; }));
  EXPECT_TRUE(recorder_.refusal_retrying);
}

TEST_F(ClientTest, ASilentCoordinatorIsDeclaredDead) {
  coordinator_.behaviour.pong = false;
  coordinator_.behaviour.send_maps = false;
  auto o = options({coordinator_.address()});
  o.ping_interval = 100ms;
  o.dead_after = 400ms;
  CoordinatorClient client(io_, node_key_, o, recorder_, rng_);
  client.start();
  ASSERT_TRUE(run_until([&] { return recorder_.disconnected.size() == 1; }));
  EXPECT_NE(recorder_.disconnected[0].find("no message from the coordinator"), std::string::npos)
      << recorder_.disconnected[0];
  // Pings went out meanwhile.
  EXPECT_GE(coordinator_.received.size(), 2u);
}

TEST_F(ClientTest, PongsKeepAQuietSessionAlive) {
  coordinator_.behaviour.send_maps = false;
  auto o = options({coordinator_.address()});
  o.ping_interval = 100ms;
  o.dead_after = 400ms;
  CoordinatorClient client(io_, node_key_, o, recorder_, rng_);
  client.start();
  ASSERT_TRUE(run_until([&] { return recorder_.registered.size() == 1; }));
  run_until([] { return false; }, 1500ms);
  EXPECT_TRUE(recorder_.disconnected.empty());
  EXPECT_EQ(client.state(), CoordinatorClient::State::connected);
}

TEST_F(ClientTest, AHandshakeWithoutAnswerTimesOut) {
  coordinator_.behaviour.answer = false;
  CoordinatorClient client(io_, node_key_, options({coordinator_.address()}), recorder_, rng_);
  client.start();
  ASSERT_TRUE(run_until([&] { return !recorder_.unreachable.empty(); }));
  EXPECT_NE(recorder_.unreachable[0].find("no answer to the handshake"), std::string::npos) << recorder_.unreachable[0];
}

TEST_F(ClientTest, AWrongCoordinatorKeyIsNamed) {
  auto o = options({coordinator_.address()});
  o.coordinator_key.fill(0x55);  // not the key the coordinator holds
  CoordinatorClient client(io_, node_key_, o, recorder_, rng_);
  client.start();
  ASSERT_TRUE(run_until([&] { return !recorder_.unreachable.empty(); }));
  // The coordinator cannot read message 1 and hangs up.
  EXPECT_NE(recorder_.unreachable[0].find("127.0.0.1"), std::string::npos) << recorder_.unreachable[0];
}

TEST_F(ClientTest, StopFromAListenerCallbackIsSafe) {
  struct Stopper : Recorder {
    CoordinatorClient* client = nullptr;
    void on_unreachable(const std::string& error, Duration d) override {
      Recorder::on_unreachable(error, d);
      client->stop();
    }
  } stopper;
  CoordinatorClient client(io_, node_key_, options({{"127.0.0.1", closed_port(io_)}}), stopper, rng_);
  stopper.client = &client;
  client.start();
  ASSERT_TRUE(run_until([&] { return !stopper.unreachable.empty(); }));
  run_until([] { return false; }, 1500ms);
  EXPECT_EQ(stopper.unreachable.size(), 1u);
  EXPECT_EQ(client.state(), CoordinatorClient::State::stopped);
}

}  // namespace
}  // namespace knit::agent
