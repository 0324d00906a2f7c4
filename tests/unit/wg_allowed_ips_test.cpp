// Allowed IPs: hand-written cases, then a differential test against a deliberately naive
// table (a vector scanned for the longest matching prefix) on random inputs.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <optional>
#include <string>
#include <vector>

#include "base/ip.hpp"
#include "base/random.hpp"
#include "wg/allowed_ips.hpp"

// Counts heap allocations so a test can prove that lookups make none. GCC cannot see that
// these replacements pair malloc with free and warns at every inlined new/delete.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
namespace {
std::atomic<long> g_allocations{0};
}  // namespace

void* operator new(std::size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t size) { return operator new(size); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }

namespace knit::wg {
namespace {

IpPrefix P(const char* text) {
  auto prefix = IpPrefix::parse(text);
  EXPECT_TRUE(prefix) << text;
  return prefix.value_or(IpPrefix{});
}
IpAddress A(const char* text) {
  auto address = IpAddress::parse(text);
  EXPECT_TRUE(address) << text;
  return address.value_or(IpAddress{});
}

using Table = AllowedIps<int>;

TEST(AllowedIps, EmptyTableMatchesNothing) {
  Table table;
  EXPECT_EQ(table.size(), 0u);
  EXPECT_TRUE(table.empty());
  EXPECT_EQ(table.lookup(A("10.0.0.1")), std::nullopt);
  EXPECT_EQ(table.lookup(A("::1")), std::nullopt);
  EXPECT_FALSE(table.remove(P("10.0.0.0/8")));
  EXPECT_TRUE(table.prefixes_of(1).empty());
}

TEST(AllowedIps, LongestPrefixWinsAmongOverlapping) {
  Table table;
  table.insert(P("10.0.0.0/8"), 1);
  table.insert(P("10.1.0.0/16"), 2);
  table.insert(P("10.1.2.0/24"), 3);
  table.insert(P("10.1.2.3/32"), 4);
  table.insert(P("10.128.0.0/9"), 5);
  EXPECT_EQ(table.size(), 5u);
  EXPECT_EQ(table.lookup(A("10.1.2.3")), 4);
  EXPECT_EQ(table.lookup(A("10.1.2.4")), 3);
  EXPECT_EQ(table.lookup(A("10.1.3.1")), 2);
  EXPECT_EQ(table.lookup(A("10.2.0.0")), 1);
  EXPECT_EQ(table.lookup(A("10.127.255.255")), 1);
  EXPECT_EQ(table.lookup(A("10.128.0.0")), 5);
  EXPECT_EQ(table.lookup(A("10.255.255.255")), 5);
  EXPECT_EQ(table.lookup(A("11.0.0.0")), std::nullopt);
  EXPECT_EQ(table.lookup(A("9.255.255.255")), std::nullopt);
  // Inserted in the other order, the same answers.
  Table reversed;
  reversed.insert(P("10.128.0.0/9"), 5);
  reversed.insert(P("10.1.2.3/32"), 4);
  reversed.insert(P("10.1.2.0/24"), 3);
  reversed.insert(P("10.1.0.0/16"), 2);
  reversed.insert(P("10.0.0.0/8"), 1);
  for (const char* a : {"10.1.2.3", "10.1.2.4", "10.1.3.1", "10.2.0.0", "10.128.0.0", "11.0.0.0"})
    EXPECT_EQ(reversed.lookup(A(a)), table.lookup(A(a))) << a;
}

TEST(AllowedIps, SiblingsThatForkDeepInside) {
  Table table;
  // 10.0.0.0/16 and 10.1.0.0/16 share 15 bits: the trie forks at /15 without storing it.
  table.insert(P("10.0.0.0/16"), 1);
  table.insert(P("10.1.0.0/16"), 2);
  EXPECT_EQ(table.lookup(A("10.0.9.9")), 1);
  EXPECT_EQ(table.lookup(A("10.1.9.9")), 2);
  EXPECT_EQ(table.lookup(A("10.2.0.0")), std::nullopt);
  EXPECT_FALSE(table.remove(P("10.0.0.0/15")));  // the fork is not a stored prefix
  EXPECT_EQ(table.size(), 2u);
  table.insert(P("10.0.0.0/15"), 3);  // now it is
  EXPECT_EQ(table.lookup(A("10.0.9.9")), 1);
  EXPECT_EQ(table.size(), 3u);
  EXPECT_TRUE(table.remove(P("10.0.0.0/16")));
  EXPECT_EQ(table.lookup(A("10.0.9.9")), 3);
  EXPECT_EQ(table.lookup(A("10.1.9.9")), 2);
}

TEST(AllowedIps, DefaultRoutesPerFamily) {
  Table table;
  table.insert(P("0.0.0.0/0"), 1);
  EXPECT_EQ(table.lookup(A("1.2.3.4")), 1);
  EXPECT_EQ(table.lookup(A("255.255.255.255")), 1);
  EXPECT_EQ(table.lookup(A("::")), std::nullopt);  // the families never mix
  EXPECT_EQ(table.lookup(A("::ffff:1.2.3.4")), std::nullopt);
  table.insert(P("::/0"), 2);
  EXPECT_EQ(table.lookup(A("fd00::1")), 2);
  EXPECT_EQ(table.lookup(A("::ffff:1.2.3.4")), 2);
  EXPECT_EQ(table.lookup(A("1.2.3.4")), 1);
  table.insert(P("1.2.3.0/24"), 3);
  EXPECT_EQ(table.lookup(A("1.2.3.4")), 3);
  EXPECT_EQ(table.lookup(A("1.2.4.4")), 1);
  EXPECT_TRUE(table.remove(P("0.0.0.0/0")));
  EXPECT_EQ(table.lookup(A("1.2.4.4")), std::nullopt);
  EXPECT_EQ(table.lookup(A("1.2.3.4")), 3);
}

TEST(AllowedIps, HostPrefixesBothFamilies) {
  Table table;
  table.insert(P("192.0.2.1/32"), 1);
  table.insert(P("2001:db8::1/128"), 2);
  table.insert(P("2001:db8::/64"), 3);
  EXPECT_EQ(table.lookup(A("192.0.2.1")), 1);
  EXPECT_EQ(table.lookup(A("192.0.2.0")), std::nullopt);
  EXPECT_EQ(table.lookup(A("192.0.2.2")), std::nullopt);
  EXPECT_EQ(table.lookup(A("2001:db8::1")), 2);
  EXPECT_EQ(table.lookup(A("2001:db8::")), 3);
  EXPECT_EQ(table.lookup(A("2001:db8::2")), 3);
  EXPECT_EQ(table.lookup(A("2001:db8:0:1::1")), std::nullopt);
  // The fast paths read raw header bytes.
  const std::uint8_t v4[4] = {192, 0, 2, 1};
  EXPECT_EQ(table.lookup_v4(v4), 1);
  EXPECT_EQ(table.lookup_v6(A("2001:db8::ffff").bytes()), 3);
  EXPECT_EQ(table.lookup_v6(A("2001:db8::1").bytes()), 2);
}

TEST(AllowedIps, HostBitsAreMasked) {
  Table table;
  table.insert(P("192.168.1.77/24"), 1);
  table.insert(P("fd00::1:2:3:4/64"), 2);
  EXPECT_EQ(table.lookup(A("192.168.1.200")), 1);
  EXPECT_EQ(table.prefixes_of(1), std::vector<IpPrefix>{P("192.168.1.0/24")});
  EXPECT_EQ(table.prefixes_of(2), std::vector<IpPrefix>{P("fd00::/64")});
  // The same prefix written with other host bits is the same prefix.
  table.insert(P("192.168.1.1/24"), 3);
  EXPECT_EQ(table.size(), 2u);
  EXPECT_TRUE(table.remove(P("192.168.1.5/24")));
  EXPECT_TRUE(table.remove(P("fd00::9/64")));
  EXPECT_EQ(table.size(), 0u);
}

TEST(AllowedIps, InsertingAnOwnedPrefixReownsIt) {
  Table table;
  table.insert(P("10.0.0.0/8"), 1);
  table.insert(P("10.9.0.0/16"), 1);
  table.insert(P("10.0.0.0/8"), 2);  // WireGuard moves the prefix to the newest owner
  EXPECT_EQ(table.size(), 2u);
  EXPECT_EQ(table.lookup(A("10.1.1.1")), 2);
  EXPECT_EQ(table.lookup(A("10.9.1.1")), 1);
  EXPECT_EQ(table.prefixes_of(1), std::vector<IpPrefix>{P("10.9.0.0/16")});
  EXPECT_EQ(table.prefixes_of(2), std::vector<IpPrefix>{P("10.0.0.0/8")});
}

TEST(AllowedIps, RemovalFallsBackToShorterPrefixes) {
  Table table;
  table.insert(P("10.0.0.0/8"), 1);
  table.insert(P("10.1.0.0/16"), 2);
  table.insert(P("10.1.2.0/24"), 3);
  EXPECT_TRUE(table.remove(P("10.1.0.0/16")));
  EXPECT_FALSE(table.remove(P("10.1.0.0/16")));
  EXPECT_FALSE(table.remove(P("10.1.0.0/17")));
  EXPECT_FALSE(table.remove(P("10.1.2.0/25")));
  EXPECT_EQ(table.size(), 2u);
  EXPECT_EQ(table.lookup(A("10.1.2.9")), 3);
  EXPECT_EQ(table.lookup(A("10.1.3.9")), 1);
  EXPECT_TRUE(table.remove(P("10.1.2.0/24")));
  EXPECT_EQ(table.lookup(A("10.1.2.9")), 1);
  EXPECT_TRUE(table.remove(P("10.0.0.0/8")));
  EXPECT_EQ(table.lookup(A("10.1.2.9")), std::nullopt);
  EXPECT_EQ(table.size(), 0u);
}

TEST(AllowedIps, RemoveValueTakesEveryPrefixOfOneOwner) {
  Table table;
  table.insert(P("10.0.0.0/8"), 1);
  table.insert(P("10.1.0.0/16"), 2);
  table.insert(P("10.1.2.0/24"), 1);
  table.insert(P("fd00::/8"), 1);
  table.insert(P("fd00:1::/32"), 2);
  table.remove_value(1);
  EXPECT_EQ(table.size(), 2u);
  EXPECT_TRUE(table.prefixes_of(1).empty());
  EXPECT_EQ(table.lookup(A("10.1.2.3")), 2);
  EXPECT_EQ(table.lookup(A("10.2.0.0")), std::nullopt);
  EXPECT_EQ(table.lookup(A("fd00:1::1")), 2);
  EXPECT_EQ(table.lookup(A("fd00:2::1")), std::nullopt);
  table.remove_value(7);  // owns nothing: no change
  EXPECT_EQ(table.size(), 2u);
}

TEST(AllowedIps, PrefixesOfIsSortedV4FirstThenAddressThenLength) {
  Table table;
  for (const char* p : {"fd00::/8", "10.1.0.0/16", "::/0", "10.0.0.0/8", "192.168.0.0/16",
                        "10.0.0.0/24", "2001:db8::/32", "0.0.0.0/0"})
    table.insert(P(p), 1);
  table.insert(P("172.16.0.0/12"), 2);
  std::vector<std::string> got;
  for (const IpPrefix& p : table.prefixes_of(1)) got.push_back(p.to_string());
  EXPECT_EQ(got, (std::vector<std::string>{"0.0.0.0/0", "10.0.0.0/8", "10.0.0.0/24", "10.1.0.0/16",
                                           "192.168.0.0/16", "::/0", "2001:db8::/32", "fd00::/8"}));
  int visited = 0;
  table.for_each([&](const IpPrefix&, const int&) { ++visited; });
  EXPECT_EQ(visited, 9);
}

TEST(AllowedIps, RejectsLengthsBeyondTheFamily) {
  Table table;
  EXPECT_FALSE(table.insert(IpPrefix{A("10.0.0.0"), 33}, 1));
  EXPECT_FALSE(table.insert(IpPrefix{A("fd00::"), 129}, 1));
  EXPECT_FALSE(table.remove(IpPrefix{A("10.0.0.0"), 33}));
  EXPECT_EQ(table.size(), 0u);
  EXPECT_TRUE(table.insert(IpPrefix{A("fd00::"), 128}, 1));
}

TEST(AllowedIps, ClearAndMove) {
  Table table;
  table.insert(P("10.0.0.0/8"), 1);
  table.insert(P("fd00::/8"), 2);
  Table moved = std::move(table);
  EXPECT_EQ(moved.size(), 2u);
  EXPECT_EQ(moved.lookup(A("fd00::1")), 2);
  moved.clear();
  EXPECT_EQ(moved.size(), 0u);
  EXPECT_EQ(moved.lookup(A("10.0.0.1")), std::nullopt);
  EXPECT_EQ(moved.lookup(A("fd00::1")), std::nullopt);
}

TEST(AllowedIps, LookupsAllocateNothing) {
  AllowedIps<const void*> table;
  int peer = 0;
  table.insert(P("10.0.0.0/8"), &peer);
  table.insert(P("10.1.2.0/24"), &peer);
  table.insert(P("fd00::/8"), &peer);
  const IpAddress v4 = A("10.1.2.3");
  const IpAddress v6 = A("fd00::1");
  const long before = g_allocations.load();
  for (int i = 0; i < 1000; ++i) {
    EXPECT_TRUE(table.lookup(v4));
    EXPECT_TRUE(table.lookup_v4(v4.bytes()));
    EXPECT_TRUE(table.lookup_v6(v6.bytes()));
  }
  EXPECT_EQ(g_allocations.load(), before);
}

// ---------------------------------------------------------------- differential

// The oracle: every prefix in a vector, matched bit by bit. Deliberately shares no code with
// the trie.
class NaiveAllowedIps {
 public:
  static bool bit(const IpAddress& a, unsigned i) { return (a.bytes()[i / 8] >> (7 - i % 8)) & 1; }

