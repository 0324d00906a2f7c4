#include "punch/portmap/pcp.hpp"

#include <algorithm>
#include <cstring>

namespace knit::punch {

using namespace portmap;

namespace {

// RFC 6887 §5: an IPv4 address travels as the IPv4-mapped IPv6 address ::ffff:a.b.c.d.
void write_address(std::uint8_t* p, const IpAddress& address) {
  if (address.is_v4()) {
    std::memset(p, 0, 10);
    p[10] = 0xff;
    p[11] = 0xff;
    std::memcpy(p + 12, address.bytes(), 4);
  } else {
    std::memcpy(p, address.bytes(), 16);
  }
}

IpAddress read_address(const std::uint8_t* p) {
  static constexpr std::uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(p, kMappedPrefix, sizeof kMappedPrefix) == 0) return IpAddress::v4(p + 12);
  return IpAddress::v6(p);
}

void write_header(std::uint8_t* p, std::uint8_t opcode, std::uint32_t lifetime_s,
                  const IpAddress& client) {
  p[0] = kPcpVersion;
  p[1] = opcode;  // R bit clear: a request
  p[2] = 0;
  p[3] = 0;
  store_be32(p + 4, lifetime_s);
  write_address(p + 8, client);
}

// The checks every answer passes, whatever its opcode (§8.3).
PcpError check_header(ByteSpan b, std::uint8_t opcode, PcpAnswer& out) {
  // A NAT-PMP gateway's "unsupported version" answer (RFC 6886 §3.5: version 0, a response
  // opcode, result 1, at least the 8 bytes up to the epoch) steps us down; other version-0
  // bytes are dropped like any stranger's.
  if (b.size() >= kNatPmpErrorResponseSize && b.size() <= kMaxMessage && b[0] == kNatPmpVersion &&
      (b[1] & kNatPmpResponseBit) != 0 &&
      load_be16(b.data() + 2) == static_cast<std::uint16_t>(NatPmpResult::unsupported_version))
    return PcpError::natpmp_only;
  if (b.size() < kPcpHeaderSize || b.size() > kMaxMessage || b.size() % 4 != 0)
    return PcpError::bad_size;
  if (b[0] != kPcpVersion) return PcpError::bad_version;
  if ((b[1] & kPcpResponseBit) == 0) return PcpError::not_response;
  out.opcode = static_cast<std::uint8_t>(b[1] & ~kPcpResponseBit);
  if (out.opcode != opcode) return PcpError::wrong_opcode;
  out.result = static_cast<PcpResult>(b[3]);
  out.lifetime_s = load_be32(b.data() + 4);
  out.epoch_s = load_be32(b.data() + 8);
  return PcpError::ok;
}

// Options are skipped (Knit sends none, so none are expected back), but they must fit (§7.3).
PcpError check_options(ByteSpan options) {
  std::size_t at = 0;
  while (at < options.size()) {
    if (options.size() - at < kPcpOptionHeaderSize) return PcpError::bad_option;
    const std::size_t length = load_be16(options.data() + at + 2);
    const std::size_t padded = (length + 3) & ~std::size_t{3};
    if (options.size() - at - kPcpOptionHeaderSize < padded) return PcpError::bad_option;
    at += kPcpOptionHeaderSize + padded;
  }
  return PcpError::ok;
}

// Results after which the server may not have read our opcode data (§7.2: it copies what it
// could parse), so a header-only answer is acceptable.
bool header_only_allowed(PcpResult result) {
  return result == PcpResult::unsupp_version || result == PcpResult::unsupp_opcode ||
         result == PcpResult::malformed_request;
}

}  // namespace

std::string_view to_string(PcpResult result) {
  switch (result) {
    case PcpResult::success: return "SUCCESS";
    case PcpResult::unsupp_version: return "UNSUPP_VERSION";
    case PcpResult::not_authorized: return "NOT_AUTHORIZED";
    case PcpResult::malformed_request: return "MALFORMED_REQUEST";
    case PcpResult::unsupp_opcode: return "UNSUPP_OPCODE";
    case PcpResult::unsupp_option: return "UNSUPP_OPTION";
    case PcpResult::malformed_option: return "MALFORMED_OPTION";
    case PcpResult::network_failure: return "NETWORK_FAILURE";
    case PcpResult::no_resources: return "NO_RESOURCES";
    case PcpResult::unsupp_protocol: return "UNSUPP_PROTOCOL";
    case PcpResult::user_ex_quota: return "USER_EX_QUOTA";
    case PcpResult::cannot_provide_external: return "CANNOT_PROVIDE_EXTERNAL";
    case PcpResult::address_mismatch: return "ADDRESS_MISMATCH";
    case PcpResult::excessive_remote_peers: return "EXCESSIVE_REMOTE_PEERS";
  }
  return "unknown result code";
}

