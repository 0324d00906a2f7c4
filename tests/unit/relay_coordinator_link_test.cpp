// knit-relay's CoordinatorLink against a real coordinator Server on loopback (the coordinator
// fixture): it joins with a relay token, follows the membership and the relay map, caches them
// (0600, atomically) so a restart while the coordinator is down still admits members,
// reconnects after a coordinator restart, and stops with a clear sentence for a bad token.
#include <sys/stat.h>

#include <condition_variable>
#include <mutex>

#include "base/key_file.hpp"
#include "relay/coordinator_link.hpp"
#include "relay/coordinator_link_state.hpp"
#include "tests/support/coordinator_server_fixture.hpp"

namespace knit::coordinator {
namespace {

using relay::CoordinatorLink;

// What the link told its listener, readable from the test thread.
class Recorder final : public relay::MembershipListener {
 public:
  void on_members(const std::vector<wg::PublicKey>& node_keys) override {
    std::lock_guard lock(mutex_);
    members_ = node_keys;
    ++member_calls_;
  }
  void on_relays(const std::vector<control::RelayInfo>& relays) override {
    std::lock_guard lock(mutex_);
    relays_ = relays;
  }
  void on_coordinator(bool connected, const std::string& detail) override {
    std::lock_guard lock(mutex_);
    connected_ = connected;
    details_.push_back(detail);
  }

  std::vector<wg::PublicKey> members() const {
    std::lock_guard lock(mutex_);
    return members_;
  }
  bool has_member(const wg::PublicKey& key) const {
    auto all = members();
    return std::find(all.begin(), all.end(), key) != all.end();
  }
  int member_calls() const {
    std::lock_guard lock(mutex_);
    return member_calls_;
  }
  std::vector<control::RelayInfo> relays() const {
    std::lock_guard lock(mutex_);
    return relays_;
  }
  bool connected() const {
    std::lock_guard lock(mutex_);
    return connected_;
  }
  std::string last_detail() const {
    std::lock_guard lock(mutex_);
    return details_.empty() ? std::string() : details_.back();
  }
  std::size_t detail_count() const {
    std::lock_guard lock(mutex_);
    return details_.size();
  }

 private:
  mutable std::mutex mutex_;
  std::vector<wg::PublicKey> members_;
  int member_calls_ = 0;
  std::vector<control::RelayInfo> relays_;
  bool connected_ = false;
  std::vector<std::string> details_;
};

unsigned mode_of(const fs::path& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) return 0;
  return st.st_mode & 07777;
}

class CoordinatorLinkTest : public ServerTest {
 protected:
  void SetUp() override {
    ServerTest::SetUp();
    state_dir_ = relay_dir_.path() / "state";
  }
  void TearDown() override {
    stop_link();
    ServerTest::TearDown();
  }

  std::string relay_token(bool reusable = false) {
    TokenOptions options;
    options.relay = true;
    options.reusable = reusable;
    return token(options);
  }

  CoordinatorLink::Options options(std::optional<std::string> join_token) {
    CoordinatorLink::Options o;
    o.token = std::move(join_token);
    o.state_dir = state_dir_;
    o.name = "fra";
    o.advertise = {"relay.example:443", "192.0.2.7:443"};
    o.stun_port = 3478;
    o.connect_timeout = 1s;
    o.handshake_timeout = 2s;
    o.backoff.initial = 50ms;
    o.backoff.max = 200ms;
    o.backoff.recovering_max = 200ms;
    return o;
  }

  // Makes the link (its constructor runs here) and starts it on its own loop.
  void start_link(CoordinatorLink::Options o) {
    link_ = std::make_unique<CoordinatorLink>(link_io_, std::move(o), recorder_);
    work_.emplace(link_io_.get_executor());
    link_thread_ = std::thread([this] { link_io_.run(); });
    on_link([this] { link_->start(); });
  }
  void stop_link() {
    if (!link_) return;
    on_link([this] { link_->stop(); });
    work_.reset();
    link_thread_.join();
    link_.reset();
    link_io_.restart();
  }
  template <typename F>
  void on_link(F f) {
    std::promise<void> done;
    asio::post(link_io_, [&] {
      f();
      done.set_value();
    });
    done.get_future().get();
  }

  // The coordinator again, on the same port and state, after stop().
  void restart_server() {
    io_.restart();
    ServerOptions options;
    options.now = [this] { return clock_.load(); };
    options.publish_delay = 10ms;
    server_ = std::make_unique<Server>(io_, *store_, coordinator_key_, mesh_, server_rng_, options);
    server_->start(asio::ip::tcp::endpoint(asio::ip::address_v4::loopback(), port_));
    thread_ = std::thread([this] { io_.run(); });
  }

