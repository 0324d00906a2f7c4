// The binary peer pages and deltas (control/peer_codec.hpp): round trips, the IPv6 shortcut,
// pages cut by count and size, and hostile bytes: every truncation, a numbered table of bad
// values, counts larger than the message, trailing bytes, and random mutations that must either
// be refused or parse to something that encodes back to itself.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/bytes.hpp"
#include "base/random.hpp"
#include "control/constants.hpp"
#include "control/peer_codec.hpp"

namespace knit::control {
namespace {

NodeKey key(std::uint32_t n) {
  NodeKey k{};
  k.fill(0x11);
  store_be32(k.data(), n + 1);
  return k;
}

const IpPrefix kUla = IpPrefix::parse("fd12:3456:789a::/48").value();

PeerInfo peer(std::uint32_t n) {
  PeerInfo p;
  p.name = "node-" + std::to_string(n);
  p.node_key = key(n);
  p.disco_key = key(n + 1000000);
  p.ipv4 = IpAddress::v4(0x64400002u + n);
  std::uint8_t v6[16] = {};
  std::copy(kUla.address.bytes(), kUla.address.bytes() + 6, v6);
  std::copy(p.ipv4.bytes(), p.ipv4.bytes() + 4, v6 + 12);
  p.ipv6 = IpAddress::v6(v6);
  p.endpoints = {Endpoint::parse("10.0.0.7:41641").value(), Endpoint::parse("[2001:db8::7]:41641").value()};
  p.home_relay = n % 2 ? "fra" : "";
  p.online = n % 3 == 0;
  p.last_seen = 1700000000 + n;
  if (n % 4 == 0) p.tags = {"tag:server", "prod"};
  if (n % 5 == 0) p.routes = {IpPrefix::parse("10.1.0.0/16").value(), IpPrefix::parse("fd00:1::/64").value()};
  return p;
}

ParseError error_of(const std::string& bytes) {
  ParseResult result = parse_message(bytes);
  if (auto* e = std::get_if<ParseError>(&result)) return *e;
  ADD_FAILURE() << "accepted " << to_hex(ByteSpan(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()));
  return {};
}

TEST(ControlPeerCodec, PagesAndDeltasRoundTrip) {
  const PeerMapPage page{9, 1, 3, {peer(1), peer(2), peer(3)}};
  ParseResult parsed = parse_message(encode(page));
  ASSERT_TRUE(std::holds_alternative<PeerMapPage>(parsed));
  EXPECT_EQ(std::get<PeerMapPage>(parsed), page);

  const PeerDelta delta{10, {peer(4)}, {peer(1)}, {key(2), key(3)}};
  parsed = parse_message(encode(delta));
  ASSERT_TRUE(std::holds_alternative<PeerDelta>(parsed));
  EXPECT_EQ(std::get<PeerDelta>(parsed), delta);
}

TEST(ControlPeerCodec, TheMeshIpv6IsLeftOutAndOthersAreKept) {
  PeerInfo mesh = peer(1);
  PeerInfo other = peer(1);
  other.node_key = key(2);
  other.ipv6 = IpAddress::parse("2001:db8::5").value();
  std::string a;
  std::string b;
  const V6Base base = v6_base_of({mesh});
  append_peer(a, mesh, base);
  append_peer(b, other, base);
  EXPECT_EQ(b.size(), a.size() + 16);
  const PeerMapPage page{1, 0, 1, {mesh, other}};
  EXPECT_EQ(std::get<PeerMapPage>(parse_message(encode(page))), page);
}

TEST(ControlPeerCodec, ABinaryEntryIsAThirdOfAJsonOne) {
  // Two keys (64 bytes) are most of it; the same peer's JSON was ~310 bytes.
  std::string entry;
  append_peer(entry, peer(7), v6_base_of({peer(7)}));
  EXPECT_LT(entry.size(), 120u);
}

TEST(ControlPeerCodec, MapsArePagedByCountAndBytes) {
  PeerMap map{5, {}};
  for (std::uint32_t n = 0; n < 10000; ++n) map.peers.push_back(peer(n));
  const auto pages = encode_pages(map);
  ASSERT_GT(pages.size(), 1u);
  PeerMap back{5, {}};
  for (std::size_t i = 0; i < pages.size(); ++i) {
    EXPECT_LE(pages[i].size(), kPeerPageTargetBytes + 200);
    ParseResult parsed = parse_message(pages[i]);
    ASSERT_TRUE(std::holds_alternative<PeerMapPage>(parsed)) << i;
    const auto& page = std::get<PeerMapPage>(parsed);
    EXPECT_EQ(page.index, i);
    EXPECT_EQ(page.count, pages.size());
    EXPECT_EQ(page.version, 5u);
    EXPECT_LE(page.peers.size(), kMaxPeersPerMessage);
    back.peers.insert(back.peers.end(), page.peers.begin(), page.peers.end());
  }
  EXPECT_EQ(back, map);
  // By count too.
  EXPECT_EQ(encode_pages(map, 1000, 1 << 30).size(), 10u);
  // An empty map is one empty page.
  const auto empty = encode_pages(PeerMap{3, {}});
  ASSERT_EQ(empty.size(), 1u);
  EXPECT_EQ(std::get<PeerMapPage>(parse_message(empty[0])), (PeerMapPage{3, 0, 1, {}}));
}

TEST(ControlPeerCodec, EveryTruncationIsRefused) {
  const std::string page = encode(PeerMapPage{9, 0, 1, {peer(5), peer(10)}});
  const std::string delta = encode(PeerDelta{10, {peer(4)}, {peer(20)}, {key(2)}});
  for (const std::string* whole : {&page, &delta}) {
    for (std::size_t n = 1; n < whole->size(); ++n) {
      ParseResult result = parse_message(whole->substr(0, n));
      EXPECT_TRUE(std::holds_alternative<ParseError>(result)) << n;
    }
  }
}

// Offsets in a one-peer page of peer(0) (no relay, tags, routes; the IPv6 left out):
//   0 tag, 1 kind, 2 version, 3 index, 4 count, 5..16 v6base, 17 n, 18 flags, 19 name length,
//   20.. name "node-0" (6), 26 node key, 58 disco key, 90 ipv4, 94 last_seen (5 bytes),
//   99 relay length, 100 endpoints count, 101 first endpoint (family, 4, port)...
TEST(ControlPeerCodec, NumberedBadValues) {
  const std::string good = encode(PeerMapPage{1, 0, 1, {peer(0)}});
  ASSERT_EQ(static_cast<std::uint8_t>(good[19]), 6);
  ASSERT_EQ(good.substr(20, 6), "node-0");
  struct Case {
    int n;
    std::size_t at;
    std::uint8_t value;
    MessageError kind;
    std::string field;
  };
  const std::vector<Case> cases = {
      {1, 1, 0x07, MessageError::unknown_type, "type"},
      {2, 3, 0x01, MessageError::bad_value, "index"},  // index 1 of 1
      {3, 4, 0x00, MessageError::bad_value, "count"},
      {4, 18, 0x80, MessageError::bad_value, "peers[0].flags"},
      {5, 20, ' ', MessageError::bad_value, "peers[0].name"},
      {6, 19, 0x00, MessageError::bad_value, "peers[0].name"},  // empty name
      {7, 101, 0x05, MessageError::bad_value, "peers[0].endpoints[0]"},  // family 5
      {8, 17, 0x05, MessageError::missing_field, "peers"},  // 5 peers in the room of one
      {9, 100, 65, MessageError::too_many, "peers[0].endpoints"},
  };
  for (const Case& c : cases) {
    std::string bad = good;
    bad[c.at] = static_cast<char>(c.value);
    EXPECT_EQ(error_of(bad), (ParseError{c.kind, c.field})) << "case " << c.n;
  }
  // Zero keys, a zero port, an unspecified address, a route with host bits, a bad relay name.
  PeerInfo p = peer(0);
  p.node_key = {};
  EXPECT_EQ(error_of(encode(PeerMapPage{1, 0, 1, {p}})).field, "peers[0].node_key");
  p = peer(0);
  p.endpoints = {Endpoint(IpAddress::v4(0x0a000001), 0)};
  EXPECT_EQ(error_of(encode(PeerMapPage{1, 0, 1, {p}})).field, "peers[0].endpoints[0]");
  p.endpoints = {Endpoint(IpAddress::v4(std::uint32_t{0}), 5)};
  EXPECT_EQ(error_of(encode(PeerMapPage{1, 0, 1, {p}})).field, "peers[0].endpoints[0]");
  p = peer(0);
  IpPrefix host_bits = IpPrefix::parse("10.1.0.0/16").value();
  host_bits.address = IpAddress::v4(0x0a010203);
  p.routes = {host_bits};
  EXPECT_EQ(error_of(encode(PeerMapPage{1, 0, 1, {p}})).field, "peers[0].routes[0]");
  p = peer(0);
  p.home_relay = "no/slash";
  EXPECT_EQ(error_of(encode(PeerMapPage{1, 0, 1, {p}})).field, "peers[0].home_relay");
  p = peer(0);
  p.tags = {""};
  EXPECT_EQ(error_of(encode(PeerMapPage{1, 0, 1, {p}})).field, "peers[0].tags[0]");
  // Trailing bytes, duplicates, a key in two lists of a delta, an overlong varint.
  EXPECT_EQ(error_of(good + "x").kind, MessageError::bad_value);
  EXPECT_EQ(error_of(encode(PeerMapPage{1, 0, 1, {peer(1), peer(1)}})).kind,
            MessageError::duplicate);
  EXPECT_EQ(error_of(encode(PeerDelta{2, {peer(1)}, {}, {key(1)}})).kind, MessageError::duplicate);
  std::string overlong = good;
  overlong.replace(2, 1, "\x81\x00", 2);  // version 1 spelled in two bytes
  EXPECT_EQ(error_of(overlong), (ParseError{MessageError::bad_value, "version"}));
  EXPECT_EQ(error_of(std::string(kMaxPeerMessageBytes + 1, '\xB1')).kind, MessageError::too_large);
}

// Uniqueness is checked on the keys' first 8 bytes first, then whole among those that tie.
TEST(ControlPeerCodec, KeysThatShareTheirFirstBytesAreToldApart) {
  auto tied = [](std::uint32_t n) {
    PeerInfo p = peer(n);
    p.node_key.fill(0x22);
    store_be32(p.node_key.data() + 28, n + 1);  // the same first 28 bytes
    return p;
  };
  std::vector<PeerInfo> peers{peer(1), tied(2), tied(3), peer(4), tied(5)};
  auto parsed = parse_message(encode(PeerMapPage{1, 0, 1, peers}));
  ASSERT_TRUE(std::holds_alternative<PeerMapPage>(parsed));
  EXPECT_EQ(std::get<PeerMapPage>(parsed).peers.size(), 5u);
  peers.push_back(tied(3));
  EXPECT_EQ(error_of(encode(PeerMapPage{1, 0, 1, peers})).kind, MessageError::duplicate);
  EXPECT_EQ(error_of(encode(PeerDelta{2, {tied(2), peer(1)}, {tied(7)}, {tied(2).node_key}})).kind,
            MessageError::duplicate);
}

TEST(ControlPeerCodec, CountsAreCheckedBeforeAnythingIsReserved) {
  // A delta claiming 2^60 removed keys in a few bytes.
  std::string delta = delta_header(1, V6Base{});
  append_count(delta, 0);
  append_count(delta, 0);
  append_count(delta, std::uint64_t{1} << 60);
  EXPECT_EQ(error_of(delta).kind, MessageError::too_many);
  std::string within = delta_header(1, V6Base{});
  append_count(within, 0);
  append_count(within, 0);
  append_count(within, 4000);  // allowed, but not in 0 bytes
  EXPECT_EQ(error_of(within).kind, MessageError::missing_field);
}

TEST(ControlPeerCodec, RandomMutationsNeverCrashAndWhatParsesRoundTrips) {
  SeededRandom rng(77);
  const std::vector<std::string> seeds = {
      encode(PeerMapPage{9, 0, 2, {peer(0), peer(1), peer(5)}}),
      encode(PeerDelta{10, {peer(4)}, {peer(20)}, {key(2)}}),
  };
  int refused = 0;
  for (int round = 0; round < 20000; ++round) {
    std::string bytes = seeds[rng.uniform(2)];
    for (std::uint32_t e = 1 + rng.uniform(3); e > 0 && bytes.size() > 2; --e) {
      const std::size_t at = 2 + rng.uniform(static_cast<std::uint32_t>(bytes.size() - 2));
      switch (rng.uniform(3)) {
        case 0: bytes[at] = static_cast<char>(rng.uniform(256)); break;
        case 1: bytes.erase(at, 1 + rng.uniform(4)); break;
        default: bytes.insert(at, 1, static_cast<char>(rng.uniform(256))); break;
      }
    }
    ParseResult result = parse_message(bytes);
    if (std::holds_alternative<ParseError>(result)) {
      ++refused;
      continue;
    }
    const auto message = to_message(std::move(result));
    ASSERT_TRUE(message);
    const auto again = to_message(parse_message(encode(*message)));
    ASSERT_TRUE(again);
    EXPECT_EQ(*again, *message);
  }
  EXPECT_GT(refused, 10000);
}

}  // namespace
}  // namespace knit::control
