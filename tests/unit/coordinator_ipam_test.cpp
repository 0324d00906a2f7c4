// Address allocation: the usable range of a prefix, IPv6 derived from IPv4, next-fit from free
// ranges against a naive reference, and, through the store, no reuse across nodes, stability per node key and a
// clean mesh_full on a tiny prefix.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <map>
#include <set>
#include <utility>
#include <vector>

#include "tests/support/temp_dir.hpp"
#include "base/random.hpp"
#include "coordinator/ipam.hpp"
#include "coordinator/mesh_settings.hpp"
#include "coordinator/sqlite_store.hpp"

namespace knit::coordinator {
namespace {

namespace fs = std::filesystem;

IpPrefix prefix(const char* text) { return IpPrefix::parse(text).value(); }

const IpPrefix kUla = prefix("fd12:3456:789a::/48");

TEST(Ipam, UsableRangeSkipsNetworkFirstAndBroadcast) {
  struct Case {
    const char* prefix;
    const char* first;
    const char* last;
    std::uint64_t capacity;
  };
  const Case cases[] = {
      {"100.64.0.0/10", "100.64.0.2", "100.127.255.254", (1u << 22) - 3},
      {"10.0.0.0/24", "10.0.0.2", "10.0.0.254", 253},
      {"10.0.0.0/29", "10.0.0.2", "10.0.0.6", 5},
      {"10.0.0.0/30", "10.0.0.2", "10.0.0.2", 1},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.prefix);
    auto ipam = Ipam::make(prefix(c.prefix), kUla);
    ASSERT_TRUE(ipam);
    EXPECT_EQ(IpAddress::v4(ipam->first_host()).to_string(), c.first);
    EXPECT_EQ(IpAddress::v4(ipam->last_host()).to_string(), c.last);
    EXPECT_EQ(ipam->capacity(), c.capacity);
  }
}

TEST(Ipam, RefusesUnusablePrefixes) {
  EXPECT_FALSE(Ipam::make(prefix("10.0.0.0/31"), kUla));
  EXPECT_FALSE(Ipam::make(prefix("10.0.0.0/32"), kUla));
  EXPECT_FALSE(Ipam::make(prefix("10.0.0.1/24"), kUla));  // host bits set
  EXPECT_FALSE(Ipam::make(prefix("fd00::/64"), kUla));
  EXPECT_FALSE(Ipam::make(prefix("10.0.0.0/24"), prefix("2001:db8::/48")));  // not a ULA
  EXPECT_FALSE(Ipam::make(prefix("10.0.0.0/24"), prefix("fd00::/64")));
  EXPECT_NE(Ipam::why_invalid_ipv4(prefix("10.0.0.1/24")).find("10.0.0.0/24"), std::string::npos);
  EXPECT_TRUE(Ipam::why_invalid_ipv4(prefix("10.0.0.0/24")).empty());
}

TEST(Ipam, Ipv6IsTheUlaWithTheIpv4AsItsLastBits) {
  auto ipam = Ipam::make(prefix("100.64.0.0/10"), kUla);
  EXPECT_EQ(ipam->ipv6_for(IpAddress::parse("100.64.0.2").value()).to_string(), "fd12:3456:789a::6440:2");
  EXPECT_EQ(ipam->ipv6_for(IpAddress::parse("100.127.255.254").value()).to_string(),
            "fd12:3456:789a::647f:fffe");
}

TEST(Ipam, RandomUlaIsAFd48) {
  SeededRandom rng(5);
  IpPrefix a = random_ula_prefix(rng);
  IpPrefix b = random_ula_prefix(rng);
  EXPECT_EQ(a.length, 48);
  EXPECT_EQ(a.address.bytes()[0], 0xfd);
  for (int i = 6; i < 16; ++i) EXPECT_EQ(a.address.bytes()[i], 0);
  EXPECT_NE(a, b);
}

TEST(MeshSettings, ReadBackFromTheStoredRows) {
  auto none = mesh_settings_from(std::nullopt, std::string("fd00:1:2::/48"));
  ASSERT_TRUE(none);
  EXPECT_FALSE(*none);  // not set up yet
  auto both = mesh_settings_from(std::string("10.99.0.0/16"), std::string("fd00:1:2::/48"));
  ASSERT_TRUE(both);
  ASSERT_TRUE(*both);
  EXPECT_EQ((*both)->ipv4_prefix.to_string(), "10.99.0.0/16");
  EXPECT_EQ((*both)->ipv6_prefix.to_string(), "fd00:1:2::/48");
  // Damaged rows are an error naming them, not a mesh with garbage prefixes.
  for (const auto& [v4, v6] : std::vector<std::pair<std::string, std::string>>{
           {"10.99.0.0/16", "nonsense"},
           {"10.99.0.0", "fd00:1:2::/48"},
           {"10.99.0.0/31", "fd00:1:2::/48"},
           {"fd00::/64", "fd00:1:2::/48"}}) {
    auto bad = mesh_settings_from(v4, v6);
    ASSERT_FALSE(bad) << v4 << " " << v6;
    EXPECT_NE(bad.error().message.find("unusable mesh prefixes (" + v4 + ", " + v6 + ")"),
              std::string::npos)
        << bad.error().message;
  }
}

TEST(Ipam, NeverHandsOutTheResolverAddress) {
  auto ipam = Ipam::make(prefix("100.64.0.0/10"), kUla);
  ASSERT_TRUE(ipam);
  for (const FreeRange& r : ipam->free_ranges({}))
    EXPECT_FALSE(r.first <= kReservedIpv4 && kReservedIpv4 <= r.last);
  // Free ranges built before the address was reserved may still hold it: it is skipped.
  std::map<std::uint32_t, std::uint32_t> legacy = {{kReservedIpv4 - 1, kReservedIpv4 + 1}};
  auto floor = [&](std::uint32_t a) -> std::optional<FreeRange> {
    auto it = legacy.upper_bound(a);
    if (it == legacy.begin()) return std::nullopt;
    --it;
    return FreeRange{it->first, it->second};
  };
  auto above = [&](std::uint32_t a) -> std::optional<FreeRange> {
    auto it = legacy.upper_bound(a);
    if (it == legacy.end()) return std::nullopt;
    return FreeRange{it->first, it->second};
  };
  auto got = ipam->allocate(kReservedIpv4, floor, above);
  ASSERT_EQ(got.status, Ipam::Status::ok);
  EXPECT_NE(got.ipv4.v4_host_order(), kReservedIpv4);
  // The range that is only the reserved address is passed over.
  legacy = {{kReservedIpv4, kReservedIpv4}, {kReservedIpv4 + 5, kReservedIpv4 + 5}};
  got = ipam->allocate(kReservedIpv4, floor, above);
  ASSERT_EQ(got.status, Ipam::Status::ok);
  EXPECT_EQ(got.ipv4.v4_host_order(), kReservedIpv4 + 5);
  legacy = {{kReservedIpv4, kReservedIpv4}};
  EXPECT_EQ(ipam->allocate(kReservedIpv4, floor, above).status, Ipam::Status::mesh_full);
  // Giving it back is a no-op.
  EXPECT_TRUE(ipam->release(kReservedIpv4, floor, above).already_free);
}

// The free ranges as the store keeps them (first -> last), with its two look-ups.
class RangeIndex {
 public:
  explicit RangeIndex(const Ipam& ipam) : ipam_(ipam) {
    for (const FreeRange& r : ipam.free_ranges({})) ranges_[r.first] = r.last;
  }
  Ipam::RangeLookup floor() {
    return [this](std::uint32_t a) -> std::optional<FreeRange> {
      ++lookups;
      auto it = ranges_.upper_bound(a);
      if (it == ranges_.begin()) return std::nullopt;
      --it;
      return FreeRange{it->first, it->second};
    };
  }
  Ipam::RangeLookup above() {
    return [this](std::uint32_t a) -> std::optional<FreeRange> {
      ++lookups;
      auto it = ranges_.upper_bound(a);
      if (it == ranges_.end()) return std::nullopt;
      return FreeRange{it->first, it->second};
    };
  }
  Ipam::Allocation take(std::uint32_t cursor) {
    auto out = ipam_.allocate(cursor, floor(), above());
    if (out.status == Ipam::Status::ok) {
      ranges_.erase(out.from.first);
      for (const FreeRange& r : out.rest) ranges_[r.first] = r.last;
    }
    return out;
  }
  void give(std::uint32_t a) {
    auto release = ipam_.release(a, floor(), above());
    if (release.already_free) return;
    for (const FreeRange& r : release.remove) ranges_.erase(r.first);
    ranges_[release.merged.first] = release.merged.last;
  }
  std::vector<FreeRange> ranges() const {
    std::vector<FreeRange> out;
    for (const auto& [first, last] : ranges_) out.push_back(FreeRange{first, last});
    return out;
  }
  int lookups = 0;

