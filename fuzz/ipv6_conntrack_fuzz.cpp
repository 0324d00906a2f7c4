// The IPv6 flow tracker (nat/ipv6_conntrack.hpp): packets both ways with time passing, into a
// small table. Properties: the table never passes its bound; a plain TCP/UDP packet the host
// sent (no extension headers) that was tracked lets the mirrored reply in at once.
//
// Input records: op u8 | length u16 | packet[length]; op bit 0: 0 outbound, 1 inbound;
// bits 1-3: seconds to advance first (all set: 10 minutes and expire()).
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_util.hpp"
#include "nat/ipv6_conntrack.hpp"

using namespace knit;
using Conntrack = knit::nat::Ipv6Conntrack;

namespace {

// The reply to a plain TCP or UDP packet: addresses and ports swapped. Empty when the packet
// has extension headers or is too short to say.
Bytes mirror(const Bytes& packet) {
  if (packet.size() < 44 || (packet[0] >> 4) != 6) return {};
  const std::uint8_t next = packet[6];
  if (next != 6 && next != 17) return {};
  const std::size_t payload = (std::size_t{packet[4]} << 8) | packet[5];
  if (packet.size() < 40 + payload || payload < (next == 6 ? 20u : 8u)) return {};
  Bytes out = packet;
  std::swap_ranges(out.begin() + 8, out.begin() + 24, out.begin() + 24);
  std::swap_ranges(out.begin() + 40, out.begin() + 42, out.begin() + 42);
  if (next == 6) {
    out[53] = 0x10;  // a plain ACK: the reply to whatever was sent
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::Reader in(data, size);
  Conntrack::Limits limits;
  limits.max_flows = 8;
  limits.udp_timeout = std::chrono::seconds(30);
  limits.tcp_transitory_timeout = std::chrono::seconds(20);
  limits.icmp_timeout = std::chrono::seconds(10);
  Conntrack tracker(0x6b6e6974, limits);
  Instant now{std::chrono::seconds(1000)};
  while (!in.empty()) {
    const auto [op, packet] = fuzz::next_record(in, 1600);
    const unsigned advance = (op >> 1) & 7;
    if (advance == 7) {
      now += std::chrono::minutes(10);
      tracker.expire(now);
    } else {
      now += std::chrono::seconds(advance);
    }
    const auto outcome = (op & 1) ? tracker.inbound(now, packet) : tracker.outbound(now, packet);
    (void)nat::to_string(outcome);
    KNIT_FUZZ_CHECK(tracker.size() <= limits.max_flows);
    if (!(op & 1) && outcome == Conntrack::Outcome::tracked) {
      const Bytes reply = mirror(packet);
      if (!reply.empty()) {
        const auto answer = tracker.inbound(now, reply);
        if (answer != Conntrack::Outcome::tracked) {
          std::fprintf(stderr, "the reply to a tracked flow was %s\n", nat::to_string(answer));
          KNIT_FUZZ_CHECK(false);
        }
      }
    }
  }
  return 0;
}
