// knitd's control socket for the knit CLI (--socket, default /run/knit/knitd.sock): a unix
// stream socket speaking localapi/protocol.hpp, on the caller's single-threaded Asio loop. The
// socket file, the accept loop and the connections are the shared unix-socket server
// (net/unix_socket_server.hpp); this file is the line protocol on each connection.
//
// Socket file: directory created 0755 if missing, socket 0666, a stale socket file replaced, a
// live one refused. Anyone may connect; each request is checked against the caller's
// credentials (SO_PEERCRED, read at accept) by the Authorizer before the handler sees it
// (control_access.hpp: read-only commands for the group knit, changes for root and the
// operator). 0666 rather than a group-owned 0660: the operator need not be in any group, and
// whoever is refused is told why and what to do, instead of a bare "permission denied". One request at a time per connection: the next line is not
// read before the answer to the previous one is written, which may be much later (`up` waits
// for the coordinator). Limits: 16 connections (more are closed at once), a request line of at
// most kMaxRequestLine bytes (longer: an error answer, then the connection closes), 30 s idle
// (no request in progress) closes a connection.
#pragma once

#include <asio.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "localapi/protocol.hpp"
#include "net/unix_socket_server.hpp"

namespace knit::agent {

class ControlHandler {
 public:
  using Reply = std::function<void(localapi::ControlResponse)>;
  virtual ~ControlHandler() = default;
  // Answer by calling reply exactly once, now or later (on the io_context's thread). A reply
  // for a connection that has gone away is dropped.
  virtual void handle_request(localapi::ControlRequest request, Reply reply) = 0;
};

class ControlServer {
 public:
  static constexpr std::size_t kMaxConnections = 16;
  static constexpr std::chrono::seconds kIdleTimeout{30};
  // nullopt: the request may go to the handler; else the refusal the caller gets. The
  // credentials are nullopt when the kernel could not say who connected.
  using Authorizer = std::function<std::optional<std::string>(const std::optional<net::PeerCredentials>& caller,
                                                              const localapi::ControlRequest& request)>;

  // Without an authorizer every request goes to the handler (tests).
  ControlServer(asio::io_context& io, std::string path, ControlHandler& handler, Authorizer authorizer = {});
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  // Binds and starts accepting. Throws std::runtime_error (one line) when another live process
  // serves the path or it cannot be used.
  void start() { server_.start(); }
  // Closes everything and removes the socket file (if it is still ours). Also on destruction.
  void stop() { server_.stop(); }

  const std::string& path() const { return server_.path(); }
  std::size_t connection_count() const { return server_.connection_count(); }
  // Tests: shorten the idle timeout before start().
  void set_idle_timeout(std::chrono::steady_clock::duration timeout) { server_.set_idle_timeout(timeout); }

 private:
  Authorizer authorizer_;
  net::UnixSocketServer server_;
};

}  // namespace knit::agent
