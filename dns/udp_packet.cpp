#include "dns/udp_packet.hpp"

namespace knit::dns {
namespace {

constexpr std::uint8_t kUdp = 17;

std::uint32_t sum_words(ByteSpan bytes, std::uint32_t sum = 0) {
  std::size_t i = 0;
  for (; i + 1 < bytes.size(); i += 2) sum += load_be16(bytes.data() + i);
  if (i < bytes.size()) sum += static_cast<std::uint32_t>(bytes[i]) << 8;
  return sum;
}

std::uint16_t fold(std::uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return static_cast<std::uint16_t>(~sum);
}

std::optional<UdpPacket> parse_udp(const IpAddress& src, const IpAddress& dst, ByteSpan udp) {
  if (udp.size() < 8) return std::nullopt;
  const std::uint16_t length = load_be16(udp.data() + 4);
  if (length < 8 || length > udp.size()) return std::nullopt;
  UdpPacket out;
  out.source = Endpoint(src, load_be16(udp.data()));
  out.destination = Endpoint(dst, load_be16(udp.data() + 2));
  out.payload = udp.subspan(8, length - 8u);
  return out;
}

}  // namespace

std::optional<UdpPacket> parse_udp_packet(ByteSpan packet) {
  if (packet.empty()) return std::nullopt;
  const int version = packet[0] >> 4;
  if (version == 4) {
    if (packet.size() < 20) return std::nullopt;
    const std::size_t ihl = static_cast<std::size_t>(packet[0] & 0x0f) * 4;
    const std::size_t total = load_be16(packet.data() + 2);
    if (ihl < 20 || total < ihl || total > packet.size()) return std::nullopt;
    if ((load_be16(packet.data() + 6) & 0x3fff) != 0) return std::nullopt;  // MF or an offset
    if (packet[9] != kUdp) return std::nullopt;
    return parse_udp(IpAddress::v4(packet.data() + 12), IpAddress::v4(packet.data() + 16),
                     packet.subspan(ihl, total - ihl));
  }
  if (version == 6) {
    if (packet.size() < 40) return std::nullopt;
    const std::size_t payload = load_be16(packet.data() + 4);
    if (40 + payload > packet.size()) return std::nullopt;
    if (packet[6] != kUdp) return std::nullopt;
    return parse_udp(IpAddress::v6(packet.data() + 8), IpAddress::v6(packet.data() + 24), packet.subspan(40, payload));
  }
  return std::nullopt;
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
  const bool v4 = from.address().is_v4();
  const std::size_t ip_header = v4 ? 20 : 40;
  const std::size_t udp_length = 8 + payload.size();
  Bytes out(ip_header + udp_length, 0);
  std::uint8_t* ip = out.data();
  std::uint8_t* udp = out.data() + ip_header;
  const std::size_t a = from.address().size();
  if (v4) {
    ip[0] = 0x45;
    store_be16(ip + 2, static_cast<std::uint16_t>(out.size()));
    store_be16(ip + 6, 0x4000);  // DF
    ip[8] = 64;
    ip[9] = kUdp;
    std::copy_n(from.address().bytes(), 4, ip + 12);
    std::copy_n(to.address().bytes(), 4, ip + 16);
    store_be16(ip + 10, fold(sum_words(ByteSpan(ip, 20))));
  } else {
    ip[0] = 0x60;
    store_be16(ip + 4, static_cast<std::uint16_t>(udp_length));
    ip[6] = kUdp;
    ip[7] = 64;
    std::copy_n(from.address().bytes(), 16, ip + 8);
    std::copy_n(to.address().bytes(), 16, ip + 24);
  }
  store_be16(udp, from.port());
  store_be16(udp + 2, to.port());
  store_be16(udp + 4, static_cast<std::uint16_t>(udp_length));
  std::copy(payload.begin(), payload.end(), udp + 8);
  // RFC 768 / RFC 8200 §8.1: the pseudo-header (addresses, protocol, UDP length).
  std::uint32_t sum = sum_words(ByteSpan(from.address().bytes(), a));
  sum = sum_words(ByteSpan(to.address().bytes(), a), sum);
  sum += kUdp + static_cast<std::uint32_t>(udp_length);
  sum = sum_words(ByteSpan(udp, udp_length), sum);
  std::uint16_t checksum = fold(sum);
  if (checksum == 0) checksum = 0xffff;
  store_be16(udp + 6, checksum);
  return out;
}

}  // namespace knit::dns
