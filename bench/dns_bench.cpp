// The mesh resolver's answer path as knitd runs it for each packet read from the TUN: IP/UDP
// parse, rate limit, DNS parse (ldns), mesh-table lookup, answer built (ldns), IP/UDP framing.
// One core, back to back (the load is as much as one core can answer), over a mesh of N names
// (default 10,000) with 10% of the queries for unknown names (NXDOMAIN). Prints queries/s and
// the latency distribution of single queries under that load (p50, p99, p99.9, max).
//
//   dns_bench [--names N] [--queries Q]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "base/random.hpp"
#include "dns/resolver.hpp"
#include "dns/ip_packet.hpp"

using namespace knit;

namespace {

Bytes make_query(std::uint16_t id, const std::string& name) {
  Bytes out = {static_cast<std::uint8_t>(id >> 8), static_cast<std::uint8_t>(id), 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0};
  std::size_t start = 0;
  while (start < name.size()) {
    std::size_t dot = name.find('.', start);
    if (dot == std::string::npos) dot = name.size();
    out.push_back(static_cast<std::uint8_t>(dot - start));
    out.insert(out.end(), name.begin() + static_cast<long>(start), name.begin() + static_cast<long>(dot));
    start = dot + 1;
  }
  for (std::uint8_t b : {0, 0, 1, 0, 1}) out.push_back(b);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  std::size_t names = 10000;
  std::size_t queries = 500000;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (std::strcmp(argv[i], "--names") == 0) names = std::strtoul(argv[i + 1], nullptr, 10);
    if (std::strcmp(argv[i], "--queries") == 0) queries = std::strtoul(argv[i + 1], nullptr, 10);
  }
  SeededRandom rng(1);
  dns::Resolver resolver(rng);
  resolver.rate_limiter() = dns::RateLimiter(1e12, 1e12);  // measure answering, not refusing
  resolver.table().set_domain("knit.internal");
  std::vector<dns::MeshNode> nodes;
  for (std::size_t i = 0; i < names; ++i) {
    const std::uint32_t v4 = 0x64400002u + static_cast<std::uint32_t>(i);
    nodes.push_back({"node" + std::to_string(i), IpAddress::v4(v4), std::nullopt});
  }
  resolver.table().set_nodes(nodes);

  // Pre-built packets from the host (its mesh address) to 100.100.100.100:53.
  const Endpoint client = *Endpoint::parse("100.64.0.1:40000");
  const Endpoint server = *Endpoint::parse("100.100.100.100:53");
  std::vector<Bytes> packets;
  for (std::size_t i = 0; i < 4096; ++i) {
    const bool unknown = rng.uniform(10) == 0;
    const std::string name = (unknown ? "ghost" : "node") + std::to_string(rng.uniform(static_cast<std::uint32_t>(names))) +
                             ".knit.internal";
    packets.push_back(dns::build_udp_packet(client, server, make_query(static_cast<std::uint16_t>(i), name)));
  }

  std::vector<double> latency_us;
  latency_us.reserve(queries);
  dns::Actions actions;
  std::size_t answered = 0;
  std::size_t bytes_out = 0;
  const auto start = std::chrono::steady_clock::now();
  for (std::size_t i = 0; i < queries; ++i) {
    const Bytes& packet = packets[i % packets.size()];
    const auto t0 = std::chrono::steady_clock::now();
    auto udp = dns::parse_udp_packet(packet);
    Endpoint from = udp->source;
    from.set_local(udp->destination.address());
    actions.clear();
    resolver.on_query(t0, from, udp->payload, actions);
    for (const dns::Reply& r : actions.replies) {
      const Bytes reply = dns::build_udp_packet(Endpoint(*r.client.local(), 53), r.client, r.wire);
      bytes_out += reply.size();
      ++answered;
    }
    latency_us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::sort(latency_us.begin(), latency_us.end());
  auto pct = [&](double p) { return latency_us[static_cast<std::size_t>(p * static_cast<double>(latency_us.size() - 1))]; };
  std::printf("dns_bench: %zu names, %zu queries (10%% unknown -> NXDOMAIN), one core\n", names, queries);
  std::printf("  answered %zu (%.0f queries/s), %.1f MB of answers\n", answered, static_cast<double>(answered) / seconds,
              static_cast<double>(bytes_out) / 1e6);
  std::printf("  latency per query: p50 %.2f us, p99 %.2f us, p99.9 %.2f us, max %.1f us\n", pct(0.5), pct(0.99),
              pct(0.999), latency_us.back());
  return answered == queries ? 0 : 1;
}
