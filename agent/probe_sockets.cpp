#include "agent/probe_sockets.hpp"

#include <netinet/in.h>
#include <sys/socket.h>

#include "base/log.hpp"
#include "base/socket_mark.hpp"

namespace knit::agent {

namespace {

ProbeSockets::Counters counters_of(const net::UdpSocket& udp) {
  ProbeSockets::Counters c;
  c.opened = 1;
  c.send_errors = udp.send_errors();
  c.receive_errors = udp.receive_errors();
  c.gso_messages = udp.gso_messages();
  c.icmp_too_big = udp.icmp_too_big();
  c.errqueue_other = udp.socket_errors_other();
  c.errqueue_malformed = udp.socket_errors_malformed();
  c.pending_errors = udp.pending_errors();
  return c;
}

}  // namespace

struct ProbeSockets::Socket {
  Socket(asio::io_context& io, punch::SocketId socket_id, net::UdpSocket::Options options,
         std::shared_ptr<net::UdpSocket::Buffers> buffers)
      : udp(io, options, std::move(buffers)), id(socket_id) {}
  net::UdpSocket udp;
  punch::SocketId id;
  bool open = true;  // false once closed: a completion still queued must not use it
};

ProbeSockets::ProbeSockets(asio::io_context& io, Handler handler, BatchDone batch_done,
                           net::UdpSocket::Options options)
    : io_(io),
      handler_(std::move(handler)),
      batch_done_(std::move(batch_done)),
      options_(options),
      buffers_(net::UdpSocket::make_buffers()) {}

ProbeSockets::~ProbeSockets() { close_all(); }

bool ProbeSockets::open(punch::SocketId id, bool dual_stack) {
  auto s = std::make_shared<Socket>(io_, id, options_, buffers_);
  std::error_code ec = s->udp.bind(0);
  if (!ec && s->udp.dual_stack() != dual_stack)
    log(LogLevel::debug, "paths", "probe socket ", id, ": dual-stack differs from the main socket's");
  if (!ec) mark_underlay_socket(s->udp.socket().native_handle());  // on the underlay under an exit node
  if (!ec && pmtu_probe_) ec = s->udp.set_pmtu_probe(true);
  s->udp.set_too_big_handler(on_too_big_);
  if (ec) {
    log(LogLevel::debug, "paths", "probe socket ", id, ": ", ec.message());
    return false;
  }
  close(id);
  sockets_.emplace(id, s);
  arm(s);
  return true;
}

void ProbeSockets::set_pmtu_probe(bool probe) {
  pmtu_probe_ = probe;
  for (auto& [id, s] : sockets_) s->udp.set_pmtu_probe(probe);
}

void ProbeSockets::set_too_big_handler(net::UdpSocket::TooBigHandler handler) {
  on_too_big_ = std::move(handler);
  for (auto& [id, s] : sockets_) s->udp.set_too_big_handler(on_too_big_);
}

void ProbeSockets::forget(Socket& s) {
  if (queued_on_ == &s) {
    s.udp.flush();
    queued_on_ = nullptr;
  }
  s.open = false;
  closed_ += counters_of(s.udp);
  s.udp.close();
}

void ProbeSockets::close(punch::SocketId id) {
  auto it = sockets_.find(id);
  if (it == sockets_.end()) return;
  forget(*it->second);
  sockets_.erase(it);
}

void ProbeSockets::close_all() {
  for (auto& [id, s] : sockets_) forget(*s);
  sockets_.clear();
}

bool ProbeSockets::send(punch::SocketId id, const Endpoint& to, ByteSpan datagram,
                        net::UdpSocket::SendOptions options) {
  auto it = sockets_.find(id);
  if (it == sockets_.end()) return false;
  Socket& s = *it->second;
  if (options.ttl == 0 && !options.fragmentable) {
    s.udp.queue(to, datagram);  // flushes another socket's queued sends first (shared batch)
    queued_on_ = &s;
    return true;
  }
  // A probe socket's round ping only has to open our own NAT (punch/path/manager.hpp): one
  // datagram with a short TTL, sent alone; what is queued keeps the default. Or one larger than
  // its path carries, without DF (MeshTransport::send).
  s.udp.send_alone(to, datagram, options);
  if (queued_on_ == &s) queued_on_ = nullptr;
  return true;
}

void ProbeSockets::flush() {
  if (queued_on_ == nullptr) return;
  queued_on_->udp.flush();
  queued_on_ = nullptr;
}

ProbeSockets::Counters& ProbeSockets::Counters::operator+=(const Counters& o) {
  opened += o.opened;
  send_errors += o.send_errors;
  receive_errors += o.receive_errors;
  gso_messages += o.gso_messages;
  icmp_too_big += o.icmp_too_big;
  errqueue_other += o.errqueue_other;
  errqueue_malformed += o.errqueue_malformed;
  pending_errors += o.pending_errors;
  return *this;
}

ProbeSockets::Counters ProbeSockets::counters() const {
  Counters c = closed_;
  for (const auto& [id, s] : sockets_) c += counters_of(s->udp);
  return c;
}

void ProbeSockets::arm(const std::shared_ptr<Socket>& socket) {
  // The completion holds the socket alive; `open` says whether it is still ours.
  socket->udp.socket().async_wait(asio::socket_base::wait_read, [this, socket](std::error_code ec) {
    if (ec == asio::error::operation_aborted || !socket->open) return;
    if (ec) {
      log(LogLevel::debug, "paths", "probe socket ", socket->id, ": ", ec.message());
      return;
    }
    on_readable(socket);
    if (socket->open) arm(socket);
  });
}

void ProbeSockets::on_readable(const std::shared_ptr<Socket>& socket) {
  for (int round = 0; round < kBatchesPerWake && socket->open; ++round) {
    const std::size_t n = socket->udp.receive_batch();
    // The handler may close this socket (the PathManager gives up on it): the datagrams stay
    // in the shared buffers, but the rest of the batch is dropped with the socket.
    for (std::size_t i = 0; i < n && socket->open; ++i) {
      // The remote only: the PathManager knows probe paths by remote address and port.
      Endpoint from = socket->udp.received_from(i);
      from.set_local(std::nullopt);
      handler_(socket->id, from, socket->udp.received(i));
    }
    if (n > 0 && batch_done_) batch_done_();
    if (n == 0 || !socket->udp.receive_was_full()) break;
  }
}

}  // namespace knit::agent
