#include "agent/snat_host.hpp"

#include <arpa/inet.h>
#include <linux/icmp.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "agent/snat_plan.hpp"
#include "base/key_file.hpp"
#include "base/log.hpp"
#include "net/sysctl.hpp"
#include "tun/link_config.hpp"

namespace knit::agent {

namespace {

constexpr const char* kLog = "snat";

std::error_code errno_code(int value) { return {value, std::system_category()}; }

}  // namespace

std::optional<IpAddress> egress_address(const IpPrefix& prefix) {
  const IpAddress target = egress_probe_target(prefix);
  const bool v6 = target.is_v6();
  const int fd = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::nullopt;
  sockaddr_storage to{};
  socklen_t to_length = 0;
  if (v6) {
    auto* sa = reinterpret_cast<sockaddr_in6*>(&to);
    sa->sin6_family = AF_INET6;
    sa->sin6_port = htons(9);
    std::memcpy(&sa->sin6_addr, target.bytes(), 16);
    to_length = sizeof(sockaddr_in6);
  } else {
    auto* sa = reinterpret_cast<sockaddr_in*>(&to);
    sa->sin_family = AF_INET;
    sa->sin_port = htons(9);
    sa->sin_addr.s_addr = htonl(target.v4_host_order());
    to_length = sizeof(sockaddr_in);
  }
  std::optional<IpAddress> out;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&to), to_length) == 0) {
    sockaddr_storage local{};
    socklen_t length = sizeof local;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length) == 0) {
      if (v6) {
        const auto* sa = reinterpret_cast<const sockaddr_in6*>(&local);
        const IpAddress a = IpAddress::v6(sa->sin6_addr.s6_addr);
        // Unspecified, or link-local (a link's own scope: nothing to route replies to).
        const bool usable = !IN6_IS_ADDR_UNSPECIFIED(&sa->sin6_addr) && !IN6_IS_ADDR_LINKLOCAL(&sa->sin6_addr);
        if (usable) out = a;
      } else {
        const auto* sa = reinterpret_cast<const sockaddr_in*>(&local);
        if (sa->sin_addr.s_addr != 0) out = IpAddress::v4(ntohl(sa->sin_addr.s_addr));
      }
    }
  }
  ::close(fd);
  return out;
}

SnatHost::SnatHost(asio::io_context& io, DataPlane& plane, std::string tun, std::filesystem::path state_dir)
    : plane_(plane),
      tun_(std::move(tun)),
      state_file_(std::move(state_dir) / kSnatStateFile),
      timer_(io),
      icmp_(io),
      icmp6_(io),
      icmp_buffer_(65536) {}

SnatHost::~SnatHost() { stop(); }

net::PolicyRouting& SnatHost::routing() {
  if (!routing_) routing_ = std::make_unique<net::PolicyRouting>();
  return *routing_;
}

void SnatHost::recover() {
  auto text = read_small_file(state_file_, 64 * 1024);
  if (text) {
    if (auto before = parse_snat_state(*text)) {
      for (const auto& [key, value] : *before) {
        if (auto ec = net::write_sysctl(key, value); ec && ec != errno_code(ENOENT))
          log(LogLevel::warn, kLog, "cannot restore /proc/sys/", key, ": ", ec.message());
      }
      log(LogLevel::info, kLog, "restored ", before->size(), " sysctls an earlier knitd changed for SNAT");
    } else {
      log(LogLevel::warn, kLog, state_file_.string(), " is damaged: not restoring sysctls from it");
    }
    std::error_code ignored;
    std::filesystem::remove(state_file_, ignored);
  }
  try {
    for (const std::uint8_t family : {std::uint8_t{4}, std::uint8_t{6}}) {
      std::vector<net::Rule> rules;
      if (auto ec = routing().rules(rules, family)) {
        // A host without IPv6 has no IPv6 rules to list.
        if (family == 4) log(LogLevel::warn, kLog, "cannot list rules: ", ec.message());
        continue;
      }
      const RulePlan plan = plan_restore(rules, family);
      if (!plan.add.empty() || !plan.remove.empty()) {
        log(LogLevel::info, kLog, "removing the ", family == 6 ? "IPv6 " : "", "SNAT rules an earlier knitd left");
        apply_rules(rules, true, {}, family);
      }
    }
  } catch (const std::exception& e) {
    log(LogLevel::warn, kLog, "cannot check for stale rules: ", e.what());
  }
}

