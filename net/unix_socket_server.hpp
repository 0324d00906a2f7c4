// A unix stream socket server on the caller's single-threaded Asio loop: the I/O shell under
// knitd's control socket (agent/control_server.hpp) and its WireGuard UAPI socket
// (agent/uapi_server.hpp). It owns the socket file and the connections; a Session per
// connection speaks the protocol.
//
//   start: mkdir -p (0755) ─► bind (socket file in `socket_mode` from the start) ─► listen
//            └─ the name is taken: not a socket → refuse; a live server → refuse;
//               stale (nobody answers a connect) → unlink and bind again
//   accept ─► over max_connections: closed at once; else Connection + Session
//   stop: the socket file removed (only if it is still the one we bound), then every
//         connection closed without calling back
//
// A connection arms an idle deadline (idle_timeout) when it starts and whenever its session
// says so; its session may hold it while a request is being worked on. Bytes read and written
// pass through buffers that are wiped after use: requests and answers may carry keys.
#pragma once

#include <asio.hpp>

#include <array>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "net/peer_credentials.hpp"

namespace knit::net {

class UnixSocketConnection;

// One connection's protocol, owned by its connection. Called on the loop.
class UnixSocketSession {
 public:
  virtual ~UnixSocketSession() = default;
  // Decide what comes next: read(), write(), close(), or wait for an answer being made.
  // Called once the connection starts, and after each take().
  virtual void resume() = 0;
  // Bytes arrived: keep what is needed (they are wiped when this returns). No I/O from here:
  // resume() follows.
  virtual void take(std::string_view bytes) = 0;
  // The last write() completed (a write_then_close() closes instead).
  virtual void written() = 0;
};

class UnixSocketConnection : public std::enable_shared_from_this<UnixSocketConnection> {
 public:
  using Socket = asio::local::stream_protocol::socket;
  using SteadyDuration = std::chrono::steady_clock::duration;
  // Who keeps the connection: told once when it closes.
  class Owner {
   public:
    virtual ~Owner() = default;
    virtual void forget(UnixSocketConnection* connection) = 0;
  };

  UnixSocketConnection(Owner& owner, Socket socket, SteadyDuration idle_timeout);
  ~UnixSocketConnection();
  UnixSocketConnection(const UnixSocketConnection&) = delete;
  UnixSocketConnection& operator=(const UnixSocketConnection&) = delete;

  // The server's side: give the session, start it; or drop the connection without a callback.
  void start(std::unique_ptr<UnixSocketSession> session);
  void detach();

  // The session's side.
  void read();                                // one read; its bytes go to take(), then resume()
  void write(std::string& text);              // takes text (left empty); wiped once written
  void write_then_close(std::string& text);   // the same, then close
  void close();
  void arm_idle();   // the idle deadline runs again from now
  void hold_idle();  // no idle deadline until the next arm_idle()
  bool closed() const { return closed_; }
  // Who connected (read once, at accept); nullopt when the kernel could not say.
  const std::optional<PeerCredentials>& credentials() const { return credentials_; }

 private:
  void send(std::string& text, bool then_close);

  Owner* owner_;  // null once closed or detached
  Socket socket_;
  asio::steady_timer deadline_;
  SteadyDuration idle_timeout_;
  std::unique_ptr<UnixSocketSession> session_;
  std::array<char, 4096> read_buffer_{};
  std::string output_;
  bool held_ = false;
  bool closed_ = false;
  std::optional<PeerCredentials> credentials_;
};

class UnixSocketServer {
 public:
  struct Options {
    std::string path;
    unsigned socket_mode = 0600;  // the socket file's mode (the directory above gets 0755)
    std::size_t max_connections = 16;
    std::chrono::steady_clock::duration idle_timeout = std::chrono::seconds(30);
    // Wording of start()'s refusals: what the socket is ("control socket"), and the whole line
    // for a name taken by something that is not a socket, and by a live server.
    std::string what = "socket";
    std::string not_a_socket;
    std::string in_use;
  };
  // A new connection's session; the connection outlives it.
  using SessionFactory = std::function<std::unique_ptr<UnixSocketSession>(UnixSocketConnection&)>;

  UnixSocketServer(asio::io_context& io, Options options, SessionFactory make_session);
  ~UnixSocketServer();  // stop()
  UnixSocketServer(const UnixSocketServer&) = delete;
  UnixSocketServer& operator=(const UnixSocketServer&) = delete;

  // Binds and starts accepting. Throws std::runtime_error (one line) when another live process
  // serves the path or it cannot be used. No-op if started.
  void start();
  // Closes the acceptor and every connection and removes the socket file (if it is still ours).
  void stop();

  const std::string& path() const { return options_.path; }
  std::size_t connection_count() const;
  // For tests: shorten the idle timeout. Call before start().
  void set_idle_timeout(std::chrono::steady_clock::duration timeout) { options_.idle_timeout = timeout; }

  class Core;

 private:
  asio::io_context& io_;
  Options options_;
  SessionFactory make_session_;
  // From start() to stop(); shared with the pending accept, so that a handler running after
  // stop() finds it still alive.
  std::shared_ptr<Core> core_;
};

}  // namespace knit::net
