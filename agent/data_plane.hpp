// knitd's data plane: the WireGuard device core wired to the TUN, the UDP socket, a timer and the
// UAPI, all on one Asio event loop. The core decides; this class only moves bytes and time.
#pragma once

#include <asio.hpp>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <vector>

#include "agent/packet_filter.hpp"
#include "net/udp_socket.hpp"
#include "wg/uapi.hpp"
#include "agent/uapi_server.hpp"
#include "base/random.hpp"
#include "tun/tun_device.hpp"
#include "wg/device.hpp"

namespace knit::agent {

// What the mesh's path logic (direct UDP, relay, disco, STUN) plugs into the data plane. Without
// it, knitd is a plain WireGuard interface: every peer is sent to its endpoint and every
// datagram goes to the WireGuard core.
class PathHooks {
 public:
  virtual ~PathHooks() = default;
  // A datagram for a configured peer. Returns false when these hooks do not manage that peer
  // (a peer set up by hand through `wg`): the data plane then sends it to the endpoint itself.
  virtual bool send_to_peer(const wg::Peer& peer, ByteSpan datagram) = 0;
  // A datagram to a stand-in endpoint (virtual_endpoints.hpp) that is not for a configured peer:
  // a cookie reply to an initiation that came through the relay.
  virtual void send_to_virtual(const Endpoint& to, ByteSpan datagram) = 0;
  // A datagram on the UDP socket that is not WireGuard (disco, STUN), told apart by its first
  // bytes (WireGuard messages start with a type 1..4 and three zero bytes).
  virtual void on_other_datagram(wg::Now now, const Endpoint& from, ByteSpan datagram) = 0;
  // After each burst of work (a batch of packets, a timer): flush what was queued.
  virtual void after_work() = 0;
};

class DataPlane final : public wg::DeviceIo, public UapiHandler {
 public:
  struct Options {
    std::uint16_t port = 0;  // 0: a random free port
    int mtu = 1420;
    // Called whenever the listening port changes (to persist it); may be empty.
    std::function<void(std::uint16_t)> on_port_changed;
  };

  DataPlane(asio::io_context& io, tun::TunDevice& tun, Options options);
  ~DataPlane() override;

  // Binds the UDP port and starts reading; throws std::system_error when the port is taken.
  void start();
  void stop();

  wg::Device& device() { return device_; }
  const wg::Device& device() const { return device_; }
  // A configuration change from outside the data path (the mesh): runs change on the device core
  // with the current time, then sends what it queued and re-arms the timer.
  void configure(const std::function<void(wg::Device&, wg::Now)>& change);
  std::uint16_t port() const { return udp_.port(); }
  std::uint64_t tun_write_errors() const { return tun_write_errors_; }
  // The shields and port forwards between the TUN and the device (packet_filter.hpp).
  PacketFilter& filter() { return filter_; }
  const PacketFilter& filter() const { return filter_; }
  // One line of the transport and core counters, for the shutdown log.
  std::string summary() const;

  // The mesh's path logic; nullptr to detach. Not owned; must outlive its attachment.
  void set_path_hooks(PathHooks* hooks) { hooks_ = hooks; }
  // For the path logic: a datagram out of the UDP socket (queued; sent after the current work),
  // and a WireGuard datagram that arrived another way (the relay, a probe socket).
  void send_udp(const Endpoint& to, ByteSpan datagram) { udp_.queue(to, datagram); }
  void inject_datagram(wg::Now now, const Endpoint& from, MutableByteSpan datagram);
  // Sends what send_udp queued (outside the data plane's own work, e.g. from a timer).
  void flush() { udp_.flush(); }
  bool dual_stack() const { return udp_.dual_stack(); }
  static wg::Now now();

  // wg::DeviceIo
  void send_datagram(const Endpoint& to, ByteSpan datagram) override;
  void send_to_peer(const wg::Peer& peer, const Endpoint& endpoint, ByteSpan datagram) override;
  void write_tun(ByteSpan packet) override;

  // UapiHandler
  wg::UapiDeviceState uapi_get() override;
  int uapi_set(const wg::UapiSet& request) override;

 private:
  void arm_tun();
  void on_tun_readable();
  void arm_udp();
  void on_udp_readable();
  void after_work();
  void schedule_timer();
  std::error_code bind_port(std::uint16_t port);

  asio::io_context& io_;
  tun::TunDevice& tun_;
  Options options_;
  asio::posix::stream_descriptor tun_stream_;
  net::UdpSocket udp_;
  asio::steady_timer timer_;
  SystemRandom rng_;
  PacketFilter filter_;
  std::vector<std::uint8_t> inbound_packet_;  // write_tun's packet, for the filter to rewrite
  wg::Device device_;
  std::optional<Instant> armed_deadline_;
  std::vector<std::uint8_t> frame_;
  PathHooks* hooks_ = nullptr;
  std::uint32_t fwmark_ = 0;
  std::uint64_t tun_write_errors_ = 0;
  bool running_ = false;
};

}  // namespace knit::agent
