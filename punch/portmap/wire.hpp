// Port mapping on the wire: every size, opcode and result code of NAT-PMP (RFC 6886) and PCP
// (RFC 6887). Both speak UDP to the gateway's port 5351; a PCP server answers a NAT-PMP
// request and a NAT-PMP server answers a PCP request with "unsupported version" (RFC 6887 §9),
// which is how a client steps down from PCP to NAT-PMP.
//
// NAT-PMP (RFC 6886 §3.2, §3.3), all fields big-endian:
//
//   external address request (2 bytes)      external address response (12 bytes)
//   | vers = 0 | op = 0 |                   | vers = 0 | op = 128 | result code (16)    |
//                                           | seconds since start of epoch (32)        |
//                                           | external IPv4 address (32)               |
//
//   mapping request (12 bytes)              mapping response (16 bytes)
//   | vers = 0 | op = 1 UDP, 2 TCP |        | vers = 0 | op = 128 + op | result code (16) |
//   | reserved (16)                 |       | seconds since start of epoch (32)          |
//   | internal port | suggested ext. port | | internal port | mapped external port       |
//   | requested lifetime in seconds (32)  | | lifetime in seconds (32)                   |
//
//   Lifetime 0 (and suggested port 0) deletes the mapping (§3.4). A response whose result code
//   is not 0 may stop after the epoch (8 bytes, §3.5).
//
// PCP (RFC 6887 §7.1, §7.2, §11.1), all fields big-endian, addresses 128 bits (an IPv4
// address as ::ffff:a.b.c.d):
//
//   request header (24 bytes)                  response header (24 bytes)
//   | vers = 2 | R=0 | opcode | reserved (16) | vers = 2 | R=1 | opcode | reserved | result |
//   | requested lifetime (32)                 | lifetime (32)                               |
//   | PCP client's IP address (128)           | epoch time (32)                             |
//                                             | reserved (96)                               |
//
//   MAP opcode data (36 bytes, request and response alike)
//   | mapping nonce (96)                                                       |
//   | protocol (8) | reserved (24)                                             |
//   | internal port (16)          | suggested / assigned external port (16)    |
//   | suggested / assigned external IP address (128)                           |
//
//   Options follow (§7.3): | code (8) | reserved (8) | length (16) | data, padded to 4 |
//   A message is at most 1100 bytes and a multiple of 4 long (§7). ANNOUNCE (opcode 0) has no
//   opcode data; a success answer to it proves a PCP server is there (§14.1).
#pragma once

#include <cstddef>
#include <cstdint>

namespace knit::punch::portmap {

inline constexpr std::uint16_t kServerPort = 5351;      // RFC 6886 §3.1, RFC 6887 §19.1
inline constexpr std::size_t kMaxMessage = 1100;        // RFC 6887 §7
inline constexpr std::uint8_t kIpProtocolUdp = 17;
inline constexpr std::uint8_t kIpProtocolTcp = 6;

// ---- NAT-PMP ----
inline constexpr std::uint8_t kNatPmpVersion = 0;
inline constexpr std::uint8_t kNatPmpOpAddress = 0;
inline constexpr std::uint8_t kNatPmpOpMapUdp = 1;
inline constexpr std::uint8_t kNatPmpOpMapTcp = 2;
inline constexpr std::uint8_t kNatPmpResponseBit = 128;
inline constexpr std::size_t kNatPmpAddressRequestSize = 2;
inline constexpr std::size_t kNatPmpMapRequestSize = 12;
inline constexpr std::size_t kNatPmpAddressResponseSize = 12;
inline constexpr std::size_t kNatPmpMapResponseSize = 16;
inline constexpr std::size_t kNatPmpErrorResponseSize = 8;  // header + epoch

enum class NatPmpResult : std::uint16_t {
  success = 0,
  unsupported_version = 1,
  not_authorized = 2,  // "refused": the gateway supports NAT-PMP but it is switched off
  network_failure = 3,  // e.g. the gateway has no external address yet
  out_of_resources = 4,
  unsupported_opcode = 5,
};

// ---- PCP ----
inline constexpr std::uint8_t kPcpVersion = 2;
inline constexpr std::uint8_t kPcpResponseBit = 0x80;
inline constexpr std::uint8_t kPcpOpAnnounce = 0;
inline constexpr std::uint8_t kPcpOpMap = 1;
inline constexpr std::uint8_t kPcpOpPeer = 2;
inline constexpr std::size_t kPcpHeaderSize = 24;
inline constexpr std::size_t kPcpMapDataSize = 36;
inline constexpr std::size_t kPcpNonceSize = 12;
inline constexpr std::size_t kPcpOptionHeaderSize = 4;

enum class PcpResult : std::uint8_t {
  success = 0,
  unsupp_version = 1,
  not_authorized = 2,
  malformed_request = 3,
  unsupp_opcode = 4,
  unsupp_option = 5,
  malformed_option = 6,
  network_failure = 7,
  no_resources = 8,
  unsupp_protocol = 9,
  user_ex_quota = 10,
  cannot_provide_external = 11,
  address_mismatch = 12,
  excessive_remote_peers = 13,
};

}  // namespace knit::punch::portmap
