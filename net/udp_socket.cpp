#include "net/udp_socket.hpp"

#include <netinet/in.h>
#include <netinet/udp.h>

#include <cerrno>
#include <cstring>

#include "net/socket_error.hpp"

namespace knit::net {

UdpSocket::Buffers::Buffers()
    : receive_buffers(kBatch * kReceiveSlot),
      receive_from(kBatch),
      receive_addresses(kBatch),
      receive_control(kBatch * kControlSlot),
      receive_iov(kBatch),
      receive_headers(kBatch),
      send_buffers(kBatch * kSendSlot),
      send_addresses(kBatch),
      send_control(kBatch * kControlSlot),
      send_messages(kBatch),
      send_iov(kBatch),
      send_headers(kBatch) {
  // A coalesced receive may hold many datagrams; the list grows once to its high mark.
  received.reserve(kBatch * kMaxSegments);
}

std::shared_ptr<UdpSocket::Buffers> UdpSocket::make_buffers() { return std::make_shared<Buffers>(); }

UdpSocket::UdpSocket(asio::io_context& io) : UdpSocket(io, Options{}) {}

UdpSocket::UdpSocket(asio::io_context& io, Options options, std::shared_ptr<Buffers> buffers)
    : options_(options), socket_(io), b_(buffers ? std::move(buffers) : make_buffers()) {}

UdpSocket::~UdpSocket() {
  if (b_->owner == this) {
    b_->send_count = 0;
    b_->owner = nullptr;
  }
}

const UdpSocket::Received& UdpSocket::received_at(std::size_t i) const { return b_->received[i]; }
std::uint8_t* UdpSocket::receive_buffer() { return b_->receive_buffers.data(); }
const Endpoint& UdpSocket::from_slot(std::size_t slot) const { return b_->receive_from[slot]; }

void UdpSocket::claim() {
  if (b_->owner == this) return;
  if (b_->owner != nullptr && b_->send_count > 0) b_->owner->flush();
  b_->send_count = 0;
  b_->owner = this;
}

std::error_code set_pmtu_probe(int fd, bool dual_stack, bool probe) {
  const int v4 = probe ? IP_PMTUDISC_PROBE : IP_PMTUDISC_WANT;
  // On a dual-stack socket the IPv4 option governs its v4-mapped traffic.
  if (::setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &v4, sizeof v4) != 0)
    return {errno, std::system_category()};
  if (dual_stack) {
    const int v6 = probe ? IPV6_PMTUDISC_PROBE : IPV6_PMTUDISC_WANT;
    if (::setsockopt(fd, IPPROTO_IPV6, IPV6_MTU_DISCOVER, &v6, sizeof v6) != 0)
      return {errno, std::system_category()};
  }
  return {};
}

std::error_code UdpSocket::set_pmtu_probe(bool probe) {
  pmtu_probe_ = probe;
  if (!socket_.is_open()) return {};
  return knit::net::set_pmtu_probe(socket_.native_handle(), dual_stack_, probe);
}

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
  // ICMP errors about our datagrams onto the error queue (drain_errors): "fragmentation
  // needed" / "packet too big" are the path MTU search's hints. IP_RECVERR governs IPv4 (and
  // a dual-stack socket's v4-mapped traffic), IPV6_RECVERR the IPv6 side.
  ::setsockopt(socket_.native_handle(), IPPROTO_IP, IP_RECVERR, &on, sizeof on);
  if (dual_stack_) ::setsockopt(socket_.native_handle(), IPPROTO_IPV6, IPV6_RECVERR, &on, sizeof on);
  socket_.non_blocking(true, ec);
  // Large socket buffers absorb bursts while the loop is busy with the TUN side: past
  // net.core.rmem_max where the process may (CAP_NET_ADMIN), else as large as allowed.
  const int fd = socket_.native_handle();
  const int bytes = kBufferBytes;
  if (::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &bytes, sizeof bytes) != 0)
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
  if (::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &bytes, sizeof bytes) != 0)
    ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &bytes, sizeof bytes);
  if (pmtu_probe_) knit::net::set_pmtu_probe(fd, dual_stack_, true);
  gso_ = gro_ = false;
  if (options_.offloads) {
    // UDP_SEGMENT has no switch: probe that the option exists (Linux 4.18+).
    int segment = 0;
    socklen_t len = sizeof segment;
    gso_ = ::getsockopt(fd, SOL_UDP, UDP_SEGMENT, &segment, &len) == 0;
    gro_ = ::setsockopt(fd, SOL_UDP, UDP_GRO, &on, sizeof on) == 0;
  }
  ec.clear();
  port_ = socket_.local_endpoint(ec).port();
  return ec;
}

