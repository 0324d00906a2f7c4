// PathManager: what to send when — full probes, heartbeats, call-me-maybe, port prediction —
// under the rate bounds, and when to wake up next.
#include <algorithm>

#include "punch/path/manager.hpp"
#include "punch/path/peer.hpp"
#include "punch/path/select.hpp"

namespace knit::punch {

namespace {
// trusted() holds while now - last_pong <= kPathTrust: it ends one tick later.
constexpr Duration kTick = Duration(1);

void earliest(std::optional<Instant>& acc, std::optional<Instant> t) {
  if (t && (!acc || *t < *acc)) acc = t;
}
}  // namespace

TxId PathManager::new_tx() {
  TxId tx;
  rng_.fill(tx);
  return tx;
}

PathManager::NatGuess PathManager::nat_guess() const {
  if (local_.reflexive)
    return std::any_of(local_.local.begin(), local_.local.end(),
                       [&](const Endpoint& e) { return e.same_remote(*local_.reflexive); })
               ? NatGuess::none
               : NatGuess::behind;
  // STUN has not answered yet (a joining agent meets its peers first). A host with a public
  // interface address has no NAT: an opener from it must not go out, for with no router of
  // ours to cross it travels a hop further and reaches a peer's router next to ours (the lab's
  // public host is two hops from every site's WAN address: such an opener took the port of a
  // router without a WAN firewall, bench/punch_timing.sh). Only private or shared (100.64/10)
  // interface addresses mean a NAT.
  if (local_.local.empty()) return NatGuess::unknown;
  const bool any_public = std::any_of(local_.local.begin(), local_.local.end(), [](const Endpoint& e) {
    const IpAddress& a = e.address();
    const bool shared = a.is_v4() && a.bytes()[0] == 100 && (a.bytes()[1] & 0xc0) == 64;
    return !is_private_address(a) && !shared;
  });
  return any_public ? NatGuess::none : NatGuess::behind;
}

bool PathManager::opened_towards(const Peer& peer, NatGuess guess) const {
  if (guess == NatGuess::none) return true;  // nothing of ours to open
  if (guess == NatGuess::unknown) return false;  // we sent no opener
  return std::any_of(peer.candidates.begin(), peer.candidates.end(),
                     [](const Candidate& c) { return c.socket == kMainSocket && !c.lan; });
}

bool PathManager::holds_full_pings(Instant now, const Peer& peer, const Candidate& c) const {
  if (!my_hard() || peer.remote_welcomes_pings || c.socket != kMainSocket || c.lan ||
      c.kind == CandidateKind::portmapped || c.trusted(now))
    return false;
  if (c.last_heard && now - *c.last_heard <= kPathTrust) return false;  // its flow to us exists
  return relay_available_ || relay_expected_;  // without a relay nothing else could open the path
}

bool PathManager::my_hard() const { return (local_.mapping_varies || observed_varies_) && !local_.portmapped; }

void PathManager::service(Instant now, Peer& peer) {
  // Unanswered pings are forgotten; a pong after this is unexpected.
  std::erase_if(peer.pings, [&](const OutstandingPing& p) { return now - p.sent > kPingTimeout; });

  const bool was_direct = peer.reported.kind == PathKind::direct;
  reselect(now, peer);
  const bool active = peer.active(now);
  const bool direct = peer.direct(now);
  if (was_direct && !direct && active) {
    // The path in use stopped answering: traffic is on the relay now; look for a new path.
    peer.full_probe_at = now;
    peer.reprobe_backoff = kReprobeMin;
  }

  // Full probe: asked for by an event, or periodic while the peer is in use.
  bool periodic = false;
  bool due = peer.full_probe_at && now >= *peer.full_probe_at;
  if (!due && active && peer.last_full_probe) {
    const Duration every = direct ? kUpgradeInterval : peer.reprobe_backoff;
    periodic = due = now - *peer.last_full_probe >= every;
  }
  if (due) {
    if (peer.last_full_probe && now - *peer.last_full_probe < kMinFullProbeSpacing) {
      peer.full_probe_at = *peer.last_full_probe + kMinFullProbeSpacing;
    } else {
      full_probe(now, peer);
      if (periodic && !direct) peer.reprobe_backoff = std::min(peer.reprobe_backoff * 2, kReprobeMax);
    }
  }

  // The peer never answered our call-me-maybe: the full pings go anyway.
  if (peer.deferred_pings_at && now >= *peer.deferred_pings_at) send_deferred_pings(now, peer);
  // Our openers died inside our own NATs (on_time_exceeded): again, one hop further, while the
  // full pings still wait for them.
  if (peer.deferred_pings_at && peer.opener_ttl != 0 && peer.opener_ttl < opener_ttl_) {
    for (std::size_t i = 0; i < peer.candidates.size(); ++i) {
      const Candidate& c = peer.candidates[i];
      if (c.socket == kMainSocket && !c.lan && !c.trusted(now)) send_opener(now, peer, i);
    }
    peer.opener_ttl = opener_ttl_;
  }

  // Heartbeat on the chosen path while in use: keeps NAT mappings open and trust fresh.
  if (active && peer.direct(now)) {
    const Candidate& c = peer.candidates[*peer.best];
    if (!c.last_ping || now - *c.last_ping >= kHeartbeatInterval)
      send_ping(now, peer, *peer.best, SendPurpose::heartbeat);
  }

  service_pmtu(now, peer);

  if (peer.predict_at && now >= *peer.predict_at) {
    peer.predict_at.reset();
    maybe_start_prediction(now, peer);
  }
  advance_prediction(now, peer);

  // A probe socket won by prediction is given back once its path has been out of use a while.
  if (!peer.kept_sockets.empty()) {
    const bool in_use = peer.direct(now) && peer.candidates[*peer.best].socket != kMainSocket;
    if (in_use) {
      peer.kept_unused_since.reset();
    } else if (!peer.kept_unused_since) {
      peer.kept_unused_since = now;
    } else if (now - *peer.kept_unused_since >= kProbeSocketLinger) {
      for (SocketId s : peer.kept_sockets) close_socket(s);
      peer.kept_sockets.clear();
      peer.kept_unused_since.reset();
      std::erase_if(peer.candidates, [](const Candidate& c) { return c.socket != kMainSocket; });
      peer.best.reset();
      reselect(now, peer);
    }
  }

  peer.wake = peer_wake(now, peer);
  lower_deadline(peer.wake);
}

std::optional<Instant> PathManager::peer_wake(Instant now, const Peer& peer) const {
  std::optional<Instant> w;
  for (const OutstandingPing& p : peer.pings) earliest(w, p.sent + kPingTimeout + kTick);
  const bool active = peer.active(now);
  if (peer.direct(now)) {
    const Candidate& c = peer.candidates[*peer.best];
    earliest(w, *c.last_pong + kPathTrust + kTick);
    if (active) earliest(w, c.last_ping ? *c.last_ping + kHeartbeatInterval : now);
  }
  earliest(w, peer.full_probe_at);
  earliest(w, peer.deferred_pings_at);
  if (pmtu_enabled_ && peer.padded_pings && active && peer.direct(now))
    earliest(w, peer.pmtu.next_deadline(now));
  if (active && peer.last_full_probe)
    earliest(w, *peer.last_full_probe + (peer.direct(now) ? kUpgradeInterval : peer.reprobe_backoff));
  earliest(w, peer.predict_at);
  const Prediction& pr = peer.prediction;
  if (pr.role != Prediction::Role::none) {
    earliest(w, pr.ends);
    if (pr.spray) earliest(w, pr.spray->next_deadline());
    if (pr.round) earliest(w, pr.round->next_deadline());
  }
  if (peer.kept_unused_since) earliest(w, *peer.kept_unused_since + kProbeSocketLinger);
  return w;
}

void PathManager::full_probe(Instant now, Peer& peer) {
  // Every candidate, on the main socket or on a probe socket a prediction won.
  const auto pings = static_cast<std::uint32_t>(peer.candidates.size());
  // All candidates at once or not at all: a probe cut in half by the global bound would miss
  // the simultaneous open. Wait for room instead (never drop).
  const Instant room = global_bucket_.when_available(now, pings + 1);
  if (room > now) {
    peer.full_probe_at = room;
    ++stats_.sends_deferred;
    return;
  }
  peer.last_full_probe = now;
  peer.full_probe_at.reset();
  // Who sends first (manager.hpp): with the call-me-maybe on its way, public candidates get an
  // opener now and the full ping when the peer has opened its side.
  // A host without a NAT has nothing to open (and a TTL of 2 could reach a router 2 hops away);
  // it still lets the peer send first.
  const NatGuess guess = nat_guess();
  const bool behind_nat = guess == NatGuess::behind;
  // "opened": the openers below reach every public candidate we know of the peer (or we have
  // no NAT); a peer told so pings us at once. Knowing none, or not knowing whether we are
  // behind a NAT (no opener then), we have opened nothing.
  // A relay on its way (set_relay_expected) counts as a call-me-maybe sent: the peer may not know
  // us yet, so a full ping now could reach its router before its flow to us exists (seen in the
  // lab: a double-NAT agent's first pings, sent while the relay was still admitting it, took a
  // port-restricted router's port for good). Ours open; the pings follow the exchange.
  const bool cmm_sent = send_call_me_maybe(now, peer, opened_towards(peer, guess));
  // A call-me-maybe held back by its rate bound (a burst of candidate changes, call-me-maybes
  // answered and relay pongs spent it) changes nothing: the peer may not know us yet, so the
  // full pings still wait for its answer; ours goes when the bound allows (full_probe_at). Only a
  // mesh without any relay pings at full TTL at once.
  const bool relay = relay_available_ || relay_expected_;
  const bool open_first = cmm_sent || relay;
  const bool cmm_held = !cmm_sent && relay_available_ && peer.session.ready();
  bool deferred = false;
  for (std::size_t i = 0; i < peer.candidates.size(); ++i) {
    const Candidate& c = peer.candidates[i];
    if (open_first && c.socket == kMainSocket && !c.lan && !c.trusted(now)) {
      if (behind_nat) send_opener(now, peer, i);
      if (!holds_full_pings(now, peer, c)) deferred = true;  // a held one has no full ping to follow
    } else {
      send_ping(now, peer, i, SendPurpose::probe);
    }
  }
  // The safety net counts from the first deferral: a re-probe must not push it on and on (an
  // active peer is re-probed every 5..60 s, so it never fired while the peer stayed silent).
  if (deferred && !peer.deferred_pings_at) peer.deferred_pings_at = now + kOpenerFallback;
  if (cmm_held) peer.full_probe_at = peer.cmm_bucket.when_available(now);
  // Prediction needs the peer's facts; if they are known and no path turns up, try it.
  if (peer.remote_facts && !peer.predict_at && peer.prediction.role == Prediction::Role::none &&
      !peer.direct(now))
    peer.predict_at = now + kPredictStartDelay;
}

bool PathManager::send_disco_udp(Instant now, Peer& peer, SocketId socket, const Endpoint& to,
                                 const DiscoMessage& message, SendPurpose purpose,
                                 bool bypass_global) {
  if (!peer.session.ready()) return false;
  if (!bypass_global && !global_bucket_.take(now)) {
    ++stats_.sends_suppressed;
    ++stats_.drops[static_cast<std::size_t>(DiscoError::rate_limited)];
    return false;
  }
  PathAction a;
  a.kind = ActionKind::send_udp;
  a.purpose = purpose;
  a.socket = socket;
  a.endpoint = to;
  a.peer = peer.node_key;
  a.bytes = peer.session.seal(message, counter_++, rng_);
  actions_.push_back(std::move(a));
  return true;
}

bool PathManager::send_ping(Instant now, Peer& peer, std::size_t index, SendPurpose purpose) {
  if (!peer.session.ready()) return false;
  if (!peer.ping_bucket.take(now)) {
    ++stats_.sends_suppressed;
    return false;
  }
  Candidate& c = peer.candidates[index];
  DiscoMessage m;
  m.type = DiscoType::ping;
  m.ping.tx_id = new_tx();
  m.ping.node_key = self_node_key_;
  if (!send_disco_udp(now, peer, c.socket, c.endpoint, m, purpose, false)) return false;
  c.last_ping = now;
  if (peer.pings.size() >= kMaxOutstandingPings) peer.pings.erase(peer.pings.begin());
  peer.pings.push_back(OutstandingPing{m.ping.tx_id, c.socket, c.endpoint, now});
  ++stats_.pings_sent;
  return true;
}

bool PathManager::send_opener(Instant now, Peer& peer, std::size_t index) {
  Candidate& c = peer.candidates[index];
  DiscoMessage m;
  m.type = DiscoType::ping;
  m.ping.tx_id = new_tx();
  m.ping.node_key = self_node_key_;
  if (!send_disco_udp(now, peer, c.socket, c.endpoint, m, SendPurpose::opener, false)) return false;
  actions_.back().ttl = opener_ttl_;
  peer.opener_ttl = opener_ttl_;
  // If a path is short enough for it to arrive after all, its pong is a proof like any other.
  // c.last_ping stays: the full ping must not wait for kPingBackSpacing.
  if (peer.pings.size() >= kMaxOutstandingPings) peer.pings.erase(peer.pings.begin());
  peer.pings.push_back(OutstandingPing{m.ping.tx_id, c.socket, c.endpoint, now, opener_ttl_});
  ++stats_.openers_sent;
  return true;
}

void PathManager::send_deferred_pings(Instant now, Peer& peer) {
  if (!peer.deferred_pings_at) return;
  peer.deferred_pings_at.reset();
  for (std::size_t i = 0; i < peer.candidates.size(); ++i) {
    const Candidate& c = peer.candidates[i];
    if (c.socket != kMainSocket || c.lan || c.trusted(now) || holds_full_pings(now, peer, c)) continue;
    if (c.last_ping && now - *c.last_ping < kPingBackSpacing) continue;
    send_ping(now, peer, i, SendPurpose::probe);
  }
}

bool PathManager::send_call_me_maybe(Instant now, Peer& peer, bool opened) {
  if (!relay_available_ || !peer.session.ready()) return false;
  if (!peer.cmm_bucket.take(now)) {
    ++stats_.sends_suppressed;
    return false;
  }
  DiscoMessage m;
  m.type = DiscoType::call_me_maybe;
  CallMeMaybe& c = m.call_me_maybe;
  c.mapping_varies = my_hard();
  c.active = peer.active(now);
  c.opened = opened;
  c.full_pings_welcome = nat_guess() == NatGuess::none || local_.open_filter;
  c.epoch = local_epoch_;
  const auto add = [&](CandidateKind kind, const Endpoint& e) {
    if (c.endpoints.size() < kMaxCallMeMaybeEndpoints && !e.empty())
      c.endpoints.push_back(CandidateEndpoint{kind, Endpoint(e.address(), e.port())});
  };
  if (local_.portmapped) add(CandidateKind::portmapped, *local_.portmapped);
  if (local_.reflexive) add(CandidateKind::reflexive, *local_.reflexive);
  for (const Endpoint& e : local_.local) add(CandidateKind::local, e);
  PathAction a;
  a.kind = ActionKind::send_relay;
  a.purpose = SendPurpose::call_me_maybe;
  a.peer = peer.node_key;
  a.bytes = peer.session.seal(m, counter_++, rng_);
  actions_.push_back(std::move(a));
  peer.last_cmm_sent = now;
  peer.cmm_epoch_sent = local_epoch_;
  ++stats_.call_me_maybes_sent;
  return true;
}

void PathManager::maybe_start_prediction(Instant now, Peer& peer) {
  if (peer.direct(now) || !peer.remote_facts || peer.prediction.role != Prediction::Role::none)
    return;
  const bool hard = my_hard();
  // Easy <-> easy needs no prediction; hard <-> hard would need ~65k probes a side: relay.
  if (hard == peer.remote_hard) return;
  // 256 sockets or 2048 probes only for a pair that carries traffic.
  if (!peer.active(now) && !peer.remote_active) return;
  if (peer.predict_retry_at && now < *peer.predict_retry_at) {
    peer.predict_at = peer.predict_retry_at;
    return;
  }
  if ((hard && predictions_hard_ >= kMaxPredictionsHard) ||
      (!hard && predictions_easy_ >= kMaxPredictionsEasy)) {
    peer.predict_at = now + kPredictStartDelay;  // all slots taken: wait for our turn
    return;
  }
  // The easy side aims at the hard side's public address; the hard side at the easy side's
  // public endpoint (a port mapping if it has one, else what STUN saw).
  std::optional<Endpoint> aim;
  for (CandidateKind kind : {CandidateKind::portmapped, CandidateKind::reflexive}) {
    for (const CandidateEndpoint& e : peer.remote_candidates)
      if (!aim && e.kind == kind && e.endpoint.address().is_v4()) aim = e.endpoint;
  }
  if (!aim) return;
  Prediction& pr = peer.prediction;
  pr = Prediction{};
  pr.started = now;
  pr.tx = new_tx();
  if (hard) {
    // A socket an earlier prediction won no longer carries a path (or we would not be here):
    // give it back before taking 256 new ones.
    for (SocketId s : peer.kept_sockets) close_socket(s);
    peer.kept_sockets.clear();
    peer.kept_unused_since.reset();
    std::erase_if(peer.candidates, [](const Candidate& c) { return c.socket != kMainSocket; });
    std::erase_if(peer.pings, [](const OutstandingPing& p) { return p.socket != kMainSocket; });
    peer.best.reset();
    pr.role = Prediction::Role::hard;
    pr.easy_endpoint = *aim;
    pr.round.emplace(now);
    pr.ends = now + kProbeSocketLifetime;
    for (std::size_t i = 0; i < kProbeSockets; ++i) {
      PathAction a;
      a.kind = ActionKind::open_probe_socket;
      a.socket = next_socket_++;
      a.peer = peer.node_key;
      pr.sockets.push_back(a.socket);
      actions_.push_back(std::move(a));
    }
    pr.round_sent.assign(kProbeSockets, Instant::min());
    open_probe_sockets_ += kProbeSockets;
  } else {
    pr.role = Prediction::Role::easy;
    pr.target = aim->address();
    pr.spray.emplace(rng_, now + kSprayStartDelay);
    pr.ends = now + kSprayStartDelay +
              std::chrono::duration_cast<Duration>(std::chrono::seconds(1)) * kSprayMaxProbes /
                  kSprayRate +
              kPingTimeout;
  }
  ++(hard ? predictions_hard_ : predictions_easy_);
  ++stats_.predictions_started;
}

void PathManager::advance_prediction(Instant now, Peer& peer) {
  Prediction& pr = peer.prediction;
  if (pr.role == Prediction::Role::none) return;
  if (now >= pr.ends) {
    // No hit: try again later, less and less often.
    end_prediction(now, peer, std::nullopt);
    peer.predict_retry_at = now + peer.predict_backoff;
    peer.predict_backoff = std::min(peer.predict_backoff * 2, kPredictRetryMax);
    return;
  }
  if (peer.direct(now) && peer.candidates[*peer.best].socket == kMainSocket &&
      pr.role == Prediction::Role::hard) {
    end_prediction(now, peer, std::nullopt);  // plain probing found a path after all
    return;
  }
  DiscoMessage m;
  m.type = DiscoType::ping;
  m.ping.tx_id = pr.tx;
  m.ping.node_key = self_node_key_;
  if (pr.spray) {
    if (global_bucket_.when_available(now) > now) return;
    if (auto port = pr.spray->next(now)) {
      if (send_disco_udp(now, peer, kMainSocket, Endpoint(pr.target, *port), m,
                         SendPurpose::spray, false))
        ++stats_.spray_probes_sent;
    }
  }
  if (pr.round) {
    if (global_bucket_.when_available(now) > now) return;
    if (auto k = pr.round->next(now)) {
      if (send_disco_udp(now, peer, pr.sockets[*k], pr.easy_endpoint, m, SendPurpose::socket_round,
                         false)) {
        // Opens our mapping and filter for the easy endpoint and goes no further: reaching an
        // easy side behind a router without a WAN firewall, it would take (its port, this
        // mapping) there, and the spray ping that finds this mapping would leave from another
        // port (manager.hpp, who sends first). The easy side's spray finds it instead.
        actions_.back().ttl = opener_ttl_;
        pr.round_sent[*k] = now;
        ++stats_.socket_round_pings_sent;
      }
    }
  }
}

void PathManager::end_prediction(Instant, Peer& peer, std::optional<SocketId> keep) {
  Prediction& pr = peer.prediction;
  if (pr.role == Prediction::Role::none) return;
  for (SocketId s : pr.sockets)
    if (!keep || s != *keep) close_socket(s);
  if (keep) {
    peer.kept_sockets.push_back(*keep);
    peer.kept_unused_since.reset();
  }
  // Candidates on sockets now closed go; the chosen one is found again by its key.
  std::optional<std::pair<SocketId, Endpoint>> best_key;
  if (peer.best) best_key.emplace(peer.candidates[*peer.best].socket, peer.candidates[*peer.best].endpoint);
  std::erase_if(peer.candidates, [&](const Candidate& c) {
    return c.socket != kMainSocket &&
           std::find(peer.kept_sockets.begin(), peer.kept_sockets.end(), c.socket) ==
               peer.kept_sockets.end();
  });
  std::erase_if(peer.pings, [&](const OutstandingPing& p) {
    return p.socket != kMainSocket && std::find(peer.kept_sockets.begin(), peer.kept_sockets.end(),
                                                p.socket) == peer.kept_sockets.end();
  });
  peer.best = best_key ? peer.find(best_key->first, best_key->second) : std::nullopt;
  std::size_t& running = pr.role == Prediction::Role::hard ? predictions_hard_ : predictions_easy_;
  if (running > 0) --running;
  pr = Prediction{};
}

void PathManager::close_socket(SocketId socket) {
  PathAction a;
  a.kind = ActionKind::close_probe_socket;
  a.socket = socket;
  actions_.push_back(std::move(a));
  if (open_probe_sockets_ > 0) --open_probe_sockets_;
}

// Path MTU search on the chosen direct path while the peer is in use (pmtu.hpp). A new chosen
// path starts the search over from the base; the result is kept for a fallback to the relay.
void PathManager::service_pmtu(Instant now, Peer& peer) {
  std::erase_if(peer.pmtu_probes, [&](const PmtuProbe& p) { return now - p.sent > kPingTimeout; });
  if (!pmtu_enabled_ || !peer.padded_pings || !peer.active(now) || !peer.direct(now)) return;
  const Candidate& c = peer.candidates[*peer.best];
  const bool v6 = c.endpoint.address().is_v6();
  if (!peer.pmtu_path || !peer.pmtu_path->matches(c.socket, c.endpoint)) {
    peer.pmtu_path = c;
    peer.pmtu_probes.clear();
    peer.pmtu.start(now, kPmtuBase, path_mtu_for_tunnel(tunnel_mtu_, v6));
  }
  peer.last_direct_tunnel_mtu = tunnel_mtu_for_path(peer.pmtu.mtu(), v6, tunnel_mtu_);
  const std::optional<std::size_t> size = peer.pmtu.poll(now);
  if (!size) return;
  // A lost send counts as a lost probe (sent() either way), so a rate bound cannot spin us.
  peer.pmtu.sent(now, *size);
  const std::size_t headers = v6 ? kUdpIpHeadersV6 : kUdpIpHeadersV4;
  if (*size < headers + kDiscoPingSize) return;
  DiscoMessage m;
  m.type = DiscoType::ping;
  m.ping.tx_id = new_tx();
  m.ping.node_key = self_node_key_;
  m.ping.padding = *size - headers - kDiscoPingSize;
  if (!send_disco_udp(now, peer, c.socket, c.endpoint, m, SendPurpose::pmtu_probe, false)) return;
  if (peer.pmtu_probes.size() >= kMaxPmtuProbes) peer.pmtu_probes.erase(peer.pmtu_probes.begin());
  peer.pmtu_probes.push_back(PmtuProbe{m.ping.tx_id, *size, now});
  ++stats_.pmtu_probes_sent;
}

}  // namespace knit::punch