  static IpPrefix masked(const IpPrefix& p) {
    std::uint8_t bytes[16] = {};
    for (unsigned i = 0; i < p.length; ++i)
      if (bit(p.address, i)) bytes[i / 8] |= static_cast<std::uint8_t>(0x80 >> (i % 8));
    return IpPrefix{p.address.is_v4() ? IpAddress::v4(bytes) : IpAddress::v6(bytes), p.length};
  }

  static bool contains(const IpPrefix& p, const IpAddress& a) {
    if (p.address.family() != a.family()) return false;
    const unsigned whole = p.length / 8;
    if (std::memcmp(p.address.bytes(), a.bytes(), whole) != 0) return false;
    for (unsigned i = whole * 8; i < p.length; ++i)
      if (bit(p.address, i) != bit(a, i)) return false;
    return true;
  }

  void insert(const IpPrefix& prefix, int value) {
    const IpPrefix p = masked(prefix);
    for (auto& e : entries_)
      if (e.first == p) {
        e.second = value;
        return;
      }
    entries_.emplace_back(p, value);
  }
  bool remove(const IpPrefix& prefix) {
    const IpPrefix p = masked(prefix);
    auto it = std::find_if(entries_.begin(), entries_.end(), [&](auto& e) { return e.first == p; });
    if (it == entries_.end()) return false;
    entries_.erase(it);
    return true;
  }
  void remove_value(int value) {
    std::erase_if(entries_, [&](auto& e) { return e.second == value; });
  }
  std::optional<int> lookup(const IpAddress& a) const {
    const std::pair<IpPrefix, int>* best = nullptr;
    for (const auto& e : entries_)
      if ((best == nullptr || e.first.length > best->first.length) && contains(e.first, a))
        best = &e;
    if (best == nullptr) return std::nullopt;
    return best->second;
  }
  std::vector<IpPrefix> prefixes_of(int value) const {
    std::vector<IpPrefix> out;
    for (const auto& e : entries_)
      if (e.second == value) out.push_back(e.first);
    std::sort(out.begin(), out.end());
    return out;
  }
  std::size_t size() const { return entries_.size(); }
  const std::vector<std::pair<IpPrefix, int>>& entries() const { return entries_; }

