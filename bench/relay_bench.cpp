// relay_bench: knit-relay's server over loopback TCP, printing numbers (not a test).
//
//   relay_bench [--seconds S] [--idle N]
//
// The relay runs in a child process pinned to CPU 0 (one core, one event loop); the clients
// (RelayClient, one io_context) run in this process pinned to CPU 1. Reported:
//   1. throughput with 1 and with 100 client pairs, 1420-byte packets: packets/s and Mbit/s
//      delivered, and the relay process's CPU use meanwhile (100% = one core saturated);
//   2. added latency: a 1420-byte echo round trip through the relay vs over a direct loopback
//      TCP connection, median and p99;
//   3. memory per idle client: the relay's RSS before and after N (default 10,000) clients
//      connect and sit idle, divided by N (kernel socket buffers are not in RSS).
#include <malloc.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <asio.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "base/log.hpp"
#include "base/random.hpp"
#include "relay/relay_client.hpp"
#include "relay/server.hpp"
#include "wg/crypto.hpp"

using namespace knit;
using namespace knit::relay;
using Seconds = std::chrono::duration<double>;

namespace {

void pin_to_cpu(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  (void)sched_setaffinity(0, sizeof(set), &set);
}

void raise_fd_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    limit.rlim_cur = limit.rlim_max;
    (void)setrlimit(RLIMIT_NOFILE, &limit);
  }
}

// A relay in a child process, serving the given members until killed.
struct RelayProcess {
  pid_t pid = -1;
  std::uint16_t port = 0;
  NodeKey key{};

  RelayProcess(const std::vector<NodeKey>& members, const wg::PrivateKey& relay_key) {
    key = wg::crypto::public_key_of(relay_key);
    int fds[2];
    if (pipe(fds) != 0) throw std::runtime_error("pipe failed");
    pid = fork();
    if (pid < 0) throw std::runtime_error("fork failed");
    if (pid == 0) {
      close(fds[0]);
      pin_to_cpu(0);
      malloc_trim(0);  // what the parent freed must not hide the relay's own growth
      asio::io_context io;
      SystemRandom rng;
      Server::Options options;
      options.listen = {asio::ip::make_address("127.0.0.1"), 0};
      Server server(io, relay_key, options, rng);
      server.start();
      server.set_members(members);
      const std::uint16_t p = server.local_endpoint().port();
      if (write(fds[1], &p, sizeof(p)) != sizeof(p)) _exit(1);
      close(fds[1]);
      asio::signal_set stop(io, SIGTERM);
      stop.async_wait([&](std::error_code, int) {
        std::fprintf(stderr, "  relay: %s\n", summary_line(server.stats()).c_str());
        _exit(0);
      });
      io.run();
      _exit(0);
    }
    close(fds[1]);
    if (read(fds[0], &port, sizeof(port)) != sizeof(port)) throw std::runtime_error("no port");
    close(fds[0]);
  }
  ~RelayProcess() {
    if (pid > 0) {
      kill(pid, SIGTERM);
      waitpid(pid, nullptr, 0);
    }
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port); }

  // Resident set size in KiB.
  long rss_kib() const {
    std::ifstream status("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(status, line))
      if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    return -1;
  }
  // User + system CPU seconds so far.
  double cpu_seconds() const {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
    std::istringstream fields(text.substr(text.rfind(')') + 2));
    std::string field;
    long utime = 0, stime = 0;
    for (int i = 3; i <= 15 && fields >> field; ++i) {
      if (i == 14) utime = std::stol(field);
      if (i == 15) stime = std::stol(field);
    }
    return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
  }
};

// Runs handlers one at a time until done() or the timeout.
bool run_until(asio::io_context& io, const std::function<bool()>& done, Seconds timeout) {
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (!done()) {
    if (std::chrono::steady_clock::now() > end) return false;
    if (io.stopped()) io.restart();
    io.run_one_for(std::chrono::milliseconds(10));
  }
  return true;
}

struct Keys {
  std::vector<wg::PrivateKey> priv;
  std::vector<NodeKey> pub;
};

Keys make_keys(std::size_t n, Random& rng) {
  Keys keys;
  for (std::size_t i = 0; i < n; ++i) {
    keys.priv.push_back(wg::crypto::generate_private_key(rng));
    keys.pub.push_back(wg::crypto::public_key_of(keys.priv.back()));
  }
  return keys;
}

