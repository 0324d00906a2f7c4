// The opt-in metrics endpoint of a daemon (`--metrics HOST:PORT`): answers `GET /metrics` over
// HTTP/1.1 with the text a render callback returns (metrics.hpp's Registry::render, usually), on
// the daemon's own single-threaded Asio loop.
//
//   Prometheus ──TCP──► MetricsServer ──accept──► Connection: read head (metrics_http.hpp)
//                                                   ├─ GET /metrics → render() → 200, close
//                                                   └─ anything else → 400/404/405/431, close
//
// Bounds, so a scraper (or anyone who can reach the port) cannot hold the daemon: at most
// max_connections at once (more are closed on accept), a request head of at most max_head bytes,
// and one deadline per connection from accept to the last byte written (a slow client is cut
// off when it passes, however it trickles). Meant for a loopback or management address: there
// is no authentication, and the numbers say how busy the node is, nothing secret.
#pragma once

#include <asio.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace knit::net {

struct ServerLimits {
  std::size_t max_connections = 8;
  std::size_t max_head = 8192;
  std::chrono::steady_clock::duration deadline = std::chrono::seconds(10);
};

struct ServerCounters {
  std::uint64_t scrapes = 0;        // 200 answers
  std::uint64_t refused = 0;        // closed on accept: too many connections
  std::uint64_t bad_requests = 0;   // 400, 404, 405 and 431 answers
  std::uint64_t timeouts = 0;       // closed at the deadline
};

// "127.0.0.1:9100", "[::1]:9100", "0.0.0.0:9100" or "localhost:9100" (loopback IPv4): an
// address to bind, never a name to resolve. nullopt when the text is none of these.
std::optional<asio::ip::tcp::endpoint> parse_listen_address(std::string_view text);

class MetricsServer {
 public:
  using Render = std::function<std::string()>;

  MetricsServer(asio::io_context& io, asio::ip::tcp::endpoint listen, Render render,
                ServerLimits limits = {});
  ~MetricsServer();  // stop()
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // Binds and starts accepting. Throws std::system_error when it cannot listen.
  void start();
  // Closes the acceptor and every connection. Idempotent.
  void stop();

  asio::ip::tcp::endpoint local_endpoint() const;
  const ServerCounters& counters() const;
  std::size_t connection_count() const;

  class Core;

 private:
  std::shared_ptr<Core> core_;
};

}  // namespace knit::net
