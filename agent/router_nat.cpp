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

nat::Nat66::Config router_nat66_config(const IpAddress& egress, SnatPortRange ports, std::size_t max_sessions) {
  nat::Nat66::Config c;
  c.external = egress;
  c.port_min = ports.min;
  c.port_max = ports.max;
  c.max_sessions = max_sessions;
  return c;
}

void RouterNat::set_egress(std::vector<SnatEgress> egress) {
  egress.erase(std::remove_if(egress.begin(), egress.end(),
                              [](const SnatEgress& e) { return e.prefix.address.is_v4() != e.address.is_v4(); }),
               egress.end());
  egress_ = std::move(egress);
  const std::vector<IpAddress> wanted = addresses();
  std::vector<Slot> kept;
  for (Slot& slot : slots_) {
    if (std::find(wanted.begin(), wanted.end(), slot.address) != wanted.end()) {
      kept.push_back(std::move(slot));
    } else {
      retire(slot);
    }
  }
  for (const IpAddress& a : wanted) {
    if (std::any_of(kept.begin(), kept.end(), [&](const Slot& s) { return s.address == a; })) continue;
    Slot slot{a, nullptr, nullptr};
    if (a.is_v4())
      slot.engine = std::make_unique<nat::NatEngine>(router_nat_config(a, ports_, limits_.max_mappings, limits_.max_sessions), rng_);
    else
      slot.engine6 = std::make_unique<nat::Nat66>(router_nat66_config(a, ports_, limits_.max_sessions), rng_);
    kept.push_back(std::move(slot));
  }
  slots_ = std::move(kept);
}

std::vector<IpAddress> RouterNat::addresses() const {
  std::vector<IpAddress> out;
  for (const SnatEgress& e : egress_)
    if (std::find(out.begin(), out.end(), e.address) == out.end()) out.push_back(e.address);
  return out;
}

RouterNat::Slot* RouterNat::slot_for(const IpAddress& address) {
  for (Slot& slot : slots_)
    if (slot.address == address) return &slot;
  return nullptr;
}

RouterNat::Result RouterNat::to_lan(Instant now, MutableByteSpan packet) {
  if (slots_.empty() || packet.empty()) return {};
  const unsigned version = packet[0] >> 4;
  if (!((version == 4 && packet.size() >= 20) || (version == 6 && packet.size() >= 40))) return {};
  const IpAddress destination = version == 4 ? IpAddress::v4(packet.data() + 16) : IpAddress::v6(packet.data() + 24);
  const SnatEgress* route = nullptr;
  for (const SnatEgress& e : egress_) {
    // The longest prefix holding the destination picks the egress address.
    if (control::prefix_holds(e.prefix, destination) && (!route || e.prefix.length > route->prefix.length)) route = &e;
  }
  if (!route) return {};
  // The router's own address on that LAN: delivered to this host, nothing to translate.
  for (const Slot& slot : slots_)
    if (slot.address == destination) return {};
  Slot* slot = slot_for(route->address);
  if (!slot) return {};
  if (slot->engine6) {
    if (slot->engine6->outbound(now, packet) == nat::Nat66::Outcome::translated) return {Outcome::translated, packet.size()};
    return {Outcome::dropped, 0};
  }
  const nat::Result r = slot->engine->outbound(now, packet);
  if (r.verdict == nat::Verdict::forward) return {Outcome::translated, r.length};
  return {Outcome::dropped, 0};
}

RouterNat::Result RouterNat::from_lan(Instant now, MutableByteSpan packet) {
  if (slots_.empty() || packet.empty()) return {};
  const unsigned version = packet[0] >> 4;
  if (!((version == 4 && packet.size() >= 20) || (version == 6 && packet.size() >= 40))) return {};
  Slot* slot = slot_for(version == 4 ? IpAddress::v4(packet.data() + 16) : IpAddress::v6(packet.data() + 24));
  if (!slot) return {};
  if (slot->engine6) {
    if (slot->engine6->inbound(now, packet) == nat::Nat66::Outcome::translated) return {Outcome::translated, packet.size()};
    return {Outcome::dropped, 0};
  }
  if (!slot->engine) return {};
  const nat::Result r = slot->engine->inbound(now, packet);
  if (r.verdict == nat::Verdict::forward) return {Outcome::translated, r.length};
  return {Outcome::dropped, 0};
}

