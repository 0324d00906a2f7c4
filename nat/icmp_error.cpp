#include "nat/icmp_error.hpp"

#include <algorithm>
#include <cstring>

#include "nat/checksum.hpp"
#include "nat/wire.hpp"

namespace knit::nat {

bool may_send_icmp_error_about(const PacketView& offending) {
  if (offending.kind == PacketKind::icmp_error) return false;
  if (offending.ip.fragment_offset != 0) return false;
  return !is_martian(offending.ip.source) && !is_martian(offending.ip.destination);
}

ByteSpan icmp_error_quote(ByteSpan packet, const PacketView& offending) {
  const std::size_t payload = std::min(offending.l4_size, kIcmpQuotedPayload);
  return packet.first(offending.ip.header_length + payload);
}

std::size_t write_icmp_error(std::span<std::uint8_t> out, std::uint8_t type, std::uint8_t code,
                             std::uint32_t source, std::uint32_t destination, ByteSpan quote) {
  constexpr std::size_t kMaxQuote = kIpv4MaxHeader + kIcmpQuotedPayload;
  if (quote.size() > kMaxQuote) quote = quote.first(kMaxQuote);
  const std::size_t size = kIpv4MinHeader + kIcmpHeader + quote.size();
  if (out.size() < size) return 0;
  std::uint8_t* ip = out.data();
  std::memset(ip, 0, kIpv4MinHeader + kIcmpHeader);
  ip[0] = 0x45;
  store_be16(ip + kIpv4OffTotalLength, static_cast<std::uint16_t>(size));
  store_be16(ip + kIpv4OffFragment, kIpv4FlagDf);  // DF with ID 0: an atomic datagram (RFC 6864)
  ip[kIpv4OffTtl] = kGeneratedTtl;
  ip[kIpv4OffProtocol] = kProtoIcmp;
  store_be32(ip + kIpv4OffSource, source);
  store_be32(ip + kIpv4OffDestination, destination);
  store_be16(ip + kIpv4OffChecksum, internet_checksum(ByteSpan(ip, kIpv4MinHeader)));
  std::uint8_t* icmp = ip + kIpv4MinHeader;
  icmp[0] = type;
  icmp[1] = code;
  std::memcpy(icmp + kIcmpHeader, quote.data(), quote.size());
  store_be16(icmp + kIcmpOffChecksum,
             internet_checksum(ByteSpan(icmp, kIcmpHeader + quote.size())));
  return size;
}

}  // namespace knit::nat
