// knitd's control socket on a real unix socket, with the CLI's own client (KnitdConnection):
// answers in order, answers that come later (`up`), malformed and oversized lines, the
// connection limit, the idle timeout, socket file modes, and the errors the CLI shows.
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <future>
#include <thread>

#include "cli/client.hpp"
#include "agent/control_server.hpp"

namespace knit::agent {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using cli::CliError;
using cli::KnitdConnection;
using cli::expect;

// Answers at once, except `up`, which it holds until release_up().
class FakeHandler : public ControlHandler {
 public:
  void handle_request(localapi::ControlRequest request, Reply reply) override {
    ++requests;
    if (auto* up = std::get_if<localapi::UpRequest>(&request)) {
      held_token = up->token;
      held = std::move(reply);
      return;
    }
    if (std::holds_alternative<localapi::VersionRequest>(request)) return reply(localapi::VersionReply{"9.9.9"});
    if (std::holds_alternative<localapi::IpRequest>(request))
      return reply(localapi::IpReply{IpAddress::parse("100.64.0.1").value(), IpAddress::parse("fd7a::1").value()});
    reply(localapi::ErrorReply{"not joined: run `knit up --token TOKEN`"});
  }
  void release_up() {
    if (held) held(localapi::UpReply{"host-a", IpAddress::parse("100.64.0.1").value(), IpAddress::parse("fd7a::1").value(), false});
    held = nullptr;
  }
  int requests = 0;
  std::string held_token;
  Reply held;
};

int raw_connect(const std::string& path) {
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path.data(), path.size());
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

std::string raw_exchange(int fd, const std::string& text) {
  EXPECT_EQ(::send(fd, text.data(), text.size(), MSG_NOSIGNAL), static_cast<ssize_t>(text.size()));
  std::string out;
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n <= 0) break;
    out.append(buffer, static_cast<std::size_t>(n));
    if (out.back() == '\n') break;
  }
  return out;
}

class ControlServerTest : public ::testing::Test {
 protected:
  ControlServerTest() {
    char pattern[] = "/tmp/knit-ctl-XXXXXX";
    root_ = ::mkdtemp(pattern);
    path_ = (root_ / "run" / "knitd.sock").string();
    server_ = std::make_unique<ControlServer>(io_, path_, handler_);
  }
  ~ControlServerTest() override {
    stop_loop();
    server_.reset();
    fs::remove_all(root_);
  }
  void start_loop() {
    server_->start();
    work_.emplace(io_.get_executor());
    thread_ = std::thread([this] { io_.run(); });
  }
  void stop_loop() {
    if (!thread_.joinable()) return;
    asio::post(io_, [this] { server_->stop(); });
    work_.reset();
    thread_.join();
  }
  // Runs f on the loop and waits for it.
  template <typename F>
  void on_loop(F f) {
    std::promise<void> done;
    asio::post(io_, [&] {
      f();
      done.set_value();
    });
    done.get_future().wait();
  }

  fs::path root_;
  std::string path_;
  asio::io_context io_;
  FakeHandler handler_;
  std::unique_ptr<ControlServer> server_;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work_;
  std::thread thread_;
};

