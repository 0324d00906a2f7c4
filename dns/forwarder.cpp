#include "dns/forwarder.hpp"

#include <algorithm>
#include <chrono>

namespace knit::dns {
namespace {

bool same_upstream(const Endpoint& a, const Endpoint& b) { return a.address() == b.address() && a.port() == b.port(); }

const std::vector<Endpoint> kNone;

Transport transport_of(const Query& query) { return query.over_tcp ? Transport::tcp : Transport::udp; }

}  // namespace

std::string Forwarder::cache_key(const std::string& name, std::uint16_t qtype, std::uint16_t qclass) {
  return name + "|" + std::to_string(qtype) + "|" + std::to_string(qclass);
}

const std::vector<Endpoint>& Forwarder::upstreams_for(const std::string& name) const {
  const std::vector<Endpoint>* best = nullptr;
  std::size_t best_length = 0;
  for (const auto& [domain, resolvers] : split_) {
    const bool under = name == domain || (name.size() > domain.size() && name.ends_with(domain) &&
                                          name[name.size() - domain.size() - 1] == '.');
    if (under && (best == nullptr || domain.size() > best_length)) {
      best = &resolvers;
      best_length = domain.size();
    }
  }
  if (best) return *best;
  return upstreams_.empty() ? kNone : upstreams_;
}

void Forwarder::reply(const Endpoint& client, const Query& query, Bytes wire, Actions& out) const {
  set_message_id(wire, query.id);
  // What the client said it takes (512 without EDNS), never over kMaxEdnsUdpSize; over TCP
  // all of it (an upstream answer is at most kMaxResponseSize).
  const std::size_t limit =
      query.over_tcp ? kMaxResponseSize : std::min<std::size_t>(query.udp_size, kMaxEdnsUdpSize);
  if (wire.size() > limit) {
    auto cut = truncate_response(wire);
    if (!cut) return;
    wire = std::move(*cut);
  }
  out.replies.push_back(Reply{client, std::move(wire), transport_of(query)});
}

void Forwarder::query(Instant now, const Endpoint& client, const Query& q, ByteSpan wire, Random& rng, Actions& out) {
  const std::string key = cache_key(q.name, q.qtype, q.qclass);
  if (auto it = cache_.find(key); it != cache_.end()) {
    if (it->second.expires > now) {
      const auto elapsed = std::chrono::duration_cast<std::chrono::seconds>(now - it->second.stored).count();
      if (auto aged = age_response(it->second.wire, static_cast<std::uint32_t>(elapsed))) {
        ++counters_.cache_hits;
        reply(client, q, std::move(*aged), out);
        return;
      }
    }
    cache_.erase(it);
  }
  const std::vector<Endpoint>& upstreams = upstreams_for(q.name);
  if (upstreams.empty()) {
    ++counters_.no_upstream;
    out.replies.push_back(Reply{client, build_error(q, Rcode::servfail), transport_of(q)});
    return;
  }
  if (pending_.size() >= options_.max_pending) {
    ++counters_.overloaded;
    out.replies.push_back(Reply{client, build_error(q, Rcode::servfail), transport_of(q)});
    return;
  }
  // A fresh random ID per upstream query (RFC 5452 §9.2); the port is the shell's socket's.
  std::uint16_t id = 0;
  for (int tries = 0;; ++tries) {
    id = static_cast<std::uint16_t>(rng.uniform(65536));
    if (!pending_.count(id)) break;
    if (tries == 16) {
      ++counters_.overloaded;
      out.replies.push_back(Reply{client, build_error(q, Rcode::servfail), transport_of(q)});
      return;
    }
  }
  Pending p;
  p.client = client;
  p.query = q;
  p.wire.assign(wire.begin(), wire.end());
  set_message_id(p.wire, id);
  p.upstreams = upstreams;
  p.deadline = now + options_.timeout;
  out.queries.push_back(UpstreamQuery{Transport::udp, p.upstreams[0], 0, p.wire});
  pending_.emplace(id, std::move(p));
  ++counters_.forwarded;
}

bool Forwarder::matches(const Pending& pending, const ResponseInfo& info) const {
  return info.name == pending.query.name && info.qtype == pending.query.qtype &&
         info.qclass == pending.query.qclass;
}

void Forwarder::on_udp(Instant now, const Endpoint& from, ByteSpan wire, Actions& out) {
  const auto info = parse_response(wire);
  if (!info) {
    ++counters_.bad_responses;
    return;
  }
  const auto it = pending_.find(info->id);
  if (it == pending_.end() || it->second.transport != Transport::udp ||
      !same_upstream(from, it->second.upstreams[it->second.upstream_index]) || !matches(it->second, *info)) {
    ++counters_.mismatched;
    return;
  }
  if (info->truncated) {
    // RFC 7766 §5: the whole answer over TCP, from the same upstream.
    Pending& p = it->second;
    p.transport = Transport::tcp;
    p.tcp_id = next_tcp_id_++;
    p.deadline = now + options_.timeout;
    ++counters_.tcp_retries;
    out.queries.push_back(UpstreamQuery{Transport::tcp, p.upstreams[p.upstream_index], p.tcp_id, p.wire});
    return;
  }
  deliver(now, info->id, wire, *info, out);
}

void Forwarder::on_tcp(Instant now, std::uint64_t tcp_id, ByteSpan wire, Actions& out) {
  const auto info = parse_response(wire);
  if (!info) {
    ++counters_.bad_responses;
    return;
  }
  const auto it = pending_.find(info->id);
  if (it == pending_.end() || it->second.transport != Transport::tcp || it->second.tcp_id != tcp_id ||
      !matches(it->second, *info)) {
    ++counters_.mismatched;
    return;
  }
  deliver(now, info->id, wire, *info, out);
}

void Forwarder::on_tcp_failed(Instant now, std::uint64_t tcp_id, Actions& out) {
  for (auto& [id, p] : pending_) {
    if (p.transport == Transport::tcp && p.tcp_id == tcp_id) {
      fail_over(now, id, out);
      return;
    }
  }
}

void Forwarder::deliver(Instant now, std::uint16_t id, ByteSpan wire, const ResponseInfo& info, Actions& out) {
  auto node = pending_.extract(id);
  Pending& p = node.mapped();
  ++counters_.answered;
  if ((info.rcode == Rcode::noerror || info.rcode == Rcode::nxdomain) && info.has_records && info.min_ttl > 0)
    store(now, cache_key(p.query.name, p.query.qtype, p.query.qclass), wire,
          std::min(info.min_ttl, kMaxCacheTtl));
  reply(p.client, p.query, Bytes(wire.begin(), wire.end()), out);
}

void Forwarder::fail_over(Instant now, std::uint16_t id, Actions& out) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;
  Pending& p = it->second;
  if (p.upstream_index + 1 < p.upstreams.size()) {
    ++p.upstream_index;
    p.transport = Transport::udp;
    p.deadline = now + options_.timeout;
    out.queries.push_back(UpstreamQuery{Transport::udp, p.upstreams[p.upstream_index], 0, p.wire});
    return;
  }
  ++counters_.servfail;
  out.replies.push_back(Reply{p.client, build_error(p.query, Rcode::servfail), transport_of(p.query)});
  pending_.erase(it);
}

