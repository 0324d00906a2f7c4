// PathManager: for every mesh peer, how to reach it now — direct over UDP (from the WireGuard
// socket or a probe socket), through the home relay, or not at all — and the disco probing that
// finds and keeps direct paths. Sans-I/O (ZeroTier's contract): `now` in, actions and a deadline
// out. Nothing here reads a clock or touches a socket.
//
//   inputs                                   PathManager                         outputs
//   set_peer / remove_peer      (coordinator) ──►  ┌──────────────────────┐ ──► send_udp(socket, endpoint, bytes)
//   set_local_candidates        (netcheck)    ──►  │ per peer: candidates, │ ──► send_relay(node key, bytes)
//   set_relay_available         (relay link)  ──►  │ pings, pongs, RTTs,   │ ──► open/close_probe_socket(id)
//   network_changed             (rtnetlink)   ──►  │ chosen path, trust,   │ ──► path_changed(node key)
//   handle_disco(source, bytes) (sockets)     ──►  │ prediction            │
//   note_data_sent(peer)        (data plane)  ──►  └──────────────────────┘ ◄── path(peer, now): O(1)
//   on_timers(now) at next_deadline()
//
// Behaviour (timings in path_constants.hpp):
//  * A peer is reachable through the relay from the first moment (when one is connected); a
//    direct path replaces it as soon as a pong proves it, and is used while trusted (a pong
//    within kPathTrust).
//  * A new peer, new candidates on either side, data to a peer without a trusted direct path:
//    a full probe — call-me-maybe through the relay with our candidates, and a ping to every
//    candidate of the peer at once. A call-me-maybe received makes us ping every candidate it
//    lists at once (simultaneous open). A ping from a path we have not proven is answered with
//    a pong and our own ping ("peer-reflexive" candidate, as ICE does).
//  * Paths are chosen by RTT with hysteresis, LAN endpoints preferred (path_select.hpp).
//  * While data flows the chosen path gets a heartbeat ping every kHeartbeatInterval; without
//    pongs it loses trust after kPathTrust and traffic moves to the relay; an active peer on
//    the relay is fully re-probed every 5..60 s (backing off), and every peer at once after
//    network_changed().
//  * Who sends first (routers without a WAN firewall): a full probe with the relay up sends
//    each public candidate an "opener" — a ping with TTL kOpenerTtl that opens our own NAT's
//    mapping and dies before the peer's router — and the call-me-maybe; the full pings follow
//    when the peer's call-me-maybe says it has opened its side ("opened": it had our candidates
//    and sent its openers) or after kOpenerFallback. A call-me-maybe without "opened" (the
//    sender knew no candidate of ours) is answered with openers and our own, opened one. So no probe reaches a router before the flow it answers exists there:
//    on a Linux router without an input firewall such a probe creates a conntrack entry that
//    takes the port, masquerade gives the local flow another one, and every later probe
//    refreshes that entry (the path never opens). LAN candidates are pinged at once.
//    The same holds while a relay we expect (set_relay_expected) has not admitted us yet: a
//    peer that does not know us yet cannot have a flow to us, so only openers go, and the full
//    pings wait for the call-me-maybe exchange once the relay is up (or kOpenerFallback). Only
//    a mesh without any relay pings at full TTL at once (nothing could tell the peer to open).
//    The opener TTL starts at kOpenerTtl and grows when an opener's ICMP "time exceeded" comes
//    from inside our own NATs (on_time_exceeded: a carrier NAT). A host without a NAT sends no
//    openers (nat_guess(): STUN, or the interface addresses until STUN answers: from a public
//    host a TTL-2 opener would reach a router two hops away).
//  * A port moved anyway (a peer without this ordering, an older agent): Linux then gives every
//    new flow of ours the moved port, so the reflexive endpoint we published is wrong for peers
//    we meet later. Peers' pongs show it (MappingEvidence::remapped): noticed and counted
//    (stats().remaps_noticed), not yet acted on (update_remapped says why).
//  * A hard side holds its full pings too (holds_full_pings): from its main socket, a NATed
//    peer's public candidates get openers only until the peer has sent to it. Its full pings
//    leave from ports the peer never learns (the mapping varies), so they never open anything,
//    and on a router without a WAN firewall each one was kept as a flow to the router itself
//    (seen with bench/punch_timing.sh, pro <-> sn, under load): when the easy peer's
//    prediction probe hit such a port, masquerade moved that flow to another port, and every
//    later flow of the easy peer inherited it. A peer whose call-me-maybe says full pings are
//    welcome (no NAT, or a filter measured not to depend on the port: they reach it at once)
//    still gets them; a port-mapped candidate always does.
//  * Easy <-> hard pairs: port prediction (predict.hpp) once plain probing has had
//    kPredictStartDelay; hard <-> hard: relay.
//  * Rate bounds: per-peer and global token buckets (path_rate.hpp); prediction is paced.
//
// Disco messages from strangers, forged, replayed, stale or unexpected are dropped and counted
// (stats().drops); every per-peer table is bounded.
//
// Driving it from the agent's event loop (one thread, one steady_timer):
//   PathManager pm(identity.disco.private_key, node_key, system_random, unix_time_ns());
//   coordinator peer map      -> pm.set_peer(now, node_key, disco_key, endpoints) / remove_peer
//   netcheck (STUN, portmap)  -> pm.set_local_candidates(now, {local, reflexive, portmapped, varies})
//   relay map (non-empty?)    -> pm.set_relay_expected(now, true / false)
//   relay connected / lost    -> pm.set_relay_available(now, true / false)
//   address or route change   -> pm.network_changed(now), then netcheck again
//   datagram on socket s      -> looks_like_disco(b) ? pm.handle_disco(now, DiscoSource::udp(s, from), b)
//                                : STUN ? stun client : WireGuard device (from any socket, probe ones too)
//   relay payload from node K -> looks_like_disco(b) ? pm.handle_disco(now, DiscoSource::relay(K), b) : WireGuard
//   WireGuard packet to peer  -> p = pm.path(peer, now); pm.note_data_sent(now, peer);
//                                direct: send from socket p.socket to p.endpoint; relay: relay.send(peer);
//                                none: drop
//   after every call          -> for (a : pm.take_actions()) carry it out (PathAction)
//   timer                     -> at pm.next_deadline(): pm.on_timers(now)
// The path, not WireGuard's roaming endpoint, decides where packets go.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "base/bytes.hpp"
#include "base/ip.hpp"
#include "base/random.hpp"
#include "base/time.hpp"
#include "punch/path/constants.hpp"
#include "punch/path/disco.hpp"
#include "punch/path/mapping_evidence.hpp"
#include "punch/path/rate.hpp"

