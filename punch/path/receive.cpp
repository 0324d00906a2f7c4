// PathManager: what comes in — disco pings, pongs and call-me-maybe (through any socket or the
// relay), the observed addresses pongs carry, and ICMP "time exceeded" about our openers — and
// what each changes. Events from outside and the path query are in manager.cpp; what gets sent
// when is in probe.cpp.
#include <algorithm>

#include "punch/path/manager.hpp"
#include "punch/path/peer.hpp"
#include "punch/path/select.hpp"

namespace knit::punch {

namespace {

Endpoint remote_only(const Endpoint& e) { return Endpoint(e.address(), e.port()); }

}  // namespace

DiscoError PathManager::handle_disco(Instant now, const DiscoSource& source, ByteSpan packet) {
  const auto count = [this](DiscoError e) {
    ++stats_.drops[static_cast<std::size_t>(e)];
    return e;
  };
  const std::optional<DiscoKey> sender = disco_sender(packet);
  if (!sender) return count(looks_like_disco(packet) ? DiscoError::truncated : DiscoError::not_disco);
  // Strangers cost a hash lookup, never an X25519 operation.
  Peer* peer = find_by_disco(*sender);
  if (!peer) return count(DiscoError::unknown_sender);
  DiscoMessage message;
  const DiscoError opened = peer->session.open(packet, message);
  if (opened != DiscoError::none) return count(opened);
  if (source.via == DiscoSource::Via::relay && source.relay_from != peer->node_key)
    return count(DiscoError::node_key_mismatch);
  DiscoError result = DiscoError::none;
  switch (message.type) {
    case DiscoType::ping:
      if (message.ping.node_key != peer->node_key) return count(DiscoError::node_key_mismatch);
      handle_ping(now, *peer, source, message.ping);
      break;
    case DiscoType::pong:
      result = handle_pong(now, *peer, source, message.pong);
      break;
    case DiscoType::call_me_maybe:
      result = handle_call_me_maybe(now, *peer, message.call_me_maybe);
      break;
  }
  if (result != DiscoError::none) return count(result);
  peer->last_heard = now;
  ++stats_.received;
  service(now, *peer);
  return DiscoError::none;
}

void PathManager::handle_ping(Instant now, Peer& peer, const DiscoSource& source,
                              const DiscoPing& ping) {
  DiscoMessage pong;
  pong.type = DiscoType::pong;
  pong.pong.tx_id = ping.tx_id;
  pong.pong.padded_pings = true;  // we answer padded pings (path MTU probes)
  if (source.via == DiscoSource::Via::relay) {
    // Answered the way it came (a relay RTT probe); no path to learn.
    if (relay_available_ && peer.cmm_bucket.take(now)) {
      PathAction a;
      a.kind = ActionKind::send_relay;
      a.purpose = SendPurpose::pong;
      a.peer = peer.node_key;
      a.bytes = peer.session.seal(pong, counter_++, rng_);
      actions_.push_back(std::move(a));
      ++stats_.pongs_sent;
    }
    return;
  }
  pong.pong.observed = remote_only(source.from);
  if (send_disco_udp(now, peer, source.socket, source.from, pong, SendPurpose::pong, false))
    ++stats_.pongs_sent;
  // The path it came on is a candidate ("peer-reflexive"); prove it from our side too.
  auto i = add_usable_candidate(peer, source.socket, source.from, CandidateKind::observed, now);
  if (!i) {
    if (!tunnelled(source.from)) ++stats_.candidates_refused;
    return;
  }
  Candidate& c = peer.candidates[*i];
  c.last_heard = now;
  if (!c.trusted(now) && (!c.last_ping || now - *c.last_ping >= kPingBackSpacing))
    send_ping(now, peer, *i, SendPurpose::ping_back);
}

void PathManager::note_observed(Instant now, const Endpoint& to, const Endpoint& observed) {
  evidence_.add(now, to, observed);
  ++stats_.mapping_observations;
  update_remapped(now);
  const bool varies = evidence_.varies(now);
  if (varies == observed_varies_) return;
  observed_varies_ = varies;
  // We turned out to be hard: every peer must hear it (call-me-maybe carries it) and may now
  // need port prediction.
  // Serviced from on_timers, not from inside this pong's handling.
  ++local_epoch_;
  for (auto& [key, peer] : peers_) {
    if (!peer->full_probe_at) peer->full_probe_at = now;
    peer->reprobe_backoff = kReprobeMin;
  }
  lower_deadline(now);
}

void PathManager::update_remapped(Instant now) {
  const std::optional<Endpoint> r = evidence_.remapped(now);
  const bool same = r.has_value() == remapped_.has_value() && (!r || r->same_remote(*remapped_));
  if (same) return;
  remapped_ = r;
  if (r) ++stats_.remaps_noticed;
  // Noticed and counted only. Offering it first in call-me-maybes (so a symmetric peer's probe
  // sockets aim at it) passed the two-agent simulation but failed in the lab's long-lived mesh
  // (bench/punch_timing.sh: a port-restricted anchor behind an open router never went direct
  // with 3 of 4 new symmetric peers): heartbeats of flows made before the move keep STUN's port
  // the newest observation, so the verdict flapped (a new epoch each time), and once the moved
  // flows expired the offered port was stale. See the branch's report.
}

DiscoError PathManager::handle_pong(Instant now, Peer& peer, const DiscoSource& source,
                                    const DiscoPong& pong) {
  if (source.via != DiscoSource::Via::udp) {
    // Only the answer to a liveness ping we sent through the relay (ping_peer) is expected.
    auto it = std::find_if(peer.relay_pings.begin(), peer.relay_pings.end(),
                           [&](const OutstandingPing& p) { return p.tx == pong.tx_id; });
    if (it == peer.relay_pings.end()) return DiscoError::unexpected_pong;
    peer.relay_pings.erase(it);
    ++stats_.liveness_pongs;
    return DiscoError::none;
  }
  peer.padded_pings = pong.padded_pings;
  // An answer to a padded ping: that size gets through on the path under search.
  auto probe = std::find_if(peer.pmtu_probes.begin(), peer.pmtu_probes.end(),
                            [&](const PmtuProbe& p) { return p.tx == pong.tx_id; });
  if (probe != peer.pmtu_probes.end()) {
    const std::size_t size = probe->size;
    peer.pmtu_probes.erase(probe);
    if (!peer.pmtu_path || !peer.pmtu_path->matches(source.socket, source.from))
      return DiscoError::unexpected_pong;
    peer.pmtu.acked(now, size);
    ++stats_.pmtu_probes_acked;
    if (const auto i = peer.find(source.socket, source.from)) peer.candidates[*i].last_pong = now;
    return DiscoError::none;
  }
  Prediction& pr = peer.prediction;
  std::optional<std::size_t> idx;
  Duration rtt{};
  auto it = std::find_if(peer.pings.begin(), peer.pings.end(), [&](const OutstandingPing& p) {
    return p.tx == pong.tx_id && p.socket == source.socket && p.to.same_remote(source.from);
  });
  if (it != peer.pings.end()) {
    rtt = now - it->sent;
    peer.pings.erase(it);
    idx = peer.find(source.socket, source.from);
    if (!idx) idx = add_usable_candidate(peer, source.socket, source.from, CandidateKind::observed, now);
  } else if (pr.role == Prediction::Role::easy && pong.tx_id == pr.tx && pr.spray &&
             source.socket == kMainSocket && source.from.address() == pr.target) {
    // A sprayed port answered: the hard side's probe socket behind that mapping got our ping.
    const std::optional<Instant> sent = pr.spray->probed_at(source.from.port());
    if (!sent || now - *sent > kPingTimeout) return DiscoError::unexpected_pong;
    rtt = now - *sent;
    idx = add_usable_candidate(peer, kMainSocket, source.from, CandidateKind::predicted, now);
    ++stats_.prediction_hits;
    pr.spray->stop();  // the prediction ends below, once the candidate is recorded
  } else if (pr.role == Prediction::Role::hard && pong.tx_id == pr.tx &&
             source.from.same_remote(pr.easy_endpoint) &&
             std::find(pr.sockets.begin(), pr.sockets.end(), source.socket) != pr.sockets.end() &&
             now - pr.started <= kProbeSocketLifetime) {
    // A probe socket's first ping got through (the easy side filters by address only, or not
    // at all).
    const auto k = static_cast<std::size_t>(
        std::find(pr.sockets.begin(), pr.sockets.end(), source.socket) - pr.sockets.begin());
    if (k >= pr.round_sent.size() || pr.round_sent[k] == Instant::min())
      return DiscoError::unexpected_pong;
    rtt = now - pr.round_sent[k];
    idx = add_usable_candidate(peer, source.socket, source.from, CandidateKind::predicted, now);
  } else {
    return DiscoError::unexpected_pong;
  }
  if (!idx) {
    if (!tunnelled(source.from)) ++stats_.candidates_refused;
    return DiscoError::none;
  }
  Candidate& c = peer.candidates[*idx];
  c.last_pong = now;
  c.rtt = rtt;
  const SocketId socket = c.socket;
  // Only the main socket's mapping is ours to judge (probe sockets are prediction's own).
  if (socket == kMainSocket) note_observed(now, c.endpoint, pong.observed);
  if (socket != kMainSocket && pr.role == Prediction::Role::hard) {
    ++stats_.prediction_hits;
    end_prediction(now, peer, socket);
    peer.predict_retry_at.reset();  // a success may be repeated whenever needed
    peer.predict_backoff = kPredictRetryMin;
  } else if (pr.role == Prediction::Role::easy && pr.spray && pr.spray->done() &&
             c.kind == CandidateKind::predicted) {
    end_prediction(now, peer, std::nullopt);
    peer.predict_retry_at.reset();
    peer.predict_backoff = kPredictRetryMin;
  }
  reselect(now, peer);
  return DiscoError::none;
}

DiscoError PathManager::handle_call_me_maybe(Instant now, Peer& peer, const CallMeMaybe& cmm) {
  if (peer.remote_facts && cmm.epoch < peer.remote_epoch) return DiscoError::stale;
  peer.remote_active = cmm.active;
  peer.remote_welcomes_pings = cmm.full_pings_welcome;
  const bool fresh = !peer.remote_facts || cmm.epoch > peer.remote_epoch;
  if (fresh) {
    peer.remote_facts = true;
    peer.remote_epoch = cmm.epoch;
    peer.remote_candidates = cmm.endpoints;
    const bool portmapped = std::any_of(cmm.endpoints.begin(), cmm.endpoints.end(),
                                        [](const CandidateEndpoint& e) {
                                          return e.kind == CandidateKind::portmapped;
                                        });
    // A port mapping is reachable from anywhere: such a peer is easy whatever STUN says.
    peer.remote_hard = cmm.mapping_varies && !portmapped;
    // A path to an endpoint the peer advertised before and no longer does (it roamed) is not
    // trusted any more; it is used again only if a new pong proves it.
    for (Candidate& c : peer.candidates) {
      if (c.from_call_me_maybe && c.socket == kMainSocket &&
          std::none_of(cmm.endpoints.begin(), cmm.endpoints.end(),
                       [&](const CandidateEndpoint& e) { return c.endpoint.same_remote(e.endpoint); }))
        c.last_pong.reset();
      c.from_call_me_maybe = false;
    }
    for (const CandidateEndpoint& e : cmm.endpoints) {
      if (e.endpoint.port() == 0 || e.endpoint.address().is_unspecified()) continue;
      if (auto i = add_usable_candidate(peer, kMainSocket, e.endpoint, e.kind, now))
        peer.candidates[*i].from_call_me_maybe = true;
      else if (!tunnelled(e.endpoint))
        ++stats_.candidates_refused;
    }
    peer.reprobe_backoff = kReprobeMin;
    peer.predict_retry_at.reset();
    peer.predict_backoff = kPredictRetryMin;
  }
  // Simultaneous open: the sender is pinging our candidates right now; ping all of its — at
  // full TTL only if it says it has opened its NAT towards us (who sends first, manager.hpp).
  // If not (it knew no candidate of ours), our full pings could reach its router before its
  // flow to us exists: send openers, and tell it we have opened; it pings us, we answer.
  const NatGuess guess = nat_guess();
  const bool behind_nat = guess == NatGuess::behind;
  bool opened_now = false;
  for (std::size_t i = 0; i < peer.candidates.size(); ++i) {
    const Candidate& c = peer.candidates[i];
    if (c.socket != kMainSocket || (!c.from_call_me_maybe && !c.from_coordinator)) continue;
    if (c.last_ping && now - *c.last_ping < kPingBackSpacing) continue;
    if ((cmm.opened || c.lan || c.trusted(now)) && !holds_full_pings(now, peer, c)) {
      send_ping(now, peer, i, SendPurpose::probe);
    } else {
      if (behind_nat) send_opener(now, peer, i);
      opened_now = true;
    }
  }
  if (cmm.opened) {
    // Its openers have left: ours wait no longer.
    send_deferred_pings(now, peer);
  } else if (opened_now && !peer.deferred_pings_at) {
    peer.deferred_pings_at = now + kOpenerFallback;
  }
  // The sender may not know our candidates or NAT yet (it may be the only side sending data);
  // one that has not opened towards us must hear that we have opened towards it. Facts new to
  // us mean the sender may have missed our last call-me-maybe (a joining agent's relay admits
  // it only after our first one went out): it waits for our "opened" before its full pings,
  // which a double NAT needs (its openers do not cross the carrier NAT, our pings die there).
  if (opened_now || fresh || peer.cmm_epoch_sent != local_epoch_ || !peer.last_cmm_sent ||
      now - *peer.last_cmm_sent >= kReprobeMin)
    send_call_me_maybe(now, peer, opened_towards(peer, guess));
  if (!peer.direct(now) && !peer.predict_at &&
      peer.prediction.role == Prediction::Role::none)
    peer.predict_at = now + kPredictStartDelay;
  return DiscoError::none;
}

// ---------------------------------------------------------------- opener TTL

bool PathManager::on_time_exceeded(Instant now, const Endpoint& to, const IpAddress& offender) {
  // Ours: an opener at the current TTL to that endpoint, still outstanding. (One round of
  // openers brings one answer per endpoint; the TTL grows once per round.)
  bool ours = false;
  for (auto& [key, peer] : peers_) {
    ours = std::any_of(peer->pings.begin(), peer->pings.end(), [&](const OutstandingPing& p) {
      return p.ttl == opener_ttl_ && p.socket == kMainSocket && p.to.same_remote(to) && now - p.sent <= kPingTimeout;
    });
    if (ours) break;
  }
  const IpAddress& a = offender;
  const bool shared = a.is_v4() && a.bytes()[0] == 100 && (a.bytes()[1] & 0xc0) == 64;
  const bool inside = is_private_address(a) || shared;
  const bool held_off = opener_ttl_raised_at_ && now - *opener_ttl_raised_at_ < kOpenerTtlHoldoff;
  // The hop that made us raise the TTL cannot be where an opener at the raised TTL dies (that
  // one goes a hop further): an answer from it is about an older, shorter opener, however late
  // it comes. A busy host can read it after the holdoff, when the new round's openers are
  // outstanding to the same endpoints; a second raise then made a double NAT's openers (TTL 4)
  // reach the peer's router two hops past our carrier and take its port there.
  const bool same_hop = opener_ttl_offender_ && *opener_ttl_offender_ == offender;
  if (!ours || !inside || opener_ttl_ >= kOpenerTtlMax || held_off || same_hop) {
    ++stats_.time_exceeded_ignored;
    return false;
  }
  ++opener_ttl_;
  opener_ttl_raised_at_ = now;
  opener_ttl_offender_ = offender;
  ++stats_.opener_ttl_raised;
  lower_deadline(now);  // the openers again, from on_timers (service)
  return true;
}

}  // namespace knit::punch
