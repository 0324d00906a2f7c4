// The secondary UDP sockets of port prediction (punch/path/predict.hpp): the hard side of an
// easy <-> hard pair opens up to 256 of them, each a NAT mapping of its own, and the one the
// peer's probes hit carries the traffic from then on. Keyed by the PathManager's SocketId.
//
// They batch as the main socket does (net/udp_socket.hpp), since a direct path may run through
// one of them: sends are queued and leave with sendmmsg (UDP_SEGMENT for a run of same-size
// datagrams to one endpoint) at flush(); a readable socket is drained with recvmmsg (UDP_GRO
// where the kernel has it), the handler sees every datagram and batch_done() follows each
// batch. All of them share one set of batch buffers, so 256 sockets cost what one does.
#pragma once

#include <asio.hpp>

#include <cstdint>
#include <functional>
#include <memory>
#include <unordered_map>

#include "base/bytes.hpp"
#include "base/ip.hpp"
#include "net/udp_socket.hpp"
#include "punch/path/manager.hpp"

namespace knit::agent {

class ProbeSockets {
 public:
  // A received datagram; the bytes stay valid until batch_done() returns.
  using Handler = std::function<void(punch::SocketId, const Endpoint& from, MutableByteSpan bytes)>;
  // After every batch a socket read: deliver what the handler collected.
  using BatchDone = std::function<void()>;

  ProbeSockets(asio::io_context& io, Handler handler, BatchDone batch_done = {},
               net::UdpSocket::Options options = {});
  ~ProbeSockets();
  ProbeSockets(const ProbeSockets&) = delete;
  ProbeSockets& operator=(const ProbeSockets&) = delete;

  // Binds a new socket on any port (dual-stack where the host has IPv6, as the main socket).
  // False when the system refuses one (logged at debug; the prediction then has one socket
  // fewer).
  bool open(punch::SocketId id, bool dual_stack);
  void close(punch::SocketId id);
  void close_all();
  // Queues a datagram (sent by flush()). False when there is no such socket.
  // ttl: the IP TTL / hop limit for this datagram, sent at once; 0: the system default.
  bool send(punch::SocketId id, const Endpoint& to, ByteSpan datagram, std::uint8_t ttl = 0) {
    return send(id, to, datagram, net::UdpSocket::SendOptions{ttl, false});
  }
  // With options other than the defaults (net::UdpSocket::send_alone): sent at once, alone.
  bool send(punch::SocketId id, const Endpoint& to, ByteSpan datagram, net::UdpSocket::SendOptions options);
  // Sends what is queued.
  void flush();
  std::size_t size() const { return sockets_.size(); }
  // DF on every datagram of every probe socket, now and for those opened later
  // (net::set_pmtu_probe): on while path MTU discovery runs.
  void set_pmtu_probe(bool probe);
  // ICMP too-big hints about what the probe sockets sent (net::UdpSocket::set_too_big_handler),
  // for every socket, open or opened later.
  void set_too_big_handler(net::UdpSocket::TooBigHandler handler);
  // What the sockets' system calls and error queues reported, summed over every socket opened
  // (closed ones too): the probe side of knitd's shutdown line (MeshPaths::summary).
  struct Counters {
    std::uint64_t opened = 0;
    std::uint64_t send_errors = 0;       // datagrams the kernel refused
    std::uint64_t receive_errors = 0;
    std::uint64_t gso_messages = 0;      // messages sent with UDP_SEGMENT
    std::uint64_t icmp_too_big = 0;      // ICMP too-big about what they sent (IP_RECVERR)
    std::uint64_t errqueue_other = 0;    // other ICMP errors (port unreachable, ...)
    std::uint64_t errqueue_malformed = 0;
    std::uint64_t pending_errors = 0;    // SO_ERROR cleared without an error-queue entry
    Counters& operator+=(const Counters& o);
  };
  Counters counters() const;
  std::uint64_t send_errors() const { return counters().send_errors; }
  std::uint64_t gso_messages() const { return counters().gso_messages; }

 private:
  struct Socket;
  void arm(const std::shared_ptr<Socket>& socket);
  void on_readable(const std::shared_ptr<Socket>& socket);
  void forget(Socket& socket);

  static constexpr int kBatchesPerWake = 4;
  asio::io_context& io_;
  Handler handler_;
  BatchDone batch_done_;
  net::UdpSocket::Options options_;
  std::shared_ptr<net::UdpSocket::Buffers> buffers_;
  std::unordered_map<punch::SocketId, std::shared_ptr<Socket>> sockets_;
  Socket* queued_on_ = nullptr;  // the socket whose sends wait in the shared batch
  Counters closed_;  // of the sockets closed so far
  bool pmtu_probe_ = false;
  net::UdpSocket::TooBigHandler on_too_big_;
};

}  // namespace knit::agent
