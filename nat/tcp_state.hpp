// TCP connection tracking as RFC 5382 needs it: enough state to tell an established
// connection (long idle timer, REQ-5: >= 2 h 4 min) from a transitory one (opening or closing,
// >= 4 min), to let simultaneous open through (REQ-2), and to keep state 4 minutes after a RST
// (RFC 7857 §2.2). Sequence numbers are not tracked.
//
//   outbound SYN    none ──► syn_sent ──inbound SYN/ACK or SYN──► syn_both ──ACK──► established
//   inbound SYN     none ──► syn_received ──outbound SYN/ACK or SYN──► syn_both
//   no SYN seen     none ──► midstream (outbound, pickup) ──any inbound──► established
//   FIN one way     established ──► fin_outbound / fin_inbound ──FIN other way──► closing
//   RST any way     * ──► reset (no refresh after; a new SYN reopens)
//   new SYN         closing / reset ──► syn_sent / syn_received
#pragma once

#include <cstdint>

namespace knit::nat {

enum class TcpState : std::uint8_t {
  none,          // not TCP, or not yet seen
  syn_sent,      // SYN from inside
  syn_received,  // SYN from outside (admitted by filtering or a port forward)
  syn_both,      // SYN each way: SYN/ACK or simultaneous open
  established,   // handshake completed
  midstream,     // picked up without a handshake, waiting for the remote to answer
  fin_outbound,  // inside sent FIN: half closed
  fin_inbound,   // outside sent FIN: half closed
  closing,       // FIN both ways
  reset,         // RST seen: kept 4 min, not refreshed
};
const char* to_string(TcpState state);

enum class Direction : std::uint8_t { outbound, inbound };

// The state after a segment with `flags` (kTcp* bits) went `direction`.
TcpState tcp_next_state(TcpState state, Direction direction, std::uint8_t flags);

// Established connections idle on the long timer; every other state is transitory.
inline bool tcp_is_established(TcpState state) { return state == TcpState::established; }

}  // namespace knit::nat