TEST_F(ControlServerTest, SocketIsOpenToEveryone) {
  start_loop();
  struct stat st {};
  ASSERT_EQ(::stat(path_.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0666u);  // requests are authorized one by one
  ASSERT_EQ(::stat((root_ / "run").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0755u);
  stop_loop();
  EXPECT_FALSE(fs::exists(path_));  // removed on stop
}

// The authorizer sees the kernel's word on who connected, and its refusal is the answer; the
// handler never sees a refused request.
TEST_F(ControlServerTest, TheAuthorizerSeesTheCallerAndItsRefusalIsTheAnswer) {
  std::optional<net::PeerCredentials> seen;
  server_ = std::make_unique<ControlServer>(
      io_, path_, handler_,
      [&seen](const std::optional<net::PeerCredentials>& caller,
              const localapi::ControlRequest& request) -> std::optional<std::string> {
        seen = caller;
        if (std::holds_alternative<localapi::IpRequest>(request)) return "knit ip is not for you";
        return std::nullopt;
      });
  start_loop();
  KnitdConnection connection(path_);
  EXPECT_EQ(expect<localapi::VersionReply>(connection.call(localapi::VersionRequest{}, 2000ms)).version, "9.9.9");
  try {
    expect<localapi::IpReply>(connection.call(localapi::IpRequest{}, 2000ms));
    FAIL() << "the refused request was answered";
  } catch (const CliError& e) {
    EXPECT_STREQ(e.what(), "knit ip is not for you");
  }
  EXPECT_EQ(expect<localapi::VersionReply>(connection.call(localapi::VersionRequest{}, 2000ms)).version, "9.9.9");
  on_loop([] {});
  EXPECT_EQ(handler_.requests, 2);
  ASSERT_TRUE(seen);
  EXPECT_EQ(seen->uid, ::geteuid());
  EXPECT_EQ(seen->gid, ::getegid());
  EXPECT_EQ(seen->pid, ::getpid());
  std::vector<gid_t> groups(static_cast<std::size_t>(::getgroups(0, nullptr)));
  groups.resize(static_cast<std::size_t>(::getgroups(static_cast<int>(groups.size()), groups.data())));
  for (gid_t g : groups) EXPECT_NE(std::find(seen->groups.begin(), seen->groups.end(), g), seen->groups.end()) << g;
}

TEST_F(ControlServerTest, AnswersRequestsInOrderOnOneConnection) {
  start_loop();
  KnitdConnection connection(path_);
  EXPECT_EQ(expect<localapi::VersionReply>(connection.call(localapi::VersionRequest{}, 2000ms)).version, "9.9.9");
  EXPECT_EQ(expect<localapi::IpReply>(connection.call(localapi::IpRequest{}, 2000ms)).ipv4, IpAddress::parse("100.64.0.1").value());
  try {
    expect<localapi::StatusReply>(connection.call(localapi::StatusRequest{}, 2000ms));
    FAIL();
  } catch (const CliError& e) {
    EXPECT_STREQ(e.what(), "not joined: run `knit up --token TOKEN`");
  }
  // Pipelined lines are answered one after the other.
  int fd = raw_connect(path_);
  std::string all = raw_exchange(fd, "{\"cmd\":\"version\"}\n{\"cmd\":\"ip\"}\n");
  while (std::count(all.begin(), all.end(), '\n') < 2) all += raw_exchange(fd, "");
  EXPECT_NE(all.find("9.9.9"), std::string::npos);
  EXPECT_NE(all.find("100.64.0.1"), std::string::npos);
  EXPECT_LT(all.find("9.9.9"), all.find("100.64.0.1"));
  ::close(fd);
}

TEST_F(ControlServerTest, AnAnswerMayComeLater) {
  server_->set_idle_timeout(50ms);  // a pending request is not idleness
  start_loop();
  auto answer = std::async(std::launch::async, [&] {
    KnitdConnection connection(path_);
    return expect<localapi::UpReply>(connection.call(localapi::UpRequest{"knit1-t", ""}, 5000ms));
  });
  for (int i = 0; i < 1000; ++i) {
    bool held = false;
    on_loop([&] { held = handler_.held != nullptr; });
    if (held) break;
    std::this_thread::sleep_for(5ms);
  }
  std::this_thread::sleep_for(200ms);
  on_loop([&] { handler_.release_up(); });
  EXPECT_EQ(answer.get().name, "host-a");
  EXPECT_EQ(handler_.held_token, "knit1-t");
}

TEST_F(ControlServerTest, MalformedLinesGetAnErrorAndTheConnectionGoesOn) {
  start_loop();
  int fd = raw_connect(path_);
  EXPECT_NE(raw_exchange(fd, "this is not json\n").find("\"ok\":false"), std::string::npos);
  EXPECT_NE(raw_exchange(fd, "{\"cmd\":\"fly\"}\n").find("unknown command"), std::string::npos);
  EXPECT_NE(raw_exchange(fd, "{\"cmd\":\"version\"}\n").find("9.9.9"), std::string::npos);
  ::close(fd);
}

TEST_F(ControlServerTest, AnOverlongLineIsRefusedAndClosed) {
  start_loop();
  int fd = raw_connect(path_);
  const std::string huge(localapi::kMaxRequestLine + 10, 'x');
  std::string answer = raw_exchange(fd, huge);
  EXPECT_NE(answer.find("too long"), std::string::npos);
  char byte;
  EXPECT_EQ(::recv(fd, &byte, 1, 0), 0);  // closed
  ::close(fd);
}

TEST_F(ControlServerTest, ConnectionsBeyondTheLimitAreClosed) {
  start_loop();
  std::vector<int> fds;
  for (std::size_t i = 0; i < ControlServer::kMaxConnections; ++i) fds.push_back(raw_connect(path_));
  for (int i = 0; i < 1000; ++i) {
    std::size_t count = 0;
    on_loop([&] { count = server_->connection_count(); });
    if (count == ControlServer::kMaxConnections) break;
    std::this_thread::sleep_for(5ms);
  }
  int extra = raw_connect(path_);
  char byte;
  EXPECT_EQ(::recv(extra, &byte, 1, 0), 0);
  ::close(extra);
  for (int fd : fds) ::close(fd);
}

TEST_F(ControlServerTest, IdleConnectionsAreClosed) {
  server_->set_idle_timeout(100ms);
  start_loop();
  int fd = raw_connect(path_);
  char byte;
  const auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(::recv(fd, &byte, 1, 0), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 2s);
  ::close(fd);
}

TEST_F(ControlServerTest, ASecondServerOnALiveSocketIsRefused) {
  start_loop();
  asio::io_context other_io;
  FakeHandler other_handler;
  ControlServer second(other_io, path_, other_handler);
  try {
    second.start();
    FAIL();
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("another knitd"), std::string::npos) << e.what();
  }
  // The first one still answers.
  KnitdConnection connection(path_);
  EXPECT_EQ(expect<localapi::VersionReply>(connection.call(localapi::VersionRequest{}, 2000ms)).version, "9.9.9");
}

TEST_F(ControlServerTest, AStaleSocketFileIsReplaced) {
  fs::create_directories(root_ / "run");
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un address{};
  address.sun_family = AF_UNIX;
  std::memcpy(address.sun_path, path_.data(), path_.size());
  ASSERT_EQ(::bind(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address), 0);
  ::close(fd);  // bound, never listened: nothing answers
  start_loop();
  KnitdConnection connection(path_);
  EXPECT_EQ(expect<localapi::VersionReply>(connection.call(localapi::VersionRequest{}, 2000ms)).version, "9.9.9");
}

TEST(CliClient, SaysKnitdIsNotRunning) {
  try {
    KnitdConnection connection("/tmp/knit-no-such-dir/knitd.sock");
    FAIL();
  } catch (const CliError& e) {
    EXPECT_EQ(std::string(e.what()).rfind("knitd is not running: start it with `systemctl start knitd` or run `knitd`", 0), 0u)
        << e.what();
  }
}

}  // namespace
}  // namespace knit::agent
