// Builds well-formed IPv4 packets (UDP, TCP, ICMP queries and errors, fragments) with correct
// checksums, and verifies every checksum of a packet by full recomputation. For tests,
// benchmarks and lab tools that feed the NAT engine; the engine itself never builds packets
// this way (it rewrites incrementally).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "base/bytes.hpp"
#include "base/ip.hpp"

namespace knit::nat {

struct Ipv4Options {
  std::uint8_t ttl = 64;
  std::uint16_t id = 0;
  bool dont_fragment = false;
  bool more_fragments = false;
  std::uint16_t fragment_offset = 0;  // in 8-byte units
  std::size_t options_bytes = 0;      // IP options (NOPs) to add, rounded up to 4
};

Bytes make_ipv4(const IpAddress& source, const IpAddress& destination, std::uint8_t protocol,
                ByteSpan payload, const Ipv4Options& options = {});
Bytes make_udp(const Endpoint& source, const Endpoint& destination, ByteSpan payload = {},
               const Ipv4Options& options = {});
Bytes make_tcp(const Endpoint& source, const Endpoint& destination, std::uint8_t flags,
               ByteSpan payload = {}, const Ipv4Options& options = {});
// An ICMP query (echo or timestamp, request or reply) with identifier `id`.
Bytes make_icmp_query(const IpAddress& source, const IpAddress& destination, std::uint8_t type,
                      std::uint16_t id, std::uint16_t sequence, ByteSpan payload = {},
                      const Ipv4Options& options = {});
// An ICMP error about `offending`, quoting its first `quote_bytes` bytes (0: its IP header
// plus 8 bytes, the RFC 792 minimum; more lets a test check the quoted transport checksum).
Bytes make_icmp_error(const IpAddress& source, const IpAddress& destination, std::uint8_t type,
                      std::uint8_t code, ByteSpan offending, std::size_t quote_bytes = 0);
// Splits a packet into fragments whose payloads hold at most `payload_per_fragment` bytes
// (rounded down to a multiple of 8), as a router would (RFC 791).
std::vector<Bytes> fragment_packet(ByteSpan packet, std::size_t payload_per_fragment);

// Every checksum of a packet, recomputed from scratch. Quoted transport checksums can only be
// checked when the whole quoted segment is present; otherwise they count as valid.
struct ChecksumReport {
  bool ip = false;
  bool transport = false;
  bool quoted_ip = true;
  bool quoted_transport = true;
  bool all() const { return ip && transport && quoted_ip && quoted_transport; }
};
ChecksumReport verify_checksums(ByteSpan packet);

// Packet fields, for tests that look at what the engine wrote.
struct PacketSummary {
  std::uint8_t protocol = 0;
  Endpoint source;  // ICMP queries: the identifier as the port of the querying side
  Endpoint destination;
  std::uint8_t ttl = 0;
  std::uint8_t tcp_flags = 0;
  std::uint8_t icmp_type = 0;
  std::uint8_t icmp_code = 0;
};
// Reads the outer packet (quoted = false) or the packet quoted in an ICMP error (true).
PacketSummary summarize(ByteSpan packet, bool quoted = false);

}  // namespace knit::nat
