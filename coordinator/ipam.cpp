#include "coordinator/ipam.hpp"

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

Ipam::Allocation Ipam::allocate(std::uint32_t cursor,
                                const std::function<bool(std::uint32_t)>& used) const {
  Allocation out;
  if (cursor < first_ || cursor > last_) cursor = first_;
  std::uint32_t candidate = cursor;
  for (std::uint64_t tried = 0; tried < capacity(); ++tried) {
    if (!used(candidate)) {
      out.status = Status::ok;
      out.ipv4 = IpAddress::v4(candidate);
      out.ipv6 = ipv6_for(out.ipv4);
      out.next_cursor = candidate == last_ ? first_ : candidate + 1;
      return out;
    }
    candidate = candidate == last_ ? first_ : candidate + 1;
  }
  out.status = Status::mesh_full;
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

}  // namespace knit::coordinator
