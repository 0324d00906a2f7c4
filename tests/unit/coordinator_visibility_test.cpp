// Who sees whom under an access policy (coordinator/visibility.hpp), against a naive evaluator
// over random meshes and rule sets: a and b see each other when a rule of either accepts flows
// from the other's addresses, or either is a carrier, or either accepts flows from everywhere.
#include <gtest/gtest.h>

#include <vector>

#include "base/random.hpp"
#include "coordinator/visibility.hpp"

namespace knit::coordinator {
namespace {

control::NodeKey key_of(std::size_t i) {
  control::NodeKey k{};
  k[0] = static_cast<std::uint8_t>(i);
  k[1] = static_cast<std::uint8_t>(i >> 8);
  k[31] = 0x5a;
  return k;
}
IpAddress v4_of(std::size_t i) { return IpAddress::v4(0x64400000u + static_cast<std::uint32_t>(i) + 1); }
IpAddress v6_of(std::size_t i) {
  std::array<std::uint8_t, 16> b{0xfd, 0x7a, 0x11, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  b[14] = static_cast<std::uint8_t>((i + 1) >> 8);
  b[15] = static_cast<std::uint8_t>(i + 1);
  return IpAddress::v6(b.data());
}

struct World {
  std::vector<Visibility::Node> nodes;
  std::vector<policy::RuleSet> sets;
};

World random_world(Random& rng, std::size_t n) {
  World w;
  w.sets.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    std::vector<policy::CompiledRule> rules;
    const std::size_t count = rng.next_u64() % 4;
    for (std::size_t r = 0; r < count; ++r) {
      policy::CompiledRule rule;
      rule.rule = static_cast<std::uint32_t>(r);
      rule.name = "r" + std::to_string(r);
      rule.ports = {policy::kAllPorts};
      const auto kind = rng.next_u64() % 20;
      if (kind == 0) {
        rule.src = {IpPrefix::parse("0.0.0.0/0").value(), IpPrefix::parse("::/0").value()};  // `*`
      } else if (kind < 4) {  // a range of the mesh, host bits in the address as people write them
        const std::size_t j = rng.next_u64() % n;
        rule.src = {IpPrefix{v4_of(j), static_cast<std::uint8_t>(26 + rng.next_u64() % 6)}};
      } else {
        const std::size_t hosts = 1 + rng.next_u64() % 3;
        for (std::size_t h = 0; h < hosts; ++h) {
          const std::size_t j = rng.next_u64() % n;
          rule.src.push_back(rng.next_u64() % 2 ? IpPrefix{v4_of(j), 32} : IpPrefix{v6_of(j), 128});
        }
      }
      rules.push_back(std::move(rule));
    }
    w.sets.emplace_back(std::move(rules));
  }
  for (std::size_t i = 0; i < n; ++i)
    w.nodes.push_back({key_of(i), v4_of(i), v6_of(i), rng.next_u64() % 25 == 0, &w.sets[i]});
  return w;
}

bool accepts_from(const Visibility::Node& into, const Visibility::Node& from) {
  for (const policy::CompiledRule& rule : into.rules->rules())
    for (const IpPrefix& p : rule.src)
      if (policy::prefix_contains(p, from.ipv4) || policy::prefix_contains(p, from.ipv6)) return true;
  return false;
}
bool open(const Visibility::Node& n) {
  for (const policy::CompiledRule& rule : n.rules->rules())
    for (const IpPrefix& p : rule.src)
      if (p.length == 0) return true;
  return false;
}
bool naive(const Visibility::Node& a, const Visibility::Node& b) {
  if (a.key == b.key) return false;
  return a.carrier || b.carrier || open(a) || open(b) || accepts_from(a, b) || accepts_from(b, a);
}

}  // namespace

TEST(CoordinatorVisibility, MatchesANaiveEvaluatorOnRandomMeshes) {
  SeededRandom rng(2026);
  std::size_t pairs = 0, seen = 0;
  for (int round = 0; round < 40; ++round) {
    const World w = random_world(rng, 2 + rng.next_u64() % 60);
    const Visibility v = Visibility::build(w.nodes);
    for (const auto& a : w.nodes)
      for (const auto& b : w.nodes) {
        ASSERT_EQ(v.sees(a.key, b.key), naive(a, b)) << "round " << round;
        ASSERT_EQ(v.sees(a.key, b.key), v.sees(b.key, a.key));  // symmetric
        ++pairs;
        seen += v.sees(a.key, b.key) ? 1 : 0;
      }
  }
  EXPECT_GT(seen, pairs / 20);  // the worlds are neither empty nor all-open
  EXPECT_LT(seen, pairs / 2);
}

TEST(CoordinatorVisibility, StrangersSeeOnlyOpenNodesAndCarriers) {
  policy::CompiledRule everyone;
  everyone.name = "all";
  everyone.ports = {policy::kAllPorts};
  everyone.src = {IpPrefix::parse("0.0.0.0/0").value()};
  policy::CompiledRule from_b;
  from_b.name = "b";
  from_b.ports = {policy::kAllPorts};
  from_b.src = {IpPrefix{v4_of(1), 32}};
  using Rules = std::vector<policy::CompiledRule>;
  std::vector<policy::RuleSet> sets;
  sets.emplace_back(Rules{from_b});
  sets.emplace_back(Rules{});
  sets.emplace_back(Rules{everyone});
  sets.emplace_back(Rules{});
  const std::vector<Visibility::Node> nodes{{key_of(0), v4_of(0), v6_of(0), false, &sets[0]},
                                            {key_of(1), v4_of(1), v6_of(1), false, &sets[1]},
                                            {key_of(2), v4_of(2), v6_of(2), false, &sets[2]},   // open
                                            {key_of(3), v4_of(3), v6_of(3), true, &sets[3]}};  // carrier
  const Visibility v = Visibility::build(nodes);
  EXPECT_TRUE(v.sees(key_of(0), key_of(1)));
  EXPECT_TRUE(v.sees(key_of(1), key_of(0)));
  EXPECT_FALSE(v.sees(key_of(0), key_of(0)));
  EXPECT_TRUE(v.sees(key_of(0), key_of(2)));
  EXPECT_TRUE(v.sees(key_of(2), key_of(1)));
  EXPECT_TRUE(v.sees(key_of(1), key_of(3)));
  const control::NodeKey stranger = key_of(99);  // joined since the build
  EXPECT_FALSE(v.sees(stranger, key_of(0)));
  EXPECT_FALSE(v.sees(key_of(0), stranger));
  EXPECT_TRUE(v.sees(stranger, key_of(2)));
  EXPECT_TRUE(v.sees(stranger, key_of(3)));
  EXPECT_TRUE(v.sees(key_of(2), stranger));
  EXPECT_EQ(v.pair_entries(), 2u);  // 0-1 and 1-0; open nodes and carriers are not listed
}

}  // namespace knit::coordinator
