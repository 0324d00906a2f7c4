#include "tun/link_config.hpp"

#include <linux/if_addr.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <net/if.h>
#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>

namespace knit::tun {
namespace {

using netlink::Attributes;
using netlink::Message;
using netlink::Request;
using netlink::read_header;

std::error_code errno_code(int value) { return {value, std::system_category()}; }

// Interface names are 1..15 bytes (IFNAMSIZ includes the terminating NUL).
bool valid_ifname(const std::string& ifname) {
  return !ifname.empty() && ifname.size() < IFNAMSIZ;
}

bool valid_prefix(const IpPrefix& prefix) {
  return prefix.length <= (prefix.address.is_v4() ? 32 : 128);
}

unsigned char family_of(const IpAddress& address) {
  return address.is_v4() ? AF_INET : AF_INET6;
}

ByteSpan bytes_of(const IpAddress& address) { return {address.bytes(), address.size()}; }

// The kernel refuses an IPv4 route whose destination has host bits set.
IpAddress network_address(const IpPrefix& prefix) {
  std::array<std::uint8_t, 16> bytes{};
  std::copy_n(prefix.address.bytes(), prefix.address.size(), bytes.begin());
  for (std::size_t bit = prefix.length; bit < prefix.address.size() * 8; ++bit) {
    bytes[bit / 8] &= static_cast<std::uint8_t>(~(0x80u >> (bit % 8)));
  }
  return prefix.address.is_v4() ? IpAddress::v4(bytes.data()) : IpAddress::v6(bytes.data());
}

std::optional<IpAddress> address_from(unsigned char family, std::optional<ByteSpan> bytes) {
  if (!bytes) return std::nullopt;
  if (family == AF_INET && bytes->size() == 4) return IpAddress::v4(bytes->data());
  if (family == AF_INET6 && bytes->size() == 16) return IpAddress::v6(bytes->data());
  return std::nullopt;
}

}  // namespace

LinkConfig::LinkConfig() = default;

std::error_code LinkConfig::get_link(const std::string& ifname, Link& link) {
  if (!valid_ifname(ifname)) return errno_code(EINVAL);
  ifinfomsg header{};
  header.ifi_family = AF_UNSPEC;
  Request request(RTM_GETLINK, 0, header);
  request.add_string(IFLA_IFNAME, ifname);
  bool found = false;
  auto error = socket_.transact(request, [&](const Message& message) {
    if (message.type != RTM_NEWLINK) return;
    auto info = read_header<ifinfomsg>(message.payload);
    if (!info) return;
    found = true;
    link.index = info->ifi_index;
    link.flags = info->ifi_flags;
    link.mtu = static_cast<int>(Attributes::after<ifinfomsg>(message.payload).u32(IFLA_MTU).value_or(0));
  });
  if (error) return error;
  return found ? std::error_code{} : errno_code(ENODEV);
}

std::error_code LinkConfig::set_up(const std::string& ifname, bool up) {
  if (!valid_ifname(ifname)) return errno_code(EINVAL);
  ifinfomsg header{};
  header.ifi_family = AF_UNSPEC;
  header.ifi_flags = up ? IFF_UP : 0;
  header.ifi_change = IFF_UP;  // touch no other flag
  // Index 0 with IFLA_IFNAME: the kernel finds the link by name (ENODEV if there is none).
  Request request(RTM_NEWLINK, 0, header);
  request.add_string(IFLA_IFNAME, ifname);
  return socket_.transact(request);
}

std::error_code LinkConfig::set_mtu(const std::string& ifname, int mtu) {
  if (!valid_ifname(ifname) || mtu <= 0) return errno_code(EINVAL);
  ifinfomsg header{};
  header.ifi_family = AF_UNSPEC;
  Request request(RTM_NEWLINK, 0, header);
  request.add_string(IFLA_IFNAME, ifname);
  request.add_u32(IFLA_MTU, static_cast<std::uint32_t>(mtu));
  return socket_.transact(request);
}

std::error_code LinkConfig::delete_link(const std::string& ifname) {
  if (!valid_ifname(ifname)) return errno_code(EINVAL);
  ifinfomsg header{};
  header.ifi_family = AF_UNSPEC;
  Request request(RTM_DELLINK, 0, header);
  request.add_string(IFLA_IFNAME, ifname);
  return socket_.transact(request);
}

std::error_code LinkConfig::change_address(int type, const std::string& ifname,
                                           const IpPrefix& prefix) {
  if (!valid_prefix(prefix)) return errno_code(EINVAL);
  Link link;
  if (auto error = get_link(ifname, link)) return error;
  ifaddrmsg header{};
  header.ifa_family = family_of(prefix.address);
  header.ifa_prefixlen = prefix.length;
  header.ifa_scope = RT_SCOPE_UNIVERSE;
  header.ifa_index = static_cast<std::uint32_t>(link.index);
  // Mesh addresses are handed out by the coordinator: there is no one on the link to detect a
  // duplicate with, so IPv6 duplicate address detection would only delay the address.
  if (prefix.address.is_v6()) header.ifa_flags = IFA_F_NODAD;
  const auto flags = static_cast<std::uint16_t>(type == RTM_NEWADDR ? NLM_F_CREATE | NLM_F_EXCL : 0);
  Request request(static_cast<std::uint16_t>(type), flags, header);
  // Local and "address" equal: no point-to-point peer, so the kernel adds the prefix route.
  request.add(IFA_LOCAL, bytes_of(prefix.address));
  request.add(IFA_ADDRESS, bytes_of(prefix.address));
  return socket_.transact(request);
}

std::error_code LinkConfig::add_address(const std::string& ifname, const IpPrefix& prefix) {
  auto error = change_address(RTM_NEWADDR, ifname, prefix);
  if (error == errno_code(EEXIST)) return {};  // addresses are per interface: it is ours already
  return error;
}

std::error_code LinkConfig::remove_address(const std::string& ifname, const IpPrefix& prefix) {
  return change_address(RTM_DELADDR, ifname, prefix);
}

std::error_code LinkConfig::change_route(int type, const std::string& ifname,
                                         const IpPrefix& destination) {
  if (!valid_prefix(destination)) return errno_code(EINVAL);
  Link link;
  if (auto error = get_link(ifname, link)) return error;
  const bool add = type == RTM_NEWROUTE;
  rtmsg header{};
  header.rtm_family = family_of(destination.address);
  header.rtm_dst_len = destination.length;
  header.rtm_table = RT_TABLE_MAIN;
  header.rtm_type = RTN_UNICAST;
  // As `ip route` does: added routes are "boot" routes, link scope for IPv4 (no gateway) and
  // universe for IPv6; deletion matches any protocol and any scope (RT_SCOPE_NOWHERE).
  header.rtm_protocol = add ? RTPROT_BOOT : RTPROT_UNSPEC;
  if (!add) {
    header.rtm_scope = RT_SCOPE_NOWHERE;
  } else {
    header.rtm_scope = destination.address.is_v4() ? RT_SCOPE_LINK : RT_SCOPE_UNIVERSE;
  }
  const auto flags = static_cast<std::uint16_t>(add ? NLM_F_CREATE | NLM_F_EXCL : 0);
  Request request(static_cast<std::uint16_t>(type), flags, header);
  if (destination.length > 0) request.add(RTA_DST, bytes_of(network_address(destination)));
  request.add_u32(RTA_OIF, static_cast<std::uint32_t>(link.index));
  return socket_.transact(request);
}

std::error_code LinkConfig::add_route(const std::string& ifname, const IpPrefix& destination) {
  auto error = change_route(RTM_NEWROUTE, ifname, destination);
  if (error != errno_code(EEXIST)) return error;
  // The kernel says EEXIST whichever interface the existing route uses; only ours is success.
  const IpPrefix wanted{network_address(destination), destination.length};
  const auto present = routes(ifname);
  if (std::find(present.begin(), present.end(), wanted) != present.end()) return {};
  return error;
}

std::error_code LinkConfig::remove_route(const std::string& ifname, const IpPrefix& destination) {
  return change_route(RTM_DELROUTE, ifname, destination);
}

std::optional<int> LinkConfig::ifindex(const std::string& ifname) {
  Link link;
  if (get_link(ifname, link)) return std::nullopt;
  return link.index;
}

std::optional<int> LinkConfig::mtu(const std::string& ifname) {
  Link link;
  if (get_link(ifname, link)) return std::nullopt;
  return link.mtu;
}

std::optional<bool> LinkConfig::is_up(const std::string& ifname) {
  Link link;
  if (get_link(ifname, link)) return std::nullopt;
  return (link.flags & IFF_UP) != 0;
}

std::vector<IpPrefix> LinkConfig::addresses(const std::string& ifname) {
  std::vector<IpPrefix> result;
  Link link;
  if (get_link(ifname, link)) return result;
  ifaddrmsg header{};
  header.ifa_family = AF_UNSPEC;
  Request request(RTM_GETADDR, NLM_F_DUMP, header);
  // The dump covers every interface; keep this one's.
  (void)socket_.transact(request, [&](const Message& message) {
    if (message.type != RTM_NEWADDR) return;
    auto info = read_header<ifaddrmsg>(message.payload);
    if (!info || static_cast<int>(info->ifa_index) != link.index) return;
    const auto attributes = Attributes::after<ifaddrmsg>(message.payload);
    // IFA_LOCAL is the interface's own address; IFA_ADDRESS is the peer on a point-to-point
    // link, and the only attribute for most IPv6 addresses.
    auto address = address_from(info->ifa_family, attributes.get(IFA_LOCAL));
    if (!address) address = address_from(info->ifa_family, attributes.get(IFA_ADDRESS));
    if (address) result.push_back(IpPrefix{*address, info->ifa_prefixlen});
  });
  return result;
}

std::vector<IpPrefix> LinkConfig::routes(const std::string& ifname) {
  std::vector<IpPrefix> result;
  Link link;
  if (get_link(ifname, link)) return result;
  rtmsg header{};
  header.rtm_family = AF_UNSPEC;
  Request request(RTM_GETROUTE, NLM_F_DUMP, header);
  (void)socket_.transact(request, [&](const Message& message) {
    if (message.type != RTM_NEWROUTE) return;
    auto info = read_header<rtmsg>(message.payload);
    if (!info || info->rtm_type != RTN_UNICAST) return;
    const auto attributes = Attributes::after<rtmsg>(message.payload);
    // Table ids above 255 only fit the RTA_TABLE attribute; rtm_table then says RT_TABLE_COMPAT.
    const auto table = attributes.u32(RTA_TABLE).value_or(info->rtm_table);
    if (table != RT_TABLE_MAIN) return;
    if (static_cast<int>(attributes.u32(RTA_OIF).value_or(0)) != link.index) return;
    std::optional<IpAddress> destination;
    if (info->rtm_dst_len == 0) {
      destination = info->rtm_family == AF_INET ? IpAddress{} : IpAddress::parse("::");
    } else {
      destination = address_from(info->rtm_family, attributes.get(RTA_DST));
    }
    if (destination && (info->rtm_family == AF_INET || info->rtm_family == AF_INET6)) {
      result.push_back(IpPrefix{*destination, info->rtm_dst_len});
    }
  });
  return result;
}

}  // namespace knit::tun
