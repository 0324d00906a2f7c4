// The shared coordinator connection on loopback against fake coordinators of one mesh (one key,
// tests/support/fake_coordinator.hpp): failover when the coordinator in use dies or falls
// silent (another address within 5 s, rotating from the lost one, no failed round between),
// a coordinator that drops every session is not hammered, and an owner may drop the connection
// from inside a callback.
#include <gtest/gtest.h>

#include <asio.hpp>

#include <functional>
#include <memory>

#include "base/random.hpp"
#include "net/coordinator_connection.hpp"
#include "tests/support/fake_coordinator.hpp"
#include "tests/support/io_loop.hpp"
#include "wg/crypto.hpp"

namespace knit::net {
namespace {

using namespace std::chrono_literals;
using knit::testing::FakeCoordinator;

struct Recorder : CoordinatorConnection::Listener {
  control::Message hello() override {
    control::RegisterRequest request;
    request.disco_key.fill(9);
    request.hostname = "host-a";
    request.os = "linux";
    request.version = "0.1.0";
    return request;
  }
  void on_connected(const control::Message& answer) override {
    connected.push_back(std::get<control::RegisterResponse>(answer).node.name);
  }
  void on_refused(const control::Message&, bool retrying) override { refused.push_back(retrying); }
  void on_peers(const control::PeerMap& map) override { maps.push_back(map); }
  void on_relay_map(control::RelayMap) override { ++relay_maps; }
  void on_unreachable(const std::string& error, Duration) override { unreachable.push_back(error); }
  void on_disconnected(const std::string& reason) override {
    disconnected.push_back(reason);
    if (on_lost) on_lost();
  }

  std::vector<std::string> connected;
  std::vector<bool> refused;
  std::vector<control::PeerMap> maps;
  int relay_maps = 0;
  std::vector<std::string> unreachable;
  std::vector<std::string> disconnected;
  std::function<void()> on_lost;
};

class ConnectionTest : public ::testing::Test {
 protected:
  ConnectionTest()
      : own_key_(wg::crypto::generate_private_key(rng_)),
        mesh_key_(wg::crypto::generate_private_key(rng_)),
        a_(io_, rng_, mesh_key_),
        b_(io_, rng_, mesh_key_),
        c_(io_, rng_, mesh_key_),
        recorder_(std::make_shared<Recorder>()) {}

  CoordinatorConnection::Options options(std::vector<control::HostPort> addresses) {
    CoordinatorConnection::Options o;
    o.addresses = std::move(addresses);
    o.coordinator_key = a_.public_key();
    o.connect_timeout = 1s;
    o.handshake_timeout = 1s;
    return o;
  }
  std::unique_ptr<CoordinatorConnection> connect(CoordinatorConnection::Options o) {
    auto connection = std::make_unique<CoordinatorConnection>(io_, own_key_, std::move(o), recorder_, rng_);
    connection->start();
    return connection;
  }
  bool run_until(const std::function<bool()>& done, Duration limit = 5s) {
    return knit::testing::run_until(io_, done, limit);
  }
  void idle(Duration d) { run_until([] { return false; }, d); }

