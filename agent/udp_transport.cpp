#include "agent/udp_transport.hpp"

#include <netinet/in.h>
#include <sys/socket.h>

#include <sstream>

#include "base/log.hpp"
#include "base/socket_mark.hpp"
#include "wg/peer.hpp"

namespace knit::agent {

namespace {
// Batches received per readiness event before yielding to the TUN and the timers, so a flood
// on the network side cannot starve them.
constexpr int kBatchesPerWake = 4;
}  // namespace

UdpTransport::UdpTransport(asio::io_context& io, Options options)
    : options_(std::move(options)), socket_(io, net::UdpSocket::Options{options_.offloads}) {
  batch_.reserve(net::UdpSocket::kBatch);
}

UdpTransport::~UdpTransport() { stop(); }

std::error_code UdpTransport::bind(std::uint16_t port) {
  if (auto ec = socket_.bind(port); ec) return ec;
  apply_mark();
  if (options_.on_port_changed) options_.on_port_changed(socket_.port());
  return {};
}

void UdpTransport::start(WireGuardReceiver& receiver) {
  receiver_ = &receiver;
  if (auto ec = bind(options_.port); ec) {
    if (options_.port == 0) throw std::system_error(ec, "cannot open a UDP socket");
    // A remembered port may be taken since; any free port is better than not starting.
    log(LogLevel::warn, "knitd", "UDP port ", options_.port, " unavailable (", ec.message(),
        "), using a random port");
    if (auto again = bind(0); again) throw std::system_error(again, "cannot open a UDP socket");
  }
  running_ = true;
  arm();
}

void UdpTransport::stop() {
  running_ = false;
  socket_.close();
}

std::error_code UdpTransport::set_port(std::uint16_t port) {
  if (port == socket_.port()) return {};
  const std::uint16_t previous = socket_.port();
  if (auto ec = bind(port); ec) {
    (void)bind(previous);  // put the old socket back; nothing else has changed
    if (running_) arm();
    return ec;
  }
  if (running_) arm();
  return {};
}

void UdpTransport::set_mark(std::uint32_t mark) {
  if (mark == mark_) return;
  mark_ = mark;
  apply_mark(/*changed=*/true);
}

void UdpTransport::apply_mark(bool changed) {
  if (!socket_.is_open()) return;
  // `wg set fwmark` wins; without one, knitd's underlay mark keeps the tunnel's own datagrams
  // out of the tunnel while an exit node carries the default route (base/socket_mark.hpp).
  const std::uint32_t mark = mark_ != 0 ? mark_ : underlay_mark();
  if (mark != 0 || changed) ::setsockopt(socket_.socket().native_handle(), SOL_SOCKET, SO_MARK, &mark, sizeof mark);
}

void UdpTransport::send_with_ttl(const Endpoint& to, ByteSpan datagram, std::uint8_t ttl) {
  socket_.send_alone(to, datagram, {ttl, false});
}

void UdpTransport::send(const wg::Peer& peer, std::span<const ByteSpan> datagrams) {
  if (!peer.endpoint) return;  // the core sends nothing to a peer without one
  for (ByteSpan datagram : datagrams) socket_.queue(*peer.endpoint, datagram);
}

void UdpTransport::arm() {
  socket_.socket().async_wait(asio::socket_base::wait_read, [this](std::error_code ec) {
    if (ec == asio::error::operation_aborted || !running_) return;
    if (ec) {
      log(LogLevel::error, "knitd", "UDP wait failed: ", ec.message());
      return;
    }
    on_readable();
    if (running_) arm();
  });
}

void UdpTransport::on_readable() {
  const wg::Now now{Clock::now(), std::chrono::system_clock::now()};
  bool other = false;
  for (int round = 0; round < kBatchesPerWake; ++round) {
    const std::size_t n = socket_.receive_batch();
    batch_.clear();
    for (std::size_t i = 0; i < n; ++i) {
      const MutableByteSpan bytes = socket_.received(i);
      const DatagramKind kind = classify_datagram(bytes);
      if (kind == DatagramKind::wireguard) {
        batch_.push_back({socket_.received_from(i), bytes});
      } else if (other_ != nullptr && kind != DatagramKind::other) {
        other_->on_other(now, kind, socket_.received_from(i), bytes);
        other = true;
      } else {
        ++other_dropped_;
      }
    }
    if (!batch_.empty()) receiver_->on_wireguard(now, batch_);
    if (!socket_.receive_was_full()) break;
  }
  if (other && other_ != nullptr) other_->after_receive();
}

std::string UdpTransport::summary() const {
  std::ostringstream out;
  out << "udp_send_errors=" << socket_.send_errors() << " udp_source_resets=" << socket_.source_resets()
      << " udp_receive_errors=" << socket_.receive_errors() << " udp_not_ours=" << other_dropped_
      << " udp_gso=" << (socket_.gso() ? "on" : "off") << " udp_gso_messages=" << socket_.gso_messages()
      << " udp_gro=" << (socket_.gro() ? "on" : "off") << " udp_gro_datagrams=" << socket_.gro_datagrams()
      << " udp_icmp_too_big=" << socket_.icmp_too_big() << " udp_errqueue_other=" << socket_.socket_errors_other()
      << " udp_errqueue_malformed=" << socket_.socket_errors_malformed()
      << " udp_pending_errors=" << socket_.pending_errors();
  return out.str();
}

}  // namespace knit::agent
