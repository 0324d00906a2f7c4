#include "agent/udp_transport.hpp"

#include <netinet/in.h>

#include <cerrno>
#include <cstring>

namespace knit::agent {

UdpTransport::UdpTransport(asio::io_context& io)
    : socket_(io),
      receive_buffers_(kBatch * kReceiveSlot),
      receive_lengths_(kBatch),
      receive_from_(kBatch),
      receive_addresses_(kBatch),
      receive_iov_(kBatch),
      receive_headers_(kBatch),
      send_buffers_(kBatch * kSendSlot),
      send_addresses_(kBatch),
      send_iov_(kBatch),
      send_headers_(kBatch) {}

std::error_code UdpTransport::bind(std::uint16_t port) {
  close();
  std::error_code ec;
  // Prefer one dual-stack socket so IPv4 and IPv6 peers share the port.
  socket_.open(asio::ip::udp::v6(), ec);
  if (!ec) {
    socket_.set_option(asio::ip::v6_only(false), ec);
    if (!ec) socket_.bind({asio::ip::address_v6::any(), port}, ec);
    if (ec) socket_.close();
    else dual_stack_ = true;
  }
  if (!socket_.is_open()) {
    dual_stack_ = false;
    socket_.open(asio::ip::udp::v4(), ec);
    if (ec) return ec;
    socket_.bind({asio::ip::address_v4::any(), port}, ec);
    if (ec) {
      socket_.close();
      return ec;
    }
  }
  socket_.non_blocking(true, ec);
  // Large socket buffers absorb bursts while the loop is busy with the TUN side.
  socket_.set_option(asio::socket_base::receive_buffer_size(4 << 20), ec);
  socket_.set_option(asio::socket_base::send_buffer_size(4 << 20), ec);
  ec.clear();
  port_ = socket_.local_endpoint(ec).port();
  return ec;
}

void UdpTransport::close() {
  send_count_ = 0;
  std::error_code ignored;
  if (socket_.is_open()) socket_.close(ignored);
  port_ = 0;
}

std::size_t UdpTransport::receive_batch() {
  if (!socket_.is_open()) return 0;
  for (std::size_t i = 0; i < kBatch; ++i) {
    receive_iov_[i] = {receive_buffers_.data() + i * kReceiveSlot, kReceiveSlot};
    std::memset(&receive_headers_[i], 0, sizeof(mmsghdr));
    receive_headers_[i].msg_hdr.msg_name = &receive_addresses_[i];
    receive_headers_[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
    receive_headers_[i].msg_hdr.msg_iov = &receive_iov_[i];
    receive_headers_[i].msg_hdr.msg_iovlen = 1;
  }
  int n = ::recvmmsg(socket_.native_handle(), receive_headers_.data(), kBatch, MSG_DONTWAIT, nullptr);
  if (n <= 0) {
    if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) ++receive_errors_;
    return 0;
  }
  std::size_t kept = 0;
  for (int i = 0; i < n; ++i) {
    auto from = Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&receive_addresses_[i]));
    // Truncated datagrams (larger than a slot) cannot be valid WireGuard messages.
    if (!from || (receive_headers_[i].msg_hdr.msg_flags & MSG_TRUNC)) {
      ++receive_errors_;
      continue;
    }
    if (kept != static_cast<std::size_t>(i))
      std::memmove(receive_buffers_.data() + kept * kReceiveSlot,
                   receive_buffers_.data() + i * kReceiveSlot, receive_headers_[i].msg_len);
    receive_lengths_[kept] = receive_headers_[i].msg_len;
    receive_from_[kept] = *from;
    ++kept;
  }
  return kept;
}

unsigned UdpTransport::fill_address(const Endpoint& to, sockaddr_storage& ss) const {
  if (dual_stack_ && to.address().is_v4()) {
    // A dual-stack socket reaches IPv4 peers through v4-mapped addresses (::ffff:a.b.c.d).
    std::uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    std::memcpy(mapped + 12, to.address().bytes(), 4);
    return Endpoint(IpAddress::v6(mapped), to.port()).to_sockaddr(ss);
  }
  return to.to_sockaddr(ss);
}

void UdpTransport::send_now(const Endpoint& to, ByteSpan datagram) {
  sockaddr_storage ss;
  const unsigned len = fill_address(to, ss);
  if (::sendto(socket_.native_handle(), datagram.data(), datagram.size(), MSG_DONTWAIT,
               reinterpret_cast<const sockaddr*>(&ss), len) < 0)
    ++send_errors_;
}

void UdpTransport::queue(const Endpoint& to, ByteSpan datagram) {
  if (!socket_.is_open()) return;
  if (!dual_stack_ && to.address().is_v6()) {
    ++send_errors_;
    return;
  }
  if (datagram.size() > kSendSlot) {
    flush();
    send_now(to, datagram);
    return;
  }
  const std::size_t i = send_count_++;
  std::uint8_t* slot = send_buffers_.data() + i * kSendSlot;
  std::memcpy(slot, datagram.data(), datagram.size());
  send_iov_[i] = {slot, datagram.size()};
  std::memset(&send_headers_[i], 0, sizeof(mmsghdr));
  send_headers_[i].msg_hdr.msg_name = &send_addresses_[i];
  send_headers_[i].msg_hdr.msg_namelen = fill_address(to, send_addresses_[i]);
  send_headers_[i].msg_hdr.msg_iov = &send_iov_[i];
  send_headers_[i].msg_hdr.msg_iovlen = 1;
  if (send_count_ == kBatch) flush();
}

void UdpTransport::flush() {
  std::size_t sent = 0;
  while (sent < send_count_) {
    int n = ::sendmmsg(socket_.native_handle(), send_headers_.data() + sent,
                       static_cast<unsigned>(send_count_ - sent), MSG_DONTWAIT);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
        // A full socket buffer: the rest of this batch is lost, as a router would lose it;
        // WireGuard and the inner TCP recover.
        send_errors_ += send_count_ - sent;
        break;
      }
      // The first message failed on its own (say, an unreachable destination): skip it only.
      ++send_errors_;
      ++sent;
      continue;
    }
    sent += static_cast<std::size_t>(n);
  }
  send_count_ = 0;
}

}  // namespace knit::agent
