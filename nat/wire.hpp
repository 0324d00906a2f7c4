// Every wire size, field offset and protocol number the NAT engine touches, in one place.
//
// IPv4 header (RFC 791), offsets in bytes:
//    0                   1                   2                   3
//    0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//   +-------+-------+---------------+-------------------------------+
//   |Version|  IHL  |      TOS      |          Total Length         |  0
//   +-------+-------+---------------+-----+-------------------------+
//   |        Identification         |Flags|     Fragment Offset     |  4
//   +---------------+---------------+-----+-------------------------+
//   |      TTL      |   Protocol    |        Header Checksum        |  8
//   +---------------+---------------+-------------------------------+
//   |                        Source Address                         | 12
//   +---------------------------------------------------------------+
//   |                      Destination Address                      | 16
//   +---------------------------------------------------------------+
//   |                 Options (IHL > 5) ... up to 60 bytes           | 20
//
// UDP (RFC 768)              TCP (RFC 9293)                  ICMP (RFC 792)
//   0 src port | 2 dst port    0 src port | 2 dst port         0 type | 1 code | 2 checksum
//   4 length   | 6 checksum    4 seq | 8 ack | 12 data offset  4 identifier | 6 sequence  (queries)
//                              13 flags | 14 window | 16 cksum 4 unused, 8 quoted IP header
//                              (errors)
//
// UDP and TCP checksums cover a pseudo-header (source, destination, zero, protocol, length);
// the ICMPv4 checksum covers the ICMP message only.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace knit::nat {

// IPv4.
inline constexpr std::size_t kIpv4MinHeader = 20;
inline constexpr std::size_t kIpv4MaxHeader = 60;
inline constexpr std::size_t kIpv4OffTotalLength = 2;
inline constexpr std::size_t kIpv4OffId = 4;
inline constexpr std::size_t kIpv4OffFragment = 6;
inline constexpr std::size_t kIpv4OffTtl = 8;
inline constexpr std::size_t kIpv4OffProtocol = 9;
inline constexpr std::size_t kIpv4OffChecksum = 10;
inline constexpr std::size_t kIpv4OffSource = 12;
inline constexpr std::size_t kIpv4OffDestination = 16;
inline constexpr std::uint16_t kIpv4FlagDf = 0x4000;
inline constexpr std::uint16_t kIpv4FlagMf = 0x2000;
inline constexpr std::uint16_t kIpv4FragmentMask = 0x1fff;

// Protocol numbers (IANA).
inline constexpr std::uint8_t kProtoIcmp = 1;
inline constexpr std::uint8_t kProtoTcp = 6;
inline constexpr std::uint8_t kProtoUdp = 17;

// UDP.
inline constexpr std::size_t kUdpHeader = 8;
inline constexpr std::size_t kUdpOffLength = 4;
inline constexpr std::size_t kUdpOffChecksum = 6;

// TCP.
inline constexpr std::size_t kTcpMinHeader = 20;
inline constexpr std::size_t kTcpOffDataOffset = 12;
inline constexpr std::size_t kTcpOffFlags = 13;
inline constexpr std::size_t kTcpOffChecksum = 16;
inline constexpr std::uint8_t kTcpFin = 0x01;
inline constexpr std::uint8_t kTcpSyn = 0x02;
inline constexpr std::uint8_t kTcpRst = 0x04;
inline constexpr std::uint8_t kTcpAck = 0x10;

// ICMP.
inline constexpr std::size_t kIcmpHeader = 8;
inline constexpr std::size_t kIcmpOffChecksum = 2;
inline constexpr std::size_t kIcmpOffIdentifier = 4;
inline constexpr std::uint8_t kIcmpEchoReply = 0;
inline constexpr std::uint8_t kIcmpDestinationUnreachable = 3;
inline constexpr std::uint8_t kIcmpEchoRequest = 8;
inline constexpr std::uint8_t kIcmpTimeExceeded = 11;
inline constexpr std::uint8_t kIcmpParameterProblem = 12;
inline constexpr std::uint8_t kIcmpTimestampRequest = 13;
inline constexpr std::uint8_t kIcmpTimestampReply = 14;
// Destination-unreachable codes.
inline constexpr std::uint8_t kIcmpCodePortUnreachable = 3;
inline constexpr std::uint8_t kIcmpCodeAdminProhibited = 13;
// Time-exceeded code: TTL exceeded in transit.
inline constexpr std::uint8_t kIcmpCodeTtlExceeded = 0;

// An ICMP error quotes the offending IP header and the first 64 bits of its payload (RFC 792),
// so the errors this engine writes are at most 20 + 8 + 60 + 8 bytes.
inline constexpr std::size_t kIcmpQuotedPayload = 8;
inline constexpr std::size_t kIcmpErrorMaxSize =
    kIpv4MinHeader + kIcmpHeader + kIpv4MaxHeader + kIcmpQuotedPayload;
inline constexpr std::uint8_t kGeneratedTtl = 64;

// Ports. RFC 4787 REQ-3a: the "well-known" range is 0-1023; port 0 is never valid on the wire.
inline constexpr std::uint16_t kLowPortMin = 1;
inline constexpr std::uint16_t kLowPortMax = 1023;
inline constexpr std::uint16_t kHighPortMin = 1024;

// Non-first fragments follow the translation of their first fragment for this long.
inline constexpr std::chrono::seconds kFragmentTimeout{5};

}  // namespace knit::nat
