#include "net/route_mtu.hpp"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

#include "base/socket_mark.hpp"

namespace knit::net {

std::optional<std::size_t> kernel_path_mtu(const Endpoint& to) {
  const bool v4 = to.address().is_v4();
  const int fd = ::socket(v4 ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::nullopt;
  mark_underlay_socket(fd);
  std::optional<std::size_t> result;
  int connected = -1;
  if (v4) {
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(to.port() != 0 ? to.port() : 9);
    std::memcpy(&sa.sin_addr, to.address().bytes(), 4);
    connected = ::connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
  } else {
    sockaddr_in6 sa{};
    sa.sin6_family = AF_INET6;
    sa.sin6_port = htons(to.port() != 0 ? to.port() : 9);
    std::memcpy(&sa.sin6_addr, to.address().bytes(), 16);
    connected = ::connect(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
  }
  if (connected == 0) {
    int mtu = 0;
    socklen_t len = sizeof mtu;
    const int got = v4 ? ::getsockopt(fd, IPPROTO_IP, IP_MTU, &mtu, &len)
                       : ::getsockopt(fd, IPPROTO_IPV6, IPV6_MTU, &mtu, &len);
    if (got == 0 && mtu > 0) result = static_cast<std::size_t>(mtu);
  }
  ::close(fd);
  return result;
}

}  // namespace knit::net
