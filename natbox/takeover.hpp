// Takeover: steers a router namespace's forwarded IPv4 traffic through knit-natbox's two TUNs,
// and gives it all back. The OS adapter of the natbox: rtnetlink for links, routes, rules and
// proxy ARP; /proc/sys for the few per-interface switches. No NAT happens here.
//
//             iif INSIDE: rule "lookup T_IN"                 main table: PUBLIC/32 dev TUN_OUT
//   inside ─────────────────────────► TUN_IN    TUN_OUT ◄─────────────────────────── outside
//   hosts                              │  ▲        │  ▲         (proxy ARP answers for PUBLIC)
//                                      ▼  │        ▼  │
//                               knit-natbox: engine.outbound / engine.inbound
//                                      │                 │
//        written back into the TUN ────┴─────────────────┴──── the kernel routes the rewritten
//        packet by the main table (iif is the TUN, so no rule catches it twice)
//
// Two ways to own PUBLIC:
//   * proxy (PUBLIC is no address of the router, the usual lab set-up): a host route sends it
//     into TUN_OUT, and a proxy neighbour entry makes the router answer ARP for it on OUTSIDE.
//     The router's own traffic keeps its own addresses and is untouched.
//   * local (PUBLIC is already an address of OUTSIDE, like a home router's WAN address): the
//     "lookup local" rule moves from priority 0 below two rules that send packets to PUBLIC
//     arriving on INSIDE (hairpin) and OUTSIDE into the TUNs; TUNs accept a local source.
//     Replies to connections the router itself opens from PUBLIC then meet the NAT (no loop,
//     but they are dropped, as on a real NAT box without an exception for itself).
//
// Every step is recorded with its undo; the destructor undoes them in reverse order. Packets
// addressed to the router's other addresses are delivered locally as before (rule order).
//
// What a run that could not undo its steps (SIGKILL, a crash) leaves behind is taken back by
// the next run: rules into natbox tables that hold no route any more are removed before set-up,
// and a "lookup local" rule found at kPrefLocalMoved goes back to priority 0 on exit. (Routes,
// the TUNs and their per-device sysctls die with the TUNs; a proxy neighbour entry that exists
// already is used and kept.)
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "base/ip.hpp"
#include "net/policy_routing.hpp"
#include "tun/link_config.hpp"

namespace knit::natbox {

// Setting up failed; what() says what and what to do. Whatever was done is already undone.
class TakeoverError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Takeover {
 public:
  // Rule priorities. Local mode moves "lookup local" from 0 to kLocalMoved.
  static constexpr std::uint32_t kPrefHairpinToPublic = 100;  // local mode: iif INSIDE to PUBLIC
  static constexpr std::uint32_t kPrefInboundToPublic = 101;  // local mode: iif OUTSIDE to PUBLIC
  static constexpr std::uint32_t kPrefLocalMoved = 500;
  static constexpr std::uint32_t kPrefFromInside = 600;  // iif INSIDE lookup T_IN

  struct Plan {
    std::string inside;
    std::string outside;
    IpAddress public_address;
    std::string tun_inside;   // reads what arrived on INSIDE (engine.outbound)
    std::string tun_outside;  // reads what arrived on OUTSIDE for PUBLIC (engine.inbound)
  };

  // What the natbox learns about the router before touching it (throws TakeoverError).
  struct Survey {
    int inside_index = 0;
    int outside_index = 0;
    std::vector<IpPrefix> inside_networks;  // IPv4 routes of the main table through INSIDE
    std::optional<IpAddress> inside_address;  // the router's first IPv4 address on INSIDE
    bool public_is_local = false;
  };
  static Survey survey(const Plan& plan);

  Takeover(const Plan& plan, const Survey& survey);  // throws TakeoverError
  ~Takeover();
  Takeover(const Takeover&) = delete;
  Takeover& operator=(const Takeover&) = delete;

  // Undo now (idempotent); failures are logged, not thrown.
  void restore();

  std::uint32_t table_inside() const { return table_inside_; }
  std::uint32_t table_outside() const { return table_outside_; }
  // One line for the startup banner ("proxy ARP for 203.0.113.1 on veth1, tables 1234/1235").
  std::string summary() const;

 private:
  void set_up();
  void remove_stale_rules();
  void prepare_tun(const std::string& name);
  void pick_tables();
  void add_rule(const net::Rule& rule);
  void move_local_rule();
  void take_public_address();
  // Runs an action that must succeed; records its undo. Throws TakeoverError naming `what`.
  void must(const std::string& what, std::error_code result, std::function<void()> undo = {});
  void set_sysctl(const std::string& key, const std::string& value, bool restore_after,
                  bool optional = false);

  Plan plan_;
  Survey survey_;
  tun::LinkConfig links_;
  net::PolicyRouting routing_;
  std::uint32_t table_inside_ = 0;
  std::uint32_t table_outside_ = 0;
  std::vector<std::pair<std::string, std::function<void()>>> undo_;
};

}  // namespace knit::natbox