  SeededRandom rng_{41};
  asio::io_context io_;
  wg::PrivateKey own_key_;
  wg::PrivateKey mesh_key_;
  FakeCoordinator a_;
  FakeCoordinator b_;
  FakeCoordinator c_;
  std::shared_ptr<Recorder> recorder_;
};

TEST_F(ConnectionTest, ADeadCoordinatorIsReplacedByTheNextWithinFiveSeconds) {
  auto connection = connect(options({a_.address(), b_.address()}));
  ASSERT_TRUE(run_until([&] { return recorder_->maps.size() == 2; }));
  EXPECT_EQ(connection->address(), a_.address().to_string());
  idle(1200ms);  // a settled session
  a_.crash();
  const auto lost = Clock::now();
  ASSERT_TRUE(run_until([&] { return recorder_->connected.size() == 2; }));
  const auto moved_in = Clock::now() - lost;
  EXPECT_LT(moved_in, 5s);
  EXPECT_LT(moved_in, 1s) << "another address was untried: no backoff before it";
  EXPECT_EQ(connection->address(), b_.address().to_string());
  EXPECT_EQ(connection->state(), CoordinatorConnection::State::connected);
  ASSERT_EQ(recorder_->disconnected.size(), 1u);
  EXPECT_TRUE(recorder_->unreachable.empty()) << recorder_->unreachable[0];
  EXPECT_EQ(b_.registers.size(), 1u);
  // The new coordinator's full map arrives as on the first.
  ASSERT_TRUE(run_until([&] { return recorder_->maps.size() == 4; }));
  EXPECT_EQ(recorder_->maps[3].peers.size(), 1u);
}

TEST_F(ConnectionTest, ASilentCoordinatorIsLeftForTheNext) {
  a_.behaviour.pong = false;
  a_.behaviour.send_maps = false;
  auto o = options({a_.address(), b_.address()});
  o.ping_interval = 100ms;
  o.dead_after = 400ms;
  o.stable_after = 200ms;
  auto connection = connect(o);
  ASSERT_TRUE(run_until([&] { return recorder_->disconnected.size() == 1; }));
  EXPECT_NE(recorder_->disconnected[0].find("no message from the coordinator"), std::string::npos)
      << recorder_->disconnected[0];
  const auto lost = Clock::now();
  ASSERT_TRUE(run_until([&] { return recorder_->connected.size() == 2; }));
  EXPECT_LT(Clock::now() - lost, 5s);
  EXPECT_EQ(connection->address(), b_.address().to_string());
  EXPECT_EQ(a_.registers.size(), 1u);
  EXPECT_EQ(b_.registers.size(), 1u);
}

TEST_F(ConnectionTest, FailoverRotatesFromTheLostAddress) {
  auto o = options({a_.address(), b_.address(), c_.address()});
  o.stable_after = 0ms;
  auto connection = connect(o);
  ASSERT_TRUE(run_until([&] { return recorder_->connected.size() == 1; }));
  const std::uint16_t a_port = a_.port();
  a_.crash();
  ASSERT_TRUE(run_until([&] { return recorder_->connected.size() == 2; }));
  EXPECT_EQ(connection->address(), b_.address().to_string());
  // A is back, B dies: the next one after B is C, not the first of the list.
  a_.listen(a_port);
  b_.crash();
  ASSERT_TRUE(run_until([&] { return recorder_->connected.size() == 3; }));
  EXPECT_EQ(connection->address(), c_.address().to_string());
  EXPECT_EQ(a_.registers.size(), 1u);
  EXPECT_EQ(c_.registers.size(), 1u);
  EXPECT_TRUE(recorder_->unreachable.empty());
}

TEST_F(ConnectionTest, CoordinatorsThatDropEverySessionAreNotHammered) {
  a_.behaviour.hang_up = true;
  b_.behaviour.hang_up = true;
  auto connection = connect(options({a_.address(), b_.address()}));
  idle(3s);
  const std::size_t sessions = a_.registers.size() + b_.registers.size();
  EXPECT_GE(sessions, 3u);  // it keeps trying, going round the addresses
  EXPECT_LE(sessions, 16u) << "each loss of a fresh session waits the backoff (>= 250 ms)";
  EXPECT_GE(a_.registers.size(), 1u);
  EXPECT_GE(b_.registers.size(), 1u);
}

TEST_F(ConnectionTest, EveryAddressDownIsOneUnreachableRound) {
  a_.crash();
  b_.crash();
  auto connection = connect(options({a_.address(), b_.address()}));
  ASSERT_TRUE(run_until([&] { return !recorder_->unreachable.empty(); }));
  const std::string& error = recorder_->unreachable[0];
  EXPECT_NE(error.find("cannot reach the coordinator at " + a_.address().to_string()), std::string::npos) << error;
  EXPECT_NE(error.find("; cannot reach the coordinator at " + b_.address().to_string()), std::string::npos) << error;
  EXPECT_EQ(connection->state(), CoordinatorConnection::State::waiting);
  EXPECT_EQ(connection->last_error(), error);
}

TEST_F(ConnectionTest, TheOwnerMayDropTheConnectionFromACallback) {
  std::unique_ptr<CoordinatorConnection> connection = connect(options({a_.address(), b_.address()}));
  recorder_->on_lost = [&] { connection.reset(); };
  ASSERT_TRUE(run_until([&] { return recorder_->connected.size() == 1; }));
  a_.crash();
  ASSERT_TRUE(run_until([&] { return connection == nullptr; }));
  idle(1500ms);  // nothing runs on for the dropped connection
  EXPECT_EQ(recorder_->connected.size(), 1u);
  EXPECT_TRUE(b_.registers.empty());
}

TEST_F(ConnectionTest, NoAddressNoStart) {
  auto connection = connect(options({}));
  EXPECT_EQ(connection->state(), CoordinatorConnection::State::stopped);
  EXPECT_EQ(connection->last_error(), "no coordinator address");
  EXPECT_FALSE(connection->send(control::Ping{1}));
}

}  // namespace
}  // namespace knit::net
