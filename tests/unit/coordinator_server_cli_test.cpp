// `knit-coordinator serve`: bad arguments are refused with a message naming the option, and a
// real run listens, saves its address (or the --advertise ones) and the mesh prefix, and returns
// 0 on SIGTERM.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include <asio.hpp>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <future>
#include <sstream>
#include <thread>
#include <vector>

#include "tests/support/temp_dir.hpp"
#include "base/random.hpp"
#include "coordinator/admin_cli.hpp"
#include "coordinator/serve_command.hpp"
#include "coordinator/state_dir.hpp"

namespace knit::coordinator {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr UnixSeconds kStart = 1'700'000'000;

using knit::testing::TempDir;

bool can_connect(std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port);
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = ::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0;
  ::close(fd);
  return ok;
}

void ignore_signal(int) {}

// Whether SIGTERM is handled by someone other than this test (serve's asio signal_set).
bool serve_handles_sigterm() {
  struct sigaction current{};
  if (::sigaction(SIGTERM, nullptr, &current) != 0) return false;
  if (current.sa_flags & SA_SIGINFO) return true;
  return current.sa_handler != SIG_DFL && current.sa_handler != SIG_IGN &&
         current.sa_handler != &ignore_signal;
}

int run(const std::vector<std::string>& args, std::string* err = nullptr) {
  std::vector<const char*> argv{"knit-coordinator"};
  for (const auto& a : args) argv.push_back(a.c_str());
  std::ostringstream out;
  std::ostringstream error;
  SystemRandom rng;
  CliContext ctx{out, error, [] { return kStart; }, rng};
  const int code = run_cli(static_cast<int>(argv.size()), argv.data(), ctx, {add_serve_command});
  if (err) *err = error.str();
  return code;
}

TEST(ServeCommand, RefusesBadArguments) {
  TempDir dir;
  const std::string state = (dir.path() / "state").string();
  std::string err;
  EXPECT_EQ(run({"--state-dir", state, "serve"}), 2);  // --listen is required
  EXPECT_EQ(run({"--state-dir", state, "serve", "--listen", "nonsense"}, &err), 1);
  EXPECT_NE(err.find("--listen"), std::string::npos) << err;
  EXPECT_EQ(run({"--state-dir", state, "serve", "--listen", "127.0.0.1:1", "--ephemeral-grace",
                 "soon"},
                &err),
            1);
  EXPECT_NE(err.find("--ephemeral-grace"), std::string::npos) << err;
}

// Runs `serve --listen 127.0.0.1:<free port> EXTRA...` on `state` until it is up, then stops
// it with SIGTERM; returns the address(es) it saved for tokens.
std::string serve_once(const std::string& state, std::vector<std::string> extra) {
  // A free port, released for serve to take.
  asio::io_context io;
  asio::ip::tcp::acceptor probe(io, asio::ip::tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  const std::uint16_t port = probe.local_endpoint().port();
  probe.close();
  std::vector<std::string> args{"--state-dir", state, "serve", "--listen",
                                "127.0.0.1:" + std::to_string(port)};
  args.insert(args.end(), extra.begin(), extra.end());

  std::signal(SIGTERM, ignore_signal);
  std::string err;
  auto serving = std::async(std::launch::async, [&] { return run(args, &err); });
  // Up once it accepts and has saved the address (the signal handler follows right after).
  bool up = false;
  for (int i = 0; i < 100 && !up; ++i) {
    std::this_thread::sleep_for(50ms);
    if (!can_connect(port)) continue;
    auto store = open_store(state);
    up = store && (*store)->listen_address() && (*store)->listen_address()->has_value();
  }
  EXPECT_TRUE(up);
  // Signal exactly once, when serve's own SIGTERM handler is in place. Signalling again later
  // would race serve's return: once it has stopped, its signal_set gives SIGTERM back to the
  // default action, and a second signal would kill the test binary.
  bool signalled = false;
  for (int i = 0; i < 500 && !signalled; ++i) {
    if (serving.wait_for(0ms) == std::future_status::ready) break;  // it stopped by itself
    if (serve_handles_sigterm()) {
      ::kill(::getpid(), SIGTERM);
      signalled = true;
    } else {
      std::this_thread::sleep_for(10ms);
    }
  }
  EXPECT_TRUE(signalled);
  const bool returned = serving.wait_for(30s) == std::future_status::ready;
  std::signal(SIGTERM, SIG_DFL);
  EXPECT_TRUE(returned);
  if (!returned) return {};
  EXPECT_EQ(serving.get(), 0) << err;
  auto store = open_store(state);
  EXPECT_TRUE(store);
  if (!store) return {};
  auto saved = (*store)->listen_address();
  return saved && *saved ? **saved : std::string();
}

TEST(ServeCommand, ServesUntilSignalledAndSavesTheListenAddress) {
  TempDir dir;
  const std::string state = (dir.path() / "state").string();
  const std::string saved = serve_once(state, {"--ipv4-prefix", "10.99.0.0/16"});
  EXPECT_TRUE(saved.starts_with("127.0.0.1:")) << saved;

  auto store = open_store(state);
  ASSERT_TRUE(store);
  auto mesh = (*store)->mesh_settings();
  ASSERT_TRUE(mesh && *mesh);
  EXPECT_EQ((*mesh)->ipv4_prefix.to_string(), "10.99.0.0/16");
  EXPECT_TRUE(fs::exists(fs::path(state) / "coordinator.key"));
}

// --advertise (or KNIT_COORDINATOR_ADVERTISE, which the unit sets from coordinator.conf) is what
// every later `token create` puts into tokens.
TEST(ServeCommand, SavesTheAdvertisedAddressesForTokens) {
  TempDir dir;
  const std::string state = (dir.path() / "state").string();
  EXPECT_EQ(serve_once(state, {"--advertise", "coord.example.net:7443,[2001:DB8::1]:7443"}),
            "coord.example.net:7443 [2001:db8::1]:7443");

  ::setenv("KNIT_COORDINATOR_ADVERTISE", "coord.example.org:443", 1);
  EXPECT_EQ(serve_once(state, {}), "coord.example.org:443");
  // The flag wins over the environment.
  EXPECT_EQ(serve_once(state, {"--advertise", "flag.example:1"}), "flag.example:1");
  // Empty, as the packaged coordinator.conf has it: the listen address again.
  ::setenv("KNIT_COORDINATOR_ADVERTISE", "", 1);
  EXPECT_TRUE(serve_once(state, {}).starts_with("127.0.0.1:"));
  ::unsetenv("KNIT_COORDINATOR_ADVERTISE");
}

TEST(ServeCommand, RefusesBadAdvertisedAddressesBeforeListening) {
  TempDir dir;
  const std::string state = (dir.path() / "state").string();
  std::string err;
  EXPECT_EQ(run({"--state-dir", state, "serve", "--listen", "127.0.0.1:1", "--advertise", "nope"},
                &err),
            1);
  EXPECT_NE(err.find("--advertise nope"), std::string::npos) << err;
  EXPECT_EQ(run({"--state-dir", state, "serve", "--listen", "127.0.0.1:1", "--advertise",
                 "0.0.0.0:7443"},
                &err),
            1);
  EXPECT_NE(err.find("wildcard"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(fs::path(state) / "knit.db"));  // refused before anything was made
}

}  // namespace
}  // namespace knit::coordinator

