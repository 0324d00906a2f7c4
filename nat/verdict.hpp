// What the engine decided about one packet, and the counters that add those decisions up.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>

namespace knit::nat {

enum class Verdict : std::uint8_t {
  forward,  // rewritten in place: send it on in the direction it was going
  drop,     // do not send it (Result::reason says why)
  reply,    // do not send it; send the ICMP error the engine wrote into `reply` back to its sender
  hairpin,  // rewritten in place to go back inside (RFC 4787 REQ-9)
};

enum class DropReason : std::uint8_t {
  none,
  malformed,  // truncated, bad IHL or lengths, bad transport header
  not_ipv4,
  bad_checksum,          // IPv4 header, or an ICMP error's (RFC 5508 REQ-3)
  martian,               // source or destination that is never forwarded (0/8, 127/8, class D/E)
  not_inside,            // outbound source outside Config::inside_prefixes, or a pool address
  not_external,          // inbound destination is none of the external addresses
  fragment,              // non-first fragment whose first fragment was not translated
  unsupported_protocol,  // not TCP, UDP or ICMP
  unsupported_icmp,      // an ICMP type that is neither a query nor a translated error
  ttl_expired,
  no_mapping,           // inbound to an external port nobody holds; outbound RST/reply unknown
  filtered,             // a mapping exists but its filtering refuses the sender
  syn_held,             // RFC 5382 REQ-4: unsolicited inbound SYN held, see take_timer_icmp
  tcp_no_session,       // inbound TCP segment (not SYN) for a connection the NAT never saw
  tuple_conflict,       // the session would make an internal 5-tuple ambiguous
  icmp_error_no_match,  // ICMP error quoting a packet of no session (RFC 5508 REQ-4, 5)
  hairpin_disabled,     // to one of the external addresses with hairpinning off
  table_full,           // max_mappings / max_sessions reached (RFC 5508 REQ-8)
  ports_exhausted,      // no free external port left for this host's address
};
inline constexpr std::size_t kDropReasonCount =
    static_cast<std::size_t>(DropReason::ports_exhausted) + 1;
const char* to_string(DropReason reason);
const char* to_string(Verdict verdict);

struct Result {
  Verdict verdict = Verdict::drop;
  DropReason reason = DropReason::none;  // set for drop and reply
  std::size_t length = 0;                // forward/hairpin: bytes to send (IP total length)
  std::size_t reply_length = 0;          // reply: bytes of ICMP error written into `reply`
};

struct Stats {
  // Packets handed in, and what became of them: for each direction,
  // packets == forwarded + hairpinned + dropped + replied.
  std::uint64_t outbound_packets = 0;
  std::uint64_t inbound_packets = 0;
  std::uint64_t forwarded_outbound = 0;
  std::uint64_t forwarded_inbound = 0;
  std::uint64_t hairpinned = 0;
  std::uint64_t dropped_outbound = 0;
  std::uint64_t dropped_inbound = 0;
  std::uint64_t replied_outbound = 0;
  std::uint64_t replied_inbound = 0;
  // Why packets were not forwarded (drop and reply verdicts): sums to dropped_* + replied_*.
  std::array<std::uint64_t, kDropReasonCount> drops{};

  std::uint64_t mappings_created = 0;
  std::uint64_t mappings_removed = 0;  // expired, or their port forward removed
  std::uint64_t sessions_created = 0;
  std::uint64_t sessions_removed = 0;
  std::uint64_t mappings_live = 0;  // == created - removed
  std::uint64_t sessions_live = 0;

  std::uint64_t icmp_errors_translated = 0;  // both directions and hairpinned
  std::uint64_t icmp_errors_generated = 0;   // 3/13, 11/0 replies and held-SYN 3/3s
  std::uint64_t fragments_translated = 0;    // non-first fragments following their first
  std::uint64_t syns_held = 0;               // RFC 5382 REQ-4
  std::uint64_t held_syns_matched = 0;       // an outbound SYN came within the hold
  std::uint64_t held_syns_expired = 0;       // hold ran out (ICMP 3/3 owed if configured)
  std::uint64_t held_syns_overflow = 0;      // dropped silently: hold table full
  std::uint64_t port_forward_inbound = 0;
  std::uint64_t port_forward_outbound = 0;

  std::uint64_t drops_total() const {
    std::uint64_t sum = 0;
    for (std::uint64_t d : drops) sum += d;
    return sum;
  }
  std::uint64_t drops_of(DropReason reason) const {
    return drops[static_cast<std::size_t>(reason)];
  }
};

}  // namespace knit::nat