namespace knit::punch {

struct Candidate;  // peer.hpp

// A UDP socket of the agent: 0 is the WireGuard socket; probe sockets get ids from 1 up, never
// reused by one PathManager.
using SocketId = std::uint32_t;
inline constexpr SocketId kMainSocket = 0;

enum class PathKind : std::uint8_t { none, relay, direct };
const char* to_string(PathKind kind);

struct PathInfo {
  PathKind kind = PathKind::none;
  SocketId socket = kMainSocket;  // direct: send WireGuard packets from this socket...
  Endpoint endpoint;              // ...to this endpoint
  Duration rtt{};                 // direct: the latest measured round trip
  bool lan = false;               // direct: a private (LAN) endpoint
  friend bool operator==(const PathInfo&, const PathInfo&) = default;
};

// Where a disco packet came from.
struct DiscoSource {
  enum class Via : std::uint8_t { udp, relay };
  Via via = Via::udp;
  SocketId socket = kMainSocket;  // udp: the socket it arrived on
  Endpoint from;                  // udp: the remote endpoint it came from
  NodeKey relay_from{};           // relay: the node key the relay vouches for

  static DiscoSource udp(SocketId socket, const Endpoint& from) {
    DiscoSource s;
    s.socket = socket;
    s.from = from;
    return s;
  }
  static DiscoSource relay(const NodeKey& from) {
    DiscoSource s;
    s.via = Via::relay;
    s.relay_from = from;
    return s;
  }
};

enum class ActionKind : std::uint8_t {
  send_udp,            // send `bytes` from `socket` to `endpoint`
  send_relay,          // send `bytes` to `peer` through the relay
  open_probe_socket,   // bind a new UDP socket (any port, same family as the main one) as `socket`
  close_probe_socket,  // close `socket`
  path_changed,        // path(`peer`) changed: re-point WireGuard's endpoint, update status
};
// Why a datagram is sent (for logs, tests and rate accounting).
enum class SendPurpose : std::uint8_t {
  none,
  probe,          // full probe: ping to a candidate
  heartbeat,      // keepalive ping on the chosen path
  ping_back,      // answering a ping from an unproven path with our own
  pong,
  call_me_maybe,
  spray,          // prediction, easy side: ping to a random port
  socket_round,   // prediction, hard side: ping from a probe socket
  opener,         // a ping with a short TTL: opens our own NAT, dies before the peer's router
  pmtu_probe,     // a ping padded to a size under test on the chosen path (pmtu.hpp)
  liveness,       // ping_peer(): is the peer there at all, on whatever path is in use
};

const char* to_string(SendPurpose purpose);

struct PathAction {
  ActionKind kind = ActionKind::send_udp;
  SendPurpose purpose = SendPurpose::none;
  SocketId socket = kMainSocket;
  Endpoint endpoint;
  NodeKey peer{};
  Bytes bytes;
  std::uint8_t ttl = 0;  // send_udp: the IP TTL / hop limit to use; 0: the socket's default
};

// This node's own candidates (from the interfaces, STUN and port mapping).
struct LocalCandidates {
  std::vector<Endpoint> local;           // interface addresses with the WireGuard port
  std::optional<Endpoint> reflexive;     // STUN: our public endpoint
  std::optional<Endpoint> portmapped;    // NAT-PMP / PCP / UPnP mapping
  bool mapping_varies = false;           // STUN: our NAT maps per destination ("hard")
  bool open_filter = false;              // STUN: our NAT's filtering is EIF or ADF (measured)
  friend bool operator==(const LocalCandidates&, const LocalCandidates&) = default;
};

struct PathStats {
  std::array<std::uint64_t, kDiscoErrorCount> drops{};  // by DiscoError
  std::uint64_t received = 0;                           // disco messages accepted
  std::uint64_t pings_sent = 0;    // probe + heartbeat + ping_back
  std::uint64_t pongs_sent = 0;
  std::uint64_t call_me_maybes_sent = 0;
  std::uint64_t spray_probes_sent = 0;
  std::uint64_t socket_round_pings_sent = 0;
  std::uint64_t sends_deferred = 0;     // a full probe postponed by the global bucket
  std::uint64_t sends_suppressed = 0;   // a datagram not sent because of a rate bound
  std::uint64_t path_switches = 0;      // direct -> better direct
  std::uint64_t fallbacks_to_relay = 0; // direct -> relay/none (trust ran out)
  std::uint64_t predictions_started = 0;
  std::uint64_t prediction_hits = 0;
  std::uint64_t candidates_refused = 0; // a peer's candidate table was full
  std::uint64_t candidates_tunnelled = 0;  // inside a prefix routed into the tunnel (not added)
  std::uint64_t mapping_observations = 0; // pongs whose observed source fed MappingEvidence
  std::uint64_t remaps_noticed = 0;       // peers' pongs showed our mapping moved off STUN's port
  std::uint64_t openers_sent = 0;         // short-TTL pings ahead of a full probe
  std::uint64_t opener_ttl_raised = 0;    // on_time_exceeded(): a NAT of ours the openers missed
  std::uint64_t time_exceeded_ignored = 0;  // ... about anything else (a forged one included)
  std::uint64_t pmtu_probes_sent = 0;     // padded pings (path MTU search)
  std::uint64_t pmtu_probes_acked = 0;
  std::uint64_t icmp_too_big_used = 0;     // on_too_big() about an address a search is running to
  std::uint64_t icmp_too_big_unknown = 0;  // ... about any other address (changed nothing)
  std::uint64_t liveness_pings_sent = 0;  // ping_peer()
  std::uint64_t liveness_pongs = 0;       // answers to them that came through the relay
  std::uint64_t drops_of(DiscoError e) const { return drops[static_cast<std::size_t>(e)]; }
};

// One peer as `knit status` shows it.
struct PeerPathStatus {
  NodeKey node_key{};
  PathInfo path;
  std::size_t candidates = 0;
  bool active = false;
  bool predicting = false;
  std::size_t tunnel_mtu = 0;  // tunnel_mtu_of(); 0: the device's
  std::optional<std::size_t> path_mtu;  // the outer path MTU the search confirmed, while direct
};

class PathManager {
 public:
  // `initial_counter` seeds the disco nonce counter, which must only grow across restarts:
  // pass the wall clock in nanoseconds since the Unix epoch at start. rng must outlive this.
  PathManager(const wg::PrivateKey& disco_private, const NodeKey& self_node_key, Random& rng,
              std::uint64_t initial_counter);
  ~PathManager();
  PathManager(const PathManager&) = delete;
  PathManager& operator=(const PathManager&) = delete;

