// One port-mapping protocol's client, as the PortMapper drives it. The three implementations
// are thin OS adapters on the agent's Asio loop: PcpClient (an Asio UDP socket and Knit's PCP
// codec), NatPmpClient (libnatpmp's non-blocking socket, watched by Asio) and UpnpClient
// (libminiupnpc's blocking calls on a worker thread, results posted back to the loop). Every
// callback runs on the loop; every request ends, by an answer or by its deadline. A client is
// never destroyed from inside one of its own callbacks (post the destruction instead).
#pragma once

#include <functional>
#include <memory>

#include "base/ip.hpp"
#include "base/time.hpp"
#include "punch/portmap/types.hpp"

namespace knit::punch {

struct PortMapClientOptions {
  IpAddress gateway;
  // PCP and NAT-PMP: the whole exchange, retransmissions included (first after first_retry,
  // then doubling, as RFC 6886 §3.1 does from 250 ms). RFC 6887 §8.1.1 starts at 3 s; a
  // mapping that needs more than a few seconds on a LAN is not worth waiting for.
  Duration request_timeout = 3s;
  Duration first_retry = 250ms;
  // Deleting on stop: bounded separately, short, best effort.
  Duration unmap_timeout = 1s;
  // UPnP: how long SSDP discovery listens for answers (miniupnpc's `delay`).
  Duration upnp_discover_timeout = 2s;
};

class PortMapClient {
 public:
  using Done = std::function<void(PortMapOutcome)>;

  virtual ~PortMapClient() = default;
  virtual PortMapProtocol protocol() const = 0;
  // Asks for (or renews: same nonce, same ports) a UDP mapping of internal_port for lifetime.
  // One request at a time; a new one cancels the one in flight.
  virtual void map(std::uint16_t internal_port, Duration lifetime, Done done) = 0;
  // Is the protocol there? No mapping is kept: outcome.mapping, on success, carries the
  // gateway's external address with port 0.
  virtual void probe(Done done) = 0;
  // Deletes the mapping obtained last, if any; done() after the answer or the deadline.
  virtual void unmap(std::function<void()> done) = 0;
  // Abandons the request in flight: its callback is never called.
  virtual void cancel() = 0;
};

}  // namespace knit::punch
