// Key types of the WireGuard protocol. Private and preshared keys zero themselves when dropped.
#pragma once

#include <array>
#include <cstdint>

#include "base/secret.hpp"

namespace knit::wg {

inline constexpr std::size_t kKeySize = 32;

using PublicKey = std::array<std::uint8_t, kKeySize>;
using PrivateKey = Secret<kKeySize>;
using PresharedKey = Secret<kKeySize>;
using SymmetricKey = Secret<kKeySize>;

}  // namespace knit::wg
