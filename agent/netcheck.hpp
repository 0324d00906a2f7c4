// What this host's network looks like from outside, measured from knitd's own UDP socket (the
// mapping measured must be the one WireGuard uses): a NatProbe (RFC 5780) against the STUN
// responders of the mesh's relays, and a port mapping of that socket at the router (PCP,
// NAT-PMP, UPnP IGD). It runs at start, every kInterval, after a network change and when a new
// relay map arrives; `knit netcheck` asks for a run and waits for it and for the port-mapping
// probe. Each finished run and each change of the port mapping calls on_changed: the caller
// turns them into path candidates, the endpoints sent to the coordinator, the NAT report and
// the choice of home relay.
#pragma once

#include <asio.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/udp_transport.hpp"
#include "base/random.hpp"
#include "control/messages.hpp"
#include "net/deadline_timer.hpp"
#include "punch/portmap/mapper.hpp"
#include "punch/stun/nat_probe.hpp"

namespace knit::agent {

struct NetcheckReport {
  punch::NatProbeResult probe;
  std::map<std::string, std::uint32_t> relay_latency_ms;  // relay name -> STUN round trip
  std::string home_relay;
  std::vector<std::string> portmap_protocols;  // available port-mapping protocols
  std::optional<Endpoint> portmapped;
  WallTime finished{};
};

class Netcheck {
 public:
  static constexpr std::chrono::seconds kInterval{60};

  Netcheck(asio::io_context& io, UdpTransport& udp, Random& rng);
  ~Netcheck();
  Netcheck(const Netcheck&) = delete;
  Netcheck& operator=(const Netcheck&) = delete;

  // Maps the socket's port at the router and runs the first check.
  void start();
  void stop();
  // The relays whose STUN responders are asked; a new map starts a run.
  void set_relays(const control::RelayMap& relays);
  // A network change: run now.
  void run_now();
  // `knit netcheck`: a run now (or the one running), then done with its report.
  void run(std::function<void(const NetcheckReport&)> done);
  // A STUN datagram on the main socket.
  void on_stun(Instant now, const Endpoint& from, ByteSpan datagram);

  const std::optional<NetcheckReport>& last() const { return report_; }
  void set_home_relay(const std::string& name);
  std::optional<control::NatReport> nat_report() const;
  // A run finished, or the port mapping changed.
  std::function<void()> on_changed;

 private:
  std::vector<Endpoint> stun_servers() const;
  void start_run(Instant now);
  void finish_run(Instant now);
  void maybe_answer_waiters();
  void on_portmap(const punch::PortMapEvent& event);
  void on_timer();

  asio::io_context& io_;
  UdpTransport& udp_;
  Random& rng_;
  punch::NatProbe probe_;
  std::unique_ptr<punch::PortMapper> portmap_;
  net::DeadlineTimer timer_;
  control::RelayMap relays_;
  std::optional<NetcheckReport> report_;
  std::optional<Instant> next_run_;
  bool probe_running_ = false;
  bool portmap_probe_running_ = false;
  std::optional<Endpoint> portmapped_;
  std::vector<std::string> portmap_protocols_;
  std::string home_relay_;
  std::vector<std::function<void(const NetcheckReport&)>> waiters_;
  bool running_ = false;
};

}  // namespace knit::agent
