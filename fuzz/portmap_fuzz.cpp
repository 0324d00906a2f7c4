// PCP and NAT-PMP answers (punch/portmap): what a gateway (or anyone on the LAN who can spoof
// it) sends back to knitd's port mapper. parse_pcp_answer against a MAP request the input
// describes, parse_pcp_announce_answer, and check_natpmp_answer for each request kind.
// Properties: an accepted MAP answer is for our nonce, protocol and port; an accepted NAT-PMP
// answer is for the opcode (and port) we asked about; an answer we build ourselves is accepted.
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "fuzz/fuzz_util.hpp"
#include "punch/portmap/natpmp.hpp"
#include "punch/portmap/pcp.hpp"

using namespace knit;
using namespace knit::punch;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Input: nonce[12] | tcp u8 | internal port u16 | lifetime u32 | client u32 | NAT-PMP
  // opcode u8 | the answer datagram.
  fuzz::Reader in(data, size);
  PcpMapRequest request;
  const auto nonce = in.bytes(request.nonce.size());
  std::copy(nonce.begin(), nonce.end(), request.nonce.begin());
  request.protocol = (in.u8() & 1) ? portmap::kIpProtocolTcp : portmap::kIpProtocolUdp;
  request.internal_port = in.u16();
  request.lifetime_s = in.u32();
  request.client = IpAddress::v4(in.u32());
  const std::uint8_t natpmp_opcode = in.u8() % 3;
  const Bytes answer = in.rest();

  PcpAnswer pcp;
  const PcpError error = parse_pcp_answer(answer, request, pcp);
  (void)to_string(error);
  PortMapCounters counters;
  if (error == PcpError::ok) {
    KNIT_FUZZ_CHECK(pcp.opcode == portmap::kPcpOpMap);
    if (pcp.has_map_data) {
      // Nonce at bytes 24..35 of the answer (RFC 6887 §11.1), then protocol and internal port.
      KNIT_FUZZ_CHECK(answer.size() >= 24 + 36);
      KNIT_FUZZ_CHECK(std::equal(request.nonce.begin(), request.nonce.end(), answer.begin() + 24));
      KNIT_FUZZ_CHECK(answer[36] == request.protocol);
    }
    (void)to_string(pcp.result);
    (void)pcp_failure(pcp.result);
  } else {
    count_drop(error, counters);
  }
  PcpAnswer announce;
  const PcpError announce_error = parse_pcp_announce_answer(answer, announce);
  if (announce_error == PcpError::ok) KNIT_FUZZ_CHECK(announce.opcode == portmap::kPcpOpAnnounce);

  const std::uint8_t opcode = natpmp_opcode == 0   ? portmap::kNatPmpOpAddress
                              : natpmp_opcode == 1 ? portmap::kNatPmpOpMapUdp
                                                   : portmap::kNatPmpOpMapTcp;
  NatPmpAnswer natpmp;
  const NatPmpError natpmp_error = check_natpmp_answer(answer, opcode, request.internal_port, natpmp);
  (void)to_string(natpmp_error);
  if (natpmp_error == NatPmpError::ok) {
    KNIT_FUZZ_CHECK(natpmp.opcode == opcode);
    if (opcode != portmap::kNatPmpOpAddress && natpmp.result == NatPmpResult::success)
      KNIT_FUZZ_CHECK(natpmp.internal_port == request.internal_port);
    (void)natpmp_failure(natpmp.result);
  } else {
    count_drop(natpmp_error, counters);
  }

  // Answers of our own making are accepted (the builders and the checker agree).
  NatPmpAnswer built;
  const Bytes own = opcode == portmap::kNatPmpOpAddress
                        ? build_natpmp_address_answer(NatPmpResult::success, 7, request.client)
                        : build_natpmp_map_answer(opcode, NatPmpResult::success, 7,
                                                  request.internal_port, 40000, request.lifetime_s);
  KNIT_FUZZ_CHECK(check_natpmp_answer(own, opcode, request.internal_port, built) == NatPmpError::ok);
  return 0;
}
