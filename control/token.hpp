// The join token (contract, docs/ARCHITECTURE.md "Identity and joining"): one copy-pasteable string that
// tells an agent where the coordinator is, how to authenticate it (its Noise static key: no CA,
// no trust on first use) and which secret proves the agent may join.
//
//   knit1-<base64url without padding of:>
//
//    0  version           u8     = 1
//    1  coordinator key   [32]   X25519 public key (the responder's static key in channel.hpp)
//   33  token id          [8]    random; shown as 16 hex characters by `token list`
//   41  secret            [32]   random; the coordinator keeps only secret_hash(secret)
//   73  address count     u8     1..8
//   74  addresses, each:  kind u8
//                           4: ipv4[4]           port be16
//                           6: ipv6[16]          port be16
//                         'd': length u8 (1..253) name[length] port be16
//    n  checksum          [4]    BLAKE2s("knit join token checksum v1" || bytes 0..n)[0..4]
//
// The checksum catches typos and truncation; it is not a MAC (the secret is what the
// coordinator checks). Only the canonical encoding is accepted, so a token has one spelling.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/secret.hpp"
#include "control/constants.hpp"
#include "control/host_port.hpp"
#include "wg/keys.hpp"

namespace knit::control {

using TokenId = std::array<std::uint8_t, kTokenIdSize>;
using TokenSecret = Secret<kTokenSecretSize>;
using SecretHash = std::array<std::uint8_t, 32>;

struct JoinToken {
  std::vector<HostPort> addresses;  // 1..8, each valid()
  wg::PublicKey coordinator_key{};
  TokenId id{};
  TokenSecret secret;
};

enum class TokenError {
  ok,
  bad_prefix,    // does not start with "knit1-"
  bad_encoding,  // not base64url, or not its canonical spelling
  bad_checksum,  // damaged: a character changed, or cut short
  bad_version,   // made by a newer Knit ("knitN-" or a version byte other than 1)
  truncated,     // shorter than the layout needs
  too_long,      // longer than any token, or bytes left after the addresses
  no_address,    // carries no coordinator address
};

// A sentence a person can act on, e.g. "the token is damaged (checksum mismatch): copy it again".
std::string describe(TokenError error);

// The token's string. Returns "" when the token cannot be encoded: no address, more than 8, or
// an address that is not valid() (a caller that built addresses with HostPort::parse never
// sees this).
std::string encode_token(const JoinToken& token);
// Leading and trailing whitespace (a pasted newline) is ignored. On any error `out` is left
// with no secret in it.
TokenError decode_token(std::string_view text, JoinToken& out);

// The token id as `token list` shows it: 16 lowercase hex characters.
std::string token_id_hex(const TokenId& id);

// What the coordinator stores instead of the secret: BLAKE2s over a label that no other use of
// BLAKE2s in Knit shares, then the secret, so the hash is useless anywhere else.
SecretHash secret_hash(const TokenSecret& secret);
// Constant-time check of a presented secret against a stored hash.
bool secret_matches(const TokenSecret& secret, const SecretHash& stored);

}  // namespace knit::control