std::string_view to_string(PcpError error) {
  switch (error) {
    case PcpError::ok: return "ok";
    case PcpError::bad_size: return "bad size";
    case PcpError::natpmp_only: return "NAT-PMP-only server";
    case PcpError::bad_version: return "bad version";
    case PcpError::not_response: return "not a response";
    case PcpError::wrong_opcode: return "wrong opcode";
    case PcpError::truncated_map: return "truncated MAP data";
    case PcpError::nonce_mismatch: return "nonce mismatch";
    case PcpError::wrong_protocol: return "wrong protocol";
    case PcpError::wrong_port: return "wrong internal port";
    case PcpError::bad_option: return "bad option";
  }
  return "unknown";
}

Bytes build_pcp_map_request(const PcpMapRequest& request) {
  Bytes b(kPcpHeaderSize + kPcpMapDataSize, 0);
  write_header(b.data(), kPcpOpMap, request.lifetime_s, request.client);
  std::uint8_t* m = b.data() + kPcpHeaderSize;
  std::memcpy(m, request.nonce.data(), kPcpNonceSize);
  m[12] = request.protocol;
  store_be16(m + 16, request.internal_port);
  store_be16(m + 18, request.suggested_port);
  write_address(m + 20, request.suggested_address);
  return b;
}

Bytes build_pcp_announce_request(const PcpAnnounceRequest& request) {
  Bytes b(kPcpHeaderSize, 0);
  write_header(b.data(), kPcpOpAnnounce, 0, request.client);
  return b;
}

PcpError parse_pcp_answer(ByteSpan datagram, const PcpMapRequest& request, PcpAnswer& out) {
  PcpAnswer a;
  if (PcpError e = check_header(datagram, kPcpOpMap, a); e != PcpError::ok) return e;
  if (datagram.size() < kPcpHeaderSize + kPcpMapDataSize) {
    if (datagram.size() == kPcpHeaderSize && header_only_allowed(a.result)) {
      out = a;
      return PcpError::ok;
    }
    return PcpError::truncated_map;
  }
  const std::uint8_t* m = datagram.data() + kPcpHeaderSize;
  if (std::memcmp(m, request.nonce.data(), kPcpNonceSize) != 0) return PcpError::nonce_mismatch;
  if (m[12] != request.protocol) return PcpError::wrong_protocol;
  if (load_be16(m + 16) != request.internal_port) return PcpError::wrong_port;
  if (PcpError e = check_options(datagram.subspan(kPcpHeaderSize + kPcpMapDataSize));
      e != PcpError::ok)
    return e;
  a.external = Endpoint(read_address(m + 20), load_be16(m + 18));
  a.has_map_data = true;
  out = a;
  return PcpError::ok;
}

PcpError parse_pcp_announce_answer(ByteSpan datagram, PcpAnswer& out) {
  PcpAnswer a;
  if (PcpError e = check_header(datagram, kPcpOpAnnounce, a); e != PcpError::ok) return e;
  if (PcpError e = check_options(datagram.subspan(kPcpHeaderSize)); e != PcpError::ok) return e;
  out = a;
  return PcpError::ok;
}

void count_drop(PcpError error, PortMapCounters& counters) {
  switch (error) {
    case PcpError::ok:
    case PcpError::natpmp_only:
      return;
    case PcpError::bad_size:
    case PcpError::truncated_map:
    case PcpError::bad_option:
      ++counters.dropped_size;
      return;
    case PcpError::bad_version: ++counters.dropped_version; return;
    case PcpError::not_response:
    case PcpError::wrong_opcode:
      ++counters.dropped_opcode;
      return;
    case PcpError::nonce_mismatch: ++counters.dropped_nonce; return;
    case PcpError::wrong_protocol:
    case PcpError::wrong_port:
      ++counters.dropped_mismatch;
      return;
  }
}

PortMapFailure pcp_failure(PcpResult result) {
  PortMapFailure f{PortMapProtocol::pcp, PortMapErrc::server_error,
                   "result " + std::string(to_string(result))};
  switch (result) {
    case PcpResult::unsupp_version:
    case PcpResult::unsupp_opcode:
      f.error = PortMapErrc::unsupported;
      break;
    case PcpResult::not_authorized: f.error = PortMapErrc::not_authorized; break;
    default: break;
  }
  return f;
}

}  // namespace knit::punch
