// A validated, parsed view of one IPv4 packet: what the NAT engine needs to look up and
// rewrite it, with byte offsets into the caller's buffer. Parsing never trusts a length field:
// every offset below is checked against the bytes actually present.
//
//   packet: [ IPv4 header (header_length) | transport (l4_size captured bytes) ][ padding... ]
//            ^0                            ^l4_offset                          ^total_length
//
// For an ICMP error the transport bytes hold the ICMP header and the quoted packet:
//   [ ICMP type code cksum unused ][ quoted IPv4 header | >= 8 bytes of quoted transport ]
//    ^l4_offset                     ^quoted.ip_offset     ^quoted.l4_offset
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/bytes.hpp"

namespace knit::nat {

enum class Protocol : std::uint8_t { icmp = 1, tcp = 6, udp = 17 };
const char* to_string(Protocol protocol);

enum class ParseError : std::uint8_t {
  none,
  truncated,             // fewer bytes than a header needs, or than total length claims
  not_ipv4,              // version field is not 4
  bad_header_length,     // IHL < 5, or header longer than the packet
  bad_total_length,      // total length shorter than the header
  bad_checksum,          // IPv4 header, ICMP error, or quoted header checksum wrong
  bad_transport,         // transport header malformed (TCP data offset, UDP length, port 0)
  bad_quoted_packet,     // an ICMP error quoting garbage or too few bytes
  fragmented_error,      // an ICMP error split in fragments: its checksum cannot be verified
  unsupported_protocol,  // neither TCP, UDP nor ICMP (also when quoted in an ICMP error)
  unsupported_icmp,      // an ICMP type the NAT does not translate
};
const char* to_string(ParseError error);

enum class PacketKind : std::uint8_t {
  flow,                // TCP or UDP with its ports
  icmp_query_request,  // echo or timestamp request: the identifier is the sender's "port"
  icmp_query_reply,    // echo or timestamp reply: the identifier is the receiver's "port"
  icmp_error,          // destination unreachable, time exceeded, parameter problem
  non_first_fragment,  // no transport header: follows its first fragment's translation
};

struct Ipv4Fields {
  std::size_t header_length = 0;
  std::size_t total_length = 0;
  std::uint32_t source = 0;
  std::uint32_t destination = 0;
  std::uint16_t id = 0;
  std::uint16_t fragment_offset = 0;  // in 8-byte units
  std::uint8_t protocol = 0;
  std::uint8_t ttl = 0;
  bool more_fragments = false;

  bool is_fragment() const { return more_fragments || fragment_offset != 0; }
};

// The transport endpoints in the unified form the tables use. An ICMP query has one port, its
// identifier, on the querying host's side: a request carries it as source_port (destination_port
// 0), a reply as destination_port (source_port 0). So replies look up like any other reply.
struct TransportFields {
  Protocol protocol = Protocol::udp;
  std::uint16_t source_port = 0;
  std::uint16_t destination_port = 0;
  std::uint8_t tcp_flags = 0;
  std::uint8_t icmp_type = 0;
  std::uint8_t icmp_code = 0;
};

// The packet quoted inside an ICMP error (RFC 792: its IP header and >= 64 bits of payload).
struct QuotedPacket {
  std::size_t ip_offset = 0;  // offsets from the start of the outer packet
  std::size_t l4_offset = 0;
  std::size_t l4_size = 0;  // quoted transport bytes present (>= 8)
  Ipv4Fields ip;
  TransportFields transport;
  bool query_reply = false;  // quoted ICMP query is a reply (else a request)
};

struct PacketView {
  Ipv4Fields ip;
  PacketKind kind = PacketKind::flow;
  std::size_t l4_offset = 0;
  std::size_t l4_size = 0;  // transport bytes captured: total_length - header_length
  TransportFields transport;
  QuotedPacket quoted;  // kind == icmp_error only
};

// Parses and validates `packet` (RFC 791 header rules, header checksum, transport header
// bounds; for ICMP errors also the ICMP checksum and the quoted packet, RFC 5508 REQ-3).
ParseError parse_packet(ByteSpan packet, PacketView& out);

// Offsets of a transport header's fields that translation rewrites.
std::size_t transport_checksum_offset(Protocol protocol);
bool transport_has_pseudo_header(Protocol protocol);

}  // namespace knit::nat
