// NAT-PMP (RFC 6886) answers, checked before libnatpmp sees them. libnatpmp sends the requests
// and retransmits them, but it accepts any datagram from the gateway as the answer to the
// pending request (it does not check the size, nor that the opcode is the one it asked for).
// The NAT-PMP client peeks at each datagram and lets libnatpmp read it only when this check
// passes; anything else is consumed, dropped and counted. Sans-I/O; wire format in
// punch/portmap/wire.hpp.
//
//   NatPmpAnswer a;
//   if (check_natpmp_answer(peeked, portmap::kNatPmpOpMapUdp, 51820, a) == NatPmpError::ok) ...
#pragma once

#include <cstdint>
#include <string_view>

#include "base/bytes.hpp"
#include "base/ip.hpp"
#include "punch/portmap/types.hpp"
#include "punch/portmap/wire.hpp"

namespace knit::punch {

using portmap::NatPmpResult;
std::string_view to_string(NatPmpResult result);

enum class NatPmpError {
  ok,
  bad_size,      // shorter than its opcode's answer (8 bytes for an error), or longer than 1100
  bad_version,   // not version 0 (a PCP server's answer is not ours here)
  not_response,  // opcode without the response bit
  wrong_opcode,  // an answer to another request than the pending one
  wrong_port,    // a mapping answer for another internal port
};
std::string_view to_string(NatPmpError error);

struct NatPmpAnswer {
  std::uint8_t opcode = 0;  // without the response bit
  NatPmpResult result = NatPmpResult::success;
  std::uint32_t epoch_s = 0;
  IpAddress external_address;        // address answers
  std::uint16_t internal_port = 0;   // mapping answers
  std::uint16_t external_port = 0;   // mapping answers
  std::uint32_t lifetime_s = 0;      // mapping answers
};

// request_opcode: kNatPmpOpAddress, kNatPmpOpMapUdp or kNatPmpOpMapTcp. internal_port is
// checked for mapping answers that succeeded (an error answer may stop after the epoch).
NatPmpError check_natpmp_answer(ByteSpan datagram, std::uint8_t request_opcode,
                                std::uint16_t internal_port, NatPmpAnswer& out);

void count_drop(NatPmpError error, PortMapCounters& counters);
PortMapFailure natpmp_failure(NatPmpResult result);

// Requests, for tests and fakes (the client lets libnatpmp build its own).
Bytes build_natpmp_address_request();
Bytes build_natpmp_map_request(std::uint8_t opcode, std::uint16_t internal_port,
                               std::uint16_t suggested_port, std::uint32_t lifetime_s);
// Answers, for tests and fakes.
Bytes build_natpmp_address_answer(NatPmpResult result, std::uint32_t epoch_s,
                                  const IpAddress& external);
Bytes build_natpmp_map_answer(std::uint8_t opcode, NatPmpResult result, std::uint32_t epoch_s,
                              std::uint16_t internal_port, std::uint16_t external_port,
                              std::uint32_t lifetime_s);

}  // namespace knit::punch
