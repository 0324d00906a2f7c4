#include "control/error_code.hpp"

#include <array>
#include <utility>

namespace knit::control {
namespace {

constexpr std::array<std::pair<ErrorCode, std::string_view>, 8> kNames{{
    {ErrorCode::token_invalid, "token_invalid"},
    {ErrorCode::token_expired, "token_expired"},
    {ErrorCode::token_revoked, "token_revoked"},
    {ErrorCode::token_used, "token_used"},
    {ErrorCode::not_registered, "not_registered"},
    {ErrorCode::mesh_full, "mesh_full"},
    {ErrorCode::key_in_use, "key_in_use"},
    {ErrorCode::internal, "internal"},
}};

}  // namespace

std::string_view to_string(ErrorCode code) {
  for (const auto& [value, name] : kNames) {
    if (value == code) return name;
  }
  return "unknown";
}

ErrorCode error_code_from_string(std::string_view text) {
  for (const auto& [value, name] : kNames) {
    if (name == text) return value;
  }
  return ErrorCode::unknown;
}

std::string human_message(ErrorCode code) {
  switch (code) {
    case ErrorCode::token_invalid:
      return "the coordinator does not know this join token: check that you copied the right "
             "one, or create a new one with `knit-coordinator token create`";
    case ErrorCode::token_expired:
      return "the join token has expired: create a new one with `knit-coordinator token create`";
    case ErrorCode::token_revoked:
      return "the join token has been revoked: ask for a new one (`knit-coordinator token "
             "create`)";
    case ErrorCode::token_used:
      return "the join token has already been used, and it was a one-use token: create a new "
             "one with `knit-coordinator token create` (add --reusable to join several hosts)";
    case ErrorCode::not_registered:
      return "the coordinator no longer knows this node (it was removed, or the coordinator's "
             "state was reset): join again with `knit up --token TOKEN`";
    case ErrorCode::mesh_full:
      return "the mesh has no free address left: remove unused nodes with `knit-coordinator "
             "nodes remove NAME`, or configure a larger address range";
    case ErrorCode::key_in_use:
      return "this key is already registered in the mesh as a relay (or as a node): a node and a "
             "relay each need a key of their own, so give each its own state directory";
    case ErrorCode::internal:
      return "the coordinator hit an internal error: try again later, and check the "
             "coordinator's log if it persists";
    case ErrorCode::unknown:
      break;
  }
  return "the coordinator refused the request for a reason this version of knit does not know: "
         "upgrade knit";
}

}  // namespace knit::control
