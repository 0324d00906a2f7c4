// libFuzzer: the mesh resolver's query path on hostile bytes (dns/): an IP/UDP packet as read
// from the TUN, then the DNS query inside it, through the whole Resolver (rate limit off), and
// the same bytes as an upstream response. Property: never a crash, and a query that parses is
// answered or forwarded, never both.
#include <cstddef>
#include <cstdint>

#include "base/random.hpp"
#include "dns/resolver.hpp"
#include "dns/ip_packet.hpp"
#include "fuzz/fuzz_util.hpp"

using namespace knit;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static SeededRandom rng(1);
  static dns::Resolver* resolver = [] {
    auto* r = new dns::Resolver(rng);
    r->rate_limiter() = dns::RateLimiter(1e12, 1e12);
    r->table().set_domain("knit.internal");
    r->table().set_prefixes(IpPrefix::parse("100.64.0.0/10"), IpPrefix::parse("fd7a:1::/48"));
    r->table().set_nodes({{"laptop", IpAddress::parse("100.64.0.7"), IpAddress::parse("fd7a:1::7")}});
    r->forwarder().set_upstreams({*Endpoint::parse("192.0.2.53:53")});
    return r;
  }();
  const ByteSpan bytes(data, size);
  Endpoint client = *Endpoint::parse("100.64.0.2:40000");
  client.set_local(IpAddress::parse("100.100.100.100"));
  // One query: at most one effect (an answer or one upstream query), none when malformed.
  auto one_query = [&](ByteSpan query) {
    dns::Actions actions;
    const auto malformed = resolver->counters().malformed;
    resolver->on_query(Instant{}, client, query, actions);
    const std::size_t effects = actions.replies.size() + actions.queries.size();
    KNIT_FUZZ_CHECK(effects <= 1);
    KNIT_FUZZ_CHECK(resolver->counters().malformed == malformed || effects == 0);
  };
  if (auto udp = dns::parse_udp_packet(bytes)) one_query(udp->payload);
  one_query(bytes);
  dns::Actions out;
  resolver->on_upstream_udp(Instant{}, *Endpoint::parse("192.0.2.53:53"), bytes, out);
  resolver->on_upstream_tcp(Instant{}, 1, bytes, out);
  if (out.queries.size() > 64) resolver->on_timer(Instant{} + std::chrono::hours(1), out);
  return 0;
}
