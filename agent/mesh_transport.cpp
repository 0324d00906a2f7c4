#include "agent/mesh_transport.hpp"

#include <algorithm>
#include <chrono>

#include "base/log.hpp"
#include "punch/path/select.hpp"
#include "wg/constants.hpp"

namespace knit::agent {

namespace {
constexpr const char* kLog = "paths";

// A LAN or loopback address: no NAT router between us and it.
bool nearby(const IpAddress& a) {
  if (punch::is_private_address(a)) return true;
  const std::uint8_t* b = a.bytes();
  if (a.is_v4()) return b[0] == 127;
  static constexpr std::uint8_t kLoopback6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  return std::equal(b, b + 16, kLoopback6);
}

// A WireGuard handshake initiation (type 1, three reserved zero bytes, 148 bytes).
bool is_initiation(ByteSpan d) {
  return d.size() == wg::kInitiationSize && d[0] == 1 && d[1] == 0 && d[2] == 0 && d[3] == 0;
}

std::uint64_t wall_nanoseconds() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}
}  // namespace

MeshTransport::MeshTransport(asio::io_context& io, UdpTransport& udp, RelayLink& relay,
                             WireGuardReceiver& receiver, const wg::PrivateKey& disco_private,
                             const wg::PublicKey& node_key, Random& rng, ClockFn clock)
    : clock_(std::move(clock)),
      node_key_(node_key),
      udp_(udp),
      relay_(relay),
      receiver_(receiver),
      // The disco nonce counter only grows across restarts: it starts at the wall clock.
      paths_(disco_private, node_key, rng, wall_nanoseconds()),
      probes_(
          io,
          [this](punch::SocketId id, const Endpoint& from, MutableByteSpan bytes) {
            on_probe_datagram(id, from, bytes);
          },
          [this] { deliver_probe_batch(); }, net::UdpSocket::Options{udp.offloads()}),
      timer_(io, [this] { on_timer(); }, clock_) {}

MeshTransport::~MeshTransport() { stop(); }

void MeshTransport::start() {
  if (running_) return;
  running_ = true;
  udp_.set_other_datagrams(this);
  auto too_big = [this](const Endpoint& to, std::size_t mtu) { on_too_big(to, mtu); };
  plain_too_big_ = udp_.too_big_handler();  // plain `wg` mode's, back when the mesh stops
  udp_.set_too_big_handler(too_big);
  probes_.set_too_big_handler(too_big);
  udp_.set_time_exceeded_handler([this](const Endpoint& to, const IpAddress& offender) { on_time_exceeded(to, offender); });
  paths_.set_relay_available(clock_(), relay_.connected());
  flush();
}

void MeshTransport::stop() {
  if (!running_) return;
  running_ = false;
  udp_.set_other_datagrams(nullptr);
  udp_.set_too_big_handler(std::move(plain_too_big_));
  plain_too_big_ = nullptr;
  probes_.set_too_big_handler(nullptr);
  udp_.set_time_exceeded_handler(nullptr);
  timer_.cancel();
  probes_.close_all();
}

// ---------------------------------------------------------------- inputs

void MeshTransport::set_peers(const std::vector<control::PeerInfo>& peers) {
  const Instant now = clock_();
  std::unordered_map<wg::PublicKey, control::PeerInfo, wg::KeyHash> next;
  for (const auto& peer : peers) next.emplace(peer.node_key, peer);
  for (const auto& [key, old] : told_) {
    if (next.count(key) != 0) continue;
    paths_.remove_peer(now, key);
    virtual_.release(key);
  }
  names_.clear();
  for (const auto& [key, peer] : next) {
    names_.emplace(key, peer.name);
    auto it = told_.find(key);
    if (it != told_.end() && it->second.disco_key == peer.disco_key && it->second.endpoints == peer.endpoints)
      continue;
    paths_.set_peer(now, key, peer.disco_key, peer.endpoints);
  }
  told_ = std::move(next);
  flush();
}

