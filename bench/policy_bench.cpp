// The access policy's cost on knitd's inbound packet path (PacketFilter::inbound, which runs
// the NAT engine and then the policy): per packet with no policy against a 1,000-rule policy,
// for the packets that matter — an established inbound flow (the policy's flow table), a reply
// to this host's own flow (the engine's), and the first packet of a flow matched against all
// 1,000 rules (RuleSet::match alone, the worst case: no rule matches). Issue 16's target: at
// most 100 ns added per packet of an established flow.
#include <benchmark/benchmark.h>

#include <cstring>

#include "agent/packet_filter.hpp"
#include "base/random.hpp"
#include "nat/packet_builder.hpp"
#include "nat/wire.hpp"
#include "policy/compile.hpp"
#include "policy/wire.hpp"

namespace knit::agent {
namespace {

const IpAddress kSelf = *IpAddress::parse("100.64.0.1");
const Endpoint kPeer = *Endpoint::parse("100.64.0.2:40000");
const Endpoint kSelfService = *Endpoint::parse("100.64.0.1:5432");

// 1,000 rules, each from its own /32 to its own port; the last accepts kPeer -> 5432/tcp.
policy::RuleSet thousand_rules() {
  std::vector<policy::CompiledRule> rules;
  for (std::uint32_t i = 0; i < 1000; ++i) {
    policy::CompiledRule r;
    r.rule = i;
    r.name = "rule " + std::to_string(i + 1);
    r.protocols = policy::kTcp | policy::kUdp;
    r.src = {{IpAddress::v4(0x0a000000u + i), 32}, {*IpAddress::parse("fd00::1"), 128}};
    r.dst = {{kSelf, 32}};
    r.ports = {{static_cast<std::uint16_t>(10000 + i), static_cast<std::uint16_t>(10000 + i)}};
    rules.push_back(std::move(r));
  }
  rules.back().src.push_back({kPeer.address(), 32});
  rules.back().ports = {{5432, 5432}};
  return policy::RuleSet(std::move(rules));
}

struct Bench {
  explicit Bench(bool with_policy) : rng(1), filter(rng) {
    filter.set_mesh_address(kSelf);
    if (with_policy) filter.policy().apply(thousand_rules(), 1);
  }
  SeededRandom rng;
  PacketFilter filter;
  Instant now{};
};

void run(benchmark::State& state, Bench& b, const Bytes& original) {
  Bytes packet = original;
  for (auto _ : state) {
    std::memcpy(packet.data(), original.data(), original.size());
    benchmark::DoNotOptimize(b.filter.inbound(b.now, packet));
  }
}

// A TCP segment of a flow the peer opened (accepted by the last rule).
void BM_EstablishedInboundFlow(benchmark::State& state) {
  Bench b(state.range(0) != 0);
  Bytes syn = nat::make_tcp(kPeer, kSelfService, nat::kTcpSyn);
  if (b.filter.inbound(b.now, syn) == 0) state.SkipWithError("the SYN was refused");
  run(state, b, nat::make_tcp(kPeer, kSelfService, nat::kTcpAck, Bytes(1200, 0xab)));
}
BENCHMARK(BM_EstablishedInboundFlow)->Arg(0)->Arg(1)->ArgName("policy_1000_rules");

// A reply to a flow this host opened: the engine passes it; the policy looks it up once.
void BM_ReplyToOwnFlow(benchmark::State& state) {
  Bench b(state.range(0) != 0);
  const Endpoint own = *Endpoint::parse("100.64.0.1:41000");
  const Endpoint server = *Endpoint::parse("100.64.0.9:80");
  Bytes syn = nat::make_tcp(own, server, nat::kTcpSyn);
  b.filter.outbound(b.now, syn);
  Bytes syn_ack = nat::make_tcp(server, own, nat::kTcpSyn | nat::kTcpAck);
  b.filter.inbound(b.now, syn_ack);
  run(state, b, nat::make_tcp(server, own, nat::kTcpAck, Bytes(1200, 0xab)));
}
BENCHMARK(BM_ReplyToOwnFlow)->Arg(0)->Arg(1)->ArgName("policy_1000_rules");

// The first packet of a flow, against all 1,000 rules: no rule matches (the worst case).
void BM_MatchNewFlow(benchmark::State& state) {
  const policy::RuleSet rules = thousand_rules();
  const policy::FlowKey flow{*IpAddress::parse("100.64.0.7"), kSelf, 6, 5432};
  for (auto _ : state) benchmark::DoNotOptimize(rules.match(flow));
}
BENCHMARK(BM_MatchNewFlow);

}  // namespace
}  // namespace knit::agent

BENCHMARK_MAIN();
