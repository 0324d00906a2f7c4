// The relay's counters, and their two renderings: knit_relay_* samples in a metrics registry
// (base/metrics.hpp, served by net/metrics_server.hpp on --metrics) and the one-line summary
// knit-relay logs at shutdown.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

namespace knit::metrics {
class Registry;  // base/metrics.hpp
}  // namespace knit::metrics

namespace knit::relay {

struct Stats {
  // gauges
  std::uint64_t clients = 0;       // admitted client connections
  std::uint64_t relay_links = 0;   // open links to peer relays
  std::uint64_t handshaking = 0;   // connections not admitted yet
  std::uint64_t remote_clients = 0;  // clients peer relays announced
  // connections
  std::uint64_t accepted = 0;
  std::uint64_t admitted = 0;
  std::uint64_t refused_not_member = 0;
  std::uint64_t refused_not_relay = 0;
  std::uint64_t refused_membership_unknown = 0;
  std::uint64_t refused_bad_hello = 0;
  std::uint64_t handshake_failed = 0;    // bad Noise, oversized or garbage before admission
  std::uint64_t handshake_timeouts = 0;  // slowloris: no admission within the timeout
  std::uint64_t handshake_evicted = 0;   // not admitted yet, its slot given to a newer one
  std::uint64_t idle_timeouts = 0;
  std::uint64_t replaced = 0;            // a newer connection of the same key took over
  std::uint64_t cut_off = 0;             // a member removed while connected
  std::uint64_t connection_errors = 0;   // an admitted connection's channel failed
  // traffic
  std::uint64_t packets_local = 0;  // client -> client on this relay
  std::uint64_t bytes_local = 0;
  std::uint64_t packets_to_mesh = 0;  // client -> peer relay
  std::uint64_t bytes_to_mesh = 0;
  std::uint64_t packets_from_mesh = 0;  // peer relay -> client here
  std::uint64_t bytes_from_mesh = 0;
  std::uint64_t peer_gone_sent = 0;
  // drops (each one packet or frame)
  std::uint64_t drop_queue_full = 0;
  std::uint64_t drop_no_route = 0;       // destination unknown: peer_gone went back
  std::uint64_t drop_mesh_no_client = 0; // a peer relay forwarded to a client not here
  std::uint64_t drop_malformed = 0;      // a transport message that did not parse
  std::uint64_t drop_unknown_type = 0;
  std::uint64_t drop_not_allowed = 0;    // a frame the sender's role may not send
  std::uint64_t drop_oversize = 0;       // a frame over the limit (the connection ends)
  std::uint64_t drop_split_not_data = 0; // a split message that was not a data frame
};

// Declares the knit_relay_* families in `registry` (gauges, connection, traffic and drop
// counters, labelled by reason or path) and copies `stats()` into them before every render.
// The function and what it returns must outlive the registry's renders.
void register_metrics(metrics::Registry& registry, std::function<const Stats&()> stats);
// "clients=3 links=1 forwarded=1200 pkts/1.7 MB ... refused=2 drops=5 (queue=1 ...)".
std::string summary_line(const Stats& stats);

}  // namespace knit::relay