  TempDir relay_dir_;
  fs::path state_dir_;
  Recorder recorder_;
  asio::io_context link_io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::thread link_thread_;
  std::unique_ptr<CoordinatorLink> link_;
};

TEST_F(CoordinatorLinkTest, JoinsFollowsTheMembershipAndCachesIt) {
  ServerOptions server_options;
  start(server_options);
  const std::string t = reusable_token();
  auto a = joined(t, "alpha");
  auto b = joined(t, "beta");
  start_link(options(relay_token()));
  ASSERT_TRUE(eventually([&] { return recorder_.connected(); })) << recorder_.last_detail();
  ASSERT_TRUE(eventually([&] {
    return recorder_.has_member(a->public_key()) && recorder_.has_member(b->public_key());
  }));
  const wg::PublicKey relay_public = wg::crypto::public_key_of(link_->relay_key());
  auto relays = recorder_.relays();
  ASSERT_EQ(relays.size(), 1u);
  EXPECT_EQ(relays[0].name, "fra");
  EXPECT_EQ(relays[0].node_key, relay_public);
  EXPECT_EQ(relays[0].addresses.size(), 2u);
  EXPECT_EQ(relays[0].stun_port, 3478);
  // Agents see it in their relay map.
  ASSERT_TRUE(a->wait_until([&] { return !a->relays().relays.empty(); }));
  EXPECT_EQ(a->relays().relays[0].node_key, relay_public);

  // Files: the key and the caches, all private.
  EXPECT_EQ(mode_of(state_dir_ / relay::kRelayKeyFile), 0600u);
  EXPECT_EQ(mode_of(state_dir_ / relay::kCoordinatorFile), 0600u);
  ASSERT_TRUE(eventually([&] { return mode_of(state_dir_ / relay::kMembershipFile) == 0600u; }));
  relay::LinkState state(state_dir_);
  auto cached = state.load_membership();
  ASSERT_TRUE(cached);
  EXPECT_EQ(cached->members.size(), 2u);
  EXPECT_EQ(cached->relays.size(), 1u);

  // A removed node leaves the membership, and the cache, within a second or so.
  const auto removed_at = SteadyClock::now();
  ASSERT_TRUE(admin_->remove_node("beta"));
  ASSERT_TRUE(eventually([&] { return !recorder_.has_member(b->public_key()); }, 2000ms));
  EXPECT_LT(SteadyClock::now() - removed_at, 1500ms);
  EXPECT_TRUE(recorder_.has_member(a->public_key()));
  ASSERT_TRUE(eventually([&] {
    auto now_cached = state.load_membership();
    return now_cached && now_cached->members.size() == 1;
  }));

  // Presence changes (a node going offline) do not bother the listener.
  const int calls = recorder_.member_calls();
  a->disconnect();
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(recorder_.member_calls(), calls);
}

TEST_F(CoordinatorLinkTest, RestartWithTheCoordinatorDownAdmitsFromTheCache) {
  start();
  auto a = joined(reusable_token(), "alpha");
  start_link(options(relay_token()));
  ASSERT_TRUE(eventually([&] { return recorder_.has_member(a->public_key()); }));
  ASSERT_TRUE(eventually([&] { return fs::exists(state_dir_ / relay::kMembershipFile); }));
  const wg::PublicKey key_before = wg::crypto::public_key_of(link_->relay_key());
  stop_link();
  stop();

  // A new process: no token, coordinator down. The cache is handed over in start() itself.
  Recorder fresh;
  link_ = std::make_unique<CoordinatorLink>(link_io_, options(std::nullopt), fresh);
  EXPECT_EQ(wg::crypto::public_key_of(link_->relay_key()), key_before);
  link_->start();  // the loop is not running yet: only the cache can have been read
  EXPECT_TRUE(fresh.has_member(a->public_key()));
  ASSERT_EQ(fresh.relays().size(), 1u);
  EXPECT_EQ(fresh.relays()[0].name, "fra");
  EXPECT_FALSE(fresh.connected());
  work_.emplace(link_io_.get_executor());
  link_thread_ = std::thread([this] { link_io_.run(); });
  ASSERT_TRUE(eventually([&] { return fresh.detail_count() > 0; }));
  EXPECT_NE(fresh.last_detail().find("cannot reach the coordinator"), std::string::npos)
      << fresh.last_detail();
  EXPECT_TRUE(fresh.has_member(a->public_key()));  // unreachable is not forgetting
  stop_link();
}

TEST_F(CoordinatorLinkTest, ReconnectsWithoutTheTokenAfterACoordinatorRestart) {
  start();
  auto a = joined(reusable_token(), "alpha");
  start_link(options(relay_token()));  // one-use: a reconnect must not need it again
  ASSERT_TRUE(eventually([&] { return recorder_.connected(); }));
  // The membership comes after the answer (the map's pages follow it): have it before the stop.
  ASSERT_TRUE(eventually([&] { return recorder_.has_member(a->public_key()); }));
  stop();
  ASSERT_TRUE(eventually([&] { return !recorder_.connected(); }));
  EXPECT_TRUE(recorder_.has_member(a->public_key()));
  restart_server();
  ASSERT_TRUE(eventually([&] { return recorder_.connected(); }, 5000ms)) << recorder_.last_detail();
  EXPECT_TRUE(recorder_.has_member(a->public_key()));
  auto relays = admin_->list_relays();
  ASSERT_TRUE(relays);
  ASSERT_EQ(relays->size(), 1u);
  EXPECT_TRUE(relays->front().online);

  // A node joining while connected reaches the relay.
  auto b = joined(reusable_token(), "beta");
  ASSERT_TRUE(eventually([&] { return recorder_.has_member(b->public_key()); }));
}

TEST_F(CoordinatorLinkTest, UsedOrNodeTokensStopTheLinkWithASentence) {
  start();
  const std::string used = relay_token();
  {
    auto first = agent();
    control::RelayRegister hello;
    hello.token = used;
    hello.name = "other";
    hello.addresses = {*control::HostPort::parse("x.example:443")};
    auto answer = first->hello(hello);
    ASSERT_TRUE(answer && std::get<control::RelayRegisterResponse>(*answer).ok);
  }
  start_link(options(used));
  ASSERT_TRUE(eventually([&] { return recorder_.detail_count() > 0; }));
  EXPECT_FALSE(recorder_.connected());
  EXPECT_NE(recorder_.last_detail().find("already been used"), std::string::npos)
      << recorder_.last_detail();
  EXPECT_NE(recorder_.last_detail().find("token create --relay"), std::string::npos);
  std::this_thread::sleep_for(400ms);
  EXPECT_EQ(recorder_.detail_count(), 1u);  // stopped: no retries
  stop_link();

  Recorder other;
  link_ = std::make_unique<CoordinatorLink>(link_io_, options(reusable_token()), other);
  work_.emplace(link_io_.get_executor());
  link_thread_ = std::thread([this] { link_io_.run(); });
  on_link([this] { link_->start(); });
  ASSERT_TRUE(eventually([&] { return other.detail_count() > 0; }));
  EXPECT_NE(other.last_detail().find("does not accept this relay token"), std::string::npos)
      << other.last_detail();
}

TEST_F(CoordinatorLinkTest, BadOptionsAndAFirstStartWithoutTokenThrow) {
  EXPECT_THROW(CoordinatorLink(link_io_, options("knit1-not-a-token"), recorder_), std::runtime_error);
  auto bad_name = options(std::nullopt);
  bad_name.name = "Not A Label";
  EXPECT_THROW(CoordinatorLink(link_io_, bad_name, recorder_), std::runtime_error);
  auto bad_address = options(std::nullopt);
  bad_address.advertise = {"no-port"};
  EXPECT_THROW(CoordinatorLink(link_io_, bad_address, recorder_), std::runtime_error);
  CoordinatorLink never_joined(link_io_, options(std::nullopt), recorder_);
  try {
    never_joined.start();
    ADD_FAILURE() << "started without a coordinator";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find("--token"), std::string::npos) << error.what();
  }
  // A damaged cache is refused with what to do, never half trusted.
  relay::LinkState state(state_dir_);
  state.save_coordinator({{*control::HostPort::parse("127.0.0.1:1")}, coordinator_public_});
  ASSERT_FALSE(knit::write_private_file(state_dir_ / relay::kMembershipFile,
                                  bytes_of(R"({"members": ["AAAA"], "relay_map": {}})"), true));
  CoordinatorLink damaged(link_io_, options(std::nullopt), recorder_);
  EXPECT_THROW(damaged.start(), std::runtime_error);
}

