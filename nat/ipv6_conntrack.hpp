// Ipv6Conntrack: a small stateful filter for the mesh's IPv6 traffic, beside the IPv4 NatEngine
// (which is IPv4-only). It never rewrites a packet: it remembers the flows this host opens
// (outbound packets) and says whether an inbound packet belongs to one. No I/O, no clock.
//
//   IPv6 (RFC 8200 §3)   [ver|tc|flow label][payload length|next header|hop limit][src 16][dst 16]
//   extension headers    hop-by-hop (0), routing (43), destination options (60): (len+1)*8 bytes;
//                        fragment (44): 8 bytes, offset in the top 13 bits of bytes 2-3;
//                        AH (51): (len+2)*4 bytes. At most kMaxExtensionHeaders are walked.
//   then TCP (6), UDP (17) or ICMPv6 (58, RFC 4443): echo request 128 / reply 129 carry an
//   identifier at bytes 4-5; errors 1-4 quote the offending packet from byte 8 on.
//
// A flow is (protocol, local address, local port, remote address, remote port); an ICMPv6 echo
// uses its identifier as the local port and 0 as the remote one, so a reply looks up like any
// other reply. Inbound ICMPv6 errors pass when the packet they quote belongs to a tracked flow
// (Packet Too Big must reach the host for path MTU discovery, RFC 8201).
//
// Non-first fragments carry no transport header and are passed (Outcome::fragment): a host
// cannot use one without the first fragment, and that one is filtered like any packet.
// Checksums are left to the receiving kernel: nothing here is rewritten, so a bad checksum
// only means the host drops the packet itself.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <unordered_map>

#include "base/bytes.hpp"
#include "base/time.hpp"

namespace knit::nat {

class Ipv6Conntrack {
 public:
  struct Limits {
    std::size_t max_flows = 65536;
    Duration udp_timeout = std::chrono::minutes(5);                 // as the NAT engine's
    Duration tcp_established_timeout = std::chrono::minutes(124);  // RFC 5382 REQ-5
    Duration tcp_transitory_timeout = std::chrono::minutes(4);
    Duration icmp_timeout = std::chrono::seconds(60);
  };

  enum class Outcome : std::uint8_t {
    tracked,    // belongs to a flow this host opened (outbound: opened or refreshed it)
    untracked,  // outbound but not a flow to remember (an echo reply, an ICMPv6 error, a RST)
    unsolicited,  // inbound, and no tracked flow of this host: refused while shields are up
    fragment,     // a non-first fragment: no ports to look at
    malformed,    // not a well-formed IPv6 packet: always dropped
    table_full,   // outbound: the flow could not be remembered (its replies will be refused)
  };

  explicit Ipv6Conntrack(std::uint64_t hash_salt, Limits limits);
  Ipv6Conntrack(std::uint64_t hash_salt) : Ipv6Conntrack(hash_salt, Limits{}) {}

  Outcome outbound(Instant now, ByteSpan packet);
  Outcome inbound(Instant now, ByteSpan packet);
  // Forgets flows whose timer ran out. Lookups never use an expired flow either way.
  void expire(Instant now);
  std::size_t size() const { return flows_.size(); }

  static constexpr std::size_t kMaxExtensionHeaders = 8;

 private:
  enum class TcpPhase : std::uint8_t { opening, established, closing };
  struct Key {
    std::array<std::uint8_t, 16> local{};
    std::array<std::uint8_t, 16> remote{};
    std::uint16_t local_port = 0;
    std::uint16_t remote_port = 0;
    std::uint8_t protocol = 0;
    friend bool operator==(const Key&, const Key&) = default;
  };
  struct KeyHash {
    std::uint64_t salt = 0;
    std::size_t operator()(const Key& key) const;
  };
  struct Flow {
    Instant expires{};
    TcpPhase phase = TcpPhase::opening;
  };

  Duration timeout_of(std::uint8_t protocol, TcpPhase phase) const;
  Flow* live(const Key& key, Instant now);

  Limits limits_;
  std::unordered_map<Key, Flow, KeyHash> flows_;
};

const char* to_string(Ipv6Conntrack::Outcome outcome);

}  // namespace knit::nat