  const DiscoKey& disco_public() const { return disco_public_; }

  // --- inputs ---
  void set_relay_available(Instant now, bool available);
  // The mesh has a relay we are (or will be) connected to (the relay map lists one). Until it
  // admits us, full probes open our NAT with openers and hold the full pings back (who sends
  // first, above); without any relay they ping at once.
  void set_relay_expected(Instant now, bool expected);
  // Adds or updates a peer (its disco key and the endpoints the coordinator published).
  void set_peer(Instant now, const NodeKey& node_key, const DiscoKey& disco_key,
                const std::vector<Endpoint>& endpoints);
  void remove_peer(Instant now, const NodeKey& node_key);
  void set_local_candidates(Instant now, const LocalCandidates& candidates);
  // Our addresses or routes changed (roaming): every path is re-proven from scratch, at once.
  void network_changed(Instant now);
  // Destinations this host routes into the tunnel itself (accepted subnet routes): a ping or a
  // WireGuard datagram to an endpoint inside them would enter the very tunnel it is to carry
  // (a router's LAN address, published as its endpoint, is such a one for a peer that accepts
  // its route). Such candidates are dropped and never added (stats().candidates_tunnelled).
  void set_tunnelled_prefixes(Instant now, const std::vector<IpPrefix>& prefixes);
  // A datagram that looks_like_disco(), or a disco payload the relay delivered.
  DiscoError handle_disco(Instant now, const DiscoSource& source, ByteSpan packet);
  // The data plane sent a packet to this peer (cheap: call it for every packet).
  void note_data_sent(Instant now, const NodeKey& node_key);
  // The per-packet call: note_data_sent and path() in one hash lookup; nullopt when the peer is
  // not one of ours (a peer configured by hand through `wg`).
  std::optional<PathInfo> route(Instant now, const NodeKey& node_key);
  void on_timers(Instant now);
  // Path MTU discovery (pmtu.hpp) on each peer's chosen direct path, for a tunnel of this MTU.
  // Off: no padded pings, and tunnel_mtu_of() says 0 for everyone.
  void set_pmtu(bool enabled, std::size_t tunnel_mtu);
  // An ICMP "time exceeded" (net/socket_error.hpp) said a datagram of the main socket to `to`
  // died at the hop `offender`. About one of our openers at the current opener TTL, from a
  // private or shared address (a NAT of ours it did not cross): the opener TTL grows by one (up
  // to kOpenerTtlMax, at most once per kOpenerTtlHoldoff, never twice for the same hop: an
  // answer from the hop that made the last raise is about an older opener), and the peers still waiting for
  // their full pings get the openers again at once (through on_timers: lower next_deadline()).
  // Anything else (a forged one too) is counted and changes nothing
  // (stats().time_exceeded_ignored). Returns whether the TTL grew.
  bool on_time_exceeded(Instant now, const Endpoint& to, const IpAddress& offender);
  std::uint8_t opener_ttl() const { return opener_ttl_; }
  // ICMP "fragmentation needed" / "packet too big" (net/socket_error.hpp) said a datagram to
  // `to` met a hop that carries at most `mtu` bytes (an outer IP packet size): a hint for the
  // search of every direct path to that address (the path to an address is the same whatever
  // its port), which can only lower what is tried (PmtuSearch::note_too_big); the next probe
  // goes at once. About an address no search runs to, it is counted and changes nothing.
  // Returns whether a search changed.
  bool on_too_big(Instant now, const Endpoint& to, std::size_t mtu);
  // A liveness ping (a route carrier's health, agent/carrier_health.hpp) along the path in use:
  // on a direct path the chosen endpoint's ping (its pong also keeps the path trusted),
  // otherwise through the relay, whose pong comes back the same way (older agents answer it
  // too). Rate-bounded like heartbeats and call-me-maybes; false when nothing could be sent.
  bool ping_peer(Instant now, const NodeKey& node_key);
  // When an authenticated disco message (any type, any path) last came from this peer; nullopt
  // for strangers and peers never heard. Evidence that the peer's agent is alive.
  std::optional<Instant> last_heard(const NodeKey& node_key) const;
  // When on_timers() next has work; may be early, never late. nullopt: nothing pending.
  std::optional<Instant> next_deadline() const { return next_deadline_; }