 private:
  std::vector<std::pair<IpPrefix, int>> entries_;
};

constexpr int kPeers = 8;

class Differential {
 public:
  Differential(std::uint64_t seed, bool v6) : rng_(seed), v6_(v6) {
    // A few dozen base networks, so random prefixes nest and overlap at every depth.
    for (int i = 0; i < 48; ++i) bases_.push_back(random_address());
  }

  IpAddress random_address() {
    std::uint8_t bytes[16];
    rng_.fill(bytes);
    return v6_ ? IpAddress::v6(bytes) : IpAddress::v4(bytes);
  }

  // `from` with every bit after `keep` replaced by a random one.
  IpAddress scramble_after(const IpAddress& from, unsigned keep) {
    std::uint8_t bytes[16];
    std::memcpy(bytes, from.bytes(), from.size());
    std::uint8_t noise[16];
    rng_.fill(noise);
    for (unsigned i = keep; i < bits(); ++i) {
      const std::uint8_t m = static_cast<std::uint8_t>(0x80 >> (i % 8));
      bytes[i / 8] = static_cast<std::uint8_t>((bytes[i / 8] & ~m) | (noise[i / 8] & m));
    }
    return v6_ ? IpAddress::v6(bytes) : IpAddress::v4(bytes);
  }

  unsigned bits() const { return v6_ ? 128 : 32; }