void UdpSocket::close() {
  // (What a receive_batch() returned stays: a sharer may be walking it.)
  if (b_->owner == this) b_->send_count = 0;
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

namespace {

// The segment size of a coalesced receive (UDP_GRO), 0 when the datagram came alone.
std::size_t gro_segment(const msghdr& hdr) {
  auto& mutable_hdr = const_cast<msghdr&>(hdr);
  for (cmsghdr* c = CMSG_FIRSTHDR(&mutable_hdr); c != nullptr; c = CMSG_NXTHDR(&mutable_hdr, c)) {
    if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO && c->cmsg_len >= CMSG_LEN(sizeof(int))) {
      int size;
      std::memcpy(&size, CMSG_DATA(c), sizeof size);
      return size > 0 ? static_cast<std::size_t>(size) : 0;
    }
  }
  return 0;
}

}  // namespace

namespace {

// An errno a receive or send may report once for an ICMP error about an earlier datagram
// (Linux's icmp_err_convert / icmpv6_err_convert, IP_RECVERR): not this call's own failure.
bool reported_error(int error) {
  switch (error) {
    case ECONNREFUSED: case EHOSTUNREACH: case ENETUNREACH: case EHOSTDOWN: case ENONET:
    case EMSGSIZE: case ENOPROTOOPT: case EOPNOTSUPP: case EACCES: case EPROTO:
      return true;
    default:
      return false;
  }
}

bool would_block(int error) { return error == EAGAIN || error == EWOULDBLOCK || error == EINTR; }

}  // namespace

std::size_t UdpSocket::drain_errors() {
  if (!socket_.is_open()) return 0;
  std::size_t read = 0;
  for (; read < kMaxErrorsPerDrain; ++read) {
    // The error's control message (sock_extended_err, the offender, pktinfo) and the original
    // destination; the payload (our own datagram) is not needed.
    alignas(cmsghdr) std::uint8_t control[256];
    sockaddr_storage name{};
    std::uint8_t payload[1];
    iovec iov{payload, sizeof payload};
    msghdr msg{};
    msg.msg_name = &name;
    msg.msg_namelen = sizeof name;
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    if (::recvmsg(socket_.native_handle(), &msg, MSG_ERRQUEUE | MSG_DONTWAIT) < 0) break;  // empty
    SocketError e;
    if ((msg.msg_flags & MSG_CTRUNC) == 0)
      e = parse_socket_error(ByteSpan(control, msg.msg_controllen),
                             ByteSpan(reinterpret_cast<const std::uint8_t*>(&name), msg.msg_namelen));
    switch (e.kind) {
      case SocketErrorKind::too_big:
        ++icmp_too_big_;
        if (on_too_big_) on_too_big_(*e.destination, e.mtu);
        break;
      case SocketErrorKind::other:
        ++socket_errors_other_;
        if (on_time_exceeded_ && e.time_exceeded() && e.destination && e.offender)
          on_time_exceeded_(*e.destination, *e.offender);
        break;
      case SocketErrorKind::malformed: ++socket_errors_malformed_; break;
    }
  }
  return read;
}

