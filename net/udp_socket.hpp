// A batched UDP socket: knitd's main socket (WireGuard, disco and STUN share it). Dual-stack
// where the host has IPv6, plain IPv4 otherwise. Receives and sends in batches (recvmmsg / sendmmsg) so a
// busy tunnel costs one system call per batch rather than one per packet.
#pragma once

#include <sys/socket.h>

#include <asio.hpp>
#include <cstdint>
#include <system_error>
#include <vector>

#include "base/bytes.hpp"
#include "base/ip.hpp"

namespace knit::net {

// The socket address to send to `to` from a socket that is dual-stack or not (a dual-stack
// socket reaches IPv4 peers at their v4-mapped address). Returns its length.
unsigned socket_address(const Endpoint& to, bool dual_stack, sockaddr_storage& out);

class UdpSocket {
 public:
  static constexpr std::size_t kBatch = 32;
  static constexpr std::size_t kReceiveSlot = 65536;
  static constexpr std::size_t kSendSlot = 2048;
  static constexpr std::size_t kControlSlot = 64;  // room for one pktinfo control message

  explicit UdpSocket(asio::io_context& io);
  UdpSocket(const UdpSocket&) = delete;
  UdpSocket& operator=(const UdpSocket&) = delete;

  // Binds [::]:port (or 0.0.0.0:port); port 0 picks a free one. Replaces any previous socket.
  std::error_code bind(std::uint16_t port);
  void close();
  bool is_open() const { return socket_.is_open(); }
  std::uint16_t port() const { return port_; }
  bool dual_stack() const { return dual_stack_; }
  asio::ip::udp::socket& socket() { return socket_; }

  // Receives up to kBatch datagrams without blocking; 0 when none are waiting.
  std::size_t receive_batch();
  MutableByteSpan received(std::size_t i) { return {receive_buffers_.data() + i * kReceiveSlot, receive_lengths_[i]}; }
  const Endpoint& received_from(std::size_t i) const { return receive_from_[i]; }

  // Queues a datagram; sent by flush() or when the batch is full.
  void queue(const Endpoint& to, ByteSpan datagram);
  void flush();

  std::uint64_t send_errors() const { return send_errors_; }
  // Sends retried without a source address because that address had gone (the host roamed).
  std::uint64_t source_resets() const { return source_resets_; }
  std::uint64_t receive_errors() const { return receive_errors_; }

 private:
  void send_now(const Endpoint& to, ByteSpan datagram, bool with_source = true);
  unsigned fill_address(const Endpoint& to, sockaddr_storage& ss) const;
  // Writes an IP_PKTINFO / IPV6_PKTINFO message asking the kernel to send from to.local();
  // returns its length, 0 when the endpoint has no local address.
  std::size_t fill_source(const Endpoint& to, std::uint8_t* control) const;

  asio::ip::udp::socket socket_;
  bool dual_stack_ = false;
  std::uint16_t port_ = 0;

  std::vector<std::uint8_t> receive_buffers_;
  std::vector<std::size_t> receive_lengths_;
  std::vector<Endpoint> receive_from_;
  std::vector<sockaddr_storage> receive_addresses_;
  std::vector<std::uint8_t> receive_control_;
  std::vector<iovec> receive_iov_;
  std::vector<mmsghdr> receive_headers_;

  std::vector<std::uint8_t> send_buffers_;
  std::vector<sockaddr_storage> send_addresses_;
  std::vector<std::uint8_t> send_control_;
  std::vector<Endpoint> send_to_;
  std::vector<iovec> send_iov_;
  std::vector<mmsghdr> send_headers_;
  std::size_t send_count_ = 0;

  std::uint64_t send_errors_ = 0;
  std::uint64_t source_resets_ = 0;
  std::uint64_t receive_errors_ = 0;
};

}  // namespace knit::net
