#include "natbox/takeover.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "base/log.hpp"
#include "net/sysctl.hpp"

namespace knit::natbox {
namespace {

constexpr const char* kLog = "natbox";
// A TUN never limits a packet: the real outgoing link's MTU applies when the kernel forwards
// the rewritten packet (and sends "fragmentation needed" from there).
constexpr int kTunMtu = 65535;
// Policy routing tables are picked from here on, skipping any that already hold routes.
constexpr std::uint32_t kTableBase = 0x6e620000;  // "nb"
constexpr int kTableTries = 64;
// Every table pick_tables() can choose lies in [kTableBase, kTableEnd).
constexpr std::uint32_t kTableEnd = kTableBase + 0x4000 * 2 + kTableTries * 2;

bool is_natbox_table(std::uint32_t table) { return table >= kTableBase && table < kTableEnd; }

std::error_code errno_code(int value) { return {value, std::system_category()}; }

bool contains(const IpPrefix& prefix, const IpAddress& address) {
  if (!prefix.address.is_v4() || !address.is_v4()) return false;
  const std::uint32_t mask =
      prefix.length == 0 ? 0 : (prefix.length >= 32 ? 0xffffffffu : ~(0xffffffffu >> prefix.length));
  return (prefix.address.v4_host_order() & mask) == (address.v4_host_order() & mask);
}

bool has_address(const std::vector<IpPrefix>& addresses, const IpAddress& address) {
  return std::any_of(addresses.begin(), addresses.end(),
                     [&](const IpPrefix& p) { return p.address == address; });
}

bool is_plain_local(const net::Rule& rule) {
  return rule.table == net::kTableLocal && rule.iif.empty() && !rule.to && !rule.other_selectors &&
         rule.ip_proto == 0 && rule.dport_min == 0;
}

}  // namespace

Takeover::Survey Takeover::survey(const Plan& plan) {
  if (!plan.public_address.is_v4())
    throw TakeoverError("--public-ip must be an IPv4 address (the NAT engine is IPv4-only)");
  if (plan.inside == plan.outside)
    throw TakeoverError("--inside and --outside must be different interfaces");
  const auto forwarding = net::read_sysctl("net/ipv4/ip_forward");
  if (forwarding != "1")
    throw TakeoverError(
        "this namespace does not forward IPv4 (net.ipv4.ip_forward is not 1): run knit-natbox in a "
        "router namespace, or enable it with `sysctl -w net.ipv4.ip_forward=1`");

  tun::LinkConfig links;
  Survey s;
  const auto inside = links.ifindex(plan.inside);
  if (!inside) throw TakeoverError("no interface '" + plan.inside + "' in this namespace (--inside)");
  const auto outside = links.ifindex(plan.outside);
  if (!outside)
    throw TakeoverError("no interface '" + plan.outside + "' in this namespace (--outside)");
  s.inside_index = *inside;
  s.outside_index = *outside;

  for (const IpPrefix& route : links.routes(plan.inside))
    if (route.address.is_v4()) s.inside_networks.push_back(route);
  std::sort(s.inside_networks.begin(), s.inside_networks.end());
  s.inside_networks.erase(std::unique(s.inside_networks.begin(), s.inside_networks.end()),
                          s.inside_networks.end());
  if (s.inside_networks.empty())
    throw TakeoverError("interface '" + plan.inside +
                        "' has no IPv4 network (give it an address, e.g. ip addr add 10.0.1.1/24 dev " +
                        plan.inside + ")");
  const auto inside_addresses = links.addresses(plan.inside);
  for (const IpPrefix& a : inside_addresses) {
    if (a.address.is_v4()) {
      s.inside_address = a.address;
      break;
    }
  }
  if (has_address(inside_addresses, plan.public_address))
    throw TakeoverError("--public-ip " + plan.public_address.to_string() +
                        " is an address of the inside interface " + plan.inside);
  for (const IpPrefix& n : s.inside_networks) {
    if (contains(n, plan.public_address))
      throw TakeoverError("--public-ip " + plan.public_address.to_string() +
                          " lies in the inside network " + n.to_string());
  }
  s.public_is_local = has_address(links.addresses(plan.outside), plan.public_address);
  return s;
}

Takeover::Takeover(const Plan& plan, const Survey& survey) : plan_(plan), survey_(survey) {
  try {
    set_up();
  } catch (...) {
    restore();
    throw;
  }
}

Takeover::~Takeover() { restore(); }

void Takeover::must(const std::string& what, std::error_code result, std::function<void()> undo) {
  if (result) throw TakeoverError(what + ": " + result.message());
  log(LogLevel::debug, kLog, "set up: ", what);
  if (undo) undo_.emplace_back(what, std::move(undo));
}

void Takeover::set_sysctl(const std::string& key, const std::string& value, bool restore_after,
                          bool optional) {
  const auto before = net::read_sysctl(key);
  if (!before) {
    if (optional) return;
    throw TakeoverError("cannot read /proc/sys/" + key);
  }
  if (*before == value) return;
  std::function<void()> undo;
  if (restore_after) {
    undo = [key, old = *before] {
      if (auto ec = net::write_sysctl(key, old))
        log(LogLevel::warn, kLog, "cannot restore /proc/sys/", key, " to ", old, ": ", ec.message());
    };
  }
  must("sysctl " + key + "=" + value, net::write_sysctl(key, value), std::move(undo));
}

void Takeover::prepare_tun(const std::string& name) {
  // Per-device switches vanish with the TUN: nothing to restore.
  set_sysctl("net/ipv6/conf/" + name + "/disable_ipv6", "1", false, true);
  set_sysctl("net/ipv4/conf/" + name + "/forwarding", "1", false);
  // No reverse-path check on the TUNs: a packet written back carries a source routed through
  // another interface (and a TUN has no address, which fails even the loose check).
  set_sysctl("net/ipv4/conf/" + name + "/rp_filter", "0", false);
  set_sysctl("net/ipv4/conf/" + name + "/send_redirects", "0", false);
  // Local mode: rewritten packets carry PUBLIC, a local address, as their source.
  if (survey_.public_is_local) set_sysctl("net/ipv4/conf/" + name + "/accept_local", "1", false);
  if (auto ec = links_.set_mtu(name, kTunMtu))
    log(LogLevel::warn, kLog, "cannot set MTU ", kTunMtu, " on ", name, ": ", ec.message());
  must("link " + name + " up", links_.set_up(name, true));
}

void Takeover::pick_tables() {
  const std::uint32_t start = kTableBase + (static_cast<std::uint32_t>(::getpid()) % 0x4000) * 2;
  for (int i = 0; i < kTableTries; ++i) {
    const std::uint32_t a = start + static_cast<std::uint32_t>(i) * 2;
    std::size_t used_a = 0, used_b = 0;
    if (auto ec = routing_.count_routes(a, used_a))
      throw TakeoverError("cannot list routes: " + ec.message());
    if (auto ec = routing_.count_routes(a + 1, used_b))
      throw TakeoverError("cannot list routes: " + ec.message());
    if (used_a == 0 && used_b == 0) {
      table_inside_ = a;
      table_outside_ = a + 1;
      return;
    }
  }
  throw TakeoverError("no free pair of routing tables found");
}

void Takeover::add_rule(const net::Rule& rule) {
  must("ip rule " + rule.to_string(), routing_.add_rule(rule), [this, rule] {
    if (auto ec = routing_.delete_rule(rule))
      log(LogLevel::warn, kLog, "cannot delete rule ", rule.to_string(), ": ", ec.message());
  });
}

void Takeover::move_local_rule() {
  std::vector<net::Rule> rules;
  if (auto ec = routing_.rules(rules)) throw TakeoverError("cannot list rules: " + ec.message());
  bool at_zero = false;
  bool at_moved = false;
  for (const net::Rule& r : rules) {
    if (!is_plain_local(r)) continue;
    if (r.priority == 0) {
      at_zero = true;
    } else if (r.priority == kPrefLocalMoved) {
      at_moved = true;
    } else if (r.priority <= kPrefInboundToPublic) {
      throw TakeoverError("a 'lookup local' rule at priority " + std::to_string(r.priority) +
                          " would hide the public address from knit-natbox");
    }
  }
  const net::Rule moved{kPrefLocalMoved, "", std::nullopt, net::kTableLocal, false};
  const net::Rule original{0, "", std::nullopt, net::kTableLocal, false};
  if (!at_zero) {
    // Moved already, by an earlier run that was killed before it could put it back: use it, and
    // put it back at 0 on exit, so the router ends as it was before that earlier run.
    if (at_moved) {
      log(LogLevel::info, kLog, "'lookup local' is at priority ", kPrefLocalMoved,
          " (left by an earlier knit-natbox); it goes back to 0 on exit");
      undo_.emplace_back("ip rule: lookup local back to 0", [this, moved, original] {
        if (auto ec = routing_.add_rule(original); ec && ec != errno_code(EEXIST))
          log(LogLevel::warn, kLog, "cannot put back rule ", original.to_string(), ": ", ec.message());
        if (auto ec = routing_.delete_rule(moved))
          log(LogLevel::warn, kLog, "cannot delete rule ", moved.to_string(), ": ", ec.message());
      });
    }
    return;
  }
  add_rule(moved);
  must("ip rule del 0: lookup local", routing_.delete_rule(original), [this, original] {
    if (auto ec = routing_.add_rule(original))
      log(LogLevel::warn, kLog, "cannot put back rule ", original.to_string(), ": ", ec.message());
  });
}

void Takeover::take_public_address() {
  const IpPrefix host{plan_.public_address, 32};
  must("ip route add " + host.to_string() + " dev " + plan_.tun_outside,
       links_.add_route(plan_.tun_outside, host), [this, host] {
         auto ec = links_.remove_route(plan_.tun_outside, host);
         if (ec && ec != errno_code(ESRCH) && ec != errno_code(ENODEV))
           log(LogLevel::warn, kLog, "cannot remove route ", host.to_string(), ": ", ec.message());
       });
  const auto added = routing_.add_proxy_neighbour(survey_.outside_index, plan_.public_address);
  if (added == errno_code(EEXIST)) {
    log(LogLevel::info, kLog, "proxy neighbour ", plan_.public_address.to_string(), " on ",
        plan_.outside, " was already there; it stays after exit");
  } else {
    must("ip neigh add proxy " + plan_.public_address.to_string() + " dev " + plan_.outside, added,
         [this] {
           if (auto ec = routing_.delete_proxy_neighbour(survey_.outside_index, plan_.public_address))
             log(LogLevel::warn, kLog, "cannot delete proxy neighbour: ", ec.message());
         });
  }
  // Proxy ARP answers broadcast requests after a random delay of up to proxy_delay (0.8 s by
  // default); a NAT's public address should answer like any address.
  set_sysctl("net/ipv4/neigh/" + plan_.outside + "/proxy_delay", "0", true, true);
}

// Rules that send traffic into a natbox table that no longer holds a route: what a knit-natbox
// that was killed (SIGKILL, a crash) leaves behind. They route nothing (an empty table falls
// through to the next rule), but they pile up, hide what this run does from `ip rule`, and in
// local mode one of them is how an earlier run's "to PUBLIC" rules would outlive it. Removed
// before this run adds its own.
void Takeover::remove_stale_rules() {
  std::vector<net::Rule> rules;
  if (auto ec = routing_.rules(rules)) throw TakeoverError("cannot list rules: " + ec.message());
  for (const net::Rule& r : rules) {
    if (!is_natbox_table(r.table) || r.other_selectors) continue;
    std::size_t used = 0;
    if (auto ec = routing_.count_routes(r.table, used); ec || used != 0) continue;
    if (auto ec = routing_.delete_rule(r)) {
      log(LogLevel::warn, kLog, "cannot delete the stale rule ", r.to_string(), ": ", ec.message());
    } else {
      log(LogLevel::info, kLog, "removed ", r.to_string(), ", left by an earlier knit-natbox");
    }
  }
}

void Takeover::set_up() {
  remove_stale_rules();
  // The kernel applies max(all, device) for rp_filter, so the TUNs' 0 needs "all" at 0 too.
  if (net::read_sysctl("net/ipv4/conf/all/rp_filter").value_or("0") != "0") {
    log(LogLevel::info, kLog, "setting net.ipv4.conf.all.rp_filter to 0 while running (the TUNs "
        "need it off; other interfaces keep their own setting)");
    set_sysctl("net/ipv4/conf/all/rp_filter", "0", true);
  }
  prepare_tun(plan_.tun_inside);
  prepare_tun(plan_.tun_outside);
  pick_tables();
  const auto tin = links_.ifindex(plan_.tun_inside);
  const auto tout = links_.ifindex(plan_.tun_outside);
  if (!tin || !tout) throw TakeoverError("the TUN interfaces disappeared");
  must("ip route add default dev " + plan_.tun_inside + " table " + std::to_string(table_inside_),
       routing_.add_default_route(table_inside_, *tin),
       [this, i = *tin] { (void)routing_.delete_default_route(table_inside_, i); });
  must("ip route add default dev " + plan_.tun_outside + " table " + std::to_string(table_outside_),
       routing_.add_default_route(table_outside_, *tout),
       [this, i = *tout] { (void)routing_.delete_default_route(table_outside_, i); });

  const IpPrefix host{plan_.public_address, 32};
  if (survey_.public_is_local) {
    add_rule(net::Rule{kPrefHairpinToPublic, plan_.inside, host, table_inside_, false});
    add_rule(net::Rule{kPrefInboundToPublic, plan_.outside, host, table_outside_, false});
    move_local_rule();
  } else {
    take_public_address();
  }
  // Last: from here on, inside traffic flows through the natbox.
  add_rule(net::Rule{kPrefFromInside, plan_.inside, std::nullopt, table_inside_, false});
}

void Takeover::restore() {
  while (!undo_.empty()) {
    auto [what, undo] = std::move(undo_.back());
    undo_.pop_back();
    log(LogLevel::debug, kLog, "undo: ", what);
    undo();
  }
}

std::string Takeover::summary() const {
  std::string out;
  if (survey_.public_is_local) {
    out = plan_.public_address.to_string() + " is " + plan_.outside +
          "'s own address ('lookup local' below priority " + std::to_string(kPrefInboundToPublic) + ")";
  } else {
    out = "proxy ARP for " + plan_.public_address.to_string() + " on " + plan_.outside;
  }
  out += ", TUNs " + plan_.tun_inside + "/" + plan_.tun_outside + ", tables " +
         std::to_string(table_inside_) + "/" + std::to_string(table_outside_);
  return out;
}

}  // namespace knit::natbox
