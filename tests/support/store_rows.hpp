// Rows for the coordinator's store tests (coordinator_store_test, coordinator_store_alone_test):
// keys, secret hashes, tokens and registrations made from small numbers, so a test names them.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

#include "coordinator/store.hpp"

namespace knit::coordinator::testing {

inline wg::PublicKey key(std::uint8_t n) {
  wg::PublicKey k{};
  k.fill(n);
  return k;
}

inline SecretHash hash(std::uint8_t n) {
  SecretHash h{};
  h.fill(n);
  return h;
}

inline Token make_token(std::string id, std::uint8_t secret, bool reusable = true) {
  Token t;
  t.id = std::move(id);
  t.secret_hash = hash(secret);
  t.reusable = reusable;
  t.created_at = 1000;
  return t;
}

inline NodeRegistration reg(std::uint8_t n, std::string hostname) {
  return NodeRegistration{key(n), key(static_cast<std::uint8_t>(n + 100)), std::move(hostname),
                          "linux"};
}

inline PresentedToken presented(const Token& t) { return PresentedToken{t.id, t.secret_hash}; }

}  // namespace knit::coordinator::testing
