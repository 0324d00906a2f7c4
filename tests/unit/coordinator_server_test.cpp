// The control server in-process on 127.0.0.1:0 with a temporary state directory, driven by real
// TCP clients that speak the Noise IK channel as an agent does: joins and rejoins, every kind of
// refused token, peer maps and deltas (checked by applying them), endpoint updates, Ping/Pong,
// an admin removing a node through its own Store handle, ephemeral expiry on a manual clock,
// and hostile or slow clients (garbage, a stalled handshake, oversized frames, bad JSON, an
// idle agent, one that never reads) that are dropped without disturbing the others.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <future>
#include <thread>

#include "base/random.hpp"
#include "control/channel.hpp"
#include "control/messages.hpp"
#include "control/peer_map.hpp"
#include "control/token.hpp"
#include "coordinator/server.hpp"
#include "coordinator/sqlite_store.hpp"
#include "coordinator/state_dir.hpp"
#include "coordinator/token_issue.hpp"
#include "wg/crypto.hpp"

namespace knit::coordinator {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using control::ErrorCode;
using SteadyClock = std::chrono::steady_clock;

constexpr UnixSeconds kStart = 1'700'000'000;

class TempDir {
 public:
  TempDir() {
    std::string pattern = (fs::temp_directory_path() / "knit-server-XXXXXX").string();
    path_ = ::mkdtemp(pattern.data());
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

ByteSpan bytes_of(std::string_view text) {
  return ByteSpan(reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
}

int connect_to(std::uint16_t port, int receive_buffer = 0) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (receive_buffer > 0)
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &receive_buffer, sizeof receive_buffer);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

template <typename Pred>
bool eventually(Pred pred, std::chrono::milliseconds within = 2000ms) {
  const auto until = SteadyClock::now() + within;
  while (!pred()) {
    if (SteadyClock::now() > until) return false;
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

bool write_all(int fd, ByteSpan data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data = data.subspan(static_cast<std::size_t>(n));
  }
  return true;
}

// Waits until the server closes fd (end of stream or reset), discarding what it sends first.
bool closed_by_server(int fd, std::chrono::milliseconds within) {
  const auto until = SteadyClock::now() + within;
  std::array<std::uint8_t, 4096> buffer{};
  while (SteadyClock::now() < until) {
    pollfd p{fd, POLLIN, 0};
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - SteadyClock::now());
    if (::poll(&p, 1, static_cast<int>(std::max<long>(left.count(), 1))) <= 0) continue;
    const ssize_t n = ::recv(fd, buffer.data(), buffer.size(), 0);
    if (n <= 0) return true;
  }
  return false;
}

// An agent as far as the control channel goes: connects, registers, and keeps the peer map it is
// sent up to date by applying every delta (a delta that does not apply marks the map broken).
class Agent {
 public:
  Agent(std::uint16_t port, const wg::PublicKey& coordinator, wg::PrivateKey node_key,
        int receive_buffer = 0)
      : node_key_(node_key),
        public_key_(wg::crypto::public_key_of(node_key)),
        channel_(control::Channel::initiator(node_key, coordinator)),
        fd_(connect_to(port, receive_buffer)) {}
  ~Agent() { disconnect(); }
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  void disconnect() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  // Sends message 1 and reads message 2.
  std::optional<control::RegisterResponse> join(const control::RegisterRequest& request) {
    Bytes frame;
    if (channel_.start(rng_, bytes_of(control::encode(request)), frame) != control::ChannelError::ok)
      return std::nullopt;
    message1_ = frame;
    if (!write_all(fd_, frame)) return std::nullopt;
    auto event = next_event(3s);
    if (!event || event->kind != control::ChannelEvent::Kind::handshake_done) return std::nullopt;
    auto parsed = control::parse_message(
        std::string_view(reinterpret_cast<const char*>(event->data.data()), event->data.size()));
    auto* response = std::get_if<control::RegisterResponse>(&parsed);
    if (response == nullptr) return std::nullopt;
    return *response;
  }

  std::optional<control::RegisterResponse> join(std::optional<std::string> token,
                                                std::string hostname = "host") {
    control::RegisterRequest request;
    request.token = std::move(token);
    request.disco_key = public_key_;
    request.disco_key[0] ^= 0x55;
    request.hostname = std::move(hostname);
    request.os = "linux";
    request.version = "test";
    return join(request);
  }

  bool send(const control::Message& message) { return send_text(control::encode(message)); }
  bool send_text(std::string_view text) {
    Bytes frame;
    if (channel_.seal(bytes_of(text), frame) != control::ChannelError::ok) return false;
    return write_all(fd_, frame);
  }
  bool send_raw(ByteSpan bytes) { return write_all(fd_, bytes); }

  // The next message, after it updated the peer map; nullopt on timeout or a closed stream.
  std::optional<control::Message> next(std::chrono::milliseconds within = 3000ms) {
    auto event = next_event(within);
    if (!event || event->kind != control::ChannelEvent::Kind::message) return std::nullopt;
    auto message = control::to_message(control::parse_message(
        std::string_view(reinterpret_cast<const char*>(event->data.data()), event->data.size())));
    if (!message) {
      map_broken_ = true;
      return std::nullopt;
    }
    if (auto* map = std::get_if<control::PeerMap>(&*message)) {
      map_ = *map;
      control::sort_by_node_key(map_.peers);
      have_map_ = true;
    } else if (auto* delta = std::get_if<control::PeerDelta>(&*message)) {
      if (!have_map_ || !control::apply_delta(map_, *delta)) map_broken_ = true;
    } else if (auto* relays = std::get_if<control::RelayMap>(&*message)) {
      relays_ = *relays;
    }
    return message;
  }

  // Reads messages until pred() holds; false on timeout or a closed stream.
  template <typename Pred>
  bool wait_until(Pred pred, std::chrono::milliseconds within = 3000ms) {
    const auto until = SteadyClock::now() + within;
    while (!pred()) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(until - SteadyClock::now());
      if (left.count() <= 0) return false;
      if (!next(left) && closed_) return false;
    }
    return true;
  }

  template <typename T>
  std::optional<T> wait_for(std::chrono::milliseconds within = 3000ms) {
    std::optional<T> found;
    const auto until = SteadyClock::now() + within;
    while (!found && SteadyClock::now() < until) {
      auto message = next(std::chrono::duration_cast<std::chrono::milliseconds>(
          until - SteadyClock::now() + 1ms));
      if (!message) {
        if (closed_) break;
        continue;
      }
      if (auto* m = std::get_if<T>(&*message)) found = *m;
    }
    return found;
  }

  const control::PeerInfo* peer(const wg::PublicKey& key) const {
    for (const auto& p : map_.peers)
      if (p.node_key == key) return &p;
    return nullptr;
  }
  bool closed_by_server(std::chrono::milliseconds within = 3000ms) {
    return knit::coordinator::closed_by_server(fd_, within);
  }

  const wg::PrivateKey& node_key() const { return node_key_; }
  const wg::PublicKey& public_key() const { return public_key_; }
  const control::PeerMap& map() const { return map_; }
  bool have_map() const { return have_map_; }
  bool map_broken() const { return map_broken_; }
  const control::RelayMap& relays() const { return relays_; }
  const Bytes& message1() const { return message1_; }
  int fd() const { return fd_; }

 private:
  std::optional<control::ChannelEvent> next_event(std::chrono::milliseconds within) {
    const auto until = SteadyClock::now() + within;
    for (;;) {
      if (in_at_ < in_.size()) {
        ByteSpan input(in_.data() + in_at_, in_.size() - in_at_);
        control::ChannelEvent event = channel_.feed(input);
        in_at_ = in_.size() - input.size();
        if (event.kind != control::ChannelEvent::Kind::need_more) return event;
      }
      in_.clear();
      in_at_ = 0;
      if (closed_ || fd_ < 0) return std::nullopt;
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(until - SteadyClock::now());
      if (left.count() <= 0) return std::nullopt;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      std::array<std::uint8_t, 65536> buffer{};
      const ssize_t n = ::recv(fd_, buffer.data(), buffer.size(), 0);
      if (n <= 0) {
        closed_ = true;
        return std::nullopt;
      }
      in_.assign(buffer.begin(), buffer.begin() + n);
    }
  }

  SystemRandom rng_;
  wg::PrivateKey node_key_;
  wg::PublicKey public_key_;
  control::Channel channel_;
  int fd_;
  Bytes in_;
  std::size_t in_at_ = 0;
  bool closed_ = false;
  Bytes message1_;
  control::PeerMap map_;
  bool have_map_ = false;
  bool map_broken_ = false;
  control::RelayMap relays_;
};

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = open_store(dir_.path());
    ASSERT_TRUE(store) << store.error().message;
    store_ = std::move(*store);
    auto admin = open_store(dir_.path());
    ASSERT_TRUE(admin);
    admin_ = std::move(*admin);
    auto mesh = store_->ensure_mesh(std::nullopt, rng_);
    ASSERT_TRUE(mesh);
    mesh_ = *mesh;
    coordinator_key_ = wg::crypto::generate_private_key(rng_);
    coordinator_public_ = wg::crypto::public_key_of(coordinator_key_);
  }
  void TearDown() override { stop(); }