 private:
  const Ipam& ipam_;
  std::map<std::uint32_t, std::uint32_t> ranges_;
};

TEST(Ipam, NextFitWrapsAroundAndReportsFull) {
  auto ipam = Ipam::make(prefix("10.0.0.0/29"), kUla);  // .2 .. .6
  RangeIndex index(*ipam);
  const std::uint32_t base = IpAddress::parse("10.0.0.0")->v4_host_order();

  auto a = index.take(0);  // a cursor outside the range starts at the first host
  ASSERT_EQ(a.status, Ipam::Status::ok);
  EXPECT_EQ(a.ipv4.to_string(), "10.0.0.2");
  EXPECT_EQ(a.next_cursor, base + 3);
  EXPECT_EQ(index.take(a.next_cursor).ipv4.to_string(), "10.0.0.3");
  EXPECT_EQ(index.take(base + 4).ipv4.to_string(), "10.0.0.4");
  EXPECT_EQ(index.take(base + 5).ipv4.to_string(), "10.0.0.5");
  a = index.take(base + 6);
  EXPECT_EQ(a.ipv4.to_string(), "10.0.0.6");
  EXPECT_EQ(a.next_cursor, base + 2);  // wraps

  index.give(base + 3);
  index.give(base + 3);  // twice is once
  a = index.take(base + 5);
  EXPECT_EQ(a.ipv4.to_string(), "10.0.0.3");  // wrapped past .6 to the free .3
  EXPECT_EQ(index.take(base + 4).status, Ipam::Status::mesh_full);
  index.give(base + 100);  // not the mesh's: ignored
  EXPECT_EQ(index.take(base + 4).status, Ipam::Status::mesh_full);
}

// Next-fit from the ranges against the obvious reference, a scan from the cursor that wraps;
// and after taking and giving back at random, the ranges are exactly the complement of what
// is used, merged. Each step costs at most three look-ups whatever the size.
TEST(Ipam, MatchesANaiveScanOnRandomTakesAndReleases) {
  auto ipam = Ipam::make(prefix("10.1.0.0/24"), kUla);
  SeededRandom rng(11);
  RangeIndex index(*ipam);
  std::set<std::uint32_t> used;
  std::uint32_t cursor = 0;
  for (int round = 0; round < 5000; ++round) {
    if (rng.uniform(100) < 60 || used.empty()) {
      std::optional<std::uint32_t> want;
      const std::uint32_t start = ipam->contains(IpAddress::v4(cursor)) ? cursor : ipam->first_host();
      for (std::uint64_t i = 0; i < ipam->capacity() && !want; ++i) {
        const auto a = static_cast<std::uint32_t>(
            ipam->first_host() + (start - ipam->first_host() + i) % ipam->capacity());
        if (!used.count(a)) want = a;
      }
      index.lookups = 0;
      auto got = index.take(cursor);
      EXPECT_LE(index.lookups, 4);
      if (!want) {
        ASSERT_EQ(got.status, Ipam::Status::mesh_full) << round;
        continue;
      }
      ASSERT_EQ(got.status, Ipam::Status::ok) << round;
      ASSERT_EQ(got.ipv4.v4_host_order(), *want) << "round " << round;
      used.insert(*want);
      cursor = got.next_cursor;
    } else {
      auto it = used.begin();
      std::advance(it, rng.uniform(static_cast<std::uint32_t>(used.size())));
      index.lookups = 0;
      index.give(*it);
      EXPECT_LE(index.lookups, 2);
      used.erase(it);
    }
    if (round % 50 == 0) {
      ASSERT_EQ(index.ranges(),
                ipam->free_ranges(std::vector<std::uint32_t>(used.begin(), used.end())))
          << round;
    }
  }
}

// ---- through the store ----

using knit::testing::TempDir;

wg::PublicKey key(std::uint8_t n) {
  wg::PublicKey k{};
  k.fill(n);
  return k;
}

class StoreIpam : public ::testing::Test {
 protected:
  void open(const char* v4_prefix) {
    auto s = SqliteStore::open(db_.db());
    ASSERT_TRUE(s);
    store_ = std::move(*s);
    ASSERT_TRUE(store_->ensure_mesh(IpPrefix::parse(v4_prefix), rng_));
    Token t;
    t.id = "00000000000000aa";
    t.secret_hash.fill(1);
    t.reusable = true;
    ASSERT_TRUE(store_->add_token(t));
  }
  Result<JoinResult> join(std::uint8_t n) {
    SecretHash h{};
    h.fill(1);
    return store_->join_node(NodeRegistration{key(n), key(n), "host" + std::to_string(n), ""},
                             PresentedToken{"00000000000000aa", h}, 100);
  }

