#include "net/udp_socket.hpp"

#include <netinet/in.h>

#include <cerrno>
#include <cstring>

namespace knit::net {

UdpSocket::UdpSocket(asio::io_context& io)
    : socket_(io),
      receive_buffers_(kBatch * kReceiveSlot),
      receive_lengths_(kBatch),
      receive_from_(kBatch),
      receive_addresses_(kBatch),
      receive_control_(kBatch * kControlSlot),
      receive_iov_(kBatch),
      receive_headers_(kBatch),
      send_buffers_(kBatch * kSendSlot),
      send_addresses_(kBatch),
      send_control_(kBatch * kControlSlot),
      send_to_(kBatch),
      send_iov_(kBatch),
      send_headers_(kBatch) {}

std::error_code UdpSocket::bind(std::uint16_t port) {
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
  // Learn the local address of every datagram, so replies leave from the address the peer
  // sent to (a host with several addresses would otherwise answer from the outgoing
  // interface's, and a NAT in front of the peer would drop that answer).
  // One kind of pktinfo per socket: a dual-stack socket reports IPv4 datagrams' destination
  // as a v4-mapped IPV6_PKTINFO too, so asking for both would only double the control data.
  const int on = 1;
  if (dual_stack_)
    ::setsockopt(socket_.native_handle(), IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof on);
  else
    ::setsockopt(socket_.native_handle(), IPPROTO_IP, IP_PKTINFO, &on, sizeof on);
  socket_.non_blocking(true, ec);
  // Large socket buffers absorb bursts while the loop is busy with the TUN side.
  socket_.set_option(asio::socket_base::receive_buffer_size(4 << 20), ec);
  socket_.set_option(asio::socket_base::send_buffer_size(4 << 20), ec);
  ec.clear();
  port_ = socket_.local_endpoint(ec).port();
  return ec;
}

void UdpSocket::close() {
  send_count_ = 0;
  std::error_code ignored;
  if (socket_.is_open()) socket_.close(ignored);
  port_ = 0;
}

namespace {

// The destination address of a received datagram, from its pktinfo control message. Lengths
// are checked: a truncated control message (MSG_CTRUNC) yields no address rather than garbage.
std::optional<IpAddress> local_address(const msghdr& hdr) {
  if (hdr.msg_flags & MSG_CTRUNC) return std::nullopt;
  auto& mutable_hdr = const_cast<msghdr&>(hdr);
  for (cmsghdr* c = CMSG_FIRSTHDR(&mutable_hdr); c != nullptr; c = CMSG_NXTHDR(&mutable_hdr, c)) {
    if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO &&
        c->cmsg_len >= CMSG_LEN(sizeof(in_pktinfo))) {
      in_pktinfo info;
      std::memcpy(&info, CMSG_DATA(c), sizeof info);
      return IpAddress::v4(reinterpret_cast<const std::uint8_t*>(&info.ipi_addr));
    }
    if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO &&
        c->cmsg_len >= CMSG_LEN(sizeof(in6_pktinfo))) {
      in6_pktinfo info;
      std::memcpy(&info, CMSG_DATA(c), sizeof info);
      const auto* b = reinterpret_cast<const std::uint8_t*>(&info.ipi6_addr);
      if (IN6_IS_ADDR_V4MAPPED(&info.ipi6_addr)) return IpAddress::v4(b + 12);
      // A link-local source would also need its interface; leave those to the kernel.
      if (IN6_IS_ADDR_LINKLOCAL(&info.ipi6_addr)) return std::nullopt;
      return IpAddress::v6(b);
    }
  }
  return std::nullopt;
}

}  // namespace

