// A batched UDP socket: knitd's main socket (WireGuard, disco and STUN share it). Dual-stack
// where the host has IPv6, plain IPv4 otherwise. Receives and sends in batches (recvmmsg / sendmmsg) so a
// busy tunnel costs one system call per batch rather than one per packet.
//
// Offloads (on unless Options::offloads is false): a run of queued datagrams of one size to one
// endpoint leaves as one message with UDP_SEGMENT (the kernel, or the NIC, cuts it; the last
// datagram of a run may be shorter), and UDP_GRO lets the kernel hand over a run of one
// sender's same-size datagrams as one buffer, split here again. A socket whose path refuses
// segmentation (EIO: no checksum offload on the way out) sends those datagrams one by one and
// stops asking; the buffers are forced past the system limits where the process may
// (SO_RCVBUFFORCE, as root).
//
// The batch buffers (4 MiB: kBatch slots of 64 KiB each way) may be shared by many sockets
// (Buffers, make_buffers()): knitd's probe sockets, up to 256 of them, share one set. Sharing
// is safe on one thread: a socket that queues while another's sends wait flushes those first,
// and what receive_batch() returns is valid until the next receive_batch() of any sharer.
//
// ICMP errors about our datagrams (IP_RECVERR, and IPV6_RECVERR on a dual-stack socket) queue
// on the socket's error queue (net/socket_error.hpp). Linux also reports each one once as the
// result of the next receive or send (EMSGSIZE, ECONNREFUSED, EHOSTUNREACH, ...): that is
// never fatal here, a receive or send that fails so is tried once more, and the queue is
// drained (a bounded number at a time) whenever a receive fails or finds nothing, since a
// non-empty queue keeps the socket in EPOLLERR. A "fragmentation needed" / "packet too big"
// with an MTU goes to the too-big handler: a hint for the path MTU search, nothing more.
#pragma once

#include <sys/socket.h>

#include <asio.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <system_error>
#include <vector>

#include "base/bytes.hpp"
#include "base/ip.hpp"

namespace knit::net {

// The socket address to send to `to` from a socket that is dual-stack or not (a dual-stack
// socket reaches IPv4 peers at their v4-mapped address). Returns its length.
unsigned socket_address(const Endpoint& to, bool dual_stack, sockaddr_storage& out);

// How the kernel treats DF on a UDP socket's datagrams (IPv4, and IPv6 on a dual-stack socket).
// probe=false: Linux's default (IP_PMTUDISC_WANT): DF set, but a datagram larger than what an
// ICMP "fragmentation needed" taught the kernel is fragmented by this host (and a UDP_SEGMENT
// train longer than the route MTU goes without DF). probe=true (IP_PMTUDISC_PROBE): DF on every
// datagram and no fragmentation by this host whatever it learned, which is what packetization-
// layer path MTU discovery (RFC 8899) needs: a probe too big for the path is lost, not carried
// in fragments, and the tunnel is then fitted to the path. Errors are the kernel's.
std::error_code set_pmtu_probe(int fd, bool dual_stack, bool probe);

class UdpSocket {
 public:
  static constexpr std::size_t kBatch = 32;
  static constexpr std::size_t kReceiveSlot = 65536;
  // One message: a datagram, or a run of same-size datagrams for UDP_SEGMENT.
  static constexpr std::size_t kSendSlot = 65536;
  static constexpr std::size_t kMaxSegments = 64;  // the kernel's UDP_MAX_SEGMENTS (at least)
  static constexpr std::size_t kControlSlot = 96;  // pktinfo and a UDP_SEGMENT / UDP_GRO message
  static constexpr int kBufferBytes = 7 << 20;
  // Error-queue messages read per drain: enough for a burst, bounded so a flood of ICMP
  // cannot hold the loop (the rest wait for the next drain).
  static constexpr std::size_t kMaxErrorsPerDrain = 64;

  struct Options {
    bool offloads = true;  // UDP_SEGMENT and UDP_GRO where the kernel has them
  };
  struct Buffers;
  static std::shared_ptr<Buffers> make_buffers();

  explicit UdpSocket(asio::io_context& io);
  // buffers: shared with other sockets (header comment); null: its own.
  UdpSocket(asio::io_context& io, Options options, std::shared_ptr<Buffers> buffers = nullptr);
  ~UdpSocket();
  UdpSocket(const UdpSocket&) = delete;
  UdpSocket& operator=(const UdpSocket&) = delete;

  // Binds [::]:port (or 0.0.0.0:port); port 0 picks a free one. Replaces any previous socket.
  std::error_code bind(std::uint16_t port);
  void close();
  bool is_open() const { return socket_.is_open(); }
  std::uint16_t port() const { return port_; }
  bool dual_stack() const { return dual_stack_; }
  asio::ip::udp::socket& socket() { return socket_; }
  // set_pmtu_probe() on this socket, now and after every bind().
  std::error_code set_pmtu_probe(bool probe);

  // An ICMP "fragmentation needed" / "packet too big" said a datagram to `destination` met a
  // hop that carries at most `mtu` bytes (an outer IP packet size). Empty: only counted.
  using TooBigHandler = std::function<void(const Endpoint& destination, std::size_t mtu)>;
  void set_too_big_handler(TooBigHandler handler) { on_too_big_ = std::move(handler); }
  const TooBigHandler& too_big_handler() const { return on_too_big_; }
  // An ICMP "time exceeded" said a datagram to `destination` (sent with a short TTL) died at
  // the hop `offender`. Empty: only counted (as other errors).
  using TimeExceededHandler = std::function<void(const Endpoint& destination, const IpAddress& offender)>;
  void set_time_exceeded_handler(TimeExceededHandler handler) { on_time_exceeded_ = std::move(handler); }
  // Reads up to kMaxErrorsPerDrain messages of the error queue; returns how many it read.
  // receive_batch() calls it; public for tests.
  std::size_t drain_errors();

