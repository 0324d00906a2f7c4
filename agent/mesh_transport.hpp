// The mesh's transport under the WireGuard device (wg/transport.hpp): it chooses, packet by
// packet, the path to each mesh peer, and takes in what every path delivers.
//
//   wg::Device ─send(peer)─► PathManager::route(peer) ─┬─ direct, main socket ─► UdpTransport
//                                                      ├─ direct, probe socket ─► ProbeSockets
//                                                      ├─ relay ──────────────► RelayLink
//                                                      └─ none: the endpoint the coordinator
//                                                         published, else the relay
//   main socket (disco, STUN) ─► on_other ─┬─ disco ─► PathManager
//                                          └─ STUN ──► the STUN handler (netcheck)
//   ICMP too big about our datagrams (both kinds of socket) ─► PathManager::on_too_big
//   ICMP time exceeded about the main socket's openers       ─► PathManager::on_time_exceeded
//   probe sockets, relay ─► classify_datagram ─┬─ WireGuard ─► WireGuardReceiver (the loop)
//                                              └─ disco ─────► PathManager
//
// Peers configured by hand through `wg` are not the PathManager's: they go to their endpoint
// through the UdpTransport as in plain mode. Mesh peers keep a stand-in endpoint in the core
// (punch/path/virtual_endpoints.hpp) while no real one is known, so WireGuard starts a
// handshake; a datagram from the relay arrives from the peer's stand-in, and a cookie reply
// sent to a stand-in goes back through the relay. The PathManager's own sends (probes,
// heartbeats, call-me-maybe, prediction) are drained after every burst of work (flush) and on
// its timer.
//
// The first packet: WireGuard retries a lost handshake initiation only after REKEY_TIMEOUT
// (5 s). The transport keeps each peer's latest initiation for that long and sends it again,
// once, the moment a way to the peer appears that did not exist when it left: the relay
// admitting us (it refuses a node it has not heard of yet), a direct path proven, or the peer
// itself speaking through the relay (it was not there when ours went: its first disco tells
// us it is now). A second copy of one initiation is harmless: the responder takes the first
// and rejects the replayed timestamp.
#pragma once

#include <asio.hpp>

#include <array>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "agent/datagram.hpp"
#include "agent/probe_sockets.hpp"
#include "agent/udp_transport.hpp"
#include "base/random.hpp"
#include "control/messages.hpp"
#include "net/deadline_timer.hpp"
#include "punch/path/manager.hpp"
#include "punch/path/virtual_endpoints.hpp"
#include "wg/transport.hpp"

namespace knit::agent {

class MeshTransport final : public wg::Transport, public UdpTransport::OtherDatagrams {
 public:
  // The home relay as the transport needs it (home_relay.hpp in knitd, a fake in tests).
  class RelayLink {
   public:
    virtual ~RelayLink() = default;
    virtual bool connected() const = 0;
    // Queues a packet for a node; false when it cannot be queued (not connected, queue full).
    virtual bool send(const wg::PublicKey& to, ByteSpan packet) = 0;
  };

  // What was sent, by the path it took: [none, relay, direct] (punch::PathKind order); `none`
  // is a mesh peer's published endpoint, used before any path is proven.
  struct Traffic {
    std::array<std::uint64_t, 3> tx_packets{}, tx_bytes{};
    std::uint64_t rx_relay_packets = 0, rx_relay_bytes = 0;
    std::uint64_t tx_dropped = 0;     // a mesh peer with no path at all
    std::uint64_t rx_not_ours = 0;    // from a probe socket or the relay, neither disco nor a mesh peer's WireGuard
    std::uint64_t initiations_resent = 0;  // a handshake initiation sent again on a new path
    std::uint64_t tx_fragmentable = 0;  // larger than its direct path carries: sent without DF
    std::uint64_t tx_too_big = 0;       // the same to an IPv6 endpoint: not sent (it would be lost)
  };

  using StunHandler = std::function<void(Instant now, const Endpoint& from, ByteSpan datagram)>;
  // The monotonic clock: the steady clock in knitd, a manual one in tests.
  using ClockFn = std::function<Instant()>;

  MeshTransport(asio::io_context& io, UdpTransport& udp, RelayLink& relay, WireGuardReceiver& receiver,
                const wg::PrivateKey& disco_private, const wg::PublicKey& node_key, Random& rng,
                ClockFn clock = Clock::now);
  ~MeshTransport() override;
  MeshTransport(const MeshTransport&) = delete;
  MeshTransport& operator=(const MeshTransport&) = delete;

  // Takes the main socket's disco and STUN; stop() gives them back and closes probe sockets.
  void start();
  void stop();

  // --- inputs ---
  // The mesh's peers (every peer not listed is forgotten); ours is excluded by the caller.
  void set_peers(const std::vector<control::PeerInfo>& peers);
  // The same for a peer-map delta, in O(size of the change): `upserts` added or changed,
  // `removed` gone (keys it never had are ignored).
  void update_peers(const std::vector<const control::PeerInfo*>& upserts,
                    const std::vector<wg::PublicKey>& removed);
  void set_local_candidates(const punch::LocalCandidates& candidates);
  // Our addresses changed (roaming): every path is re-proven at once.
  void network_changed();
  void set_relay_available(bool available);
  // The relay map lists a relay (PathManager::set_relay_expected: who sends first).
  void set_relay_expected(bool expected);
  void set_stun_handler(StunHandler handler) { stun_ = std::move(handler); }
  // A packet the home relay delivered from a node. WireGuard ones are collected and reach the
  // device at on_relay_batch_end() (the packets stay valid until then: relay_client.hpp).
  void on_relay_packet(const wg::PublicKey& from, MutableByteSpan packet);
  void on_relay_batch_end();

