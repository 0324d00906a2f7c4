// What the subnet router's SNAT changes on the host, as data (snat_host.hpp does it). No I/O.
//
// Replies to translated flows come back addressed to the router's own LAN address, with a
// destination port in the reserved range. The kernel would deliver them locally (the `local`
// table is consulted by the rule at priority 0, before any rule one can add), so:
//
//   ip rule add pref 2 lookup local                          (first: never without a local rule)
//   ip rule add pref 1 to ADDR/32 ipproto tcp dport A-B lookup 0x6b6e0053   (per egress address)
//   ip rule add pref 1 to ADDR/32 ipproto udp dport A-B lookup 0x6b6e0053
//   ip rule del pref 0 lookup local
//   ip route add default dev TUN table 0x6b6e0053
//   sysctl net.ipv4.ip_local_reserved_ports += A-B   (the host's own sockets never pick them)
//   sysctl net.ipv4.conf.TUN.accept_local=1          (translated packets carry a local source)
//   sysctl net.ipv4.conf.TUN.rp_filter=2             (loose: a strict check drops that source;
//                                                     the kernel applies max(all, TUN))
//
// IPv6 (an IPv6 egress address: an exit node's ::/0, an IPv6 routed prefix) gets the same with
// `ip -6`: its own `lookup local` rule moved from 0 to 2, two rules per address (to ADDR/128)
// into the same table, and `ip -6 route add default dev TUN table 0x6b6e0053`. The reserved
// ports are shared by both families (the kernel keeps one list for inet and inet6); IPv6 has no
// accept_local or rp_filter (a local source from the TUN is forwarded as it is).
//
// ICMP (echo replies and errors) is not steered: the kernel delivers it locally and knitd
// reads a copy on a raw ICMP (and ICMPv6) socket. Undone in reverse order on exit; a run that died leaves a
// state file (kSnatStateFile) from which the next one restores the sysctls, and its rules are
// recognised by their table and removed at start.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "agent/router_nat.hpp"
#include "base/ip.hpp"
#include "net/policy_routing.hpp"

namespace knit::agent {

inline constexpr std::uint32_t kSnatTable = 0x6b6e0053;  // "kn" 'S'
inline constexpr std::uint32_t kPrefSnat = 1;
inline constexpr std::uint32_t kPrefLocalMoved = 2;
inline constexpr const char* kSnatStateFile = "snat-host.json";
inline constexpr const char* kReservedPortsKey = "net/ipv4/ip_local_reserved_ports";

// The steering rules for these egress addresses of one family (two per address; family 6:
// `ip -6 rule`, addresses of the other family skipped).
std::vector<net::Rule> snat_rules(const std::vector<IpAddress>& addresses, SnatPortRange ports,
                                  std::uint8_t family = 4);
// The plain `lookup local` rule at a priority.
net::Rule local_rule(std::uint32_t priority, std::uint8_t family = 4);
bool is_plain_local(const net::Rule& rule);

// What to do to the host's rules to reach the SNAT rules for `addresses` from `existing` (the
// host's rules of `family` as listed; addresses of the other family are skipped, and with none
// of this family it is plan_restore). Adds in order first, deletes after, so there is always a
// local rule.
struct RulePlan {
  std::vector<net::Rule> add;
  std::vector<net::Rule> remove;
};
RulePlan plan_rules(const std::vector<net::Rule>& existing, const std::vector<IpAddress>& addresses,
                    SnatPortRange ports, std::uint8_t family = 4);
// Back to the host's own rules of `family`: every rule in kSnatTable removed and `lookup local`
// at 0 again (what a run that died left behind, too).
RulePlan plan_restore(const std::vector<net::Rule>& existing, std::uint8_t family = 4);

// Where egress_address (snat_host.hpp) connects a UDP socket to learn the host's source towards
// `prefix`: a host inside it (the first after the network address; the address itself for
// /31, /32, /127, /128), or for a default route (an exit node's 0.0.0.0/0 and ::/0) a
// well-known public resolver's address that only a default route reaches on an ordinary host.
IpAddress egress_probe_target(const IpPrefix& prefix);

// ip_local_reserved_ports with the range added ("" -> "61000-61999", "8080" -> "8080,61000-61999").
std::string reserved_ports_with(const std::string& current, SnatPortRange ports);

// The sysctls the SNAT sets on the TUN (key relative to /proc/sys, value).
std::vector<std::pair<std::string, std::string>> snat_tun_sysctls(const std::string& tun);

// The state file: the sysctl values from before, to be written back.
std::string encode_snat_state(const std::vector<std::pair<std::string, std::string>>& before);
std::optional<std::vector<std::pair<std::string, std::string>>> parse_snat_state(const std::string& text);

}  // namespace knit::agent
