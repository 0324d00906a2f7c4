// TCP MSS clamping: lowers the MSS option of a SYN or SYN-ACK so that neither end of a TCP
// connection sends segments larger than the tunnel can carry to its peer (the path MTU the
// agent learned, punch/path/pmtu.hpp). No I/O, no clock: a packet and an MTU in, the packet
// rewritten in place.
//
// Where the option lives (RFC 9293 §3.1, §3.7.1; RFC 6691 for what the value means):
//
//   IPv4 (IHL*4) or IPv6 (40 + hop-by-hop / routing / destination options)
//   TCP:  0 ports | 4 seq | 8 ack | 12 data offset | 13 flags | 14 window | 16 checksum | 18 urg
//         20 options ... up to data offset * 4:
//            kind 0 end of list | kind 1 NOP | kind 2 len 4 MSS (u16) | kind k len n (n >= 2)
//
// The MSS a host announces is the MTU minus the fixed IP and TCP headers (RFC 6691: 40 for
// IPv4, 60 for IPv6, whatever options either carries), so for a tunnel MTU M towards a peer the
// largest MSS that fits is M - 40 (IPv4) or M - 60 (IPv6). A SYN without the option means
// 536 / 1220 (RFC 9293 §3.7.1), below anything a tunnel needs: it is left alone.
//
// The TCP checksum is updated incrementally (RFC 1624 eqn 3); the option value may sit at an odd
// offset (after one NOP), so the update works on the aligned 16-bit words the value touches.
// A packet whose checksum is still partial (a TUN read with NEEDS_CSUM: the field holds only
// the pseudo-header sum, tun/offload.hpp) is rewritten without touching the field: whoever
// completes it sums the new bytes. knitd completes checksums before the filter, so its packets
// are always whole.
//
// Hostile input: options that run past the header, lengths 0 or 1, an MSS option whose length
// is not 4, headers that do not fit the packet: the packet is left as it is and the outcome says
// malformed (the caller counts it). Non-first IPv4 fragments and IPv6 fragments are not touched.
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/bytes.hpp"

namespace knit::nat {

inline constexpr std::uint8_t kTcpOptionEnd = 0;
inline constexpr std::uint8_t kTcpOptionNop = 1;
inline constexpr std::uint8_t kTcpOptionMss = 2;
inline constexpr std::uint8_t kTcpOptionMssLength = 4;
// RFC 6691: the fixed headers an MSS leaves out.
inline constexpr std::size_t kMssOverheadV4 = 20 + 20;
inline constexpr std::size_t kMssOverheadV6 = 40 + 20;

enum class MssOutcome : std::uint8_t {
  not_syn,        // not TCP, not a SYN, a fragment: nothing to do
  no_option,      // a SYN without an MSS option
  fits,           // the option is already no larger than the limit
  clamped,        // lowered
  malformed,      // headers or options that do not parse: left alone
};
const char* to_string(MssOutcome outcome);

// Where a SYN's MSS option is (found by find_syn_mss).
struct MssOption {
  std::size_t tcp_offset = 0;    // where the TCP header starts in the packet
  std::size_t value_offset = 0;  // where the option's 16-bit value starts in the packet
  std::uint16_t value = 0;
  std::uint8_t ip_version = 0;   // 4 or 6
};

// Finds the MSS option of a SYN (with or without ACK). Returns not_syn, no_option, malformed,
// or fits (meaning found: `out` is filled; the caller compares).
MssOutcome find_syn_mss(ByteSpan packet, MssOption& out);

// The largest MSS for a tunnel MTU, by inner IP version (0 when the MTU is too small).
std::uint16_t max_mss_for_mtu(std::size_t mtu, std::uint8_t ip_version);

// Writes `mss` into the option find_syn_mss located, keeping the TCP checksum right (unless it
// is partial, see above).
void write_mss(MutableByteSpan packet, const MssOption& option, std::uint16_t mss,
               bool checksum_partial = false);

// Counters for metrics and `knit status`.
struct MssClampStats {
  std::uint64_t syns_seen = 0;   // SYNs and SYN-ACKs that parsed
  std::uint64_t clamped = 0;
  std::uint64_t malformed = 0;   // TCP (or IP) headers or options that did not parse
};

// The clamp as the packet path uses it: `mtu_of(ip_version, option)` is asked only for a SYN
// that carries the option (so the cost of finding the peer is paid once per connection, not per
// packet) and returns the tunnel MTU towards the packet's peer, 0 to leave it alone.
class MssClamp {
 public:
  template <class MtuOf>
  MssOutcome clamp(MutableByteSpan packet, MtuOf&& mtu_of, bool checksum_partial = false) {
    MssOption option;
    MssOutcome outcome = find_syn_mss(packet, option);
    if (outcome == MssOutcome::not_syn) return outcome;
    if (outcome == MssOutcome::malformed) {
      ++stats_.malformed;
      return outcome;
    }
    ++stats_.syns_seen;
    if (outcome != MssOutcome::fits) return outcome;
    const std::size_t mtu = mtu_of(option);
    if (mtu == 0) return MssOutcome::fits;
    const std::uint16_t limit = max_mss_for_mtu(mtu, option.ip_version);
    if (limit == 0 || option.value <= limit) return MssOutcome::fits;
    write_mss(packet, option, limit, checksum_partial);
    ++stats_.clamped;
    return MssOutcome::clamped;
  }
  const MssClampStats& stats() const { return stats_; }

 private:
  MssClampStats stats_;
};

}  // namespace knit::nat
