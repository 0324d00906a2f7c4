// Non-first IPv4 fragments carry no ports, so they cannot be looked up like packets. A NAT
// that translated a datagram's first fragment remembers how (keyed by the fields every
// fragment shares: direction, protocol, source, destination, IP identification) and rewrites
// the later fragments' addresses the same way for kFragmentTimeout.
//
// Limits (RFC 4787 REQ-14 asks for out-of-order support too): a non-first fragment that
// arrives before its first fragment is dropped (DropReason::fragment), the engine does not
// buffer. The table is bounded; when full, the stalest entry gives way.
#pragma once

#include <cstddef>
#include <cstdint>
#include <unordered_map>

#include "base/time.hpp"
#include "nat/tcp_state.hpp"
#include "nat/verdict.hpp"

namespace knit::nat {

struct FragmentKey {
  std::uint32_t source = 0;
  std::uint32_t destination = 0;
  std::uint16_t id = 0;
  std::uint8_t protocol = 0;
  Direction direction = Direction::outbound;
  friend bool operator==(const FragmentKey&, const FragmentKey&) = default;
};

struct FragmentTranslation {
  std::uint32_t source = 0;  // the addresses the first fragment left with
  std::uint32_t destination = 0;
  Verdict verdict = Verdict::forward;
  Instant expires{};
};

class FragmentTable {
 public:
  explicit FragmentTable(std::size_t capacity) : capacity_(capacity) {}

  void remember(Instant now, const FragmentKey& key, std::uint32_t source,
                std::uint32_t destination, Verdict verdict);
  const FragmentTranslation* find(Instant now, const FragmentKey& key) const;
  void expire(Instant now);
  std::size_t size() const { return flows_.size(); }

 private:
  struct KeyHash {
    std::size_t operator()(const FragmentKey& k) const;
  };
  std::size_t capacity_;
  std::unordered_map<FragmentKey, FragmentTranslation, KeyHash> flows_;
};

}  // namespace knit::nat