  void start(ServerOptions options = {}) {
    options.now = [this] { return clock_.load(); };
    if (options.publish_delay == ServerOptions{}.publish_delay) options.publish_delay = 10ms;
    server_ = std::make_unique<Server>(io_, *store_, coordinator_key_, mesh_, server_rng_, options);
    server_->start(asio::ip::tcp::endpoint(asio::ip::address_v4::loopback(), 0));
    port_ = server_->local_endpoint().port();
    thread_ = std::thread([this] { io_.run(); });
  }
  void stop() {
    if (!server_) return;
    asio::post(io_, [this] { server_->stop(); });
    thread_.join();
    server_.reset();
  }

  // Runs f on the server's loop and returns what it returned.
  template <typename F>
  auto on_loop(F f) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto result = task.get_future();
    asio::post(io_, [&task] { task(); });
    return result.get();
  }
  ServerCounters counters() {
    return on_loop([this] { return server_->counters(); });
  }

  std::string token(TokenOptions options = {}) {
    auto issued = issue_token(*admin_, options, {control::HostPort{"127.0.0.1", port_}},
                              coordinator_public_, rng_, clock_.load());
    EXPECT_TRUE(issued) << (issued ? "" : issued.error().message);
    return issued ? issued->text : std::string();
  }
  std::string reusable_token() {
    TokenOptions options;
    options.reusable = true;
    return token(options);
  }

  std::unique_ptr<Agent> agent() {
    return std::make_unique<Agent>(port_, coordinator_public_,
                                   wg::crypto::generate_private_key(rng_));
  }
  // A joined agent that has its first full map.
  std::unique_ptr<Agent> joined(const std::string& join_token, std::string hostname) {
    auto a = agent();
    auto response = a->join(join_token, std::move(hostname));
    EXPECT_TRUE(response && response->ok);
    EXPECT_TRUE(a->wait_until([&] { return a->have_map(); }));
    return a;
  }

  TempDir dir_;
  SystemRandom rng_;
  SystemRandom server_rng_;
  std::unique_ptr<Store> store_;  // the server's connection
  std::unique_ptr<Store> admin_;  // what the admin CLI would open
  MeshSettings mesh_;
  wg::PrivateKey coordinator_key_;
  wg::PublicKey coordinator_public_{};
  std::atomic<UnixSeconds> clock_{kStart};
  asio::io_context io_;
  std::unique_ptr<Server> server_;
  std::thread thread_;
  std::uint16_t port_ = 0;
};

// ---- joining ----

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
  ASSERT_TRUE(std::holds_alternative<control::PeerMap>(*map));
  EXPECT_TRUE(std::get<control::PeerMap>(*map).peers.empty());

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
  const std::vector<Endpoint> endpoints{*Endpoint::parse("192.0.2.7:41641"),
                                        *Endpoint::parse("[2001:db8::7]:41641")};
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
  // Relays register through the store (knit-relay's join); the server notices by polling.
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
  ASSERT_TRUE(agents[0]->send(control::EndpointUpdate{{*Endpoint::parse("198.51.100.1:1")}}));
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
