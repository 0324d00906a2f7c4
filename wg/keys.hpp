// Key types of the WireGuard protocol. Private and preshared keys zero themselves when dropped.
#pragma once

#include <array>
#include <cstdint>
#include <cstring>

#include "base/secret.hpp"

namespace knit::wg {

inline constexpr std::size_t kKeySize = 32;

using PublicKey = std::array<std::uint8_t, kKeySize>;
using PrivateKey = Secret<kKeySize>;
using PresharedKey = Secret<kKeySize>;
using SymmetricKey = Secret<kKeySize>;

// A hash for public keys in unordered containers. Keys are uniformly random (or chosen by peers
// the coordinator already vouches for), so their first bytes make a good hash.
struct KeyHash {
  std::size_t operator()(const PublicKey& k) const noexcept {
    std::size_t h;
    std::memcpy(&h, k.data(), sizeof h);
    return h;
  }
};

}  // namespace knit::wg
