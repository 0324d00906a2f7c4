// Nat66: a sans-I/O IPv6 source NAPT for one external address, beside the IPv4 NatEngine (which
// is IPv4-only): what a subnet router or exit node does to IPv6 from the mesh so the far side
// needs no route back to the mesh's ULA (agent/router_nat.hpp). No I/O, no clock.
//
//   inside X:x ──► outbound(now, pkt): X:x -> E:e (EIM mapping, e in [port_min, port_max]) ──► Y:y
//   inside X:x ◄── inbound(now, pkt):  E:e -> X:x, only from a Y:y X:x sent to (APDF)    ◄── Y:y
//
//   IPv6 (RFC 8200 §3)  [ver|tc|flow label][payload length|next header|hop limit][src 16][dst 16]
//   then TCP (6), UDP (17) or ICMPv6 (58, RFC 4443). Echo request 128 / reply 129 carry their
//   identifier at bytes 4-5, translated like a port (the querying side's). Errors 1-4 quote
//   the offending packet from byte 8. Inbound (from the far side, about a translated flow):
//   the outer destination and the quoted source (address and port or identifier) go back to
//   the inside host's. Outbound (an inside host's error about a packet that came in
//   translated, e.g. port unreachable, packet too big): the outer source and the quoted
//   destination become the external address and port, only for a live session with the quoted
//   source. Either way the ICMPv6 checksum and the quoted transport checksum are kept right.
//
// Every checksum that covers a rewritten word (the TCP, UDP and ICMPv6 checksums cover the
// addresses through their pseudo-header, RFC 8200 §8.1) is updated incrementally (RFC 1624,
// nat/checksum.hpp); a packet arriving with a bad checksum leaves with a bad one. Packets with
// extension headers or fragments are not translated (dropped and counted as unsupported): the
// mesh's hosts do not send them for ordinary flows, and a NAT that passed them untranslated
// would leak the inside address. Timers are RFC 4787/5382/5508's (as the NatEngine's defaults).
// The table is bounded (max_sessions); a mapping lives while it has a session.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "base/bytes.hpp"
#include "base/ip.hpp"
#include "base/random.hpp"
#include "base/time.hpp"
#include "nat/packet_view.hpp"
#include "nat/tcp_state.hpp"

namespace knit::nat {

class Nat66 {
 public:
  struct Config {
    IpAddress external;  // IPv6
    std::uint16_t port_min = 61000;
    std::uint16_t port_max = 61999;
    std::size_t max_sessions = 65536;
    Duration udp_timeout = std::chrono::minutes(5);                 // RFC 4787 REQ-5
    Duration tcp_established_timeout = std::chrono::minutes(124);  // RFC 5382 REQ-5
    Duration tcp_transitory_timeout = std::chrono::minutes(4);
    Duration icmp_timeout = std::chrono::seconds(60);              // RFC 5508 REQ-1
  };

  enum class Outcome : std::uint8_t {
    translated,  // rewritten in place, same length
    dropped,     // counted in stats().drops
  };
  enum class Drop : std::uint8_t {
    malformed,        // not a well-formed IPv6 packet of the kind it claims
    unsupported,      // extension headers, fragments, other protocols or ICMPv6 types
    not_external,     // inbound but not addressed to the external address
    no_session,       // inbound from an endpoint no inside host talked to (filtered)
    ports_exhausted,  // no free external port in the range
    table_full,       // max_sessions reached
  };
  static constexpr std::size_t kDropCount = 6;

  struct Stats {
    std::uint64_t translated_outbound = 0;
    std::uint64_t translated_inbound = 0;
    std::uint64_t icmp_errors_translated = 0;
    std::uint64_t mappings_created = 0;
    std::uint64_t sessions_created = 0;
    std::size_t mappings_live = 0;
    std::size_t sessions_live = 0;
    std::array<std::uint64_t, kDropCount> drops{};
    std::uint64_t drops_of(Drop d) const { return drops[static_cast<std::size_t>(d)]; }
  };

  struct Session {
    Protocol protocol = Protocol::udp;  // icmp: ICMPv6 echo
    Endpoint internal;
    Endpoint external;
    Endpoint remote;  // port 0 for echo
    TcpState tcp_state = TcpState::none;
    Instant expires{};
  };

  // Throws std::invalid_argument for a non-IPv6 external address or an empty port range.
  Nat66(Config config, Random& rng);

  Outcome outbound(Instant now, MutableByteSpan packet);
  Outcome inbound(Instant now, MutableByteSpan packet);
  // Removes timed-out sessions and the mappings left without one.
  void expire(Instant now);

  Stats stats() const;
  std::vector<Session> sessions() const;
  const Config& config() const { return config_; }

 private:
  using Address = std::array<std::uint8_t, 16>;
  struct MappingKey {
    std::uint8_t protocol = 0;
    Address internal{};
    std::uint16_t port = 0;
    friend auto operator<=>(const MappingKey&, const MappingKey&) = default;
  };
  struct SessionKey {
    std::uint8_t protocol = 0;
    std::uint16_t external_port = 0;
    Address remote{};
    std::uint16_t remote_port = 0;
    friend auto operator<=>(const SessionKey&, const SessionKey&) = default;
  };
  struct Mapping {
    MappingKey key;
    std::size_t sessions = 0;
  };
  struct SessionState {
    TcpState tcp = TcpState::none;
    Instant expires{};
  };

  Outcome drop(Drop reason);
  Duration timeout_of(std::uint8_t protocol, TcpState state) const;
  std::optional<std::uint16_t> allocate_port(std::uint8_t protocol);
  Outcome inbound_error(Instant now, MutableByteSpan packet, std::size_t icmp_offset);
  Outcome outbound_error(Instant now, MutableByteSpan packet, std::size_t icmp_offset);

  Config config_;
  Random& rng_;
  Address external_{};
  std::map<MappingKey, std::uint16_t> by_internal_;                       // -> external port
  std::map<std::pair<std::uint8_t, std::uint16_t>, Mapping> by_external_;  // (protocol, port)
  std::map<SessionKey, SessionState> sessions_;
  Stats stats_;
};

const char* to_string(Nat66::Drop drop);

}  // namespace knit::nat
