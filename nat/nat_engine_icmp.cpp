// ICMP error translation (RFC 5508 §4.2; RFC 4787 REQ-12, RFC 5382 REQ-9, 10): an error is
// translated only when the packet it quotes belongs to a live session, and then the quoted
// packet is turned back into what its receiver knows, every checksum fixed on the way.
//
//   inbound  (router R -> X')   quotes X':x' -> Y:y   becomes  R -> X,  quoting X:x -> Y:y
//   outbound (host X -> Y)      quotes Y:y -> X:x     becomes  X' -> Y, quoting Y:y -> X':x'
//   hairpin  (host B -> X'a)    both, one after the other (RFC 5508 REQ-7)
//
// An error never refreshes a session nor ends one (RFC 5508 REQ-6, RFC 4787 REQ-12).
#include "nat/nat_engine.hpp"
#include "nat/rewrite.hpp"

namespace knit::nat {

namespace {

Result no_match() { return Result{Verdict::drop, DropReason::icmp_error_no_match, 0, 0}; }

}  // namespace

Result NatEngine::inbound_icmp_error(Instant now, Packet packet, PacketView& view,
                                     std::uint16_t external_index) {
  const QuotedPacket& q = view.quoted;
  // The quoted packet must be one this NAT sent: from the external address the error came
  // to, a query (not a reply: replies to the outside are never translated), of a live session.
  if (q.ip.source != view.ip.destination) return no_match();
  if (q.transport.protocol == Protocol::icmp && q.query_reply) return no_match();
  const std::uint32_t session = live_session(
      table_.find_session_inbound(q.transport.protocol, external_index, q.transport.source_port,
                                  q.ip.destination, q.transport.destination_port),
      now);
  if (session == kNoIndex) return no_match();
  const SessionEntry& s = table_.session(session);
  // RFC 5508 REQ-4: revert the quoted IP and transport header, then the outer destination.
  rewrite_quoted_source(packet, view, s.internal_address, s.internal_port);
  rewrite_destination_address(packet, view, s.internal_address);
  ++stats_.icmp_errors_translated;
  return Result{Verdict::forward, DropReason::none, view.ip.total_length, 0};
}

Result NatEngine::outbound_icmp_error(Instant now, Packet packet, PacketView& view,
                                      bool to_external) {
  const QuotedPacket& q = view.quoted;
  // The quoted packet is one an inside host received: Y:y -> X:x (an ICMP query: a reply).
  if (q.transport.protocol == Protocol::icmp && !q.query_reply) return no_match();
  const FlowTuple flow{q.transport.protocol, q.ip.destination, q.transport.destination_port,
                       q.ip.source, q.transport.source_port};
  const std::uint32_t session = live_session(table_.find_session_outbound(flow), now);
  if (session == kNoIndex) return no_match();
  const std::uint32_t external = table_.external_address(table_.session(session).external_index);
  const std::uint16_t external_port = table_.session(session).external_port;
  // RFC 5508 REQ-5: the quoted packet as the remote sent it, and the outer source the
  // mapping's external address (whether the host or a router beside it wrote the error, no
  // inside address leaks out).
  rewrite_quoted_destination(packet, view, external, external_port);
  rewrite_source_address(packet, view, external);
  ++stats_.icmp_errors_translated;
  if (!to_external) return Result{Verdict::forward, DropReason::none, view.ip.total_length, 0};
  // RFC 5508 REQ-7: an error about a hairpinned packet goes back inside the same way.
  const auto index = table_.external_index_of(view.ip.destination);
  Result result = inbound_icmp_error(now, packet, view, *index);
  if (result.verdict == Verdict::forward) result.verdict = Verdict::hairpin;
  return result;
}

}  // namespace knit::nat
