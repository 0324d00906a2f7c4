#include "nat/rewrite.hpp"

#include "nat/checksum.hpp"
#include "nat/wire.hpp"

namespace knit::nat {

namespace {

ChecksumField ip_checksum(std::uint8_t* ip) { return ChecksumField{ip + kIpv4OffChecksum}; }

// The transport checksum of a header at `l4` with `size` bytes present, if it is there.
ChecksumField transport_checksum(std::uint8_t* l4, std::size_t size, Protocol protocol) {
  const std::size_t at = transport_checksum_offset(protocol);
  if (at + 2 > size) return {};
  return ChecksumField{l4 + at, protocol == Protocol::udp};
}

// Where a transport header keeps the source (or destination) port; ICMP: the identifier.
std::size_t port_offset(Protocol protocol, bool source) {
  if (protocol == Protocol::icmp) return kIcmpOffIdentifier;
  return source ? 0 : 2;
}

void rewrite_address(std::uint8_t* ip, std::size_t field, ChecksumField l4, Protocol protocol,
                     std::uint32_t address, ChecksumWriter& writer) {
  const ChecksumField pseudo = transport_has_pseudo_header(protocol) ? l4 : ChecksumField{};
  writer.set32(ip + field, address, ip_checksum(ip), pseudo);
}

void rewrite_endpoint(std::span<std::uint8_t> packet, PacketView& view, bool source,
                      std::uint32_t address, std::uint16_t port) {
  std::uint8_t* ip = packet.data();
  std::uint8_t* l4 = ip + view.l4_offset;
  const Protocol protocol = view.transport.protocol;
  const ChecksumField l4_sum = transport_checksum(l4, view.l4_size, protocol);
  ChecksumWriter writer;
  rewrite_address(ip, source ? kIpv4OffSource : kIpv4OffDestination, l4_sum, protocol, address,
                  writer);
  writer.set16(l4 + port_offset(protocol, source), port, l4_sum);
  if (source) {
    view.ip.source = address;
    view.transport.source_port = port;
  } else {
    view.ip.destination = address;
    view.transport.destination_port = port;
  }
}

void rewrite_quoted(std::span<std::uint8_t> packet, PacketView& view, bool source,
                    std::uint32_t address, std::uint16_t port) {
  QuotedPacket& q = view.quoted;
  std::uint8_t* icmp = packet.data() + view.l4_offset;
  std::uint8_t* ip = packet.data() + q.ip_offset;
  std::uint8_t* l4 = packet.data() + q.l4_offset;
  const Protocol protocol = q.transport.protocol;
  // RFC 5508 REQ-4/5: the quoted header and transport fields, their own checksums (the
  // transport one only if quoted: TCP's sits past the 8 promised bytes), and the ICMP checksum
  // around them all.
  ChecksumWriter writer(ChecksumField{icmp + kIcmpOffChecksum});
  const ChecksumField l4_sum = transport_checksum(l4, q.l4_size, protocol);
  rewrite_address(ip, source ? kIpv4OffSource : kIpv4OffDestination, l4_sum, protocol, address,
                  writer);
  writer.set16(l4 + port_offset(protocol, source), port, l4_sum);
  if (source) {
    q.ip.source = address;
    q.transport.source_port = port;
  } else {
    q.ip.destination = address;
    q.transport.destination_port = port;
  }
}

}  // namespace

void rewrite_source(std::span<std::uint8_t> packet, PacketView& view, std::uint32_t address,
                    std::uint16_t port) {
  rewrite_endpoint(packet, view, true, address, port);
}

void rewrite_destination(std::span<std::uint8_t> packet, PacketView& view, std::uint32_t address,
                         std::uint16_t port) {
  rewrite_endpoint(packet, view, false, address, port);
}

void rewrite_source_address(std::span<std::uint8_t> packet, PacketView& view,
                            std::uint32_t address) {
  ChecksumWriter writer;
  writer.set32(packet.data() + kIpv4OffSource, address, ip_checksum(packet.data()));
  view.ip.source = address;
}

void rewrite_destination_address(std::span<std::uint8_t> packet, PacketView& view,
                                 std::uint32_t address) {
  ChecksumWriter writer;
  writer.set32(packet.data() + kIpv4OffDestination, address, ip_checksum(packet.data()));
  view.ip.destination = address;
}

void rewrite_quoted_source(std::span<std::uint8_t> packet, PacketView& view, std::uint32_t address,
                           std::uint16_t port) {
  rewrite_quoted(packet, view, true, address, port);
}

void rewrite_quoted_destination(std::span<std::uint8_t> packet, PacketView& view,
                                std::uint32_t address, std::uint16_t port) {
  rewrite_quoted(packet, view, false, address, port);
}

void decrement_ttl(std::span<std::uint8_t> packet, PacketView& view) {
  // TTL shares a checksummed word with the protocol byte.
  std::uint8_t* word = packet.data() + kIpv4OffTtl;
  const std::uint16_t next = static_cast<std::uint16_t>(((view.ip.ttl - 1u) << 8) | word[1]);
  ChecksumWriter writer;
  writer.set16(word, next, ip_checksum(packet.data()));
  view.ip.ttl = static_cast<std::uint8_t>(view.ip.ttl - 1);
}

}  // namespace knit::nat
