// The mesh membership end to end inside one process: `knit up` with a token against the fake
// coordinator, peers and addresses applied, status / ip / ping-info answers, a restart that
// rejoins without the token, `knit down`, and the failures a person sees.
#include <gtest/gtest.h>

#include <filesystem>

#include "agent/local_api.hpp"
#include "agent/mesh_membership.hpp"
#include "control/token.hpp"
#include "tests/support/fake_coordinator.hpp"
#include "tests/support/io_loop.hpp"
#include "tests/support/null_io.hpp"
#include "tests/support/recording_link.hpp"

namespace knit::agent {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::FakeCoordinator;
using tcp = asio::ip::tcp;

using knit::testing::NullIo;

class FakeMeshDevice : public MeshDevice {
 public:
  explicit FakeMeshDevice(Random& rng) : device_(io_, io_, rng) {}
  void configure(const std::function<void(wg::Device&, wg::Now)>& change) override {
    change(device_, {Clock::now(), std::chrono::system_clock::now()});
  }
  wg::Device& device() override { return device_; }
  std::uint16_t port() const override { return 41641; }

 private:
  NullIo io_;
  wg::Device device_;
};

using testing::RecordingLink;

std::string make_token(const wg::PublicKey& coordinator_key, std::vector<control::HostPort> addresses) {
  control::JoinToken token;
  token.addresses = std::move(addresses);
  token.coordinator_key = coordinator_key;
  token.id.fill(3);
  token.secret.data()[0] = 1;
  return control::encode_token(token);
}

class MembershipTest : public ::testing::Test {
 protected:
  MembershipTest() : coordinator_(io_, rng_) {
    char pattern[] = "/tmp/knit-member-XXXXXX";
    root_ = ::mkdtemp(pattern);
  }
  ~MembershipTest() override {
    api_.reset();
    membership_.reset();
    fs::remove_all(root_);
  }

  std::unique_ptr<Membership> make(FakeMeshDevice& device) {
    Membership::Options options;
    options.state_dir = root_ / "state";
    options.tun_name = "ka0";
    options.version = "test";
    options.up_timeout = 4s;
    options.logout_timeout = 2s;
    options.client.connect_timeout = 1s;
    options.client.handshake_timeout = 1s;
    auto m = std::make_unique<Membership>(io_, device, link_, nullptr, options);
    api_ = std::make_unique<LocalApi>(*m);
    m->start();
    return m;
  }
  bool run_until(const std::function<bool()>& done, Duration limit = 5s) {
    return knit::testing::run_until(io_, done, limit);
  }
  localapi::ControlResponse ask(localapi::ControlRequest request) {
    std::optional<localapi::ControlResponse> answer;
    api_->handle_request(std::move(request), [&](localapi::ControlResponse r) { answer = std::move(r); });
    EXPECT_TRUE(run_until([&] { return answer.has_value(); }, 10s));
    return answer.value_or(localapi::ErrorReply{"no answer"});
  }
  std::string error_of(const localapi::ControlResponse& response) {
    auto* error = std::get_if<localapi::ErrorReply>(&response);
    return error ? error->message : std::string("(no error)");
  }
  std::string token() { return make_token(coordinator_.public_key(), {coordinator_.address()}); }