void MeshTransport::update_peers(const std::vector<const control::PeerInfo*>& upserts,
                                 const std::vector<wg::PublicKey>& removed) {
  const Instant now = clock_();
  for (const wg::PublicKey& key : removed) {
    if (told_.erase(key) == 0) continue;
    names_.erase(key);
    paths_.remove_peer(now, key);
    virtual_.release(key);
  }
  for (const control::PeerInfo* peer : upserts) {
    names_[peer->node_key] = peer->name;
    auto it = told_.find(peer->node_key);
    if (it != told_.end() && it->second.disco_key == peer->disco_key && it->second.endpoints == peer->endpoints) {
      it->second = *peer;
      continue;
    }
    paths_.set_peer(now, peer->node_key, peer->disco_key, peer->endpoints);
    told_[peer->node_key] = *peer;
  }
  flush();
}

void MeshTransport::set_local_candidates(const punch::LocalCandidates& candidates) {
  paths_.set_local_candidates(clock_(), candidates);
  flush();
}

void MeshTransport::network_changed() {
  paths_.network_changed(clock_());
  flush();
}

void MeshTransport::set_relay_expected(bool expected) {
  paths_.set_relay_expected(clock_(), expected);
}

void MeshTransport::set_relay_available(bool available) {
  paths_.set_relay_available(clock_(), available);
  // Admitted at last: what we sent while the relay refused us never left.
  if (available) resend_initiations();
  flush();
}

// ---------------------------------------------------------------- the seam: sending

void MeshTransport::send(const wg::Peer& peer, std::span<const ByteSpan> datagrams) {
  const std::optional<punch::PathInfo> route = paths_.route(clock_(), peer.public_key);
  if (!route) {
    udp_.send(peer, datagrams);  // configured by hand through `wg`: its endpoint, as plain mode
    return;
  }
  const auto kind = static_cast<std::size_t>(route->kind);
  for (ByteSpan datagram : datagrams) {
    ++traffic_.tx_packets[kind];
    traffic_.tx_bytes[kind] += datagram.size();
    if (is_initiation(datagram)) note_initiation(peer.public_key, route->kind, datagram);
  }
  switch (route->kind) {
    case punch::PathKind::direct: {
      // A path proven smaller than the tunnel: what the data plane still seals above its limit
      // (IPv4 without DF, IPv6 of up to 1280 bytes, which IPv6 promises to carry) goes without
      // DF, so the router before the small hop fragments it (over IPv4; data_plane.hpp).
      // Over IPv6 nothing fragments it on the way, so such a datagram is not sent at all.
      const std::size_t limit = limit_of(peer.public_key);
      for (ByteSpan datagram : datagrams) {
        const bool oversized = limit != 0 && datagram.size() > limit + wg::kDataHeaderSize + wg::kAuthTagSize;
        if (oversized && !route->endpoint.address().is_v4()) {
          ++traffic_.tx_too_big;
          continue;
        }
        if (oversized) ++traffic_.tx_fragmentable;
        if (route->socket == punch::kMainSocket) {
          if (oversized) udp_.send_fragmentable(route->endpoint, datagram);
          else udp_.send_to(route->endpoint, datagram);
        } else {
          probes_.send(route->socket, route->endpoint, datagram, net::UdpSocket::SendOptions{0, oversized});
        }
      }
      return;
    }
    case punch::PathKind::relay:
      for (ByteSpan datagram : datagrams) relay_.send(peer.public_key, datagram);
      return;
    case punch::PathKind::none:
      // Nothing proven yet (the relay has not admitted us): a LAN endpoint the coordinator
      // published, as a plain WireGuard peer would. Not a public one: behind a Linux router
      // without a WAN firewall, a packet that arrives before the peer's own flow to us exists
      // takes the port there (punch/path/manager.hpp, who sends first) and the pair stays on the
      // relay until that entry expires. The initiation is sent again once the relay admits us.
      if (peer.endpoint && !punch::VirtualEndpoints::is_virtual(*peer.endpoint) &&
          nearby(peer.endpoint->address())) {
        udp_.send(peer, datagrams);
      } else if (relay_.connected()) {
        for (ByteSpan datagram : datagrams) relay_.send(peer.public_key, datagram);
      } else {
        traffic_.tx_dropped += datagrams.size();
      }
      return;
  }
}

