// The coordinator's static X25519 key (the responder key of the Noise IK control channel; its
// public half goes into every join token). Kept in <state-dir>/coordinator.key as base64 and a
// newline, exactly as `wg genkey` writes a key, mode 0600. Made on first use, loaded afterwards.
#pragma once

#include <filesystem>
#include <string_view>

#include "base/random.hpp"
#include "coordinator/result.hpp"
#include "wg/keys.hpp"

namespace knit::coordinator {

inline constexpr std::string_view kKeyFile = "coordinator.key";

struct CoordinatorKey {
  wg::PrivateKey private_key;  // zeroed when dropped
  wg::PublicKey public_key{};
  bool created = false;  // made by this call
};

// Loads the key, or makes one with rng when the file does not exist. Refuses a key file others
// may read (Errc::invalid, saying to chmod 600) rather than use a key that may have leaked. Two
// processes racing to make the first key end up with the same one.
Result<CoordinatorKey> load_or_create_key(const std::filesystem::path& file, Random& rng);

// Only loads; Errc::not_found when there is no key file.
Result<CoordinatorKey> load_key(const std::filesystem::path& file);

}  // namespace knit::coordinator
