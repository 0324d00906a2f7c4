// NatEngine: a sans-I/O IPv4 connection tracker and NAPT (RFC 4787, 5382, 5508, 7857).
//
// Raw IPv4 packets go in, in buffers the caller owns, and are rewritten in place; the caller
// reads the Verdict and does the sending. Nothing here reads a clock or touches a socket:
// `now` comes with every call and randomness (port choice, hash salts) from the Random&.
//
//            inside                          NatEngine                      outside
//   host X:x ───────► outbound(now, pkt) ── X:x -> X':x' (create/refresh) ──► Y:y
//   host X:x ◄─────── inbound(now, pkt)  ◄─ filter, X':x' -> X:x  ◄────────── Y:y
//                       └─ to an external address: translated twice, Verdict::hairpin
//
// Driving it:
//   Result r = nat.outbound(now, packet, reply);
//   switch (r.verdict) {
//     case Verdict::forward: send(packet.first(r.length)) outside;   break;
//     case Verdict::hairpin: send(packet.first(r.length)) inside;    break;
//     case Verdict::reply:   send(reply.first(r.reply_length)) inside; break;   // ICMP error
//     case Verdict::drop:    break;                                  // r.reason says why
//   }
//   ... sleep until nat.next_deadline(), then nat.expire(now) and drain take_timer_icmp().
//
// Every packet is hostile: anything malformed is counted (Stats::drops) and dropped; the
// table never holds more than Config::max_mappings / max_sessions entries.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/ip.hpp"
#include "base/random.hpp"
#include "base/time.hpp"
#include "nat/config.hpp"
#include "nat/fragment_table.hpp"
#include "nat/held_syns.hpp"
#include "nat/nat_table.hpp"
#include "nat/packet_view.hpp"
#include "nat/tcp_state.hpp"
#include "nat/verdict.hpp"

namespace knit::nat {

enum class ForwardError : std::uint8_t {
  none,
  bad_protocol,  // port forwards are for TCP and UDP
  not_ipv4,
  not_external_address,  // external_address is not in the pool
  bad_port,              // port 0
  port_in_use,           // a mapping or another forward holds that external port
  table_full,
};
const char* to_string(ForwardError error);

struct PortForwardStatus {
  PortForward forward;
  std::uint64_t inbound_packets = 0;
  std::uint64_t outbound_packets = 0;
  std::uint64_t sessions_opened = 0;  // remote endpoints that connected through it
};

// One live session as people and tests see it.
struct SessionInfo {
  Protocol protocol = Protocol::udp;
  Endpoint internal;
  Endpoint external;
  Endpoint remote;  // port 0 for ICMP queries
  TcpState tcp_state = TcpState::none;
  Instant expires{};
  bool port_forward = false;
  bool opened_inbound = false;
};

class NatEngine {
 public:
  // Throws std::invalid_argument when validate(config) fails or a configured port forward
  // cannot be installed: configuration errors belong to startup, not the packet path.
  NatEngine(Config config, Random& rng);

  // A packet from the inside toward the outside: finds or creates the mapping and session,
  // rewrites the source (or hairpins it back inside). `reply` receives an ICMP error when the
  // engine answers instead of forwarding (table full, TTL expired); pass >= kIcmpErrorMaxSize
  // bytes, or an empty span to have such packets dropped silently.
  Result outbound(Instant now, std::span<std::uint8_t> packet, std::span<std::uint8_t> reply = {});
  // A packet from the outside: filtering, then the destination rewritten to the internal
  // endpoint. ICMP errors quoting a translated packet are translated (RFC 5508).
  Result inbound(Instant now, std::span<std::uint8_t> packet, std::span<std::uint8_t> reply = {});

  // Removes timed-out sessions (and mappings left without one) and ends SYN holds. Packets
  // also expire a few entries as they pass, and a lookup never uses an expired session.
  void expire(Instant now);
  // When expire() next has work; may be early, never late. nullopt: nothing pending.
  std::optional<Instant> next_deadline() const;
  // RFC 5382 REQ-4: an ICMP port unreachable owed for an unsolicited SYN whose hold ran out
  // (after expire()). Writes it into `out` toward the SYN's sender; 0 when none is owed.
  std::size_t take_timer_icmp(std::span<std::uint8_t> out);

  ForwardError add_port_forward(const PortForward& forward);
  // Existing connections through it continue until they time out. False if there is none.
  bool remove_port_forward(Protocol protocol, std::uint16_t external_port,
                           std::optional<IpAddress> external_address = std::nullopt);
  std::vector<PortForwardStatus> port_forwards() const;

  Stats stats() const;
  // A table a person can read: one row per session (and idle port forward), with what
  // expires when, relative to `now` (default: the latest instant the engine was given).
  std::string dump() const;
  std::string dump(Instant now) const;
  std::vector<SessionInfo> sessions() const;
  std::optional<SessionInfo> find_session(Protocol protocol, const Endpoint& internal,
                                          const Endpoint& remote) const;

  const Config& config() const { return config_; }
  std::size_t memory_bytes() const { return table_.memory_bytes(); }

 private:
  struct ForwardSlot {
    PortForward forward;
    std::uint32_t mapping = kNoIndex;
    std::uint64_t inbound_packets = 0;
    std::uint64_t outbound_packets = 0;
    std::uint64_t sessions_opened = 0;
    bool live = false;
  };
  using Packet = std::span<std::uint8_t>;

  Result outbound_packet(Instant now, Packet packet, Packet reply);
  Result inbound_packet(Instant now, Packet packet, Packet reply);
  Result outbound_flow(Instant now, Packet packet, PacketView& view, Packet reply,
                       bool to_external);
  Result inbound_flow(Instant now, Packet packet, PacketView& view, std::uint16_t external_index,
                      bool hairpinned);
  Result outbound_icmp_error(Instant now, Packet packet, PacketView& view, bool to_external);
  Result inbound_icmp_error(Instant now, Packet packet, PacketView& view,
                            std::uint16_t external_index);
  Result follow_fragment(Instant now, Packet packet, PacketView& view, Direction direction);
  void remember_fragment(Instant now, const Ipv4Fields& before, const PacketView& after,
                         Direction direction, Verdict verdict);

  // A new outbound session (and its mapping if needed); kNoIndex with `error` set if full.
  std::uint32_t open_outbound(Instant now, const FlowTuple& flow, DropReason& error);
  Result hold_unsolicited_syn(Instant now, Packet packet, const PacketView& view,
                              DropReason otherwise);
  void touch(std::uint32_t session, Instant now, Direction direction, std::uint8_t tcp_flags);
  Duration timeout_of(Protocol protocol, TcpState state) const;
  std::uint32_t live_session(std::uint32_t session, Instant now);
  void count_forward(std::uint32_t session, Direction direction);

  Result answer_with_icmp(Packet packet, const PacketView& view, Packet reply, std::uint8_t type,
                          std::uint8_t code, std::uint32_t source, DropReason reason);
  std::uint32_t inside_icmp_source(std::uint32_t host) const;
  bool inside_source_ok(std::uint32_t source) const;
  void maintain(Instant now);
  void account(Direction direction, const Result& result);
  void install_configured_forwards();

  Config config_;
  NatTable table_;
  HeldSyns held_;
  FragmentTable fragments_;
  std::vector<ForwardSlot> forwards_;
  Stats stats_;
  Instant last_now_{};
};

}  // namespace knit::nat
