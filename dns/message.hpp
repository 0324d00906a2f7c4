// DNS messages (RFC 1035 §4) for the mesh resolver, through ldns: ldns parses and writes the
// wire format, this file turns it into the few values the resolver core needs and back.
//
//   header  | ID (16) | QR OPCODE(4) AA TC RD | RA Z AD CD RCODE(4) | QD | AN | NS | AR |
//   question  QNAME (labels, maybe compressed) QTYPE QCLASS
//   answer / authority / additional: NAME TYPE CLASS TTL RDLENGTH RDATA
//
// Queries are hostile input: anything that is not one plain question (QR clear, OPCODE QUERY,
// QDCOUNT 1, no answers or authority, at most an OPT record) is refused with a QueryError and
// the caller counts and drops it. Nothing here throws on input, and no input allocates more
// than kMaxQuerySize / kMaxResponseSize bounds.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/bytes.hpp"
#include "base/ip.hpp"

namespace knit::dns {

namespace type {
inline constexpr std::uint16_t A = 1;
inline constexpr std::uint16_t NS = 2;
inline constexpr std::uint16_t SOA = 6;
inline constexpr std::uint16_t PTR = 12;
inline constexpr std::uint16_t MX = 15;
inline constexpr std::uint16_t TXT = 16;
inline constexpr std::uint16_t AAAA = 28;
inline constexpr std::uint16_t ANY = 255;
}  // namespace type
inline constexpr std::uint16_t kClassIn = 1;

enum class Rcode : std::uint8_t { noerror = 0, formerr = 1, servfail = 2, nxdomain = 3, notimp = 4, refused = 5 };

enum class QueryError {
  too_short,   // under the 12-byte header
  too_large,   // over kMaxQuerySize
  malformed,   // ldns could not parse it (truncated, bad pointer, compression loop, ...)
  not_query,   // QR set: a response sent to the resolver
  bad_opcode,  // not OPCODE QUERY
  bad_counts,  // not exactly one question, or answers/authority present
};
std::string_view to_string(QueryError error);

struct Query {
  std::uint16_t id = 0;
  bool recursion_desired = false;
  // The question name, lowercase, dotted, without the trailing dot ("" for the root). Bytes
  // that are not plain name characters appear escaped (\DDD, \.) as ldns prints them, so such
  // a name never equals a mesh name.
  std::string name;
  std::uint16_t qtype = 0;
  std::uint16_t qclass = 0;
  bool edns = false;
  std::uint16_t udp_size = 512;  // the largest UDP response the client takes (EDNS or 512)
  // Not from the wire: the client asked over TCP (tcp_server.hpp), so its answer is never
  // truncated and goes back on its connection. Set by the resolver.
  bool over_tcp = false;
};

std::variant<Query, QueryError> parse_query(ByteSpan wire);

// One answer record for a mesh name: an address (A or AAAA by family) or a PTR target.
struct Record {
  std::string name;  // owner, dotted, no trailing dot
  std::uint32_t ttl = 0;
  std::variant<IpAddress, std::string> data;  // string: a PTR target, dotted, no trailing dot
};

// A response to `query`: its question echoed, RD copied, RA set, `answers`, and for an empty
// answer (NXDOMAIN or NODATA) the SOA of `zone` in the authority section (RFC 2308 §3) when
// zone is not empty. Empty on an ldns failure (out of memory).
Bytes build_response(const Query& query, Rcode rcode, std::span<const Record> answers,
                     std::string_view zone, bool authoritative);
// A bare error answer (SERVFAIL, REFUSED, ...) with the question echoed.
Bytes build_error(const Query& query, Rcode rcode);

// What the forwarder needs of an upstream response.
struct ResponseInfo {
  std::uint16_t id = 0;
  bool truncated = false;
  Rcode rcode = Rcode::noerror;
  std::string name;  // as Query::name
  std::uint16_t qtype = 0;
  std::uint16_t qclass = 0;
  std::uint32_t min_ttl = 0;  // the smallest TTL of its records (SOA minimum for negatives)
  bool has_records = false;
};
// nullopt: not a response, not one question, or unparseable.
std::optional<ResponseInfo> parse_response(ByteSpan wire);

// A copy of a response with every TTL lowered by `elapsed` seconds (a cached answer); nullopt
// when it does not parse.
std::optional<Bytes> age_response(ByteSpan wire, std::uint32_t elapsed);

// The response cut to its header and question with TC set (RFC 1035 §4.2.1), for a client
// whose UDP size it exceeds.
std::optional<Bytes> truncate_response(ByteSpan wire);

inline std::uint16_t message_id(ByteSpan wire) { return wire.size() >= 2 ? load_be16(wire.data()) : 0; }
inline void set_message_id(MutableByteSpan wire, std::uint16_t id) {
  if (wire.size() >= 2) store_be16(wire.data(), id);
}

}  // namespace knit::dns
