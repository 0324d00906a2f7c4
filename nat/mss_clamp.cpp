#include "nat/mss_clamp.hpp"

#include "nat/checksum.hpp"
#include "nat/wire.hpp"

namespace knit::nat {

namespace {

constexpr std::uint8_t kIpv6HopByHop = 0;
constexpr std::uint8_t kIpv6Routing = 43;
constexpr std::uint8_t kIpv6Fragment = 44;
constexpr std::uint8_t kIpv6DestinationOptions = 60;
constexpr std::size_t kIpv6Header = 40;
// More extension headers than any real SYN carries: a bound on the walk, not a policy.
constexpr int kMaxExtensionHeaders = 8;

// Where the TCP segment of an unfragmented (or first-fragment) IP packet is: [begin, end).
struct Segment {
  std::size_t begin = 0;
  std::size_t end = 0;
  std::uint8_t version = 0;
};

MssOutcome locate_ipv4(ByteSpan p, Segment& s) {
  if (p.size() < kIpv4MinHeader) return MssOutcome::malformed;
  const std::size_t ihl = static_cast<std::size_t>(p[0] & 0x0f) * 4;
  const std::size_t total = load_be16(p.data() + kIpv4OffTotalLength);
  if (ihl < kIpv4MinHeader || total < ihl || total > p.size()) return MssOutcome::malformed;
  if (p[kIpv4OffProtocol] != kProtoTcp) return MssOutcome::not_syn;
  if ((load_be16(p.data() + kIpv4OffFragment) & kIpv4FragmentMask) != 0) return MssOutcome::not_syn;
  s = {ihl, total, 4};
  return MssOutcome::fits;
}

MssOutcome locate_ipv6(ByteSpan p, Segment& s) {
  if (p.size() < kIpv6Header) return MssOutcome::malformed;
  const std::size_t end = kIpv6Header + load_be16(p.data() + 4);
  if (end > p.size()) return MssOutcome::malformed;
  std::uint8_t next = p[6];
  std::size_t at = kIpv6Header;
  for (int i = 0; i < kMaxExtensionHeaders; ++i) {
    if (next == kProtoTcp) {
      s = {at, end, 6};
      return MssOutcome::fits;
    }
    if (next == kIpv6Fragment) return MssOutcome::not_syn;
    if (next != kIpv6HopByHop && next != kIpv6Routing && next != kIpv6DestinationOptions)
      return MssOutcome::not_syn;
    if (at + 8 > end) return MssOutcome::malformed;
    const std::size_t length = (static_cast<std::size_t>(p[at + 1]) + 1) * 8;
    if (at + length > end) return MssOutcome::malformed;
    next = p[at];
    at += length;
  }
  return MssOutcome::not_syn;  // a chain this long is no SYN we need to clamp
}

}  // namespace

const char* to_string(MssOutcome outcome) {
  switch (outcome) {
    case MssOutcome::not_syn: return "not_syn";
    case MssOutcome::no_option: return "no_option";
    case MssOutcome::fits: return "fits";
    case MssOutcome::clamped: return "clamped";
    case MssOutcome::malformed: return "malformed";
  }
  return "?";
}

MssOutcome find_syn_mss(ByteSpan p, MssOption& out) {
  if (p.empty()) return MssOutcome::malformed;
  Segment s;
  const std::uint8_t version = p[0] >> 4;
  const MssOutcome located = version == 4   ? locate_ipv4(p, s)
                             : version == 6 ? locate_ipv6(p, s)
                                            : MssOutcome::not_syn;
  if (located != MssOutcome::fits) return located;
  // Cheap exits first: most packets are not SYNs.
  if (s.begin + kTcpOffFlags >= s.end) return MssOutcome::malformed;
  if ((p[s.begin + kTcpOffFlags] & kTcpSyn) == 0) return MssOutcome::not_syn;
  if (s.end - s.begin < kTcpMinHeader) return MssOutcome::malformed;
  const std::size_t header = static_cast<std::size_t>(p[s.begin + kTcpOffDataOffset] >> 4) * 4;
  if (header < kTcpMinHeader || s.begin + header > s.end) return MssOutcome::malformed;

  const std::size_t options_end = s.begin + header;
  std::size_t at = s.begin + kTcpMinHeader;
  while (at < options_end) {
    const std::uint8_t kind = p[at];
    if (kind == kTcpOptionEnd) break;
    if (kind == kTcpOptionNop) {
      ++at;
      continue;
    }
    if (at + 2 > options_end) return MssOutcome::malformed;
    const std::size_t length = p[at + 1];
    if (length < 2 || at + length > options_end) return MssOutcome::malformed;
    if (kind == kTcpOptionMss) {
      if (length != kTcpOptionMssLength) return MssOutcome::malformed;
      out.tcp_offset = s.begin;
      out.value_offset = at + 2;
      out.value = load_be16(p.data() + at + 2);
      out.ip_version = s.version;
      return MssOutcome::fits;
    }
    at += length;
  }
  return MssOutcome::no_option;
}

std::uint16_t max_mss_for_mtu(std::size_t mtu, std::uint8_t ip_version) {
  const std::size_t overhead = ip_version == 6 ? kMssOverheadV6 : kMssOverheadV4;
  if (mtu <= overhead) return 0;
  const std::size_t mss = mtu - overhead;
  return static_cast<std::uint16_t>(mss > 0xffff ? 0xffff : mss);
}

void write_mss(MutableByteSpan p, const MssOption& option, std::uint16_t mss, bool checksum_partial) {
  std::uint8_t* checksum = p.data() + option.tcp_offset + kTcpOffChecksum;
  // The checksum sums 16-bit words counted from the TCP header (at an even offset of the
  // packet): the value spans one aligned word, or the halves of two when its offset is odd.
  const std::size_t first = option.value_offset & ~std::size_t{1};
  const std::size_t words = (option.value_offset & 1) != 0 ? 2 : 1;
  std::uint16_t before[2] = {};
  for (std::size_t i = 0; i < words; ++i) before[i] = load_be16(p.data() + first + 2 * i);
  store_be16(p.data() + option.value_offset, mss);
  if (checksum_partial) return;
  std::uint16_t sum = load_be16(checksum);
  for (std::size_t i = 0; i < words; ++i)
    sum = checksum_adjust16(sum, before[i], load_be16(p.data() + first + 2 * i));
  store_be16(checksum, sum);
}

}  // namespace knit::nat
