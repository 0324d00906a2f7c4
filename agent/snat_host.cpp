#include "agent/snat_host.hpp"

#include <arpa/inet.h>
#include <linux/icmp.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

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
  if (!prefix.address.is_v4()) return std::nullopt;
  // A host inside the prefix: the first after the network address (the address itself for /31, /32).
  std::uint32_t host = prefix.address.v4_host_order();
  if (prefix.length < 31) {
    const std::uint32_t mask = prefix.length == 0 ? 0 : ~(0xffffffffu >> prefix.length);
    host = (host & mask) + 1;
  }
  // An exit node's 0.0.0.0/0: the source of the default route, found through an address only a
  // default route reaches on any ordinary host (a well-known public resolver's; nothing is sent).
  if (prefix.length == 0) host = 0x08080808;
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::nullopt;
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(9);
  to.sin_addr.s_addr = htonl(host);
  std::optional<IpAddress> out;
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof to) == 0) {
    sockaddr_in local{};
    socklen_t length = sizeof local;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length) == 0 && local.sin_addr.s_addr != 0)
      out = IpAddress::v4(ntohl(local.sin_addr.s_addr));
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
    std::vector<net::Rule> rules;
    if (auto ec = routing().rules(rules)) {
      log(LogLevel::warn, kLog, "cannot list rules: ", ec.message());
      return;
    }
    const RulePlan plan = plan_restore(rules);
    if (!plan.add.empty() || !plan.remove.empty()) {
      log(LogLevel::info, kLog, "removing the SNAT rules an earlier knitd left");
      apply_rules(rules, true, {});
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

void SnatHost::reconcile() {
  if (stopped_) return;
  std::vector<SnatEgress> egress;
  if (snat_) {
    for (const IpPrefix& p : routes_) {
      if (!p.address.is_v4()) continue;
      // A prefix the host routes into the mesh itself would leave as the mesh address: not a LAN.
      if (auto a = egress_address(p); a && a != plane_.filter().mesh_address()) egress.push_back({p, *a});
    }
  }
  if (egress.empty()) {
    problem_ = snat_ && std::any_of(routes_.begin(), routes_.end(), [](const IpPrefix& p) { return p.address.is_v4(); })
                   ? "no IPv4 route from this host into the advertised prefixes"
                   : "";
    if (active_) tear_down();
    if (snat_ && !problem_.empty()) arm();
    return;
  }
  if (!active_ && !set_up()) {
    arm();
    return;
  }
  std::vector<IpAddress> addresses;
  for (const SnatEgress& e : egress)
    if (std::find(addresses.begin(), addresses.end(), e.address) == addresses.end()) addresses.push_back(e.address);
  problem_.clear();
  try {
    tun::LinkConfig links;
    const auto index = links.ifindex(tun_);
    if (!index) {
      problem_ = "no interface " + tun_;
    } else if (auto ec = routing().add_default_route(kSnatTable, *index); ec && ec != errno_code(EEXIST)) {
      // ENETDOWN until the node joins and the TUN comes up: tried again on the next check.
      problem_ = "cannot route replies into " + tun_ + ": " + ec.message();
    }
    std::vector<net::Rule> rules;
    if (auto ec = routing().rules(rules)) {
      problem_ = "cannot list rules: " + ec.message();
    } else {
      apply_rules(rules, false, addresses);
    }
  } catch (const std::exception& e) {
    problem_ = e.what();
  }
  if (plane_.filter().router_nat().egress() != egress) {
    std::string list;
    for (const SnatEgress& e : egress) list += " " + e.prefix.to_string() + " as " + e.address.to_string();
    log(LogLevel::info, kLog, "translating routed IPv4:", list);
    plane_.filter().router_nat().set_egress(egress);
  }
  if (!problem_.empty()) log(LogLevel::debug, kLog, problem_);
  arm();
}

void SnatHost::apply_rules(const std::vector<net::Rule>& existing, bool restore,
                           const std::vector<IpAddress>& addresses) {
  const RulePlan plan = restore ? plan_restore(existing) : plan_rules(existing, addresses, plane_.filter().router_nat().ports());
  for (const net::Rule& r : plan.add) {
    if (auto ec = routing().add_rule(r); ec && ec != errno_code(EEXIST)) {
      log(LogLevel::warn, kLog, "cannot add rule ", r.to_string(), ": ", ec.message());
      if (!restore) return;  // never delete the local rule without its replacement in place
    } else {
      log(LogLevel::debug, kLog, "ip rule add ", r.to_string());
    }
  }
  for (const net::Rule& r : plan.remove) {
    if (auto ec = routing().delete_rule(r); ec && ec != errno_code(ENOENT))
      log(LogLevel::warn, kLog, "cannot delete rule ", r.to_string(), ": ", ec.message());
    else
      log(LogLevel::debug, kLog, "ip rule del ", r.to_string());
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
  try {
    std::vector<net::Rule> rules;
    if (auto ec = routing().rules(rules)) {
      log(LogLevel::warn, kLog, "cannot list rules: ", ec.message());
    } else {
      apply_rules(rules, true, {});
    }
    tun::LinkConfig links;
    if (const auto index = links.ifindex(tun_)) (void)routing().delete_default_route(kSnatTable, *index);
  } catch (const std::exception& e) {
    log(LogLevel::warn, kLog, "cannot undo the SNAT rules: ", e.what());
  }
  restore_sysctls();
  std::filesystem::remove(state_file_, ignored);
  log(LogLevel::info, kLog, "SNAT for routed subnets off: rules, route and sysctls restored");
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
    for (int i = 0; i < 64; ++i) {
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

}  // namespace knit::agent