void SnatHost::set_routes(std::vector<IpPrefix> routes, bool snat) {
  routes_ = std::move(routes);
  snat_ = snat;
  reconcile();
}

void SnatHost::arm() {
  timer_.expires_after(kRecheck);
  timer_.async_wait([this](std::error_code ec) {
    if (ec || stopped_) return;
    reconcile();
  });
}

namespace {

bool has_family(const std::vector<IpAddress>& addresses, std::uint8_t family) {
  return std::any_of(addresses.begin(), addresses.end(), [&](const IpAddress& a) { return a.is_v4() == (family == 4); });
}

}  // namespace

void SnatHost::reconcile() {
  if (stopped_) return;
  std::vector<SnatEgress> egress;
  if (snat_) {
    for (const IpPrefix& p : routes_) {
      // A prefix the host routes into the mesh itself would leave as the mesh address: not a LAN.
      const std::optional<IpAddress>& mesh = p.address.is_v4() ? plane_.filter().mesh_address() : plane_.filter().mesh_ipv6();
      if (auto a = egress_address(p); a && a != mesh) egress.push_back({p, *a});
    }
  }
  std::vector<IpAddress> addresses;
  for (const SnatEgress& e : egress)
    if (std::find(addresses.begin(), addresses.end(), e.address) == addresses.end()) addresses.push_back(e.address);
  // A missing IPv4 egress is a problem; a missing IPv6 one only for an IPv6 subnet (an exit node
  // on a host without IPv6 has no ::/0 to translate to, and nothing to send it through either).
  const bool want4 = std::any_of(routes_.begin(), routes_.end(), [](const IpPrefix& p) { return p.address.is_v4(); });
  const bool want6 = std::any_of(routes_.begin(), routes_.end(), [](const IpPrefix& p) { return p.address.is_v6() && p.length > 0; });
  std::string missing;
  if (snat_ && want4 && !has_family(addresses, 4)) missing = "no IPv4 route from this host into the advertised prefixes";
  else if (snat_ && want6 && !has_family(addresses, 6)) missing = "no IPv6 route from this host into the advertised prefixes";
  if (egress.empty()) {
    problem_ = missing;
    if (active_) tear_down();
    if (snat_ && !routes_.empty()) arm();  // addresses and routes may appear (DHCP, a new uplink)
    return;
  }
  if (!active_ && !set_up()) {
    arm();
    return;
  }
  problem_ = missing;
  try {
    tun::LinkConfig links;
    const auto index = links.ifindex(tun_);
    for (const std::uint8_t family : {std::uint8_t{4}, std::uint8_t{6}}) {
      const bool wanted = has_family(addresses, family);
      if (!index) {
        problem_ = "no interface " + tun_;
      } else if (wanted) {
        if (auto ec = routing().add_default_route(kSnatTable, *index, family); ec && ec != errno_code(EEXIST)) {
          // ENETDOWN until the node joins and the TUN comes up: tried again on the next check.
          problem_ = "cannot route replies into " + tun_ + ": " + ec.message();
        }
      } else if (family == 6 && routes6_) {
        (void)routing().delete_default_route(kSnatTable, *index, 6);
      }
      if (family == 6) routes6_ = wanted;
      std::vector<net::Rule> rules;
      if (auto ec = routing().rules(rules, family)) {
        if (wanted) problem_ = "cannot list rules: " + ec.message();
      } else {
        apply_rules(rules, false, addresses, family);
      }
    }
  } catch (const std::exception& e) {
    problem_ = e.what();
  }
  if (has_family(addresses, 6)) {
    if (!icmp6_.is_open()) open_icmp6();
  } else if (icmp6_.is_open()) {
    std::error_code ignored;
    icmp6_.close(ignored);
  }
  if (plane_.filter().router_nat().egress() != egress) {
    std::string list;
    for (const SnatEgress& e : egress) list += " " + e.prefix.to_string() + " as " + e.address.to_string();
    log(LogLevel::info, kLog, "translating routed traffic:", list);
    plane_.filter().router_nat().set_egress(egress);
  }
  if (!problem_.empty()) log(LogLevel::debug, kLog, problem_);
  arm();
}

