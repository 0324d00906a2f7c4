// PCP (RFC 6887) MAP and ANNOUNCE: building requests and checking answers. Sans-I/O, no clock;
// the wire format is drawn in punch/portmap/wire.hpp. libnatpmp 20150609 has no PCP, so this is
// Knit's own small codec.
//
//   PcpMapRequest req{.nonce = n, .internal_port = 51820, .lifetime_s = 7200, .client = me};
//   Bytes out = build_pcp_map_request(req);
//   PcpAnswer a;
//   if (parse_pcp_answer(datagram, req, a) == PcpError::ok && a.result == PcpResult::success) ...
//
// Every answer is hostile until proven ours: size (24..1100, a multiple of 4), version, the R
// bit, the opcode we asked for, and for MAP the nonce, protocol and internal port we sent
// (RFC 6887 §8.3, §11.4). A version-0 answer is a NAT-PMP-only gateway telling us it does not
// speak PCP (§9): reported as PcpError::natpmp_only rather than dropped.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

#include "base/bytes.hpp"
#include "base/ip.hpp"
#include "punch/portmap/types.hpp"
#include "punch/portmap/wire.hpp"

namespace knit::punch {

using PcpNonce = std::array<std::uint8_t, portmap::kPcpNonceSize>;
using portmap::PcpResult;

std::string_view to_string(PcpResult result);

struct PcpMapRequest {
  PcpNonce nonce{};  // random per mapping, reused for its renewals and deletion (§11.2)
  std::uint8_t protocol = portmap::kIpProtocolUdp;
  std::uint16_t internal_port = 0;
  // 0 / unspecified: no preference. Renewals suggest what was assigned before (§11.2).
  std::uint16_t suggested_port = 0;
  IpAddress suggested_address;  // 0.0.0.0 = any IPv4 (sent as ::ffff:0.0.0.0)
  std::uint32_t lifetime_s = 0;  // 0 deletes the mapping (§15)
  IpAddress client;              // our source address as the server sees it
};

// ANNOUNCE (§14.1): the cheapest way to learn whether a PCP server is there.
struct PcpAnnounceRequest {
  IpAddress client;
};

Bytes build_pcp_map_request(const PcpMapRequest& request);
Bytes build_pcp_announce_request(const PcpAnnounceRequest& request);

enum class PcpError {
  ok,
  bad_size,        // < 24 bytes, > 1100, or not a multiple of 4
  natpmp_only,     // version 0: a NAT-PMP server (RFC 6887 §9)
  bad_version,     // neither 2 nor 0
  not_response,    // R bit clear (our own request reflected, or a stranger's)
  wrong_opcode,    // an answer to another opcode
  truncated_map,   // MAP answer too short for its opcode data
  nonce_mismatch,  // not our mapping nonce
  wrong_protocol,  // another transport protocol than we asked for
  wrong_port,      // another internal port than we asked for
  bad_option,      // an option runs past the end of the message
};
std::string_view to_string(PcpError error);

struct PcpAnswer {
  std::uint8_t opcode = 0;
  PcpResult result = PcpResult::success;
  // Success: the granted lifetime. Error: how long the error is expected to last (§7.2).
  std::uint32_t lifetime_s = 0;
  std::uint32_t epoch_s = 0;
  // MAP only (meaningful on success): the assigned external endpoint.
  Endpoint external;
  bool has_map_data = false;
};

// Checks an answer to `request` (a MAP request) or, with the announce overload, to ANNOUNCE.
// An error answer may carry only the header when the server could not read our opcode data
// (unsupported version or opcode, malformed request); then has_map_data stays false.
PcpError parse_pcp_answer(ByteSpan datagram, const PcpMapRequest& request, PcpAnswer& out);
PcpError parse_pcp_announce_answer(ByteSpan datagram, PcpAnswer& out);

// Adds a dropped answer to the counter of its cause.
void count_drop(PcpError error, PortMapCounters& counters);

// The failure a non-success result code means, for a person and for the PortMapper's choice
// to fall back (unsupported) or not.
PortMapFailure pcp_failure(PcpResult result);

}  // namespace knit::punch
