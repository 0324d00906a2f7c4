#include "nat/tcp_state.hpp"

#include "nat/wire.hpp"

namespace knit::nat {

const char* to_string(TcpState state) {
  switch (state) {
    case TcpState::none: return "-";
    case TcpState::syn_sent: return "syn_sent";
    case TcpState::syn_received: return "syn_received";
    case TcpState::syn_both: return "syn_both";
    case TcpState::established: return "established";
    case TcpState::midstream: return "midstream";
    case TcpState::fin_outbound: return "fin_outbound";
    case TcpState::fin_inbound: return "fin_inbound";
    case TcpState::closing: return "closing";
    case TcpState::reset: return "reset";
  }
  return "?";
}

namespace {

TcpState on_syn(TcpState state, Direction direction, bool ack) {
  const bool out = direction == Direction::outbound;
  if (ack) {
    // SYN/ACK answers the other side's SYN. Unknown to us (its SYN came before a restart):
    // picked up like any other mid-connection segment.
    if (state == TcpState::none) return out ? TcpState::midstream : TcpState::none;
    if (state == TcpState::syn_sent && !out) return TcpState::syn_both;
    if (state == TcpState::syn_received && out) return TcpState::syn_both;
    return state;
  }
  switch (state) {
    case TcpState::none:
    case TcpState::closing:
    case TcpState::reset:
      // A fresh connection, or the 4-tuple reused after the last one ended.
      return out ? TcpState::syn_sent : TcpState::syn_received;
    case TcpState::syn_sent:
      return out ? state : TcpState::syn_both;  // RFC 5382 REQ-2: simultaneous open
    case TcpState::syn_received: return out ? TcpState::syn_both : state;
    default: return state;  // a stray SYN inside a live connection changes nothing
  }
}

TcpState on_fin(TcpState state, Direction direction) {
  const bool out = direction == Direction::outbound;
  switch (state) {
    case TcpState::syn_sent:
    case TcpState::syn_received:
    case TcpState::syn_both:
    case TcpState::established:
    case TcpState::midstream: return out ? TcpState::fin_outbound : TcpState::fin_inbound;
    case TcpState::fin_outbound: return out ? state : TcpState::closing;
    case TcpState::fin_inbound: return out ? TcpState::closing : state;
    default: return state;
  }
}

}  // namespace

TcpState tcp_next_state(TcpState state, Direction direction, std::uint8_t flags) {
  if (flags & kTcpRst) return TcpState::reset;  // RFC 7857 §2.2: kept, then times out
  const bool ack = (flags & kTcpAck) != 0;
  if (flags & kTcpSyn) return on_syn(state, direction, ack);
  if (state == TcpState::none) {
    // No SYN yet: only an outbound segment may pick a connection up (Config::tcp_midstream_pickup).
    return direction == Direction::outbound ? TcpState::midstream : TcpState::none;
  }
  if (ack && state == TcpState::syn_both) state = TcpState::established;
  if (state == TcpState::midstream && direction == Direction::inbound)
    state = TcpState::established;
  if (flags & kTcpFin) state = on_fin(state, direction);
  return state;
}

}  // namespace knit::nat