void SnatHost::apply_rules(const std::vector<net::Rule>& existing, bool restore,
                           const std::vector<IpAddress>& addresses, std::uint8_t family) {
  const RulePlan plan = restore ? plan_restore(existing, family)
                                : plan_rules(existing, addresses, plane_.filter().router_nat().ports(), family);
  const char* ip = family == 6 ? "ip -6 rule " : "ip rule ";
  for (const net::Rule& r : plan.add) {
    if (auto ec = routing().add_rule(r); ec && ec != errno_code(EEXIST)) {
      log(LogLevel::warn, kLog, "cannot add rule ", r.to_string(), ": ", ec.message());
      if (!restore) return;  // never delete the local rule without its replacement in place
    } else {
      log(LogLevel::debug, kLog, ip, "add ", r.to_string());
    }
  }
  for (const net::Rule& r : plan.remove) {
    if (auto ec = routing().delete_rule(r); ec && ec != errno_code(ENOENT))
      log(LogLevel::warn, kLog, "cannot delete rule ", r.to_string(), ": ", ec.message());
    else
      log(LogLevel::debug, kLog, ip, "del ", r.to_string());
  }
}

bool SnatHost::set_up() {
  const SnatPortRange ports = plane_.filter().router_nat().ports();
  std::vector<std::pair<std::string, std::string>> wanted = snat_tun_sysctls(tun_);
  before_.clear();
  const auto reserved = net::read_sysctl(kReservedPortsKey);
  if (!reserved) {
    problem_ = "cannot read /proc/sys/" + std::string(kReservedPortsKey);
    return false;
  }
  before_.emplace_back(kReservedPortsKey, *reserved);
  wanted.emplace_back(kReservedPortsKey, reserved_ports_with(*reserved, ports));
  for (std::size_t i = 0; i + 1 < wanted.size(); ++i) {
    const auto value = net::read_sysctl(wanted[i].first);
    if (!value) {
      problem_ = "cannot read /proc/sys/" + wanted[i].first;
      return false;
    }
    before_.emplace_back(wanted[i].first, *value);
  }
  // The state file first: a crash from here on is undone by the next start.
  const std::string text = encode_snat_state(before_);
  if (auto failed = write_private_file(state_file_, ByteSpan(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()), true))
    log(LogLevel::warn, kLog, failed->message, " (a crash would leave the SNAT sysctls set)");
  for (const auto& [key, value] : wanted) {
    if (auto ec = net::write_sysctl(key, value)) {
      problem_ = "cannot set /proc/sys/" + key + ": " + ec.message();
      active_ = true;
      tear_down();
      return false;
    }
  }
  active_ = true;
  open_icmp();
  log(LogLevel::info, kLog, "SNAT for routed subnets on: ports ", ports.min, "-", ports.max, " reserved, ", tun_,
      " accept_local=1 rp_filter=2, replies steered by ip rules at priority ", kPrefSnat, " (lookup local moved to ",
      kPrefLocalMoved, ")");
  return true;
}

void SnatHost::restore_sysctls() {
  for (auto it = before_.rbegin(); it != before_.rend(); ++it) {
    if (auto ec = net::write_sysctl(it->first, it->second); ec && ec != errno_code(ENOENT))
      log(LogLevel::warn, kLog, "cannot restore /proc/sys/", it->first, " to '", it->second, "': ", ec.message());
  }
  before_.clear();
}

