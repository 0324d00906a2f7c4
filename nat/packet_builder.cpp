#include "nat/packet_builder.hpp"

#include <algorithm>
#include <cstring>

#include "nat/checksum.hpp"
#include "nat/wire.hpp"

namespace knit::nat {

namespace {

std::uint16_t transport_sum(std::uint32_t source, std::uint32_t destination, std::uint8_t protocol,
                            ByteSpan segment) {
  const std::uint32_t pseudo =
      pseudo_header_sum(source, destination, protocol, static_cast<std::uint16_t>(segment.size()));
  return static_cast<std::uint16_t>(~checksum_fold(checksum_accumulate(segment, pseudo)));
}

}  // namespace

Bytes make_ipv4(const IpAddress& source, const IpAddress& destination, std::uint8_t protocol,
                ByteSpan payload, const Ipv4Options& options) {
  const std::size_t header = kIpv4MinHeader + (options.options_bytes + 3) / 4 * 4;
  Bytes p(header + payload.size(), 0);
  p[0] = static_cast<std::uint8_t>(0x40 | (header / 4));
  store_be16(&p[kIpv4OffTotalLength], static_cast<std::uint16_t>(p.size()));
  store_be16(&p[kIpv4OffId], options.id);
  std::uint16_t fragment = options.fragment_offset & kIpv4FragmentMask;
  if (options.dont_fragment) fragment |= kIpv4FlagDf;
  if (options.more_fragments) fragment |= kIpv4FlagMf;
  store_be16(&p[kIpv4OffFragment], fragment);
  p[kIpv4OffTtl] = options.ttl;
  p[kIpv4OffProtocol] = protocol;
  std::memcpy(&p[kIpv4OffSource], source.bytes(), 4);
  std::memcpy(&p[kIpv4OffDestination], destination.bytes(), 4);
  for (std::size_t i = kIpv4MinHeader; i < header; ++i) p[i] = 1;  // NOP options
  store_be16(&p[kIpv4OffChecksum], internet_checksum(ByteSpan(p.data(), header)));
  if (!payload.empty()) std::memcpy(&p[header], payload.data(), payload.size());
  return p;
}

Bytes make_udp(const Endpoint& source, const Endpoint& destination, ByteSpan payload,
               const Ipv4Options& options) {
  Bytes udp(kUdpHeader + payload.size(), 0);
  store_be16(&udp[0], source.port());
  store_be16(&udp[2], destination.port());
  store_be16(&udp[kUdpOffLength], static_cast<std::uint16_t>(udp.size()));
  if (!payload.empty()) std::memcpy(&udp[kUdpHeader], payload.data(), payload.size());
  std::uint16_t sum = transport_sum(source.address().v4_host_order(),
                                    destination.address().v4_host_order(), kProtoUdp, udp);
  store_be16(&udp[kUdpOffChecksum], sum == 0 ? 0xffff : sum);
  return make_ipv4(source.address(), destination.address(), kProtoUdp, udp, options);
}

Bytes make_tcp(const Endpoint& source, const Endpoint& destination, std::uint8_t flags,
               ByteSpan payload, const Ipv4Options& options) {
  Bytes tcp(kTcpMinHeader + payload.size(), 0);
  store_be16(&tcp[0], source.port());
  store_be16(&tcp[2], destination.port());
  store_be32(&tcp[4], 0x01020304);  // sequence
  store_be32(&tcp[8], (flags & kTcpAck) ? 0x0a0b0c0d : 0);
  tcp[kTcpOffDataOffset] = 5 << 4;
  tcp[kTcpOffFlags] = flags;
  store_be16(&tcp[14], 65535);  // window
  if (!payload.empty()) std::memcpy(&tcp[kTcpMinHeader], payload.data(), payload.size());
  store_be16(&tcp[kTcpOffChecksum],
             transport_sum(source.address().v4_host_order(), destination.address().v4_host_order(),
                           kProtoTcp, tcp));
  return make_ipv4(source.address(), destination.address(), kProtoTcp, tcp, options);
}

Bytes make_icmp_query(const IpAddress& source, const IpAddress& destination, std::uint8_t type,
                      std::uint16_t id, std::uint16_t sequence, ByteSpan payload,
                      const Ipv4Options& options) {
  Bytes icmp(kIcmpHeader + payload.size(), 0);
  icmp[0] = type;
  store_be16(&icmp[kIcmpOffIdentifier], id);
  store_be16(&icmp[6], sequence);
  if (!payload.empty()) std::memcpy(&icmp[kIcmpHeader], payload.data(), payload.size());
  store_be16(&icmp[kIcmpOffChecksum], internet_checksum(icmp));
  return make_ipv4(source, destination, kProtoIcmp, icmp, options);
}

Bytes make_icmp_error(const IpAddress& source, const IpAddress& destination, std::uint8_t type,
                      std::uint8_t code, ByteSpan offending, std::size_t quote_bytes) {
  if (quote_bytes == 0) {
    const std::size_t header = offending.empty() ? 0 : std::size_t{offending[0] & 0x0fu} * 4;
    quote_bytes = header + kIcmpQuotedPayload;
  }
  quote_bytes = std::min(quote_bytes, offending.size());
  Bytes icmp(kIcmpHeader + quote_bytes, 0);
  icmp[0] = type;
  icmp[1] = code;
  if (quote_bytes != 0) std::memcpy(&icmp[kIcmpHeader], offending.data(), quote_bytes);
  store_be16(&icmp[kIcmpOffChecksum], internet_checksum(icmp));
  return make_ipv4(source, destination, kProtoIcmp, icmp);
}

std::vector<Bytes> fragment_packet(ByteSpan packet, std::size_t payload_per_fragment) {
  std::vector<Bytes> out;
  const std::size_t header = std::size_t{packet[0] & 0x0fu} * 4;
  const std::size_t step = std::max<std::size_t>(8, payload_per_fragment / 8 * 8);
  const ByteSpan payload = packet.subspan(header);
  Ipv4Options options;
  options.ttl = packet[kIpv4OffTtl];
  options.id = load_be16(&packet[kIpv4OffId]);
  const IpAddress source = IpAddress::v4(&packet[kIpv4OffSource]);
  const IpAddress destination = IpAddress::v4(&packet[kIpv4OffDestination]);
  for (std::size_t at = 0; at < payload.size(); at += step) {
    const std::size_t n = std::min(step, payload.size() - at);
    options.fragment_offset = static_cast<std::uint16_t>(at / 8);
    options.more_fragments = at + n < payload.size();
    out.push_back(
        make_ipv4(source, destination, packet[kIpv4OffProtocol], payload.subspan(at, n), options));
  }
  return out;
}

namespace {

bool transport_ok(ByteSpan ip_packet, std::size_t header, std::size_t segment_size) {
  const std::uint8_t protocol = ip_packet[kIpv4OffProtocol];
  const ByteSpan segment = ip_packet.subspan(header, segment_size);
  const std::uint32_t source = load_be32(&ip_packet[kIpv4OffSource]);
  const std::uint32_t destination = load_be32(&ip_packet[kIpv4OffDestination]);
  switch (protocol) {
    case kProtoUdp:
      if (segment.size() < kUdpHeader) return false;
      if (load_be16(&segment[kUdpOffChecksum]) == 0) return true;  // none sent
      [[fallthrough]];
    case kProtoTcp: {
      const std::uint32_t pseudo = pseudo_header_sum(source, destination, protocol,
                                                     static_cast<std::uint16_t>(segment.size()));
      return checksum_fold(checksum_accumulate(segment, pseudo)) == 0xffff;
    }
    case kProtoIcmp: return checksum_fold(checksum_accumulate(segment)) == 0xffff;
    default: return true;
  }
}

}  // namespace

ChecksumReport verify_checksums(ByteSpan packet) {
  ChecksumReport report;
  if (packet.size() < kIpv4MinHeader) return report;
  const std::size_t header = std::size_t{packet[0] & 0x0fu} * 4;
  const std::size_t total = load_be16(&packet[kIpv4OffTotalLength]);
  if (header < kIpv4MinHeader || total < header || total > packet.size()) return report;
  report.ip = checksum_fold(checksum_accumulate(packet.first(header))) == 0xffff;
  const bool fragment =
      (load_be16(&packet[kIpv4OffFragment]) & (kIpv4FlagMf | kIpv4FragmentMask)) != 0;
  report.transport = fragment || transport_ok(packet, header, total - header);
  const std::uint8_t* icmp = packet.data() + header;
  const bool is_error = packet[kIpv4OffProtocol] == kProtoIcmp && total - header >= kIcmpHeader &&
                        (icmp[0] == kIcmpDestinationUnreachable || icmp[0] == kIcmpTimeExceeded ||
                         icmp[0] == kIcmpParameterProblem);
  if (!is_error || total - header < kIcmpHeader + kIpv4MinHeader) return report;
  const ByteSpan quoted = packet.subspan(header + kIcmpHeader, total - header - kIcmpHeader);
  const std::size_t q_header = std::size_t{quoted[0] & 0x0fu} * 4;
  if (q_header < kIpv4MinHeader || q_header > quoted.size()) {
    report.quoted_ip = false;
    return report;
  }
  report.quoted_ip = checksum_fold(checksum_accumulate(quoted.first(q_header))) == 0xffff;
  const std::size_t q_total = load_be16(&quoted[kIpv4OffTotalLength]);
  if (q_total <= quoted.size() && q_total >= q_header)
    report.quoted_transport = transport_ok(quoted, q_header, q_total - q_header);
  return report;
}

PacketSummary summarize(ByteSpan packet, bool quoted) {
  PacketSummary s;
  if (packet.size() < kIpv4MinHeader) return s;
  std::size_t header = std::size_t{packet[0] & 0x0fu} * 4;
  if (quoted) {
    if (packet.size() < header + kIcmpHeader + kIpv4MinHeader) return s;
    packet = packet.subspan(header + kIcmpHeader);
    header = std::size_t{packet[0] & 0x0fu} * 4;
  }
  if (header < kIpv4MinHeader || packet.size() < header + kIcmpQuotedPayload) return s;
  s.protocol = packet[kIpv4OffProtocol];
  s.ttl = packet[kIpv4OffTtl];
  const IpAddress source = IpAddress::v4(&packet[kIpv4OffSource]);
  const IpAddress destination = IpAddress::v4(&packet[kIpv4OffDestination]);
  const std::uint8_t* t = packet.data() + header;
  std::uint16_t source_port = 0;
  std::uint16_t destination_port = 0;
  if (s.protocol == kProtoIcmp) {
    s.icmp_type = t[0];
    s.icmp_code = t[1];
    const std::uint16_t id = load_be16(t + kIcmpOffIdentifier);
    if (t[0] == kIcmpEchoRequest || t[0] == kIcmpTimestampRequest) source_port = id;
    if (t[0] == kIcmpEchoReply || t[0] == kIcmpTimestampReply) destination_port = id;
  } else {
    source_port = load_be16(t);
    destination_port = load_be16(t + 2);
    if (s.protocol == kProtoTcp && packet.size() >= header + kTcpMinHeader)
      s.tcp_flags = t[kTcpOffFlags];
  }
  s.source = Endpoint(source, source_port);
  s.destination = Endpoint(destination, destination_port);
  return s;
}

}  // namespace knit::nat
