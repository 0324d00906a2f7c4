// PathManager: events from outside (peers, candidates, network changes) and the path query.
// What comes in (disco messages, ICMP about openers) is handled in receive.cpp; what gets sent
// when lives in probe.cpp.
#include "punch/path/manager.hpp"

#include <algorithm>
#include <cstring>

#include "punch/path/peer.hpp"
#include "punch/path/select.hpp"
#include "wg/crypto.hpp"

namespace knit::punch {

const char* to_string(PathKind kind) {
  switch (kind) {
    case PathKind::none: return "none";
    case PathKind::relay: return "relay";
    case PathKind::direct: return "direct";
  }
  return "?";
}

const char* to_string(SendPurpose purpose) {
  switch (purpose) {
    case SendPurpose::none: return "none";
    case SendPurpose::probe: return "probe";
    case SendPurpose::heartbeat: return "heartbeat";
    case SendPurpose::ping_back: return "ping-back";
    case SendPurpose::pong: return "pong";
    case SendPurpose::call_me_maybe: return "call-me-maybe";
    case SendPurpose::spray: return "spray";
    case SendPurpose::socket_round: return "socket-round";
    case SendPurpose::opener: return "opener";
    case SendPurpose::pmtu_probe: return "pmtu-probe";
    case SendPurpose::liveness: return "liveness";
  }
  return "?";
}

namespace {

Endpoint remote_only(const Endpoint& e) { return Endpoint(e.address(), e.port()); }

PathInfo compute_path(const PathManager::Peer& peer, Instant now, bool relay_available) {
  PathInfo info;
  if (peer.direct(now)) {
    const Candidate& c = peer.candidates[*peer.best];
    info.kind = PathKind::direct;
    info.socket = c.socket;
    info.endpoint = c.endpoint;
    info.rtt = c.rtt;
    info.lan = c.lan;
  } else if (relay_available) {
    info.kind = PathKind::relay;
  }
  return info;
}

bool same_path(const PathInfo& a, const PathInfo& b) {
  return a.kind == b.kind && a.socket == b.socket && a.endpoint.same_remote(b.endpoint);
}

}  // namespace

// Adds (or finds) a candidate; evicts the stalest unproven one the coordinator did not publish
// when the table is full. nullopt: full of candidates worth keeping.
static std::optional<std::size_t> add_candidate(PathManager::Peer& peer, SocketId socket,
                                                const Endpoint& endpoint, CandidateKind kind,
                                                Instant now) {
  if (auto i = peer.find(socket, endpoint)) return i;
  if (peer.candidates.size() >= kMaxCandidates) {
    std::optional<std::size_t> victim;
    for (std::size_t i = 0; i < peer.candidates.size(); ++i) {
      const Candidate& c = peer.candidates[i];
      if (c.from_coordinator || c.trusted(now) || (peer.best && *peer.best == i)) continue;
      if (!victim || c.last_heard.value_or(Instant::min()) <
                         peer.candidates[*victim].last_heard.value_or(Instant::min()))
        victim = i;
    }
    if (!victim) return std::nullopt;
    peer.candidates.erase(peer.candidates.begin() + static_cast<std::ptrdiff_t>(*victim));
    if (peer.best && *peer.best > *victim) --*peer.best;
  }
  Candidate c;
  c.socket = socket;
  c.endpoint = endpoint;
  c.kind = kind;
  c.lan = is_private_address(endpoint.address());
  peer.candidates.push_back(c);
  return peer.candidates.size() - 1;
}

bool PathManager::tunnelled(const Endpoint& e) const {
  const IpAddress& address = e.address();
  for (const IpPrefix& prefix : tunnelled_) {
    if (prefix.address.is_v4() != address.is_v4()) continue;
    const std::uint8_t* a = prefix.address.bytes();
    const std::uint8_t* b = address.bytes();
    unsigned bits = prefix.length;
    bool inside = true;
    for (unsigned i = 0; bits > 0 && inside; ++i) {
      const unsigned take = std::min(bits, 8u);
      const auto mask = static_cast<std::uint8_t>(0xff << (8 - take));
      inside = (a[i] & mask) == (b[i] & mask);
      bits -= take;
    }
    if (inside) return true;
  }
  return false;
}

void PathManager::set_tunnelled_prefixes(Instant now, const std::vector<IpPrefix>& prefixes) {
  if (prefixes == tunnelled_) return;
  tunnelled_ = prefixes;
  for (auto& [key, peer] : peers_) {
    const std::size_t before = peer->candidates.size();
    std::erase_if(peer->candidates, [&](const Candidate& c) { return tunnelled(c.endpoint); });
    const bool removed = peer->candidates.size() != before;
    if (removed) {
      stats_.candidates_tunnelled += before - peer->candidates.size();
      peer->best.reset();
      std::erase_if(peer->pings, [&](const OutstandingPing& p) { return tunnelled(p.to); });
      if (peer->pmtu_path && tunnelled(peer->pmtu_path->endpoint)) {
        peer->pmtu_path.reset();
        peer->pmtu.stop();
        peer->pmtu_probes.clear();
      }
    }
    // What the coordinator and the peer's call-me-maybe listed and a route had hidden is a
    // candidate again once the route is gone.
    bool added = false;
    for (const Endpoint& e : peer->coordinator_endpoints) {
      if (tunnelled(e) || peer->find(kMainSocket, e)) continue;
      if (auto i = add_candidate(*peer, kMainSocket, e, CandidateKind::reflexive, now)) {
        peer->candidates[*i].from_coordinator = true;
        added = true;
      }
    }
    for (const CandidateEndpoint& e : peer->remote_candidates) {
      if (e.endpoint.port() == 0 || e.endpoint.address().is_unspecified()) continue;
      if (tunnelled(e.endpoint) || peer->find(kMainSocket, e.endpoint)) continue;
      if (auto i = add_candidate(*peer, kMainSocket, e.endpoint, e.kind, now)) {
        peer->candidates[*i].from_call_me_maybe = true;
        added = true;
      }
    }
    if (!removed && !added) continue;
    if (added) {
      peer->full_probe_at = now;
      peer->reprobe_backoff = kReprobeMin;
    }
    reselect(now, *peer);
    service(now, *peer);
  }
}

// add_candidate, unless the endpoint is inside a tunnelled prefix (set_tunnelled_prefixes).
std::optional<std::size_t> PathManager::add_usable_candidate(Peer& peer, SocketId socket, const Endpoint& endpoint,
                                                             CandidateKind kind, Instant now) {
  if (tunnelled(endpoint)) {
    ++stats_.candidates_tunnelled;
    return std::nullopt;
  }
  return add_candidate(peer, socket, endpoint, kind, now);
}

PathManager::PathManager(const wg::PrivateKey& disco_private, const NodeKey& self_node_key,
                         Random& rng, std::uint64_t initial_counter)
    : disco_private_(disco_private),
      disco_public_(wg::crypto::public_key_of(disco_private)),
      self_node_key_(self_node_key),
      rng_(rng),
      counter_(initial_counter),
      // The epoch, like the counter, must keep growing across restarts (a peer drops a
      // call-me-maybe older than the last one it saw): start from the same wall-clock seed.
      local_epoch_(initial_counter),
      global_bucket_(kGlobalDiscoBurst, kGlobalDiscoRate) {}

PathManager::~PathManager() = default;

PathManager::Peer* PathManager::find(const NodeKey& key) {
  auto it = peers_.find(key);
  return it == peers_.end() ? nullptr : it->second.get();
}

PathManager::Peer* PathManager::find_by_disco(const DiscoKey& key) {
  auto it = by_disco_.find(key);
  return it == by_disco_.end() ? nullptr : find(it->second);
}

void PathManager::lower_deadline(std::optional<Instant> t) {
  if (t && (!next_deadline_ || *t < *next_deadline_)) next_deadline_ = t;
}

std::vector<PathAction> PathManager::take_actions() {
  std::vector<PathAction> out;
  out.swap(actions_);
  return out;
}

void PathManager::set_relay_available(Instant now, bool available) {
  if (available == relay_available_) return;
  relay_available_ = available;
  for (auto& [key, peer] : peers_) {
    // With a relay, call-me-maybe can reach the peer now: probe at once (the probes sent while
    // it was not up were openers only, waiting for this exchange: no spacing holds it back).
    if (available) {
      peer->full_probe_at = now;
      peer->last_full_probe.reset();
    }
    report_path(now, *peer);
    service(now, *peer);
  }
}

void PathManager::set_relay_expected(Instant, bool expected) { relay_expected_ = expected; }

void PathManager::set_peer(Instant now, const NodeKey& node_key, const DiscoKey& disco_key,
                           const std::vector<Endpoint>& endpoints) {
  Peer* peer = find(node_key);
  bool probe = false;
  if (!peer) {
    auto fresh = std::make_unique<Peer>();
    fresh->node_key = node_key;
    fresh->reported = PathInfo{};
    peer = fresh.get();
    peers_.emplace(node_key, std::move(fresh));
    probe = true;
  }
  if (peer->disco_key != disco_key || !peer->session.ready()) {
    // A new disco key means the peer restarted with new state: nothing it proved still holds.
    by_disco_.erase(peer->disco_key);
    peer->disco_key = disco_key;
    by_disco_[disco_key] = node_key;
    // A low-order key leaves the session unusable: the peer is reachable through the relay only.
    (void)peer->session.init(disco_private_, disco_public_, disco_key);
    for (Candidate& c : peer->candidates) c.last_pong.reset();
    peer->pings.clear();
    peer->relay_pings.clear();
    peer->remote_facts = false;
    peer->remote_epoch = 0;
    end_prediction(now, *peer, std::nullopt);
    probe = true;
  }
  // Coordinator endpoints: add the new ones, unmark the ones no longer published.
  std::vector<Endpoint> published;
  for (const Endpoint& e : endpoints) {
    if (published.size() >= kMaxCandidates / 2) break;  // leave room for call-me-maybe and observed
    if (e.port() == 0 || e.address().is_unspecified()) continue;
    published.push_back(remote_only(e));
  }
  for (Candidate& c : peer->candidates) {
    if (c.socket != kMainSocket) continue;
    c.from_coordinator = std::any_of(published.begin(), published.end(),
                                     [&](const Endpoint& e) { return c.endpoint.same_remote(e); });
  }
  for (const Endpoint& e : published) {
    if (peer->find(kMainSocket, e)) continue;
    if (auto i = add_usable_candidate(*peer, kMainSocket, e, CandidateKind::reflexive, now)) {
      peer->candidates[*i].from_coordinator = true;
      probe = true;
    } else if (!tunnelled(e)) {
      ++stats_.candidates_refused;
    }
  }
  peer->coordinator_endpoints = published;
  if (probe) {
    peer->full_probe_at = now;
    peer->reprobe_backoff = kReprobeMin;
  }
  report_path(now, *peer);
  service(now, *peer);
}

void PathManager::remove_peer(Instant now, const NodeKey& node_key) {
  Peer* peer = find(node_key);
  if (!peer) return;
  end_prediction(now, *peer, std::nullopt);
  for (SocketId s : peer->kept_sockets) close_socket(s);
  by_disco_.erase(peer->disco_key);
  peers_.erase(node_key);
}

void PathManager::set_local_candidates(Instant now, const LocalCandidates& candidates) {
  LocalCandidates c = candidates;
  if (c.local.size() > kMaxLocalCandidates) c.local.resize(kMaxLocalCandidates);
  if (c == local_) return;
  local_ = c;
  ++local_epoch_;
  evidence_.set_stun(c.reflexive);
  observed_varies_ = evidence_.varies(now);
  remapped_ = evidence_.remapped(now);
  // Every peer must hear our new candidates, and may now reach us on paths it could not.
  for (auto& [key, peer] : peers_) {
    // The call-me-maybe goes now even if a full probe just went out (after network_changed,
    // with the old candidates); its own bucket bounds it.
    send_call_me_maybe(now, *peer);
    if (!peer->full_probe_at) peer->full_probe_at = now;
    peer->reprobe_backoff = kReprobeMin;
    service(now, *peer);
  }
}

void PathManager::network_changed(Instant now) {
  ++local_epoch_;
  opener_ttl_ = kOpenerTtl;  // other NATs, perhaps fewer
  opener_ttl_raised_at_.reset();
  opener_ttl_offender_.reset();
  // Another network, another NAT: what peers saw of the old one says nothing.
  evidence_.clear();
  evidence_.set_stun(local_.reflexive);
  observed_varies_ = false;
  remapped_.reset();
  for (auto& [key, peer] : peers_) {
    end_prediction(now, *peer, std::nullopt);
    for (SocketId s : peer->kept_sockets) close_socket(s);
    peer->kept_sockets.clear();
    // Our address may have changed under every path: none is trusted until proven again.
    for (Candidate& c : peer->candidates) {
      c.last_pong.reset();
      c.last_ping.reset();
    }
    peer->candidates.erase(std::remove_if(peer->candidates.begin(), peer->candidates.end(),
                                          [](const Candidate& c) { return c.socket != kMainSocket; }),
                           peer->candidates.end());
    peer->best.reset();
    peer->pings.clear();
    peer->pmtu_path.reset();  // whatever path comes next is searched from the base
    peer->pmtu_probes.clear();
    peer->last_full_probe.reset();  // no spacing: probe at once
    peer->full_probe_at = now;
    peer->reprobe_backoff = kReprobeMin;
    peer->predict_retry_at.reset();
    peer->predict_backoff = kPredictRetryMin;
    report_path(now, *peer);
    service(now, *peer);
  }
}

void PathManager::note_data_sent(Instant now, const NodeKey& node_key) {
  if (Peer* peer = find(node_key)) note_data_sent(now, *peer);
}

std::optional<PathInfo> PathManager::route(Instant now, const NodeKey& node_key) {
  Peer* peer = find(node_key);
  if (!peer) return std::nullopt;
  note_data_sent(now, *peer);
  return compute_path(*peer, now, relay_available_);
}

void PathManager::note_data_sent(Instant now, Peer& peer) {
  const bool was_active = peer.active(now);
  peer.last_data = now;
  // The common, cheap case: an active peer's schedule (heartbeats, re-probes with backoff) is
  // already running.
  if (was_active) return;
  // Traffic resumes: without a trusted direct path, look for one now (spacing permitting).
  if (!peer.direct(now) && !peer.full_probe_at) peer.full_probe_at = now;
  service(now, peer);
}

void PathManager::on_timers(Instant now) {
  next_deadline_.reset();
  for (auto& [key, peer] : peers_) service(now, *peer);
}

bool PathManager::ping_peer(Instant now, const NodeKey& node_key) {
  Peer* peer = find(node_key);
  if (!peer || !peer->session.ready()) return false;
  std::erase_if(peer->relay_pings, [&](const OutstandingPing& p) { return now - p.sent > kPingTimeout; });
  bool sent = false;
  if (peer->direct(now)) {
    sent = send_ping(now, *peer, *peer->best, SendPurpose::liveness);
  } else if (relay_available_) {
    // The relay path: the same per-peer bound as call-me-maybe (a relay never sees a flood).
    if (!peer->cmm_bucket.take(now)) {
      ++stats_.sends_suppressed;
      return false;
    }
    DiscoMessage m;
    m.type = DiscoType::ping;
    m.ping.tx_id = new_tx();
    m.ping.node_key = self_node_key_;
    PathAction a;
    a.kind = ActionKind::send_relay;
    a.purpose = SendPurpose::liveness;
    a.peer = peer->node_key;
    a.bytes = peer->session.seal(m, counter_++, rng_);
    actions_.push_back(std::move(a));
    if (peer->relay_pings.size() >= kMaxRelayPings) peer->relay_pings.erase(peer->relay_pings.begin());
    peer->relay_pings.push_back(OutstandingPing{m.ping.tx_id, kMainSocket, Endpoint{}, now});
    ++stats_.pings_sent;
    sent = true;
  }
  if (sent) ++stats_.liveness_pings_sent;
  return sent;
}

std::optional<Instant> PathManager::last_heard(const NodeKey& node_key) const {
  auto it = peers_.find(node_key);
  return it == peers_.end() ? std::nullopt : it->second->last_heard;
}

PathInfo PathManager::path(const NodeKey& node_key, Instant now) const {
  auto it = peers_.find(node_key);
  if (it == peers_.end()) return PathInfo{};
  return compute_path(*it->second, now, relay_available_);
}

std::vector<PeerPathStatus> PathManager::status(Instant now) const {
  std::vector<PeerPathStatus> out;
  for (const auto& [key, peer] : peers_) {
    PeerPathStatus s;
    s.node_key = key;
    s.path = compute_path(*peer, now, relay_available_);
    s.candidates = peer->candidates.size();
    s.active = peer->active(now);
    s.predicting = peer->prediction.role != Prediction::Role::none;
    s.tunnel_mtu = peer_tunnel_mtu(*peer, now);
    if (peer->pmtu_path && peer->direct(now) && peer->pmtu.state() != PmtuSearch::State::idle)
      s.path_mtu = peer->pmtu.mtu();
    out.push_back(s);
  }
  return out;
}

void PathManager::reselect(Instant now, Peer& peer) {
  std::array<PathChoiceInput, kMaxCandidates> in{};
  const std::size_t n = std::min(peer.candidates.size(), kMaxCandidates);
  for (std::size_t i = 0; i < n; ++i) {
    const Candidate& c = peer.candidates[i];
    in[i] = PathChoiceInput{c.trusted(now), c.rtt, c.lan};
  }
  const bool had = peer.direct(now);
  const std::optional<std::size_t> before = peer.best;
  peer.best = choose_path(std::span<const PathChoiceInput>(in.data(), n), peer.best);
  if (had && peer.best && before && *peer.best != *before) ++stats_.path_switches;
  report_path(now, peer);
}

void PathManager::report_path(Instant now, Peer& peer) {
  const PathInfo info = compute_path(peer, now, relay_available_);
  if (same_path(info, peer.reported)) {
    peer.reported.rtt = info.rtt;
    return;
  }
  if (peer.reported.kind == PathKind::direct && info.kind != PathKind::direct)
    ++stats_.fallbacks_to_relay;
  peer.reported = info;
  PathAction a;
  a.kind = ActionKind::path_changed;
  a.peer = peer.node_key;
  a.socket = info.socket;
  a.endpoint = info.endpoint;
  actions_.push_back(std::move(a));
}

// ---------------------------------------------------------------- path MTU

void PathManager::set_pmtu(bool enabled, std::size_t tunnel_mtu) {
  pmtu_enabled_ = enabled;
  tunnel_mtu_ = tunnel_mtu;
  for (auto& [key, peer] : peers_) {
    peer->pmtu_path.reset();
    peer->pmtu.stop();
    peer->pmtu_probes.clear();
    peer->last_direct_tunnel_mtu.reset();
  }
}

bool PathManager::on_too_big(Instant now, const Endpoint& to, std::size_t mtu) {
  bool matched = false, changed = false;
  if (pmtu_enabled_) {
    for (auto& [key, peer] : peers_) {
      if (!peer->pmtu_path || peer->pmtu.state() == PmtuSearch::State::idle) continue;
      if (peer->pmtu_path->endpoint.address() != to.address()) continue;
      matched = true;
      if (!peer->pmtu.note_too_big(now, mtu)) continue;
      changed = true;
      peer->wake = now;  // the smaller probe now, not when the lost one would time out
      lower_deadline(now);
    }
  }
  ++(matched ? stats_.icmp_too_big_used : stats_.icmp_too_big_unknown);
  return changed;
}

std::vector<std::pair<NodeKey, std::size_t>> PathManager::proven_tunnel_limits(Instant now) const {
  std::vector<std::pair<NodeKey, std::size_t>> out;
  if (!pmtu_enabled_) return out;
  for (const auto& [key, peer] : peers_) {
    if (!peer->padded_pings || !peer->direct(now) || !peer->pmtu_path) continue;
    if (peer->pmtu.state() == PmtuSearch::State::idle || peer->pmtu.ceiling() >= peer->pmtu.max()) continue;
    const Candidate& c = peer->candidates[*peer->best];
    if (!peer->pmtu_path->matches(c.socket, c.endpoint)) continue;
    const std::size_t mtu = tunnel_mtu_for_path(peer->pmtu.mtu(), c.endpoint.address().is_v6(), tunnel_mtu_);
    if (mtu < tunnel_mtu_) out.emplace_back(key, mtu);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::size_t PathManager::peer_tunnel_mtu(const Peer& peer, Instant now) const {
  if (!pmtu_enabled_ || !peer.padded_pings) return 0;
  if (peer.direct(now)) {
    const Candidate& c = peer.candidates[*peer.best];
    const bool v6 = c.endpoint.address().is_v6();
    // The search's result on this path; the base on a path not searched yet (a quiet peer's
    // first SYN comes before the search starts: the base is what is safe).
    const bool searched = peer.pmtu_path && peer.pmtu_path->matches(c.socket, c.endpoint) &&
                          peer.pmtu.state() != PmtuSearch::State::idle;
    return tunnel_mtu_for_path(searched ? peer.pmtu.mtu() : kPmtuBase, v6, tunnel_mtu_);
  }
  return peer.last_direct_tunnel_mtu.value_or(0);
}

std::size_t PathManager::tunnel_mtu_of(const NodeKey& node_key, Instant now) const {
  const auto it = peers_.find(node_key);
  return it == peers_.end() ? 0 : peer_tunnel_mtu(*it->second, now);
}

}  // namespace knit::punch