std::vector<std::unique_ptr<RelayClient>> connect_all(asio::io_context& io, const Keys& keys,
                                                      const RelayProcess& relay, Random& rng,
                                                      RelayClient::Options options) {
  std::vector<std::unique_ptr<RelayClient>> clients;
  std::size_t connected = 0;
  constexpr std::size_t kWave = 500;  // under the listen backlog
  for (std::size_t i = 0; i < keys.priv.size(); ++i) {
    clients.push_back(std::make_unique<RelayClient>(io, keys.priv[i], rng, options));
    clients.back()->connect({relay.address()}, relay.key);
    if ((i + 1) % kWave == 0 || i + 1 == keys.priv.size()) {
      const std::size_t want = i + 1;
      run_until(io, [&] {
        connected = 0;
        for (std::size_t j = (want - 1) / kWave * kWave; j < want; ++j)
          connected += clients[j]->connected() ? 1 : 0;
        return connected == want - (want - 1) / kWave * kWave;
      }, Seconds(60));
    }
  }
  return clients;
}

void throughput(std::size_t pairs, double seconds) {
  SeededRandom key_rng(pairs);
  SystemRandom rng;
  const Keys keys = make_keys(2 * pairs, key_rng);
  const auto relay_key = wg::crypto::generate_private_key(key_rng);
  RelayProcess relay(keys.pub, relay_key);
  asio::io_context io;
  RelayClient::Options options;
  options.read_chunk = 64 * 1024;
  options.max_queue_bytes = 256 * 1024;
  auto clients = connect_all(io, keys, relay, rng, options);
  std::uint64_t received = 0;
  for (std::size_t i = 0; i < pairs; ++i)
    clients[2 * i + 1]->on_packet([&](const NodeKey&, ByteSpan) { ++received; });

  constexpr std::size_t kPacket = 1420;
  const Bytes packet(kPacket, 0x5a);
  bool sending = true;
  std::uint64_t sent = 0;
  // Each turn offers every sender a few packets; a full queue just waits for the next turn.
  std::function<void()> offer = [&] {
    if (!sending) return;
    for (std::size_t i = 0; i < pairs; ++i)
      for (int k = 0; k < 16; ++k)
        if (clients[2 * i]->send(keys.pub[2 * i + 1], packet)) ++sent;
        else break;
    asio::post(io, offer);
  };
  asio::post(io, offer);
  run_until(io, [] { return false; }, Seconds(0.5));  // warm up
  const std::uint64_t received0 = received;
  const double cpu0 = relay.cpu_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  run_until(io, [] { return false; }, Seconds(seconds));
  const double elapsed = Seconds(std::chrono::steady_clock::now() - t0).count();
  const double cpu = (relay.cpu_seconds() - cpu0) / elapsed;
  const double pps = static_cast<double>(received - received0) / elapsed;
  sending = false;
  std::printf("throughput, %3zu pair(s): %9.0f packets/s  %7.1f Mbit/s  (1420-byte packets; relay CPU %.0f%% of one core; %.0f packets/s per full core)\n",
              pairs, pps, pps * kPacket * 8 / 1e6, cpu * 100, cpu > 0 ? pps / cpu : 0.0);
  for (auto& c : clients) c->close();
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(p * static_cast<double>(v.size() - 1))];
}

