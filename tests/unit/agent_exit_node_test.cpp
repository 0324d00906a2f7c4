// Exit nodes on the using side: the host changes that send the default route into the TUN and
// keep knitd's own (marked) traffic on the underlay (exit_plan.hpp: rules, order, undo,
// allow-lan on and off, IPv4 and IPv6, strict rp_filter, a crashed run's leftovers), which node
// is the exit and when it is not (route_choice.hpp), its default routes in its allowed IPs only
// and never as host routes in the main table, withdrawal when it goes offline or loses approval,
// and the settings in routes.json and on the local API.
#include <gtest/gtest.h>

#include <algorithm>

#include "agent/exit_plan.hpp"
#include "agent/mesh.hpp"
#include "agent/route_settings.hpp"
#include "base/random.hpp"
#include "base/socket_mark.hpp"
#include "localapi/protocol.hpp"
#include "tests/support/route_peers.hpp"
#include "wg/crypto.hpp"
#include "tests/support/null_io.hpp"

namespace knit::agent {
namespace {

IpPrefix P(const char* text) { return IpPrefix::parse(text).value(); }

std::vector<std::string> lines(const std::vector<ExitStep>& steps) {
  std::vector<std::string> out;
  for (const ExitStep& s : steps) out.push_back(s.to_string());
  return out;
}

ExitHostState host(bool ipv6 = true) {
  ExitHostState h;
  h.tun_ifindex = 7;
  h.ipv6 = ipv6;
  h.rp_filter_all = "0";
  h.rp_filter_interfaces = {{"eth0", "0"}, {"eth1", "2"}};
  return h;
}

const std::string kMark = std::to_string(kUnderlayMark) + "/" + std::to_string(kUnderlayMarkMask);

TEST(ExitPlan, AllowLanKeepsTheMainTableButItsDefaultRouteMarkRuleLast) {
  EXPECT_EQ(lines(plan_exit(host(), /*allow_lan=*/true)),
            (std::vector<std::string>{
                "ip route default dev #7 table 5270",
                "ip -6 route default dev #7 table 5270",
                "ip rule 5260: from all lookup main suppress_prefixlength 0",
                "ip -6 rule 5260: from all lookup main suppress_prefixlength 0 (IPv6)",
                "ip rule 5270: not from all fwmark " + kMark + " lookup 5270",
                "ip -6 rule 5270: not from all fwmark " + kMark + " lookup 5270 (IPv6)",
            }));
}

TEST(ExitPlan, WithoutLanTheLanGoesThroughTheExitButIpv6LinkLocalStaysOnItsLink) {
  EXPECT_EQ(lines(plan_exit(host(), /*allow_lan=*/false)),
            (std::vector<std::string>{
                "ip route default dev #7 table 5270",
                "ip -6 route default dev #7 table 5270",
                "ip -6 rule 5262: from all to fe80::/10 lookup main (IPv6)",
                "ip -6 rule 5263: from all to ff00::/8 lookup main (IPv6)",
                "ip rule 5270: not from all fwmark " + kMark + " lookup 5270",
                "ip -6 rule 5270: not from all fwmark " + kMark + " lookup 5270 (IPv6)",
            }));
  // A host without IPv6: the IPv4 half alone.
  EXPECT_EQ(lines(plan_exit(host(false), false)),
            (std::vector<std::string>{"ip route default dev #7 table 5270",
                                      "ip rule 5270: not from all fwmark " + kMark + " lookup 5270"}));
}

TEST(ExitPlan, TheMarkRuleMatchesKnitdsSocketsAndIsInverted) {
  const auto steps = plan_exit(host(false), true);
  const net::Rule& marked = steps.back().rule;
  EXPECT_TRUE(marked.invert);
  EXPECT_EQ(marked.fwmark, kUnderlayMark);
  EXPECT_EQ(marked.fwmask, kUnderlayMarkMask);
  EXPECT_EQ(marked.table, kExitTable);
  // knitd's mark is inside the mask, so its own sockets fall through to the main table.
  EXPECT_EQ(kUnderlayMark & kUnderlayMarkMask, kUnderlayMark);
}

TEST(ExitPlan, StrictReversePathFilteringIsMadeLooseFirstAndPutBackLast) {
  ExitHostState strict_all = host(false);
  strict_all.rp_filter_all = "1";
  auto steps = plan_exit(strict_all, true);
  ASSERT_EQ(steps.front().kind, ExitStep::Kind::sysctl);
  EXPECT_EQ(steps.front().to_string(), "sysctl net/ipv4/conf/all/rp_filter=2 (was 1)");
  EXPECT_EQ(plan_undo(steps).back(), steps.front());  // restored after every rule is gone

  // "all" 0: the effective value is each interface's own; only strict ones change.
  ExitHostState strict_one = host(false);
  strict_one.rp_filter_interfaces = {{"eth0", "1"}, {"eth1", "2"}, {"eth2", "0"}};
  steps = plan_exit(strict_one, false);
  EXPECT_EQ(steps.front().to_string(), "sysctl net/ipv4/conf/eth0/rp_filter=2 (was 1)");
  EXPECT_EQ(std::count_if(steps.begin(), steps.end(), [](const ExitStep& s) { return s.kind == ExitStep::Kind::sysctl; }), 1);
  // "all" 2 (loose already): nothing to change.
  strict_one.rp_filter_all = "2";
  steps = plan_exit(strict_one, false);
  EXPECT_EQ(std::count_if(steps.begin(), steps.end(), [](const ExitStep& s) { return s.kind == ExitStep::Kind::sysctl; }), 0);
}

TEST(ExitPlan, UndoIsTheExactReverseMarkRulesFirst) {
  const auto steps = plan_exit(host(), true);
  const auto undo = plan_undo(steps);
  ASSERT_EQ(undo.size(), steps.size());
  EXPECT_EQ(undo.front().rule.priority, kExitMarkPriority);
  EXPECT_EQ(undo.back().kind, ExitStep::Kind::route);
  for (std::size_t i = 0; i < steps.size(); ++i) EXPECT_EQ(undo[i], steps[steps.size() - 1 - i]);
}

TEST(ExitPlan, StaleRulesAreOnlyKnitdsOwn) {
  std::vector<net::Rule> found;
  for (const ExitStep& s : plan_exit(host(), false))
    if (s.kind == ExitStep::Kind::rule) found.push_back(s.rule);
  for (const ExitStep& s : plan_exit(host(), true))
    if (s.kind == ExitStep::Kind::rule && s.rule.priority == kExitLanPriority) found.push_back(s.rule);
  const std::size_t ours = found.size();
  net::Rule main_rule;  // 32766: from all lookup main
  main_rule.priority = 32766;
  found.push_back(main_rule);
  net::Rule tailscale;  // another VPN's rule at a nearby priority
  tailscale.priority = 5270;
  tailscale.table = 52;
  found.push_back(tailscale);
  net::Rule other_mark = plan_exit(host(), true).back().rule;
  other_mark.fwmark = 0x80000;  // same shape, someone else's mark
  found.push_back(other_mark);
  const auto stale = stale_exit_rules(found);
  EXPECT_EQ(stale.size(), ours);
  for (const net::Rule& r : stale) EXPECT_TRUE(r.priority >= kExitLanPriority && r.priority <= kExitMarkPriority);
}

TEST(ExitPlan, CrashedRunsSysctlsComeBackUnlessChangedSince) {
  const std::vector<SysctlRecord> recorded{{"net/ipv4/conf/all/rp_filter", "2", "1"},
                                           {"net/ipv4/conf/eth0/rp_filter", "2", "1"},
                                           {"net/ipv4/conf/eth9/rp_filter", "2", "1"}};
  const auto restore = sysctls_to_restore(recorded, {std::string("2"), std::string("0"), std::nullopt});
  EXPECT_EQ(restore, (std::vector<SysctlRecord>{recorded[0]}));
}

// ---------------------------------------------------------------- which exit, and its routes

using knit::testing::routes::key;
using knit::testing::routes::peer;

const std::vector<IpPrefix> kExit{P("0.0.0.0/0"), P("::/0")};

TEST(ExitChoice, ByNameFqdnOrMeshAddressOnlyWhenApprovedAndOnline) {
  const control::NodeKey self = key(9);
  const std::vector<control::PeerInfo> peers{peer(1, kExit), peer(2, {P("10.2.0.0/24")}), peer(3, kExit, false)};
  for (const char* wanted : {"node-1", "node-1.mesh.example", "100.64.0.1", "fd7a:115c:a1e0::1"}) {
    const ExitChoice c = choose_exit(peers, self, wanted);
    EXPECT_EQ(c.state, ExitState::active) << wanted;
    EXPECT_EQ(c.carrier, key(1)) << wanted;
    EXPECT_EQ(c.name, "node-1");
    EXPECT_EQ(c.ip, IpAddress::parse("100.64.0.1"));
  }
  EXPECT_EQ(choose_exit(peers, self, "").state, ExitState::none);
  EXPECT_EQ(choose_exit(peers, self, "node-2").state, ExitState::not_exit);  // subnet routes only
  EXPECT_EQ(choose_exit(peers, self, "node-3").state, ExitState::offline);
  EXPECT_EQ(choose_exit(peers, self, "node-4").state, ExitState::unknown);
  EXPECT_EQ(choose_exit(peers, self, "node-10").state, ExitState::unknown);  // no prefix match
  EXPECT_EQ(choose_exit(peers, self, "100.64.0.4").state, ExitState::unknown);
  EXPECT_FALSE(choose_exit(peers, self, "node-3").carrier);
  EXPECT_EQ(choose_exit({peer(9, kExit)}, self, "node-9").state, ExitState::unknown);  // never ourselves

  // Renamed at the coordinator: the node found before stays the exit while it is in the map.
  const ExitChoice before = choose_exit(peers, self, "node-1");
  std::vector<control::PeerInfo> renamed = peers;
  renamed[0].name = "gw";
  const ExitChoice after = choose_exit(renamed, self, "node-1", before.node);
  EXPECT_TRUE(after.active());
  EXPECT_EQ(after.name, "gw");
  EXPECT_EQ(choose_exit(renamed, self, "node-1").state, ExitState::unknown);  // without it: lost
  // Gone from the map: the name is looked up again.
  EXPECT_EQ(choose_exit({peers[1]}, self, "node-2", before.node).node, key(2));
}

class ExitPeers : public ::testing::Test {
 protected:
  using NullIo = knit::testing::NullIo;
  class Link : public LinkControl {
   public:
    std::error_code set_up() override { return {}; }
    std::error_code add_address(const IpPrefix&) override { return {}; }
    std::error_code remove_address(const IpPrefix&) override { return {}; }
    std::error_code add_route(const IpPrefix& d) override {
      ops.push_back("route+ " + d.to_string());
      return {};
    }
    std::error_code remove_route(const IpPrefix& d) override {
      ops.push_back("route- " + d.to_string());
      return {};
    }
    std::vector<std::string> ops;
  };

