#include "agent/data_plane.hpp"

#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <sstream>

#include "punch/path/virtual_endpoints.hpp"
#include "base/log.hpp"

namespace knit::agent {

namespace {
// Packets handled per readiness event before yielding to the other sources, so a flood on one
// side cannot starve the other or the timers.
constexpr int kTunPacketsPerWake = 64;
constexpr int kUdpBatchesPerWake = 4;
}  // namespace

DataPlane::DataPlane(asio::io_context& io, tun::TunDevice& tun, Options options)
    : io_(io),
      tun_(tun),
      options_(std::move(options)),
      tun_stream_(io, tun.fd(0)),
      udp_(io),
      timer_(io),
      filter_(rng_),
      inbound_packet_(wg::kMaxDatagramSize),
      device_(*this, rng_),
      frame_(wg::kFrameHeadroom + wg::kMaxDatagramSize + wg::kFrameTailroom) {
  device_.set_mtu(static_cast<std::size_t>(options_.mtu));
}

DataPlane::~DataPlane() {
  stop();
  // The TUN owns its descriptor; Asio must not close it.
  tun_stream_.release();
}

wg::Now DataPlane::now() { return {Clock::now(), std::chrono::system_clock::now()}; }

std::error_code DataPlane::bind_port(std::uint16_t port) {
  auto ec = udp_.bind(port);
  if (ec) return ec;
  if (fwmark_ != 0)
    ::setsockopt(udp_.socket().native_handle(), SOL_SOCKET, SO_MARK, &fwmark_, sizeof fwmark_);
  if (options_.on_port_changed) options_.on_port_changed(udp_.port());
  return {};
}

void DataPlane::start() {
  if (auto ec = bind_port(options_.port); ec) {
    if (options_.port == 0) throw std::system_error(ec, "cannot open a UDP socket");
    // A remembered port may be taken since; any free port is better than not starting.
    log(LogLevel::warn, "knitd", "UDP port ", options_.port, " unavailable (", ec.message(),
        "), using a random port");
    if (auto again = bind_port(0); again) throw std::system_error(again, "cannot open a UDP socket");
  }
  running_ = true;
  arm_tun();
  arm_udp();
}

void DataPlane::stop() {
  if (!running_) return;
  running_ = false;
  std::error_code ignored;
  tun_stream_.cancel(ignored);
  timer_.cancel();
  udp_.close();
  device_.reset_sessions();
}

void DataPlane::configure(const std::function<void(wg::Device&, wg::Now)>& change) {
  change(device_, now());
  if (running_) after_work();
}

void DataPlane::send_datagram(const Endpoint& to, ByteSpan datagram) {
  if (hooks_ != nullptr && punch::VirtualEndpoints::is_virtual(to)) {
    hooks_->send_to_virtual(to, datagram);
    return;
  }
  udp_.queue(to, datagram);
}

void DataPlane::send_to_peer(const wg::Peer& peer, const Endpoint& endpoint, ByteSpan datagram) {
  if (hooks_ != nullptr && hooks_->send_to_peer(peer, datagram)) return;
  udp_.queue(endpoint, datagram);
}

void DataPlane::inject_datagram(wg::Now t, const Endpoint& from, MutableByteSpan datagram) {
  device_.on_datagram(t, from, datagram);
  if (running_) after_work();
}

namespace {
// WireGuard messages start with their type (1..4) as a little-endian u32: three zero bytes
// follow. Disco ("KNIT...") and STUN (top two bits 00, then a length and the magic cookie)
// never look like that.
bool is_wireguard(ByteSpan datagram) {
  return datagram.size() >= 4 && datagram[0] >= 1 && datagram[0] <= 4 && datagram[1] == 0 &&
         datagram[2] == 0 && datagram[3] == 0;
}
}  // namespace

void DataPlane::write_tun(ByteSpan packet) {
  // The filter may rewrite (port forwards), and the device's buffer is not ours to change.
  if (packet.size() > inbound_packet_.size()) {
    ++tun_write_errors_;
    return;
  }
  std::copy(packet.begin(), packet.end(), inbound_packet_.begin());
  const std::size_t pass =
      filter_.inbound(Clock::now(), MutableByteSpan(inbound_packet_).first(packet.size()));
  if (pass == 0) return;
  if (!tun_.write(0, ByteSpan(inbound_packet_).first(pass))) ++tun_write_errors_;
}

// ---------------------------------------------------------------- the loop

void DataPlane::arm_tun() {
  tun_stream_.async_wait(asio::posix::stream_descriptor::wait_read, [this](std::error_code ec) {
    if (ec == asio::error::operation_aborted || !running_) return;
    if (ec) {
      log(LogLevel::error, "knitd", "TUN wait failed: ", ec.message());
      return;
    }
    on_tun_readable();
  });
}

void DataPlane::on_tun_readable() {
  const wg::Now t = now();
  const auto room = std::span<std::uint8_t>(frame_).subspan(wg::kFrameHeadroom, wg::kMaxDatagramSize);
  for (int i = 0; i < kTunPacketsPerWake; ++i) {
    long n = tun_.read(0, room.first(wg::kMaxDatagramSize - wg::kDataHeaderSize - wg::kFrameTailroom));
    if (n <= 0) break;
    const std::size_t pass = filter_.outbound(t.mono, room.first(static_cast<std::size_t>(n)));
    if (pass == 0) continue;
    device_.on_tun_packet(t, frame_, pass);
  }
  after_work();
  arm_tun();
}

void DataPlane::arm_udp() {
  udp_.socket().async_wait(asio::socket_base::wait_read, [this](std::error_code ec) {
    if (ec == asio::error::operation_aborted || !running_) return;
    if (ec) {
      log(LogLevel::error, "knitd", "UDP wait failed: ", ec.message());
      return;
    }
    on_udp_readable();
  });
}

void DataPlane::on_udp_readable() {
  const wg::Now t = now();
  for (int batch = 0; batch < kUdpBatchesPerWake; ++batch) {
    const std::size_t n = udp_.receive_batch();
    for (std::size_t i = 0; i < n; ++i) {
      const MutableByteSpan datagram = udp_.received(i);
      if (hooks_ != nullptr && !is_wireguard(datagram))
        hooks_->on_other_datagram(t, udp_.received_from(i), datagram);
      else
        device_.on_datagram(t, udp_.received_from(i), datagram);
    }
    if (n < net::UdpSocket::kBatch) break;
  }
  after_work();
  arm_udp();
}

void DataPlane::after_work() {
  if (hooks_ != nullptr) hooks_->after_work();
  udp_.flush();
  schedule_timer();
}

void DataPlane::schedule_timer() {
  const auto deadline = device_.next_deadline();
  if (deadline == armed_deadline_) return;
  armed_deadline_ = deadline;
  if (!deadline) {
    timer_.cancel();
    return;
  }
  timer_.expires_at(*deadline);
  timer_.async_wait([this](std::error_code ec) {
    if (ec == asio::error::operation_aborted || !running_) return;
    armed_deadline_.reset();
    device_.on_timers(now());
    after_work();
  });
}

std::string DataPlane::summary() const {
  const wg::DeviceStats& st = device_.stats();
  std::ostringstream out;
  out << "rx_datagrams=" << st.rx_datagrams << " handshakes=" << st.handshakes_completed
      << " rx_decrypt_failed=" << st.rx_decrypt_failed << " rx_replayed=" << st.rx_replayed_data
      << " tx_no_route=" << st.tx_no_route << " udp_send_errors=" << udp_.send_errors()
      << " udp_source_resets=" << udp_.source_resets() << " udp_receive_errors=" << udp_.receive_errors()
      << " tun_write_errors=" << tun_write_errors_;
  const localapi::FilterCounters f = filter_.counters();
  out << " shields=" << (filter_.shields_up() ? "up" : "down") << " filter_refused_v4=" << f.refused_v4
      << " filter_refused_v6=" << f.refused_v6 << " filter_malformed=" << f.malformed
      << " filter_untracked=" << f.untracked << " forwarded_in=" << f.forwarded_in
      << " forwarded_out=" << f.forwarded_out;
  return out.str();
}

// ---------------------------------------------------------------- UAPI

wg::UapiDeviceState DataPlane::uapi_get() {
  wg::UapiDeviceState state;
  if (!device_.identity().empty()) state.private_key = device_.identity().private_key;
  state.listen_port = udp_.port();
  state.fwmark = fwmark_;
  device_.for_each_peer([&](const wg::Peer& peer) {
    wg::UapiPeerState p;
    p.public_key = peer.public_key;
    p.preshared_key = peer.preshared_key;
    p.endpoint = peer.endpoint;
    if (peer.last_handshake) {
      const auto since = peer.last_handshake->time_since_epoch();
      const auto sec = std::chrono::duration_cast<std::chrono::seconds>(since);
      p.last_handshake_sec = sec.count();
      p.last_handshake_nsec = std::chrono::duration_cast<std::chrono::nanoseconds>(since - sec).count();
    }
    p.rx_bytes = peer.rx_bytes;
    p.tx_bytes = peer.tx_bytes;
    p.persistent_keepalive_interval = static_cast<std::uint16_t>(peer.timers.persistent_keepalive().count());
    p.allowed_ips = device_.allowed_ips_of(peer);
    state.peers.push_back(std::move(p));
  });
  return state;
}

int DataPlane::uapi_set(const wg::UapiSet& request) {
  const wg::Now t = now();
  // Everything that can fail is checked before anything changes, so a set is all or nothing.
  std::size_t new_peers = 0;
  for (const auto& op : request.peers)
    if (!op.remove && !op.update_only && device_.find_peer(op.public_key) == nullptr) ++new_peers;
  if (!request.replace_peers && device_.peer_count() + new_peers > wg::DeviceConfig{}.max_peers)
    return -ENOMEM;
  if (request.listen_port && *request.listen_port != udp_.port()) {
    const std::uint16_t previous = udp_.port();
    if (auto ec = bind_port(*request.listen_port); ec) {
      (void)bind_port(previous);  // put the old socket back; nothing else has changed
      if (running_) arm_udp();
      return -EADDRINUSE;
    }
    if (running_) arm_udp();
  }
  if (request.fwmark && *request.fwmark != fwmark_) {
    fwmark_ = *request.fwmark;
    ::setsockopt(udp_.socket().native_handle(), SOL_SOCKET, SO_MARK, &fwmark_, sizeof fwmark_);
  }
  if (request.private_key) device_.set_private_key(*request.private_key);
  if (request.replace_peers) device_.remove_all_peers();
  for (const auto& op : request.peers) {
    if (op.remove) {
      device_.remove_peer(op.public_key);
      continue;
    }
    wg::Peer* peer = device_.find_peer(op.public_key);
    if (peer == nullptr) {
      if (op.update_only) continue;
      peer = device_.add_peer(op.public_key, t);
      if (peer == nullptr) continue;  // our own public key: ignored, as wireguard-go does
    }
    if (op.preshared_key) device_.set_preshared_key(*peer, *op.preshared_key);
    if (op.endpoint) device_.set_endpoint(*peer, *op.endpoint);
    if (op.replace_allowed_ips) device_.clear_allowed_ips(*peer);
    for (const auto& prefix : op.allowed_ips) device_.add_allowed_ip(*peer, prefix);
    if (op.persistent_keepalive_interval)
      device_.set_persistent_keepalive(*peer, std::chrono::seconds(*op.persistent_keepalive_interval), t);
  }
  after_work();
  return 0;
}

}  // namespace knit::agent
