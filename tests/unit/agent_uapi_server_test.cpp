// The UAPI server on a real unix socket: plain blocking clients, and stock `wg` when installed.
#include <gtest/gtest.h>

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "agent/uapi_server.hpp"
#include "base/bytes.hpp"

namespace knit::agent {
namespace {

namespace fs = std::filesystem;

// A device in miniature: applies sets to a state the way wireguard-go does, records requests.
class FakeDevice : public UapiHandler {
 public:
  wg::UapiDeviceState uapi_get() override {
    std::lock_guard lock(mutex_);
    ++gets_;
    return state_;
  }

  int uapi_set(const wg::UapiSet& request) override {
    std::lock_guard lock(mutex_);
    sets_.push_back(request);
    if (set_result_ != 0) return set_result_;
    if (request.private_key) state_.private_key = request.private_key;
    if (request.listen_port) state_.listen_port = *request.listen_port;
    if (request.fwmark) state_.fwmark = *request.fwmark;
    if (request.replace_peers) state_.peers.clear();
    for (const auto& change : request.peers) {
      auto it = std::find_if(state_.peers.begin(), state_.peers.end(),
                             [&](const auto& p) { return p.public_key == change.public_key; });
      if (change.remove) {
        if (it != state_.peers.end()) state_.peers.erase(it);
        continue;
      }
      if (it == state_.peers.end()) {
        if (change.update_only) continue;
        state_.peers.emplace_back();
        it = std::prev(state_.peers.end());
        it->public_key = change.public_key;
      }
      if (change.preshared_key) it->preshared_key = *change.preshared_key;
      if (change.endpoint) it->endpoint = change.endpoint;
      if (change.persistent_keepalive_interval)
        it->persistent_keepalive_interval = *change.persistent_keepalive_interval;
      if (change.replace_allowed_ips) it->allowed_ips.clear();
      for (const auto& ip : change.allowed_ips) it->allowed_ips.push_back(ip);
    }
    return 0;
  }

  void set_state(wg::UapiDeviceState state) {
    std::lock_guard lock(mutex_);
    state_ = std::move(state);
  }
  wg::UapiDeviceState state() {
    std::lock_guard lock(mutex_);
    return state_;
  }
  std::vector<wg::UapiSet> sets() {
    std::lock_guard lock(mutex_);
    return sets_;
  }
  int gets() {
    std::lock_guard lock(mutex_);
    return gets_;
  }
  void fail_sets_with(int errno_value) {
    std::lock_guard lock(mutex_);
    set_result_ = errno_value;
  }

