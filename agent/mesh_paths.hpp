// The paths of a joined mesh, wired together: the mesh transport under the WireGuard device,
// the home relay it falls back on, and netcheck. knitd owns one; the membership starts it when
// the node joins (with the node's keys) and stops it when the node leaves, feeding it the peer
// map, the relay map and this host's interface endpoints in between.
//
//   start(keys):  the device sends through the MeshTransport instead of the plain UdpTransport
//   netcheck ──► candidates (reflexive, port-mapped) ──► PathManager, and on_candidates_changed
//            └─► relay latencies ──► HomeRelay::choose
//   HomeRelay ─► packets, link state ──► MeshTransport
//   stop():  back to the plain transport; probe sockets, relay link and port mapping closed
#pragma once

#include <asio.hpp>

#include <array>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/data_plane.hpp"
#include "agent/home_relay.hpp"
#include "agent/mesh_transport.hpp"
#include "agent/netcheck.hpp"
#include "agent/node_identity.hpp"
#include "agent/probe_sockets.hpp"
#include "agent/udp_transport.hpp"
#include "base/random.hpp"
#include "control/messages.hpp"

namespace knit::agent {

// One peer's path as `knit status` shows it.
struct PeerPath {
  punch::PathKind kind = punch::PathKind::none;
  std::optional<Endpoint> endpoint;  // direct
  std::optional<std::string> relay;  // relay: our home relay, which forwards to the peer's
  std::optional<double> rtt_ms;      // direct: the latest disco round trip
  std::optional<std::size_t> path_mtu;  // the tunnel MTU towards the peer (pmtu.hpp)
};

class MeshPaths {
 public:
  MeshPaths(asio::io_context& io, DataPlane& plane, UdpTransport& udp);
  ~MeshPaths();
  MeshPaths(const MeshPaths&) = delete;
  MeshPaths& operator=(const MeshPaths&) = delete;

  // For knitd's shutdown line, over every mesh run: datagrams sent without DF because their
  // direct path is proven smaller (tx_fragmentable) and the probe sockets' counters
  // (ProbeSockets::Counters): "tx_fragmentable=N probe_sockets=N probe_send_errors=N ...".
  std::string summary() const;

  void start(const NodeIdentity& identity);
  // Path MTU discovery and the MSS clamp that applies it (on unless KNIT_PMTU=off); takes
  // effect at the next start().
  void set_pmtu_enabled(bool enabled) { pmtu_enabled_ = enabled; }
  // Offer the home relay split data frames (on unless KNIT_RELAY_SPLIT=off: every relayed
  // packet then sealed whole on the relay hop as well); takes effect at the next start().
  void set_relay_split(bool enabled) { relay_split_ = enabled; }
  // Offer the home relay data runs with them (on unless KNIT_RELAY_RUNS=off: one sealed head
  // per relayed packet then, not per burst); takes effect at the next start().
  void set_relay_runs(bool enabled) { relay_runs_ = enabled; }
  void stop();
  bool running() const { return transport_ != nullptr; }

  // --- from the membership (ignored while stopped) ---
  // The mesh's peers; every peer not listed is forgotten.
  void set_peers(const std::vector<control::PeerInfo>& peers);
  // A delta's worth of peers (MeshTransport::update_peers): O(size of the change).
  void update_peers(const std::vector<const control::PeerInfo*>& upserts,
                    const std::vector<wg::PublicKey>& removed);
  void set_relays(const control::RelayMap& relays);
  // This host's interface endpoints (with the WireGuard port) changed: a network change.
  void set_interface_endpoints(const std::vector<Endpoint>& endpoints);
  // Our candidates or the NAT report changed: tell the coordinator.
  std::function<void()> on_candidates_changed;

  // --- queries (safe while stopped) ---
  bool manages(const wg::PublicKey& key) const { return transport_ && transport_->manages(key); }
  // The stand-in endpoint of a mesh peer the coordinator published no usable endpoint for.
  std::optional<Endpoint> stand_in(const wg::PublicKey& key);
  PeerPath path_of(const wg::PublicKey& key) const;
  // Route carriers' liveness (carrier_watch.hpp): a ping along the path in use, and when the
  // peer last sent an authenticated disco message.
  void ping_peer(const wg::PublicKey& key) {
    if (transport_) transport_->ping_peer(key);
  }
  std::optional<Instant> last_heard(const wg::PublicKey& key) const {
    return transport_ ? transport_->last_heard(key) : std::nullopt;
  }
  // The accepted subnet routes installed through the TUN: a peer's endpoint inside one is never
  // a path (it would lead into the tunnel itself).
  void set_tunnelled_prefixes(const std::vector<IpPrefix>& prefixes) {
    if (transport_) transport_->set_tunnelled_prefixes(prefixes);
  }
  // Every endpoint a peer may reach us at: interfaces, STUN-reflexive, port-mapped.
  std::vector<Endpoint> endpoints() const;
  std::optional<control::NatReport> nat_report() const;
  // What peers' pongs say about our NAT (punch/path/mapping_evidence.hpp): it maps per
  // destination, whatever one STUN address could show.
  bool observed_mapping_varies() const { return transport_ && transport_->observed_mapping_varies(); }
  const std::optional<NetcheckReport>& last_netcheck() const;
  std::size_t tunnel_mtu() const { return plane_.device().mtu(); }
  std::string home_relay() const { return relay_ ? relay_->name() : std::string(); }
  bool relay_connected() const { return relay_ && relay_->connected(); }
  const MeshTransport* transport() const { return transport_.get(); }
  // `knit netcheck`: a run now, then done with its report.
  void netcheck(std::function<void(const NetcheckReport&)> done);

 private:
  void on_netcheck_changed();
  void push_candidates();

  asio::io_context& io_;
  DataPlane& plane_;
  UdpTransport& udp_;
  SystemRandom rng_;
  std::unique_ptr<HomeRelay> relay_;
  std::unique_ptr<MeshTransport> transport_;
  ProbeSockets::Counters retired_probes_;  // of the transports stopped so far
  std::uint64_t retired_fragmentable_ = 0;
  std::uint64_t retired_too_big_ = 0;
  std::unique_ptr<Netcheck> netcheck_;
  std::vector<Endpoint> interface_endpoints_;
  std::optional<NetcheckReport> no_report_;
  bool pmtu_enabled_ = true;
  bool relay_split_ = true;
  bool relay_runs_ = true;
};

}  // namespace knit::agent
