#include "agent/data_plane.hpp"

#include <sstream>

#include "base/log.hpp"

namespace knit::agent {

DataPlane::DataPlane(asio::io_context& io, tun::TunDevice& tun, wg::Transport& transport, int mtu)
    : tun_(tun),
      tun_stream_(io, tun.fd(0)),
      filter_(rng_),
      device_(transport, *this, rng_),
      timer_(io, [this] {
        device_.on_timers(now());
        after_work();
      }),
      frame_(wg::kFrameHeadroom + wg::kMaxDatagramSize + wg::kFrameTailroom) {
  device_.set_mtu(static_cast<std::size_t>(mtu));
}

DataPlane::~DataPlane() {
  stop();
  // The TUN owns its descriptor; Asio must not close it.
  tun_stream_.release();
}

wg::Now DataPlane::now() { return {Clock::now(), std::chrono::system_clock::now()}; }

void DataPlane::start() {
  running_ = true;
  arm_tun();
  after_work();
}

void DataPlane::stop() {
  if (!running_) return;
  running_ = false;
  std::error_code ignored;
  tun_stream_.cancel(ignored);
  timer_.cancel();
  device_.reset_sessions();
}

void DataPlane::configure(const std::function<void(wg::Device&, wg::Now)>& change) {
  change(device_, now());
  if (running_) after_work();
}

// ---------------------------------------------------------------- outbound

void DataPlane::arm_tun() {
  tun_stream_.async_wait(asio::posix::stream_descriptor::wait_read, [this](std::error_code ec) {
    if (ec == asio::error::operation_aborted || !running_) return;
    if (ec) {
      log(LogLevel::error, "knitd", "TUN wait failed: ", ec.message());
      return;
    }
    on_tun_readable();
    arm_tun();
  });
}

void DataPlane::on_tun_readable() {
  const wg::Now t = now();
  const auto room = std::span<std::uint8_t>(frame_).subspan(
      wg::kFrameHeadroom, wg::kMaxDatagramSize - wg::kDataHeaderSize - wg::kFrameTailroom);
  for (int i = 0; i < kTunPacketsPerWake; ++i) {
    const long n = tun_.read(0, room);
    if (n <= 0) break;
    if (local_hook_ && local_hook_(room.first(static_cast<std::size_t>(n)))) continue;
    const std::size_t pass = filter_.outbound(t.mono, room.first(static_cast<std::size_t>(n)));
    if (pass == 0) continue;
    device_.on_tun_packet(t, frame_, pass);
  }
  after_work();
}

// ---------------------------------------------------------------- inbound

void DataPlane::on_wireguard(wg::Now t, std::span<const ReceivedDatagram> batch) {
  for (const ReceivedDatagram& d : batch) device_.on_datagram(t, d.from, d.bytes);
  after_work();
}

void DataPlane::write_tun(MutableByteSpan packet) {
  const std::size_t pass = filter_.inbound(Clock::now(), packet);
  if (pass == 0) return;
  if (!tun_.write(0, packet.first(pass))) ++tun_write_errors_;
}

void DataPlane::write_local(ByteSpan packet) {
  if (!tun_.write(0, packet)) ++tun_write_errors_;
}

// ---------------------------------------------------------------- time

void DataPlane::after_work() {
  device_.transport().flush();
  if (running_) timer_.arm(device_.next_deadline());
}

std::string DataPlane::summary() const {
  const wg::DeviceStats& st = device_.stats();
  std::ostringstream out;
  out << "rx_datagrams=" << st.rx_datagrams << " handshakes=" << st.handshakes_completed
      << " rx_decrypt_failed=" << st.rx_decrypt_failed << " rx_replayed=" << st.rx_replayed_data
      << " tx_no_route=" << st.tx_no_route << " tun_write_errors=" << tun_write_errors_;
  const localapi::FilterCounters f = filter_.counters();
  out << " shields=" << (filter_.shields_up() ? "up" : "down") << " filter_refused_v4=" << f.refused_v4
      << " filter_refused_v6=" << f.refused_v6 << " filter_malformed=" << f.malformed
      << " filter_untracked=" << f.untracked << " forwarded_in=" << f.forwarded_in
      << " forwarded_out=" << f.forwarded_out;
  return out.str();
}

}  // namespace knit::agent