  // --- outputs ---
  std::vector<PathAction> take_actions();
  bool has_actions() const { return !actions_.empty(); }

  // --- queries ---
  // How to send to this peer now: one hash lookup and a comparison.
  PathInfo path(const NodeKey& node_key, Instant now) const;
  std::vector<PeerPathStatus> status(Instant now) const;
  // The tunnel MTU towards a peer: 0 (use the device's) for strangers, with discovery off, for
  // peers whose pongs do not offer padded pings (older agents) and for peers only ever reached
  // through the relay (a TCP stream: no outer MTU); else what the path MTU search of the direct
  // path confirmed (pmtu.hpp: the base, 1280, until a larger probe is answered). The last
  // direct result is kept while the peer falls back to the relay.
  std::size_t tunnel_mtu_of(const NodeKey& node_key, Instant now) const;
  // The peers whose direct path the search proved smaller than the tunnel MTU needs (a probe
  // of the full size went unanswered three times, or an ICMP hint said so: PmtuSearch::ceiling),
  // with the tunnel MTU of the largest size known to get through (the base until a larger probe
  // is answered; it grows as the search goes on), sorted by key. Packets larger than that are
  // answered "too big" to the host (nat/too_big.hpp). Unlike tunnel_mtu_of, nothing while the
  // full size may still get through: a host told a small MTU keeps it for 10 minutes, so only
  // a path proven smaller is told. Empty almost always.
  std::vector<std::pair<NodeKey, std::size_t>> proven_tunnel_limits(Instant now) const;
  const PathStats& stats() const { return stats_; }
  std::size_t peer_count() const { return peers_.size(); }
  std::size_t open_probe_sockets() const { return open_probe_sockets_; }
  // Our NAT maps per destination, as peers' pongs on direct paths show (mapping_evidence.hpp),
  // whatever STUN said. Counts as "hard" like LocalCandidates::mapping_varies.
  bool observed_mapping_varies() const { return observed_varies_; }
  // Peers' pongs show that new flows of ours leave from another port than the one STUN saw
  // (MappingEvidence::remapped: a router without a WAN firewall moved us). Diagnostic only.
  std::optional<Endpoint> remapped() const { return remapped_; }
  // mapping_varies from STUN or from the peers' pongs, and no port mapping: we are "hard".
  bool hard() const { return my_hard(); }