void MeshTransport::send_reply(const Endpoint& to, ByteSpan datagram) {
  // A cookie reply to an initiation that came through the relay goes back the same way.
  if (punch::VirtualEndpoints::is_virtual(to)) {
    if (auto key = virtual_.key_of(to)) relay_.send(*key, datagram);
    return;
  }
  udp_.send_reply(to, datagram);
}

void MeshTransport::flush() {
  if (running_ && !draining_) {
    drain();
    timer_.arm(paths_.next_deadline());
  }
  udp_.flush();
  probes_.flush();
}

// ---------------------------------------------------------------- receiving

void MeshTransport::on_other(wg::Now, DatagramKind kind, const Endpoint& from, MutableByteSpan bytes) {
  if (kind == DatagramKind::disco) {
    const punch::DiscoError e = paths_.handle_disco(clock_(), punch::DiscoSource::udp(punch::kMainSocket, from), bytes);
    if (log_level() <= LogLevel::debug) log(LogLevel::debug, "disco", "from ", from.to_string(), ": ", punch::to_string(e));
    check_mtu_limits(false);
  } else if (kind == DatagramKind::stun && stun_) {
    stun_(clock_(), from, bytes);
  }
}

void MeshTransport::on_time_exceeded(const Endpoint& to, const IpAddress& offender) {
  if (!running_ || !paths_.on_time_exceeded(clock_(), to, offender)) return;
  log(LogLevel::info, "paths", "an opener died at ", offender.to_string(), ", a NAT of ours: openers now go with TTL ",
      static_cast<unsigned>(paths_.opener_ttl()));
  // As for too-big hints: the timer sends the openers again.
  timer_.arm(paths_.next_deadline());
}

void MeshTransport::on_too_big(const Endpoint& to, std::size_t mtu) {
  if (!running_ || !paths_.on_too_big(clock_(), to, mtu)) return;
  log(LogLevel::info, "paths", "ICMP too big: the path to ", to.address().to_string(), " carries at most ", mtu,
      " bytes (a path MTU hint)");
  // Nothing is sent from here (the hint may come from inside a socket's flush): the timer
  // sends the smaller probe.
  timer_.arm(paths_.next_deadline());
}

void MeshTransport::on_relay_packet(const wg::PublicKey& from, MutableByteSpan packet) {
  ++traffic_.rx_relay_packets;
  traffic_.rx_relay_bytes += packet.size();
  switch (classify_datagram(packet)) {
    case DatagramKind::disco: {
      const punch::DiscoError opened = paths_.handle_disco(clock_(), punch::DiscoSource::relay(from), packet);
      if (log_level() <= LogLevel::debug) {
        auto n = names_.find(from);
        log(LogLevel::debug, "disco", "via relay from ", n != names_.end() ? n->second : std::string("?"), ": ",
            punch::to_string(opened));
      }
      // The peer is at the relay now; it may not have been when our initiation went there. An
      // authenticated message (its call-me-maybe) also proves it knows us now: our initiation
      // sent again the moment the relay admitted us may have reached it before the
      // coordinator's delta did (dropped as from an unknown peer), so one more copy goes, from
      // one side of the pair only (the lower node key): both agents initiate to a new peer, and
      // copies sent by both at the same event cross, each side's answer replacing its own
      // handshake, and the pair waits out WireGuard's 5 s retry (seen in bench/punch_timing.sh).
      resend_initiation(from, false, opened == punch::DiscoError::none && node_key_ < from);
      flush();  // the answers, and the resent initiation, wait in the sockets' batches
      break;
    }
    case DatagramKind::wireguard:
      // Its answer to our initiation: nothing left to resend. Its own initiation: it knows us and
      // a handshake is under way; a copy of ours now would only cross it (above).
      if (!packet.empty() && (packet[0] == 2 || (packet[0] == 1 && manages(from)))) initiations_.erase(from);
      // The core hears it from the peer's stand-in endpoint, so a cookie reply (the only thing
      // the core sends to a source rather than to a peer) comes back through the relay.
      // Collected: the packets of one read from the relay reach the device as one batch
      // (on_relay_batch_end), so the TUN side can coalesce them as it does for the socket's.
      if (manages(from)) relay_batch_.push_back({virtual_.assign(from), packet});
      else ++traffic_.rx_not_ours;
      break;
    default:
      ++traffic_.rx_not_ours;
  }
  flush();
}

