// What the subnet router's SNAT changes on the host (agent/snat_plan.hpp), computed without
// touching it: the rules to add and delete in an order that never leaves the host without a
// `lookup local` rule, the restore after a clean exit or a crash, the reserved ports, the state
// file; the `--snat-routes` setting's round trips (routes.json and the local API).
#include <gtest/gtest.h>

#include <netinet/in.h>

#include "agent/route_settings.hpp"
#include "agent/snat_plan.hpp"
#include "localapi/protocol.hpp"

namespace knit::agent {
namespace {

IpAddress ip(const char* text) { return IpAddress::parse(text).value(); }

net::Rule plain(std::uint32_t priority, std::uint32_t table) {
  net::Rule r;
  r.priority = priority;
  r.table = table;
  return r;
}

// A fresh host: 0 local, 32766 main, 32767 default.
std::vector<net::Rule> fresh() { return {plain(0, net::kTableLocal), plain(32766, net::kTableMain), plain(32767, 253)}; }

std::vector<net::Rule> after(std::vector<net::Rule> rules, const RulePlan& plan) {
  for (const net::Rule& r : plan.add) rules.push_back(r);
  for (const net::Rule& r : plan.remove) {
    auto it = std::find(rules.begin(), rules.end(), r);
    EXPECT_NE(it, rules.end()) << "deleting a rule that is not there: " << r.to_string();
    if (it != rules.end()) rules.erase(it);
  }
  return rules;
}

bool has_local(const std::vector<net::Rule>& rules) {
  return std::any_of(rules.begin(), rules.end(), [](const net::Rule& r) { return is_plain_local(r); });
}

TEST(AgentSnatPlan, RulesPerAddressAndProtocol) {
  const auto rules = snat_rules({ip("10.77.0.1"), ip("fd00::1")}, SnatPortRange{61000, 61999});
  ASSERT_EQ(rules.size(), 2u);  // IPv4 only
  EXPECT_EQ(rules[0].to_string(), "1: from all to 10.77.0.1/32 ipproto 6 dport 61000-61999 lookup 1802371155");
  EXPECT_EQ(rules[1].ip_proto, IPPROTO_UDP);
}

TEST(AgentSnatPlan, Ipv6RulesPerAddressAndProtocol) {
  const auto rules = snat_rules({ip("10.77.0.1"), ip("2001:db8:100::1")}, SnatPortRange{61000, 61999}, 6);
  ASSERT_EQ(rules.size(), 2u);  // IPv6 only
  EXPECT_EQ(rules[0].family, 6);
  EXPECT_EQ(rules[0].to_string(),
            "1: from all to 2001:db8:100::1/128 ipproto 6 dport 61000-61999 lookup 1802371155 (IPv6)");
  EXPECT_EQ(rules[1].ip_proto, IPPROTO_UDP);
  EXPECT_EQ(local_rule(2, 6).family, 6);
}

// `ip -6 rule` on a fresh host: 0 local, 32766 main (no 32767 default table rule for IPv6).
std::vector<net::Rule> fresh6() {
  std::vector<net::Rule> rules{plain(0, net::kTableLocal), plain(32766, net::kTableMain)};
  for (net::Rule& r : rules) r.family = 6;
  return rules;
}

TEST(AgentSnatPlan, Ipv6SetUpMovesItsOwnLocalRuleAndRestores) {
  const std::vector<IpAddress> addresses{ip("10.77.0.1"), ip("2001:db8:100::1")};
  const RulePlan plan = plan_rules(fresh6(), addresses, {}, 6);
  ASSERT_EQ(plan.add.size(), 3u);
  EXPECT_EQ(plan.add[0], local_rule(kPrefLocalMoved, 6));
  ASSERT_EQ(plan.remove.size(), 1u);
  EXPECT_EQ(plan.remove[0], local_rule(0, 6));
  std::vector<net::Rule> rules = fresh6();
  for (const net::Rule& r : plan.add) {
    rules.push_back(r);
    EXPECT_TRUE(has_local(rules));
  }
  const auto applied = after(fresh6(), plan);
  EXPECT_TRUE(plan_rules(applied, addresses, {}, 6).add.empty());
  // The IPv4 plan does not touch IPv6 rules (and the reverse): each family is listed apart.
  EXPECT_TRUE(plan_restore(applied, 4).add.empty());
  EXPECT_TRUE(plan_restore(applied, 4).remove.empty());
  EXPECT_TRUE(plan_rules(fresh(), {ip("2001:db8:100::1")}, {}, 4).add.empty());
  // The IPv6 egress goes (the uplink lost its address), the IPv4 one stays: IPv6 restored.
  auto restored = after(applied, plan_rules(applied, {ip("10.77.0.1")}, {}, 6));
  std::sort(restored.begin(), restored.end(), [](const auto& a, const auto& b) { return a.priority < b.priority; });
  EXPECT_EQ(restored, fresh6());
  // After a crash: the moved rule and ours, no local at 0.
  std::vector<net::Rule> left = applied;
  const RulePlan recover = plan_restore(left, 6);
  ASSERT_EQ(recover.add.size(), 1u);
  EXPECT_EQ(recover.add[0], local_rule(0, 6));
  EXPECT_EQ(recover.remove.size(), 3u);
  auto back = after(left, recover);
  std::sort(back.begin(), back.end(), [](const auto& a, const auto& b) { return a.priority < b.priority; });
  EXPECT_EQ(back, fresh6());
  // A clean IPv6 host: nothing to do.
  EXPECT_TRUE(plan_restore(fresh6(), 6).add.empty());
  EXPECT_TRUE(plan_restore(fresh6(), 6).remove.empty());
}

TEST(AgentSnatPlan, EgressProbeTargets) {
  EXPECT_EQ(egress_probe_target(IpPrefix::parse("10.77.0.0/24").value()), ip("10.77.0.1"));
  EXPECT_EQ(egress_probe_target(IpPrefix::parse("10.77.0.9/24").value()), ip("10.77.0.1"));
  EXPECT_EQ(egress_probe_target(IpPrefix::parse("10.77.0.9/32").value()), ip("10.77.0.9"));
  EXPECT_EQ(egress_probe_target(IpPrefix::parse("10.77.0.8/31").value()), ip("10.77.0.8"));
  EXPECT_EQ(egress_probe_target(IpPrefix::parse("0.0.0.0/0").value()), ip("8.8.8.8"));
  EXPECT_EQ(egress_probe_target(IpPrefix::parse("::/0").value()), ip("2001:4860:4860::8888"));
  EXPECT_EQ(egress_probe_target(IpPrefix::parse("2001:db8:5::/64").value()), ip("2001:db8:5::1"));
  EXPECT_EQ(egress_probe_target(IpPrefix::parse("2001:db8:5::77/64").value()), ip("2001:db8:5::1"));
  EXPECT_EQ(egress_probe_target(IpPrefix::parse("2001:db8:5::77/126").value()), ip("2001:db8:5::75"));
  EXPECT_EQ(egress_probe_target(IpPrefix::parse("2001:db8:5:ff00::/56").value()), ip("2001:db8:5:ff00::1"));
  EXPECT_EQ(egress_probe_target(IpPrefix::parse("2001:db8:5::77/127").value()), ip("2001:db8:5::77"));
  EXPECT_EQ(egress_probe_target(IpPrefix::parse("2001:db8:5::77/128").value()), ip("2001:db8:5::77"));
}

TEST(AgentSnatPlan, SetUpMovesTheLocalRuleWithoutAGap) {
  const std::vector<IpAddress> addresses{ip("10.77.0.1")};
  const RulePlan plan = plan_rules(fresh(), addresses, {});
  ASSERT_EQ(plan.add.size(), 3u);
  EXPECT_EQ(plan.add[0], local_rule(kPrefLocalMoved));  // first: the replacement
  ASSERT_EQ(plan.remove.size(), 1u);
  EXPECT_EQ(plan.remove[0], local_rule(0));             // last: the original
  // Applying step by step keeps a local rule at every moment.
  std::vector<net::Rule> rules = fresh();
  for (const net::Rule& r : plan.add) {
    rules.push_back(r);
    EXPECT_TRUE(has_local(rules));
  }
  const auto applied = after(fresh(), plan);
  EXPECT_TRUE(has_local(applied));
  // Applied again: nothing to do.
  const RulePlan again = plan_rules(applied, addresses, {});
  EXPECT_TRUE(again.add.empty());
  EXPECT_TRUE(again.remove.empty());
  // A new egress address replaces the old one's rules only.
  const RulePlan moved = plan_rules(applied, {ip("10.77.0.9")}, {});
  EXPECT_EQ(moved.add.size(), 2u);
  EXPECT_EQ(moved.remove.size(), 2u);
  // Restore: local back at 0 first, then ours go; the host's rules are what they were.
  const RulePlan restore = plan_restore(applied);
  ASSERT_FALSE(restore.add.empty());
  EXPECT_EQ(restore.add[0], local_rule(0));
  auto restored = after(applied, restore);
  std::sort(restored.begin(), restored.end(), [](const auto& a, const auto& b) { return a.priority < b.priority; });
  EXPECT_EQ(restored, fresh());
}

TEST(AgentSnatPlan, RestoreAfterACrashAndOnACleanHost) {
  // A knitd that died between adding its rules and deleting local at 0: both local rules there.
  std::vector<net::Rule> half = fresh();
  half.push_back(local_rule(kPrefLocalMoved));
  half.push_back(snat_rules({ip("10.77.0.1")}, {})[0]);
  const RulePlan plan = plan_restore(half);
  EXPECT_TRUE(plan.add.empty());
  EXPECT_EQ(after(half, plan), fresh());
  // A clean host: nothing to do; and a host without local at 0 that we did not move stays so.
  EXPECT_TRUE(plan_restore(fresh()).add.empty());
  EXPECT_TRUE(plan_restore(fresh()).remove.empty());
  const std::vector<net::Rule> custom{plain(100, net::kTableLocal), plain(32766, net::kTableMain)};
  EXPECT_TRUE(plan_restore(custom).add.empty());
  EXPECT_TRUE(plan_restore(custom).remove.empty());
  // There, set up adds only the steering rules, and undo takes only them away.
  const RulePlan on_custom = plan_rules(custom, {ip("10.77.0.1")}, {});
  EXPECT_EQ(on_custom.add, snat_rules({ip("10.77.0.1")}, {}));
  EXPECT_TRUE(on_custom.remove.empty());
  EXPECT_EQ(after(after(custom, on_custom), plan_restore(after(custom, on_custom))), custom);
  // No addresses: plan_rules is a restore.
  EXPECT_EQ(plan_rules(half, {}, {}).remove, plan.remove);
}

TEST(AgentSnatPlan, ReservedPortsAndTunSysctls) {
  EXPECT_EQ(reserved_ports_with("", {}), "61000-61999");
  EXPECT_EQ(reserved_ports_with("8080,9000-9100\n", SnatPortRange{62000, 62001}), "8080,9000-9100,62000-62001");
  const auto tun = snat_tun_sysctls("knit0");
  ASSERT_EQ(tun.size(), 2u);
  EXPECT_EQ(tun[0].first, "net/ipv4/conf/knit0/accept_local");
  EXPECT_EQ(tun[1], std::make_pair(std::string("net/ipv4/conf/knit0/rp_filter"), std::string("2")));
}

TEST(AgentSnatPlan, StateFileRoundTripTakesOnlyItsOwnKeys) {
  const std::vector<std::pair<std::string, std::string>> before{
      {kReservedPortsKey, ""}, {"net/ipv4/conf/knit0/accept_local", "0"}, {"net/ipv4/conf/knit0/rp_filter", "1"}};
  auto again = parse_snat_state(encode_snat_state(before));
  ASSERT_TRUE(again);
  auto sorted = before;
  std::sort(sorted.begin(), sorted.end());
  std::sort(again->begin(), again->end());
  EXPECT_EQ(*again, sorted);
  for (const char* bad : {"", "[]", "{}", R"({"sysctls_before": {"kernel/core_pattern": "|/bin/sh"}})",
                          R"({"sysctls_before": {"net/ipv4/conf/../../kernel/x/rp_filter": "1"}})",
                          R"({"sysctls_before": {"net/ipv4/ip_local_reserved_ports": 1}})"}) {
    EXPECT_FALSE(parse_snat_state(bad)) << bad;
  }
}

TEST(AgentSnatPlan, SnatRoutesSettingRoundTrips) {
  RouteSettings settings{{IpPrefix::parse("10.77.0.0/24").value()}, false, false, false, "", false};
  std::string why;
  auto again = parse_route_settings(encode_route_settings(settings), why);
  ASSERT_TRUE(again) << why;
  EXPECT_FALSE(again->snat);
  EXPECT_EQ(*again, settings);
  // A file from before the setting existed: translate (the default).
  auto old = parse_route_settings(R"({"advertise_routes": ["10.77.0.0/24"]})", why);
  ASSERT_TRUE(old);
  EXPECT_TRUE(old->snat);
  EXPECT_FALSE(parse_route_settings(R"({"snat_routes": "no"})", why));

  localapi::RoutesRequest request;
  request.snat_routes = false;
  auto parsed = localapi::parse_request(localapi::encode_request(request));
  ASSERT_TRUE(std::holds_alternative<localapi::ControlRequest>(parsed));
  EXPECT_EQ(std::get<localapi::RoutesRequest>(std::get<localapi::ControlRequest>(parsed)).snat_routes, false);

  auto nat = localapi::parse_request(localapi::encode_request(localapi::NatRequest{}));
  ASSERT_TRUE(std::holds_alternative<localapi::ControlRequest>(nat));
  EXPECT_TRUE(std::holds_alternative<localapi::NatRequest>(std::get<localapi::ControlRequest>(nat)));

  localapi::SnatStatus s;
  s.active = true;
  s.ports = "61000-61999";
  s.egress["10.77.0.0/24"] = "10.77.0.1";
  s.counters["sessions"] = 3;
  s.entries.push_back({"tcp", "100.64.0.2:40000", "10.77.0.1:61000", "10.77.0.2:5001", "established", 7440, 3});
  auto reply = localapi::parse_response(localapi::encode_response(localapi::NatReply{s}));
  ASSERT_TRUE(std::holds_alternative<localapi::ControlResponse>(reply));
  EXPECT_EQ(std::get<localapi::NatReply>(std::get<localapi::ControlResponse>(reply)).nat, s);

  localapi::RouteSettingsStatus routes{{IpPrefix::parse("10.77.0.0/24").value()}, false, false, 0, s, "", false, {}};
  routes.snat->entries.clear();
  auto routes_reply = localapi::parse_response(localapi::encode_response(localapi::RoutesReply{routes}));
  ASSERT_TRUE(std::holds_alternative<localapi::ControlResponse>(routes_reply));
  EXPECT_EQ(std::get<localapi::RoutesReply>(std::get<localapi::ControlResponse>(routes_reply)).routes, routes);
}

}  // namespace
}  // namespace knit::agent
