// Subnet routes on the agent: who carries each accepted route (route_choice.hpp: one online
// carrier per prefix, none for this host's own networks or default routes), the carriers'
// allowed IPs on a real wg::Device (so a peer's packets from a subnet it does not carry are
// refused by cryptokey routing), the TUN routes added and removed as the map changes, and
// routes.json with the advertise checks.
#include <gtest/gtest.h>

#include "agent/mesh.hpp"
#include "agent/route_settings.hpp"
#include "base/random.hpp"
#include "tests/support/null_io.hpp"
#include "tests/support/recording_link.hpp"
#include "tests/support/route_peers.hpp"
#include "wg/crypto.hpp"

namespace knit::agent {
namespace {

using knit::testing::NullIo;

using testing::RecordingLink;

IpPrefix P(const char* text) { return IpPrefix::parse(text).value(); }

using knit::testing::routes::key;
using knit::testing::routes::peer;

InterfaceAddress lan(const char* text) { return InterfaceAddress{"eth0", P(text), false}; }

TEST(RouteCarriers, OnePerPrefixOnlineFirstNeverOurOwnNetworksOrDefaults) {
  const control::NodeKey self = key(9);
  const std::vector<control::PeerInfo> peers{
      peer(1, {P("10.1.0.0/24"), P("0.0.0.0/0"), P("::/0")}),
      peer(2, {P("10.2.0.0/24"), P("192.168.5.0/24")}),
      peer(3, {P("10.2.0.0/24")}, /*online=*/false),
      peer(9, {P("10.9.0.0/24")}),  // ourselves, as the coordinator may list us
  };
  const auto carriers = choose_route_carriers(peers, self, {lan("192.168.5.20/24")});
  EXPECT_EQ(carriers.size(), 2u);
  EXPECT_EQ(carriers.at(P("10.1.0.0/24")), key(1));
  EXPECT_EQ(carriers.at(P("10.2.0.0/24")), key(2));  // 3 is offline
  EXPECT_EQ(carriers.count(P("0.0.0.0/0")), 0u);
  EXPECT_EQ(carriers.count(P("192.168.5.0/24")), 0u);  // our own LAN stays on the LAN
  EXPECT_EQ(carriers.count(P("10.9.0.0/24")), 0u);
  // Both online: the lower key carries it, whichever comes first in the map.
  const std::vector<control::PeerInfo> both{peer(4, {P("10.4.0.0/16")}), peer(5, {P("10.4.0.0/16")})};
  const auto a = choose_route_carriers(both, self, {});
  const auto b = choose_route_carriers({both[1], both[0]}, self, {});
  EXPECT_EQ(a, b);
  EXPECT_EQ(a.at(P("10.4.0.0/16")), std::min(key(4), key(5)));
  // The carrier goes offline: the other takes over.
  std::vector<control::PeerInfo> failed = both;
  for (auto& p : failed)
    if (p.node_key == a.at(P("10.4.0.0/16"))) p.online = false;
  EXPECT_NE(choose_route_carriers(failed, self, {}).at(P("10.4.0.0/16")), a.at(P("10.4.0.0/16")));
}

class RoutedPeers : public ::testing::Test {
 protected:
  RoutedPeers() : device_(io_, io_, rng_) {
    SeededRandom keys(42);
    device_.set_private_key(wg::crypto::generate_private_key(keys));
  }
  wg::Now now() const { return {Instant{} + std::chrono::seconds(1000), WallTime{} + std::chrono::hours(500000)}; }
  std::vector<IpPrefix> allowed(std::uint8_t n) {
    const wg::Peer* p = device_.find_peer(key(n));
    return p ? device_.allowed_ips_of(*p) : std::vector<IpPrefix>{};
  }
  const wg::Peer* owner(const char* address) { return device_.peer_for(IpAddress::parse(address).value()); }

