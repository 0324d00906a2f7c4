// Peer-map deltas: for random maps A and B, applying delta(A, B) to A gives B; deltas that do
// not fit the map (unknown keys, duplicates, version gaps) are refused and leave it untouched.
// PeerTable (what clients keep, O(changed peers) a delta) is checked against apply_delta, the
// plain O(N) definition, on random chains of deltas.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <vector>

#include "base/bytes.hpp"
#include "base/random.hpp"
#include "control/peer_map.hpp"

namespace knit::control {
namespace {

NodeKey key_number(std::uint32_t n) {
  NodeKey key{};
  store_be32(key.data() + 28, n + 1);
  return key;
}

// A peer whose fields come from rng, with node key number `n`.
PeerInfo random_peer(Random& rng, std::uint32_t n) {
  PeerInfo peer;
  peer.node_key = key_number(n);
  peer.name = "n" + std::to_string(rng.uniform(4));
  rng.fill(peer.disco_key);
  peer.ipv4 = IpAddress::v4(0x64400000u + rng.uniform(4));
  std::uint8_t v6[16] = {0xfd};
  v6[15] = static_cast<std::uint8_t>(rng.uniform(3));
  peer.ipv6 = IpAddress::v6(v6);
  for (std::uint32_t i = rng.uniform(3); i > 0; --i) {
    peer.endpoints.emplace_back(IpAddress::v4(0xc0000200u + rng.uniform(3)),
                                static_cast<std::uint16_t>(1 + rng.uniform(3)));
  }
  peer.home_relay = rng.uniform(2) ? "fra" : "";
  peer.online = rng.uniform(2) == 1;
  peer.last_seen = rng.uniform(3);
  if (rng.uniform(3) == 0) peer.tags = {"tag:a"};
  if (rng.uniform(3) == 0) peer.routes = {IpPrefix::parse("10.0.0.0/8").value()};
  return peer;
}

// A map over a small key space, so that two maps share many keys and often whole entries.
std::vector<PeerInfo> random_map(Random& rng, std::uint32_t key_space) {
  std::vector<PeerInfo> map;
  for (std::uint32_t n = 0; n < key_space; ++n) {
    if (rng.uniform(3) != 0) map.push_back(random_peer(rng, n));
  }
  // Any order: the order of a map carries no meaning.
  for (std::size_t i = map.size(); i > 1; --i) {
    std::swap(map[i - 1], map[rng.uniform(static_cast<std::uint32_t>(i))]);
  }
  return map;
}

// Shares entries with `base`: some kept as they are, some edited, some dropped, some new.
std::vector<PeerInfo> mutate(Random& rng, const std::vector<PeerInfo>& base,
                             std::uint32_t key_space) {
  std::vector<PeerInfo> out;
  std::vector<bool> used(key_space * 2, false);
  for (const PeerInfo& peer : base) {
    const std::uint32_t roll = rng.uniform(4);
    const std::uint32_t n = load_be32(peer.node_key.data() + 28) - 1;
    if (roll == 0) continue;
    used[n] = true;
    if (roll == 1) {
      PeerInfo changed = random_peer(rng, n);
      out.push_back(changed);
    } else {
      out.push_back(peer);
    }
  }
  for (std::uint32_t n = 0; n < key_space * 2; ++n) {
    if (!used[n] && rng.uniform(5) == 0) out.push_back(random_peer(rng, n));
  }
  return out;
}

TEST(ControlPeerMap, ApplyingTheDeltaGivesTheTarget) {
  SeededRandom rng(2024);
  for (int round = 0; round < 2000; ++round) {
    const std::uint32_t key_space = 1 + rng.uniform(40);
    std::vector<PeerInfo> a = random_map(rng, key_space);
    const std::vector<PeerInfo> b =
        rng.uniform(2) ? mutate(rng, a, key_space) : random_map(rng, key_space);
    const PeerDelta delta = compute_delta(a, b);
    std::vector<PeerInfo> applied = a;
    ASSERT_TRUE(apply_delta(applied, delta)) << round;
    std::vector<PeerInfo> expected = b;
    sort_by_node_key(expected);
    ASSERT_EQ(applied, expected) << round;
    // Minimal: an unchanged entry is never sent.
    for (const PeerInfo& peer : delta.changed) {
      for (const PeerInfo& old : a) {
        if (old.node_key == peer.node_key) {
          EXPECT_NE(old, peer);
        }
      }
    }
    EXPECT_LE(delta.added.size() + delta.changed.size(), b.size());
    EXPECT_LE(delta.removed.size(), a.size());
  }
}

TEST(ControlPeerMap, SameMapGivesAnEmptyDelta) {
  SeededRandom rng(5);
  const auto a = random_map(rng, 30);
  auto shuffled = a;
  std::reverse(shuffled.begin(), shuffled.end());
  const PeerDelta delta = compute_delta(a, shuffled);
  EXPECT_TRUE(delta.added.empty());
  EXPECT_TRUE(delta.changed.empty());
  EXPECT_TRUE(delta.removed.empty());
}

TEST(ControlPeerMap, EachFieldCountsAsAChange) {
  SeededRandom rng(6);
  const PeerInfo base = random_peer(rng, 1);
  std::vector<void (*)(PeerInfo&)> edits = {
      [](PeerInfo& p) { p.name += "x"; },
      [](PeerInfo& p) { p.disco_key[0] ^= 1; },
      [](PeerInfo& p) { p.ipv4 = IpAddress::v4(1); },
      [](PeerInfo& p) { p.ipv6 = IpAddress::parse("fd00::99").value(); },
      [](PeerInfo& p) { p.endpoints.push_back(Endpoint::parse("192.0.2.99:9").value()); },
      [](PeerInfo& p) { p.home_relay = "nyc"; },
      [](PeerInfo& p) { p.online = !p.online; },
      [](PeerInfo& p) { p.last_seen += 1; },
      [](PeerInfo& p) { p.tags.push_back("new"); },
      [](PeerInfo& p) { p.routes.push_back(IpPrefix::parse("fd01::/64").value()); },
  };
  for (auto edit : edits) {
    PeerInfo changed = base;
    edit(changed);
    const PeerDelta delta = compute_delta({base}, {changed});
    ASSERT_EQ(delta.changed.size(), 1u);
    EXPECT_EQ(delta.changed[0], changed);
  }
}

TEST(ControlPeerMap, InconsistentDeltasAreRefusedAndLeaveTheMapAlone) {
  SeededRandom rng(7);
  std::vector<PeerInfo> map = {random_peer(rng, 1), random_peer(rng, 2), random_peer(rng, 3)};
  const std::vector<PeerInfo> before = map;

  PeerDelta remove_unknown;
  remove_unknown.removed = {key_number(2), key_number(99)};
  EXPECT_FALSE(apply_delta(map, remove_unknown));
  EXPECT_EQ(map, before);

  PeerDelta change_unknown;
  change_unknown.changed = {random_peer(rng, 50)};
  EXPECT_FALSE(apply_delta(map, change_unknown));

  PeerDelta add_existing;
  add_existing.added = {random_peer(rng, 4), random_peer(rng, 1)};
  EXPECT_FALSE(apply_delta(map, add_existing));

  PeerDelta twice;
  twice.changed = {random_peer(rng, 1)};
  twice.removed = {key_number(1)};
  EXPECT_FALSE(apply_delta(map, twice));

  PeerDelta added_twice;
  added_twice.added = {random_peer(rng, 8), random_peer(rng, 8)};
  EXPECT_FALSE(apply_delta(map, added_twice));
  EXPECT_EQ(map, before);

  PeerDelta fine;
  fine.removed = {key_number(2)};
  fine.added = {random_peer(rng, 9)};
  ASSERT_TRUE(apply_delta(map, fine));
  EXPECT_EQ(map.size(), 3u);
}

TEST(ControlPeerMap, VersionsMustFollowOneAnother) {
  SeededRandom rng(8);
  PeerMap map{10, {random_peer(rng, 1)}};
  PeerDelta delta;
  delta.added = {random_peer(rng, 2)};

  delta.version = 12;  // a gap: 11 was missed
  EXPECT_FALSE(apply_delta(map, delta));
  delta.version = 10;  // a replay
  EXPECT_FALSE(apply_delta(map, delta));
  EXPECT_EQ(map.version, 10u);
  EXPECT_EQ(map.peers.size(), 1u);

  delta.version = 11;
  ASSERT_TRUE(apply_delta(map, delta));
  EXPECT_EQ(map.version, 11u);
  EXPECT_EQ(map.peers.size(), 2u);

  // A delta that does not fit does not move the version either.
  PeerDelta bad;
  bad.version = 12;
  bad.removed = {key_number(77)};
  EXPECT_FALSE(apply_delta(map, bad));
  EXPECT_EQ(map.version, 11u);

  PeerMap last{~std::uint64_t{0}, {}};
  PeerDelta wrap;
  wrap.version = 0;
  EXPECT_FALSE(apply_delta(last, wrap));
}

TEST(ControlPeerMap, LargeMapsAreQuick) {
  SeededRandom rng(9);
  std::vector<PeerInfo> a;
  for (std::uint32_t n = 0; n < 10000; ++n) a.push_back(random_peer(rng, n));
  std::vector<PeerInfo> b = a;
  b[17].online = !b[17].online;
  b.erase(b.begin() + 500);
  b.push_back(random_peer(rng, 20000));
  const PeerDelta delta = compute_delta(a, b);
  EXPECT_EQ(delta.added.size(), 1u);
  EXPECT_EQ(delta.changed.size(), 1u);
  EXPECT_EQ(delta.removed.size(), 1u);
  ASSERT_TRUE(apply_delta(a, delta));
  sort_by_node_key(b);
  EXPECT_EQ(a, b);
}

std::vector<PeerInfo> sorted(std::vector<PeerInfo> peers) {
  sort_by_node_key(peers);
  return peers;
}

TEST(ControlPeerTable, MatchesTheReferenceOverChainsOfDeltas) {
  SeededRandom rng(31);
  for (int round = 0; round < 300; ++round) {
    const std::uint32_t key_space = 1 + rng.uniform(60);
    PeerMap reference{rng.uniform(1000), random_map(rng, key_space)};
    PeerTable table;
    ASSERT_TRUE(table.reset(reference));
    for (int step = 0; step < 20; ++step) {
      const std::vector<PeerInfo> next =
          rng.uniform(4) ? mutate(rng, reference.peers, key_space) : random_map(rng, key_space);
      PeerDelta delta = compute_delta(reference.peers, next);
      delta.version = reference.version + 1;
      ASSERT_TRUE(apply_delta(reference, delta));
      ASSERT_TRUE(table.apply(delta)) << round << "/" << step;
      ASSERT_EQ(table.map().version, reference.version);
      ASSERT_EQ(sorted(table.map().peers), sorted(reference.peers)) << round << "/" << step;
      for (const PeerInfo& peer : reference.peers) {
        const PeerInfo* found = table.find(peer.node_key);
        ASSERT_NE(found, nullptr);
        EXPECT_EQ(*found, peer);
      }
    }
  }
}

TEST(ControlPeerTable, RefusesWhatTheReferenceRefusesAndStaysAsItWas) {
  SeededRandom rng(32);
  PeerMap map{5, {random_peer(rng, 1), random_peer(rng, 2), random_peer(rng, 3)}};
  PeerTable table;
  ASSERT_TRUE(table.reset(map));
  const PeerMap before = table.map();
  std::vector<PeerDelta> bad(6);
  bad[0].removed = {key_number(2), key_number(99)};
  bad[1].changed = {random_peer(rng, 50)};
  bad[2].added = {random_peer(rng, 4), random_peer(rng, 1)};
  bad[3].changed = {random_peer(rng, 1)};
  bad[3].removed = {key_number(1)};
  bad[4].added = {random_peer(rng, 8), random_peer(rng, 8)};
  bad[5].added = {random_peer(rng, 9)};
  for (std::size_t i = 0; i < bad.size(); ++i) {
    bad[i].version = i == 5 ? 7 : 6;  // the last one skips a version
    PeerMap copy = map;
    EXPECT_FALSE(apply_delta(copy, bad[i])) << i;
    EXPECT_FALSE(table.apply(bad[i])) << i;
    EXPECT_EQ(table.map(), before) << i;
  }
  // Two peers with one key are not a map.
  PeerTable other;
  EXPECT_FALSE(other.reset(PeerMap{1, {random_peer(rng, 1), random_peer(rng, 1)}}));
}

// O(changed): a small delta on a 40,000-peer table costs about what it costs on a 4,000-peer
// one (an O(N) apply would take ten times as long). Measured as the time for 2,000 such
// deltas, with a margin for a busy machine.
TEST(ControlPeerTable, ADeltaCostsWhatItChangesNotTheMapSize) {
  SeededRandom rng(33);
  auto time_deltas = [&](std::uint32_t size) {
    PeerMap map{1, {}};
    for (std::uint32_t n = 0; n < size; ++n) map.peers.push_back(random_peer(rng, n));
    PeerTable table;
    EXPECT_TRUE(table.reset(map));
    std::vector<PeerDelta> deltas;
    for (std::uint32_t i = 0; i < 2000; ++i) {
      PeerDelta d;
      d.version = 2 + i;
      if (i % 2 == 0) {
        d.added = {random_peer(rng, size + i)};
      } else {
        d.removed = {key_number(size + i - 1)};
        PeerInfo changed = *table.find(key_number(i % size));
        changed.online = !changed.online;
        d.changed = {changed};
      }
      deltas.push_back(std::move(d));
    }
    // The first add grows the vector and the index once (amortised O(1)): not timed.
    auto start = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < deltas.size(); ++i) {
      if (i == 2) start = std::chrono::steady_clock::now();
      if (i % 2 == 1) {  // the changed peer as the table holds it now
        PeerInfo current = *table.find(deltas[i].changed[0].node_key);
        current.online = !current.online;
        deltas[i].changed[0] = current;
      }
      EXPECT_TRUE(table.apply(deltas[i]));
    }
    return std::chrono::steady_clock::now() - start;
  };
  // The fastest of three runs of each size, so a busy machine (CI runs tests in parallel) does
  // not decide the verdict. 16x the peers: O(changed) stays within 5x, O(all peers) would not.
  auto fastest = [&](std::uint32_t size) {
    auto best = time_deltas(size);
    for (int run = 0; run < 2; ++run) best = std::min(best, time_deltas(size));
    return best;
  };
  const auto small = fastest(2500);
  const auto large = fastest(40000);
  EXPECT_LT(large, small * 5 + std::chrono::milliseconds(5))
      << std::chrono::duration<double, std::milli>(small).count() << " ms vs "
      << std::chrono::duration<double, std::milli>(large).count() << " ms";
}

}  // namespace
}  // namespace knit::control
