// knitd's packet path: the TUN, the packet filter (the agent's NAT engine) and the WireGuard
// device core, on one Asio loop. The core decides; this class moves bytes and time. Paths
// beneath the device are the transport's business (wg/transport.hpp): this class never sees a
// socket.
//
// Outbound, TUN -> network (on_tun_readable, up to kTunPacketsPerWake a wake):
//   1. read one packet from the TUN into frame_, kFrameHeadroom bytes in (room for the header);
//      a packet the local hook takes (the mesh resolver's address, dns_service.hpp) stops here
//   2. PacketFilter::outbound       conntrack and port-forward rewrites (packet_filter.hpp)
//   3. wg::Device::on_tun_packet    allowed IPs pick the peer; sealed in place, or staged while
//                                   a handshake runs
//   4. wg::Transport::send          the path beneath the seam (udp_transport / mesh_transport)
//   5. after the burst              Transport::flush (sendmmsg), re-arm the device's timer
// Inbound, network -> TUN (on_wireguard, a batch a transport classified as WireGuard):
//   1. wg::Device::on_datagram      authenticate, decrypt in place, replay window, cryptokey
//                                   routing (the inner source must be the peer's)
//   2. write_tun                    PacketFilter::inbound (shields, forwards), then the TUN
//   3. after the batch              Transport::flush (handshake answers), re-arm the timer
// Time: the device's next deadline arms one timer (net/deadline_timer.hpp); on_timers runs
// retransmissions, keepalives, rekeys and key zeroing.
#pragma once

#include <asio.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "agent/datagram.hpp"
#include "agent/packet_filter.hpp"
#include "base/random.hpp"
#include "net/deadline_timer.hpp"
#include "tun/tun_device.hpp"
#include "wg/device.hpp"

namespace knit::agent {

class DataPlane final : public wg::TunSink, public WireGuardReceiver {
 public:
  static constexpr int kTunPacketsPerWake = 64;

  // transport: where the device sends until told otherwise (Device::set_transport).
  DataPlane(asio::io_context& io, tun::TunDevice& tun, wg::Transport& transport, int mtu);
  ~DataPlane() override;
  DataPlane(const DataPlane&) = delete;
  DataPlane& operator=(const DataPlane&) = delete;

  void start();
  // Stops reading and drops every session (configuration stays).
  void stop();

  wg::Device& device() { return device_; }
  const wg::Device& device() const { return device_; }
  // A change from outside the packet path (the UAPI, the mesh): runs it on the device with the
  // current time, then sends what it queued and re-arms the timer.
  void configure(const std::function<void(wg::Device&, wg::Now)>& change);
  // The shields and port forwards between the TUN and the device (packet_filter.hpp).
  PacketFilter& filter() { return filter_; }
  const PacketFilter& filter() const { return filter_; }
  std::uint64_t tun_write_errors() const { return tun_write_errors_; }
  // Packets knitd answers itself: the hook sees every packet read from the TUN first and
  // returns true for those it takes (they go no further). Its answers go to the TUN through
  // write_local, past the filter and the device (they come from knitd, not from a peer).
  using LocalHook = std::function<bool(ByteSpan packet)>;
  void set_local_hook(LocalHook hook) { local_hook_ = std::move(hook); }
  void write_local(ByteSpan packet);
  // One line of the device and filter counters, for the shutdown log.
  std::string summary() const;
  static wg::Now now();

  // WireGuardReceiver: datagrams from any transport.
  void on_wireguard(wg::Now now, std::span<const ReceivedDatagram> batch) override;
  // wg::TunSink
  void write_tun(MutableByteSpan packet) override;

 private:
  void arm_tun();
  void on_tun_readable();
  void after_work();

  tun::TunDevice& tun_;
  asio::posix::stream_descriptor tun_stream_;
  SystemRandom rng_;
  PacketFilter filter_;
  wg::Device device_;
  net::DeadlineTimer timer_;
  std::vector<std::uint8_t> frame_;
  LocalHook local_hook_;
  std::uint64_t tun_write_errors_ = 0;
  bool running_ = false;
};

}  // namespace knit::agent
