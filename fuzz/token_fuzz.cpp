// The join token (control/token.hpp): decode_token on any text. Properties: a token that
// decodes re-encodes to exactly its own spelling (only the canonical encoding is accepted),
// and a token that fails leaves no secret behind.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "control/token.hpp"
#include "fuzz/fuzz_util.hpp"

using namespace knit;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  control::JoinToken token;
  const control::TokenError error = control::decode_token(text, token);
  (void)control::describe(error);
  if (error != control::TokenError::ok) {
    KNIT_FUZZ_CHECK(token.secret.is_zero());
    return 0;
  }
  KNIT_FUZZ_CHECK(!token.addresses.empty() && token.addresses.size() <= 8);
  const std::string again = control::encode_token(token);
  // decode_token ignores leading and trailing whitespace only.
  std::string_view trimmed = text;
  const auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!trimmed.empty() && space(trimmed.front())) trimmed.remove_prefix(1);
  while (!trimmed.empty() && space(trimmed.back())) trimmed.remove_suffix(1);
  KNIT_FUZZ_CHECK(again == trimmed);
  control::JoinToken twice;
  KNIT_FUZZ_CHECK(control::decode_token(again, twice) == control::TokenError::ok);
  KNIT_FUZZ_CHECK(twice.addresses == token.addresses);
  KNIT_FUZZ_CHECK(twice.coordinator_key == token.coordinator_key && twice.id == token.id);
  KNIT_FUZZ_CHECK(twice.secret.equals(token.secret.span()));
  return 0;
}