int UdpSocket::receive_now() {
  for (std::size_t i = 0; i < kBatch; ++i) {
    b_->receive_iov[i] = {b_->receive_buffers.data() + i * kReceiveSlot, kReceiveSlot};
    std::memset(&b_->receive_headers[i], 0, sizeof(mmsghdr));
    b_->receive_headers[i].msg_hdr.msg_name = &b_->receive_addresses[i];
    b_->receive_headers[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
    b_->receive_headers[i].msg_hdr.msg_iov = &b_->receive_iov[i];
    b_->receive_headers[i].msg_hdr.msg_iovlen = 1;
    b_->receive_headers[i].msg_hdr.msg_control = b_->receive_control.data() + i * kControlSlot;
    b_->receive_headers[i].msg_hdr.msg_controllen = kControlSlot;
  }
  return ::recvmmsg(socket_.native_handle(), b_->receive_headers.data(), kBatch, MSG_DONTWAIT, nullptr);
}

std::size_t UdpSocket::receive_batch() {
  b_->received.clear();
  receive_full_ = false;
  if (!socket_.is_open()) return 0;
  int n = receive_now();
  if (n < 0 && !would_block(errno)) {
    // Most likely an ICMP error reported once (header comment), which says nothing about the
    // datagrams waiting behind it: read the error queue, then those datagrams (no new
    // readiness event would announce them).
    ++pending_errors_;
    drain_errors();
    n = receive_now();
    if (n < 0 && !would_block(errno)) ++receive_errors_;
  }
  if (n <= 0) {
    // Woken with nothing to read: perhaps only the error queue (EPOLLERR) has something.
    drain_errors();
    return 0;
  }
  receive_full_ = static_cast<std::size_t>(n) == kBatch;
  for (int i = 0; i < n; ++i) {
    const msghdr& hdr = b_->receive_headers[i].msg_hdr;
    auto from = Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&b_->receive_addresses[i]));
    // Truncated datagrams (larger than a slot) cannot be valid WireGuard messages.
    if (!from || (hdr.msg_flags & MSG_TRUNC)) {
      ++receive_errors_;
      continue;
    }
    from->set_local(local_address(hdr));
    b_->receive_from[static_cast<std::size_t>(i)] = *from;
    const std::size_t base = static_cast<std::size_t>(i) * kReceiveSlot;
    const std::size_t length = b_->receive_headers[i].msg_len;
    const std::size_t segment = gro_ ? gro_segment(hdr) : 0;
    if (segment == 0 || segment >= length) {
      b_->received.push_back({base, length, static_cast<std::size_t>(i)});
      continue;
    }
    // One sender's run of same-size datagrams (the last may be shorter).
    for (std::size_t off = 0; off < length; off += segment) {
      b_->received.push_back({base + off, std::min(segment, length - off), static_cast<std::size_t>(i)});
      ++gro_datagrams_;
    }
  }
  return b_->received.size();
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

void UdpSocket::send_now(const Endpoint& to, ByteSpan datagram, bool with_source, bool again) {
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
  const int error = errno;
  if (!again && reported_error(error)) {
    // An ICMP error about an earlier datagram, reported once (header comment): this one did
    // not leave. Read the queue, then once more.
    ++pending_errors_;
    drain_errors();
    send_now(to, datagram, with_source, true);
    return;
  }
  if (control_len > 0 && error != EAGAIN && error != EWOULDBLOCK && error != ENOBUFS) {
    // Our old source address is gone (this host roamed; Linux says EINVAL or ENETUNREACH):
    // let the kernel choose a new one. The peer's answer then teaches the core the new one.
    ++source_resets_;
    send_now(to, datagram, false, true);
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
  if (datagram.empty() || datagram.size() > kSendSlot) {
    flush();
    send_now(to, datagram);
    return;
  }
  // Joins the run in the last message when it can: same endpoint (and source), same size or
  // a shorter last one, room left.
  claim();
  if (gso_ && b_->send_count > 0) {
    Message& last = b_->send_messages[b_->send_count - 1];
    if (!last.closed && last.to == to && datagram.size() <= last.segment &&
        last.count < kMaxSegments && last.length + datagram.size() <= kSendSlot) {
      std::memcpy(b_->send_buffers.data() + (b_->send_count - 1) * kSendSlot + last.length, datagram.data(),
                  datagram.size());
      last.length += datagram.size();
      ++last.count;
      if (datagram.size() < last.segment) last.closed = true;
      return;
    }
  }
  if (b_->send_count == kBatch) flush();
  const std::size_t i = b_->send_count++;
  std::memcpy(b_->send_buffers.data() + i * kSendSlot, datagram.data(), datagram.size());
  Message& m = b_->send_messages[i];
  m.to = to;
  m.length = datagram.size();
  m.segment = datagram.size();
  m.count = 1;
  m.closed = false;
}

void UdpSocket::send_segments_alone(std::size_t i) {
  const Message& m = b_->send_messages[i];
  const std::uint8_t* slot = b_->send_buffers.data() + i * kSendSlot;
  for (std::size_t off = 0; off < m.length; off += m.segment)
    send_now(m.to, ByteSpan(slot + off, std::min(m.segment, m.length - off)));
}

void UdpSocket::send_alone(const Endpoint& to, ByteSpan datagram, SendOptions options) {
  if (!socket_.is_open()) return;
  flush();  // what is queued keeps the socket's options
  const int fd = socket_.native_handle();
  const bool v6 = dual_stack_ || to.address().is_v6();  // a dual-stack socket's IPv4 too
  const bool to_v4 = to.address().is_v4();
  const int limited = options.ttl, reset = -1;  // -1: back to the system default
  if (options.ttl != 0) {
    ::setsockopt(fd, IPPROTO_IP, IP_TTL, &limited, sizeof limited);
    if (v6) ::setsockopt(fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &limited, sizeof limited);
  }
  const bool unfragment = options.fragmentable && to_v4;
  if (unfragment) {
    const int dont = IP_PMTUDISC_DONT;
    ::setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &dont, sizeof dont);
    ++fragmentable_sends_;
  }
  queue(to, datagram);
  flush();
  if (options.ttl != 0) {
    ::setsockopt(fd, IPPROTO_IP, IP_TTL, &reset, sizeof reset);
    if (v6) ::setsockopt(fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &reset, sizeof reset);
  }
  if (unfragment) {
    const int back = pmtu_probe_ ? IP_PMTUDISC_PROBE : IP_PMTUDISC_WANT;
    ::setsockopt(fd, IPPROTO_IP, IP_MTU_DISCOVER, &back, sizeof back);
  }
}

