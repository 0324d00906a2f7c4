// Telling systemd how a service is doing, with the sd_notify(3) protocol and no libsystemd:
// one datagram ("READY=1", "STOPPING=1", "STATUS=...") to the unix socket systemd names in
// $NOTIFY_SOCKET. A Type=notify unit's `systemctl start` returns only once the program has said
// READY=1, so a script can use the service on the next line, and a program that exits before
// it makes `systemctl start` fail at once instead of restarting quietly behind the prompt.
//
// Outside systemd (no $NOTIFY_SOCKET) every call does nothing.
#pragma once

#include <string_view>

namespace knit::net {

enum class NotifyResult {
  sent,
  not_under_systemd,  // no $NOTIFY_SOCKET: nobody to tell
  failed,             // $NOTIFY_SOCKET is set but unusable (bad path, send failed)
};

// Sends `state`, newline-separated KEY=VALUE assignments, as one datagram. An abstract socket
// is written with a leading '@' in $NOTIFY_SOCKET (as systemd does).
NotifyResult systemd_notify(std::string_view state);

}  // namespace knit::net
