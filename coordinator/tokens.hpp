// Join-token policy: judging a presented secret against a stored token, token durations and tags.
// Pure functions of their arguments (time is passed in); the Store applies them atomically.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "coordinator/records.hpp"

namespace knit::coordinator {

// Graded, so the server can tell the agent what to do about it.
enum class TokenCheck {
  ok,
  unknown,  // no token with this id, or the secret does not match it
  expired,
  revoked,
  used,        // a one-use token that has already been used
  wrong_kind,  // a relay token presented by a node, or a node token by a relay
};

// What a token is being presented for: relay tokens register relays, the others nodes.
enum class TokenUse { node, relay };

std::string_view to_string(TokenCheck check);

// Judges a presented secret, by its hash, against the stored token (nullptr: no such id). The
// hashes are compared in constant time. A wrong secret reads as unknown, so a guesser learns
// nothing about which ids exist; after that: revoked, expired, wrong_kind, used.
TokenCheck check_token(const Token* token, const SecretHash& presented, TokenUse use,
                       UnixSeconds now);

// "30m", "12h", "7d", "2w", "90s" or a sum such as "1h30m". nullopt on anything else, on zero
// and on more than 100 years.
std::optional<UnixSeconds> parse_duration(std::string_view text);

// A tag is 1 to 63 characters of a-z, 0-9, '-' and '_' (e.g. "server"): a name the control
// protocol carries as it is (control/messages.hpp).
bool valid_tag(std::string_view tag);

// Why a token cannot be stored (an id that is not 16 lowercase hex digits, an invalid tag);
// empty if it can.
std::string why_invalid_token(const Token& token);

// "one-use", "reusable", with ",ephemeral" and ",relay" when they apply.
std::string token_kind(const Token& token);

}  // namespace knit::coordinator
