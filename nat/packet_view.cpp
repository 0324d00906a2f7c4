#include "nat/packet_view.hpp"

#include "nat/checksum.hpp"
#include "nat/wire.hpp"

namespace knit::nat {

const char* to_string(Protocol protocol) {
  switch (protocol) {
    case Protocol::icmp: return "icmp";
    case Protocol::tcp: return "tcp";
    case Protocol::udp: return "udp";
  }
  return "?";
}

const char* to_string(ParseError error) {
  switch (error) {
    case ParseError::none: return "none";
    case ParseError::truncated: return "truncated";
    case ParseError::not_ipv4: return "not_ipv4";
    case ParseError::bad_header_length: return "bad_header_length";
    case ParseError::bad_total_length: return "bad_total_length";
    case ParseError::bad_checksum: return "bad_checksum";
    case ParseError::bad_transport: return "bad_transport";
    case ParseError::bad_quoted_packet: return "bad_quoted_packet";
    case ParseError::fragmented_error: return "fragmented_error";
    case ParseError::unsupported_protocol: return "unsupported_protocol";
    case ParseError::unsupported_icmp: return "unsupported_icmp";
  }
  return "?";
}

std::size_t transport_checksum_offset(Protocol protocol) {
  switch (protocol) {
    case Protocol::udp: return kUdpOffChecksum;
    case Protocol::tcp: return kTcpOffChecksum;
    case Protocol::icmp: return kIcmpOffChecksum;
  }
  return kIcmpOffChecksum;
}

bool transport_has_pseudo_header(Protocol protocol) { return protocol != Protocol::icmp; }

namespace {

bool is_query_request(std::uint8_t type) {
  return type == kIcmpEchoRequest || type == kIcmpTimestampRequest;
}
bool is_query_reply(std::uint8_t type) {
  return type == kIcmpEchoReply || type == kIcmpTimestampReply;
}
bool is_translated_error(std::uint8_t type) {
  return type == kIcmpDestinationUnreachable || type == kIcmpTimeExceeded ||
         type == kIcmpParameterProblem;
}

// The fixed IPv4 header rules (RFC 791). `available` is how many bytes the buffer holds from
// `p`; a quoted header may claim more total length than was quoted, so `allow_short` relaxes
// the total-length-vs-buffer check there.
ParseError parse_ipv4(const std::uint8_t* p, std::size_t available, bool allow_short,
                      Ipv4Fields& ip) {
  if (available < kIpv4MinHeader) return ParseError::truncated;
  if ((p[0] >> 4) != 4) return ParseError::not_ipv4;
  ip.header_length = static_cast<std::size_t>(p[0] & 0x0fu) * 4;
  if (ip.header_length < kIpv4MinHeader) return ParseError::bad_header_length;
  if (ip.header_length > available) return ParseError::bad_header_length;
  ip.total_length = load_be16(p + kIpv4OffTotalLength);
  if (ip.total_length < ip.header_length) return ParseError::bad_total_length;
  if (!allow_short && ip.total_length > available) return ParseError::truncated;
  // RFC 791: a valid header sums to all ones, checksum field included.
  if (checksum_fold(checksum_accumulate(ByteSpan(p, ip.header_length))) != 0xffff)
    return ParseError::bad_checksum;
  const std::uint16_t fragment = load_be16(p + kIpv4OffFragment);
  ip.more_fragments = (fragment & kIpv4FlagMf) != 0;
  ip.fragment_offset = fragment & kIpv4FragmentMask;
  ip.id = load_be16(p + kIpv4OffId);
  ip.ttl = p[kIpv4OffTtl];
  ip.protocol = p[kIpv4OffProtocol];
  ip.source = load_be32(p + kIpv4OffSource);
  ip.destination = load_be32(p + kIpv4OffDestination);
  return ParseError::none;
}

// How much of the transport segment a buffer holds.
enum class Extent : std::uint8_t {
  whole,           // the complete segment: length fields must fit inside it
  first_fragment,  // the start of a fragmented datagram: the header must still be complete
                   // (RFC 1858: no tiny fragments), but UDP length covers later fragments
  quoted,          // quoted in an ICMP error: only the first 8 bytes are promised
};

// Ports (or the ICMP query identifier) of a transport header with `size` bytes present.
ParseError parse_transport(const std::uint8_t* t, std::size_t size, std::uint8_t protocol,
                           Extent extent, TransportFields& out, bool& query_reply) {
  const bool whole = extent == Extent::whole;
  switch (protocol) {
    case kProtoUdp: {
      if (size < kUdpHeader) return ParseError::truncated;
      out.protocol = Protocol::udp;
      const std::size_t length = load_be16(t + kUdpOffLength);
      if (length < kUdpHeader || (whole && length > size)) return ParseError::bad_transport;
      break;
    }
    case kProtoTcp: {
      out.protocol = Protocol::tcp;
      // A quote carries only 8 bytes (ports and sequence number) and that is enough.
      if (extent == Extent::quoted) {
        if (size < kIcmpQuotedPayload) return ParseError::truncated;
        out.tcp_flags = size > kTcpOffFlags ? t[kTcpOffFlags] : 0;
        break;
      }
      if (size < kTcpMinHeader) return ParseError::truncated;
      const std::size_t data_offset = static_cast<std::size_t>(t[kTcpOffDataOffset] >> 4) * 4;
      if (data_offset < kTcpMinHeader || data_offset > size) return ParseError::bad_transport;
      out.tcp_flags = t[kTcpOffFlags];
      break;
    }
    case kProtoIcmp: {
      if (size < kIcmpHeader) return ParseError::truncated;
      out.protocol = Protocol::icmp;
      out.icmp_type = t[0];
      out.icmp_code = t[1];
      const std::uint16_t id = load_be16(t + kIcmpOffIdentifier);
      if (is_query_request(out.icmp_type)) {
        out.source_port = id;
        out.destination_port = 0;
        query_reply = false;
        return ParseError::none;
      }
      if (is_query_reply(out.icmp_type)) {
        out.source_port = 0;
        out.destination_port = id;
        query_reply = true;
        return ParseError::none;
      }
      return ParseError::unsupported_icmp;
    }
    default: return ParseError::unsupported_protocol;
  }
  out.source_port = load_be16(t);
  out.destination_port = load_be16(t + 2);
  if (out.source_port == 0 || out.destination_port == 0) return ParseError::bad_transport;
  return ParseError::none;
}

ParseError parse_quoted(ByteSpan packet, PacketView& view) {
  QuotedPacket& q = view.quoted;
  if (view.l4_size < kIcmpHeader + kIpv4MinHeader + kIcmpQuotedPayload)
    return ParseError::bad_quoted_packet;
  q.ip_offset = view.l4_offset + kIcmpHeader;
  const std::size_t available = view.l4_offset + view.l4_size - q.ip_offset;
  // RFC 5508 REQ-3: an error whose quoted IP header does not check out is dropped.
  const ParseError ip_error = parse_ipv4(packet.data() + q.ip_offset, available, true, q.ip);
  if (ip_error == ParseError::bad_checksum) return ip_error;
  if (ip_error != ParseError::none) return ParseError::bad_quoted_packet;
  if (q.ip.fragment_offset != 0) return ParseError::bad_quoted_packet;  // no transport header
  if (q.ip.total_length < q.ip.header_length + kIcmpQuotedPayload)
    return ParseError::bad_quoted_packet;
  q.l4_offset = q.ip_offset + q.ip.header_length;
  if (q.l4_offset + kIcmpQuotedPayload > view.l4_offset + view.l4_size)
    return ParseError::bad_quoted_packet;
  q.l4_size = view.l4_offset + view.l4_size - q.l4_offset;
  // Never more than the quoted packet itself claims (the rest would be ICMP extensions).
  if (q.l4_size > q.ip.total_length - q.ip.header_length)
    q.l4_size = q.ip.total_length - q.ip.header_length;
  const ParseError t_error = parse_transport(packet.data() + q.l4_offset, q.l4_size, q.ip.protocol,
                                             Extent::quoted, q.transport, q.query_reply);
  if (t_error == ParseError::unsupported_protocol) return t_error;
  if (t_error != ParseError::none) return ParseError::bad_quoted_packet;
  return ParseError::none;
}

}  // namespace

ParseError parse_packet(ByteSpan packet, PacketView& view) {
  // Resets only what this parse may leave unset (a whole-view reset costs more than the rest
  // of the fast path's bookkeeping).
  view.kind = PacketKind::flow;
  view.transport = TransportFields{};
  if (const ParseError e = parse_ipv4(packet.data(), packet.size(), false, view.ip);
      e != ParseError::none)
    return e;
  view.l4_offset = view.ip.header_length;
  view.l4_size = view.ip.total_length - view.ip.header_length;
  if (view.ip.fragment_offset != 0) {
    view.kind = PacketKind::non_first_fragment;
    return ParseError::none;
  }
  const std::uint8_t* t = packet.data() + view.l4_offset;
  bool query_reply = false;
  const Extent extent = view.ip.more_fragments ? Extent::first_fragment : Extent::whole;
  if (view.ip.protocol == kProtoIcmp && view.l4_size >= kIcmpHeader && is_translated_error(t[0])) {
    view.kind = PacketKind::icmp_error;
    view.quoted = QuotedPacket{};
    view.transport.protocol = Protocol::icmp;
    view.transport.icmp_type = t[0];
    view.transport.icmp_code = t[1];
    if (view.ip.is_fragment()) return ParseError::fragmented_error;
    // RFC 5508 REQ-3: an ICMP error with a bad checksum is dropped.
    if (internet_checksum(ByteSpan(t, view.l4_size)) != 0) return ParseError::bad_checksum;
    return parse_quoted(packet, view);
  }
  if (const ParseError e =
          parse_transport(t, view.l4_size, view.ip.protocol, extent, view.transport, query_reply);
      e != ParseError::none)
    return e;
  if (view.transport.protocol == Protocol::icmp) {
    view.kind = query_reply ? PacketKind::icmp_query_reply : PacketKind::icmp_query_request;
  } else {
    view.kind = PacketKind::flow;
  }
  return ParseError::none;
}

}  // namespace knit::nat
