// Forwarding what the mesh table does not answer: a sans-I/O state machine (now in, actions
// out; the shell owns the sockets and the clock).
//
//   query ──cache hit──────────────────────────────────────────► Reply (ID rewritten, TTLs aged)
//     └─► UpstreamQuery{udp, upstream[0], our random ID} ──response──► Reply, cached for its TTL
//                 │  TC set ─► UpstreamQuery{tcp, same upstream} ──response──► Reply
//                 │  kUpstreamTimeout / TCP failed ─► the next upstream, or SERVFAIL to the client
//
// A response is taken only when it matches an outstanding query: its ID, the upstream it was
// sent to (address and port) and the question (name, type, class). Anything else is dropped
// and counted (mismatched). Split DNS: a name under a mapped domain goes to that domain's
// resolvers (the longest mapped suffix wins); the rest to the default upstreams.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/bytes.hpp"
#include "base/ip.hpp"
#include "base/random.hpp"
#include "base/time.hpp"
#include "dns/constants.hpp"
#include "dns/message.hpp"

namespace knit::dns {

enum class Transport { udp, tcp };

// An answer for a client: client.local() is the resolver address it asked (reply from there),
// over the transport it asked on.
struct Reply {
  Endpoint client;
  Bytes wire;
  Transport transport = Transport::udp;
};

// Send `wire` to `upstream`. Over TCP the shell opens one connection per query (tcp_id names
// it), writes the 2-byte length and the message, and hands back the first response.
struct UpstreamQuery {
  Transport transport = Transport::udp;
  Endpoint upstream;
  std::uint64_t tcp_id = 0;
  Bytes wire;
};

struct Actions {
  std::vector<Reply> replies;
  std::vector<UpstreamQuery> queries;
  void clear() {
    replies.clear();
    queries.clear();
  }
};

class Forwarder {
 public:
  struct Options {
    Duration timeout = kUpstreamTimeout;
    std::size_t max_pending = kMaxPending;
    std::size_t cache_entries = kCacheEntries;
  };
  struct Counters {
    std::uint64_t forwarded = 0;     // queries sent upstream (first tries)
    std::uint64_t cache_hits = 0;
    std::uint64_t answered = 0;      // upstream answers passed on
    std::uint64_t tcp_retries = 0;   // truncated UDP answers retried over TCP
    std::uint64_t timeouts = 0;      // an upstream did not answer in time
    std::uint64_t servfail = 0;      // SERVFAIL given to a client (every upstream failed)
    std::uint64_t mismatched = 0;    // responses matching no outstanding query, dropped
    std::uint64_t bad_responses = 0; // unparseable responses, dropped
    std::uint64_t overloaded = 0;    // queries refused with max_pending outstanding
    std::uint64_t no_upstream = 0;   // nothing to forward to
  };

  Forwarder() : Forwarder(Options{}) {}
  explicit Forwarder(Options options) : options_(options) {}

  void set_upstreams(std::vector<Endpoint> upstreams) { upstreams_ = std::move(upstreams); }
  const std::vector<Endpoint>& upstreams() const { return upstreams_; }
  // domain (lowercase, no trailing dot) -> its resolvers.
  void set_split(std::map<std::string, std::vector<Endpoint>> split) { split_ = std::move(split); }
  const std::map<std::string, std::vector<Endpoint>>& split() const { return split_; }
  // The resolvers a name goes to.
  const std::vector<Endpoint>& upstreams_for(const std::string& name) const;

  void query(Instant now, const Endpoint& client, const Query& query, ByteSpan wire, Random& rng, Actions& out);
  void on_udp(Instant now, const Endpoint& from, ByteSpan wire, Actions& out);
  void on_tcp(Instant now, std::uint64_t tcp_id, ByteSpan wire, Actions& out);
  void on_tcp_failed(Instant now, std::uint64_t tcp_id, Actions& out);
  void on_timer(Instant now, Actions& out);
  std::optional<Instant> next_deadline() const;
  // Drops the cache (the upstreams changed).
  void clear_cache() { cache_.clear(); }

  std::size_t pending() const { return pending_.size(); }
  std::size_t cached() const { return cache_.size(); }
  const Counters& counters() const { return counters_; }

 private:
  struct Pending {
    Endpoint client;
    Query query;  // as the client asked it (its ID)
    Bytes wire;   // as sent upstream (our ID)
    std::vector<Endpoint> upstreams;
    std::size_t upstream_index = 0;
    Transport transport = Transport::udp;
    std::uint64_t tcp_id = 0;
    Instant deadline{};
  };
  struct CacheEntry {
    Bytes wire;
    Instant stored{};
    Instant expires{};
  };
  static std::string cache_key(const std::string& name, std::uint16_t qtype, std::uint16_t qclass);
  bool matches(const Pending& pending, const ResponseInfo& info) const;
  void deliver(Instant now, std::uint16_t id, ByteSpan wire, const ResponseInfo& info, Actions& out);
  void fail_over(Instant now, std::uint16_t id, Actions& out);
  void reply(const Endpoint& client, const Query& query, Bytes wire, Actions& out) const;
  void store(Instant now, const std::string& key, ByteSpan wire, std::uint32_t ttl);

  Options options_;
  std::vector<Endpoint> upstreams_;
  std::map<std::string, std::vector<Endpoint>> split_;
  std::map<std::uint16_t, Pending> pending_;  // by the ID sent upstream
  std::map<std::string, CacheEntry> cache_;
  std::uint64_t next_tcp_id_ = 1;
  Counters counters_;
};

}  // namespace knit::dns
