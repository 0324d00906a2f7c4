// The shell of carrier_health.hpp in knitd: while route carriers are watched it looks at the
// evidence every kCarrierCheckInterval (the PathManager's last disco message from each, the
// WireGuard device's rx counter), sends the liveness pings the core asks for (through the mesh
// transport: direct, else the relay), and tells the membership when a carrier went down or came
// back, which then re-chooses the carriers (route_choice.hpp) and re-applies the peers.
#pragma once

#include <asio.hpp>

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "agent/carrier_health.hpp"
#include "base/time.hpp"
#include "control/messages.hpp"
#include "net/deadline_timer.hpp"

namespace knit::agent {

class CarrierWatch {
 public:
  struct Hooks {
    std::function<std::optional<Instant>(const control::NodeKey&)> disco_heard;  // PathManager::last_heard
    std::function<std::uint64_t(const control::NodeKey&)> rx_bytes;             // the WireGuard peer's
    std::function<void(const control::NodeKey&)> ping;                           // PathManager::ping_peer
    std::function<void()> changed;  // a carrier went down or came back up
  };
  using ClockFn = std::function<Instant()>;

  CarrierWatch(asio::io_context& io, Hooks hooks, ClockFn clock = Clock::now);

  // The carriers to watch (route_choice.hpp: contested_carriers); empty stops the timer.
  void watch(const std::vector<control::NodeKey>& carriers);
  const CarrierHealth& health() const { return health_; }
  Instant now() const { return clock_(); }
  // One look at the evidence now (the timer's work; tests call it directly).
  void check();

 private:
  Hooks hooks_;
  ClockFn clock_;
  CarrierHealth health_;
  std::vector<control::NodeKey> watched_;
  net::DeadlineTimer timer_;
};

}  // namespace knit::agent