  ExitPeers() : device_(io_, io_, rng_) {
    SeededRandom keys(42);
    device_.set_private_key(wg::crypto::generate_private_key(keys));
  }
  wg::Now now() const { return {Instant{} + std::chrono::seconds(1000), WallTime{} + std::chrono::hours(500000)}; }
  const wg::Peer* owner(const char* address) { return device_.peer_for(IpAddress::parse(address).value()); }
  // What the membership does with each peer map (mesh_membership_session.cpp apply_peers).
  ExitChoice apply(const std::vector<control::PeerInfo>& peers, const std::string& wanted, bool accept = false) {
    RouteCarriers carriers = accept ? choose_route_carriers(peers, key(9), {}) : RouteCarriers{};
    const ExitChoice exit = choose_exit(peers, key(9), wanted);
    add_exit_routes(carriers, exit, peers);
    mesh_.apply_peers(device_, now(), peers, {}, &carriers);
    mesh_.apply_routes(link_, carriers);
    return exit;
  }

  NullIo io_;
  SeededRandom rng_{7};
  wg::Device device_;
  MeshConfigurator mesh_;
  Link link_;
};

TEST_F(ExitPeers, OnlyTheChosenExitGetsTheDefaultRoutesAndTheyLeaveWhenItGoesAway) {
  std::vector<control::PeerInfo> peers{peer(1, kExit), peer(2, kExit), peer(3, {P("10.3.0.0/24")})};
  EXPECT_TRUE(apply(peers, "").state == ExitState::none);
  EXPECT_EQ(owner("198.51.100.1"), nullptr);  // no exit: the internet is nobody's

  EXPECT_TRUE(apply(peers, "node-2", /*accept=*/true).active());
  ASSERT_NE(owner("198.51.100.1"), nullptr);
  EXPECT_EQ(owner("198.51.100.1")->public_key, key(2));
  EXPECT_EQ(owner("2001:db8::1")->public_key, key(2));
  EXPECT_EQ(owner("100.64.0.1")->public_key, key(1));  // mesh addresses stay with their nodes
  EXPECT_EQ(owner("10.3.0.9")->public_key, key(3));    // and subnet routes with their routers
  // Default routes are never host routes of the main table: policy routing carries them.
  EXPECT_EQ(link_.ops, std::vector<std::string>{"route+ 10.3.0.0/24"});

  // The exit goes offline in the map: withdrawn from its allowed IPs at once.
  peers[1].online = false;
  EXPECT_EQ(apply(peers, "node-2", true).state, ExitState::offline);
  EXPECT_EQ(owner("198.51.100.1"), nullptr);
  // Back, then its exit route is unapproved.
  peers[1].online = true;
  EXPECT_TRUE(apply(peers, "node-2", true).active());
  peers[1].routes.clear();
  EXPECT_EQ(apply(peers, "node-2", true).state, ExitState::not_exit);
  EXPECT_EQ(owner("198.51.100.1"), nullptr);
  EXPECT_EQ(owner("2001:db8::1"), nullptr);
}

// ---------------------------------------------------------------- settings

TEST(ExitSettings, RoundTripThroughRoutesJson) {
  RouteSettings settings{{P("192.168.1.0/24")}, false, true, true, "gw", true};
  std::string why;
  auto again = parse_route_settings(encode_route_settings(settings), why);
  ASSERT_TRUE(again) << why;
  EXPECT_EQ(*again, settings);
  // An older file has neither: no exit node, LAN through the exit once one is chosen.
  again = parse_route_settings("{\"accept_routes\": true}", why);
  ASSERT_TRUE(again);
  EXPECT_EQ(again->use_exit, "");
  EXPECT_FALSE(again->exit_allow_lan);
  EXPECT_FALSE(parse_route_settings("{\"exit_node\": 5}", why));
  EXPECT_FALSE(parse_route_settings("{\"exit_node_allow_lan\": \"yes\"}", why));
}

TEST(ExitSettings, LocalApiCarriesTheChoiceAndTheStatus) {
  localapi::RoutesRequest request;
  request.exit_node = "gw";
  request.exit_node_allow_lan = false;
  auto parsed = localapi::parse_request(localapi::encode_request(request));
  ASSERT_TRUE(std::holds_alternative<localapi::ControlRequest>(parsed));
  EXPECT_EQ(std::get<localapi::RoutesRequest>(std::get<localapi::ControlRequest>(parsed)), request);
  request.exit_node = "";  // unset
  parsed = localapi::parse_request(localapi::encode_request(request));
  EXPECT_EQ(std::get<localapi::RoutesRequest>(std::get<localapi::ControlRequest>(parsed)).exit_node, "");

  localapi::StatusReply reply;
  reply.status.self.name = "me";
  reply.status.self.ipv4 = IpAddress::parse("100.64.0.9").value();
  reply.status.self.ipv6 = IpAddress::parse("fd7a:115c:a1e0::9").value();
  reply.status.self.routes = localapi::RouteSettingsStatus{{}, false, false, 0, std::nullopt, "gw", true, {}};
  reply.status.self.exit_node = localapi::ExitNodeStatus{"gw", IpAddress::parse("100.64.0.1"), true, true, "active"};
  const std::string line = localapi::encode_response(reply);
  EXPECT_NE(line.find("\"exit_node\":{\"name\":\"gw\",\"ip\":\"100.64.0.1\",\"active\":true,\"allow_lan\":true,"
                      "\"state\":\"active\"}"),
            std::string::npos)
      << line;
  auto back = localapi::parse_response(line);
  ASSERT_TRUE(std::holds_alternative<localapi::ControlResponse>(back));
  EXPECT_EQ(std::get<localapi::StatusReply>(std::get<localapi::ControlResponse>(back)).status, reply.status);
}

TEST(ExitState, RoundTripsAndRefusesWhatKnitdNeverWrites) {
  const std::vector<SysctlRecord> ours{{"net/ipv4/conf/all/rp_filter", "2", "1"},
                                       {"net/ipv4/conf/eth0/rp_filter", "2", "1"}};
  EXPECT_EQ(parse_exit_state(encode_exit_state(ours)), ours);
  // A damaged or hostile file: other knobs, a path escape, odd values, not JSON at all.
  EXPECT_TRUE(parse_exit_state(R"({"sysctl":[{"key":"net/ipv4/ip_forward","value":"1","previous":"0"}]})").empty());
  EXPECT_TRUE(parse_exit_state(R"({"sysctl":[{"key":"net/ipv4/conf/../../../kernel/rp_filter","value":"2","previous":"1"}]})").empty());
  EXPECT_TRUE(parse_exit_state(R"({"sysctl":[{"key":"net/ipv4/conf/all/rp_filter","value":"2","previous":"7"}]})").empty());
  EXPECT_TRUE(parse_exit_state("{\"sysctl\": [").empty());
  EXPECT_TRUE(parse_exit_state("").empty());
  EXPECT_TRUE(parse_exit_state(R"({"sysctl":[1, "x", {"key": 5}]})").empty());
}

}  // namespace
}  // namespace knit::agent
