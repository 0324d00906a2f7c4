#include "agent/data_plane.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <sstream>

#include "base/log.hpp"
#include "net/route_mtu.hpp"

namespace knit::agent {

DataPlane::DataPlane(asio::io_context& io, tun::TunDevice& tun, wg::Transport& transport, int mtu,
                     CryptoWorkers::Options crypto)
    : tun_(tun),
      tun_stream_(io, tun.fd(0)),
      filter_(rng_),
      device_(transport, *this, rng_),
      timer_(io, [this] {
        device_.on_timers(now());
        after_work();
      }),
      frame_(wg::kFrameHeadroom + tun::kVirtioNetHeaderSize + tun::kMaxSuperPacket + wg::kFrameTailroom),
      segment_(wg::kFrameHeadroom + wg::kMaxDatagramSize + wg::kFrameTailroom),
      crypto_(crypto),
      // The TUN carries packets up to the MTU; a little slack for a link MTU set by hand. A
      // larger packet is sealed on its own (seal()).
      slot_plain_(std::min<std::size_t>(std::max(mtu, 1280) + 256, wg::kMaxDatagramSize)),
      // Frames start on cache lines, so two threads never write one line.
      slot_size_((wg::kFrameHeadroom + slot_plain_ + wg::kFrameTailroom + 63) / 64 * 64),
      slots_(kBatch * slot_size_),
      jobs_(kBatch) {
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

void DataPlane::outbound(const wg::Now& t, MutableByteSpan frame, std::size_t size) {
  if (local_hook_ && local_hook_(frame.subspan(wg::kFrameHeadroom, size))) return;
  const std::size_t pass = filter_.outbound(t.mono, frame.subspan(wg::kFrameHeadroom, size));
  if (pass == 0) return;
  clamp_mss(frame.subspan(wg::kFrameHeadroom, pass), true);
  if (pass > mtu_floor_ && too_big(t, frame.subspan(wg::kFrameHeadroom, pass))) return;
  seal(t, frame, pass);
}

void DataPlane::seal(const wg::Now& t, MutableByteSpan frame, std::size_t size) {
  MutableByteSpan into = slot();
  if (frame.data() != into.data()) {
    if (size > slot_plain_) {
      // Larger than a batch frame: sealed where it is, after the jobs before it (peer order).
      finish_batch(t);
      device_.on_tun_packet(t, frame, size);
      return;
    }
    std::memcpy(into.data() + wg::kFrameHeadroom, frame.data() + wg::kFrameHeadroom, size);
  }
  if (device_.prepare_seal(t, into, size, jobs_[pending_]) && ++pending_ == kBatch) finish_batch(t);
}

void DataPlane::finish_batch(const wg::Now& t) {
  if (pending_ == 0) return;
  const std::span<wg::CryptoJob> jobs(jobs_.data(), pending_);
  crypto_.run(jobs);
  // In the order prepared: each peer's datagrams leave, and its packets reach the TUN, in order.
  for (wg::CryptoJob& job : jobs) {
    if (job.kind == wg::CryptoJob::Kind::seal) device_.finish_seal(t, job);
    else device_.finish_open(t, job);
  }
  pending_ = 0;
}

void DataPlane::set_mtu_limits(std::vector<std::pair<wg::PublicKey, std::size_t>> limits) {
  mtu_limits_ = std::move(limits);
  mtu_floor_ = SIZE_MAX;
  for (const auto& [key, mtu] : mtu_limits_) mtu_floor_ = std::min(mtu_floor_, mtu);
}

void DataPlane::on_path_too_big(const Endpoint& to, std::size_t mtu) {
  if (path_hints_.record_icmp(now().mono, to.address(), mtu))
    log(LogLevel::info, "knitd", "ICMP: the path to ", to.address().to_string(), " carries at most ", mtu,
        " bytes; new TCP connections to peers there are clamped to fit");
}

bool DataPlane::too_big(const wg::Now& t, ByteSpan packet) {
  const std::uint8_t version = packet[0] >> 4;
  if ((version != 4 || packet.size() < 20) && (version != 6 || packet.size() < 40)) return false;
  const IpAddress destination = version == 4 ? IpAddress::v4(packet.data() + 16) : IpAddress::v6(packet.data() + 24);
  const wg::Peer* peer = device_.peer_for(destination);
  if (peer == nullptr) return false;
  const auto it = std::lower_bound(mtu_limits_.begin(), mtu_limits_.end(), peer->public_key,
                                   [](const auto& entry, const wg::PublicKey& key) { return entry.first < key; });
  if (it == mtu_limits_.end() || it->first != peer->public_key || packet.size() <= it->second) return false;
  // IPv6 promises every link carries 1280 bytes (RFC 8200 §5): a "too big" saying less would be
  // ignored, so such a packet is sealed and the transport sends it without DF to be fragmented
  // outside (MeshTransport::send), as an IPv4 packet without DF is.
  if (version == 6 && packet.size() <= nat::kMinLinkMtuV6) {
    ++too_big_stats_.fragmentable;
    return false;
  }
  std::array<std::uint8_t, nat::kTooBigMaxSize> answer{};
  std::size_t size = 0;
  switch (nat::write_too_big(answer, packet, it->second, size)) {
    case nat::TooBigVerdict::fragmentable:
      ++too_big_stats_.fragmentable;
      return false;
    case nat::TooBigVerdict::answered:
      if (!too_big_limiter_.allow(t.mono)) {
        ++too_big_stats_.rate_limited;
        return true;
      }
      ++too_big_stats_.answered;
      write_local(ByteSpan(answer.data(), size));
      return true;
    case nat::TooBigVerdict::not_allowed:
    case nat::TooBigVerdict::malformed:
      ++too_big_stats_.not_allowed;
      return true;
  }
  return false;
}

void DataPlane::clamp_mss(MutableByteSpan packet, bool outbound) {
  if (!mss_clamp_on_) return;
  // Checksums are whole here: complete_checksum and the Segmenter ran before the filter, and
  // peers send whole packets.
  mss_clamp_.clamp(packet, [&](const nat::MssOption& option) -> std::size_t {
    const std::size_t address_at = outbound ? (option.ip_version == 4 ? 16 : 24) : (option.ip_version == 4 ? 12 : 8);
    const IpAddress address = option.ip_version == 4 ? IpAddress::v4(packet.data() + address_at)
                                                     : IpAddress::v6(packet.data() + address_at);
    const wg::Peer* peer = device_.peer_for(address);
    std::size_t mtu = device_.mtu();
    if (peer && peer_mtu_) {
      const std::size_t path = peer_mtu_(peer->public_key);
      if (path != 0 && path < mtu) mtu = path;
    } else if (peer && peer->endpoint && path_hints_on_) {
      // Plain `wg` mode: what ICMP taught this host about the peer's outer path.
      const Instant at = now().mono;
      if (path_hints_.should_ask(at, peer->endpoint->address()))
        path_hints_.record_kernel(at, peer->endpoint->address(), net::kernel_path_mtu(*peer->endpoint));
      const std::size_t path = path_hints_.tunnel_mtu(at, *peer->endpoint);
      if (path != 0 && path < mtu) mtu = path;
    }
    return mtu;
  });
}

void DataPlane::on_tun_readable() {
  const wg::Now t = now();
  // The largest packet the device seals in one datagram.
  constexpr std::size_t kMaxPlain = wg::kMaxDatagramSize - wg::kDataHeaderSize - wg::kFrameTailroom;
  if (!tun_.vnet_header()) {
    const auto room = std::span<std::uint8_t>(frame_).subspan(wg::kFrameHeadroom, kMaxPlain);
    for (int i = 0; i < kTunPacketsPerWake; ++i) {
      const long n = tun_.read(0, room);
      if (n <= 0) break;
      outbound(t, frame_, static_cast<std::size_t>(n));
    }
    finish_batch(t);
    after_work();
    return;
  }
  // [headroom - 10][virtio header][packet ...]: a packet sent as it is already sits
  // kFrameHeadroom bytes into frame_.
  constexpr std::size_t kAt = wg::kFrameHeadroom - tun::kVirtioNetHeaderSize;
  static_assert(wg::kFrameHeadroom >= tun::kVirtioNetHeaderSize);
  const auto room = std::span<std::uint8_t>(frame_).subspan(kAt, tun::kVirtioNetHeaderSize + tun::kMaxSuperPacket);
  const auto segment_room =
      std::span<std::uint8_t>(segment_).subspan(wg::kFrameHeadroom, kMaxPlain);
  for (int i = 0; i < kTunPacketsPerWake; ++i) {
    const long n = tun_.read(0, room);
    if (n <= 0) break;
    if (static_cast<std::size_t>(n) <= tun::kVirtioNetHeaderSize) {
      ++tun_offload_errors_;
      continue;
    }
    const tun::VirtioNetHeader header = tun::VirtioNetHeader::parse(room.data());
    const std::size_t size = static_cast<std::size_t>(n) - tun::kVirtioNetHeaderSize;
    const MutableByteSpan packet = room.subspan(tun::kVirtioNetHeaderSize, size);
    if ((header.gso_type & ~tun::VirtioNetHeader::kGsoEcn) == tun::VirtioNetHeader::kGsoNone) {
      if (size > kMaxPlain || tun::complete_checksum(header, packet) != tun::OffloadError::ok) {
        ++tun_offload_errors_;
        continue;
      }
      outbound(t, frame_, size);
      continue;
    }
    ++tun_super_packets_;
    if (segmenter_.start(header, packet) != tun::OffloadError::ok) {
      ++tun_offload_errors_;
      continue;
    }
    // Segments go straight into the batch's frames when they fit (they do: the kernel cuts
    // them to the TUN's MTU), else through segment_ and seal()'s path for large packets.
    if (std::size_t{header.gso_size} + 256 <= slot_plain_) {
      for (;;) {
        const MutableByteSpan into = slot();
        const std::size_t part = segmenter_.next(into.subspan(wg::kFrameHeadroom, slot_plain_));
        if (part == 0) break;
        outbound(t, into, part);
      }
    } else {
      while (const std::size_t part = segmenter_.next(segment_room)) outbound(t, segment_, part);
    }
    if (segmenter_.error() != tun::OffloadError::ok) ++tun_offload_errors_;
  }
  finish_batch(t);
  after_work();
}

// ---------------------------------------------------------------- inbound

void DataPlane::on_wireguard(wg::Now t, std::span<const ReceivedDatagram> batch) {
  for (const ReceivedDatagram& d : batch) {
    if (!wg::Device::is_data_message(d.bytes)) {
      // A handshake may rotate or drop keys and send staged packets: what came before it is
      // finished first.
      finish_batch(t);
      device_.on_datagram(t, d.from, d.bytes);
      continue;
    }
    if (device_.prepare_open(t, d.from, d.bytes, jobs_[pending_]) && ++pending_ == kBatch) finish_batch(t);
  }
  finish_batch(t);
  coalescer_.flush(*this);
  after_work();
}

void DataPlane::write_tun(MutableByteSpan packet) {
  const std::size_t pass = filter_.inbound(Clock::now(), packet);
  if (pass == 0) return;
  clamp_mss(packet.first(pass), false);
  if (tun_.vnet_header()) {
    coalescer_.add(packet.first(pass), *this);
    return;
  }
  if (!tun_.write(0, packet.first(pass))) ++tun_write_errors_;
}

void DataPlane::write_coalesced(const tun::VirtioNetHeader& header, ByteSpan packet) {
  std::uint8_t bytes[tun::kVirtioNetHeaderSize];
  header.write(bytes);
  if (!tun_.write(0, bytes, packet)) ++tun_write_errors_;
}

void DataPlane::write_local(ByteSpan packet) {
  if (tun_.vnet_header()) {
    // A whole packet with its checksum done: the all-zero header (no GSO, no checksum to do).
    const std::uint8_t none[tun::kVirtioNetHeaderSize] = {};
    if (!tun_.write(0, none, packet)) ++tun_write_errors_;
    return;
  }
  if (!tun_.write(0, packet)) ++tun_write_errors_;
}

void DataPlane::inject_outbound(ByteSpan packet) {
  constexpr std::size_t kMaxPlain = wg::kMaxDatagramSize - wg::kDataHeaderSize - wg::kFrameTailroom;
  if (!running_ || packet.empty() || packet.size() > kMaxPlain) return;
  std::copy(packet.begin(), packet.end(), segment_.begin() + wg::kFrameHeadroom);
  const wg::Now t = now();
  outbound(t, segment_, packet.size());
  finish_batch(t);
  after_work();
}

// ---------------------------------------------------------------- time

void DataPlane::after_work() {
  coalescer_.flush(*this);
  device_.transport().flush();
  if (running_) timer_.arm(device_.next_deadline());
}

std::string DataPlane::summary() const {
  const wg::DeviceStats& st = device_.stats();
  std::ostringstream out;
  out << "rx_datagrams=" << st.rx_datagrams << " handshakes=" << st.handshakes_completed
      << " rx_decrypt_failed=" << st.rx_decrypt_failed << " rx_replayed=" << st.rx_replayed_data
      << " tx_no_route=" << st.tx_no_route << " tun_write_errors=" << tun_write_errors_
      << " tun_offloads=" << (tun_.vnet_header() ? "on" : "off") << " tun_super_packets=" << tun_super_packets_
      << " tun_offload_errors=" << tun_offload_errors_ << " tun_coalesced=" << coalescer_.stats().packets_merged;
  const CryptoWorkers::Stats& c = crypto_.stats();
  out << " crypto_threads=" << crypto_.threads() << " crypto_batches=" << c.batches
      << " crypto_parallel_batches=" << c.parallel_batches << " crypto_jobs=" << c.jobs
      << " crypto_jobs_on_workers=" << c.jobs_on_workers;
  const localapi::FilterCounters f = filter_.counters();
  out << " shields=" << (filter_.shields_up() ? "up" : "down") << " filter_refused_v4=" << f.refused_v4
      << " filter_refused_v6=" << f.refused_v6 << " filter_malformed=" << f.malformed
      << " filter_untracked=" << f.untracked << " forwarded_in=" << f.forwarded_in
      << " forwarded_out=" << f.forwarded_out;
  const nat::MssClampStats& m = mss_clamp_.stats();
  out << " mss_syns=" << m.syns_seen << " mss_clamped=" << m.clamped << " mss_malformed=" << m.malformed
      << " too_big_answered=" << too_big_stats_.answered << " too_big_limited=" << too_big_stats_.rate_limited
      << " too_big_fragmentable=" << too_big_stats_.fragmentable;
  return out.str();
}

}  // namespace knit::agent