  TempDir db_;
  SeededRandom rng_{9};
  std::unique_ptr<SqliteStore> store_;
};

TEST_F(StoreIpam, ExhaustionIsACleanMeshFullError) {
  open("10.9.0.0/29");
  std::set<std::string> v4, v6;
  for (std::uint8_t n = 1; n <= 5; ++n) {
    auto r = join(n);
    ASSERT_TRUE(r) << r.error().message;
    v4.insert(r->node.ipv4.to_string());
    v6.insert(r->node.ipv6.to_string());
  }
  EXPECT_EQ(v4,
            (std::set<std::string>{"10.9.0.2", "10.9.0.3", "10.9.0.4", "10.9.0.5", "10.9.0.6"}));
  EXPECT_EQ(v6.size(), 5u);

  auto full = join(6);
  ASSERT_FALSE(full);
  EXPECT_EQ(full.error().code, Errc::mesh_full);
  EXPECT_NE(full.error().message.find("10.9.0.0/29"), std::string::npos);
  EXPECT_FALSE(*store_->find_node(key(6)));
  // A known key still re-joins when the mesh is full.
  auto again = join(3);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->node.ipv4.to_string(), "10.9.0.4");
}

TEST_F(StoreIpam, ASlash30HoldsOneNode) {
  open("10.9.0.0/30");
  auto r = join(1);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->node.ipv4.to_string(), "10.9.0.2");
  EXPECT_EQ(join(2).error().code, Errc::mesh_full);
}

