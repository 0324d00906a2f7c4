#include "punch/portmap/natpmp.hpp"

namespace knit::punch {

using namespace portmap;

std::string_view to_string(NatPmpResult result) {
  switch (result) {
    case NatPmpResult::success: return "success";
    case NatPmpResult::unsupported_version: return "unsupported version";
    case NatPmpResult::not_authorized: return "not authorized/refused";
    case NatPmpResult::network_failure: return "network failure";
    case NatPmpResult::out_of_resources: return "out of resources";
    case NatPmpResult::unsupported_opcode: return "unsupported opcode";
  }
  return "unknown result code";
}

std::string_view to_string(NatPmpError error) {
  switch (error) {
    case NatPmpError::ok: return "ok";
    case NatPmpError::bad_size: return "bad size";
    case NatPmpError::bad_version: return "bad version";
    case NatPmpError::not_response: return "not a response";
    case NatPmpError::wrong_opcode: return "wrong opcode";
    case NatPmpError::wrong_port: return "wrong internal port";
  }
  return "unknown";
}

NatPmpError check_natpmp_answer(ByteSpan b, std::uint8_t request_opcode,
                                std::uint16_t internal_port, NatPmpAnswer& out) {
  if (b.size() < kNatPmpErrorResponseSize || b.size() > kMaxMessage) return NatPmpError::bad_size;
  if (b[0] != kNatPmpVersion) return NatPmpError::bad_version;
  if ((b[1] & kNatPmpResponseBit) == 0) return NatPmpError::not_response;
  NatPmpAnswer a;
  a.opcode = static_cast<std::uint8_t>(b[1] & ~kNatPmpResponseBit);
  if (a.opcode != request_opcode) return NatPmpError::wrong_opcode;
  a.result = static_cast<NatPmpResult>(load_be16(b.data() + 2));
  a.epoch_s = load_be32(b.data() + 4);
  const std::size_t full =
      a.opcode == kNatPmpOpAddress ? kNatPmpAddressResponseSize : kNatPmpMapResponseSize;
  if (a.result != NatPmpResult::success) {
    // §3.5: an error answer may stop after the epoch; it is never longer than a full answer.
    if (b.size() > full) return NatPmpError::bad_size;
    out = a;
    return NatPmpError::ok;
  }
  // A success answer has exactly its opcode's size: libnatpmp reads only 16 bytes, and a
  // longer or shorter datagram is not what a conforming gateway sends.
  if (b.size() != full) return NatPmpError::bad_size;
  if (a.opcode == kNatPmpOpAddress) {
    a.external_address = IpAddress::v4(b.data() + 8);
  } else {
    a.internal_port = load_be16(b.data() + 8);
    a.external_port = load_be16(b.data() + 10);
    a.lifetime_s = load_be32(b.data() + 12);
    if (a.internal_port != internal_port) return NatPmpError::wrong_port;
  }
  out = a;
  return NatPmpError::ok;
}

void count_drop(NatPmpError error, PortMapCounters& counters) {
  switch (error) {
    case NatPmpError::ok: return;
    case NatPmpError::bad_size: ++counters.dropped_size; return;
    case NatPmpError::bad_version: ++counters.dropped_version; return;
    case NatPmpError::not_response:
    case NatPmpError::wrong_opcode:
      ++counters.dropped_opcode;
      return;
    case NatPmpError::wrong_port: ++counters.dropped_mismatch; return;
  }
}

PortMapFailure natpmp_failure(NatPmpResult result) {
  PortMapFailure f{PortMapProtocol::natpmp, PortMapErrc::server_error,
                   "result " + std::string(to_string(result))};
  switch (result) {
    case NatPmpResult::unsupported_version:
    case NatPmpResult::unsupported_opcode:
      f.error = PortMapErrc::unsupported;
      break;
    case NatPmpResult::not_authorized: f.error = PortMapErrc::not_authorized; break;
    default: break;
  }
  return f;
}

Bytes build_natpmp_address_request() { return Bytes{kNatPmpVersion, kNatPmpOpAddress}; }

Bytes build_natpmp_map_request(std::uint8_t opcode, std::uint16_t internal_port,
                               std::uint16_t suggested_port, std::uint32_t lifetime_s) {
  Bytes b(kNatPmpMapRequestSize, 0);
  b[0] = kNatPmpVersion;
  b[1] = opcode;
  store_be16(b.data() + 4, internal_port);
  store_be16(b.data() + 6, suggested_port);
  store_be32(b.data() + 8, lifetime_s);
  return b;
}

Bytes build_natpmp_address_answer(NatPmpResult result, std::uint32_t epoch_s,
                                  const IpAddress& external) {
  Bytes b(kNatPmpAddressResponseSize, 0);
  b[1] = kNatPmpResponseBit | kNatPmpOpAddress;
  store_be16(b.data() + 2, static_cast<std::uint16_t>(result));
  store_be32(b.data() + 4, epoch_s);
  if (external.is_v4()) store_be32(b.data() + 8, external.v4_host_order());
  return b;
}

Bytes build_natpmp_map_answer(std::uint8_t opcode, NatPmpResult result, std::uint32_t epoch_s,
                              std::uint16_t internal_port, std::uint16_t external_port,
                              std::uint32_t lifetime_s) {
  Bytes b(kNatPmpMapResponseSize, 0);
  b[1] = static_cast<std::uint8_t>(kNatPmpResponseBit | opcode);
  store_be16(b.data() + 2, static_cast<std::uint16_t>(result));
  store_be32(b.data() + 4, epoch_s);
  store_be16(b.data() + 8, internal_port);
  store_be16(b.data() + 10, external_port);
  store_be32(b.data() + 12, lifetime_s);
  return b;
}

}  // namespace knit::punch
