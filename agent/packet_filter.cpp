#include "agent/packet_filter.hpp"

#include <algorithm>
#include <sstream>

#include "control/route_rules.hpp"
#include "nat/icmp_error.hpp"

namespace knit::agent {

namespace {

nat::Protocol nat_protocol(localapi::ForwardProtocol protocol) {
  return protocol == localapi::ForwardProtocol::tcp ? nat::Protocol::tcp : nat::Protocol::udp;
}

bool is_malformed(nat::DropReason reason) {
  return reason == nat::DropReason::malformed || reason == nat::DropReason::bad_checksum ||
         reason == nat::DropReason::not_ipv4;
}

// A NatEngine as a host's stateful filter: no translation of the host's own flows.
nat::Config host_config(const IpAddress& mesh_v4, const PacketFilter::Limits& limits) {
  nat::Config c;
  c.external_addresses = {mesh_v4};
  c.mapping = nat::Mapping::endpoint_independent;  // with port preservation: the same port
  c.filtering = nat::Filtering::address_and_port_dependent;  // replies from whom we talk to
  c.own_address_flows = true;
  c.decrement_ttl = false;  // a host, not a router
  c.hairpinning = false;    // the kernel never routes its own address into the TUN
  c.unsolicited_syn_hold = Duration::zero();  // refused at once, not held (no simultaneous open
  c.unsolicited_syn_icmp = false;             // with strangers: shields up means silence)
  c.icmp_error_on_exhaustion = false;         // a full table: passed untracked, see outbound
  c.max_mappings = limits.max_mappings;
  c.max_sessions = limits.max_sessions;
  return c;
}

// Whether an inbound IPv4 packet is addressed to one of this node's port forwards: to `self`,
// TCP or UDP, a first fragment (or none), destination port a forward's mesh port. Read before
// the engine rewrites it to the forward's target.
bool to_forward(ByteSpan packet, const IpAddress& self, const std::vector<localapi::ForwardRule>& rules) {
  if (rules.empty() || packet.size() < 20) return false;
  const std::size_t ihl = std::size_t{packet[0] & 0x0fu} * 4;
  if (ihl < 20 || packet.size() < ihl + 4) return false;
  if (((packet[6] & 0x1fu) | packet[7]) != 0) return false;  // a later fragment: no ports
  if (IpAddress::v4(packet.data() + 16) != self) return false;
  const std::uint8_t protocol = packet[9];
  if (protocol != 6 && protocol != 17) return false;
  const auto wanted = protocol == 6 ? localapi::ForwardProtocol::tcp : localapi::ForwardProtocol::udp;
  const std::uint16_t port = static_cast<std::uint16_t>((packet[ihl + 2] << 8) | packet[ihl + 3]);
  return std::any_of(rules.begin(), rules.end(), [&](const localapi::ForwardRule& r) {
    return r.protocol == wanted && r.mesh_port == port;
  });
}

}  // namespace

PacketFilter::PacketFilter(Random& rng, Limits limits)
    : rng_(rng),
      limits_(limits),
      v6_(rng.next_u64(), nat::Ipv6Conntrack::Limits{limits.max_ipv6_flows, std::chrono::minutes(5),
                                                std::chrono::minutes(124), std::chrono::minutes(4),
                                                std::chrono::seconds(60)}),
      router_nat_(rng) {}

PacketFilter::~PacketFilter() = default;

// ---------------------------------------------------------------- settings

void PacketFilter::set_mesh_address(std::optional<IpAddress> ipv4) {
  if (ipv4 && !ipv4->is_v4()) ipv4.reset();
  if (ipv4 == mesh_v4_) return;
  mesh_v4_ = ipv4;
  rebuild_engine();
}

void PacketFilter::rebuild_engine() {
  if (engine_) {
    const nat::Stats s = engine_->stats();
    retired_.forwarded_in += s.port_forward_inbound;
    retired_.forwarded_out += s.port_forward_outbound;
  }
  engine_.reset();
  if (!mesh_v4_) return;
  engine_ = std::make_unique<nat::NatEngine>(host_config(*mesh_v4_, limits_), rng_);
  for (const localapi::ForwardRule& rule : rules_) install(rule, nullptr);
}

bool PacketFilter::install(const localapi::ForwardRule& rule, std::string* why) {
  if (!engine_) return true;  // installed once the address is known
  if (rule.target.address() == *mesh_v4_) {
    if (why) *why = "the target cannot be this node's own mesh address";
    return false;
  }
  const nat::ForwardError e = engine_->add_port_forward(
      {nat_protocol(rule.protocol), rule.mesh_port, rule.target.address(), rule.target.port(), {}});
  if (e == nat::ForwardError::none) return true;
  if (why) {
    *why = e == nat::ForwardError::port_in_use
               ? "mesh port " + std::to_string(rule.mesh_port) + " is in use by a connection of this host"
               : std::string("cannot install the forward: ") + nat::to_string(e);
  }
  return false;
}

std::string PacketFilter::add_forward(const localapi::ForwardRule& rule) {
  if (std::string why = localapi::check_forward_rule(rule); !why.empty()) return why;
  for (const localapi::ForwardRule& existing : rules_) {
    if (existing.protocol == rule.protocol && existing.mesh_port == rule.mesh_port) {
      return std::string(to_string(rule.protocol)) + " mesh port " + std::to_string(rule.mesh_port) +
             " is already forwarded to " + existing.target.to_string() +
             ": remove it first (`knit forward remove`)";
    }
  }
  std::string why;
  if (!install(rule, &why)) return why;
  rules_.push_back(rule);
  return {};
}

bool PacketFilter::remove_forward(localapi::ForwardProtocol protocol, std::uint16_t mesh_port) {
  auto it = std::find_if(rules_.begin(), rules_.end(), [&](const localapi::ForwardRule& r) {
    return r.protocol == protocol && r.mesh_port == mesh_port;
  });
  if (it == rules_.end()) return false;
  rules_.erase(it);
  if (engine_) engine_->remove_port_forward(nat_protocol(protocol), mesh_port);
  return true;
}

std::vector<localapi::ForwardStatus> PacketFilter::forwards() const {
  std::vector<nat::PortForwardStatus> live;
  if (engine_) live = engine_->port_forwards();
  std::vector<localapi::ForwardStatus> out;
  for (const localapi::ForwardRule& rule : rules_) {
    localapi::ForwardStatus status;
    status.rule = rule;
    for (const nat::PortForwardStatus& f : live) {
      if (f.forward.protocol != nat_protocol(rule.protocol) || f.forward.external_port != rule.mesh_port)
        continue;
      status.active = true;
      status.packets_in = f.inbound_packets;
      status.packets_out = f.outbound_packets;
      status.connections = f.sessions_opened;
    }
    out.push_back(status);
  }
  return out;
}

localapi::FilterCounters PacketFilter::counters() const {
  localapi::FilterCounters c = counters_;
  c.forwarded_in = retired_.forwarded_in;
  c.forwarded_out = retired_.forwarded_out;
  if (engine_) {
    const nat::Stats s = engine_->stats();
    c.forwarded_in += s.port_forward_inbound;
    c.forwarded_out += s.port_forward_outbound;
  }
  return c;
}

std::string PacketFilter::dump() const {
  std::ostringstream out;
  out << "shields " << (shields_up_ ? "up" : "down") << ", " << rules_.size() << " forwards, "
      << v6_.size() << " IPv6 flows\n";
  if (engine_) out << engine_->dump();
  return out.str();
}

// ---------------------------------------------------------------- the packet path

void PacketFilter::maybe_expire(Instant now) {
  if (next_expiry_ && now < *next_expiry_) return;
  next_expiry_ = now + kExpiryInterval;
  if (engine_) engine_->expire(now);
  v6_.expire(now);
  policy_.expire(now);
  router_nat_.expire(now);
}

std::size_t PacketFilter::outbound(Instant now, MutableByteSpan packet) {
  maybe_expire(now);
  if (!packet.empty() && (packet[0] >> 4) == 4) return outbound_v4(now, packet);
  if (!packet.empty() && (packet[0] >> 4) == 6) return outbound_v6(now, packet);
  ++counters_.malformed;
  return 0;
}

std::size_t PacketFilter::inbound(Instant now, MutableByteSpan packet) {
  maybe_expire(now);
  if (!packet.empty() && (packet[0] >> 4) == 4) return inbound_v4(now, packet);
  if (!packet.empty() && (packet[0] >> 4) == 6) return inbound_v6(now, packet);
  ++counters_.malformed;
  return 0;
}

bool PacketFilter::routed(const IpAddress& ip) const {
  if (routed_.empty()) return false;
  // This host's own flows (an exit node routes 0/0 and ::/0). Without a mesh IPv6 address
  // there is no telling them apart: no IPv6 is routed then.
  if (ip.is_v4() ? mesh_v4_ && ip == *mesh_v4_ : !mesh_v6_ || ip == *mesh_v6_) return false;
  const bool inside = std::any_of(routed_.begin(), routed_.end(), [&](const IpPrefix& p) {
    return control::prefix_holds(p, ip);
  });
  if (!inside) return false;
  return std::none_of(rules_.begin(), rules_.end(), [&](const localapi::ForwardRule& r) { return r.target.address() == ip; });
}

std::size_t PacketFilter::outbound_v4(Instant now, MutableByteSpan packet) {
  // A LAN host's reply to a peer's translated flow, addressed to the router (router_nat.hpp).
  switch (const RouterNat::Result r = router_nat_.from_lan(now, packet); r.outcome) {
    case RouterNat::Outcome::translated: ++routed_packets_; return r.length;
    case RouterNat::Outcome::dropped: return 0;
    case RouterNat::Outcome::not_mine: break;
  }
  if (!engine_) return packet.size();
  // Source on a LAN this node routes (a reply to a peer, or a LAN host's own flow): not ours.
  if (packet.size() >= 20 && routed(IpAddress::v4(packet.data() + 12))) {
    ++routed_packets_;
    policy_.routed_outbound(now, packet);  // the peer's answers to a LAN host's flow are replies
    return packet.size();
  }
  const nat::Result r = engine_->outbound(now, packet);
  if (r.verdict == nat::Verdict::forward) return r.length;
  if (is_malformed(r.reason)) {
    ++counters_.malformed;
    return 0;
  }
  // Not a flow the engine tracks (an echo reply, an ICMP error of the host's, a RST for
  // nothing), or no room to track it: outbound is never filtered, so it goes as it is. A drop
  // verdict leaves the packet untouched.
  ++counters_.untracked;
  return packet.size();
}

// To a subnet this node routes (IPv4 or IPv6): past the engine and the IPv6 tracker (it is not
// this host's traffic, and the shields guard the host), but under the access policy like traffic
// into the node itself; then the router's SNAT, when it has an egress address of the family.
std::size_t PacketFilter::inbound_routed(Instant now, MutableByteSpan packet) {
  ++routed_packets_;
  if (policy_.unsolicited(now, packet) != PolicyFilter::Verdict::pass) return 0;
  // The policy judged the peer's own address; now the router's SNAT, if on, takes it over.
  switch (const RouterNat::Result r = router_nat_.to_lan(now, packet); r.outcome) {
    case RouterNat::Outcome::translated: return r.length;
    case RouterNat::Outcome::dropped: return 0;
    case RouterNat::Outcome::not_mine: break;
  }
  return packet.size();
}

std::size_t PacketFilter::inbound_v4(Instant now, MutableByteSpan packet) {
  if (!engine_) return policy_.unsolicited(now, packet) == PolicyFilter::Verdict::pass ? packet.size() : 0;
  if (packet.size() >= 20 && routed(IpAddress::v4(packet.data() + 16))) return inbound_routed(now, packet);
  // A port forward is a service of this node: a flow into it is judged by the policy as traffic
  // into this node on the mesh port, before the engine rewrites it towards the target. Every
  // packet of it is asked (one lookup once accepted), so a rule change cuts it like any other.
  if (policy_.in_force() && mesh_v4_ && to_forward(packet, *mesh_v4_, rules_) &&
      policy_.unsolicited(now, packet) != PolicyFilter::Verdict::pass)
    return 0;
  const nat::Result r = engine_->inbound(now, packet);
  if (r.verdict == nat::Verdict::forward) {
    const bool cut = policy_.tracked(now, packet.first(r.length)) == PolicyFilter::Verdict::drop;
    return cut ? 0 : r.length;
  }
  if (r.verdict == nat::Verdict::drop && is_malformed(r.reason)) {
    ++counters_.malformed;
    return 0;
  }
  if (shields_up_) {
    ++counters_.refused_v4;
    return 0;
  }
  // Unsolicited, untouched by the engine: the policy's to decide (no policy: it passes).
  return policy_.unsolicited(now, packet) == PolicyFilter::Verdict::pass ? packet.size() : 0;
}

std::size_t PacketFilter::outbound_v6(Instant now, MutableByteSpan packet) {
  // As outbound_v4: a reply to a peer's translated flow (steered into the TUN, or an ICMPv6
  // message from the raw socket), then traffic from a routed prefix, past the tracker.
  switch (const RouterNat::Result r = router_nat_.from_lan(now, packet); r.outcome) {
    case RouterNat::Outcome::translated: ++routed_packets_; return r.length;
    case RouterNat::Outcome::dropped: return 0;
    case RouterNat::Outcome::not_mine: break;
  }
  if (packet.size() >= 40 && routed(IpAddress::v6(packet.data() + 8))) {
    ++routed_packets_;
    policy_.routed_outbound(now, packet);
    return packet.size();
  }
  switch (v6_.outbound(now, packet)) {
    case nat::Ipv6Conntrack::Outcome::malformed: ++counters_.malformed; return 0;
    case nat::Ipv6Conntrack::Outcome::untracked:
    case nat::Ipv6Conntrack::Outcome::table_full: ++counters_.untracked; return packet.size();
    default: return packet.size();
  }
}

std::size_t PacketFilter::inbound_v6(Instant now, MutableByteSpan packet) {
  if (packet.size() >= 40 && routed(IpAddress::v6(packet.data() + 24))) return inbound_routed(now, packet);
  switch (v6_.inbound(now, packet)) {
    case nat::Ipv6Conntrack::Outcome::malformed: ++counters_.malformed; return 0;
    case nat::Ipv6Conntrack::Outcome::unsolicited:
      if (shields_up_) {
        ++counters_.refused_v6;
        return 0;
      }
      return policy_.unsolicited(now, packet) == PolicyFilter::Verdict::pass ? packet.size() : 0;
    case nat::Ipv6Conntrack::Outcome::fragment: return packet.size();
    default: return policy_.tracked(now, packet) == PolicyFilter::Verdict::pass ? packet.size() : 0;
  }
}

}  // namespace knit::agent