void SnatHost::tear_down() {
  if (!active_) return;
  active_ = false;
  plane_.filter().router_nat().set_egress({});
  std::error_code ignored;
  icmp_.close(ignored);
  icmp6_.close(ignored);
  try {
    for (const std::uint8_t family : {std::uint8_t{4}, std::uint8_t{6}}) {
      std::vector<net::Rule> rules;
      if (auto ec = routing().rules(rules, family)) {
        if (family == 4) log(LogLevel::warn, kLog, "cannot list rules: ", ec.message());
      } else {
        apply_rules(rules, true, {}, family);
      }
    }
    tun::LinkConfig links;
    if (const auto index = links.ifindex(tun_)) {
      (void)routing().delete_default_route(kSnatTable, *index);
      if (routes6_) (void)routing().delete_default_route(kSnatTable, *index, 6);
    }
  } catch (const std::exception& e) {
    log(LogLevel::warn, kLog, "cannot undo the SNAT rules: ", e.what());
  }
  routes6_ = false;
  restore_sysctls();
  std::filesystem::remove(state_file_, ignored);
  log(LogLevel::info, kLog, "SNAT for routed subnets off: rules, routes and sysctls restored");
}

void SnatHost::stop() {
  if (stopped_) return;
  stopped_ = true;
  timer_.cancel();
  tear_down();
}

void SnatHost::open_icmp() {
  const int fd = ::socket(AF_INET, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_ICMP);
  if (fd < 0) {
    log(LogLevel::warn, kLog, "cannot open a raw ICMP socket (", std::error_code(errno, std::system_category()).message(),
        "): pings and ICMP errors through the subnet router are not translated back");
    return;
  }
  // ICMP_FILTER drops the types whose bits are set: keep echo replies and errors only.
  icmp_filter filter{};
  filter.data = ~((1u << ICMP_ECHOREPLY) | (1u << ICMP_DEST_UNREACH) | (1u << ICMP_TIME_EXCEEDED) |
                  (1u << ICMP_PARAMETERPROB));
  ::setsockopt(fd, SOL_RAW, ICMP_FILTER, &filter, sizeof filter);
  icmp_.assign(fd);
  read_icmp();
}

void SnatHost::read_icmp() {
  icmp_.async_wait(asio::posix::stream_descriptor::wait_read, [this](std::error_code ec) {
    if (ec || !active_) return;
    for (int i = 0; i < kMaxIcmpPerWake; ++i) {
      const ssize_t n = ::recv(icmp_.native_handle(), icmp_buffer_.data(), icmp_buffer_.size(), MSG_DONTWAIT);
      if (n <= 0) break;
      const std::size_t size = static_cast<std::size_t>(n);
      if (size < 20 || (icmp_buffer_[0] >> 4) != 4) continue;
      // Only what is addressed to an egress address: the host's other ICMP is not ours.
      const IpAddress destination = IpAddress::v4(icmp_buffer_.data() + 16);
      const auto& egress = plane_.filter().router_nat().egress();
      if (std::none_of(egress.begin(), egress.end(), [&](const SnatEgress& e) { return e.address == destination; }))
        continue;
      plane_.inject_outbound(ByteSpan(icmp_buffer_.data(), size));
    }
    read_icmp();
  });
}

