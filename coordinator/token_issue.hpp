// Making join tokens: a random id and secret, the record the store keeps (the secret's hash,
// never the secret) and the string the user pastes into `knit up --token`.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "base/random.hpp"
#include "control/host_port.hpp"
#include "coordinator/result.hpp"
#include "coordinator/store.hpp"

namespace knit::coordinator {

struct TokenOptions {
  bool reusable = false;
  bool ephemeral = false;
  bool relay = false;
  std::optional<UnixSeconds> lifetime;  // none: never expires
  std::vector<std::string> tags;
};

struct IssuedToken {
  Token record;      // as stored
  std::string text;  // the join token; contains the secret, so print it once and forget it
};

// Where agents reach the coordinator, for the token: the --advertise addresses when given
// (HOST:PORT each), else the addresses the last `serve` saved (its --advertise list, else its
// --listen address, which must then be one an agent can dial, not 0.0.0.0 or ::). Errc::invalid
// with the fix in the message otherwise.
Result<std::vector<control::HostPort>> token_addresses(Store& store,
                                                       const std::vector<std::string>& advertise);

// Checks the options, stores the token and returns it encoded.
Result<IssuedToken> issue_token(Store& store, const TokenOptions& options,
                                const std::vector<control::HostPort>& addresses,
                                const wg::PublicKey& coordinator_key, Random& rng,
                                UnixSeconds now);

}  // namespace knit::coordinator