  struct Peer;  // peer.hpp

 private:

  // manager.cpp: events and bookkeeping; receive.cpp: disco messages and ICMP coming in
  Peer* find(const NodeKey& key);
  void note_data_sent(Instant now, Peer& peer);
  Peer* find_by_disco(const DiscoKey& key);
  void handle_ping(Instant now, Peer& peer, const DiscoSource& source, const DiscoPing& ping);
  DiscoError handle_pong(Instant now, Peer& peer, const DiscoSource& source,
                         const DiscoPong& pong);
  DiscoError handle_call_me_maybe(Instant now, Peer& peer, const CallMeMaybe& cmm);
  void reselect(Instant now, Peer& peer);
  void report_path(Instant now, Peer& peer);
  void lower_deadline(std::optional<Instant> t);
  void note_observed(Instant now, const Endpoint& to, const Endpoint& observed);

  // probe.cpp: what to send when
  void service(Instant now, Peer& peer);
  void full_probe(Instant now, Peer& peer);
  bool send_ping(Instant now, Peer& peer, std::size_t candidate, SendPurpose purpose);
  bool send_opener(Instant now, Peer& peer, std::size_t candidate);
  void service_pmtu(Instant now, Peer& peer);
  std::size_t peer_tunnel_mtu(const Peer& peer, Instant now) const;
  void send_deferred_pings(Instant now, Peer& peer);
  // opened: we have just sent openers or pings to the peer's public candidates (disco.hpp).
  bool send_call_me_maybe(Instant now, Peer& peer, bool opened = false);
  bool send_disco_udp(Instant now, Peer& peer, SocketId socket, const Endpoint& to,
                      const DiscoMessage& message, SendPurpose purpose, bool bypass_global);
  void maybe_start_prediction(Instant now, Peer& peer);
  void advance_prediction(Instant now, Peer& peer);
  void end_prediction(Instant now, Peer& peer, std::optional<SocketId> keep);
  void close_socket(SocketId socket);
  bool my_hard() const;
  // Whether our packets leave through a NAT: from STUN (our reflexive address is none of our
  // interfaces), or guessed from the interface addresses until STUN answers.
  enum class NatGuess : std::uint8_t { none, behind, unknown };
  NatGuess nat_guess() const;
  // A call-me-maybe's "opened" after openers to the peer's public candidates (disco.hpp).
  bool opened_towards(const Peer& peer, NatGuess guess) const;
  // Who sends first, for a hard side (header comment): no full ping from our main socket to
  // this public candidate of the peer until the peer has sent to us from it.
  bool holds_full_pings(Instant now, const Peer& peer, const Candidate& c) const;
  std::optional<Instant> peer_wake(Instant now, const Peer& peer) const;
  TxId new_tx();