void MeshTransport::on_probe_datagram(punch::SocketId id, const Endpoint& from, MutableByteSpan bytes) {
  switch (classify_datagram(bytes)) {
    case DatagramKind::disco:
      paths_.handle_disco(clock_(), punch::DiscoSource::udp(id, from), bytes);
      check_mtu_limits(false);
      flush();
      break;
    case DatagramKind::wireguard:
      // Collected: the batch goes to the device in one call (deliver_probe_batch).
      probe_batch_.push_back({from, bytes});
      break;
    default:
      ++traffic_.rx_not_ours;
  }
}

void MeshTransport::on_relay_batch_end() {
  if (relay_batch_.empty()) return;
  receiver_.on_wireguard({clock_(), std::chrono::system_clock::now()}, relay_batch_);
  relay_batch_.clear();
}

void MeshTransport::deliver_probe_batch() {
  if (!probe_batch_.empty())
    receiver_.on_wireguard({clock_(), std::chrono::system_clock::now()}, probe_batch_);
  probe_batch_.clear();
  flush();  // what handling the batch queued (replies, the PathManager's sends)
}

void MeshTransport::deliver(const Endpoint& from, MutableByteSpan bytes) {
  const ReceivedDatagram one{from, bytes};
  receiver_.on_wireguard({clock_(), std::chrono::system_clock::now()}, std::span(&one, 1));
}

// ---------------------------------------------------------------- the PathManager's own sends

void MeshTransport::drain() {
  if (!paths_.has_actions()) return;
  draining_ = true;
  for (punch::PathAction& a : paths_.take_actions()) {
    if (log_level() <= LogLevel::debug && (a.kind == punch::ActionKind::send_relay ||
                                           (a.kind == punch::ActionKind::send_udp &&
                                            a.purpose != punch::SendPurpose::spray &&
                                            a.purpose != punch::SendPurpose::socket_round))) {
      auto n = names_.find(a.peer);
      log(LogLevel::debug, "disco", punch::to_string(a.purpose), " to ", n != names_.end() ? n->second : std::string("?"),
          a.kind == punch::ActionKind::send_relay ? std::string(" via relay") : " " + a.endpoint.to_string(),
          a.ttl != 0 ? " ttl " + std::to_string(a.ttl) : std::string());
    }
    switch (a.kind) {
      case punch::ActionKind::send_udp:
        if (a.socket == punch::kMainSocket && a.ttl != 0) udp_.send_with_ttl(a.endpoint, a.bytes, a.ttl);
        else if (a.socket == punch::kMainSocket) udp_.send_to(a.endpoint, a.bytes);
        else probes_.send(a.socket, a.endpoint, a.bytes, a.ttl);
        break;
      case punch::ActionKind::send_relay:
        relay_.send(a.peer, a.bytes);
        break;
      case punch::ActionKind::open_probe_socket:
        probes_.open(a.socket, udp_.dual_stack());
        break;
      case punch::ActionKind::close_probe_socket:
        probes_.close(a.socket);
        break;
      case punch::ActionKind::path_changed: {
        const punch::PathInfo p = path_of(a.peer);
        if (p.kind != punch::PathKind::none) resend_initiation(a.peer, true);
        auto it = names_.find(a.peer);
        log(LogLevel::info, kLog, it != names_.end() ? it->second : std::string("?"), ": ",
            punch::to_string(p.kind), p.kind == punch::PathKind::direct ? " " + p.endpoint.to_string() : std::string());
        break;
      }
    }
  }
  draining_ = false;
}

