// PortMapper: keeps one UDP port mapping on the home router so peers behind any NAT can reach
// the agent's WireGuard port. On the agent's Asio loop, never blocking it:
//
//   start(port) -> gateway (given, else /proc/net/route) -> PCP MAP -> NAT-PMP -> UPnP IGD
//       first success: event `mapped` {protocol, external endpoint, lifetime}
//       all failed:    event `failed` with one reason per protocol; tried again after
//                      retry_after_failure
//   mapped -> renew at 1/2 lifetime (retries thicken towards expiry, portmap_schedule.hpp)
//       renewed:          event `renewed` (or `mapped` when the external endpoint changed)
//       expired:          event `lost`, then start over
//   stop() -> the mapping is deleted (bounded by unmap_timeout / UPnP's timeouts), then done
//
//   probe() -> for `knit netcheck`: which protocols the gateway answers (PCP ANNOUNCE, NAT-PMP
//       external address, UPnP discovery + GetExternalIPAddress), all three at once, no
//       mapping kept.
//
// Hostile or stray answers never end an attempt: they are dropped and counted (counters()).
#pragma once

#include <asio.hpp>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/random.hpp"
#include "punch/portmap/client.hpp"
#include "punch/portmap/schedule.hpp"
#include "punch/portmap/types.hpp"

namespace knit::punch {

struct PortMapperOptions {
  // The router to ask; nullopt: the default IPv4 gateway read from route_file at each start.
  std::optional<IpAddress> gateway;
  std::string route_file = "/proc/net/route";
  // Tried in this order; the first to grant a mapping keeps it.
  std::vector<PortMapProtocol> protocols = {PortMapProtocol::pcp, PortMapProtocol::natpmp,
                                            PortMapProtocol::upnp};
  // Asked for; the router may grant less. RFC 6886 §3.3 recommends 7200 s.
  Duration lifetime = 2h;
  Duration retry_after_failure = 5min;
  PortMapClientOptions client;  // timeouts (the gateway field is filled in by the mapper)
  RenewalSchedule::Config schedule;
};

struct PortMapEvent {
  enum class Kind { mapped, renewed, failed, lost };
  Kind kind = Kind::failed;
  std::optional<PortMapping> mapping;    // mapped, renewed
  std::vector<PortMapFailure> failures;  // failed: why each protocol failed; lost: the last
                                         // renewal failures
};
std::string_view to_string(PortMapEvent::Kind kind);

struct PortMapAvailability {
  std::optional<IpAddress> gateway;
  bool pcp = false;
  bool natpmp = false;
  bool upnp = false;
  std::optional<IpAddress> external_address;  // as the first protocol to answer reported it
  std::vector<PortMapFailure> failures;       // for the protocols that are not available
};

class PortMapper {
 public:
  using Handler = std::function<void(const PortMapEvent&)>;

  PortMapper(asio::io_context& io, Random& random, PortMapperOptions options = {});
  // Does not delete the mapping (call stop() and wait for it first); waits for a UPnP call in
  // flight on the worker thread.
  ~PortMapper();
  PortMapper(const PortMapper&) = delete;
  PortMapper& operator=(const PortMapper&) = delete;

  // Maps UDP local_port; events go to handler, on the loop. A second start() restarts.
  void start(std::uint16_t local_port, Handler handler);
  // Deletes the mapping if there is one, then calls done (on the loop). No events after this.
  void stop(std::function<void()> done = {});
  // Which protocols are available (for netcheck); independent of start()/stop().
  void probe(std::function<void(const PortMapAvailability&)> done);

  const std::optional<PortMapping>& mapping() const { return mapping_; }
  const PortMapCounters& counters() const { return counters_; }
  // The gateway the last start() or probe() used.
  const std::optional<IpAddress>& gateway() const { return gateway_; }

 private:
  struct ProbeRun;
  std::optional<IpAddress> resolve_gateway();
  std::unique_ptr<PortMapClient> make_client(PortMapProtocol protocol, const IpAddress& gateway);
  void attempt_all();
  void try_next();
  void on_attempt(PortMapOutcome outcome);
  void on_renewal(PortMapOutcome outcome);
  void arm_timer();
  void on_timer();
  void emit(PortMapEvent event);

  asio::io_context& io_;
  Random& random_;
  PortMapperOptions options_;
  PortMapCounters counters_;
  asio::steady_timer timer_;
  std::shared_ptr<int> alive_ = std::make_shared<int>(0);

  bool running_ = false;
  std::uint16_t port_ = 0;
  Handler handler_;
  std::optional<IpAddress> gateway_;
  std::vector<std::unique_ptr<PortMapClient>> clients_;  // in options_.protocols order
  std::size_t index_ = 0;                                 // the protocol being tried / in use
  std::vector<PortMapFailure> failures_;
  std::optional<PortMapping> mapping_;
  RenewalSchedule schedule_;
  bool renewing_ = false;
  bool retry_pending_ = false;
  std::vector<std::unique_ptr<ProbeRun>> probes_;
};

}  // namespace knit::punch