  IpPrefix random_prefix() {
    unsigned length = rng_.uniform(bits() + 1);
    if (length < 8 && rng_.uniform(20) != 0)
      length = 8 + rng_.uniform(bits() - 7);  // few huge ones
    const IpAddress& base = bases_[rng_.uniform(static_cast<std::uint32_t>(bases_.size()))];
    // Host bits are left random on purpose: both tables must mask them.
    return IpPrefix{scramble_after(base, rng_.uniform(bits() + 1)),
                    static_cast<std::uint8_t>(length)};
  }

  IpAddress random_lookup_address() {
    const std::uint32_t kind = rng_.uniform(10);
    if (kind == 0 || naive_.size() == 0) return random_address();
    if (kind < 3)
      return scramble_after(bases_[rng_.uniform(static_cast<std::uint32_t>(bases_.size()))],
                            rng_.uniform(bits() + 1));
    // Inside (or just beside) a stored prefix.
    const auto& e = naive_.entries()[rng_.uniform(static_cast<std::uint32_t>(naive_.size()))];
    IpAddress a = scramble_after(e.first.address, e.first.length);
    if (rng_.uniform(4) == 0 && e.first.length > 0) {
      std::uint8_t bytes[16];
      std::memcpy(bytes, a.bytes(), a.size());
      const unsigned flip = rng_.uniform(e.first.length);
      bytes[flip / 8] ^= static_cast<std::uint8_t>(0x80 >> (flip % 8));
      a = v6_ ? IpAddress::v6(bytes) : IpAddress::v4(bytes);
    }
    return a;
  }