 private:
  std::mutex mutex_;
  wg::UapiDeviceState state_;
  std::vector<wg::UapiSet> sets_;
  int gets_ = 0;
  int set_result_ = 0;
};

wg::UapiDeviceState sample_state() {
  wg::UapiDeviceState state;
  state.private_key.emplace();
  state.private_key->data()[0] = 0x40;
  state.listen_port = 51820;
  wg::UapiPeerState peer;
  peer.public_key.fill(0x11);
  peer.endpoint = Endpoint::parse("192.0.2.1:51820");
  peer.rx_bytes = 10;
  peer.allowed_ips = {IpPrefix::parse("10.0.0.0/24").value()};
  state.peers.push_back(peer);
  return state;
}

std::string random_suffix() {
  std::random_device device;
  char text[16];
  std::snprintf(text, sizeof text, "%08x", static_cast<unsigned>(device()));
  return text;
}

// A blocking client socket with a receive timeout, so a broken server fails the test instead
// of hanging it.
class Client {
 public:
  explicit Client(const std::string& path) {
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval timeout{5, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    sockaddr_un address{};
    address.sun_family = AF_UNIX;
    std::strncpy(address.sun_path, path.c_str(), sizeof address.sun_path - 1);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
  }
  ~Client() {
    if (fd_ >= 0) ::close(fd_);
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  bool connected() const { return connected_; }
  void send(std::string_view bytes) {
    ASSERT_EQ(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(bytes.size()));
  }
  void shutdown_write() { ::shutdown(fd_, SHUT_WR); }

  // Reads one answer: everything up to and including "errno=N\n\n".
  std::string answer() {
    while (true) {
      auto at = pending_.find("errno=");
      if (at != std::string::npos) {
        auto end = pending_.find("\n\n", at);
        if (end != std::string::npos) {
          std::string out = pending_.substr(0, end + 2);
          pending_.erase(0, end + 2);
          return out;
        }
      }
      char buffer[4096];
      ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
      if (n <= 0) return "<closed> " + pending_;
      pending_.append(buffer, static_cast<std::size_t>(n));
    }
  }

  // True once the server has closed the connection (within the receive timeout).
  bool closed_by_server() {
    char byte;
    return ::recv(fd_, &byte, 1, 0) == 0;
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
  std::string pending_;
};

class UapiServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char pattern[] = "/tmp/knit-uapi-XXXXXX";
    ASSERT_NE(::mkdtemp(pattern), nullptr);
    root_ = pattern;
    path_ = root_ + "/run/wireguard/test.sock";  // the folders do not exist yet
  }

  void TearDown() override {
    stop_loop();
    server_.reset();
    std::error_code ignored;
    fs::remove_all(root_, ignored);
  }

  void start_server(const std::string& path, std::chrono::milliseconds idle = {}) {
    server_ = std::make_unique<UapiServer>(io_, path, device_);
    if (idle.count() > 0) server_->set_idle_timeout(idle);
    server_->start();
    start_loop();
  }

  void start_loop() {
    work_.emplace(io_.get_executor());
    loop_ = std::thread([this] { io_.run(); });
  }

  void stop_loop() {
    if (!loop_.joinable()) return;
    work_.reset();
    io_.stop();
    loop_.join();
    io_.restart();
  }

  // Runs f on the event loop and waits for it.
  template <typename F>
  auto on_loop(F f) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto result = task.get_future();
    asio::post(io_, [&task] { task(); });
    return result.get();
  }