// ---------------------------------------------------------------- the first packet

void MeshTransport::note_initiation(const wg::PublicKey& peer, punch::PathKind kind, ByteSpan datagram) {
  PendingInitiation& p = initiations_[peer];
  p.bytes.assign(datagram.begin(), datagram.end());
  p.sent = clock_();
  // Dropped (no relay, no endpoint) or sent to a published endpoint nothing has proven.
  p.lost = kind == punch::PathKind::none;
  p.resent = false;
  p.resent_known = false;
  if (log_level() == LogLevel::debug) {
    auto it = names_.find(peer);
    log(LogLevel::debug, kLog, it != names_.end() ? it->second : std::string("?"), ": handshake initiation via ",
        punch::to_string(kind));
  }
  // Bounded by the mesh's peers; forget the stale ones as we go.
  if (initiations_.size() > names_.size() + 1)
    std::erase_if(initiations_, [&](const auto& e) { return p.sent - e.second.sent > wg::kRekeyTimeout; });
}

void MeshTransport::resend_initiation(const wg::PublicKey& peer, bool only_if_lost, bool peer_knows_us) {
  auto it = initiations_.find(peer);
  if (it == initiations_.end()) return;
  PendingInitiation& p = it->second;
  const Instant now = clock_();
  // After REKEY_TIMEOUT WireGuard sends a fresh one itself. A copy the peer already took is
  // refused by it as a replay (its timestamp is not newer): harmless.
  if (now - p.sent >= wg::kRekeyTimeout || (only_if_lost && !p.lost)) return;
  const bool again = p.resent && peer_knows_us && !p.resent_known;
  if (p.resent && !again) return;
  const punch::PathInfo route = paths_.path(peer, now);
  switch (route.kind) {
    case punch::PathKind::direct:
      if (route.socket == punch::kMainSocket) udp_.send_to(route.endpoint, p.bytes);
      else probes_.send(route.socket, route.endpoint, p.bytes);
      break;
    case punch::PathKind::relay:
      if (!relay_.send(peer, p.bytes)) return;
      break;
    case punch::PathKind::none:
      return;
  }
  if (again) p.resent_known = true;
  p.resent = true;
  ++traffic_.initiations_resent;
  if (log_level() == LogLevel::debug) {
    auto n = names_.find(peer);
    log(LogLevel::debug, kLog, n != names_.end() ? n->second : std::string("?"), ": handshake initiation sent again via ",
        punch::to_string(route.kind), again ? " (the peer knows us now)" : "");
  }
}

void MeshTransport::resend_initiations() {
  std::vector<wg::PublicKey> lost;
  for (const auto& [key, p] : initiations_)
    if (p.lost) lost.push_back(key);
  for (const auto& key : lost) resend_initiation(key, true);
}

void MeshTransport::on_timer() {
  if (!running_) return;
  paths_.on_timers(clock_());
  check_mtu_limits(true);
  flush();
}

std::size_t MeshTransport::limit_of(const wg::PublicKey& key) const {
  if (limits_.empty()) return 0;
  const auto it = std::lower_bound(limits_.begin(), limits_.end(), key,
                                   [](const auto& entry, const wg::PublicKey& k) { return entry.first < k; });
  return it != limits_.end() && it->first == key ? it->second : 0;
}

void MeshTransport::check_mtu_limits(bool now_anyway) {
  if (!on_limits_) return;
  const Instant now = clock_();
  if (!now_anyway && now - limits_checked_ < kLimitsCheckInterval) return;
  limits_checked_ = now;
  MtuLimits limits = paths_.proven_tunnel_limits(now);
  if (limits == limits_) return;
  limits_ = std::move(limits);
  on_limits_(limits_);
}

std::array<std::size_t, 3> MeshTransport::peers_by_path() const {
  std::array<std::size_t, 3> out{};
  const Instant now = clock_();
  for (const auto& [key, name] : names_) ++out[static_cast<std::size_t>(paths_.path(key, now).kind)];
  return out;
}

}  // namespace knit::agent
