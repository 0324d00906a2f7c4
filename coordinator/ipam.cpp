#include "coordinator/ipam.hpp"

#include <algorithm>
#include <array>

namespace knit::coordinator {

namespace {

std::uint32_t prefix_mask(unsigned length) {
  return length == 0 ? 0 : ~std::uint32_t{0} << (32 - length);
}

}  // namespace

std::string Ipam::why_invalid_ipv4(const IpPrefix& prefix) {
  if (!prefix.address.is_v4()) return "the mesh prefix must be IPv4 (e.g. 100.64.0.0/10)";
  if (prefix.length > 30)
    return "the mesh prefix " + prefix.to_string() + " has no room for nodes: use /30 or shorter";
  if ((prefix.address.v4_host_order() & ~prefix_mask(prefix.length)) != 0) {
    IpPrefix network{IpAddress::v4(prefix.address.v4_host_order() & prefix_mask(prefix.length)),
                     prefix.length};
    return "the mesh prefix " + prefix.to_string() + " has host bits set: did you mean " +
           network.to_string() + "?";
  }
  return {};
}

std::optional<Ipam> Ipam::make(const IpPrefix& ipv4_prefix, const IpPrefix& ipv6_prefix) {
  if (!why_invalid_ipv4(ipv4_prefix).empty()) return std::nullopt;
  if (!ipv6_prefix.address.is_v6() || ipv6_prefix.length != 48 ||
      (ipv6_prefix.address.bytes()[0] & 0xfe) != 0xfc)
    return std::nullopt;
  std::uint32_t network = ipv4_prefix.address.v4_host_order();
  std::uint32_t broadcast = network | ~prefix_mask(ipv4_prefix.length);
  // network + 1 is the mesh's own address; broadcast is never a host.
  return Ipam(network + 2, broadcast - 1, ipv6_prefix);
}

bool Ipam::contains(const IpAddress& ipv4) const {
  if (!ipv4.is_v4()) return false;
  std::uint32_t v = ipv4.v4_host_order();
  return v >= first_ && v <= last_;
}

Ipam::Allocation Ipam::allocate(std::uint32_t cursor, const RangeLookup& floor,
                                const RangeLookup& above) const {
  Allocation out;
  if (cursor < first_ || cursor > last_) cursor = first_;
  std::optional<FreeRange> range = floor(cursor);
  std::uint32_t address = cursor;
  if (!range || range->last < cursor) {
    range = above(cursor);
    if (!range && cursor > first_) range = floor(first_);  // wrap: a range starting at first_
    if (!range && cursor > first_) range = above(first_);
    if (!range) return out;  // mesh_full
    address = range->first;
  }
  if (address == kReservedIpv4) {
    // The resolver address (free ranges built before it was reserved may hold it): take its
    // neighbour in the range, or the next range.
    if (address < range->last) {
      ++address;
    } else if (address > range->first) {
      address = range->first;
    } else {
      range = above(address);
      if (!range) {  // wrap
        range = floor(first_);
        if (range && range->last < first_) range.reset();
        if (!range) range = above(first_);
      }
      if (!range || range->first == kReservedIpv4) return out;
      address = std::max(range->first, first_);
    }
  }
  if (address < first_ || address > last_ || address < range->first || address > range->last)
    return out;  // a range outside the mesh: treat as full rather than hand out a bad address
  out.status = Status::ok;
  out.ipv4 = IpAddress::v4(address);
  out.ipv6 = ipv6_for(out.ipv4);
  out.next_cursor = address == last_ ? first_ : address + 1;
  out.from = *range;
  if (range->first < address) out.rest.push_back(FreeRange{range->first, address - 1});
  if (address < range->last) out.rest.push_back(FreeRange{address + 1, range->last});
  return out;
}

Ipam::Release Ipam::release(std::uint32_t address, const RangeLookup& floor,
                            const RangeLookup& above) const {
  Release out;
  out.merged = FreeRange{address, address};
  if (address < first_ || address > last_ || address == kReservedIpv4) {
    out.already_free = true;  // not ours to track
    return out;
  }
  if (auto before = floor(address)) {
    if (before->last >= address) {
      out.already_free = true;
      return out;
    }
    if (before->last + 1 == address) {
      out.remove.push_back(*before);
      out.merged.first = before->first;
    }
  }
  if (auto after = above(address); after && after->first == address + 1) {
    out.remove.push_back(*after);
    out.merged.last = after->last;
  }
  return out;
}

std::vector<FreeRange> Ipam::free_ranges(std::vector<std::uint32_t> used) const {
  used.push_back(kReservedIpv4);  // never free (ipam.hpp)
  std::sort(used.begin(), used.end());
  std::vector<FreeRange> out;
  std::uint64_t next = first_;  // the first address not yet accounted for
  for (std::uint32_t a : used) {
    if (a < first_ || a > last_ || a < next) continue;
    if (a > next) out.push_back(FreeRange{static_cast<std::uint32_t>(next), a - 1});
    next = std::uint64_t{a} + 1;
  }
  if (next <= last_) out.push_back(FreeRange{static_cast<std::uint32_t>(next), last_});
  return out;
}

IpAddress Ipam::ipv6_for(const IpAddress& ipv4) const {
  std::array<std::uint8_t, 16> bytes{};
  for (int i = 0; i < 6; ++i) bytes[i] = ipv6_prefix_.address.bytes()[i];
  for (int i = 0; i < 4; ++i) bytes[12 + i] = ipv4.bytes()[i];
  return IpAddress::v6(bytes.data());
}

IpPrefix random_ula_prefix(Random& rng) {
  std::array<std::uint8_t, 16> bytes{};
  bytes[0] = 0xfd;
  rng.fill(std::span<std::uint8_t>(bytes.data() + 1, 5));
  return IpPrefix{IpAddress::v6(bytes.data()), 48};
}

std::optional<FreeRange> FallibleRanges::lookup(bool floor, std::uint32_t at) {
  auto range = query_(floor, at);
  if (!range) {
    if (!failed_) failed_ = range.error();
    return std::nullopt;
  }
  return *range;
}

}  // namespace knit::coordinator