  // Receives up to kBatch messages without blocking (more datagrams than that when the kernel
  // coalesced them); returns the number of datagrams, 0 when none are waiting.
  std::size_t receive_batch();
  // Whether the last receive_batch filled every slot (more may be waiting).
  bool receive_was_full() const { return receive_full_; }
  MutableByteSpan received(std::size_t i) {
    const Received& r = received_at(i);
    return {receive_buffer() + r.offset, r.length};
  }
  const Endpoint& received_from(std::size_t i) const { return from_slot(received_at(i).slot); }

  // Queues a datagram; sent by flush() or when the batch is full.
  void queue(const Endpoint& to, ByteSpan datagram);
  void flush();
  // One datagram sent at once, alone, with options that differ from the socket's; what is queued
  // goes first, with the socket's own. ttl: the IP TTL / hop limit (0: the system default).
  // fragmentable: to an IPv4 address, without DF (IP_PMTUDISC_DONT for this send), so a router
  // whose next hop is smaller fragments it instead of dropping it — for a datagram known to be
  // larger than its path carries that must still arrive (agent/mesh_transport.cpp). IPv6 routers
  // never fragment, and the kernel fragments at the source only for a path MTU it learned, so
  // to an IPv6 address it changes nothing.
  struct SendOptions {
    std::uint8_t ttl = 0;
    bool fragmentable = false;
  };
  void send_alone(const Endpoint& to, ByteSpan datagram, SendOptions options);
  std::uint64_t fragmentable_sends() const { return fragmentable_sends_; }

  std::uint64_t send_errors() const { return send_errors_; }
  // Sends retried without a source address because that address had gone (the host roamed).
  std::uint64_t source_resets() const { return source_resets_; }
  std::uint64_t receive_errors() const { return receive_errors_; }
  bool gso() const { return gso_; }
  bool gro() const { return gro_; }
  // Messages sent with UDP_SEGMENT, and datagrams received coalesced (UDP_GRO).
  std::uint64_t gso_messages() const { return gso_messages_; }
  std::uint64_t gro_datagrams() const { return gro_datagrams_; }
  // The error queue (socket_error.hpp): too-big hints, other errors, messages not understood;
  // and receives or sends that failed once because an error was pending, then went on.
  std::uint64_t icmp_too_big() const { return icmp_too_big_; }
  std::uint64_t socket_errors_other() const { return socket_errors_other_; }
  std::uint64_t socket_errors_malformed() const { return socket_errors_malformed_; }
  std::uint64_t pending_errors() const { return pending_errors_; }

 private:
  void send_now(const Endpoint& to, ByteSpan datagram, bool with_source = true, bool again = false);
  int receive_now();
  unsigned fill_address(const Endpoint& to, sockaddr_storage& ss) const;
  // Writes an IP_PKTINFO / IPV6_PKTINFO message asking the kernel to send from to.local();
  // returns its length, 0 when the endpoint has no local address.
  std::size_t fill_source(const Endpoint& to, std::uint8_t* control) const;

  void send_segments_alone(std::size_t i);
  // Makes the shared send batch this socket's (flushing another sharer's first).
  void claim();

 public:
  struct Received {
    std::size_t offset;
    std::size_t length;
    std::size_t slot;
  };
  struct Message {
    Endpoint to;
    std::size_t length = 0;    // bytes in the slot
    std::size_t segment = 0;   // the size of each datagram but the last
    std::size_t count = 0;     // datagrams
    bool closed = false;       // a shorter datagram ended the run
  };

 private:
  const Received& received_at(std::size_t i) const;
  std::uint8_t* receive_buffer();
  const Endpoint& from_slot(std::size_t slot) const;

  Options options_;
  asio::ip::udp::socket socket_;
  bool dual_stack_ = false;
  bool pmtu_probe_ = false;
  std::uint64_t fragmentable_sends_ = 0;
  bool gso_ = false;
  bool gro_ = false;
  bool receive_full_ = false;
  std::uint16_t port_ = 0;

  std::shared_ptr<Buffers> b_;

  std::uint64_t send_errors_ = 0;
  std::uint64_t source_resets_ = 0;
  std::uint64_t receive_errors_ = 0;
  std::uint64_t gso_messages_ = 0;
  std::uint64_t gro_datagrams_ = 0;
  std::uint64_t icmp_too_big_ = 0;
  std::uint64_t socket_errors_other_ = 0;
  std::uint64_t socket_errors_malformed_ = 0;
  std::uint64_t pending_errors_ = 0;
  TooBigHandler on_too_big_;
  TimeExceededHandler on_time_exceeded_;
};

// The batch buffers and the send batch in them (UdpSocket::make_buffers).
struct UdpSocket::Buffers {
  Buffers();
  std::vector<std::uint8_t> receive_buffers;
  std::vector<Received> received;
  std::vector<Endpoint> receive_from;
  std::vector<sockaddr_storage> receive_addresses;
  std::vector<std::uint8_t> receive_control;
  std::vector<iovec> receive_iov;
  std::vector<mmsghdr> receive_headers;

  std::vector<std::uint8_t> send_buffers;
  std::vector<sockaddr_storage> send_addresses;
  std::vector<std::uint8_t> send_control;
  std::vector<Message> send_messages;
  std::vector<iovec> send_iov;
  std::vector<mmsghdr> send_headers;
  std::size_t send_count = 0;
  UdpSocket* owner = nullptr;  // whose datagrams the send batch holds
};

}  // namespace knit::net