  wg::PrivateKey disco_private_;
  DiscoKey disco_public_{};
  NodeKey self_node_key_{};
  Random& rng_;
  std::uint64_t counter_;

  std::unordered_map<NodeKey, std::unique_ptr<Peer>, wg::KeyHash> peers_;
  std::unordered_map<DiscoKey, NodeKey, wg::KeyHash> by_disco_;
  LocalCandidates local_;
  std::uint64_t local_epoch_;
  MappingEvidence evidence_;
  bool observed_varies_ = false;
  std::optional<Endpoint> remapped_;
  void update_remapped(Instant now);
  std::uint8_t opener_ttl_ = kOpenerTtl;
  std::optional<Instant> opener_ttl_raised_at_;
  std::optional<IpAddress> opener_ttl_offender_;  // the hop whose answer made the last raise
  bool relay_available_ = false;
  bool relay_expected_ = false;
  std::vector<IpPrefix> tunnelled_;
  bool tunnelled(const Endpoint& e) const;
  std::optional<std::size_t> add_usable_candidate(Peer& peer, SocketId socket, const Endpoint& endpoint,
                                                  CandidateKind kind, Instant now);
  TokenBucket global_bucket_;
  SocketId next_socket_ = 1;
  std::size_t open_probe_sockets_ = 0;
  // Predictions under way, by our role: several at once (constants.hpp, kMaxPredictions*),
  // every probe still inside the global bucket.
  std::size_t predictions_easy_ = 0;
  std::size_t predictions_hard_ = 0;

  bool pmtu_enabled_ = false;
  std::size_t tunnel_mtu_ = 1420;

  std::vector<PathAction> actions_;
  std::optional<Instant> next_deadline_;
  PathStats stats_;
};

}  // namespace knit::punch
