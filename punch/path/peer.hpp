// What the PathManager knows about one peer: its candidate paths, the pings in flight, its
// schedule, and any port prediction under way. Internal to path_manager*.cpp and tests.
#pragma once

#include <cstddef>
#include <optional>
#include <vector>

#include "base/ip.hpp"
#include "base/time.hpp"
#include "punch/path/disco.hpp"
#include "punch/path/constants.hpp"
#include "punch/path/manager.hpp"
#include "punch/path/pmtu.hpp"
#include "punch/path/rate.hpp"
#include "punch/path/predict.hpp"

namespace knit::punch {

// One (local socket, remote endpoint) pair that may carry traffic.
struct Candidate {
  SocketId socket = kMainSocket;
  Endpoint endpoint;  // remote; local() kept from where we heard it, so replies leave right
  CandidateKind kind = CandidateKind::local;
  bool from_coordinator = false;
  bool from_call_me_maybe = false;
  bool lan = false;
  std::optional<Instant> last_ping;
  std::optional<Instant> last_pong;
  std::optional<Instant> last_heard;  // a ping from it (observed candidates age out)
  Duration rtt{};

  bool trusted(Instant now) const { return last_pong && now - *last_pong <= kPathTrust; }
  bool matches(SocketId s, const Endpoint& e) const {
    return socket == s && endpoint.same_remote(e);
  }
};

struct OutstandingPing {
  TxId tx{};
  SocketId socket = kMainSocket;
  Endpoint to;
  Instant sent{};
  std::uint8_t ttl = 0;  // an opener's TTL; 0: a full ping
};

// A padded ping in flight (path MTU search).
struct PmtuProbe {
  TxId tx{};
  std::size_t size = 0;  // outer IP packet size
  Instant sent{};
};
inline constexpr std::size_t kMaxPmtuProbes = 8;
inline constexpr std::size_t kMaxRelayPings = 4;

struct Prediction {
  enum class Role : std::uint8_t { none, easy, hard };
  Role role = Role::none;
  Instant started{};
  Instant ends{};
  TxId tx{};  // shared by every prediction ping of this attempt
  // easy side
  std::optional<PortSpray> spray;
  IpAddress target;
  // hard side
  std::optional<ProbeSocketRound> round;
  Endpoint easy_endpoint;
  std::vector<SocketId> sockets;
  std::vector<Instant> round_sent;  // when each socket's ping left
};

struct PathManager::Peer {
  Peer() : ping_bucket(kPeerPingBurst, kPeerPingRate), cmm_bucket(kCallMeMaybeBurst, kCallMeMaybeRate) {}

  NodeKey node_key{};
  DiscoKey disco_key{};
  DiscoSession session;
  std::vector<Endpoint> coordinator_endpoints;

  std::vector<Candidate> candidates;  // at most kMaxCandidates
  std::optional<std::size_t> best;    // index into candidates
  std::vector<OutstandingPing> pings; // at most kMaxOutstandingPings
  PathInfo reported;                  // what path() said last time we looked (path_changed)

  std::optional<Instant> last_data;
  std::optional<Instant> last_full_probe;
  std::optional<Instant> deferred_pings_at;  // openers went: full pings then, or on its cmm
  std::uint8_t opener_ttl = 0;  // the TTL of the last openers to it (0: none yet)
  std::optional<Instant> full_probe_at;  // an event asked for a full probe at this time
  Duration reprobe_backoff = kReprobeMin;
  std::optional<Instant> last_cmm_sent;
  std::uint64_t cmm_epoch_sent = 0;  // our local epoch in the last call-me-maybe we sent

  // What the peer told us about itself in call-me-maybe.
  bool remote_facts = false;
  bool remote_hard = false;
  bool remote_welcomes_pings = false;  // its last call-me-maybe: full pings cannot take a port there
  bool remote_active = false;  // its last call-me-maybe said it sends us data
  std::uint64_t remote_epoch = 0;
  std::vector<CandidateEndpoint> remote_candidates;

  std::optional<Instant> predict_at;  // decide whether to start prediction then
  std::optional<Instant> predict_retry_at;  // after a failed prediction, not before this
  Duration predict_backoff = kPredictRetryMin;
  Prediction prediction;
  std::vector<SocketId> kept_sockets;  // probe sockets a prediction won, still ours
  std::optional<Instant> kept_unused_since;

  // Path MTU (pmtu.hpp): searched on the chosen direct path, once the peer's pongs say it
  // answers padded pings.
  bool padded_pings = false;
  PmtuSearch pmtu;
  std::optional<Candidate> pmtu_path;      // the path the search is about (socket, endpoint)
  std::vector<PmtuProbe> pmtu_probes;      // at most kMaxPmtuProbes
  std::optional<std::size_t> last_direct_tunnel_mtu;  // kept across a fallback to the relay

  // Liveness (PathManager::ping_peer): the last authenticated disco message from the peer, and
  // the pings sent through the relay whose pongs we expect (at most kMaxRelayPings).
  std::optional<Instant> last_heard;
  std::vector<OutstandingPing> relay_pings;

  TokenBucket ping_bucket;
  TokenBucket cmm_bucket;
  std::optional<Instant> wake;

  bool active(Instant now) const { return last_data && now - *last_data < kActiveTimeout; }
  bool direct(Instant now) const { return best && candidates[*best].trusted(now); }
  std::optional<std::size_t> find(SocketId s, const Endpoint& e) const {
    for (std::size_t i = 0; i < candidates.size(); ++i)
      if (candidates[i].matches(s, e)) return i;
    return std::nullopt;
  }
};

}  // namespace knit::punch
