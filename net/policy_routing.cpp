#include "net/policy_routing.hpp"

#include <linux/fib_rules.h>
#include <linux/neighbour.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

namespace knit::net {
namespace {

using tun::netlink::Attributes;
using tun::netlink::Message;
using tun::netlink::Request;
using tun::netlink::read_header;

std::error_code errno_code(int value) { return {value, std::system_category()}; }

ByteSpan bytes_of(const IpAddress& address) { return {address.bytes(), address.size()}; }

int af_of(std::uint8_t family) { return family == 6 ? AF_INET6 : AF_INET; }

IpAddress network_of(const IpPrefix& prefix) {
  if (!prefix.address.is_v4()) {
    std::array<std::uint8_t, 16> bytes{};
    for (std::size_t i = 0; i < 16; ++i) {
      const int keep = std::clamp(static_cast<int>(prefix.length) - static_cast<int>(i) * 8, 0, 8);
      bytes[i] = static_cast<std::uint8_t>(prefix.address.bytes()[i] & (0xff00 >> keep));
    }
    return IpAddress::v6(bytes.data());
  }
  const std::uint32_t mask =
      prefix.length == 0 ? 0 : (prefix.length >= 32 ? 0xffffffffu : ~(0xffffffffu >> prefix.length));
  return IpAddress::v4(prefix.address.v4_host_order() & mask);
}

}  // namespace

std::string Rule::to_string() const {
  std::string out = std::to_string(priority) + ":" + (invert ? " not" : "") + " from all";
  if (fwmask != 0) out += " fwmark " + std::to_string(fwmark) + "/" + std::to_string(fwmask);
  if (!iif.empty()) out += " iif " + iif;
  if (to) out += " to " + to->to_string();
  if (ip_proto != 0) out += " ipproto " + std::to_string(ip_proto);
  if (dport_min != 0) out += " dport " + std::to_string(dport_min) + "-" + std::to_string(dport_max);
  if (other_selectors) out += " (more selectors)";
  if (table == kTableLocal) {
    out += " lookup local";
  } else if (table == kTableMain) {
    out += " lookup main";
  } else {
    out += " lookup " + std::to_string(table);
  }
  if (suppress_prefixlength) out += " suppress_prefixlength " + std::to_string(*suppress_prefixlength);
  if (family == 6) out += " (IPv6)";
  return out;
}

PolicyRouting::PolicyRouting() = default;

// fib_rule_hdr + FRA_* attributes (linux/fib_rules.h). The table goes in FRA_TABLE because the
// header's 8-bit field cannot hold ids above 255.
std::error_code PolicyRouting::change_rule(int type, const Rule& rule, std::uint16_t flags) {
  if (rule.iif.size() >= IFNAMSIZ) return errno_code(EINVAL);
  const bool v6 = rule.family == 6;
  if (rule.to && (rule.to->address.is_v4() == v6 || rule.to->length > (v6 ? 128 : 32))) return errno_code(EINVAL);
  fib_rule_hdr header{};
  header.family = static_cast<std::uint8_t>(af_of(rule.family));
  if (rule.invert) header.flags |= FIB_RULE_INVERT;
  header.action = FR_ACT_TO_TBL;
  header.table = RT_TABLE_UNSPEC;
  if (rule.to) header.dst_len = rule.to->length;
  Request request(static_cast<std::uint16_t>(type), flags, header);
  // Priority 0 must be sent explicitly: without FRA_PRIORITY the kernel picks one itself.
  request.add_u32(FRA_PRIORITY, rule.priority);
  request.add_u32(FRA_TABLE, rule.table);
  if (!rule.iif.empty()) request.add_string(FRA_IIFNAME, rule.iif);
  if (rule.to && rule.to->length > 0) request.add(FRA_DST, bytes_of(network_of(*rule.to)));
  if (rule.ip_proto != 0) request.add(FRA_IP_PROTO, ByteSpan(&rule.ip_proto, 1));
  if (rule.dport_min != 0) {
    if (rule.dport_max < rule.dport_min) return errno_code(EINVAL);
    const fib_rule_port_range range{rule.dport_min, rule.dport_max};
    request.add(FRA_DPORT_RANGE, ByteSpan(reinterpret_cast<const std::uint8_t*>(&range), sizeof range));
  }
  if (rule.fwmask != 0) {
    request.add_u32(FRA_FWMARK, rule.fwmark);
    request.add_u32(FRA_FWMASK, rule.fwmask);
  }
  if (rule.suppress_prefixlength) request.add_u32(FRA_SUPPRESS_PREFIXLEN, *rule.suppress_prefixlength);
  return socket_.transact(request);
}

std::error_code PolicyRouting::add_rule(const Rule& rule) {
  return change_rule(RTM_NEWRULE, rule, NLM_F_CREATE | NLM_F_EXCL);
}

std::error_code PolicyRouting::delete_rule(const Rule& rule) {
  return change_rule(RTM_DELRULE, rule, 0);
}

std::error_code PolicyRouting::rules(std::vector<Rule>& out, std::uint8_t family) {
  out.clear();
  const int af = af_of(family);
  fib_rule_hdr header{};
  header.family = static_cast<std::uint8_t>(af);
  Request request(RTM_GETRULE, NLM_F_DUMP, header);
  return socket_.transact(request, [&](const Message& message) {
    if (message.type != RTM_NEWRULE) return;
    auto info = read_header<fib_rule_hdr>(message.payload);
    if (!info || info->family != af) return;
    const auto attributes = Attributes::after<fib_rule_hdr>(message.payload);
    Rule rule;
    // The kernel leaves FRA_PRIORITY out for priority 0.
    rule.priority = attributes.u32(FRA_PRIORITY).value_or(0);
    rule.table = attributes.u32(FRA_TABLE).value_or(info->table);
    rule.iif = attributes.string(FRA_IIFNAME).value_or("");
    rule.family = family;
    if (auto dst = attributes.get(FRA_DST); dst && dst->size() == 4 && info->dst_len <= 32)
      rule.to = IpPrefix{IpAddress::v4(dst->data()), info->dst_len};
    if (auto proto = attributes.get(FRA_IP_PROTO); proto && proto->size() == 1) rule.ip_proto = (*proto)[0];
    if (auto range = attributes.get(FRA_DPORT_RANGE); range && range->size() == sizeof(fib_rule_port_range)) {
      fib_rule_port_range r{};
      std::memcpy(&r, range->data(), sizeof r);
      rule.dport_min = r.start;
      rule.dport_max = r.end;
    }
    if (auto dst = attributes.get(FRA_DST); dst && dst->size() == 16 && info->dst_len <= 128)
      rule.to = IpPrefix{IpAddress::v6(dst->data()), info->dst_len};
    rule.invert = (info->flags & FIB_RULE_INVERT) != 0;
    if (auto mark = attributes.u32(FRA_FWMARK)) {
      rule.fwmark = *mark;
      rule.fwmask = attributes.u32(FRA_FWMASK).value_or(0xffffffffu);
    }
    if (auto s = attributes.u32(FRA_SUPPRESS_PREFIXLEN); s && *s <= 128)
      rule.suppress_prefixlength = static_cast<std::uint8_t>(*s);
    // FRA_SUPPRESS_PREFIXLEN = -1 means "not set" (the default rules carry it on some kernels).
    const auto suppress = attributes.u32(FRA_SUPPRESS_PREFIXLEN);
    rule.other_selectors = info->src_len != 0 || info->tos != 0 ||
                           info->action != FR_ACT_TO_TBL || (info->flags & FIB_RULE_INVERT) != 0 ||
                           attributes.get(FRA_OIFNAME) || attributes.get(FRA_FWMARK) ||
                           attributes.get(FRA_SRC) || attributes.get(FRA_L3MDEV) ||
                           attributes.get(FRA_UID_RANGE) || attributes.get(FRA_SPORT_RANGE) ||
                           (suppress && *suppress != 0xffffffffu);
    out.push_back(std::move(rule));
  });
}

std::error_code PolicyRouting::change_default_route(int type, std::uint32_t table, int ifindex,
                                                    std::uint16_t flags, std::uint8_t family) {
  const bool add = type == RTM_NEWROUTE;
  rtmsg header{};
  header.rtm_family = static_cast<std::uint8_t>(af_of(family));
  header.rtm_dst_len = 0;
  header.rtm_table = RT_TABLE_UNSPEC;
  header.rtm_type = RTN_UNICAST;
  header.rtm_protocol = add ? RTPROT_BOOT : RTPROT_UNSPEC;
  header.rtm_scope = add ? (family == 6 ? RT_SCOPE_UNIVERSE : RT_SCOPE_LINK) : RT_SCOPE_NOWHERE;
  Request request(static_cast<std::uint16_t>(type), flags, header);
  request.add_u32(RTA_TABLE, table);
  request.add_u32(RTA_OIF, static_cast<std::uint32_t>(ifindex));
  return socket_.transact(request);
}

std::error_code PolicyRouting::add_default_route(std::uint32_t table, int ifindex, std::uint8_t family) {
  return change_default_route(RTM_NEWROUTE, table, ifindex, NLM_F_CREATE | NLM_F_EXCL, family);
}

std::error_code PolicyRouting::delete_default_route(std::uint32_t table, int ifindex, std::uint8_t family) {
  return change_default_route(RTM_DELROUTE, table, ifindex, 0, family);
}

std::error_code PolicyRouting::count_routes(std::uint32_t table, std::size_t& count, std::uint8_t family) {
  count = 0;
  rtmsg header{};
  header.rtm_family = static_cast<std::uint8_t>(af_of(family));
  Request request(RTM_GETROUTE, NLM_F_DUMP, header);
  return socket_.transact(request, [&](const Message& message) {
    if (message.type != RTM_NEWROUTE) return;
    auto info = read_header<rtmsg>(message.payload);
    if (!info) return;
    const auto attributes = Attributes::after<rtmsg>(message.payload);
    if (attributes.u32(RTA_TABLE).value_or(info->rtm_table) == table) ++count;
  });
}

std::error_code PolicyRouting::change_proxy(int type, int ifindex, const IpAddress& address,
                                            std::uint16_t flags) {
  if (!address.is_v4()) return errno_code(EINVAL);
  ndmsg header{};
  header.ndm_family = AF_INET;
  header.ndm_ifindex = ifindex;
  header.ndm_state = NUD_PERMANENT;
  header.ndm_flags = NTF_PROXY;
  Request request(static_cast<std::uint16_t>(type), flags, header);
  request.add(NDA_DST, bytes_of(address));
  return socket_.transact(request);
}

std::error_code PolicyRouting::add_proxy_neighbour(int ifindex, const IpAddress& address) {
  return change_proxy(RTM_NEWNEIGH, ifindex, address, NLM_F_CREATE | NLM_F_EXCL);
}

std::error_code PolicyRouting::delete_proxy_neighbour(int ifindex, const IpAddress& address) {
  return change_proxy(RTM_DELNEIGH, ifindex, address, 0);
}

}  // namespace knit::net