  NullIo io_;
  SeededRandom rng_{7};
  wg::Device device_;
  MeshConfigurator mesh_;
  RecordingLink link_;
};

TEST_F(RoutedPeers, AcceptedRoutesGoToTheCarriersAllowedIpsAndTheTun) {
  std::vector<control::PeerInfo> peers{peer(1, {P("10.1.0.0/24")}), peer(2, {})};
  // Not accepting: own addresses only, and no route on the link.
  mesh_.apply_peers(device_, now(), peers, {}, nullptr);
  EXPECT_EQ(allowed(1).size(), 2u);
  EXPECT_EQ(owner("10.1.0.7"), nullptr);  // a packet from 10.1.0.7 would be dropped from any peer

  RouteCarriers carriers = choose_route_carriers(peers, key(9), {});
  auto changes = mesh_.apply_peers(device_, now(), peers, {}, &carriers);
  EXPECT_EQ(changes.updated, 1u);
  EXPECT_EQ(allowed(1).size(), 3u);
  ASSERT_NE(owner("10.1.0.7"), nullptr);
  EXPECT_EQ(owner("10.1.0.7")->public_key, key(1));
  EXPECT_TRUE(mesh_.apply_routes(link_, carriers).empty());
  EXPECT_EQ(link_.ops, std::vector<std::string>{"route+ 10.1.0.0/24"});
  link_.ops.clear();
  EXPECT_TRUE(mesh_.apply_routes(link_, carriers).empty());  // nothing new
  EXPECT_TRUE(link_.ops.empty());

  // The route moves to peer 2 (approval taken from 1, given to 2): allowed IPs follow, the TUN
  // route stays.
  peers[0].routes.clear();
  peers[1].routes = {P("10.1.0.0/24"), P("10.3.0.0/24")};
  carriers = choose_route_carriers(peers, key(9), {});
  mesh_.apply_peers(device_, now(), peers, {}, &carriers);
  EXPECT_EQ(owner("10.1.0.7")->public_key, key(2));
  EXPECT_EQ(allowed(1).size(), 2u);
  mesh_.apply_routes(link_, carriers);
  EXPECT_EQ(link_.ops, std::vector<std::string>{"route+ 10.3.0.0/24"});

  // Withdrawn everywhere: gone from the device and the TUN.
  link_.ops.clear();
  peers[1].routes.clear();
  carriers = choose_route_carriers(peers, key(9), {});
  mesh_.apply_peers(device_, now(), peers, {}, &carriers);
  EXPECT_EQ(owner("10.1.0.7"), nullptr);
  mesh_.apply_routes(link_, carriers);
  EXPECT_EQ(link_.ops, (std::vector<std::string>{"route- 10.1.0.0/24", "route- 10.3.0.0/24"}));
  EXPECT_TRUE(mesh_.routes().empty());
}

TEST_F(RoutedPeers, AHostRouteThatExistsIsNeitherTakenNorRemoved) {
  link_.refuse_route = P("10.1.0.0/24");
  std::vector<control::PeerInfo> peers{peer(1, {P("10.1.0.0/24")})};
  const RouteCarriers carriers = choose_route_carriers(peers, key(9), {});
  const auto failures = mesh_.apply_routes(link_, carriers);
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_NE(failures[0].find("has a route to it already"), std::string::npos);
  EXPECT_TRUE(mesh_.routes().empty());
  link_.ops.clear();
  mesh_.clear_routes(link_);
  EXPECT_TRUE(link_.ops.empty());  // the host's own route is left alone
}

TEST(RouteSettingsFile, RoundTripAndDamage) {
  RouteSettings settings{{P("192.168.1.0/24"), P("fd00:1::/64")}, true, true, true, "", false};
  std::string why;
  auto again = parse_route_settings(encode_route_settings(settings), why);
  ASSERT_TRUE(again) << why;
  EXPECT_EQ(*again, settings);
  for (const char* bad : {"", "[]", "{\"advertise_routes\": \"10.0.0.0/8\"}", "{\"advertise_routes\": [\"x\"]}",
                          "{\"accept_routes\": 1}"}) {
    EXPECT_FALSE(parse_route_settings(bad, why)) << bad;
  }
  EXPECT_TRUE(parse_route_settings("{}", why));
}

TEST(RouteSettingsFile, AdvertiseChecks) {
  const std::vector<IpPrefix> mesh{P("100.64.0.0/10"), P("fd7a:115c:a1e0::/48")};
  const std::vector<IpAddress> coordinator{IpAddress::parse("198.51.100.7").value()};
  EXPECT_EQ(advertise_problem({P("192.168.1.0/24")}, mesh, coordinator), "");
  EXPECT_NE(advertise_problem({P("192.168.1.0/24"), P("100.64.0.0/16")}, mesh, coordinator), "");
  EXPECT_NE(advertise_problem({P("198.51.100.0/24")}, mesh, coordinator).find("underlay"), std::string::npos);
  EXPECT_NE(advertise_problem({P("127.0.0.0/8")}, mesh, coordinator), "");
  EXPECT_NE(advertise_problem({P("fe80::/64")}, mesh, coordinator), "");
}

}  // namespace
}  // namespace knit::agent