void UdpSocket::flush() {
  if (b_->owner != this || b_->send_count == 0) return;
  for (std::size_t i = 0; i < b_->send_count; ++i) {
    const Message& m = b_->send_messages[i];
    b_->send_iov[i] = {b_->send_buffers.data() + i * kSendSlot, m.length};
    std::memset(&b_->send_headers[i], 0, sizeof(mmsghdr));
    msghdr& hdr = b_->send_headers[i].msg_hdr;
    hdr.msg_name = &b_->send_addresses[i];
    hdr.msg_namelen = fill_address(m.to, b_->send_addresses[i]);
    hdr.msg_iov = &b_->send_iov[i];
    hdr.msg_iovlen = 1;
    std::uint8_t* control = b_->send_control.data() + i * kControlSlot;
    std::memset(control, 0, kControlSlot);
    std::size_t len = fill_source(m.to, control);
    if (m.count > 1) {
      auto* c = reinterpret_cast<cmsghdr*>(control + len);
      c->cmsg_level = SOL_UDP;
      c->cmsg_type = UDP_SEGMENT;
      c->cmsg_len = CMSG_LEN(sizeof(std::uint16_t));
      const auto segment = static_cast<std::uint16_t>(m.segment);
      std::memcpy(CMSG_DATA(c), &segment, sizeof segment);
      len += CMSG_SPACE(sizeof(std::uint16_t));
    }
    if (len > 0) {
      hdr.msg_control = control;
      hdr.msg_controllen = len;
    }
  }
  std::size_t sent = 0;
  while (sent < b_->send_count) {
    int n = ::sendmmsg(socket_.native_handle(), b_->send_headers.data() + sent,
                       static_cast<unsigned>(b_->send_count - sent), MSG_DONTWAIT);
    if (n <= 0) {
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)) {
        // A full socket buffer: the rest of this batch is lost, as a router would lose it;
        // WireGuard and the inner TCP recover.
        for (std::size_t i = sent; i < b_->send_count; ++i) send_errors_ += b_->send_messages[i].count;
        break;
      }
      const Message& m = b_->send_messages[sent];
      const int error = errno;
      if (reported_error(error)) {
        // An ICMP error about an earlier datagram (header comment): read the queue; the
        // message goes again below.
        ++pending_errors_;
        drain_errors();
      }
      if (m.count > 1 && error == EIO) {
        // The path cannot segment (no checksum offload on the way out): one by one, from now on.
        gso_ = false;
        send_segments_alone(sent);
      } else if (m.count > 1) {
        send_segments_alone(sent);
      } else {
        // The message failed on its own: retry it alone (send_now drops a source address that
        // no longer exists), then carry on with the rest of the batch.
        send_now(m.to, ByteSpan(b_->send_buffers.data() + sent * kSendSlot, m.length));
      }
      ++sent;
      continue;
    }
    for (std::size_t i = sent; i < sent + static_cast<std::size_t>(n); ++i)
      if (b_->send_messages[i].count > 1) ++gso_messages_;
    sent += static_cast<std::size_t>(n);
  }
  b_->send_count = 0;
}

}  // namespace knit::net