void Forwarder::on_timer(Instant now, Actions& out) {
  std::vector<std::uint16_t> due;
  for (const auto& [id, p] : pending_)
    if (p.deadline <= now) due.push_back(id);
  for (std::uint16_t id : due) {
    ++counters_.timeouts;
    fail_over(now, id, out);
  }
}

std::optional<Instant> Forwarder::next_deadline() const {
  std::optional<Instant> next;
  for (const auto& [id, p] : pending_)
    if (!next || p.deadline < *next) next = p.deadline;
  return next;
}

void Forwarder::store(Instant now, const std::string& key, ByteSpan wire, std::uint32_t ttl) {
  if (options_.cache_entries == 0) return;
  if (cache_.size() >= options_.cache_entries && !cache_.count(key)) {
    for (auto it = cache_.begin(); it != cache_.end();) it = it->second.expires <= now ? cache_.erase(it) : std::next(it);
    if (cache_.size() >= options_.cache_entries) {
      auto soonest = cache_.begin();
      for (auto it = cache_.begin(); it != cache_.end(); ++it)
        if (it->second.expires < soonest->second.expires) soonest = it;
      cache_.erase(soonest);
    }
  }
  cache_[key] = CacheEntry{Bytes(wire.begin(), wire.end()), now, now + std::chrono::seconds(ttl)};
}

}  // namespace knit::dns