void latency(int rounds) {
  SeededRandom key_rng(77);
  SystemRandom rng;
  const Keys keys = make_keys(2, key_rng);
  const auto relay_key = wg::crypto::generate_private_key(key_rng);
  RelayProcess relay(keys.pub, relay_key);
  asio::io_context io;
  auto clients = connect_all(io, keys, relay, rng, RelayClient::Options{});
  const Bytes packet(1420, 0x11);
  // b echoes, a times.
  clients[1]->on_packet([&](const NodeKey& src, ByteSpan p) { clients[1]->send(src, p); });
  std::vector<double> via_relay;
  bool back = false;
  clients[0]->on_packet([&](const NodeKey&, ByteSpan) { back = true; });
  for (int i = 0; i < rounds; ++i) {
    back = false;
    const auto t0 = std::chrono::steady_clock::now();
    clients[0]->send(keys.pub[1], packet);
    run_until(io, [&] { return back; }, Seconds(5));
    via_relay.push_back(Seconds(std::chrono::steady_clock::now() - t0).count() * 1e6);
  }
  for (auto& c : clients) c->close();

  // Direct: the same echo over one loopback TCP connection, the echo in another process too.
  asio::ip::tcp::acceptor acceptor(io, {asio::ip::make_address("127.0.0.1"), 0});
  const auto endpoint = acceptor.local_endpoint();
  const pid_t echo = fork();
  if (echo == 0) {
    pin_to_cpu(0);
    asio::io_context child;
    asio::ip::tcp::socket s(child);
    asio::ip::tcp::socket peer = acceptor.accept();
    peer.set_option(asio::ip::tcp::no_delay(true));
    std::vector<std::uint8_t> buf(1424);
    std::error_code ec;
    while (!ec) {
      asio::read(peer, asio::buffer(buf), ec);
      if (!ec) asio::write(peer, asio::buffer(buf), ec);
    }
    _exit(0);
  }
  acceptor.close();
  asio::ip::tcp::socket s(io);
  s.connect(endpoint);
  s.set_option(asio::ip::tcp::no_delay(true));
  std::vector<std::uint8_t> buf(1424, 0x22);  // the relay's frame is 4 + 16 + 33 bytes longer
  std::vector<double> direct;
  for (int i = 0; i < rounds; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    asio::write(s, asio::buffer(buf));
    asio::read(s, asio::buffer(buf));
    direct.push_back(Seconds(std::chrono::steady_clock::now() - t0).count() * 1e6);
  }
  s.close();
  waitpid(echo, nullptr, 0);
  std::printf("latency, 1420-byte echo round trip (%d rounds): via relay median %.0f us p99 %.0f us; direct loopback median %.0f us p99 %.0f us; added median %.0f us\n",
              rounds, percentile(via_relay, 0.5), percentile(via_relay, 0.99),
              percentile(direct, 0.5), percentile(direct, 0.99),
              percentile(via_relay, 0.5) - percentile(direct, 0.5));
}

void memory(std::size_t n) {
  SeededRandom key_rng(1234);
  SystemRandom rng;
  const Keys keys = make_keys(n, key_rng);
  const auto relay_key = wg::crypto::generate_private_key(key_rng);
  RelayProcess relay(keys.pub, relay_key);
  asio::io_context io;
  run_until(io, [] { return false; }, Seconds(0.3));
  const long before = relay.rss_kib();
  RelayClient::Options options;
  options.read_chunk = 2048;  // the clients' memory is not what is measured; keep it small
  options.ping_interval = std::chrono::seconds(600);
  const auto t0 = std::chrono::steady_clock::now();
  auto clients = connect_all(io, keys, relay, rng, options);
  std::size_t connected = 0;
  for (auto& c : clients) connected += c->connected() ? 1 : 0;
  const double took = Seconds(std::chrono::steady_clock::now() - t0).count();
  run_until(io, [] { return false; }, Seconds(1));  // settle: every first Ping answered
  const long after = relay.rss_kib();
  std::printf("memory, %zu idle clients (%zu connected in %.1f s): relay RSS %ld KiB -> %ld KiB, %.0f bytes per client\n",
              n, connected, took, before, after,
              connected > 0 ? static_cast<double>(after - before) * 1024.0 / static_cast<double>(connected) : 0.0);
  for (auto& c : clients) c->close();
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"relay_bench: knit-relay throughput, latency and memory per client on loopback"};
  double seconds = 3;
  std::size_t idle = 10000;
  int rounds = 2000;
  app.add_option("--seconds", seconds, "seconds per throughput run")->capture_default_str();
  app.add_option("--idle", idle, "idle clients for the memory figure")->capture_default_str();
  app.add_option("--rounds", rounds, "echo round trips for the latency figure")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  set_log_level(LogLevel::error);
  signal(SIGPIPE, SIG_IGN);
  raise_fd_limit();
  try {
    pin_to_cpu(1);
    memory(idle);
    throughput(1, seconds);
    throughput(100, seconds);
    latency(rounds);
  } catch (const std::exception& e) {
    std::cerr << "relay_bench: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
