// The secondary UDP sockets of port prediction (punch/path/predict.hpp): the hard side of an
// easy <-> hard pair opens up to 256 of them, each a NAT mapping of its own, and the one the
// peer's probes hit carries the traffic from then on. Keyed by the PathManager's SocketId.
// Sends go straight from a socket address (no text on the way); each socket reads until it is
// closed, and hands every datagram to the handler.
#pragma once

#include <asio.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>

#include "base/bytes.hpp"
#include "base/ip.hpp"
#include "punch/path/manager.hpp"

namespace knit::agent {

class ProbeSockets {
 public:
  using Handler = std::function<void(punch::SocketId, const Endpoint& from, MutableByteSpan bytes)>;
  static constexpr std::size_t kReceiveSize = 2048;

  ProbeSockets(asio::io_context& io, Handler handler);
  ~ProbeSockets();
  ProbeSockets(const ProbeSockets&) = delete;
  ProbeSockets& operator=(const ProbeSockets&) = delete;

  // Binds a new socket on any port (dual-stack when the main socket is). False when the system
  // refuses one (logged at debug; the prediction then has one socket fewer).
  bool open(punch::SocketId id, bool dual_stack);
  void close(punch::SocketId id);
  void close_all();
  // False when there is no such socket or the send failed.
  // ttl: the IP TTL / hop limit for this datagram; 0: the system default.
  bool send(punch::SocketId id, const Endpoint& to, ByteSpan datagram, std::uint8_t ttl = 0);
  std::size_t size() const { return sockets_.size(); }
  // DF on every datagram of every probe socket, now and for those opened later
  // (net::set_pmtu_probe): on while path MTU discovery runs.
  void set_pmtu_probe(bool probe);
  std::uint64_t send_errors() const { return send_errors_; }

 private:
  struct Socket;
  void read(Socket& socket);

  asio::io_context& io_;
  Handler handler_;
  std::unordered_map<punch::SocketId, std::shared_ptr<Socket>> sockets_;
  std::uint64_t send_errors_ = 0;
  bool pmtu_probe_ = false;
};

}  // namespace knit::agent
