#include "dns/ip_packet.hpp"

#include "base/checksum.hpp"

namespace knit::dns {

std::optional<IpPayload> parse_ip_packet(ByteSpan packet) {
  if (packet.empty()) return std::nullopt;
  const int version = packet[0] >> 4;
  if (version == 4) {
    if (packet.size() < 20) return std::nullopt;
    const std::size_t ihl = static_cast<std::size_t>(packet[0] & 0x0f) * 4;
    const std::size_t total = load_be16(packet.data() + 2);
    if (ihl < 20 || total < ihl || total > packet.size()) return std::nullopt;
    if ((load_be16(packet.data() + 6) & 0x3fff) != 0) return std::nullopt;  // MF or an offset
    return IpPayload{IpAddress::v4(packet.data() + 12), IpAddress::v4(packet.data() + 16), packet[9],
                     packet.subspan(ihl, total - ihl)};
  }
  if (version == 6) {
    if (packet.size() < 40) return std::nullopt;
    const std::size_t payload = load_be16(packet.data() + 4);
    if (40 + payload > packet.size()) return std::nullopt;
    return IpPayload{IpAddress::v6(packet.data() + 8), IpAddress::v6(packet.data() + 24), packet[6],
                     packet.subspan(40, payload)};
  }
  return std::nullopt;
}

Bytes build_ip_packet(const IpAddress& from, const IpAddress& to, std::uint8_t protocol, ByteSpan transport,
                      std::size_t checksum_offset) {
  const bool v4 = from.is_v4();
  const std::size_t ip_header = v4 ? 20 : 40;
  Bytes out(ip_header + transport.size(), 0);
  std::uint8_t* ip = out.data();
  std::uint8_t* body = out.data() + ip_header;
  if (v4) {
    ip[0] = 0x45;
    store_be16(ip + 2, static_cast<std::uint16_t>(out.size()));
    store_be16(ip + 6, 0x4000);  // DF
    ip[8] = 64;
    ip[9] = protocol;
    std::copy_n(from.bytes(), 4, ip + 12);
    std::copy_n(to.bytes(), 4, ip + 16);
    store_be16(ip + 10, internet_checksum(ByteSpan(ip, 20)));
  } else {
    ip[0] = 0x60;
    store_be16(ip + 4, static_cast<std::uint16_t>(transport.size()));
    ip[6] = protocol;
    ip[7] = 64;
    std::copy_n(from.bytes(), 16, ip + 8);
    std::copy_n(to.bytes(), 16, ip + 24);
  }
  std::copy(transport.begin(), transport.end(), body);
  if (checksum_offset + 2 > transport.size()) return out;
  store_be16(body + checksum_offset, 0);
  // The pseudo-header: both addresses, then the protocol and the transport length (RFC 793
  // §3.1 and RFC 768 for IPv4: zero, protocol, 16-bit length; RFC 8200 §8.1: 32-bit length,
  // three zero bytes, next header). Both sum to the same words.
  std::uint64_t sum = checksum_accumulate(ByteSpan(from.bytes(), from.size()));
  sum = checksum_accumulate(ByteSpan(to.bytes(), to.size()), sum);
  sum += protocol + static_cast<std::uint64_t>(transport.size());
  sum = checksum_accumulate(ByteSpan(body, transport.size()), sum);
  std::uint16_t checksum = static_cast<std::uint16_t>(~checksum_fold(sum));
  if (checksum == 0 && protocol == kProtocolUdp) checksum = 0xffff;  // RFC 768: 0 means none
  store_be16(body + checksum_offset, checksum);
  return out;
}

std::optional<UdpPacket> parse_udp_packet(ByteSpan packet) {
  const auto ip = parse_ip_packet(packet);
  if (!ip || ip->protocol != kProtocolUdp) return std::nullopt;
  const ByteSpan udp = ip->payload;
  if (udp.size() < 8) return std::nullopt;
  const std::uint16_t length = load_be16(udp.data() + 4);
  if (length < 8 || length > udp.size()) return std::nullopt;
  UdpPacket out;
  out.source = Endpoint(ip->source, load_be16(udp.data()));
  out.destination = Endpoint(ip->destination, load_be16(udp.data() + 2));
  out.payload = udp.subspan(8, length - 8u);
  return out;
}

bool addressed_to(ByteSpan packet, const IpAddress& address) {
  if (packet.empty()) return false;
  if ((packet[0] >> 4) == 4 && address.is_v4() && packet.size() >= 20)
    return IpAddress::v4(packet.data() + 16) == address;
  if ((packet[0] >> 4) == 6 && address.is_v6() && packet.size() >= 40)
    return IpAddress::v6(packet.data() + 24) == address;
  return false;
}

Bytes build_udp_packet(const Endpoint& from, const Endpoint& to, ByteSpan payload) {
  Bytes udp(8 + payload.size());
  store_be16(udp.data(), from.port());
  store_be16(udp.data() + 2, to.port());
  store_be16(udp.data() + 4, static_cast<std::uint16_t>(udp.size()));
  std::copy(payload.begin(), payload.end(), udp.begin() + 8);
  return build_ip_packet(from.address(), to.address(), kProtocolUdp, udp, 6);
}

}  // namespace knit::dns
