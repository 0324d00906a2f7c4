// Serves the WireGuard UAPI (wg/uapi.hpp) on a unix stream socket, as wireguard-go does on
// /var/run/wireguard/<interface>.sock, on the caller's single-threaded Asio event loop. The
// socket file, the accept loop and the connections are the shared unix-socket server
// (net/unix_socket_server.hpp); this file is the request/answer pump on each connection.
//
// Socket file: directory created with mode 0755 if missing, socket mode 0700 (wireguard-go
// binds under umask 0077), a stale socket file replaced, a live one (connect succeeds) refused.
// Each connection carries any number of pipelined requests, answered in order. Limits: 64
// concurrent connections (more are closed at once), 30 s without a completed request closes a
// connection, reads are bounded by the parser's limits and answers are written one at a time.
#pragma once

#include <asio.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "net/unix_socket_server.hpp"
#include "wg/uapi.hpp"

namespace knit::agent {

namespace detail {
struct UapiServerCounters {
  std::atomic<std::uint64_t> malformed{0};
};
}  // namespace detail

// The daemon's side. Called on the io_context's thread, one request at a time.
class UapiHandler {
 public:
  virtual ~UapiHandler() = default;
  virtual wg::UapiDeviceState uapi_get() = 0;
  // 0 or a negative errno (kUapiErrorInvalid, kUapiErrorPortInUse...); applied atomically.
  virtual int uapi_set(const wg::UapiSet& request) = 0;
};

class UapiServer {
 public:
  static constexpr std::size_t kMaxConnections = 64;
  static constexpr std::chrono::seconds kIdleTimeout{30};

  // "/var/run/wireguard/<interface>.sock", where `wg` looks for a userspace interface.
  // Throws std::invalid_argument for an empty name or one with a '/'.
  static std::string socket_path_for(std::string_view interface_name);

  // io and handler must outlive the server. Nothing happens until start().
  UapiServer(asio::io_context& io, std::string path, UapiHandler& handler);
  UapiServer(const UapiServer&) = delete;
  UapiServer& operator=(const UapiServer&) = delete;

  // Binds the socket and starts accepting. Throws std::runtime_error with a one-line message if
  // another live process serves the path, or the path cannot be used. No-op if started.
  void start() { server_.start(); }
  // Closes the acceptor and every connection and removes the socket file (if it is still ours).
  // Also on destruction.
  void stop() { server_.stop(); }

  const std::string& path() const { return server_.path(); }
  // Requests answered with an error by the parser (not errors returned by the handler).
  std::uint64_t malformed_requests() const { return counters_->malformed.load(); }
  std::size_t connection_count() const { return server_.connection_count(); }

  // For tests: shorten the idle timeout. Call before start().
  void set_idle_timeout(std::chrono::steady_clock::duration timeout) { server_.set_idle_timeout(timeout); }

 private:
  // Shared with the sessions, which count into it.
  std::shared_ptr<detail::UapiServerCounters> counters_ =
      std::make_shared<detail::UapiServerCounters>();
  net::UnixSocketServer server_;
};

}  // namespace knit::agent
