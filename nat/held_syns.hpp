// RFC 5382 REQ-4: an unsolicited inbound SYN (no mapping, or one whose filtering refuses the
// sender) is neither forwarded nor answered for 6 s. If an outbound SYN of the same
// connection comes within that time, the two ends are opening simultaneously (hole punching)
// and the held SYN is simply dropped; otherwise the NAT owes the sender an ICMP port
// unreachable. Sans-I/O, "holding" is remembering: the SYN itself was already dropped; the
// engine keeps its quote (IP header + 8 bytes) and hands out the owed errors later.
//
// A fixed-capacity array, scanned linearly (<= a few hundred entries): a SYN flood fills it
// and further SYNs are dropped silently, never growing memory.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "base/bytes.hpp"
#include "base/time.hpp"
#include "nat/wire.hpp"

namespace knit::nat {

struct HeldSynKey {
  std::uint32_t external_address = 0;  // where the SYN was sent (X')
  std::uint32_t remote_address = 0;    // who sent it (Y)
  std::uint16_t external_port = 0;
  std::uint16_t remote_port = 0;
  friend bool operator==(const HeldSynKey&, const HeldSynKey&) = default;
};

// An ICMP port unreachable owed for a SYN whose hold ran out.
struct OwedIcmp {
  HeldSynKey key;
  std::array<std::uint8_t, kIpv4MaxHeader + kIcmpQuotedPayload> quote{};
  std::uint8_t quote_size = 0;
};

class HeldSyns {
 public:
  explicit HeldSyns(std::size_t capacity) : capacity_(capacity) {}

  enum class Hold : std::uint8_t { held, already_held, full };
  Hold hold(Instant until, const HeldSynKey& key, ByteSpan quote);
  // An outbound SYN of this connection: forget the held one. True if one was held.
  bool release(const HeldSynKey& key);
  // Ends the holds due by `now`; if `owe_icmp`, each becomes an owed error. Returns how many.
  std::size_t expire(Instant now, bool owe_icmp);
  std::optional<OwedIcmp> take_owed();

  std::optional<Instant> next_deadline() const {
    if (held_.empty()) return std::nullopt;
    return earliest_;
  }
  std::size_t held() const { return held_.size(); }
  std::size_t owed() const { return owed_.size(); }

 private:
  struct Entry {
    Instant until;
    OwedIcmp icmp;
  };
  std::size_t capacity_;
  std::optional<Instant> earliest_;  // no hold ends before this (may be early after release)
  std::vector<Entry> held_;
  std::vector<OwedIcmp> owed_;
};

}  // namespace knit::nat
