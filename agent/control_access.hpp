// Who may ask knitd what, over its control socket (mode 0666: anyone may connect, and knitd
// decides per request from the caller's credentials, so a refusal can say what to do, as
// `tailscale --operator` does). Pure: the credentials come from the kernel (SO_PEERCRED and
// SO_PEERGROUPS, net/peer_credentials.hpp), the policy from knitd's state and /etc/group
// (operator_control.hpp); nothing here does I/O.
//
//   request                                         root   knitd's user   operator   group knit   others
//   status, ip, ping-info, version, netcheck,        yes       yes          yes         yes         no
//   dns-status, forward-list
//   up, down, logout, set, forward-add,              yes       yes          yes         no          no
//   forward-remove
//
// knitd's own user: a knitd run without root (CAP_NET_ADMIN only) serves the user who runs it.
#pragma once

#include <sys/types.h>

#include <optional>
#include <string>
#include <string_view>

#include "localapi/protocol.hpp"
#include "net/peer_credentials.hpp"

namespace knit::agent {

inline constexpr const char* kReadGroup = "knit";

enum class ControlAccess { read, change };

// What a request needs.
ControlAccess access_needed(const localapi::ControlRequest& request);
// The command as the user typed it ("status", "down", "forward add", "set", ...).
std::string_view command_name(const localapi::ControlRequest& request);

struct AccessPolicy {
  uid_t daemon_uid = 0;                // knitd's own effective uid
  std::optional<uid_t> operator_uid;   // `knit set --operator USER`
  std::string operator_name;           // for the refusal's wording
  std::optional<gid_t> read_gid;       // the group knit, when it exists
};

// nullopt: allowed. Else the refusal, as one line: which command, who may run it, and how to
// become one of them.
std::optional<std::string> refusal(const net::PeerCredentials& caller, const AccessPolicy& policy,
                                   const localapi::ControlRequest& request);

}  // namespace knit::agent