TEST_F(StoreIpam, AddressesAreStablePerKeyAndNeverShared) {
  open("10.9.0.0/24");
  std::map<std::uint8_t, Node> first;
  for (std::uint8_t n = 1; n <= 20; ++n) first[n] = join(n)->node;
  std::set<IpAddress> seen;
  for (auto& [n, node] : first) EXPECT_TRUE(seen.insert(node.ipv4).second);
  for (std::uint8_t n = 1; n <= 20; ++n) {
    auto again = join(n);
    EXPECT_EQ(again->node.ipv4, first[n].ipv4);
    EXPECT_EQ(again->node.ipv6, first[n].ipv6);
  }
}

TEST_F(StoreIpam, FreedAddressesAreNotHandedOutAtOnce) {
  open("10.9.0.0/29");  // .2 .. .6
  for (std::uint8_t n = 1; n <= 3; ++n) ASSERT_TRUE(join(n));  // .2 .3 .4
  ASSERT_TRUE(store_->remove_node("host2"));                   // frees .3
  EXPECT_EQ(join(4)->node.ipv4.to_string(), "10.9.0.5");
  EXPECT_EQ(join(5)->node.ipv4.to_string(), "10.9.0.6");
  EXPECT_EQ(join(6)->node.ipv4.to_string(), "10.9.0.3");  // wrapped: the only free one
  // Every live node still has a distinct address.
  std::set<IpAddress> seen;
  auto nodes = store_->list_nodes();
  ASSERT_TRUE(nodes);
  for (const auto& node : *nodes) EXPECT_TRUE(seen.insert(node.ipv4).second);
}

TEST_F(StoreIpam, TheAddressSurvivesReopening) {
  open("10.9.0.0/24");
  IpAddress before = join(1)->node.ipv4;
  store_.reset();
  auto s = SqliteStore::open(db_.db());
  ASSERT_TRUE(s);
  store_ = std::move(*s);
  EXPECT_EQ(join(1)->node.ipv4, before);
  EXPECT_NE(join(2)->node.ipv4, before);
}

}  // namespace
}  // namespace knit::coordinator
