// Address allocation for nodes. IPv4 comes from the mesh prefix (default 100.64.0.0/10, RFC 6598
// shared address space); the network address, the first address (kept for the mesh itself) and
// the broadcast address are never handed out, and neither is 100.100.100.100, the address every
// knitd's resolver answers on (nor, so, its IPv6 counterpart ULA::6464:6464). A node's IPv6 address is the mesh's ULA /48 with
// subnet 0 and the node's IPv4 address as the last 32 bits, so it is unique exactly when the
// IPv4 address is and a person can read one from the other:
//
//   fdXX:XXXX:XXXX : 0000 : 0000:0000 : IPv4 (32 bits)      e.g. fd12:3456:789a::6440:2
//   \__ ULA /48 __/  subnet  \_______ interface id _______/       for 100.64.0.2
//
// Allocation is next-fit from a cursor the store keeps, so an address freed by a removed node is
// not handed to the next joiner at once (peers may still hold it in their maps). The store keeps
// the unused addresses as disjoint ranges keyed by their first address, and answers two ordered
// look-ups on that key (floor: the range starting at or before a; above: the first range
// starting after a), so taking or giving back an address is O(log N) whatever the mesh's size:
//
//   cursor c ──► floor(c) holds c?  take c ──► [first, c-1] and [c+1, last] stay free
//                   └ no: above(c)? take its first   └ no (wrap): above(0)'s first, else full
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "base/ip.hpp"
#include "base/random.hpp"
#include "coordinator/result.hpp"

namespace knit::coordinator {

inline constexpr std::string_view kDefaultIpv4Prefix = "100.64.0.0/10";
// 100.100.100.100: the mesh resolver's address (agent/dns_service.hpp), never a node's.
inline constexpr std::uint32_t kReservedIpv4 = 0x64646464;

// Host-order addresses first..last, all unused.
struct FreeRange {
  std::uint32_t first = 0;
  std::uint32_t last = 0;
  friend bool operator==(const FreeRange&, const FreeRange&) = default;
};

class Ipam {
 public:
  enum class Status { ok, mesh_full };
  // The ordered look-ups on the free ranges (see the header comment); nullopt for none.
  using RangeLookup = std::function<std::optional<FreeRange>(std::uint32_t)>;

  struct Allocation {
    Status status = Status::mesh_full;
    IpAddress ipv4;
    IpAddress ipv6;
    std::uint32_t next_cursor = 0;  // where the next search should start
    FreeRange from;                 // the free range the address came out of
    std::vector<FreeRange> rest;    // what replaces it: 0, 1 or 2 ranges
  };
  // Giving an address back: remove these ranges, add `merged` (the address joined with any
  // free neighbours). already_free: nothing to do.
  struct Release {
    bool already_free = false;
    std::vector<FreeRange> remove;
    FreeRange merged;
  };

  // nullopt when the IPv4 prefix is not IPv4, has host bits set or is longer than /30 (no
  // usable address), or the IPv6 prefix is not a /48 in fc00::/7.
  static std::optional<Ipam> make(const IpPrefix& ipv4_prefix, const IpPrefix& ipv6_prefix);
  // Why make() refused, as a sentence for a person; empty when it would succeed.
  static std::string why_invalid_ipv4(const IpPrefix& prefix);

  // Takes the first free address at or after cursor (a host-order IPv4 address; anything outside
  // the usable range starts at the beginning), wrapping around once: at most four look-ups.
  Allocation allocate(std::uint32_t cursor, const RangeLookup& floor,
                      const RangeLookup& above) const;
  // Gives an address of this mesh back: at most two look-ups.
  Release release(std::uint32_t address, const RangeLookup& floor, const RangeLookup& above) const;
  // The free ranges of the whole usable range when `used` are taken (building the index once).
  std::vector<FreeRange> free_ranges(std::vector<std::uint32_t> used) const;
  IpAddress ipv6_for(const IpAddress& ipv4) const;

  // Usable host-order range [first_host, last_host].
  std::uint32_t first_host() const { return first_; }
  std::uint32_t last_host() const { return last_; }
  std::uint64_t capacity() const { return std::uint64_t{last_} - first_ + 1; }
  bool contains(const IpAddress& ipv4) const;

 private:
  Ipam(std::uint32_t first, std::uint32_t last, const IpPrefix& ipv6_prefix)
      : first_(first), last_(last), ipv6_prefix_(ipv6_prefix) {}

  std::uint32_t first_;
  std::uint32_t last_;
  IpPrefix ipv6_prefix_;
};

// A store's ordered query on its free ranges can fail (a database error); the Ipam's look-ups
// cannot. FallibleRanges adapts one to the other for one allocate() or release(): a failed query
// answers "none" and keeps the first error, which the store returns after the Ipam call.
//
//   FallibleRanges ranges([&](bool floor, std::uint32_t at) { return range_lookup(floor, at); });
//   auto allocation = ipam->allocate(cursor, ranges.floor(), ranges.above());
//   if (ranges.failed()) return *ranges.failed();
class FallibleRanges {
 public:
  using Query = std::function<Result<std::optional<FreeRange>>(bool floor, std::uint32_t at)>;
  explicit FallibleRanges(Query query) : query_(std::move(query)) {}
  FallibleRanges(const FallibleRanges&) = delete;  // the look-ups point at this object
  FallibleRanges& operator=(const FallibleRanges&) = delete;

  Ipam::RangeLookup floor() { return [this](std::uint32_t at) { return lookup(true, at); }; }
  Ipam::RangeLookup above() { return [this](std::uint32_t at) { return lookup(false, at); }; }
  const std::optional<Error>& failed() const { return failed_; }

 private:
  std::optional<FreeRange> lookup(bool floor, std::uint32_t at);

  Query query_;
  std::optional<Error> failed_;
};

// A random ULA /48: fd00::/8 and a 40-bit random global id (RFC 4193 §3.2).
IpPrefix random_ula_prefix(Random& rng);

}  // namespace knit::coordinator