std::size_t UdpSocket::receive_batch() {
  if (!socket_.is_open()) return 0;
  for (std::size_t i = 0; i < kBatch; ++i) {
    receive_iov_[i] = {receive_buffers_.data() + i * kReceiveSlot, kReceiveSlot};
    std::memset(&receive_headers_[i], 0, sizeof(mmsghdr));
    receive_headers_[i].msg_hdr.msg_name = &receive_addresses_[i];
    receive_headers_[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
    receive_headers_[i].msg_hdr.msg_iov = &receive_iov_[i];
    receive_headers_[i].msg_hdr.msg_iovlen = 1;
    receive_headers_[i].msg_hdr.msg_control = receive_control_.data() + i * kControlSlot;
    receive_headers_[i].msg_hdr.msg_controllen = kControlSlot;
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
    from->set_local(local_address(receive_headers_[i].msg_hdr));
    if (kept != static_cast<std::size_t>(i))
      std::memmove(receive_buffers_.data() + kept * kReceiveSlot,
                   receive_buffers_.data() + i * kReceiveSlot, receive_headers_[i].msg_len);
    receive_lengths_[kept] = receive_headers_[i].msg_len;
    receive_from_[kept] = *from;
    ++kept;
  }
  return kept;
}

unsigned socket_address(const Endpoint& to, bool dual_stack, sockaddr_storage& ss) {
  if (dual_stack && to.address().is_v4()) {
    // A dual-stack socket reaches IPv4 peers through v4-mapped addresses (::ffff:a.b.c.d).
    std::uint8_t mapped[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    std::memcpy(mapped + 12, to.address().bytes(), 4);
    return Endpoint(IpAddress::v6(mapped), to.port()).to_sockaddr(ss);
  }
  return to.to_sockaddr(ss);
}

unsigned UdpSocket::fill_address(const Endpoint& to, sockaddr_storage& ss) const {
  return socket_address(to, dual_stack_, ss);
}

std::size_t UdpSocket::fill_source(const Endpoint& to, std::uint8_t* control) const {
  const auto& local = to.local();
  if (!local || local->family() != to.address().family()) return 0;
  std::memset(control, 0, kControlSlot);
  auto* c = reinterpret_cast<cmsghdr*>(control);
  if (local->is_v4()) {
    // IP_PKTINFO works on a dual-stack socket too, for its v4-mapped destinations.
    c->cmsg_level = IPPROTO_IP;
    c->cmsg_type = IP_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof(in_pktinfo));
    in_pktinfo info{};
    std::memcpy(&info.ipi_spec_dst, local->bytes(), 4);
    std::memcpy(CMSG_DATA(c), &info, sizeof info);
    return CMSG_SPACE(sizeof(in_pktinfo));
  }
  if (!dual_stack_) return 0;
  c->cmsg_level = IPPROTO_IPV6;
  c->cmsg_type = IPV6_PKTINFO;
  c->cmsg_len = CMSG_LEN(sizeof(in6_pktinfo));
  in6_pktinfo info{};
  std::memcpy(&info.ipi6_addr, local->bytes(), 16);
  std::memcpy(CMSG_DATA(c), &info, sizeof info);
  return CMSG_SPACE(sizeof(in6_pktinfo));
}

void UdpSocket::send_now(const Endpoint& to, ByteSpan datagram, bool with_source) {
  sockaddr_storage ss;
  std::uint8_t control[kControlSlot];
  iovec iov{const_cast<std::uint8_t*>(datagram.data()), datagram.size()};
  msghdr msg{};
  msg.msg_name = &ss;
  msg.msg_namelen = fill_address(to, ss);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  const std::size_t control_len = with_source ? fill_source(to, control) : 0;
  if (control_len > 0) {
    msg.msg_control = control;
    msg.msg_controllen = control_len;
  }
  if (::sendmsg(socket_.native_handle(), &msg, MSG_DONTWAIT) >= 0) return;
  if (control_len > 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOBUFS) {
    // Our old source address is gone (this host roamed; Linux says EINVAL or ENETUNREACH):
    // let the kernel choose a new one. The peer's answer then teaches the core the new one.
    ++source_resets_;
    send_now(to, datagram, false);
    return;
  }
  ++send_errors_;
}

void UdpSocket::queue(const Endpoint& to, ByteSpan datagram) {
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
  std::uint8_t* control = send_control_.data() + i * kControlSlot;
  if (const std::size_t len = fill_source(to, control); len > 0) {
    send_headers_[i].msg_hdr.msg_control = control;
    send_headers_[i].msg_hdr.msg_controllen = len;
  }
  send_to_[i] = to;
  if (send_count_ == kBatch) flush();
}

void UdpSocket::flush() {
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
      // The first message failed on its own: retry it alone (send_now drops a source address
      // that no longer exists), then carry on with the rest of the batch.
      const mmsghdr& failed = send_headers_[sent];
      send_now(send_to_[sent], ByteSpan(static_cast<const std::uint8_t*>(failed.msg_hdr.msg_iov->iov_base),
                                        failed.msg_hdr.msg_iov->iov_len));
      ++sent;
      continue;
    }
    sent += static_cast<std::size_t>(n);
  }
  send_count_ = 0;
}

}  // namespace knit::net
