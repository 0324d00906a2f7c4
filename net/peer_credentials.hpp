// Who is at the other end of a connected unix socket, as the kernel recorded it when the peer
// called connect(): SO_PEERCRED (pid, uid, primary gid) and SO_PEERGROUPS (the supplementary
// groups, Linux 4.13). The thin OS adapter under knitd's control-socket authorization
// (agent/control_access.hpp decides, without I/O). /proc/PID/status is not read: knitd runs
// with ProtectProc=invisible and cannot see other users' processes.
#pragma once

#include <sys/types.h>

#include <optional>
#include <vector>

namespace knit::net {

struct PeerCredentials {
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;               // the primary group
  std::vector<gid_t> groups;   // the supplementary groups (may include gid)
  friend bool operator==(const PeerCredentials&, const PeerCredentials&) = default;
};

// nullopt when the kernel cannot say (not a unix socket). A kernel without SO_PEERGROUPS gives
// the primary group only.
std::optional<PeerCredentials> read_peer_credentials(int fd);

}  // namespace knit::net
