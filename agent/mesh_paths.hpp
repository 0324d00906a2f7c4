// How knitd reaches each mesh peer: the glue between the data plane's sockets and the
// sans-I/O path logic (punch/). It plugs into the data plane as its PathHooks.
//
//   TUN ─► WireGuard core ─► send_to_peer(peer) ─► MeshPaths ─┬─ direct: UDP socket (main or probe)
//                                                              ├─ relay:  home relay (relay link)
//                                                              └─ none:   the configured endpoint
//   UDP main socket ─► WireGuard? ─► core
//                     └─ disco ─► PathManager      STUN ─► NatProbe (netcheck)
//   probe sockets   ─► disco / WireGuard (injected into the core)
//   home relay      ─► disco / WireGuard (injected, from the peer's stand-in endpoint)
//
// Mesh peers keep a stand-in endpoint in the WireGuard core (virtual_endpoints.hpp) or the
// best endpoint the coordinator published: the core needs one to start a handshake, but every
// datagram to a mesh peer is routed here by PathManager::path(), packet by packet. Peers set up
// by hand through `wg` are not managed and go where their endpoint says.
//
// Netcheck: a NatProbe against the STUN responders of the mesh's relays runs at start, every
// kNetcheckInterval and after a network change; its reflexive address and mapping behaviour
// become our candidates (PathManager::set_local_candidates) and the endpoints and NAT report
// the membership sends to the coordinator. The home relay is the relay with the lowest STUN
// round trip; a new one is chosen when the link to it stays down.
#pragma once

#include <asio.hpp>

#include <array>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/data_plane.hpp"
#include "punch/path/virtual_endpoints.hpp"
#include "base/random.hpp"
#include "control/messages.hpp"
#include "punch/path/manager.hpp"
#include "punch/portmap/mapper.hpp"
#include "punch/stun/nat_probe.hpp"

namespace knit::agent {

// The home-relay connection as MeshPaths needs it (relay/relay_client.hpp behind it in knitd,
// a fake in tests).
class RelayLink {
 public:
  virtual ~RelayLink() = default;
  // Connects to this relay (replacing any other); nullopt disconnects.
  virtual void set_relay(const std::optional<control::RelayInfo>& relay) = 0;
  virtual bool connected() const = 0;
  // Queues a packet for a node; false when it cannot be queued (not connected, queue full).
  virtual bool send(const wg::PublicKey& to, ByteSpan packet) = 0;
};

// The result of a netcheck, for `knit netcheck` and the NAT report.
struct NetcheckReport {
  punch::NatProbeResult probe;
  std::map<std::string, std::uint32_t> relay_latency_ms;  // relay name -> STUN round trip
  std::string home_relay;
  std::vector<std::string> portmap_protocols;  // available port-mapping protocols
  std::optional<Endpoint> portmapped;
  WallTime finished{};
};

// One peer's path as `knit status` shows it.
struct PeerPath {
  punch::PathKind kind = punch::PathKind::none;
  std::optional<Endpoint> endpoint;  // direct
  std::optional<std::string> relay;  // relay: our home relay, which forwards to the peer's
  std::optional<double> rtt_ms;      // direct: the latest disco round trip
};

class MeshPaths final : public PathHooks {
 public:
  static constexpr std::chrono::seconds kNetcheckInterval{60};
  // How long the link to the home relay may stay down before another relay is chosen.
  static constexpr std::chrono::seconds kRelayFailover{4};

  MeshPaths(asio::io_context& io, DataPlane& plane, RelayLink& relay,
            const wg::PrivateKey& disco_private, const wg::PublicKey& node_key);
  ~MeshPaths() override;
  MeshPaths(const MeshPaths&) = delete;
  MeshPaths& operator=(const MeshPaths&) = delete;

  // Attaches to the data plane and starts the first netcheck.
  void start();
  // Detaches, closes probe sockets and the relay link.
  void stop();

