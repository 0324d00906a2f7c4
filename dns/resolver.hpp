// The mesh resolver core: one query in, actions out (replies to clients, queries to upstreams).
// It rate-limits per source, parses (malformed queries are counted and dropped, never
// answered), answers mesh names from the MeshTable and forwards the rest (forwarder.hpp).
// No I/O, no clock: knitd's DnsService (agent/dns_service.hpp) moves the bytes and the time.
#pragma once

#include <array>
#include <cstdint>

#include "base/random.hpp"
#include "dns/forwarder.hpp"
#include "dns/mesh_table.hpp"
#include "dns/rate_limiter.hpp"

namespace knit::dns {

class Resolver {
 public:
  struct Counters {
    std::uint64_t queries = 0;        // well-formed queries taken
    std::uint64_t answered_mesh = 0;  // answered from the mesh table
    std::uint64_t rate_limited = 0;   // dropped by the per-source limit
    std::uint64_t malformed = 0;      // dropped: every QueryError
    std::array<std::uint64_t, 6> malformed_by_kind{};  // indexed by QueryError
  };

  explicit Resolver(Random& rng, Forwarder::Options forwarding = {}) : rng_(rng), forwarder_(forwarding) {}

  MeshTable& table() { return table_; }
  const MeshTable& table() const { return table_; }
  Forwarder& forwarder() { return forwarder_; }
  const Forwarder& forwarder() const { return forwarder_; }
  RateLimiter& rate_limiter() { return limiter_; }

  // A query from client (client.local(): the resolver address it was sent to), over UDP or
  // one of tcp_server.hpp's connections; the reply goes back the same way.
  void on_query(Instant now, const Endpoint& client, ByteSpan wire, Actions& out,
                Transport transport = Transport::udp);
  void on_upstream_udp(Instant now, const Endpoint& from, ByteSpan wire, Actions& out) {
    forwarder_.on_udp(now, from, wire, out);
  }
  void on_upstream_tcp(Instant now, std::uint64_t tcp_id, ByteSpan wire, Actions& out) {
    forwarder_.on_tcp(now, tcp_id, wire, out);
  }
  void on_upstream_tcp_failed(Instant now, std::uint64_t tcp_id, Actions& out) {
    forwarder_.on_tcp_failed(now, tcp_id, out);
  }
  void on_timer(Instant now, Actions& out) { forwarder_.on_timer(now, out); }
  std::optional<Instant> next_deadline() const { return forwarder_.next_deadline(); }

  const Counters& counters() const { return counters_; }

 private:
  Random& rng_;
  MeshTable table_;
  Forwarder forwarder_;
  RateLimiter limiter_;
  Counters counters_;
};

}  // namespace knit::dns
