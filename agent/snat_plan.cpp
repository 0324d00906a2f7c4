#include "agent/snat_plan.hpp"

#include <netinet/in.h>

#include <algorithm>
#include <nlohmann/json.hpp>

namespace knit::agent {

std::vector<net::Rule> snat_rules(const std::vector<IpAddress>& addresses, SnatPortRange ports,
                                  std::uint8_t family) {
  std::vector<net::Rule> out;
  for (const IpAddress& a : addresses) {
    if (a.is_v4() != (family == 4)) continue;
    for (const std::uint8_t proto : {std::uint8_t{IPPROTO_TCP}, std::uint8_t{IPPROTO_UDP}}) {
      net::Rule r;
      r.family = family;
      r.priority = kPrefSnat;
      r.to = IpPrefix{a, static_cast<std::uint8_t>(family == 4 ? 32 : 128)};
      r.table = kSnatTable;
      r.ip_proto = proto;
      r.dport_min = ports.min;
      r.dport_max = ports.max;
      out.push_back(r);
    }
  }
  return out;
}

net::Rule local_rule(std::uint32_t priority, std::uint8_t family) {
  net::Rule r;
  r.family = family;
  r.priority = priority;
  r.table = net::kTableLocal;
  return r;
}

bool is_plain_local(const net::Rule& rule) {
  return rule.table == net::kTableLocal && rule.iif.empty() && !rule.to && !rule.other_selectors &&
         rule.ip_proto == 0 && rule.dport_min == 0;
}

namespace {

bool has(const std::vector<net::Rule>& rules, const net::Rule& rule) {
  return std::find(rules.begin(), rules.end(), rule) != rules.end();
}
bool has_local_at(const std::vector<net::Rule>& rules, std::uint32_t priority, std::uint8_t family) {
  return std::any_of(rules.begin(), rules.end(), [&](const net::Rule& r) {
    return r.family == family && r.priority == priority && is_plain_local(r);
  });
}

}  // namespace

RulePlan plan_rules(const std::vector<net::Rule>& existing, const std::vector<IpAddress>& addresses,
                    SnatPortRange ports, std::uint8_t family) {
  const std::vector<net::Rule> wanted = snat_rules(addresses, ports, family);
  if (wanted.empty()) return plan_restore(existing, family);
  RulePlan plan;
  // Moved only from 0: a host whose local rule sits elsewhere keeps its own arrangement.
  const bool at_zero = has_local_at(existing, 0, family);
  if (at_zero && !has_local_at(existing, kPrefLocalMoved, family))
    plan.add.push_back(local_rule(kPrefLocalMoved, family));
  for (const net::Rule& r : wanted)
    if (!has(existing, r)) plan.add.push_back(r);
  for (const net::Rule& r : existing)
    if (r.family == family && r.table == kSnatTable && !has(wanted, r)) plan.remove.push_back(r);
  if (at_zero) plan.remove.push_back(local_rule(0, family));
  return plan;
}

RulePlan plan_restore(const std::vector<net::Rule>& existing, std::uint8_t family) {
  RulePlan plan;
  const bool moved = has_local_at(existing, kPrefLocalMoved, family);
  const bool at_zero = has_local_at(existing, 0, family);
  // Only put it back when this (or an earlier) run moved it: a host without the local rule at
  // 0 and without ours is someone else's design.
  if (moved && !at_zero) plan.add.push_back(local_rule(0, family));
  for (const net::Rule& r : existing)
    if (r.family == family && r.table == kSnatTable) plan.remove.push_back(r);
  if (moved) plan.remove.push_back(local_rule(kPrefLocalMoved, family));
  return plan;
}

IpAddress egress_probe_target(const IpPrefix& prefix) {
  if (prefix.address.is_v4()) {
    if (prefix.length == 0) return IpAddress::v4(0x08080808);
    std::uint32_t host = prefix.address.v4_host_order();
    if (prefix.length < 31) {
      const std::uint32_t mask = ~(0xffffffffu >> std::min<unsigned>(prefix.length, 32));
      host = (host & mask) + 1;
    }
    return IpAddress::v4(host);
  }
  if (prefix.length == 0) return *IpAddress::parse("2001:4860:4860::8888");
  if (prefix.length >= 127) return prefix.address;
  std::uint8_t bytes[16];
  std::copy(prefix.address.bytes(), prefix.address.bytes() + 16, bytes);
  for (unsigned i = 0; i < 16; ++i) {
    const unsigned keep = prefix.length > i * 8 ? std::min(8u, prefix.length - i * 8) : 0u;
    bytes[i] = static_cast<std::uint8_t>(bytes[i] & (keep == 0 ? 0 : 0xff << (8 - keep)));
  }
  bytes[15] = static_cast<std::uint8_t>(bytes[15] | 1);  // a host bit: the length is at most 126
  return IpAddress::v6(bytes);
}

std::string reserved_ports_with(const std::string& current, SnatPortRange ports) {
  const std::string range = std::to_string(ports.min) + "-" + std::to_string(ports.max);
  std::string trimmed = current;
  while (!trimmed.empty() && (trimmed.back() == '\n' || trimmed.back() == ' ')) trimmed.pop_back();
  if (trimmed.empty()) return range;
  return trimmed + "," + range;
}

std::vector<std::pair<std::string, std::string>> snat_tun_sysctls(const std::string& tun) {
  return {{"net/ipv4/conf/" + tun + "/accept_local", "1"}, {"net/ipv4/conf/" + tun + "/rp_filter", "2"}};
}

std::string encode_snat_state(const std::vector<std::pair<std::string, std::string>>& before) {
  nlohmann::json sysctls = nlohmann::json::object();
  for (const auto& [key, value] : before) sysctls[key] = value;
  return nlohmann::json{{"sysctls_before", sysctls}}.dump() + "\n";
}

std::optional<std::vector<std::pair<std::string, std::string>>> parse_snat_state(const std::string& text) {
  const auto doc = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (!doc.is_object()) return std::nullopt;
  const auto it = doc.find("sysctls_before");
  if (it == doc.end() || !it->is_object() || it->size() > 16) return std::nullopt;
  std::vector<std::pair<std::string, std::string>> out;
  for (const auto& [key, value] : it->items()) {
    // Only the keys this code writes: never a path chosen by whoever wrote the file.
    const bool known = key == kReservedPortsKey ||
                       (key.rfind("net/ipv4/conf/", 0) == 0 && key.find("..") == std::string::npos &&
                        (key.ends_with("/accept_local") || key.ends_with("/rp_filter")));
    if (!known || !value.is_string() || value.get<std::string>().size() > 4096) return std::nullopt;
    out.emplace_back(key, value.get<std::string>());
  }
  return out;
}

}  // namespace knit::agent
