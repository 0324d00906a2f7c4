// The packet paths of NatEngine: validation, TCP/UDP/ICMP-query translation both ways,
// hairpinning, unsolicited-SYN holds and fragments. ICMP errors: nat_engine_icmp.cpp;
// port forwards, stats and dump: nat_engine_admin.cpp.
#include "nat/nat_engine.hpp"

#include <limits>
#include <stdexcept>
#include <utility>

#include "nat/icmp_error.hpp"
#include "nat/rewrite.hpp"
#include "nat/wire.hpp"

namespace knit::nat {

namespace {

constexpr std::size_t kAll = std::numeric_limits<std::size_t>::max();
// Due timers a packet call retires on its way, so memory comes back between expire() calls.
constexpr std::size_t kExpiryPerPacket = 8;

DropReason drop_reason_of(ParseError error) {
  switch (error) {
    case ParseError::not_ipv4: return DropReason::not_ipv4;
    case ParseError::bad_checksum: return DropReason::bad_checksum;
    case ParseError::fragmented_error: return DropReason::fragment;
    case ParseError::unsupported_protocol: return DropReason::unsupported_protocol;
    case ParseError::unsupported_icmp: return DropReason::unsupported_icmp;
    default: return DropReason::malformed;
  }
}

Result dropped(DropReason reason) { return Result{Verdict::drop, reason, 0, 0}; }

Result passed(Verdict verdict, const PacketView& view) {
  return Result{verdict, DropReason::none, view.ip.total_length, 0};
}

bool is_passed(const Result& r) {
  return r.verdict == Verdict::forward || r.verdict == Verdict::hairpin;
}

bool prefix_contains(const IpPrefix& prefix, std::uint32_t address) {
  if (prefix.length == 0) return true;
  const std::uint32_t mask = prefix.length >= 32 ? 0xffffffffu : ~(0xffffffffu >> prefix.length);
  return (address & mask) == (prefix.address.v4_host_order() & mask);
}

bool is_opening_syn(const TransportFields& t) {
  return t.protocol == Protocol::tcp && (t.tcp_flags & (kTcpSyn | kTcpAck | kTcpRst)) == kTcpSyn;
}

const Config& validated(const Config& config) {
  if (const ConfigError e = validate(config); e != ConfigError::none)
    throw std::invalid_argument(std::string("NAT configuration: ") + to_string(e));
  return config;
}

}  // namespace

NatEngine::NatEngine(Config config, Random& rng)
    : config_(std::move(config)),
      table_(validated(config_), rng),
      held_(config_.max_held_syns),
      fragments_(config_.max_fragment_flows) {
  install_configured_forwards();
}

// ---- entry points ----------------------------------------------------------------------

Result NatEngine::outbound(Instant now, Packet packet, Packet reply) {
  if (now > last_now_) last_now_ = now;
  maintain(now);
  ++stats_.outbound_packets;
  const Result result = outbound_packet(now, packet, reply);
  account(Direction::outbound, result);
  return result;
}

Result NatEngine::inbound(Instant now, Packet packet, Packet reply) {
  if (now > last_now_) last_now_ = now;
  maintain(now);
  ++stats_.inbound_packets;
  const Result result = inbound_packet(now, packet, reply);
  account(Direction::inbound, result);
  return result;
}

void NatEngine::account(Direction direction, const Result& result) {
  const bool out = direction == Direction::outbound;
  switch (result.verdict) {
    case Verdict::forward: ++(out ? stats_.forwarded_outbound : stats_.forwarded_inbound); break;
    case Verdict::hairpin: ++stats_.hairpinned; break;
    case Verdict::drop: ++(out ? stats_.dropped_outbound : stats_.dropped_inbound); break;
    case Verdict::reply: ++(out ? stats_.replied_outbound : stats_.replied_inbound); break;
  }
  if (result.verdict == Verdict::drop || result.verdict == Verdict::reply)
    ++stats_.drops[static_cast<std::size_t>(result.reason)];
}

void NatEngine::maintain(Instant now) {
  if (auto due = table_.next_deadline(); due && *due <= now) table_.expire(now, kExpiryPerPacket);
  if (auto due = held_.next_deadline(); due && *due <= now)
    stats_.held_syns_expired += held_.expire(now, config_.unsolicited_syn_icmp);
}

void NatEngine::expire(Instant now) {
  if (now > last_now_) last_now_ = now;
  table_.expire(now, kAll);
  stats_.held_syns_expired += held_.expire(now, config_.unsolicited_syn_icmp);
  fragments_.expire(now);
}

std::optional<Instant> NatEngine::next_deadline() const {
  auto table = table_.next_deadline();
  auto held = held_.next_deadline();
  if (!table) return held;
  if (!held) return table;
  return std::min(*table, *held);
}

std::size_t NatEngine::take_timer_icmp(std::span<std::uint8_t> out) {
  const auto owed = held_.take_owed();
  if (!owed) return 0;
  // RFC 5382 REQ-4: port unreachable from the address the SYN was sent to.
  const std::size_t size = write_icmp_error(
      out, kIcmpDestinationUnreachable, kIcmpCodePortUnreachable, owed->key.external_address,
      owed->key.remote_address, ByteSpan(owed->quote.data(), owed->quote_size));
  if (size != 0) ++stats_.icmp_errors_generated;
  return size;
}

// ---- outbound --------------------------------------------------------------------------

bool NatEngine::inside_source_ok(std::uint32_t source) const {
  // The NAT's own address: not translated, unless the engine filters for that host itself.
  if (table_.external_index_of(source)) return config_.own_address_flows;
  if (config_.inside_prefixes.empty()) return true;
  for (const IpPrefix& prefix : config_.inside_prefixes)
    if (prefix_contains(prefix, source)) return true;
  return false;
}

Result NatEngine::outbound_packet(Instant now, Packet packet, Packet reply) {
  PacketView view;
  if (const ParseError e = parse_packet(packet, view); e != ParseError::none)
    return dropped(drop_reason_of(e));
  if (is_martian(view.ip.source) || is_martian(view.ip.destination))
    return dropped(DropReason::martian);
  if (!inside_source_ok(view.ip.source)) return dropped(DropReason::not_inside);
  const bool to_external = table_.external_index_of(view.ip.destination).has_value();
  if (to_external && !config_.hairpinning) return dropped(DropReason::hairpin_disabled);
  if (config_.decrement_ttl && view.ip.ttl <= 1) {
    return answer_with_icmp(packet, view, reply, kIcmpTimeExceeded, kIcmpCodeTtlExceeded,
                            inside_icmp_source(view.ip.source), DropReason::ttl_expired);
  }
  const Ipv4Fields before = view.ip;  // the fragment key, should this be a first fragment
  const bool first_fragment = view.kind != PacketKind::non_first_fragment && before.more_fragments;
  Result result;
  switch (view.kind) {
    case PacketKind::non_first_fragment:
      result = follow_fragment(now, packet, view, Direction::outbound);
      break;
    case PacketKind::icmp_error:
      result = outbound_icmp_error(now, packet, view, to_external);
      break;
    case PacketKind::icmp_query_reply:
      // Inbound queries are for the NAT itself and never translated: nothing to answer.
      result = dropped(DropReason::no_mapping);
      break;
    case PacketKind::flow:
    case PacketKind::icmp_query_request:
      result = outbound_flow(now, packet, view, reply, to_external);
      break;
  }
  if (!is_passed(result)) return result;
  if (first_fragment) remember_fragment(now, before, view, Direction::outbound, result.verdict);
  if (config_.decrement_ttl) decrement_ttl(packet, view);
  return result;
}

std::uint32_t NatEngine::open_outbound(Instant now, const FlowTuple& flow, DropReason& error) {
  // Retire everything due first: a mapping whose sessions all timed out must not be reused,
  // and the room they held is free again.
  table_.expire(now, kAll);
  if (table_.sessions_live() >= config_.max_sessions) {
    error = DropReason::table_full;
    return kNoIndex;
  }
  std::uint32_t mapping = table_.find_mapping_for(flow);
  if (mapping == kNoIndex) {
    const NatTable::Created created = table_.create_mapping(flow);
    if (created.error != DropReason::none) {
      error = created.error;
      return kNoIndex;
    }
    mapping = created.index;
  }
  const Instant expires = now + timeout_of(flow.protocol, TcpState::syn_sent);
  const NatTable::Created session =
      table_.create_session(mapping, flow.remote_address, flow.remote_port, expires, false);
  if (session.error != DropReason::none) table_.discard_if_unused(mapping);
  error = session.error;
  return session.index;
}

Result NatEngine::outbound_flow(Instant now, Packet packet, PacketView& view, Packet reply,
                                bool to_external) {
  const TransportFields t = view.transport;
  const FlowTuple flow{t.protocol, view.ip.source, t.source_port, view.ip.destination,
                       t.destination_port};
  std::uint32_t session = live_session(table_.find_session_outbound(flow), now);
  if (session == kNoIndex) {
    if (t.protocol == Protocol::tcp) {
      // RFC 7857 §2.2: a RST opens nothing; without a SYN, only if pickup is allowed.
      if (t.tcp_flags & kTcpRst) return dropped(DropReason::no_mapping);
      if (!(t.tcp_flags & kTcpSyn) && !config_.tcp_midstream_pickup)
        return dropped(DropReason::no_mapping);
    }
    DropReason error = DropReason::none;
    session = open_outbound(now, flow, error);
    if (session == kNoIndex) {
      // RFC 5508 REQ-8: no room for a new session -> ICMP 3/13 back to the sender, or a drop.
      if (!config_.icmp_error_on_exhaustion) return dropped(error);
      return answer_with_icmp(packet, view, reply, kIcmpDestinationUnreachable,
                              kIcmpCodeAdminProhibited, inside_icmp_source(view.ip.source), error);
    }
  }
  const std::uint32_t external = table_.external_address(table_.session(session).external_index);
  const std::uint16_t external_port = table_.session(session).external_port;
  if (is_opening_syn(t) && held_.held() > 0) {
    // RFC 5382 REQ-4: the outbound half of a simultaneous open; the held SYN stays dropped.
    if (held_.release(HeldSynKey{external, flow.remote_address, external_port, flow.remote_port}))
      ++stats_.held_syns_matched;
  }
  touch(session, now, Direction::outbound, t.tcp_flags);
  count_forward(session, Direction::outbound);
  rewrite_source(packet, view, external, external_port);
  if (!to_external) return passed(Verdict::forward, view);
  // RFC 4787 REQ-9, RFC 5382 REQ-8: back inside, from the sender's external endpoint
  // (REQ-9a), and filtered as if it came from outside.
  const auto index = table_.external_index_of(view.ip.destination);
  Result result = inbound_flow(now, packet, view, *index, true);
  if (result.verdict == Verdict::forward) result.verdict = Verdict::hairpin;
  return result;
}

// ---- inbound ---------------------------------------------------------------------------

Result NatEngine::inbound_packet(Instant now, Packet packet, Packet reply) {
  PacketView view;
  if (const ParseError e = parse_packet(packet, view); e != ParseError::none)
    return dropped(drop_reason_of(e));
  if (is_martian(view.ip.source)) return dropped(DropReason::martian);
  const auto external = table_.external_index_of(view.ip.destination);
  if (!external) return dropped(DropReason::not_external);
  if (config_.decrement_ttl && view.ip.ttl <= 1) {
    return answer_with_icmp(packet, view, reply, kIcmpTimeExceeded, kIcmpCodeTtlExceeded,
                            view.ip.destination, DropReason::ttl_expired);
  }
  const Ipv4Fields before = view.ip;  // the fragment key, should this be a first fragment
  const bool first_fragment = view.kind != PacketKind::non_first_fragment && before.more_fragments;
  Result result;
  switch (view.kind) {
    case PacketKind::non_first_fragment:
      result = follow_fragment(now, packet, view, Direction::inbound);
      break;
    case PacketKind::icmp_error: result = inbound_icmp_error(now, packet, view, *external); break;
    case PacketKind::icmp_query_request:
      // Addressed to the NAT itself (RFC 5508 REQ-1 maps only queries sent from inside).
      result = dropped(DropReason::no_mapping);
      break;
    case PacketKind::flow:
    case PacketKind::icmp_query_reply:
      result = inbound_flow(now, packet, view, *external, false);
      break;
  }
  if (!is_passed(result)) return result;
  if (first_fragment) remember_fragment(now, before, view, Direction::inbound, result.verdict);
  if (config_.decrement_ttl) decrement_ttl(packet, view);
  return result;
}

Result NatEngine::inbound_flow(Instant now, Packet packet, PacketView& view,
                               std::uint16_t external_index, bool hairpinned) {
  const TransportFields t = view.transport;
  const std::uint32_t remote = view.ip.source;
  const bool syn = is_opening_syn(t);
  std::uint32_t session =
      live_session(table_.find_session_inbound(t.protocol, external_index, t.destination_port,
                                               remote, t.source_port),
                   now);
  if (session == kNoIndex) {
    table_.expire(now, kAll);  // a mapping whose sessions all timed out admits nobody
    const std::uint32_t mapping =
        table_.find_mapping_external(t.protocol, external_index, t.destination_port);
    // RFC 5382 REQ-4: an unsolicited SYN is held, not refused at once. Hairpinned SYNs come
    // from inside and are simply dropped.
    const bool hold = syn && !hairpinned;
    if (mapping == kNoIndex) {
      return hold ? hold_unsolicited_syn(now, packet, view, DropReason::no_mapping)
                  : dropped(DropReason::no_mapping);
    }
    const MappingEntry m = table_.mapping(mapping);
    bool admitted = m.forward != kNoForward;  // a port forward admits anyone
    if (!admitted) {
      switch (config_.filtering) {
        case Filtering::endpoint_independent: admitted = true; break;
        case Filtering::address_dependent:
          admitted = table_.address_contacted(mapping, remote);
          break;
        case Filtering::address_and_port_dependent: admitted = false; break;  // no session
      }
    }
    if (!admitted) {
      return hold ? hold_unsolicited_syn(now, packet, view, DropReason::filtered)
                  : dropped(DropReason::filtered);
    }
    if (t.protocol == Protocol::tcp && !syn) return dropped(DropReason::tcp_no_session);
    // Another mapping of the same internal endpoint already talks to this remote endpoint:
    // a second session would make the internal 5-tuple ambiguous.
    const FlowTuple inside{m.protocol, m.internal_address, m.internal_port, remote, t.source_port};
    if (table_.find_session_outbound(inside) != kNoIndex)
      return dropped(DropReason::tuple_conflict);
    if (table_.sessions_live() >= config_.max_sessions) return dropped(DropReason::table_full);
    const Instant expires = now + timeout_of(t.protocol, TcpState::syn_received);
    const NatTable::Created created =
        table_.create_session(mapping, remote, t.source_port, expires, true);
    if (created.error != DropReason::none) return dropped(created.error);
    session = created.index;
    if (m.forward != kNoForward) ++forwards_[m.forward].sessions_opened;
  }
  touch(session, now, Direction::inbound, t.tcp_flags);
  count_forward(session, Direction::inbound);
  const SessionEntry& s = table_.session(session);
  rewrite_destination(packet, view, s.internal_address, s.internal_port);
  return passed(Verdict::forward, view);
}

Result NatEngine::hold_unsolicited_syn(Instant now, Packet packet, const PacketView& view,
                                       DropReason otherwise) {
  if (config_.unsolicited_syn_hold <= Duration::zero()) return dropped(otherwise);
  const HeldSynKey key{view.ip.destination, view.ip.source, view.transport.destination_port,
                       view.transport.source_port};
  switch (held_.hold(now + config_.unsolicited_syn_hold, key, icmp_error_quote(packet, view))) {
    case HeldSyns::Hold::held: ++stats_.syns_held; return dropped(DropReason::syn_held);
    case HeldSyns::Hold::already_held: return dropped(DropReason::syn_held);
    case HeldSyns::Hold::full: ++stats_.held_syns_overflow; return dropped(otherwise);
  }
  return dropped(otherwise);
}

// ---- sessions --------------------------------------------------------------------------

std::uint32_t NatEngine::live_session(std::uint32_t session, Instant now) {
  if (session == kNoIndex) return kNoIndex;
  if (table_.session(session).expires > now) return session;
  table_.remove_session(session);  // timed out, not yet collected: gone now
  return kNoIndex;
}

Duration NatEngine::timeout_of(Protocol protocol, TcpState state) const {
  switch (protocol) {
    case Protocol::udp: return config_.udp_timeout;
    case Protocol::icmp: return config_.icmp_timeout;
    case Protocol::tcp:
      return tcp_is_established(state) ? config_.tcp_established_timeout
                                       : config_.tcp_transitory_timeout;
  }
  return config_.udp_timeout;
}

void NatEngine::touch(std::uint32_t session, Instant now, Direction direction,
                      std::uint8_t tcp_flags) {
  const SessionEntry& s = table_.session(session);
  TcpState state = s.tcp_state;
  if (s.protocol == Protocol::tcp) {
    const TcpState before = state;
    state = tcp_next_state(before, direction, tcp_flags);
    table_.set_tcp_state(session, state);
    if (state == TcpState::reset) {
      // RFC 7857 §2.2: after a RST the state is kept for the transitory time, and later
      // segments (RSTs included) refresh nothing.
      if (before != TcpState::reset)
        table_.set_expiry(session, now + config_.tcp_transitory_timeout);
      return;
    }
  }
  const Instant expires = now + timeout_of(s.protocol, state);
  // RFC 4787 REQ-6: outbound packets refresh; inbound ones only if configured (a MAY). A
  // state change to a shorter timer (a FIN from outside) applies either way.
  const bool refresh = direction == Direction::outbound || config_.inbound_refresh;
  if (refresh || expires < s.expires) table_.set_expiry(session, expires);
}

void NatEngine::count_forward(std::uint32_t session, Direction direction) {
  const std::uint16_t forward = table_.session(session).forward;
  if (forward == kNoForward) return;
  if (direction == Direction::outbound) {
    ++forwards_[forward].outbound_packets;
    ++stats_.port_forward_outbound;
  } else {
    ++forwards_[forward].inbound_packets;
    ++stats_.port_forward_inbound;
  }
}

// ---- fragments -------------------------------------------------------------------------

void NatEngine::remember_fragment(Instant now, const Ipv4Fields& before, const PacketView& after,
                                  Direction direction, Verdict verdict) {
  const FragmentKey key{before.source, before.destination, before.id, before.protocol, direction};
  fragments_.remember(now, key, after.ip.source, after.ip.destination, verdict);
}

Result NatEngine::follow_fragment(Instant now, Packet packet, PacketView& view,
                                  Direction direction) {
  const FragmentKey key{view.ip.source, view.ip.destination, view.ip.id, view.ip.protocol,
                        direction};
  const FragmentTranslation* translation = fragments_.find(now, key);
  if (translation == nullptr) return dropped(DropReason::fragment);
  if (translation->source != view.ip.source)
    rewrite_source_address(packet, view, translation->source);
  if (translation->destination != view.ip.destination)
    rewrite_destination_address(packet, view, translation->destination);
  ++stats_.fragments_translated;
  return passed(translation->verdict, view);
}

// ---- ICMP errors the engine writes -----------------------------------------------------

std::uint32_t NatEngine::inside_icmp_source(std::uint32_t host) const {
  if (config_.inside_address) return config_.inside_address->v4_host_order();
  return table_.external_address(table_.external_index_for(host));
}

Result NatEngine::answer_with_icmp(Packet packet, const PacketView& view, Packet reply,
                                   std::uint8_t type, std::uint8_t code, std::uint32_t source,
                                   DropReason reason) {
  if (!may_send_icmp_error_about(view)) return dropped(reason);
  const std::size_t size =
      write_icmp_error(reply, type, code, source, view.ip.source, icmp_error_quote(packet, view));
  if (size == 0) return dropped(reason);  // no (or too small a) reply buffer
  ++stats_.icmp_errors_generated;
  return Result{Verdict::reply, reason, 0, size};
}

}  // namespace knit::nat
