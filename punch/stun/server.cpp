#include "punch/stun/server.hpp"

#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "base/log.hpp"

namespace knit::punch {

struct StunServer::Socket {
  explicit Socket(asio::io_context& io) : socket(io) {}
  asio::ip::udp::socket socket;
  std::size_t group = 0;
  Endpoint bound;
  bool wildcard = false;
};

namespace {

constexpr std::size_t kControlSize = 128;

std::optional<IpAddress> destination_of(msghdr& hdr) {
  if (hdr.msg_flags & MSG_CTRUNC) return std::nullopt;
  for (cmsghdr* c = CMSG_FIRSTHDR(&hdr); c != nullptr; c = CMSG_NXTHDR(&hdr, c)) {
    if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO && c->cmsg_len >= CMSG_LEN(sizeof(in_pktinfo))) {
      in_pktinfo info;
      std::memcpy(&info, CMSG_DATA(c), sizeof info);
      return IpAddress::v4(reinterpret_cast<const std::uint8_t*>(&info.ipi_addr));
    }
    if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO &&
        c->cmsg_len >= CMSG_LEN(sizeof(in6_pktinfo))) {
      in6_pktinfo info;
      std::memcpy(&info, CMSG_DATA(c), sizeof info);
      // A link-local destination would need its interface index to answer from; let the
      // kernel choose for those.
      if (IN6_IS_ADDR_LINKLOCAL(&info.ipi6_addr)) return std::nullopt;
      return IpAddress::v6(reinterpret_cast<const std::uint8_t*>(&info.ipi6_addr));
    }
  }
  return std::nullopt;
}

asio::ip::address to_asio(const IpAddress& ip) {
  if (ip.is_v4()) return asio::ip::address_v4(ip.v4_host_order());
  asio::ip::address_v6::bytes_type b;
  std::memcpy(b.data(), ip.bytes(), 16);
  return asio::ip::address_v6(b);
}

}  // namespace

StunServer::StunServer(asio::io_context& io, std::vector<StunAddressGroup> groups, StunResponderOptions options)
    : io_(io), groups_(std::move(groups)), options_(std::move(options)), buffer_(65536) {}

StunServer::~StunServer() { stop(); }

std::error_code StunServer::open(std::size_t group, const IpAddress& ip, std::uint16_t& port) {
  auto s = std::make_unique<Socket>(io_);
  std::error_code ec;
  const bool v6 = ip.is_v6();
  s->socket.open(v6 ? asio::ip::udp::v6() : asio::ip::udp::v4(), ec);
  if (!ec && v6) s->socket.set_option(asio::ip::v6_only(true), ec);
  // Several groups may share a port on different addresses (a wildcard next to a specific one).
  if (!ec) s->socket.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) s->socket.bind({to_asio(ip), port}, ec);
  if (!ec) s->socket.non_blocking(true, ec);
  if (ec) {
    error_context_ = "cannot bind UDP " + Endpoint(ip, port).to_string();
    return ec;
  }
  const int on = 1;
  s->wildcard = ip.is_unspecified();
  if (v6) ::setsockopt(s->socket.native_handle(), IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof on);
  else ::setsockopt(s->socket.native_handle(), IPPROTO_IP, IP_PKTINFO, &on, sizeof on);
  port = s->socket.local_endpoint(ec).port();
  s->group = group;
  s->bound = Endpoint(ip, port);
  sockets_.push_back(std::move(s));
  return {};
}

std::error_code StunServer::start() {
  stop();
  error_context_.clear();
  for (std::size_t g = 0; g < groups_.size(); ++g) {
    auto& group = groups_[g];
    const IpAddress a = group.primary.address();
    if (group.alternate_ip &&
        (a.is_unspecified() || group.alternate_ip->family() != a.family() || *group.alternate_ip == a)) {
      error_context_ = "alternate IP " + group.alternate_ip->to_string() + " needs a specific primary address of its family (" +
                       a.to_string() + ")";
      return std::make_error_code(std::errc::invalid_argument);
    }
    if (group.alternate_port && *group.alternate_port != 0 && *group.alternate_port == group.primary.port()) {
      error_context_ = "alternate port equals the primary port";
      return std::make_error_code(std::errc::invalid_argument);
    }
    std::uint16_t p = group.primary.port();
    std::error_code ec = open(g, a, p);
    group.primary = Endpoint(a, p);
    if (!ec && group.alternate_port) {
      std::uint16_t q = *group.alternate_port;
      ec = open(g, a, q);
      group.alternate_port = q;
    }
    if (!ec && group.alternate_ip) {
      std::uint16_t p2 = p;
      ec = open(g, *group.alternate_ip, p2);
      if (!ec && group.alternate_port) {
        std::uint16_t q2 = *group.alternate_port;
        ec = open(g, *group.alternate_ip, q2);
      }
    }
    if (ec) {
      const std::string context = error_context_;
      stop();
      error_context_ = context;
      return ec;
    }
  }
  responders_.clear();
  for (const auto& group : groups_) responders_.emplace_back(group, options_);
  for (auto& s : sockets_) {
    log(LogLevel::info, "stun", "listening on udp ", s->bound.to_string());
    arm(*s);
  }
  return {};
}

