// Policy routing over rtnetlink, for what knit-natbox and knitd's subnet-router SNAT steer into
// their TUNs and nothing else: what `ip rule`, `ip route ... table N` and `ip neigh ... proxy` do. IPv4 only. Every call
// answers with the kernel's error code (errno values, system_category); nothing throws after
// construction. Acts in the network namespace of the thread that constructed it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "base/ip.hpp"
#include "tun/netlink_socket.hpp"

namespace knit::net {

inline constexpr std::uint32_t kTableLocal = 255;  // RT_TABLE_LOCAL
inline constexpr std::uint32_t kTableMain = 254;   // RT_TABLE_MAIN

// One "from all [iif IF] [to PREFIX] lookup TABLE" rule at a priority.
struct Rule {
  std::uint32_t priority = 0;
  std::string iif;                 // empty: any
  std::optional<IpPrefix> to;      // unset: any destination
  std::uint32_t table = kTableMain;

  // Only what `ip rule` can show that matters here; a rule with other selectors (fwmark, src,
  // oif, ...) is reported with `other_selectors` so it is never mistaken for a plain lookup.
  // (fwmark, invert and suppress_prefixlength are read into their fields too, and still count.)
  bool other_selectors = false;
  // Exit nodes (agent/exit_plan.hpp): `ip -6 rule` (family 6: IPv6, the one exception to
  // "IPv4 only" above, with the family arguments of the route calls below), `[not] fwmark
  // MARK/MASK` (fwmask 0: no mark selector), `suppress_prefixlength N`.
  std::uint8_t family = 4;
  std::uint32_t fwmark = 0;
  std::uint32_t fwmask = 0;
  bool invert = false;
  std::optional<std::uint8_t> suppress_prefixlength{};
  std::string to_string() const;
  friend bool operator==(const Rule&, const Rule&) = default;
  // Subnet-router SNAT (agent/snat_host.hpp): `ipproto P dport A-B`. 0: any protocol / port.
  std::uint8_t ip_proto = 0;
  std::uint16_t dport_min = 0;
  std::uint16_t dport_max = 0;
};

class PolicyRouting {
 public:
  PolicyRouting();  // opens the netlink socket; throws std::system_error on failure

  // EEXIST when an identical rule is already there.
  std::error_code add_rule(const Rule& rule);
  // ENOENT when no rule matches.
  std::error_code delete_rule(const Rule& rule);
  std::error_code rules(std::vector<Rule>& out, std::uint8_t family = 4);

  // `ip route add default dev IFINDEX table TABLE` (EEXIST when the table has a default).
  // family 6: `ip -6 route add default dev IFINDEX table TABLE`.
  std::error_code add_default_route(std::uint32_t table, int ifindex, std::uint8_t family = 4);
  std::error_code delete_default_route(std::uint32_t table, int ifindex, std::uint8_t family = 4);
  // How many routes of the family the table holds (to pick an unused table).
  std::error_code count_routes(std::uint32_t table, std::size_t& count, std::uint8_t family = 4);

  // `ip neigh add proxy ADDRESS dev IFINDEX`: the router answers ARP for ADDRESS on that link
  // (when it routes ADDRESS through another interface). EEXIST when already there.
  std::error_code add_proxy_neighbour(int ifindex, const IpAddress& address);
  std::error_code delete_proxy_neighbour(int ifindex, const IpAddress& address);

 private:
  std::error_code change_rule(int type, const Rule& rule, std::uint16_t flags);
  std::error_code change_default_route(int type, std::uint32_t table, int ifindex,
                                       std::uint16_t flags, std::uint8_t family);
  std::error_code change_proxy(int type, int ifindex, const IpAddress& address,
                               std::uint16_t flags);

  tun::netlink::Socket socket_;
};

}  // namespace knit::net
