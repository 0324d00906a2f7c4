#include "coordinator/tokens.hpp"

#include <sodium.h>

#include <charconv>

namespace knit::coordinator {

std::string_view to_string(TokenCheck check) {
  switch (check) {
    case TokenCheck::ok: return "ok";
    case TokenCheck::unknown: return "unknown";
    case TokenCheck::expired: return "expired";
    case TokenCheck::revoked: return "revoked";
    case TokenCheck::used: return "used";
    case TokenCheck::wrong_kind: return "wrong_kind";
  }
  return "unknown";
}

TokenCheck check_token(const Token* token, const SecretHash& presented, TokenUse use,
                       UnixSeconds now) {
  if (token == nullptr) return TokenCheck::unknown;
  if (sodium_memcmp(token->secret_hash.data(), presented.data(), presented.size()) != 0)
    return TokenCheck::unknown;
  if (token->revoked) return TokenCheck::revoked;
  if (token->expires_at && now >= *token->expires_at) return TokenCheck::expired;
  if (token->relay != (use == TokenUse::relay)) return TokenCheck::wrong_kind;
  if (!token->reusable && token->uses > 0) return TokenCheck::used;
  return TokenCheck::ok;
}

std::optional<UnixSeconds> parse_duration(std::string_view text) {
  constexpr UnixSeconds kMax = 100LL * 366 * 24 * 3600;
  if (text.empty()) return std::nullopt;
  UnixSeconds total = 0;
  while (!text.empty()) {
    UnixSeconds count = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), count);
    if (ec != std::errc() || end == text.data() + text.size() || count < 0 || count > kMax)
      return std::nullopt;  // no number, no unit, or absurdly large
    UnixSeconds unit = 0;
    switch (*end) {
      case 's': unit = 1; break;
      case 'm': unit = 60; break;
      case 'h': unit = 3600; break;
      case 'd': unit = 86400; break;
      case 'w': unit = 7 * 86400; break;
      default: return std::nullopt;
    }
    total += count * unit;
    if (total > kMax) return std::nullopt;
    text.remove_prefix(static_cast<std::size_t>(end - text.data()) + 1);
  }
  if (total == 0) return std::nullopt;
  return total;
}

namespace {

bool valid_token_id(std::string_view id) {
  if (id.size() != 16) return false;
  for (char c : id)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

}  // namespace

std::string why_invalid_token(const Token& token) {
  if (!valid_token_id(token.id))
    return "a token id is 16 lowercase hex digits, not '" + token.id + "'";
  for (const auto& tag : token.tags)
    if (!valid_tag(tag)) return "invalid tag '" + tag + "': use 1 to 63 of a-z 0-9 - _";
  return {};
}

bool valid_tag(std::string_view tag) {
  if (tag.empty() || tag.size() > 63) return false;
  for (char c : tag) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
    if (!ok) return false;
  }
  return true;
}

std::string token_kind(const Token& token) {
  std::string kind = token.reusable ? "reusable" : "one-use";
  if (token.ephemeral) kind += ",ephemeral";
  if (token.relay) kind += ",relay";
  return kind;
}

}  // namespace knit::coordinator
