// Link configuration over rtnetlink: what `ip link`, `ip addr` and `ip route` do, for the
// interfaces Knit owns. Every call answers with an error code (errno values, system_category,
// e.g. ENODEV for an unknown interface); nothing throws after construction.
//
// One request at a time: a LinkConfig is not safe to share between threads. It acts in the
// network namespace its creator's thread was in when it was constructed.
#pragma once

#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "base/ip.hpp"
#include "tun/netlink_socket.hpp"

namespace knit::tun {

class LinkConfig {
 public:
  LinkConfig();  // opens the netlink socket; throws std::system_error on failure

  std::error_code set_up(const std::string& ifname, bool up);
  // The kernel enforces the device's bounds (68..65535 for a TUN): EINVAL outside them.
  std::error_code set_mtu(const std::string& ifname, int mtu);

  // v4 or v6, host bits kept ("10.99.0.1/24"); an address already present is success.
  std::error_code add_address(const std::string& ifname, const IpPrefix& prefix);
  // EADDRNOTAVAIL when the address is not there.
  std::error_code remove_address(const std::string& ifname, const IpPrefix& prefix);

  // A directly connected route in the main table (`ip route add PREFIX dev IFNAME`); host bits
  // of the destination are cleared. A route already present through this interface is success;
  // EEXIST when the prefix is routed through another one. The link must be up (else ENETDOWN).
  std::error_code add_route(const std::string& ifname, const IpPrefix& destination);
  // ESRCH when there is no such route through this interface.
  std::error_code remove_route(const std::string& ifname, const IpPrefix& destination);

  std::error_code delete_link(const std::string& ifname);

  std::optional<int> ifindex(const std::string& ifname);
  std::optional<int> mtu(const std::string& ifname);
  std::optional<bool> is_up(const std::string& ifname);
  // As configured (host bits kept). Includes any address the kernel added itself, such as the
  // IPv6 link-local address it gives a link when it comes up.
  std::vector<IpPrefix> addresses(const std::string& ifname);
  // Unicast routes of the main table through this interface, including the prefix routes the
  // kernel adds for each address.
  std::vector<IpPrefix> routes(const std::string& ifname);

 private:
  struct Link {
    int index = 0;
    int mtu = 0;
    unsigned flags = 0;
  };
  std::error_code get_link(const std::string& ifname, Link& link);
  std::error_code change_address(int type, const std::string& ifname, const IpPrefix& prefix);
  std::error_code change_route(int type, const std::string& ifname, const IpPrefix& destination);

  netlink::Socket socket_;
};

}  // namespace knit::tun