  std::string root_;
  std::string path_;
  asio::io_context io_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::thread loop_;
  FakeDevice device_;
  std::unique_ptr<UapiServer> server_;
};

TEST_F(UapiServerTest, CreatesFoldersAndAPrivateSocket) {
  start_server(path_);
  struct stat info {};
  ASSERT_EQ(::stat(path_.c_str(), &info), 0);
  EXPECT_TRUE(S_ISSOCK(info.st_mode));
  EXPECT_EQ(info.st_mode & 07777, 0700u);  // as wireguard-go
  ASSERT_EQ(::stat((root_ + "/run/wireguard").c_str(), &info), 0);
  mode_t umask = ::umask(0);
  ::umask(umask);
  EXPECT_EQ(info.st_mode & 0777, 0755u & ~umask);  // as wireguard-go's MkdirAll
  EXPECT_EQ(server_->path(), path_);
}

TEST_F(UapiServerTest, GetAnswersTheFormattedState) {
  device_.set_state(sample_state());
  start_server(path_);
  Client client(path_);
  ASSERT_TRUE(client.connected());
  client.send("get=1\n\n");
  EXPECT_EQ(client.answer(), format_get(sample_state()));
  // The same connection serves more requests.
  client.send("get=1\n\n");
  EXPECT_EQ(client.answer(), format_get(sample_state()));
  EXPECT_EQ(device_.gets(), 2);
}

TEST_F(UapiServerTest, SetCallsTheHandlerAndAnswersItsErrno) {
  start_server(path_);
  Client client(path_);
  client.send("set=1\nlisten_port=4242\npublic_key=" + std::string(64, 'a') +
              "\nallowed_ip=10.1.0.0/16\n\n");
  EXPECT_EQ(client.answer(), "errno=0\n\n");
  auto sets = device_.sets();
  ASSERT_EQ(sets.size(), 1u);
  EXPECT_EQ(sets[0].listen_port, 4242);
  ASSERT_EQ(sets[0].peers.size(), 1u);
  EXPECT_EQ(sets[0].peers[0].public_key[0], 0xaa);

  device_.fail_sets_with(wg::kUapiErrorPortInUse);
  client.send("set=1\nlisten_port=1\n\n");
  EXPECT_EQ(client.answer(), "errno=-98\n\n");
  EXPECT_EQ(server_->malformed_requests(), 0u);
}

TEST_F(UapiServerTest, PipelinedRequestsAreAnsweredInOrder) {
  device_.set_state(sample_state());
  start_server(path_);
  Client client(path_);
  client.send("get=1\n\nset=1\nfwmark=9\n\nbogus\n\nget=1\n\n");
  EXPECT_EQ(client.answer(), format_get(sample_state()));
  EXPECT_EQ(client.answer(), "errno=0\n\n");
  EXPECT_EQ(client.answer(), "errno=-22\n\n");
  wg::UapiDeviceState expected = sample_state();
  expected.fwmark = 9;
  EXPECT_EQ(client.answer(), format_get(expected));
}

TEST_F(UapiServerTest, HalfClosedClientStillGetsItsAnswer) {
  start_server(path_);
  Client client(path_);
  client.send("set=1\nlisten_port=7\n\n");
  client.shutdown_write();
  EXPECT_EQ(client.answer(), "errno=0\n\n");
  EXPECT_TRUE(client.closed_by_server());
}

TEST_F(UapiServerTest, GarbageAnswersEinvalAndOthersAreStillServed) {
  device_.set_state(sample_state());
  start_server(path_);
  Client bad(path_);
  bad.send("hello\n\n");
  EXPECT_EQ(bad.answer(), "errno=-22\n\n");
  bad.send("set=1\nlisten_port=99999\n\n");
  EXPECT_EQ(bad.answer(), "errno=-22\n\n");
  bad.send("get=1\n\n");  // the garbage connection itself recovers
  EXPECT_EQ(bad.answer(), format_get(sample_state()));

  Client hostile(path_);  // a line past every limit: answered, then closed
  hostile.send(std::string(2 * wg::kUapiMaxLineBytes, '\x01'));
  EXPECT_EQ(hostile.answer(), "errno=-90\n\n");
  EXPECT_TRUE(hostile.closed_by_server());

  Client good(path_);
  good.send("get=1\n\n");
  EXPECT_EQ(good.answer(), format_get(sample_state()));
  EXPECT_EQ(server_->malformed_requests(), 3u);
  EXPECT_TRUE(device_.sets().empty());
}

TEST_F(UapiServerTest, SecondServerOnALivePathRefusesToStart) {
  start_server(path_);
  FakeDevice other_device;
  UapiServer second(io_, path_, other_device);
  try {
    second.start();
    FAIL() << "started on a live socket";
  } catch (const std::runtime_error& error) {
    EXPECT_NE(std::string(error.what()).find("already serving"), std::string::npos)
        << error.what();
  }
  // The first server is untouched.
  Client client(path_);
  client.send("get=1\n\n");
  EXPECT_EQ(client.answer(), "errno=0\n\n");
}

TEST_F(UapiServerTest, StaleSocketFileIsReplaced) {
  fs::create_directories(fs::path(path_).parent_path());
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::strncpy(address.sun_path, path_.c_str(), sizeof address.sun_path - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ::close(fd);  // the file stays, nobody listens: a crashed daemon's leftover
  start_server(path_);
  Client client(path_);
  client.send("get=1\n\n");
  EXPECT_EQ(client.answer(), "errno=0\n\n");
}

TEST_F(UapiServerTest, RefusesAPathThatIsNotASocket) {
  fs::create_directories(fs::path(path_).parent_path());
  std::ofstream(path_) << "not a socket";
  UapiServer server(io_, path_, device_);
  EXPECT_THROW(server.start(), std::runtime_error);
  EXPECT_TRUE(fs::is_regular_file(path_));
}

TEST_F(UapiServerTest, StopClosesConnectionsAndRemovesTheSocketFile) {
  start_server(path_);
  Client client(path_);
  client.send("get=1\n\n");
  EXPECT_EQ(client.answer(), "errno=0\n\n");
  on_loop([this] {
    server_->stop();
    return 0;
  });
  EXPECT_FALSE(fs::exists(path_));
  EXPECT_TRUE(client.closed_by_server());
  EXPECT_FALSE(Client(path_).connected());
  // And it can start again.
  on_loop([this] {
    server_->start();
    return 0;
  });
  Client again(path_);
  again.send("get=1\n\n");
  EXPECT_EQ(again.answer(), "errno=0\n\n");
}

TEST_F(UapiServerTest, StopLeavesAReplacedSocketFileAlone) {
  start_server(path_);
  stop_loop();
  fs::remove(path_);
  std::ofstream(path_) << "someone else's";
  server_->stop();
  EXPECT_TRUE(fs::exists(path_));
}

TEST_F(UapiServerTest, ConnectionsOverTheLimitAreClosedAtOnce) {
  start_server(path_);
  std::vector<std::unique_ptr<Client>> clients;
  for (std::size_t i = 0; i < UapiServer::kMaxConnections; ++i) {
    clients.push_back(std::make_unique<Client>(path_));
    clients.back()->send("get=1\n\n");
    ASSERT_EQ(clients.back()->answer(), "errno=0\n\n");  // accepted and served
  }
  EXPECT_EQ(on_loop([this] { return server_->connection_count(); }),
            UapiServer::kMaxConnections);
  Client extra(path_);
  ASSERT_TRUE(extra.connected());  // the kernel accepts, the server closes it
  EXPECT_TRUE(extra.closed_by_server());

  clients.pop_back();  // a slot frees up
  for (int i = 0; i < 500 && on_loop([this] { return server_->connection_count(); }) >=
                                 UapiServer::kMaxConnections;
       ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  Client next(path_);
  next.send("get=1\n\n");
  EXPECT_EQ(next.answer(), "errno=0\n\n");
}

TEST_F(UapiServerTest, IdleAndSlowConnectionsAreClosed) {
  start_server(path_, std::chrono::milliseconds(200));
  Client idle(path_);
  Client slow(path_);
  slow.send("set=1\n");  // and never the rest
  auto started = std::chrono::steady_clock::now();
  EXPECT_TRUE(idle.closed_by_server());
  EXPECT_TRUE(slow.closed_by_server());
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(4));
  EXPECT_TRUE(device_.sets().empty());
  EXPECT_EQ(on_loop([this] { return server_->connection_count(); }), 0u);
}

TEST_F(UapiServerTest, HandlerMayStopTheServer) {
  class Stopper : public UapiHandler {
   public:
    UapiServer* server = nullptr;
    wg::UapiDeviceState uapi_get() override { return {}; }
    int uapi_set(const wg::UapiSet&) override {
      server->stop();
      return 0;
    }
  } stopper;
  UapiServer server(io_, path_, stopper);
  stopper.server = &server;
  server.start();
  start_loop();
  Client client(path_);
  client.send("set=1\n\nget=1\n\n");
  EXPECT_TRUE(client.answer().starts_with("<closed>"));
  stop_loop();
  EXPECT_FALSE(fs::exists(path_));
}

// --- Stock wg ------------------------------------------------------------------------------

std::string run(const std::string& command) {
  std::string out;
  FILE* pipe = ::popen((command + " 2>&1").c_str(), "r");
  if (pipe == nullptr) return "<popen failed>";
  char buffer[512];
  while (std::fgets(buffer, sizeof buffer, pipe) != nullptr) out += buffer;
  int status = ::pclose(pipe);
  if (status != 0) out += "<exit " + std::to_string(status) + ">";
  return out;
}

class UapiServerWgTest : public UapiServerTest {
 protected:
  void SetUp() override {
    UapiServerTest::SetUp();
    if (::access("/usr/bin/wg", X_OK) != 0) GTEST_SKIP() << "wg is not installed";
    if (::geteuid() != 0) GTEST_SKIP() << "needs root for /var/run/wireguard";
    name_ = "kut" + random_suffix();
    path_ = UapiServer::socket_path_for(name_);
    start_server(path_);
  }
  void TearDown() override {
    UapiServerTest::TearDown();
    EXPECT_FALSE(fs::exists(path_));
  }
  std::string name_;
};

TEST_F(UapiServerWgTest, WgSetReachesTheHandler) {
  // A fixed key pair: private key 0x40 0x00..., its public key computed by `wg pubkey`.
  std::string key_file = root_ + "/private";
  std::ofstream(key_file) << "QAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n";
  const std::string peer = "ERERERERERERERERERERERERERERERERERERERERERE=";  // 32 x 0x11
  std::string out = run("wg set " + name_ + " listen-port 4242 private-key " + key_file +
                        " peer " + peer +
                        " endpoint 192.0.2.9:51820 persistent-keepalive 25"
                        " allowed-ips 10.9.0.0/16,fd00:9::/64");
  EXPECT_EQ(out, "");
  auto sets = device_.sets();
  ASSERT_EQ(sets.size(), 1u);
  const wg::UapiSet& set = sets[0];
  EXPECT_EQ(set.listen_port, 4242);
  ASSERT_TRUE(set.private_key);
  EXPECT_EQ(set.private_key->data()[0], 0x40);
  ASSERT_EQ(set.peers.size(), 1u);
  wg::PublicKey expected_peer;
  expected_peer.fill(0x11);
  EXPECT_EQ(set.peers[0].public_key, expected_peer);
  EXPECT_EQ(set.peers[0].endpoint, Endpoint::parse("192.0.2.9:51820"));
  EXPECT_EQ(set.peers[0].persistent_keepalive_interval, 25);
  EXPECT_TRUE(set.peers[0].replace_allowed_ips);
  EXPECT_EQ(set.peers[0].allowed_ips,
            (std::vector<IpPrefix>{IpPrefix::parse("10.9.0.0/16").value(),
                                   IpPrefix::parse("fd00:9::/64").value()}));

  std::string show = run("wg show " + name_);
  EXPECT_NE(show.find("interface: " + name_), std::string::npos) << show;
  EXPECT_NE(show.find("listening port: 4242"), std::string::npos) << show;
  EXPECT_NE(show.find("peer: " + peer), std::string::npos) << show;
  EXPECT_NE(show.find("endpoint: 192.0.2.9:51820"), std::string::npos) << show;
  EXPECT_NE(show.find("allowed ips: 10.9.0.0/16, fd00:9::/64"), std::string::npos) << show;
  EXPECT_NE(show.find("persistent keepalive: every 25 seconds"), std::string::npos) << show;

  std::string conf = run("wg showconf " + name_);
  EXPECT_NE(conf.find("PrivateKey = QAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            std::string::npos)
      << conf;

  EXPECT_EQ(run("wg set " + name_ + " peer " + peer + " remove"), "");
  EXPECT_EQ(device_.state().peers.size(), 0u);
  EXPECT_NE(run("wg show interfaces").find(name_), std::string::npos);
}

TEST_F(UapiServerWgTest, WgSetconfAndErrors) {
  std::string conf_file = root_ + "/wg.conf";
  std::ofstream(conf_file) << "[Interface]\nListenPort = 1111\nFwMark = 0x33\n\n"
                              "[Peer]\nPublicKey = ERERERERERERERERERERERERERERERERERERERERERE=\n"
                              "AllowedIPs = 10.7.0.0/24\nEndpoint = [2001:db8::7]:7\n";
  EXPECT_EQ(run("wg setconf " + name_ + " " + conf_file), "");
  auto sets = device_.sets();
  ASSERT_EQ(sets.size(), 1u);
  EXPECT_TRUE(sets[0].replace_peers);
  EXPECT_EQ(sets[0].fwmark, 0x33u);
  ASSERT_EQ(sets[0].peers.size(), 1u);
  EXPECT_EQ(sets[0].peers[0].endpoint, Endpoint::parse("[2001:db8::7]:7"));
  std::string dump = run("wg show " + name_ + " dump");
  EXPECT_NE(dump.find("[2001:db8::7]:7\t10.7.0.0/24"), std::string::npos) << dump;

  device_.fail_sets_with(wg::kUapiErrorPortInUse);
  std::string out = run("wg set " + name_ + " listen-port 1");
  EXPECT_NE(out.find("Address already in use"), std::string::npos) << out;
}

}  // namespace
}  // namespace knit::agent
