#include "agent/exit_plan.hpp"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "base/socket_mark.hpp"

namespace knit::agent {

namespace {

net::Rule lookup_rule(std::uint8_t family, std::uint32_t priority, std::uint32_t table) {
  net::Rule rule;
  rule.family = family;
  rule.priority = priority;
  rule.table = table;
  return rule;
}

ExitStep rule_step(const net::Rule& rule) {
  ExitStep step;
  step.kind = ExitStep::Kind::rule;
  step.family = rule.family;
  step.rule = rule;
  return step;
}

// Every rule plan_exit may add, for one family.
std::vector<net::Rule> exit_rules(std::uint8_t family, bool allow_lan) {
  std::vector<net::Rule> out;
  if (allow_lan) {
    net::Rule lan = lookup_rule(family, kExitLanPriority, net::kTableMain);
    lan.suppress_prefixlength = 0;
    out.push_back(lan);
  } else if (family == 6) {
    net::Rule link_local = lookup_rule(6, kExitLinkLocalPriority, net::kTableMain);
    link_local.to = IpPrefix::parse("fe80::/10");
    out.push_back(link_local);
    net::Rule multicast = lookup_rule(6, kExitMulticastPriority, net::kTableMain);
    multicast.to = IpPrefix::parse("ff00::/8");
    out.push_back(multicast);
  }
  net::Rule marked = lookup_rule(family, kExitMarkPriority, kExitTable);
  marked.invert = true;
  marked.fwmark = kUnderlayMark;
  marked.fwmask = kUnderlayMarkMask;
  out.push_back(marked);
  return out;
}

bool same_rule(const net::Rule& a, const net::Rule& b) {
  return a.family == b.family && a.priority == b.priority && a.table == b.table && a.to == b.to &&
         a.invert == b.invert && a.fwmark == b.fwmark && a.fwmask == b.fwmask &&
         a.suppress_prefixlength == b.suppress_prefixlength && a.iif == b.iif;
}

}  // namespace

std::string ExitStep::to_string() const {
  switch (kind) {
    case Kind::sysctl: return "sysctl " + key + "=" + value + " (was " + previous + ")";
    case Kind::route:
      return std::string(family == 6 ? "ip -6" : "ip") + " route default dev #" + std::to_string(ifindex) +
             " table " + std::to_string(kExitTable);
    case Kind::rule: return std::string(family == 6 ? "ip -6" : "ip") + " rule " + rule.to_string();
  }
  return {};
}

std::vector<ExitStep> plan_exit(const ExitHostState& host, bool allow_lan) {
  std::vector<ExitStep> steps;
  auto loosen = [&](const std::string& key, const std::string& previous) {
    ExitStep step;
    step.kind = ExitStep::Kind::sysctl;
    step.key = key;
    step.value = "2";
    step.previous = previous;
    steps.push_back(step);
  };
  // The effective rp_filter of an interface is the larger of "all" and its own.
  if (host.rp_filter_all == "1") {
    loosen("net/ipv4/conf/all/rp_filter", "1");
  } else if (host.rp_filter_all == "0") {
    for (const auto& [name, value] : host.rp_filter_interfaces)
      if (value == "1") loosen("net/ipv4/conf/" + name + "/rp_filter", "1");
  }
  std::vector<std::uint8_t> families{4};
  if (host.ipv6) families.push_back(6);
  for (std::uint8_t family : families) {
    ExitStep route;
    route.kind = ExitStep::Kind::route;
    route.family = family;
    route.ifindex = host.tun_ifindex;
    steps.push_back(route);
  }
  for (std::uint8_t family : families)
    for (const net::Rule& rule : exit_rules(family, allow_lan))
      if (rule.priority != kExitMarkPriority) steps.push_back(rule_step(rule));
  for (std::uint8_t family : families)
    for (const net::Rule& rule : exit_rules(family, allow_lan))
      if (rule.priority == kExitMarkPriority) steps.push_back(rule_step(rule));
  return steps;
}

std::vector<ExitStep> plan_undo(const std::vector<ExitStep>& applied) {
  return std::vector<ExitStep>(applied.rbegin(), applied.rend());
}

std::vector<net::Rule> stale_exit_rules(const std::vector<net::Rule>& found) {
  std::vector<net::Rule> ours;
  for (std::uint8_t family : {std::uint8_t{4}, std::uint8_t{6}})
    for (bool allow_lan : {false, true})
      for (const net::Rule& rule : exit_rules(family, allow_lan)) ours.push_back(rule);
  std::vector<net::Rule> out;
  for (const net::Rule& rule : found)
    if (std::any_of(ours.begin(), ours.end(), [&](const net::Rule& o) { return same_rule(rule, o); }))
      out.push_back(rule);
  return out;
}

std::vector<SysctlRecord> sysctls_to_restore(const std::vector<SysctlRecord>& recorded,
                                             const std::vector<std::optional<std::string>>& current) {
  std::vector<SysctlRecord> out;
  for (std::size_t i = 0; i < recorded.size() && i < current.size(); ++i)
    if (current[i] && *current[i] == recorded[i].value) out.push_back(recorded[i]);
  return out;
}

std::string encode_exit_state(const std::vector<SysctlRecord>& records) {
  nlohmann::json list = nlohmann::json::array();
  for (const SysctlRecord& r : records) list.push_back({{"key", r.key}, {"value", r.value}, {"previous", r.previous}});
  return nlohmann::json{{"sysctl", list}}.dump() + "\n";
}

std::vector<SysctlRecord> parse_exit_state(const std::string& text) {
  std::vector<SysctlRecord> out;
  const auto doc = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object() || !doc.contains("sysctl") || !doc["sysctl"].is_array()) return out;
  for (const auto& item : doc["sysctl"]) {
    if (!item.is_object()) continue;
    auto text_of = [&](const char* name) {
      auto it = item.find(name);
      return it != item.end() && it->is_string() ? it->get<std::string>() : std::string();
    };
    SysctlRecord record{text_of("key"), text_of("value"), text_of("previous")};
    // Only the knobs knitd ever changes, so a damaged file cannot write elsewhere.
    const bool ours = record.key.rfind("net/ipv4/conf/", 0) == 0 && record.key.size() > 24 &&
                      record.key.compare(record.key.size() - 10, 10, "/rp_filter") == 0 &&
                      record.key.find("..") == std::string::npos;
    if (ours && (record.previous == "0" || record.previous == "1" || record.previous == "2")) out.push_back(record);
  }
  return out;
}

}  // namespace knit::agent
