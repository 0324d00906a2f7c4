// PacketFilter: knitd's stateful filter ("shields") and port-forward translator, between the TUN
// and the WireGuard device. No I/O, no clock: the data plane hands packets and `now` in.
//
//   TUN ──read──► outbound(now, pkt) ──► Device::on_tun_packet     (opens/refreshes state;
//                                                                   forward replies: source
//                                                                   target -> mesh IP:port)
//   TUN ◄─write── inbound(now, pkt)  ◄── DeviceIo::write_tun        (shields; forwards: dest
//                                                                   mesh IP:port -> target)
//
// IPv4 goes through a NatEngine configured for a host (nat::Config::own_address_flows): its
// external address is this node's mesh IPv4, the host's own flows keep their address and port
// and open the way for their replies (filtering is address-and-port dependent, as a stateful
// firewall), unsolicited SYNs are dropped at once, and the port forwards are the engine's
// static DNAT rules. IPv6 goes through Ipv6Conntrack (track only, no translation); IPv6 routed
// for the mesh (an exit node's ::/0, an IPv6 subnet) passes it by, as routed IPv4 passes the
// engine, and is translated by the router's SNAT when that has an IPv6 egress address.
//
// Shields down (the default): everything passes as it would without the filter, but state
// is still kept, so raising the shields later does not cut the host's open connections.
// Shields up: an inbound packet passes only when it belongs to a flow this host opened, is an
// ICMP error about one, or is for a port forward. Malformed packets are dropped either way.
//
// The access policy (policy_filter.hpp) sits behind the engines: what they call unsolicited
// must match a rule once a policy is in force (and the shields, when up, still refuse it all).
//
// Port forwards translate only the destination (DNAT): the target sees the peer's mesh address
// as the source and must send its replies back through this host's TUN, which holds when the
// target is an address of this host (not loopback: the kernel never accepts 127/8 from another
// interface) or a machine that routes the mesh range through this host (a container or VM
// behind it, with IP forwarding on).
#pragma once

#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/policy_filter.hpp"
#include "agent/router_nat.hpp"
#include "localapi/filter_status.hpp"
#include "nat/ipv6_conntrack.hpp"
#include "base/bytes.hpp"
#include "base/random.hpp"
#include "base/time.hpp"
#include "nat/nat_engine.hpp"

namespace knit::agent {

class PacketFilter {
 public:
  struct Limits {
    std::size_t max_mappings = 16384;
    std::size_t max_sessions = 65536;
    std::size_t max_ipv6_flows = 65536;
  };
  // How often the packet path retires timed-out state in bulk.
  static constexpr Duration kExpiryInterval = std::chrono::seconds(10);

  explicit PacketFilter(Random& rng) : PacketFilter(rng, Limits{}) {}
  PacketFilter(Random& rng, Limits limits);
  ~PacketFilter();

  // This node's mesh IPv4 (nullopt: not in a mesh). The IPv4 translator is rebuilt when it
  // changes; without an address IPv4 passes unfiltered (there is no mesh address to protect).
  void set_mesh_address(std::optional<IpAddress> ipv4);
  const std::optional<IpAddress>& mesh_address() const { return mesh_v4_; }
  // This node's mesh IPv6 (its ULA): kept out of the routed prefixes (an exit node routes ::/0),
  // so the host's own IPv6 flows stay with the IPv6 tracker. Without it no IPv6 is routed.
  void set_mesh_ipv6(std::optional<IpAddress> ipv6) {
    if (ipv6 && !ipv6->is_v6()) ipv6.reset();
    mesh_v6_ = ipv6;
  }
  const std::optional<IpAddress>& mesh_ipv6() const { return mesh_v6_; }

  // The subnets this node routes for the mesh (`knit set --advertise-routes`). Packets routed
  // between them and the mesh are not this host's flows: they pass without the engine (which
  // would otherwise translate a LAN host's replies as an inside host's), and the shields, which
  // guard this host, do not apply to them. A port forward's target inside them still has its
  // replies translated.
  void set_routed_prefixes(std::vector<IpPrefix> routes) { routed_ = std::move(routes); }
  std::uint64_t routed_packets() const { return routed_packets_; }
  // The subnet router's SNAT (router_nat.hpp): with egress addresses set, IPv4 and IPv6 from
  // peers into the routed prefixes leave with the router's address, and replies addressed to it
  // (steered into the TUN, snat_host.hpp) go back to the peer. Without them: routed as above.
  RouterNat& router_nat() { return router_nat_; }
  const RouterNat& router_nat() const { return router_nat_; }

  void set_shields_up(bool up) { shields_up_ = up; }
  // The access policy's rules for traffic into this node (policy_filter.hpp).
  PolicyFilter& policy() { return policy_; }
  const PolicyFilter& policy() const { return policy_; }
  bool shields_up() const { return shields_up_; }

  // Adds a rule; returns why not (a sentence), empty on success. A rule whose mesh port is
  // taken by another rule of the same protocol is refused.
  std::string add_forward(const localapi::ForwardRule& rule);
  // False when there is no such rule. Connections through it end when they time out.
  bool remove_forward(localapi::ForwardProtocol protocol, std::uint16_t mesh_port);
  const std::vector<localapi::ForwardRule>& forward_rules() const { return rules_; }
  std::vector<localapi::ForwardStatus> forwards() const;
  localapi::FilterCounters counters() const;
  // Table sizes for metrics: the IPv4 NAT table's memory and the tracked IPv6 flows.
  std::size_t nat_table_bytes() const { return engine_ ? engine_->memory_bytes() : 0; }
  std::size_t ipv6_flows() const { return v6_.size(); }
  // The IPv4 table as a person reads it (NatEngine::dump), and the IPv6 flow count.
  std::string dump() const;

  // The packet path. The packet is rewritten in place; the result is how many bytes of it to
  // pass on (to the device or the TUN), 0 to drop it.
  std::size_t outbound(Instant now, MutableByteSpan packet);
  std::size_t inbound(Instant now, MutableByteSpan packet);

 private:
  void rebuild_engine();
  bool install(const localapi::ForwardRule& rule, std::string* why);
  void maybe_expire(Instant now);
  std::size_t outbound_v4(Instant now, MutableByteSpan packet);
  std::size_t inbound_v4(Instant now, MutableByteSpan packet);
  std::size_t outbound_v6(Instant now, MutableByteSpan packet);
  std::size_t inbound_v6(Instant now, MutableByteSpan packet);
  std::size_t inbound_routed(Instant now, MutableByteSpan packet);

  Random& rng_;
  Limits limits_;
  std::optional<IpAddress> mesh_v4_;
  std::optional<IpAddress> mesh_v6_;
  std::unique_ptr<nat::NatEngine> engine_;
  nat::Ipv6Conntrack v6_;
  std::vector<localapi::ForwardRule> rules_;
  std::vector<IpPrefix> routed_;
  std::uint64_t routed_packets_ = 0;
  RouterNat router_nat_;
  // Routed traffic (see set_routed_prefixes): `address` (a packet's LAN side) is inside a routed
  // prefix, is not this node's mesh address and is no port forward's target.
  bool routed(const IpAddress& address) const;
  bool shields_up_ = false;
  PolicyFilter policy_;
  localapi::FilterCounters counters_;
  localapi::FilterCounters retired_;  // forward counters of engines replaced since
  std::optional<Instant> next_expiry_;
};

}  // namespace knit::agent
