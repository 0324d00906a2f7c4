// What knitd changes on the host while an exit node carries its default route, and how each
// change is undone, without I/O (the adapter, exit_routing.hpp, only carries the steps out).
// As wg-quick does for a full tunnel, with knitd's own sockets marked (base/socket_mark.hpp):
//
//   table 5270 (IPv4 and IPv6):  default dev TUN
//   5260  lookup main suppress_prefixlength 0   (allow-lan only: every route of the main table
//                                                but its default: the LAN, the mesh, subnets)
//   5262  to fe80::/10 lookup main              (IPv6, allow-lan off: neighbour discovery and
//   5263  to ff00::/8 lookup main                link-local stay on their links)
//   5270  not fwmark 0x4b6e0000/0xffff0000 lookup 5270
//                                               (everything but knitd's own underlay traffic:
//                                                WireGuard/disco/STUN, probes, relay, coordinator,
//                                                upstream DNS, port mapping)
//
// Marked traffic falls through to the main table (the underlay's default route). Strict reverse
// path filtering (rp_filter=1) would drop the underlay's replies (their reverse lookup, unmarked,
// would point into the TUN); where it is strict it is made loose (2) and put back afterwards.
// net.ipv4.conf.all.src_valid_mark (set by wg-quick) is not needed: nothing restores the mark on
// incoming packets here, so reverse lookups see mark 0 either way.
//
// Applying goes in order: the sysctls, the routes, the LAN rules, the mark rule last (so the
// tunnel takes traffic only when everything under it is there); undoing is the exact reverse.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "net/policy_routing.hpp"

namespace knit::agent {

inline constexpr std::uint32_t kExitTable = 5270;
inline constexpr std::uint32_t kExitLanPriority = 5260;
inline constexpr std::uint32_t kExitLinkLocalPriority = 5262;
inline constexpr std::uint32_t kExitMulticastPriority = 5263;
inline constexpr std::uint32_t kExitMarkPriority = 5270;

struct ExitStep {
  enum class Kind { sysctl, route, rule };
  Kind kind = Kind::rule;
  // sysctl: set key to value while the exit is in use, put `previous` back afterwards.
  std::string key;
  std::string value;
  std::string previous;
  // route: default dev ifindex in kExitTable, of this family (4 or 6).
  std::uint8_t family = 4;
  int ifindex = 0;
  // rule
  net::Rule rule;
  std::string to_string() const;  // "ip rule add ..." as a person reads it
  friend bool operator==(const ExitStep& a, const ExitStep& b) {
    return a.kind == b.kind && a.key == b.key && a.value == b.value && a.previous == b.previous &&
           a.family == b.family && a.ifindex == b.ifindex && a.rule.to_string() == b.rule.to_string();
  }
};

struct ExitHostState {
  int tun_ifindex = 0;
  bool ipv6 = true;  // the host has IPv6 (rules and routes of family 6)
  // net.ipv4.conf.all.rp_filter and each underlay interface's (not lo, not the TUN).
  std::optional<std::string> rp_filter_all;
  std::vector<std::pair<std::string, std::string>> rp_filter_interfaces;
};

// The steps that send the default route through the TUN, in the order to apply them.
std::vector<ExitStep> plan_exit(const ExitHostState& host, bool allow_lan);

// The steps that undo `applied` (each carried out backwards), in the order to take them: the
// exact reverse, so the mark rule goes first and the tunnel stops taking traffic before
// anything under it is removed.
std::vector<ExitStep> plan_undo(const std::vector<ExitStep>& applied);

// Which of the rules found on the host (either family) are knitd's, left by a run that did not
// get to undo them (a crash): every rule plan_exit can make, with either allow-lan setting.
std::vector<net::Rule> stale_exit_rules(const std::vector<net::Rule>& found);

// Sysctls to put back after a crash: those recorded (key, set value, previous value) whose
// current value is still the one knitd set (a later change by the administrator is kept).
struct SysctlRecord {
  std::string key;
  std::string value;
  std::string previous;
  friend bool operator==(const SysctlRecord&, const SysctlRecord&) = default;
};
// exit-host.json in the state directory: the sysctls an exit-node run changed, for the next knitd
// to put back after a crash. {"sysctl": [{"key", "value", "previous"}, ...]}. Parsing treats the
// file as hostile: entries that are not rp_filter knobs under net/ipv4/conf/ with a previous
// value of 0, 1 or 2 are skipped, so a damaged file cannot make knitd write anywhere else.
std::string encode_exit_state(const std::vector<SysctlRecord>& records);
std::vector<SysctlRecord> parse_exit_state(const std::string& text);
std::vector<SysctlRecord> sysctls_to_restore(const std::vector<SysctlRecord>& recorded,
                                             const std::vector<std::optional<std::string>>& current);

}  // namespace knit::agent