void StunServer::stop() {
  for (auto& s : sockets_) {
    std::error_code ignored;
    s->socket.close(ignored);
  }
  // Handlers still queued run later with operation_aborted and return without touching the
  // (destroyed) socket they were armed for.
  sockets_.clear();
}

void StunServer::arm(Socket& s) {
  s.socket.async_wait(asio::ip::udp::socket::wait_read, [this, sp = &s](const std::error_code& ec) {
    if (ec == asio::error::operation_aborted) return;  // shutdown, not failure
    if (ec) {
      ++counters_.receive_errors;
      return;
    }
    drain(*sp);
    arm(*sp);
  });
}

void StunServer::drain(Socket& s) {
  // At most a batch per wake-up, so one flooded socket cannot starve the loop's other work.
  for (int i = 0; i < 64; ++i) {
    sockaddr_storage from{};
    std::uint8_t control[kControlSize];
    iovec iov{buffer_.data(), buffer_.size()};
    msghdr hdr{};
    hdr.msg_name = &from;
    hdr.msg_namelen = sizeof from;
    hdr.msg_iov = &iov;
    hdr.msg_iovlen = 1;
    hdr.msg_control = control;
    hdr.msg_controllen = sizeof control;
    const ssize_t n = ::recvmsg(s.socket.native_handle(), &hdr, MSG_DONTWAIT);
    if (n < 0) {
      if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) ++counters_.receive_errors;
      return;
    }
    ++counters_.received;
    auto client = Endpoint::from_sockaddr(reinterpret_cast<const sockaddr*>(&from));
    if (!client || (hdr.msg_flags & MSG_TRUNC)) {
      ++counters_.receive_errors;
      continue;
    }
    IpAddress local_ip = s.bound.address();
    if (s.wildcard) {
      if (auto d = destination_of(hdr)) local_ip = *d;
    }
    auto reply = responders_[s.group].handle(*client, Endpoint(local_ip, s.bound.port()),
                                             ByteSpan(buffer_.data(), static_cast<std::size_t>(n)));
    if (reply) send(s.group, *reply);
  }
}

void StunServer::send(std::size_t group, const StunReply& reply) {
  Socket* out = nullptr;
  for (auto& s : sockets_) {
    if (s->group != group || s->bound.port() != reply.from.port()) continue;
    if (s->bound.address() == reply.from.address() || s->wildcard) {
      out = s.get();
      break;
    }
  }
  if (out == nullptr) {
    ++counters_.drop_no_socket;
    return;
  }
  sockaddr_storage to{};
  const unsigned to_len = reply.to.to_sockaddr(to);
  iovec iov{const_cast<std::uint8_t*>(reply.datagram.data()), reply.datagram.size()};
  msghdr msg{};
  msg.msg_name = &to;
  msg.msg_namelen = to_len;
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) std::uint8_t control[kControlSize] = {};
  const IpAddress& src = reply.from.address();
  if (out->wildcard && !src.is_unspecified() && src.family() == reply.to.address().family()) {
    msg.msg_control = control;
    auto* c = reinterpret_cast<cmsghdr*>(control);
    if (src.is_v4()) {
      c->cmsg_level = IPPROTO_IP;
      c->cmsg_type = IP_PKTINFO;
      c->cmsg_len = CMSG_LEN(sizeof(in_pktinfo));
      in_pktinfo info{};
      std::memcpy(&info.ipi_spec_dst, src.bytes(), 4);
      std::memcpy(CMSG_DATA(c), &info, sizeof info);
      msg.msg_controllen = CMSG_SPACE(sizeof(in_pktinfo));
    } else {
      c->cmsg_level = IPPROTO_IPV6;
      c->cmsg_type = IPV6_PKTINFO;
      c->cmsg_len = CMSG_LEN(sizeof(in6_pktinfo));
      in6_pktinfo info{};
      std::memcpy(&info.ipi6_addr, src.bytes(), 16);
      std::memcpy(CMSG_DATA(c), &info, sizeof info);
      msg.msg_controllen = CMSG_SPACE(sizeof(in6_pktinfo));
    }
  }
  if (::sendmsg(out->socket.native_handle(), &msg, MSG_DONTWAIT) < 0) {
    ++counters_.send_errors;
    log(LogLevel::debug, "stun", "send to ", reply.to.to_string(), " failed: ", std::strerror(errno));
    return;
  }
  ++counters_.sent;
}

std::vector<Endpoint> StunServer::local_endpoints() const {
  std::vector<Endpoint> out;
  for (const auto& s : sockets_) out.push_back(s->bound);
  return out;
}

std::vector<StunAddressGroup> StunServer::groups() const { return groups_; }

StunServerCounters StunServer::counters() const {
  StunServerCounters c = counters_;
  for (const auto& r : responders_) {
    const auto& x = r.counters();
    auto& y = c.responder;
    y.requests += x.requests;
    y.answered += x.answered;
    y.classic += x.classic;
    y.changed += x.changed;
    y.error_420 += x.error_420;
    y.drop_not_stun += x.drop_not_stun;
    y.drop_malformed += x.drop_malformed;
    y.drop_bad_fingerprint += x.drop_bad_fingerprint;
    y.drop_not_request += x.drop_not_request;
    y.drop_method += x.drop_method;
    y.drop_classic += x.drop_classic;
    y.drop_bad_port += x.drop_bad_port;
  }
  return c;
}

}  // namespace knit::punch
