#include "agent/control_access.hpp"

#include <algorithm>
#include <type_traits>
#include <variant>

namespace knit::agent {

ControlAccess access_needed(const localapi::ControlRequest& request) {
  return std::visit(
      [](const auto& r) {
        using T = std::decay_t<decltype(r)>;
        if constexpr (std::is_same_v<T, localapi::StatusRequest> || std::is_same_v<T, localapi::IpRequest> ||
                      std::is_same_v<T, localapi::PingInfoRequest> || std::is_same_v<T, localapi::VersionRequest> ||
                      std::is_same_v<T, localapi::NetcheckRequest> || std::is_same_v<T, localapi::DnsStatusRequest> ||
                      std::is_same_v<T, localapi::ForwardListRequest> || std::is_same_v<T, localapi::PolicyDebugRequest> ||
                      std::is_same_v<T, localapi::NatRequest>)
          return ControlAccess::read;
        else
          return ControlAccess::change;  // a request added later is a change until said otherwise
      },
      request);
}

std::string_view command_name(const localapi::ControlRequest& request) {
  return std::visit(
      [](const auto& r) -> std::string_view {
        using T = std::decay_t<decltype(r)>;
        if constexpr (std::is_same_v<T, localapi::UpRequest>) return "up";
        else if constexpr (std::is_same_v<T, localapi::DownRequest>) return "down";
        else if constexpr (std::is_same_v<T, localapi::LogoutRequest>) return "logout";
        else if constexpr (std::is_same_v<T, localapi::StatusRequest>) return "status";
        else if constexpr (std::is_same_v<T, localapi::IpRequest>) return "ip";
        else if constexpr (std::is_same_v<T, localapi::PingInfoRequest>) return "ping";
        else if constexpr (std::is_same_v<T, localapi::VersionRequest>) return "version";
        else if constexpr (std::is_same_v<T, localapi::SetRequest>) return "set";
        else if constexpr (std::is_same_v<T, localapi::ForwardAddRequest>) return "forward add";
        else if constexpr (std::is_same_v<T, localapi::ForwardRemoveRequest>) return "forward remove";
        else if constexpr (std::is_same_v<T, localapi::ForwardListRequest>) return "forward list";
        else if constexpr (std::is_same_v<T, localapi::NetcheckRequest>) return "netcheck";
        else if constexpr (std::is_same_v<T, localapi::DnsStatusRequest>) return "dns status";
        else if constexpr (std::is_same_v<T, localapi::RoutesRequest>) return "set";
        else if constexpr (std::is_same_v<T, localapi::PolicyDebugRequest>) return "debug policy";
        else if constexpr (std::is_same_v<T, localapi::NatRequest>) return "nat";
        else return "this command";
      },
      request);
}

namespace {

bool in_group(const net::PeerCredentials& caller, gid_t gid) {
  return caller.gid == gid || std::find(caller.groups.begin(), caller.groups.end(), gid) != caller.groups.end();
}

}  // namespace

std::optional<std::string> refusal(const net::PeerCredentials& caller, const AccessPolicy& policy,
                                   const localapi::ControlRequest& request) {
  if (caller.uid == 0 || caller.uid == policy.daemon_uid) return std::nullopt;
  if (policy.operator_uid && caller.uid == *policy.operator_uid) return std::nullopt;
  const std::string command = "knit " + std::string(command_name(request));
  const std::string operator_text =
      policy.operator_uid ? " (" + (policy.operator_name.empty() ? "uid " + std::to_string(*policy.operator_uid)
                                                                 : policy.operator_name) + ")"
                          : std::string();
  if (access_needed(request) == ControlAccess::read) {
    if (policy.read_gid && in_group(caller, *policy.read_gid)) return std::nullopt;
    return command + " needs root, the operator" + operator_text + " or a member of the group " + kReadGroup +
           ": run it with sudo, or join the group (sudo usermod -aG " + kReadGroup +
           " $USER, then log in again)";
  }
  return command + " changes knitd: it needs root or the operator" + operator_text +
         ": run it with sudo, or make this user the operator (sudo knit set --operator=$USER)";
}

}  // namespace knit::agent