  SeededRandom rng_{31};
  asio::io_context io_;
  FakeCoordinator coordinator_;
  fs::path root_;
  RecordingLink link_;
  std::unique_ptr<Membership> membership_;
  std::unique_ptr<LocalApi> api_;
};

TEST_F(MembershipTest, UpAppliesTheMeshAndDownDisconnects) {
  FakeMeshDevice device(rng_);
  membership_ = make(device);
  EXPECT_NE(error_of(ask(localapi::StatusRequest{})).find("not joined"), std::string::npos);

  auto up = ask(localapi::UpRequest{token(), "host-a"});
  ASSERT_TRUE(std::holds_alternative<localapi::UpReply>(up)) << error_of(up);
  EXPECT_EQ(std::get<localapi::UpReply>(up).name, "host-a");
  EXPECT_FALSE(std::get<localapi::UpReply>(up).already_joined);
  ASSERT_EQ(coordinator_.registers.size(), 1u);
  EXPECT_EQ(coordinator_.registers[0].token, std::optional<std::string>(token()));
  EXPECT_EQ(coordinator_.registers[0].hostname, "host-a");
  EXPECT_TRUE(fs::exists(root_ / "state" / "mesh.json"));
  EXPECT_TRUE(fs::exists(root_ / "state" / "node.key"));
  EXPECT_FALSE(device.device().identity().empty());  // the node key is the WireGuard key

  // The map (peers 2 and 3, then a delta removing 3) reaches the device.
  ASSERT_TRUE(run_until([&] {
    return device.device().peer_count() == 1 && device.device().find_peer(testing::peer(2).node_key) != nullptr;
  }));
  EXPECT_EQ(link_.ops, (std::vector<std::string>{"up", "addr+ 100.64.0.1/32", "addr+ fd7a::1/128",
                                                 "route+ 100.64.0.0/10", "route+ fd7a::/48"}));

  auto status = ask(localapi::StatusRequest{});
  ASSERT_TRUE(std::holds_alternative<localapi::StatusReply>(status)) << error_of(status);
  const auto& report = std::get<localapi::StatusReply>(status);
  EXPECT_EQ(report.status.self.name, "host-a");
  EXPECT_EQ(report.status.self.node_key, device.device().identity().public_key);
  ASSERT_EQ(report.status.peers.size(), 1u);
  EXPECT_EQ(report.status.peers[0].name, "node-2");
  EXPECT_EQ(report.coordinator.state, "connected");

  auto ip = ask(localapi::IpRequest{});
  ASSERT_TRUE(std::holds_alternative<localapi::IpReply>(ip));
  EXPECT_EQ(std::get<localapi::IpReply>(ip).ipv4, IpAddress::parse("100.64.0.1").value());
  EXPECT_TRUE(std::holds_alternative<localapi::PingInfoReply>(ask(localapi::PingInfoRequest{"node-2"})));
  EXPECT_TRUE(std::holds_alternative<localapi::PingInfoReply>(ask(localapi::PingInfoRequest{"NODE-2"})));
  EXPECT_TRUE(std::holds_alternative<localapi::PingInfoReply>(ask(localapi::PingInfoRequest{"100.64.0.2"})));
  EXPECT_TRUE(std::holds_alternative<localapi::PingInfoReply>(ask(localapi::PingInfoRequest{"fd7a::2"})));
  EXPECT_NE(error_of(ask(localapi::PingInfoRequest{"node-3"})).find("knit status"), std::string::npos);

  // Up again: already there.
  auto again = ask(localapi::UpRequest{token(), ""});
  ASSERT_TRUE(std::holds_alternative<localapi::UpReply>(again));
  EXPECT_TRUE(std::get<localapi::UpReply>(again).already_joined);
  // Another mesh's token: refused.
  SeededRandom other_rng(99);
  FakeCoordinator other(io_, other_rng);
  EXPECT_NE(error_of(ask(localapi::UpRequest{make_token(other.public_key(), {other.address()}), ""})).find("knit logout"),
            std::string::npos);

  // Down: disconnected, still a member (mesh.json says so).
  link_.ops.clear();
  auto down = ask(localapi::DownRequest{});
  ASSERT_TRUE(std::holds_alternative<localapi::DownReply>(down));
  EXPECT_TRUE(std::get<localapi::DownReply>(down).was_joined);
  EXPECT_EQ(device.device().peer_count(), 0u);
  ASSERT_TRUE(fs::exists(root_ / "state" / "mesh.json"));
  auto saved = StateDir(root_ / "state").load_mesh();
  ASSERT_TRUE(saved);
  EXPECT_TRUE(saved->down);
  EXPECT_TRUE(fs::exists(root_ / "state" / "node.key"));
  EXPECT_EQ(link_.ops.size(), 4u);
  EXPECT_NE(error_of(ask(localapi::IpRequest{})).find("knit up"), std::string::npos);
  EXPECT_FALSE(std::get<localapi::DownReply>(ask(localapi::DownRequest{})).was_joined);

  // Up without a token reconnects: the same place, no token sent.
  auto back = ask(localapi::UpRequest{"", ""});
  ASSERT_TRUE(std::holds_alternative<localapi::UpReply>(back)) << error_of(back);
  EXPECT_EQ(std::get<localapi::UpReply>(back).ipv4, IpAddress::parse("100.64.0.1").value());
  EXPECT_EQ(coordinator_.registers.back().token, std::nullopt);
  ASSERT_TRUE(run_until([&] { return device.device().peer_count() == 1; }));
  EXPECT_FALSE(StateDir(root_ / "state").load_mesh()->down);
}

// Deltas are followed as deltas: a changed endpoint touches that peer alone, a removal none of
// the others (last_peer_changes().examined counts the peers compared with the device); the
// names listener hears only of the peers whose names changed (an endpoint is not a name).
TEST_F(MembershipTest, ADeltaTouchesOnlyThePeersItNames) {
  FakeMeshDevice device(rng_);
  membership_ = make(device);
  std::vector<std::optional<Membership::NamesChange>> heard;  // nullopt: "look at everything"
  membership_->set_names_listener([&](const Membership::NamesChange* change) {
    heard.push_back(change ? std::optional<Membership::NamesChange>(*change) : std::nullopt);
  });
  coordinator_.behaviour.deltas = {};
  auto up = ask(localapi::UpRequest{token(), "host-a"});
  ASSERT_TRUE(std::holds_alternative<localapi::UpReply>(up)) << error_of(up);
  ASSERT_TRUE(run_until([&] { return device.device().peer_count() == 2; }));
  EXPECT_EQ(membership_->last_peer_changes().examined, 2u);  // the full map: every peer

  control::PeerDelta moved;
  moved.version = 2;
  moved.changed = {testing::peer(2)};
  moved.changed[0].endpoints = {Endpoint::parse("198.51.100.7:5000").value()};
  coordinator_.send_to_all(moved);
  ASSERT_TRUE(run_until([&] { return membership_->peers().version == 2; }));
  EXPECT_EQ(membership_->last_peer_changes().examined, 1u);
  EXPECT_EQ(membership_->last_peer_changes().updated, 1u);
  EXPECT_EQ(device.device().find_peer(testing::peer(2).node_key)->endpoint, Endpoint::parse("198.51.100.7:5000"));
  ASSERT_FALSE(heard.empty());
  EXPECT_FALSE(heard.back().has_value());  // the full map: everything
  const std::size_t before_names = heard.size();
  // Not a name change: nobody is told.
  EXPECT_EQ(heard.size(), before_names);

  control::PeerDelta renamed;
  renamed.version = 3;
  renamed.changed = {testing::peer(2)};
  renamed.changed[0].endpoints = {Endpoint::parse("198.51.100.7:5000").value()};
  renamed.changed[0].name = "desk";
  coordinator_.send_to_all(renamed);
  ASSERT_TRUE(run_until([&] { return membership_->peers().version == 3; }));
  ASSERT_EQ(heard.size(), before_names + 1);
  ASSERT_TRUE(heard.back().has_value());
  ASSERT_EQ(heard.back()->gone.size(), 1u);
  ASSERT_EQ(heard.back()->came.size(), 1u);
  EXPECT_EQ(heard.back()->gone[0].name, testing::peer(2).name);
  EXPECT_EQ(heard.back()->came[0].name, "desk");

  control::PeerDelta gone = testing::FakeCoordinator::removal(3);
  gone.version = 4;
  coordinator_.send_to_all(gone);
  ASSERT_TRUE(run_until([&] { return membership_->peers().version == 4; }));
  EXPECT_EQ(membership_->last_peer_changes().examined, 0u);
  EXPECT_EQ(membership_->last_peer_changes().removed, 1u);
  EXPECT_EQ(device.device().peer_count(), 1u);
  EXPECT_EQ(membership_->peers().peers.size(), 1u);
  ASSERT_EQ(heard.size(), before_names + 2);
  ASSERT_TRUE(heard.back().has_value());
  ASSERT_EQ(heard.back()->gone.size(), 1u);
  EXPECT_EQ(heard.back()->gone[0].node_key, testing::peer(3).node_key);
  EXPECT_TRUE(heard.back()->came.empty());
}

TEST_F(MembershipTest, ARestartStaysDown) {
  {
    FakeMeshDevice device(rng_);
    membership_ = make(device);
    ASSERT_TRUE(std::holds_alternative<localapi::UpReply>(ask(localapi::UpRequest{token(), "host-a"})));
    ASSERT_TRUE(std::holds_alternative<localapi::DownReply>(ask(localapi::DownRequest{})));
    membership_.reset();
  }
  FakeMeshDevice fresh(rng_);
  membership_ = make(fresh);
  const std::size_t registers = coordinator_.registers.size();
  run_until([] { return false; }, 300ms);
  EXPECT_EQ(coordinator_.registers.size(), registers);  // stays away
  EXPECT_NE(error_of(ask(localapi::StatusRequest{})).find("down"), std::string::npos);
  // A token of the same mesh is not needed, and not used.
  auto back = ask(localapi::UpRequest{token(), ""});
  ASSERT_TRUE(std::holds_alternative<localapi::UpReply>(back)) << error_of(back);
  EXPECT_EQ(coordinator_.registers.back().token, std::nullopt);
}

TEST_F(MembershipTest, LogoutTellsTheCoordinatorAndForgetsTheMesh) {
  FakeMeshDevice device(rng_);
  membership_ = make(device);
  ASSERT_TRUE(std::holds_alternative<localapi::UpReply>(ask(localapi::UpRequest{token(), "host-a"})));
  auto out = ask(localapi::LogoutRequest{});
  ASSERT_TRUE(std::holds_alternative<localapi::LogoutReply>(out)) << error_of(out);
  EXPECT_EQ(std::get<localapi::LogoutReply>(out), (localapi::LogoutReply{true, true, "host-a", ""}));
  EXPECT_EQ(coordinator_.logouts, 1);
  EXPECT_FALSE(fs::exists(root_ / "state" / "mesh.json"));
  EXPECT_EQ(device.device().peer_count(), 0u);
  EXPECT_NE(error_of(ask(localapi::StatusRequest{})).find("not joined"), std::string::npos);
  EXPECT_FALSE(std::get<localapi::LogoutReply>(ask(localapi::LogoutRequest{})).was_member);
}

TEST_F(MembershipTest, LogoutWhileDownConnectsToSaySo) {
  FakeMeshDevice device(rng_);
  membership_ = make(device);
  ASSERT_TRUE(std::holds_alternative<localapi::UpReply>(ask(localapi::UpRequest{token(), "host-a"})));
  ASSERT_TRUE(std::holds_alternative<localapi::DownReply>(ask(localapi::DownRequest{})));
  auto out = ask(localapi::LogoutRequest{});
  ASSERT_TRUE(std::holds_alternative<localapi::LogoutReply>(out)) << error_of(out);
  EXPECT_TRUE(std::get<localapi::LogoutReply>(out).coordinator_told);
  EXPECT_EQ(coordinator_.logouts, 1);
  EXPECT_EQ(device.device().peer_count(), 0u);  // the goodbye session configured nothing
  EXPECT_FALSE(fs::exists(root_ / "state" / "mesh.json"));
}

TEST_F(MembershipTest, LogoutWithAnOlderCoordinatorForgetsHereAndSaysSo) {
  coordinator_.behaviour.logout = false;
  FakeMeshDevice device(rng_);
  membership_ = make(device);
  ASSERT_TRUE(std::holds_alternative<localapi::UpReply>(ask(localapi::UpRequest{token(), "host-a"})));
  ASSERT_TRUE(run_until([&] { return membership_->coordinator_connected(); }));
  auto out = ask(localapi::LogoutRequest{});
  ASSERT_TRUE(std::holds_alternative<localapi::LogoutReply>(out)) << error_of(out);
  const auto& reply = std::get<localapi::LogoutReply>(out);
  EXPECT_TRUE(reply.was_member);
  EXPECT_FALSE(reply.coordinator_told);
  EXPECT_NE(reply.detail.find("older"), std::string::npos) << reply.detail;
  EXPECT_EQ(coordinator_.logouts, 0);  // never sent a type it does not know
  EXPECT_FALSE(fs::exists(root_ / "state" / "mesh.json"));
}

TEST_F(MembershipTest, LogoutWithTheCoordinatorAwayForgetsHereAfterTheTimeout) {
  FakeMeshDevice device(rng_);
  membership_ = make(device);
  ASSERT_TRUE(std::holds_alternative<localapi::UpReply>(ask(localapi::UpRequest{token(), "host-a"})));
  ASSERT_TRUE(std::holds_alternative<localapi::DownReply>(ask(localapi::DownRequest{})));
  coordinator_.crash();
  auto out = ask(localapi::LogoutRequest{});
  ASSERT_TRUE(std::holds_alternative<localapi::LogoutReply>(out)) << error_of(out);
  EXPECT_FALSE(std::get<localapi::LogoutReply>(out).coordinator_told);
  EXPECT_NE(std::get<localapi::LogoutReply>(out).detail.find("no answer"), std::string::npos);
  EXPECT_FALSE(fs::exists(root_ / "state" / "mesh.json"));
}

TEST_F(MembershipTest, ARestartRejoinsWithoutTheToken) {
  {
    FakeMeshDevice device(rng_);
    membership_ = make(device);
    ASSERT_TRUE(std::holds_alternative<localapi::UpReply>(ask(localapi::UpRequest{token(), "host-a"})));
    membership_.reset();
  }
  FakeMeshDevice fresh(rng_);
  membership_ = make(fresh);
  // Addresses come back from mesh.json at once, peers once the coordinator answers.
  EXPECT_TRUE(std::holds_alternative<localapi::IpReply>(ask(localapi::IpRequest{})));
  ASSERT_TRUE(run_until([&] { return fresh.device().peer_count() == 1; }));
  ASSERT_EQ(coordinator_.registers.size(), 2u);
  EXPECT_EQ(coordinator_.registers[1].token, std::nullopt);
  EXPECT_EQ(coordinator_.registers[0].hostname, coordinator_.registers[1].hostname);
}

TEST_F(MembershipTest, ARefusedRejoinForgetsTheMesh) {
  {
    FakeMeshDevice device(rng_);
    membership_ = make(device);
    ASSERT_TRUE(std::holds_alternative<localapi::UpReply>(ask(localapi::UpRequest{token(), "host-a"})));
    membership_.reset();
  }
  coordinator_.behaviour.respond = [](const control::RegisterRequest&) {
    control::RegisterResponse r;
    r.error_code = control::ErrorCode::not_registered;
    return r;
  };
  FakeMeshDevice fresh(rng_);
  membership_ = make(fresh);
  ASSERT_TRUE(run_until([&] { return !fs::exists(root_ / "state" / "mesh.json"); }));
  const std::string error = error_of(ask(localapi::StatusRequest{}));
  EXPECT_NE(error.find("no longer knows this node"), std::string::npos) << error;
}

TEST_F(MembershipTest, UpReportsWhyItFailed) {
  FakeMeshDevice device(rng_);
  membership_ = make(device);
  EXPECT_EQ(error_of(ask(localapi::UpRequest{"knit1-AAAA", ""})).empty(), false);
  EXPECT_NE(error_of(ask(localapi::UpRequest{"hello", ""})).find("knit1-"), std::string::npos);

  tcp::acceptor probe(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const std::uint16_t closed = probe.local_endpoint().port();
  probe.close();
  EXPECT_EQ(error_of(ask(localapi::UpRequest{make_token(coordinator_.public_key(), {{"127.0.0.1", closed}}), ""})),
            "cannot reach the coordinator at 127.0.0.1:" + std::to_string(closed) + ": connection refused");

  coordinator_.behaviour.respond = [](const control::RegisterRequest&) {
    control::RegisterResponse r;
    r.error_code = control::ErrorCode::token_expired;
    return r;
  };
  EXPECT_EQ(error_of(ask(localapi::UpRequest{token(), ""})), control::human_message(control::ErrorCode::token_expired));
  EXPECT_FALSE(fs::exists(root_ / "state" / "mesh.json"));

  coordinator_.behaviour.answer = false;
  const auto started = Clock::now();
  EXPECT_NE(error_of(ask(localapi::UpRequest{token(), ""})).find("no answer"), std::string::npos);
  EXPECT_LT(Clock::now() - started, 6s);
}

TEST_F(MembershipTest, DownCancelsAPendingUp) {
  coordinator_.behaviour.answer = false;
  FakeMeshDevice device(rng_);
  membership_ = make(device);
  std::optional<localapi::ControlResponse> up;
  api_->handle_request(localapi::UpRequest{token(), ""}, [&](localapi::ControlResponse r) { up = std::move(r); });
  run_until([&] { return !coordinator_.registers.empty(); });
  EXPECT_NE(error_of(ask(localapi::UpRequest{token(), ""})).find("still waiting"), std::string::npos);
  ask(localapi::DownRequest{});
  ASSERT_TRUE(up.has_value());
  EXPECT_NE(error_of(*up).find("cancelled"), std::string::npos);
}

// Issue 18: a token names several coordinators of one mesh; when the one in use dies, knitd
// moves to another within 5 s, and the tunnels WireGuard holds never go away meanwhile.
TEST_F(MembershipTest, AMovingCoordinatorLeavesTheTunnelsUp) {
  SeededRandom other_rng(77);
  FakeCoordinator second(io_, other_rng, coordinator_.private_key());
  FakeMeshDevice device(rng_);
  membership_ = make(device);
  const std::string both = make_token(coordinator_.public_key(), {coordinator_.address(), second.address()});
  ASSERT_TRUE(std::holds_alternative<localapi::UpReply>(ask(localapi::UpRequest{both, "host-a"})));
  const auto tunnel_up = [&] { return device.device().find_peer(testing::peer(2).node_key) != nullptr; };
  ASSERT_TRUE(run_until([&] { return device.device().peer_count() == 1 && tunnel_up(); }));
  run_until([] { return false; }, 1200ms);  // a settled session

  coordinator_.crash();
  const auto crashed = Clock::now();
  bool tunnel_stayed = true;
  ASSERT_TRUE(run_until([&] {
    tunnel_stayed = tunnel_stayed && tunnel_up();
    return second.registers.size() == 1 && membership_->coordinator_connected();
  }));
  EXPECT_LT(Clock::now() - crashed, 5s);
  EXPECT_TRUE(tunnel_stayed);
  EXPECT_EQ(second.registers[0].token, std::nullopt);  // a rejoin with the node key, not a join
  auto status = ask(localapi::StatusRequest{});
  ASSERT_TRUE(std::holds_alternative<localapi::StatusReply>(status)) << error_of(status);
  EXPECT_EQ(std::get<localapi::StatusReply>(status).coordinator.address, second.address().to_string());
  EXPECT_TRUE(tunnel_up());
}

}  // namespace
}  // namespace knit::agent
