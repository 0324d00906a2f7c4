#include "net/peer_credentials.hpp"

#include <sys/socket.h>

#include <cerrno>

namespace knit::net {

std::optional<PeerCredentials> read_peer_credentials(int fd) {
  ucred cred{};
  socklen_t length = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) != 0 || length != sizeof cred) return std::nullopt;
  PeerCredentials out;
  out.pid = cred.pid;
  out.uid = cred.uid;
  out.gid = cred.gid;
#ifdef SO_PEERGROUPS
  // ERANGE tells how much room the list needs; NGROUPS_MAX is 65536.
  std::vector<gid_t> groups(64);
  for (int attempt = 0; attempt < 4; ++attempt) {
    socklen_t bytes = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &bytes) == 0) {
      groups.resize(bytes / sizeof(gid_t));
      out.groups = std::move(groups);
      break;
    }
    if (errno != ERANGE || bytes / sizeof(gid_t) <= groups.size() || bytes / sizeof(gid_t) > 65536) break;
    groups.resize(bytes / sizeof(gid_t));
  }
#endif
  return out;
}

}  // namespace knit::net
