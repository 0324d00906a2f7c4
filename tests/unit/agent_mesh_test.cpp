// Applying the coordinator's view to this host: mesh addresses on the link, one WireGuard peer
// per map entry on a real wg::Device (with a recording transport), hand-made peers untouched, and
// the endpoint choice.
#include <gtest/gtest.h>

#include "agent/mesh.hpp"
#include "base/random.hpp"
#include "tests/support/recording_link.hpp"
#include "wg/crypto.hpp"

namespace knit::agent {
namespace {

class RecordingIo : public wg::Transport, public wg::TunSink {
 public:
  void send(const wg::Peer& peer, std::span<const ByteSpan> datagrams) override {
    for (std::size_t i = 0; i < datagrams.size(); ++i) sent.push_back(*peer.endpoint);
  }
  void send_reply(const Endpoint& to, ByteSpan) override { sent.push_back(to); }
  void write_tun(MutableByteSpan) override {}
  std::vector<Endpoint> sent;
};

using testing::RecordingLink;

IpPrefix prefix(const char* text) { return IpPrefix::parse(text).value(); }
Endpoint endpoint(const char* text) { return Endpoint::parse(text).value(); }

wg::PublicKey key(std::uint8_t n) {
  SeededRandom rng(n);
  return wg::crypto::public_key_of(wg::crypto::generate_private_key(rng));
}

control::PeerInfo peer(std::uint8_t n, std::vector<Endpoint> endpoints = {}) {
  control::PeerInfo info;
  info.name = "node-" + std::to_string(n);
  info.node_key = key(n);
  info.disco_key = key(static_cast<std::uint8_t>(n + 100));
  info.ipv4 = IpAddress::parse("100.64.0." + std::to_string(n)).value();
  info.ipv6 = IpAddress::parse("fd7a:115c:a1e0::" + std::to_string(n)).value();
  info.endpoints = std::move(endpoints);
  info.online = true;
  return info;
}

InterfaceAddress lan(const char* text) { return InterfaceAddress{"eth0", prefix(text), false}; }

class MeshPeers : public ::testing::Test {
 protected:
  MeshPeers() : device_(io_, io_, rng_) {
    SeededRandom keys(42);
    own_ = wg::crypto::generate_private_key(keys);
    device_.set_private_key(own_);
  }
  wg::Now now() const { return {Instant{} + std::chrono::seconds(1000), WallTime{} + std::chrono::hours(500000)}; }
  PeerChanges apply(const std::vector<control::PeerInfo>& peers, const std::vector<InterfaceAddress>& local = {}) {
    return mesh_.apply_peers(device_, now(), peers, local);
  }
  std::vector<IpPrefix> allowed(std::uint8_t n) {
    const wg::Peer* p = device_.find_peer(key(n));
    return p ? device_.allowed_ips_of(*p) : std::vector<IpPrefix>{};
  }
  std::optional<Endpoint> endpoint_of(std::uint8_t n) {
    const wg::Peer* p = device_.find_peer(key(n));
    return p ? p->endpoint : std::nullopt;
  }

