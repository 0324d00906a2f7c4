#include "dns/resolver.hpp"

namespace knit::dns {

void Resolver::on_query(Instant now, const Endpoint& client, ByteSpan wire, Actions& out, Transport transport) {
  // The limit comes first: a flood of garbage costs a map lookup, not a parse.
  if (!limiter_.allow(now, client.address())) {
    ++counters_.rate_limited;
    return;
  }
  auto parsed = parse_query(wire);
  if (const auto* error = std::get_if<QueryError>(&parsed)) {
    ++counters_.malformed;
    ++counters_.malformed_by_kind[static_cast<std::size_t>(*error)];
    return;
  }
  Query& query = std::get<Query>(parsed);
  query.over_tcp = transport == Transport::tcp;
  ++counters_.queries;
  if (auto answer = table_.answer(query)) {
    ++counters_.answered_mesh;
    if (!answer->empty()) out.replies.push_back(Reply{client, std::move(*answer), transport});
    return;
  }
  forwarder_.query(now, client, query, wire, rng_, out);
}

}  // namespace knit::dns