void RouterNat::expire(Instant now) {
  for (Slot& slot : slots_) {
    if (slot.engine) slot.engine->expire(now);
    if (slot.engine6) slot.engine6->expire(now);
  }
}

std::vector<RouterNat::Entry> RouterNat::sessions() const {
  std::vector<Entry> out;
  for (const Slot& slot : slots_) {
    if (slot.engine)
      for (const nat::SessionInfo& s : slot.engine->sessions()) out.push_back(Entry{slot.address, s});
    if (slot.engine6)
      for (const nat::Nat66::Session& s : slot.engine6->sessions()) {
        nat::SessionInfo info;
        info.protocol = s.protocol;
        info.internal = s.internal;
        info.external = s.external;
        info.remote = s.remote;
        info.tcp_state = s.tcp_state;
        info.expires = s.expires;
        out.push_back(Entry{slot.address, info});
      }
  }
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

void add(RouterNat::Totals& t, const nat::Nat66::Stats& s) {
  using Drop = nat::Nat66::Drop;
  std::uint64_t dropped_out = 0, dropped_in = 0;
  // Which way a drop happened is not kept per reason: filtering and addressing are inbound.
  dropped_in = s.drops_of(Drop::not_external) + s.drops_of(Drop::no_session);
  dropped_out = s.drops_of(Drop::ports_exhausted) + s.drops_of(Drop::table_full) + s.drops_of(Drop::malformed) +
                s.drops_of(Drop::unsupported);
  t.to_lan_packets += s.translated_outbound + dropped_out;
  t.from_lan_packets += s.translated_inbound + dropped_in;
  t.translated_to_lan += s.translated_outbound;
  t.translated_from_lan += s.translated_inbound;
  t.dropped_to_lan += dropped_out;
  t.dropped_from_lan += dropped_in;
  t.mappings_created += s.mappings_created;
  t.sessions_created += s.sessions_created;
  t.icmp_errors_translated += s.icmp_errors_translated;
  const auto at = [](nat::DropReason r) { return static_cast<std::size_t>(r); };
  t.drops[at(nat::DropReason::malformed)] += s.drops_of(Drop::malformed);
  t.drops[at(nat::DropReason::unsupported_protocol)] += s.drops_of(Drop::unsupported);
  t.drops[at(nat::DropReason::not_external)] += s.drops_of(Drop::not_external);
  t.drops[at(nat::DropReason::filtered)] += s.drops_of(Drop::no_session);
  t.drops[at(nat::DropReason::ports_exhausted)] += s.drops_of(Drop::ports_exhausted);
  t.drops[at(nat::DropReason::table_full)] += s.drops_of(Drop::table_full);
}

}  // namespace

void RouterNat::retire(const Slot& slot) {
  if (slot.engine) add(retired_, slot.engine->stats());
  if (slot.engine6) {
    nat::Nat66::Stats s = slot.engine6->stats();
    add(retired_, s);
  }
}

RouterNat::Totals RouterNat::totals() const {
  Totals t = retired_;
  for (const Slot& slot : slots_) {
    if (slot.engine) {
      const nat::Stats s = slot.engine->stats();
      add(t, s);
      t.mappings += s.mappings_live;
      t.sessions += s.sessions_live;
    }
    if (slot.engine6) {
      const nat::Nat66::Stats s = slot.engine6->stats();
      add(t, s);
      t.mappings += s.mappings_live;
      t.sessions += s.sessions_live;
    }
  }
  return t;
}

}  // namespace knit::agent