TEST(RelayLinkState, FilesRoundTripAndHostileOnesAreRefused) {
  relay::MembershipCache cache;
  cache.members = {wg::PublicKey{}, wg::PublicKey{}};
  cache.members[0].fill(1);
  cache.members[1].fill(2);
  cache.relays = {{"fra", cache.members[0], {*control::HostPort::parse("[2001:db8::1]:443")}, 3478}};
  std::string why;
  auto back = relay::parse_membership(relay::encode_membership(cache), why);
  ASSERT_TRUE(back) << why;
  EXPECT_EQ(*back, cache);
  relay::CoordinatorRecord record{{*control::HostPort::parse("coord.example:7443")}, cache.members[1]};
  auto record_back = relay::parse_coordinator_record(relay::encode_coordinator_record(record), why);
  ASSERT_TRUE(record_back) << why;
  EXPECT_EQ(*record_back, record);
  for (const char* bad : {"", "[]", "{}", R"({"members": "x", "relay_map": {}})",
                          R"({"members": [], "relay_map": {"v": 1, "type": "ping", "seq": 1}})",
                          R"({"members": ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="],
                              "relay_map": {"v": 1, "type": "relay_map", "relays": []}})",
                          R"({"members": [], "relay_map": {"v": 1, "type": "relay_map",
                              "relays": [{"name": "x", "node_key": "AQ==", "addresses": [], "stun_port": 0}]}})"}) {
    EXPECT_FALSE(relay::parse_membership(bad, why)) << bad;
  }
  for (const char* bad : {"{}", R"({"addresses": [], "coordinator_key": "x"})",
                          R"({"addresses": ["h:1"], "coordinator_key": "short"})",
                          R"({"addresses": ["no-port"], "coordinator_key": "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE="})"}) {
    EXPECT_FALSE(relay::parse_coordinator_record(bad, why)) << bad;
  }
}

}  // namespace
}  // namespace knit::coordinator
