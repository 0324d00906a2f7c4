#include "coordinator/key_file.hpp"

#include <cstdio>
#include <string>
#include <utility>

#include "base/key_file.hpp"
#include "wg/crypto.hpp"

namespace knit::coordinator {

namespace {

// The shared key file's outcome in the coordinator's terms: its error kinds, and messages that
// speak of the mesh key.
Result<CoordinatorKey> to_coordinator_key(FileResult<StoredKey> stored,
                                          const std::filesystem::path& file) {
  if (stored) {
    CoordinatorKey key;
    key.private_key = stored->key;
    key.public_key = wg::crypto::public_key_of(key.private_key);
    key.created = stored->created;
    return key;
  }
  const FileError& error = stored.error();
  switch (error.code) {
    case FileErrc::not_found:
      return Error{Errc::not_found, "no key file " + file.string()};
    case FileErrc::not_regular:
      return Error{Errc::io, file.string() + " is not a regular file"};
    case FileErrc::too_open: {
      char mode[8];
      std::snprintf(mode, sizeof mode, "%04o", error.mode);
      return Error{Errc::invalid, file.string() + " is readable by other users (mode " + mode +
                                      "): run chmod 600 " + file.string() +
                                      " and consider the key exposed"};
    }
    case FileErrc::too_large:
    case FileErrc::malformed:
      return Error{Errc::invalid, file.string() +
                                      " does not hold a base64 X25519 private key (as `wg genkey` "
                                      "writes); move it away to make a new mesh key"};
    case FileErrc::io:
      break;
  }
  return Error{Errc::io, error.message};
}

}  // namespace

Result<CoordinatorKey> load_key(const std::filesystem::path& file) {
  return to_coordinator_key(load_key_file(file), file);
}

Result<CoordinatorKey> load_or_create_key(const std::filesystem::path& file, Random& rng) {
  return to_coordinator_key(load_or_create_key_file(file, rng), file);
}

}  // namespace knit::coordinator
