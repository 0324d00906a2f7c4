// Why the coordinator refused an agent, as a code on the wire ("token_expired") and as a
// sentence the agent shows its user. Codes a newer coordinator invents read as `unknown`, so an
// old agent still shows the coordinator's own message instead of failing to parse.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace knit::control {

enum class ErrorCode {
  token_invalid,  // no such token, or the secret does not match
  token_expired,
  token_revoked,
  token_used,      // a one-use token already spent
  not_registered,  // a rejoin (no token) with a node key the coordinator does not know
  mesh_full,       // no address left to assign
  key_in_use,      // the key is a relay's and a node registers with it, or the other way round
  internal,        // the coordinator failed; retrying later may help
  unknown,         // a code this version does not know
};

std::string_view to_string(ErrorCode code);
// unknown for text that names no code of this version.
ErrorCode error_code_from_string(std::string_view text);
// What the user should read and do, e.g. "the join token has expired: create a new one with
// `knit-coordinator token create`".
std::string human_message(ErrorCode code);

}  // namespace knit::control
