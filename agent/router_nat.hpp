// RouterNat: a subnet router's source translation (`--snat-routes`, on by default). No I/O,
// no clock: PacketFilter hands packets and `now` in; agent/snat_host.hpp makes the host deliver
// the replies.
//
//   peer 100.64.0.7:40000 ──mesh──► to_lan:   src -> 192.168.1.1:61234 ──TUN──► kernel ──► LAN host
//   peer 100.64.0.7:40000 ◄──mesh── from_lan: dst <- 192.168.1.1:61234 ◄──TUN── ip rule ◄── LAN host
//
// One NatEngine per egress address (the address the kernel uses towards a routed prefix, what
// the LAN host sees as the source): endpoint-independent mapping, address-and-port-dependent
// filtering (only the endpoint a peer talked to may answer), every TCP/UDP mapping inside the
// reserved port range (so one `ip rule ... dport A-B` per address and protocol steers all the
// replies into the TUN), ICMP query ids anywhere (echo replies and ICMP errors reach knitd on a
// raw socket instead, see snat_host.hpp). Timers are the engine's defaults (RFC 4787/5382/5508).
// The kernel forwards the translated packets, so the engine decrements no TTL. A full table is
// dropped and counted (nat::DropReason::table_full / ports_exhausted). IPv6: an IPv6 routed
// prefix with an IPv6 egress address (an exit node's ::/0: the source of the IPv6 default
// route) gets a nat::Nat66 (the same mapping, filtering, port range and timers); SnatHost steers
// its replies with `ip -6` rules and reads its ICMPv6 on a raw ICMPv6 socket.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "base/bytes.hpp"
#include "base/ip.hpp"
#include "base/random.hpp"
#include "base/time.hpp"
#include "nat/nat66.hpp"
#include "nat/nat_engine.hpp"

namespace knit::agent {

// The ports the translations take: reserved for knitd on the host (ip_local_reserved_ports).
struct SnatPortRange {
  std::uint16_t min = 61000;
  std::uint16_t max = 61999;
  friend bool operator==(const SnatPortRange&, const SnatPortRange&) = default;
};

// A routed prefix and the router's address towards it.
struct SnatEgress {
  IpPrefix prefix;
  IpAddress address;
  friend bool operator==(const SnatEgress&, const SnatEgress&) = default;
};

class RouterNat {
 public:
  struct Limits {
    std::size_t max_mappings = 16384;
    std::size_t max_sessions = 65536;
  };
  enum class Outcome : std::uint8_t {
    not_mine,    // not routed traffic this translates: the caller goes on as before
    translated,  // rewritten in place; `length` bytes to pass on
    dropped,     // malformed, filtered, table full...: counted by the engine
  };
  struct Result {
    Outcome outcome = Outcome::not_mine;
    std::size_t length = 0;
  };

  RouterNat(Random& rng, SnatPortRange ports, Limits limits) : rng_(rng), ports_(ports), limits_(limits) {}
  RouterNat(Random& rng) : RouterNat(rng, SnatPortRange{}, Limits{}) {}

  // The routed prefixes with their egress addresses of the same family (others are ignored).
  // Engines whose address stays keep their sessions; the others are dropped.
  void set_egress(std::vector<SnatEgress> egress);
  const std::vector<SnatEgress>& egress() const { return egress_; }
  // The distinct egress addresses, in first-seen order.
  std::vector<IpAddress> addresses() const;
  const SnatPortRange& ports() const { return ports_; }

  // From a peer into a routed prefix (mesh -> TUN).
  Result to_lan(Instant now, MutableByteSpan packet);
  // From the TUN (a reply steered by the ip rules, or an ICMP message from the raw socket),
  // addressed to one of the egress addresses.
  Result from_lan(Instant now, MutableByteSpan packet);

  void expire(Instant now);

  struct Entry {
    IpAddress egress;
    nat::SessionInfo session;
  };
  std::vector<Entry> sessions() const;
  // Totals over the engines (live and retired).
  struct Totals {
    std::uint64_t to_lan_packets = 0;
    std::uint64_t from_lan_packets = 0;
    std::uint64_t translated_to_lan = 0;
    std::uint64_t translated_from_lan = 0;
    std::uint64_t dropped_to_lan = 0;
    std::uint64_t dropped_from_lan = 0;
    std::uint64_t mappings = 0;  // live
    std::uint64_t sessions = 0;  // live
    std::uint64_t mappings_created = 0;
    std::uint64_t sessions_created = 0;
    std::uint64_t icmp_errors_translated = 0;
    std::array<std::uint64_t, nat::kDropReasonCount> drops{};
  };
  Totals totals() const;

 private:
  struct Slot {
    IpAddress address;
    std::unique_ptr<nat::NatEngine> engine;  // IPv4
    std::unique_ptr<nat::Nat66> engine6;     // IPv6
  };
  Slot* slot_for(const IpAddress& address);
  void retire(const Slot& slot);

  Random& rng_;
  SnatPortRange ports_;
  Limits limits_;
  std::vector<SnatEgress> egress_;
  std::vector<Slot> slots_;
  Totals retired_;
};

nat::Nat66::Config router_nat66_config(const IpAddress& egress, SnatPortRange ports, std::size_t max_sessions);

nat::Config router_nat_config(const IpAddress& egress, SnatPortRange ports, std::size_t max_mappings,
                              std::size_t max_sessions);

}  // namespace knit::agent
