#include "agent/probe_sockets.hpp"

#include <netinet/in.h>
#include <sys/socket.h>

#include "base/log.hpp"
#include "base/socket_mark.hpp"
#include "net/udp_socket.hpp"

namespace knit::agent {

struct ProbeSockets::Socket {
  Socket(asio::io_context& io, punch::SocketId socket_id) : socket(io), id(socket_id), buffer(kReceiveSize) {}
  asio::ip::udp::socket socket;
  punch::SocketId id;
  bool dual_stack = false;
  bool ttl_set = false;  // a short TTL is set on the socket
  bool open = true;  // false once closed: a completion still queued must not use it
  asio::ip::udp::endpoint from;
  Bytes buffer;
};

ProbeSockets::ProbeSockets(asio::io_context& io, Handler handler) : io_(io), handler_(std::move(handler)) {}

ProbeSockets::~ProbeSockets() { close_all(); }

bool ProbeSockets::open(punch::SocketId id, bool dual_stack) {
  auto s = std::make_shared<Socket>(io_, id);
  std::error_code ec;
  const auto protocol = dual_stack ? asio::ip::udp::v6() : asio::ip::udp::v4();
  s->socket.open(protocol, ec);
  if (!ec && dual_stack) s->socket.set_option(asio::ip::v6_only(false), ec);
  if (!ec) mark_underlay_socket(s->socket.native_handle());  // on the underlay under an exit node
  if (!ec) s->socket.bind(asio::ip::udp::endpoint(protocol, 0), ec);
  if (!ec) s->socket.non_blocking(true, ec);
  if (!ec && pmtu_probe_) ec = net::set_pmtu_probe(s->socket.native_handle(), dual_stack, true);
  if (ec) {
    log(LogLevel::debug, "paths", "probe socket ", id, ": ", ec.message());
    return false;
  }
  s->dual_stack = dual_stack;
  close(id);
  sockets_.emplace(id, s);
  read(*s);
  return true;
}

void ProbeSockets::set_pmtu_probe(bool probe) {
  pmtu_probe_ = probe;
  for (auto& [id, s] : sockets_) net::set_pmtu_probe(s->socket.native_handle(), s->dual_stack, probe);
}

void ProbeSockets::close(punch::SocketId id) {
  auto it = sockets_.find(id);
  if (it == sockets_.end()) return;
  it->second->open = false;
  std::error_code ignored;
  it->second->socket.close(ignored);
  sockets_.erase(it);
}

void ProbeSockets::close_all() {
  for (auto& [id, s] : sockets_) {
    s->open = false;
    std::error_code ignored;
    s->socket.close(ignored);
  }
  sockets_.clear();
}

bool ProbeSockets::send(punch::SocketId id, const Endpoint& to, ByteSpan datagram, std::uint8_t ttl) {
  auto it = sockets_.find(id);
  if (it == sockets_.end()) return false;
  const int fd = it->second->socket.native_handle();
  sockaddr_storage ss;
  const unsigned len = net::socket_address(to, it->second->dual_stack, ss);
  // A probe socket's round ping only has to open our own NAT (punch/path/manager.hpp): a short
  // TTL, set on the socket, which sends nothing else before the next round ping.
  const int hops = ttl != 0 ? ttl : -1;  // -1: the system default
  if (ttl != 0 || it->second->ttl_set) {
    ::setsockopt(fd, IPPROTO_IP, IP_TTL, &hops, sizeof hops);
    if (it->second->dual_stack || to.address().is_v6())
      ::setsockopt(fd, IPPROTO_IPV6, IPV6_UNICAST_HOPS, &hops, sizeof hops);
    it->second->ttl_set = ttl != 0;
  }
  if (::sendto(fd, datagram.data(), datagram.size(), MSG_DONTWAIT, reinterpret_cast<const sockaddr*>(&ss), len) < 0) {
    ++send_errors_;
    return false;
  }
  return true;
}

void ProbeSockets::read(Socket& socket) {
  // The completion holds the socket alive; `open` says whether it is still ours.
  std::shared_ptr<Socket> keep = sockets_.at(socket.id);
  socket.socket.async_receive_from(asio::buffer(socket.buffer), socket.from,
                                   [this, keep](std::error_code ec, std::size_t n) {
    if (ec == asio::error::operation_aborted || !keep->open) return;
    if (!ec) {
      if (auto from = Endpoint::from_sockaddr(keep->from.data()))
        handler_(keep->id, *from, MutableByteSpan(keep->buffer.data(), n));
    }
    if (keep->open) read(*keep);
  });
}

}  // namespace knit::agent