  int random_peer() { return static_cast<int>(rng_.uniform(kPeers)); }

  void insert(const IpPrefix& p, int value) {
    ASSERT_TRUE(trie_.insert(p, value)) << p.to_string();
    naive_.insert(p, value);
  }

  void check_lookups(int count) {
    for (int i = 0; i < count; ++i) {
      const IpAddress a = random_lookup_address();
      const std::optional<int> expected = naive_.lookup(a);
      ++(expected ? hits_ : misses_);
      ASSERT_EQ(trie_.lookup(a), expected) << a.to_string();
      ASSERT_EQ(v6_ ? trie_.lookup_v6(a.bytes()) : trie_.lookup_v4(a.bytes()), expected)
          << a.to_string();
    }
  }

  void check_owners() {
    ASSERT_EQ(trie_.size(), naive_.size());
    for (int peer = 0; peer < kPeers; ++peer)
      ASSERT_EQ(trie_.prefixes_of(peer), naive_.prefixes_of(peer)) << "peer " << peer;
  }

  void run(int initial, int operations, int final_lookups, bool require_both_outcomes) {
    // The peer is drawn before the prefix, spelled out: argument order is unspecified, and GCC
    // and clang would draw different tables from one seed.
    for (int i = 0; i < initial; ++i) {
      const int peer = random_peer();
      insert(random_prefix(), peer);
    }
    ASSERT_NO_FATAL_FAILURE(check_owners());
    for (int op = 0; op < operations; ++op) {
      const std::uint32_t kind = rng_.uniform(1000);
      if (kind < 600) {
        // Sometimes an exact prefix already there, so re-owning is exercised.
        if (rng_.uniform(4) == 0 && naive_.size() > 0) {
          const IpPrefix p =
              naive_.entries()[rng_.uniform(static_cast<std::uint32_t>(naive_.size()))].first;
          const int peer = random_peer();
          insert(IpPrefix{scramble_after(p.address, p.length), p.length}, peer);
        } else {
          const int peer = random_peer();
          insert(random_prefix(), peer);
        }
      } else if (kind < 995) {
        IpPrefix p = random_prefix();
        if (rng_.uniform(4) != 0 && naive_.size() > 0)
          p = naive_.entries()[rng_.uniform(static_cast<std::uint32_t>(naive_.size()))].first;
        ASSERT_EQ(trie_.remove(p), naive_.remove(p)) << p.to_string();
      } else {
        const int peer = random_peer();
        trie_.remove_value(peer);
        naive_.remove_value(peer);
      }
      ASSERT_EQ(trie_.size(), naive_.size()) << "operation " << op;
      ASSERT_NO_FATAL_FAILURE(check_lookups(20));
      if (op % 500 == 0) {
        ASSERT_NO_FATAL_FAILURE(check_owners());
      }
    }
    ASSERT_NO_FATAL_FAILURE(check_owners());
    hits_ = misses_ = 0;
    ASSERT_NO_FATAL_FAILURE(check_lookups(final_lookups));
    // The inputs must exercise both outcomes, or the comparison proves little. (A small
    // table may hold a /0, or nothing at all.)
    if (require_both_outcomes) {
      EXPECT_GT(hits_ * 5, final_lookups)
          << "too few lookups matched a prefix; table size " << naive_.size();
      EXPECT_GT(misses_ * 20, final_lookups) << "too few lookups matched nothing";
    }
    // Finally empty it owner by owner.
    for (int peer = 0; peer < kPeers; ++peer) {
      trie_.remove_value(peer);
      naive_.remove_value(peer);
      ASSERT_NO_FATAL_FAILURE(check_owners());
      ASSERT_NO_FATAL_FAILURE(check_lookups(200));
    }
    EXPECT_EQ(trie_.size(), 0u);
  }

 private:
  SeededRandom rng_;
  bool v6_;
  std::vector<IpAddress> bases_;
  AllowedIps<int> trie_;
  NaiveAllowedIps naive_;
  long hits_ = 0;
  long misses_ = 0;
};

TEST(AllowedIpsDifferential, V4AgainstNaive) {
  Differential d(0x4a11, false);
  d.run(2000, 4000, 150000, true);
}

TEST(AllowedIpsDifferential, V6AgainstNaive) {
  Differential d(0x6a11, true);
  d.run(2000, 4000, 150000, true);
}

TEST(AllowedIpsDifferential, ManySeedsSmallTables) {
  for (std::uint64_t seed = 1; seed <= 40; ++seed) {
    Differential v4(seed, false);
    ASSERT_NO_FATAL_FAILURE(v4.run(30, 300, 2000, false)) << "seed " << seed;
    Differential v6(seed, true);
    ASSERT_NO_FATAL_FAILURE(v6.run(30, 300, 2000, false)) << "seed " << seed;
  }
}

}  // namespace
}  // namespace knit::wg
