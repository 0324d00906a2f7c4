// MSS clamping (nat/mss_clamp.hpp) on any bytes as an IP packet. Properties: the packet's
// length never changes; anything but a clamp leaves every byte as it was; a clamp changes only
// the two bytes of the option's value, to at most the limit, and keeps a TCP checksum that was
// right before right after (the incremental update matches a full recomputation).
//
// Input: mtu u16 | partial u8 (bit 0: the checksum is partial) | the packet.
#include <cstddef>
#include <cstdint>
#include <vector>

#include "fuzz/fuzz_util.hpp"
#include "nat/checksum.hpp"
#include "nat/mss_clamp.hpp"

using namespace knit;
using namespace knit::nat;

namespace {

// The TCP checksum over [tcp_at, end) with the pseudo-header of the packet's version.
std::uint16_t full_tcp_checksum(const std::vector<std::uint8_t>& p, std::size_t tcp_at, std::size_t end) {
  const std::size_t len = end - tcp_at;
  std::uint64_t sum = 0;  // checksum_accumulate's own width: a 32-bit sum would drop carries
  if ((p[0] >> 4) == 4) {
    sum = pseudo_header_sum(load_be32(p.data() + 12), load_be32(p.data() + 16), 6,
                            static_cast<std::uint16_t>(len));
  } else {
    sum = checksum_accumulate(ByteSpan(p.data() + 8, 32));
    sum += len + 6;
  }
  sum = checksum_accumulate(ByteSpan(p.data() + tcp_at, 16), sum);
  sum = checksum_accumulate(ByteSpan(p.data() + tcp_at + 18, len - 18), sum);
  return static_cast<std::uint16_t>(~checksum_fold(sum));
}

std::size_t segment_end(const std::vector<std::uint8_t>& p) {
  if ((p[0] >> 4) == 4) return load_be16(p.data() + 2);
  return 40 + std::size_t{load_be16(p.data() + 4)};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  fuzz::Reader in(data, size);
  const std::size_t mtu = in.u16();
  const bool partial = (in.u8() & 1) != 0;
  std::vector<std::uint8_t> packet = in.rest();
  const std::vector<std::uint8_t> before = packet;

  MssOption found;
  const MssOutcome scan = find_syn_mss(packet, found);
  bool checksum_was_right = false;
  if (scan == MssOutcome::fits) {
    KNIT_FUZZ_CHECK(found.value_offset + 2 <= packet.size());
    KNIT_FUZZ_CHECK(found.tcp_offset + 20 <= found.value_offset);
    checksum_was_right = load_be16(packet.data() + found.tcp_offset + 16) ==
                         full_tcp_checksum(packet, found.tcp_offset, segment_end(packet));
  }
  MssClamp clamp;
  const MssOutcome got = clamp.clamp(packet, [&](const MssOption&) { return mtu; }, partial);
  (void)to_string(got);
  KNIT_FUZZ_CHECK(packet.size() == before.size());
  if (got != MssOutcome::clamped) {
    KNIT_FUZZ_CHECK(packet == before);
    return 0;
  }
  KNIT_FUZZ_CHECK(scan == MssOutcome::fits);
  const std::uint16_t limit = max_mss_for_mtu(mtu, found.ip_version);
  KNIT_FUZZ_CHECK(load_be16(packet.data() + found.value_offset) == limit);
  KNIT_FUZZ_CHECK(limit < found.value);
  for (std::size_t i = 0; i < packet.size(); ++i) {
    const bool value = i == found.value_offset || i == found.value_offset + 1;
    const bool checksum = i == found.tcp_offset + 16 || i == found.tcp_offset + 17;
    if (!value && !(checksum && !partial)) KNIT_FUZZ_CHECK(packet[i] == before[i]);
  }
  if (checksum_was_right && !partial)
    KNIT_FUZZ_CHECK(load_be16(packet.data() + found.tcp_offset + 16) ==
                    full_tcp_checksum(packet, found.tcp_offset, segment_end(packet)));
  KNIT_FUZZ_CHECK(clamp.stats().clamped == 1);
  return 0;
}