  // --- queries ---
  bool manages(const wg::PublicKey& key) const { return names_.count(key) != 0; }
  // The stand-in endpoint of a mesh peer (allocated on first use).
  Endpoint stand_in(const wg::PublicKey& key) { return virtual_.assign(key); }
  punch::PathInfo path_of(const wg::PublicKey& key) const { return paths_.path(key, clock_()); }
  // A route carrier's liveness (carrier_watch.hpp): a ping along the path in use, sent now,
  // and when the peer last sent an authenticated disco message (PathManager::ping_peer,
  // last_heard).
  bool ping_peer(const wg::PublicKey& key) {
    const bool sent = paths_.ping_peer(clock_(), key);
    flush();
    return sent;
  }
  std::optional<Instant> last_heard(const wg::PublicKey& key) const { return paths_.last_heard(key); }
  // The subnets this host routes into the TUN: no path may lead into them
  // (PathManager::set_tunnelled_prefixes).
  void set_tunnelled_prefixes(const std::vector<IpPrefix>& prefixes) {
    paths_.set_tunnelled_prefixes(clock_(), prefixes);
    flush();
  }
  // Path MTU discovery on direct paths (punch/path/pmtu.hpp) for a tunnel of this MTU, and
  // what it found: the tunnel MTU towards a peer, 0 for the device's (PathManager::tunnel_mtu_of).
  void set_pmtu(bool enabled, std::size_t tunnel_mtu) {
    paths_.set_pmtu(enabled, tunnel_mtu);
    probes_.set_pmtu_probe(enabled);
  }
  std::size_t tunnel_mtu_of(const wg::PublicKey& key) const { return paths_.tunnel_mtu_of(key, clock_()); }
  // Told the peers whose direct path is proven smaller than the tunnel MTU, each time that
  // list changes (PathManager::proven_tunnel_limits; looked at on timers and after disco
  // messages, at most every kLimitsCheckInterval).
  using MtuLimits = std::vector<std::pair<wg::PublicKey, std::size_t>>;
  void set_mtu_limits_handler(std::function<void(const MtuLimits&)> handler) { on_limits_ = std::move(handler); }
  // Mesh peers by current path: [none, relay, direct].
  std::array<std::size_t, 3> peers_by_path() const;
  const Traffic& traffic() const { return traffic_; }
  const punch::PathStats& stats() const { return paths_.stats(); }
  // Peers' pongs on direct paths show our mapping varies by destination (symmetric NAT).
  bool observed_mapping_varies() const { return paths_.observed_mapping_varies(); }

  // wg::Transport
  void send(const wg::Peer& peer, std::span<const ByteSpan> datagrams) override;
  void send_reply(const Endpoint& to, ByteSpan datagram) override;
  void flush() override;

  // UdpTransport::OtherDatagrams
  void on_other(wg::Now now, DatagramKind kind, const Endpoint& from, MutableByteSpan bytes) override;
  void after_receive() override { flush(); }

 private:
  void on_probe_datagram(punch::SocketId id, const Endpoint& from, MutableByteSpan bytes);
  // An ICMP too-big about a datagram one of our sockets sent (net/socket_error.hpp).
  void on_too_big(const Endpoint& to, std::size_t mtu);
  void on_time_exceeded(const Endpoint& to, const IpAddress& offender);
  void deliver(const Endpoint& from, MutableByteSpan bytes);
  void deliver_probe_batch();
  void drain();
  void on_timer();
  // The first packet (header comment): remember initiations, send one again on a new way.
  void note_initiation(const wg::PublicKey& peer, punch::PathKind kind, ByteSpan datagram);
  void resend_initiation(const wg::PublicKey& peer, bool only_if_lost, bool peer_knows_us = false);
  void resend_initiations();
  void check_mtu_limits(bool now_anyway);

  static constexpr Duration kLimitsCheckInterval = std::chrono::milliseconds(500);
  ClockFn clock_;
  wg::PublicKey node_key_{};  // ours: the tie-break of who resends an initiation (resend_initiation)
  UdpTransport& udp_;
  RelayLink& relay_;
  WireGuardReceiver& receiver_;
  punch::PathManager paths_;
  punch::VirtualEndpoints virtual_;
  ProbeSockets probes_;

 public:
  ProbeSockets::Counters probe_counters() const { return probes_.counters(); }

 private:
  std::vector<ReceivedDatagram> probe_batch_;  // WireGuard datagrams of one probe-socket read
  std::vector<ReceivedDatagram> relay_batch_;  // ... and of one read from the relay
  net::DeadlineTimer timer_;
  StunHandler stun_;
  std::function<void(const MtuLimits&)> on_limits_;
  MtuLimits limits_;
  // The tunnel MTU a peer's direct path is proven to carry, when smaller than the tunnel's
  // (limits_); 0 otherwise.
  std::size_t limit_of(const wg::PublicKey& key) const;
  Instant limits_checked_{};
  // Mesh peers: node key -> name (for the log) and what the PathManager was told.
  std::unordered_map<wg::PublicKey, std::string, wg::KeyHash> names_;
  std::unordered_map<wg::PublicKey, control::PeerInfo, wg::KeyHash> told_;
  Traffic traffic_;
  struct PendingInitiation {
    Bytes bytes;
    Instant sent{};
    bool lost = false;    // it left by no path at all, or only to a published endpoint
    bool resent = false;
    bool resent_known = false;  // sent once more when the peer's own disco proved it knows us
  };
  std::unordered_map<wg::PublicKey, PendingInitiation, wg::KeyHash> initiations_;
  bool running_ = false;
  net::UdpSocket::TooBigHandler plain_too_big_;  // the UDP socket's handler before start()
  bool draining_ = false;
};

}  // namespace knit::agent
