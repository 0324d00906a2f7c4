// knitd's data plane: the WireGuard device core wired to the TUN, the UDP socket, a timer and the
// UAPI, all on one Asio event loop. The core decides; this class only moves bytes and time.
#pragma once

#include <asio.hpp>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <vector>

#include "agent/udp_transport.hpp"
#include "agent/uapi.hpp"
#include "agent/uapi_server.hpp"
#include "base/random.hpp"
#include "tun/tun_device.hpp"
#include "wg/device.hpp"

namespace knit::agent {

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
  // A configuration change from outside the data path (the mesh): runs change on the device core
  // with the current time, then sends what it queued and re-arms the timer.
  void configure(const std::function<void(wg::Device&, wg::Now)>& change);
  std::uint16_t port() const { return udp_.port(); }
  std::uint64_t tun_write_errors() const { return tun_write_errors_; }
  // One line of the transport and core counters, for the shutdown log.
  std::string summary() const;

  // wg::DeviceIo
  void send_datagram(const Endpoint& to, ByteSpan datagram) override;
  void write_tun(ByteSpan packet) override;

  // UapiHandler
  UapiDeviceState uapi_get() override;
  int uapi_set(const UapiSet& request) override;

 private:
  static wg::Now now();
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
  UdpTransport udp_;
  asio::steady_timer timer_;
  SystemRandom rng_;
  wg::Device device_;
  std::optional<Instant> armed_deadline_;
  std::vector<std::uint8_t> frame_;
  std::uint32_t fwmark_ = 0;
  std::uint64_t tun_write_errors_ = 0;
  bool running_ = false;
};

}  // namespace knit::agent