  SeededRandom rng_{7};
  RecordingIo io_;
  wg::Device device_;
  wg::PrivateKey own_;
  MeshConfigurator mesh_;
};

TEST_F(MeshPeers, AddsEachPeerWithItsAddressesEndpointAndKeepalive) {
  auto changes = apply({peer(2, {endpoint("192.0.2.2:41641")}), peer(3)});
  EXPECT_EQ(changes.added, 2u);
  EXPECT_EQ(device_.peer_count(), 2u);
  EXPECT_EQ(allowed(2), (std::vector<IpPrefix>{prefix("100.64.0.2/32"), prefix("fd7a:115c:a1e0::2/128")}));
  EXPECT_EQ(endpoint_of(2), endpoint("192.0.2.2:41641"));
  EXPECT_EQ(endpoint_of(3), std::nullopt);  // no endpoint reported: none configured (relays come later)
  EXPECT_EQ(device_.find_peer(key(2))->timers.persistent_keepalive(), std::chrono::seconds(25));
  EXPECT_TRUE(mesh_.manages(key(2)));
  // The same map again changes nothing.
  changes = apply({peer(2, {endpoint("192.0.2.2:41641")}), peer(3)});
  EXPECT_EQ(changes.added + changes.updated + changes.removed, 0u);
}

TEST_F(MeshPeers, FollowsChangesAndRemovesPeersThatLeft) {
  apply({peer(2, {endpoint("192.0.2.2:41641")}), peer(3), peer(4)});
  auto moved = peer(2, {endpoint("198.51.100.2:41641")});
  moved.ipv4 = IpAddress::parse("100.64.0.22").value();
  auto changes = apply({moved, peer(3)});
  EXPECT_EQ(changes.removed, 1u);
  EXPECT_EQ(changes.updated, 1u);
  EXPECT_EQ(device_.find_peer(key(4)), nullptr);
  EXPECT_EQ(allowed(2), (std::vector<IpPrefix>{prefix("100.64.0.22/32"), prefix("fd7a:115c:a1e0::2/128")}));
  EXPECT_EQ(endpoint_of(2), endpoint("198.51.100.2:41641"));
  EXPECT_EQ(apply({}).removed, 2u);
  EXPECT_EQ(device_.peer_count(), 0u);
}

TEST_F(MeshPeers, LeavesHandMadePeersAlone) {
  wg::Peer* manual = device_.add_peer(key(9), now());
  device_.add_allowed_ip(*manual, prefix("10.9.0.0/24"));
  device_.set_endpoint(*manual, endpoint("203.0.113.9:51820"));
  apply({peer(2)});
  apply({});
  EXPECT_EQ(mesh_.clear_peers(device_), 0u);
  ASSERT_NE(device_.find_peer(key(9)), nullptr);
  EXPECT_EQ(device_.allowed_ips_of(*device_.find_peer(key(9))), (std::vector<IpPrefix>{prefix("10.9.0.0/24")}));
  EXPECT_EQ(endpoint_of(9), endpoint("203.0.113.9:51820"));
}

TEST_F(MeshPeers, SkipsOurOwnKeyAndReaddsPeersRemovedByHand) {
  auto self = peer(1);
  self.node_key = wg::crypto::public_key_of(own_);
  auto changes = apply({self, peer(2)});
  EXPECT_EQ(changes.added, 1u);
  EXPECT_EQ(device_.peer_count(), 1u);
  device_.remove_peer(key(2));  // `wg set knit0 peer ... remove`
  changes = apply({self, peer(2)});
  EXPECT_EQ(changes.added, 1u);
  EXPECT_NE(device_.find_peer(key(2)), nullptr);
}

TEST_F(MeshPeers, DoesNotUndoRoamingWhenTheChoiceIsUnchanged) {
  apply({peer(2, {endpoint("192.0.2.2:41641")})});
  // WireGuard learned a new endpoint from authenticated packets (the peer roamed).
  device_.set_endpoint(*device_.find_peer(key(2)), endpoint("198.51.100.7:1234"));
  apply({peer(2, {endpoint("192.0.2.2:41641")})});
  EXPECT_EQ(endpoint_of(2), endpoint("198.51.100.7:1234"));
  // A different report is a new choice, and is applied.
  apply({peer(2, {endpoint("198.51.100.8:41641")})});
  EXPECT_EQ(endpoint_of(2), endpoint("198.51.100.8:41641"));
}

TEST_F(MeshPeers, ClearRemovesOnlyMeshPeers) {
  apply({peer(2), peer(3)});
  device_.add_peer(key(9), now());
  EXPECT_EQ(mesh_.clear_peers(device_), 2u);
  EXPECT_EQ(device_.peer_count(), 1u);
  EXPECT_FALSE(mesh_.manages(key(2)));
}

TEST_F(MeshPeers, TheMapTakesOverAHandMadePeerWithItsKey) {
  wg::Peer* manual = device_.add_peer(key(2), now());
  device_.add_allowed_ip(*manual, prefix("10.9.0.0/24"));
  auto changes = apply({peer(2, {endpoint("192.0.2.2:41641")})});
  EXPECT_EQ(changes.updated, 1u);
  EXPECT_EQ(allowed(2), (std::vector<IpPrefix>{prefix("100.64.0.2/32"), prefix("fd7a:115c:a1e0::2/128")}));
  EXPECT_TRUE(mesh_.manages(key(2)));
}

struct ChoiceCase {
  const char* what;
  std::vector<const char*> candidates;
  std::vector<const char*> local;
  const char* want;  // nullptr: none
};

// A peer of a large map: distinct keys and addresses for any index below 65,536.
control::PeerInfo nth_peer(std::size_t i) {
  SeededRandom rng(1000 + i);
  control::PeerInfo info;
  info.name = "n" + std::to_string(i);
  info.node_key = wg::crypto::public_key_of(wg::crypto::generate_private_key(rng));
  info.disco_key = info.node_key;
  const std::uint8_t v4[4] = {100, 64, static_cast<std::uint8_t>(i >> 8), static_cast<std::uint8_t>(i)};
  info.ipv4 = IpAddress::v4(v4);
  info.ipv6 = IpAddress::parse("fd7a:115c:a1e0::" + std::to_string(i + 1)).value();
  info.endpoints = {endpoint("192.0.2.1:41641")};
  info.online = true;
  return info;
}

// The map a delta follows: one peer's new endpoint, one newcomer and one leaver in a map of
// 5,000 peers cost three peers' work on the device, not 5,000 (the full walk is the reference:
// it examines every peer).
TEST_F(MeshPeers, ADeltaCostsItsSizeNotTheMapSize) {
  constexpr std::size_t kPeers = 5000;
  std::vector<control::PeerInfo> map;
  for (std::size_t i = 0; i < kPeers; ++i) map.push_back(nth_peer(i));
  const PeerChanges full = apply(map);
  EXPECT_EQ(full.added, kPeers);
  EXPECT_EQ(full.examined, kPeers);
  ASSERT_EQ(mesh_.managed_count(), kPeers);

  control::PeerInfo moved = map[1234];
  moved.endpoints = {endpoint("198.51.100.7:5000")};
  const control::PeerInfo newcomer = nth_peer(kPeers);
  const PeerChanges delta = mesh_.apply_peer_changes(device_, now(), {&moved, &newcomer}, {map[42].node_key}, {});
  EXPECT_EQ(delta.examined, 2u);
  EXPECT_EQ(delta.added, 1u);
  EXPECT_EQ(delta.updated, 1u);
  EXPECT_EQ(delta.removed, 1u);
  EXPECT_EQ(mesh_.managed_count(), kPeers);
  EXPECT_EQ(device_.find_peer(map[1234].node_key)->endpoint, endpoint("198.51.100.7:5000"));
  EXPECT_NE(device_.find_peer(newcomer.node_key), nullptr);
  EXPECT_EQ(device_.find_peer(map[42].node_key), nullptr);

  // The device ends up exactly where the full walk over the new map would put it.
  map[1234] = moved;
  map.erase(map.begin() + 42);
  map.push_back(newcomer);
  const PeerChanges again = apply(map);
  EXPECT_EQ(again.added + again.updated + again.removed + again.refused, 0u);
  // A removal of a key it never managed (ours, say) is nothing.
  EXPECT_EQ(mesh_.apply_peer_changes(device_, now(), {}, {map[42].node_key, key(200)}, {}).removed, 1u);
}

TEST(ChooseEndpoint, Table) {
  const std::vector<ChoiceCase> cases = {
      {"1 nothing reported", {}, {"192.168.1.5/24"}, nullptr},
      {"2 the only one", {"[2001:db8::2]:1"}, {}, "[2001:db8::2]:1"},
      {"3 IPv4 before IPv6", {"[2001:db8::2]:1", "198.51.100.2:1"}, {}, "198.51.100.2:1"},
      {"4 first IPv4 when none is local", {"198.51.100.2:1", "203.0.113.2:1"}, {"192.168.1.5/24"}, "198.51.100.2:1"},
      {"5 a LAN neighbour first", {"198.51.100.2:1", "192.168.1.6:1"}, {"192.168.1.5/24"}, "192.168.1.6:1"},
      {"6 IPv4 beats a same-subnet IPv6", {"[2001:db8::2]:1", "198.51.100.2:1"}, {"2001:db8::5/64"}, "198.51.100.2:1"},
      {"7 same-subnet IPv6 among IPv6", {"[2001:db8:1::2]:1", "[2001:db8::2]:1"}, {"2001:db8::5/64"}, "[2001:db8::2]:1"},
      {"8 a /32 of ours is no subnet", {"198.51.100.2:1", "100.64.0.9:1"}, {"100.64.0.1/32"}, "198.51.100.2:1"},
      {"9 loopback is no subnet", {"198.51.100.2:1", "127.0.0.2:1"}, {}, "198.51.100.2:1"},
  };
  for (const auto& c : cases) {
    std::vector<Endpoint> candidates;
    for (const char* text : c.candidates) candidates.push_back(Endpoint::parse(text).value());
    std::vector<InterfaceAddress> local;
    for (const char* text : c.local) local.push_back(lan(text));
    local.push_back(InterfaceAddress{"lo", prefix("127.0.0.1/8"), true});
    auto got = choose_endpoint(candidates, local);
    if (c.want == nullptr) {
      EXPECT_EQ(got, std::nullopt) << c.what;
    } else {
      EXPECT_EQ(got, Endpoint::parse(c.want)) << c.what;
    }
  }
}

TEST(MeshSelf, AddsAddressesRoutesAndBringsTheLinkUp) {
  RecordingLink link;
  MeshConfigurator mesh;
  SelfAddresses self{IpAddress::parse("100.64.0.1").value(), IpAddress::parse("fd7a:115c:a1e0::1").value(),
                     prefix("100.64.0.0/10"), prefix("fd7a:115c:a1e0::/48")};
  EXPECT_TRUE(mesh.apply_self(link, self).empty());
  EXPECT_EQ(link.ops, (std::vector<std::string>{"up", "addr+ 100.64.0.1/32", "addr+ fd7a:115c:a1e0::1/128",
                                                "route+ 100.64.0.0/10", "route+ fd7a:115c:a1e0::/48"}));
  // Moved: the old assignment goes first.
  link.ops.clear();
  SelfAddresses moved = self;
  moved.ipv4 = IpAddress::parse("100.64.0.7").value();
  mesh.apply_self(link, moved);
  EXPECT_EQ(link.ops, (std::vector<std::string>{"route- 100.64.0.0/10", "route- fd7a:115c:a1e0::/48",
                                                "addr- 100.64.0.1/32", "addr- fd7a:115c:a1e0::1/128", "up",
                                                "addr+ 100.64.0.7/32", "addr+ fd7a:115c:a1e0::1/128",
                                                "route+ 100.64.0.0/10", "route+ fd7a:115c:a1e0::/48"}));
  link.ops.clear();
  EXPECT_TRUE(mesh.clear_self(link).empty());
  EXPECT_EQ(link.ops.size(), 4u);
  EXPECT_FALSE(mesh.self().has_value());
  link.ops.clear();
  EXPECT_TRUE(mesh.clear_self(link).empty());  // nothing to clear
  EXPECT_TRUE(link.ops.empty());
}

TEST(MeshSelf, ReportsFailuresAndGoesOn) {
  RecordingLink link;
  link.fail_with = std::make_error_code(std::errc::permission_denied);
  MeshConfigurator mesh;
  SelfAddresses self{IpAddress::parse("100.64.0.1").value(), IpAddress::parse("fd7a::1").value(), prefix("100.64.0.0/10"),
                     prefix("fd7a::/48")};
  auto failures = mesh.apply_self(link, self);
  EXPECT_EQ(failures.size(), 5u);
  EXPECT_EQ(link.ops.size(), 5u);
  // Removing what is already gone is not a failure.
  link.fail_with = std::make_error_code(std::errc::address_not_available);
  EXPECT_TRUE(mesh.clear_self(link).empty());
}

}  // namespace
}  // namespace knit::agent
