#include "agent/router_nat.hpp"

#include <algorithm>

#include "control/route_rules.hpp"

namespace knit::agent {

nat::Config router_nat_config(const IpAddress& egress, SnatPortRange ports, std::size_t max_mappings,
                              std::size_t max_sessions) {
  nat::Config c;
  c.external_addresses = {egress};
  c.mapping = nat::Mapping::endpoint_independent;              // RFC 4787 REQ-1
  c.filtering = nat::Filtering::address_and_port_dependent;    // only whom a peer talked to
  c.port_min = ports.min;
  c.port_max = ports.max;
  c.low_ports_stay_low = false;  // every reply must fall in the steered range
  c.hairpinning = false;         // peers reach the egress address itself untranslated
  c.decrement_ttl = false;       // the kernel forwards (and decrements) after the TUN
  c.unsolicited_syn_icmp = false;
  c.unsolicited_syn_hold = Duration::zero();  // nothing unsolicited from the LAN reaches a peer
  c.icmp_error_on_exhaustion = false;         // a full table drops and counts
  c.max_mappings = max_mappings;
  c.max_sessions = max_sessions;
  return c;
}

void RouterNat::set_egress(std::vector<SnatEgress> egress) {
  egress.erase(std::remove_if(egress.begin(), egress.end(),
                              [](const SnatEgress& e) { return !e.prefix.address.is_v4() || !e.address.is_v4(); }),
               egress.end());
  egress_ = std::move(egress);
  const std::vector<IpAddress> wanted = addresses();
  std::vector<Slot> kept;
  for (Slot& slot : slots_) {
    if (std::find(wanted.begin(), wanted.end(), slot.address) != wanted.end()) {
      kept.push_back(std::move(slot));
    } else {
      retire(slot.engine->stats());
    }
  }
  for (const IpAddress& a : wanted) {
    if (std::any_of(kept.begin(), kept.end(), [&](const Slot& s) { return s.address == a; })) continue;
    kept.push_back(Slot{a, std::make_unique<nat::NatEngine>(
                               router_nat_config(a, ports_, limits_.max_mappings, limits_.max_sessions), rng_)});
  }
  slots_ = std::move(kept);
}

std::vector<IpAddress> RouterNat::addresses() const {
  std::vector<IpAddress> out;
  for (const SnatEgress& e : egress_)
    if (std::find(out.begin(), out.end(), e.address) == out.end()) out.push_back(e.address);
  return out;
}

nat::NatEngine* RouterNat::engine_for(const IpAddress& address) {
  for (Slot& slot : slots_)
    if (slot.address == address) return slot.engine.get();
  return nullptr;
}

RouterNat::Result RouterNat::to_lan(Instant now, MutableByteSpan packet) {
  if (slots_.empty() || packet.size() < 20 || (packet[0] >> 4) != 4) return {};
  const IpAddress destination = IpAddress::v4(packet.data() + 16);
  const SnatEgress* route = nullptr;
  for (const SnatEgress& e : egress_) {
    // The longest prefix holding the destination picks the egress address.
    if (control::prefix_holds(e.prefix, destination) && (!route || e.prefix.length > route->prefix.length)) route = &e;
  }
  if (!route) return {};
  // The router's own address on that LAN: delivered to this host, nothing to translate.
  for (const Slot& slot : slots_)
    if (slot.address == destination) return {};
  nat::NatEngine* engine = engine_for(route->address);
  if (!engine) return {};
  const nat::Result r = engine->outbound(now, packet);
  if (r.verdict == nat::Verdict::forward) return {Outcome::translated, r.length};
  return {Outcome::dropped, 0};
}

RouterNat::Result RouterNat::from_lan(Instant now, MutableByteSpan packet) {
  if (slots_.empty() || packet.size() < 20 || (packet[0] >> 4) != 4) return {};
  nat::NatEngine* engine = engine_for(IpAddress::v4(packet.data() + 16));
  if (!engine) return {};
  const nat::Result r = engine->inbound(now, packet);
  if (r.verdict == nat::Verdict::forward) return {Outcome::translated, r.length};
  return {Outcome::dropped, 0};
}

void RouterNat::expire(Instant now) {
  for (Slot& slot : slots_) slot.engine->expire(now);
}

std::vector<RouterNat::Entry> RouterNat::sessions() const {
  std::vector<Entry> out;
  for (const Slot& slot : slots_)
    for (const nat::SessionInfo& s : slot.engine->sessions()) out.push_back(Entry{slot.address, s});
  return out;
}

namespace {

void add(RouterNat::Totals& t, const nat::Stats& s) {
  t.to_lan_packets += s.outbound_packets;
  t.from_lan_packets += s.inbound_packets;
  t.translated_to_lan += s.forwarded_outbound;
  t.translated_from_lan += s.forwarded_inbound;
  t.dropped_to_lan += s.dropped_outbound + s.replied_outbound;
  t.dropped_from_lan += s.dropped_inbound + s.replied_inbound;
  t.mappings_created += s.mappings_created;
  t.sessions_created += s.sessions_created;
  t.icmp_errors_translated += s.icmp_errors_translated;
  for (std::size_t i = 0; i < s.drops.size(); ++i) t.drops[i] += s.drops[i];
}

}  // namespace

void RouterNat::retire(const nat::Stats& stats) { add(retired_, stats); }

RouterNat::Totals RouterNat::totals() const {
  Totals t = retired_;
  for (const Slot& slot : slots_) {
    const nat::Stats s = slot.engine->stats();
    add(t, s);
    t.mappings += s.mappings_live;
    t.sessions += s.sessions_live;
  }
  return t;
}

}  // namespace knit::agent