  // --- from the membership ---
  // The mesh's peers (every peer not listed is forgotten).
  void set_peers(const std::vector<control::PeerInfo>& peers);
  void set_relays(const control::RelayMap& relays);
  // This host's interface endpoints (with the WireGuard port) changed: a network change.
  void set_interface_endpoints(const std::vector<Endpoint>& endpoints);
  // Called when our candidates or the NAT report change, to tell the coordinator.
  std::function<void()> on_candidates_changed;

  // --- queries ---
  bool manages(const wg::PublicKey& key) const { return managed_.count(key) != 0; }
  // The stand-in endpoint for a managed peer (the WireGuard core's endpoint when the
  // coordinator published none that could work).
  Endpoint stand_in(const wg::PublicKey& key) { return virtual_.assign(key); }
  PeerPath path_of(const wg::PublicKey& key) const;
  // Every endpoint a peer may reach us at: interfaces, STUN-reflexive, port-mapped.
  std::vector<Endpoint> endpoints() const;
  std::optional<control::NatReport> nat_report() const;
  const std::optional<NetcheckReport>& last_netcheck() const { return netcheck_; }
  const std::string& home_relay() const { return home_relay_; }
  const punch::PathStats& stats() const { return paths_.stats(); }
  // Traffic by the path it took: [none, relay, direct] (punch::PathKind order).
  struct Traffic {
    std::array<std::uint64_t, 3> tx_packets{}, tx_bytes{};
    std::uint64_t rx_relay_packets = 0, rx_relay_bytes = 0;
    std::uint64_t tx_dropped = 0;  // no path at all
  };
  const Traffic& traffic() const { return traffic_; }
  // Peers by current path: [none, relay, direct].
  std::array<std::size_t, 3> peers_by_path() const;
  // Runs a netcheck now and calls done with its report (at once when one is already running,
  // it waits for that one).
  void netcheck(std::function<void(const NetcheckReport&)> done);

  // --- from the relay link ---
  void on_relay_packet(const wg::PublicKey& from, ByteSpan packet);
  void on_relay_state(bool connected);

  // PathHooks
  bool send_to_peer(const wg::Peer& peer, ByteSpan datagram) override;
  void send_to_virtual(const Endpoint& to, ByteSpan datagram) override;
  void on_other_datagram(wg::Now now, const Endpoint& from, ByteSpan datagram) override;
  void after_work() override;

 private:
  struct ProbeSocket;

  static Instant mono_now() { return Clock::now(); }
  void drain();
  void schedule();
  void on_timer();
  void start_netcheck(Instant now);
  void maybe_finish_netcheck(Instant now);
  void on_portmap(const punch::PortMapEvent& event);
  void finish_netcheck(Instant now);
  void choose_home_relay(Instant now);
  void push_candidates(Instant now);
  void open_probe_socket(punch::SocketId id);
  void on_probe_datagram(punch::SocketId id, const Endpoint& from, MutableByteSpan datagram);
  std::vector<Endpoint> stun_servers() const;

  asio::io_context& io_;
  DataPlane& plane_;
  RelayLink& relay_;
  SystemRandom rng_;
  punch::PathManager paths_;
  punch::NatProbe probe_;
  punch::VirtualEndpoints virtual_;
  std::map<wg::PublicKey, control::PeerInfo> managed_;
  std::map<punch::SocketId, std::unique_ptr<ProbeSocket>> probe_sockets_;
  control::RelayMap relays_;
  std::vector<Endpoint> interface_endpoints_;
  std::optional<NetcheckReport> netcheck_;
  bool netcheck_running_ = false;
  bool portmap_probe_running_ = false;
  // The router's port mapping of our UDP port (NAT-PMP, PCP or UPnP), a candidate of its own.
  std::unique_ptr<punch::PortMapper> portmap_;
  std::optional<Endpoint> portmapped_;
  std::vector<std::string> portmap_protocols_;
  std::vector<std::function<void(const NetcheckReport&)>> netcheck_waiters_;
  std::optional<Instant> next_netcheck_;
  std::string home_relay_;
  std::optional<Instant> relay_down_since_;
  asio::steady_timer timer_;
  std::optional<Instant> armed_;
  Bytes scratch_;
  Traffic traffic_;
  bool running_ = false;
  bool draining_ = false;
};

}  // namespace knit::agent
