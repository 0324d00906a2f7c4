#include "nat/too_big.hpp"

#include <algorithm>
#include <cstring>

#include "base/checksum.hpp"
#include "nat/icmp_error.hpp"
#include "nat/wire.hpp"

namespace knit::nat {

namespace {

constexpr std::size_t kIpv6Header = 40;
constexpr std::uint8_t kProtoIcmpv6 = 58;
constexpr std::uint8_t kIpv6Fragment = 44;
constexpr std::uint8_t kIcmpCodeFragmentationNeeded = 4;
constexpr std::uint8_t kIcmpv6PacketTooBig = 2;

// Not one host's address: unspecified, loopback, multicast (RFC 4443 §2.4 (e)).
bool is_v6_non_host(const std::uint8_t* a) {
  static constexpr std::uint8_t kZero[16] = {};
  if (a[0] == 0xff) return true;
  if (std::memcmp(a, kZero, 15) == 0 && (a[15] == 0 || a[15] == 1)) return true;
  return false;
}

TooBigVerdict answer_v4(std::span<std::uint8_t> out, ByteSpan packet, std::size_t mtu, std::size_t& size) {
  const std::size_t header = static_cast<std::size_t>(packet[0] & 0x0f) * 4;
  if (header < kIpv4MinHeader || packet.size() < header) return TooBigVerdict::malformed;
  const std::uint16_t fragment = load_be16(packet.data() + kIpv4OffFragment);
  if ((fragment & kIpv4FragmentMask) != 0) return TooBigVerdict::not_allowed;
  const std::uint32_t source = load_be32(packet.data() + kIpv4OffSource);
  const std::uint32_t destination = load_be32(packet.data() + kIpv4OffDestination);
  if (is_martian(source) || is_martian(destination)) return TooBigVerdict::not_allowed;
  if (packet[kIpv4OffProtocol] == kProtoIcmp) {
    if (packet.size() < header + 1) return TooBigVerdict::malformed;
    const std::uint8_t type = packet[header];
    if (type == kIcmpDestinationUnreachable || type == kIcmpTimeExceeded || type == kIcmpParameterProblem)
      return TooBigVerdict::not_allowed;
  }
  if ((fragment & kIpv4FlagDf) == 0) return TooBigVerdict::fragmentable;
  const std::size_t quote = std::min(packet.size(), header + kIcmpQuotedPayload);
  const std::size_t n = write_icmp_error(out, kIcmpDestinationUnreachable, kIcmpCodeFragmentationNeeded,
                                         destination, source, packet.first(quote));
  if (n == 0) return TooBigVerdict::malformed;
  // RFC 1191 §4: the next-hop MTU in the low 16 bits of the word write_icmp_error left unused.
  std::uint8_t* icmp = out.data() + kIpv4MinHeader;
  store_be16(icmp + 6, static_cast<std::uint16_t>(std::clamp<std::size_t>(mtu, kMinLinkMtuV4, 0xffff)));
  store_be16(icmp + kIcmpOffChecksum, 0);
  store_be16(icmp + kIcmpOffChecksum, internet_checksum(ByteSpan(icmp, n - kIpv4MinHeader)));
  size = n;
  return TooBigVerdict::answered;
}

TooBigVerdict answer_v6(std::span<std::uint8_t> out, ByteSpan packet, std::size_t mtu, std::size_t& size) {
  if (packet.size() < kIpv6Header) return TooBigVerdict::malformed;
  const std::uint8_t* source = packet.data() + 8;
  const std::uint8_t* destination = packet.data() + 24;
  if (is_v6_non_host(source) || is_v6_non_host(destination)) return TooBigVerdict::not_allowed;
  const std::uint8_t next = packet[6];
  if (next == kIpv6Fragment) {
    // A later fragment (offset != 0) gets no answer; a first one does.
    if (packet.size() < kIpv6Header + 8) return TooBigVerdict::malformed;
    if ((load_be16(packet.data() + kIpv6Header + 2) & 0xfff8) != 0) return TooBigVerdict::not_allowed;
  }
  if (next == kProtoIcmpv6) {
    if (packet.size() < kIpv6Header + 1) return TooBigVerdict::malformed;
    if (packet[kIpv6Header] < 128) return TooBigVerdict::not_allowed;  // an ICMPv6 error
  }
  constexpr std::size_t kIcmpv6Header = 8;
  const std::size_t quote = std::min(packet.size(), kTooBigMaxSize - kIpv6Header - kIcmpv6Header);
  const std::size_t n = kIpv6Header + kIcmpv6Header + quote;
  if (out.size() < n) return TooBigVerdict::malformed;
  std::uint8_t* ip = out.data();
  std::memset(ip, 0, kIpv6Header + kIcmpv6Header);
  ip[0] = 0x60;
  store_be16(ip + 4, static_cast<std::uint16_t>(kIcmpv6Header + quote));
  ip[6] = kProtoIcmpv6;
  ip[7] = 255;  // hop limit, as neighbour discovery's; any value is valid for an error
  std::memcpy(ip + 8, destination, 16);
  std::memcpy(ip + 24, source, 16);
  std::uint8_t* icmp = ip + kIpv6Header;
  icmp[0] = kIcmpv6PacketTooBig;
  icmp[1] = 0;
  store_be32(icmp + 4, static_cast<std::uint32_t>(std::max(mtu, kMinLinkMtuV6)));
  std::memcpy(icmp + kIcmpv6Header, packet.data(), quote);
  // RFC 4443 §2.3: the checksum covers the pseudo-header (addresses, length, next header).
  std::uint8_t pseudo[40] = {};
  std::memcpy(pseudo, ip + 8, 32);
  store_be32(pseudo + 32, static_cast<std::uint32_t>(kIcmpv6Header + quote));
  pseudo[39] = kProtoIcmpv6;
  const std::uint64_t sum = checksum_accumulate(ByteSpan(icmp, kIcmpv6Header + quote),
                                                checksum_accumulate(ByteSpan(pseudo, sizeof pseudo)));
  store_be16(icmp + 2, static_cast<std::uint16_t>(~checksum_fold(sum)));
  size = n;
  return TooBigVerdict::answered;
}

}  // namespace

TooBigVerdict write_too_big(std::span<std::uint8_t> out, ByteSpan packet, std::size_t mtu, std::size_t& size) {
  size = 0;
  if (packet.empty() || out.size() < kTooBigMaxSize) return TooBigVerdict::malformed;
  switch (packet[0] >> 4) {
    case 4: return answer_v4(out, packet, mtu, size);
    case 6: return answer_v6(out, packet, mtu, size);
    default: return TooBigVerdict::malformed;
  }
}

bool TooBigLimiter::allow(Instant now) {
  if (!started_) {
    started_ = true;
    last_ = now;
  }
  if (now > last_) {
    const double seconds = std::chrono::duration<double>(now - last_).count();
    tokens_ = std::min(burst_, tokens_ + seconds * rate_);
    last_ = now;
  }
  if (tokens_ < 1) return false;
  tokens_ -= 1;
  return true;
}

}  // namespace knit::nat