void SnatHost::open_icmp6() {
  const int fd = ::socket(AF_INET6, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_ICMPV6);
  if (fd < 0) {
    log(LogLevel::warn, kLog, "cannot open a raw ICMPv6 socket (", std::error_code(errno, std::system_category()).message(),
        "): pings and ICMPv6 errors through the router are not translated back");
    return;
  }
  // Echo replies and the errors (RFC 4443 types 1-4) only.
  icmp6_filter filter{};
  ICMP6_FILTER_SETBLOCKALL(&filter);
  for (const int type : {ICMP6_DST_UNREACH, ICMP6_PACKET_TOO_BIG, ICMP6_TIME_EXCEEDED, ICMP6_PARAM_PROB, ICMP6_ECHO_REPLY})
    ICMP6_FILTER_SETPASS(type, &filter);
  ::setsockopt(fd, IPPROTO_ICMPV6, ICMP6_FILTER, &filter, sizeof filter);
  // A raw IPv6 socket hands over the ICMPv6 message alone: the addresses and hop limit come as
  // ancillary data, from which read_icmp6 puts the IPv6 header back in front.
  const int on = 1;
  ::setsockopt(fd, IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof on);
  ::setsockopt(fd, IPPROTO_IPV6, IPV6_RECVHOPLIMIT, &on, sizeof on);
  icmp6_.assign(fd);
  read_icmp6();
}

void SnatHost::read_icmp6() {
  icmp6_.async_wait(asio::posix::stream_descriptor::wait_read, [this](std::error_code ec) {
    if (ec || !active_ || !icmp6_.is_open()) return;
    constexpr std::size_t kHeader = 40;
    for (int i = 0; i < kMaxIcmpPerWake; ++i) {
      sockaddr_in6 from{};
      iovec iov{icmp_buffer_.data() + kHeader, icmp_buffer_.size() - kHeader};
      alignas(cmsghdr) std::uint8_t control[CMSG_SPACE(sizeof(in6_pktinfo)) + CMSG_SPACE(sizeof(int))];
      msghdr message{};
      message.msg_name = &from;
      message.msg_namelen = sizeof from;
      message.msg_iov = &iov;
      message.msg_iovlen = 1;
      message.msg_control = control;
      message.msg_controllen = sizeof control;
      const ssize_t n = ::recvmsg(icmp6_.native_handle(), &message, MSG_DONTWAIT);
      if (n <= 0) break;
      const std::size_t size = static_cast<std::size_t>(n);
      if (size < 8 || size > 0xffff || (message.msg_flags & (MSG_TRUNC | MSG_CTRUNC))) continue;
      const in6_pktinfo* info = nullptr;
      int hop_limit = 64;
      for (cmsghdr* c = CMSG_FIRSTHDR(&message); c; c = CMSG_NXTHDR(&message, c)) {
        if (c->cmsg_level != IPPROTO_IPV6) continue;
        if (c->cmsg_type == IPV6_PKTINFO && c->cmsg_len >= CMSG_LEN(sizeof(in6_pktinfo)))
          info = reinterpret_cast<const in6_pktinfo*>(CMSG_DATA(c));
        if (c->cmsg_type == IPV6_HOPLIMIT && c->cmsg_len >= CMSG_LEN(sizeof(int)))
          std::memcpy(&hop_limit, CMSG_DATA(c), sizeof hop_limit);
      }
      if (!info) continue;
      // Only what is addressed to an egress address: the host's other ICMPv6 is not ours.
      const IpAddress destination = IpAddress::v6(info->ipi6_addr.s6_addr);
      const auto& egress = plane_.filter().router_nat().egress();
      if (std::none_of(egress.begin(), egress.end(), [&](const SnatEgress& e) { return e.address == destination; }))
        continue;
      std::uint8_t* h = icmp_buffer_.data();
      h[0] = 0x60;
      h[1] = h[2] = h[3] = 0;
      h[4] = static_cast<std::uint8_t>(size >> 8);
      h[5] = static_cast<std::uint8_t>(size);
      h[6] = IPPROTO_ICMPV6;
      h[7] = static_cast<std::uint8_t>(std::clamp(hop_limit, 0, 255));
      std::memcpy(h + 8, from.sin6_addr.s6_addr, 16);
      std::memcpy(h + 24, info->ipi6_addr.s6_addr, 16);
      plane_.inject_outbound(ByteSpan(icmp_buffer_.data(), kHeader + size));
    }
    read_icmp6();
  });
}

}  // namespace knit::agent
