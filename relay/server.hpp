// knit-relay's Asio adapter around ServerCore: the TCP acceptor (plain and TLS on one port), the
// dials to peer relays, and one timer, all on the caller's io_context (one thread).
//
// Per connection it keeps a socket and the buffer being written (everything the core queued
// since the last write, sealed frames back to back: one write per batch); nothing else. A plain
// connection has no read buffer of its own: it waits for readability and reads into one buffer
// the whole server shares, so an idle client costs a socket and its ServerCore state. A TLS
// connection reads into its own 16 KiB buffer (OpenSSL holds more than that anyway).
#pragma once

#include <asio.hpp>

#include <cstddef>
#include <memory>
#include <unordered_map>
#include <vector>

#include "base/random.hpp"
#include "relay/server_core.hpp"
#include "relay/stream.hpp"
#include "wg/keys.hpp"

namespace knit::relay {

class Server final : private ServerIo {
 public:
  struct Options {
    asio::ip::tcp::endpoint listen;
    std::shared_ptr<asio::ssl::context> tls;  // null: plain TCP only
    ServerConfig core;
    Duration stop_grace = std::chrono::seconds(1);
  };

  // io and rng outlive the server; the server outlives io.run().
  Server(asio::io_context& io, const wg::PrivateKey& relay_key, Options options, Random& rng);
  ~Server() override;
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds and listens; throws std::system_error when the address cannot be bound.
  void start();
  // Stops accepting, sends every client a closing frame and closes everything after stop_grace
  // (or as soon as all is written); then nothing of the server keeps io.run() going.
  void stop();

  void set_members(const std::vector<NodeKey>& members);
  void set_relays(const std::vector<control::RelayInfo>& relays);

  asio::ip::tcp::endpoint local_endpoint() const;
  const Stats& stats() const { return core_.stats(); }
  const ServerCore& core() const { return core_; }

 private:
  struct Connection;
  using ConnectionPtr = std::shared_ptr<Connection>;

  // ServerIo
  void want_write(ConnId id) override;
  void close(ConnId id) override;
  void dial(ConnId id, const control::RelayInfo& relay) override;

  void accept_next();
  void arm_timer(Instant at);
  void start_reading(const ConnectionPtr& conn);
  void wait_readable(const ConnectionPtr& conn);
  void on_readable(const ConnectionPtr& conn);
  void read_tls(const ConnectionPtr& conn);
  void dial_next(const ConnectionPtr& conn, std::shared_ptr<control::RelayInfo> relay,
                 std::size_t index);
  void pump(const ConnectionPtr& conn);
  void feed(const ConnectionPtr& conn, ByteSpan bytes);  // to the core, then flush_deferred
  void flush_deferred();
  void finish(const ConnectionPtr& conn);  // close after the last write
  void fail(const ConnectionPtr& conn);    // the transport ended: tell the core
  void drop_all();

  asio::io_context& io_;
  Options options_;
  ServerCore core_;
  asio::ip::tcp::acceptor acceptor_;
  asio::steady_timer timer_;
  asio::steady_timer accept_retry_;
  asio::steady_timer stop_timer_;
  std::unordered_map<ConnId, ConnectionPtr> conns_;
  std::vector<std::uint8_t> read_buffer_;  // shared by every plain connection
  // While the core takes a read's frames, the connections it queued output for: written once
  // the whole read is forwarded (flush_deferred), one write each, rather than the first
  // frame alone at once and the rest after it.
  bool in_read_ = false;
  std::vector<ConnId> deferred_;
  bool stopping_ = false;
};

}  // namespace knit::relay
