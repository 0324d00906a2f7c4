// NAT engine throughput and memory: translations per second on one core for an existing UDP
// mapping (outbound and inbound, with an empty and a 100k-entry table), the rate of new
// mapping creation, and bytes per mapping at 100k mappings (glibc mallinfo2, so every
// allocation counts: slabs, indexes, timer heap, port bitmaps).
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <cstring>
#include <memory>
#include <vector>

#include "base/random.hpp"
#include "nat/nat_engine.hpp"
#include "nat/packet_builder.hpp"

namespace knit::nat {
namespace {

const Endpoint kHost = *Endpoint::parse("10.0.0.2:41641");
const Endpoint kServer = *Endpoint::parse("198.51.100.1:51820");

Config bench_config(std::size_t bound) {
  Config c;
  c.external_addresses = {*IpAddress::parse("203.0.113.1"), *IpAddress::parse("203.0.113.2")};
  c.mapping = Mapping::endpoint_independent;
  c.filtering = Filtering::address_and_port_dependent;
  c.max_mappings = bound;
  c.max_sessions = bound;
  return c;
}

Endpoint nth_host(std::uint32_t i) {
  // 10.1.0.0/16 onward, 16 ports a host: distinct internal endpoints.
  return Endpoint(IpAddress::v4(0x0a010000 + (i >> 4)),
                  static_cast<std::uint16_t>(20000 + (i & 15)));
}

// Fills the table with `n` background UDP mappings (one session each).
void fill(NatEngine& nat, std::uint32_t n, Instant now) {
  for (std::uint32_t i = 0; i < n; ++i) {
    Bytes p = make_udp(nth_host(i), kServer, Bytes(16, 0));
    nat.outbound(now, p);
  }
}

void BM_OutboundExistingUdp(benchmark::State& state) {
  const auto background = static_cast<std::uint32_t>(state.range(0));
  const auto payload = static_cast<std::size_t>(state.range(1));
  SeededRandom rng(1);
  NatEngine nat(bench_config(background + 1024), rng);
  Instant now{};
  fill(nat, background, now);
  const Bytes original = make_udp(kHost, kServer, Bytes(payload, 0xab));
  Bytes packet = original;
  nat.outbound(now, packet);  // creates the mapping
  for (auto _ : state) {
    std::memcpy(packet.data(), original.data(), original.size());
    const Result r = nat.outbound(now, packet);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * original.size()));
  if (nat.stats().forwarded_outbound < static_cast<std::uint64_t>(state.iterations()))
    state.SkipWithError("not forwarded");
}
BENCHMARK(BM_OutboundExistingUdp)
    ->ArgNames({"table", "payload"})
    ->Args({0, 64})
    ->Args({100000, 64})
    ->Args({100000, 1400});

void BM_InboundExistingUdp(benchmark::State& state) {
  const auto background = static_cast<std::uint32_t>(state.range(0));
  const auto payload = static_cast<std::size_t>(state.range(1));
  SeededRandom rng(1);
  NatEngine nat(bench_config(background + 1024), rng);
  Instant now{};
  fill(nat, background, now);
  Bytes out = make_udp(kHost, kServer, Bytes(16, 0));
  nat.outbound(now, out);
  const Endpoint external = summarize(out).source;
  const Bytes original = make_udp(kServer, external, Bytes(payload, 0xcd));
  Bytes packet = original;
  for (auto _ : state) {
    std::memcpy(packet.data(), original.data(), original.size());
    const Result r = nat.inbound(now, packet);
    benchmark::DoNotOptimize(r);
  }
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations() * original.size()));
  if (nat.stats().forwarded_inbound < static_cast<std::uint64_t>(state.iterations()))
    state.SkipWithError("not forwarded");
}
BENCHMARK(BM_InboundExistingUdp)
    ->ArgNames({"table", "payload"})
    ->Args({0, 64})
    ->Args({100000, 64})
    ->Args({100000, 1400});

// New flows, each a new mapping + session: EIM from many hosts, or APDM from one host to
// many remotes (a new external port each time, so port allocation is part of the cost).
void BM_NewMapping(benchmark::State& state) {
  const bool symmetric = state.range(0) != 0;
  constexpr std::uint32_t kFlows = 60000;  // < the ~64k ports of one address (APDM, one host)
  Config config = bench_config(kFlows);
  if (symmetric) config.mapping = Mapping::address_and_port_dependent;
  std::vector<Bytes> packets;
  packets.reserve(kFlows);
  for (std::uint32_t i = 0; i < kFlows; ++i) {
    packets.push_back(symmetric
                          ? make_udp(kHost, Endpoint(IpAddress::v4(0xc6330000 + (i >> 8)),
                                                     static_cast<std::uint16_t>(1000 + (i & 255))))
                          : make_udp(nth_host(i), kServer));
  }
  SeededRandom rng(1);
  auto nat = std::make_unique<NatEngine>(config, rng);
  std::uint32_t i = 0;
  for (auto _ : state) {
    const Result r = nat->outbound(Instant{}, packets[i]);
    if (r.verdict != Verdict::forward) state.SkipWithError("new mapping refused");
    ++i;
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_NewMapping)->ArgName("symmetric")->Arg(0)->Arg(1)->Iterations(60000);

// Heap bytes per mapping at 100k mappings (each with its one session), engine included.
void BM_MemoryPerMapping(benchmark::State& state) {
  constexpr std::uint32_t kMappings = 100000;
  for (auto _ : state) {
    state.PauseTiming();
    const std::size_t before = mallinfo2().uordblks;
    SeededRandom rng(1);
    auto nat = std::make_unique<NatEngine>(bench_config(kMappings), rng);
    state.ResumeTiming();
    fill(*nat, kMappings, Instant{});
    state.PauseTiming();
    const std::size_t after = mallinfo2().uordblks;
    const Stats s = nat->stats();
    if (s.mappings_live != kMappings) state.SkipWithError("table not full");
    state.counters["bytes_per_mapping"] =
        static_cast<double>(after - before) / static_cast<double>(kMappings);
    state.counters["engine_estimate_per_mapping"] =
        static_cast<double>(nat->memory_bytes()) / static_cast<double>(kMappings);
    state.counters["mappings"] = static_cast<double>(s.mappings_live);
    nat.reset();
    state.ResumeTiming();
  }
  state.SetItemsProcessed(state.iterations() * kMappings);
}
BENCHMARK(BM_MemoryPerMapping)->Iterations(3)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace knit::nat

BENCHMARK_MAIN();
