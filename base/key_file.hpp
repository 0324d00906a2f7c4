// A 32-byte X25519 private key kept in a file the way `wg genkey` writes it: base64 and a
// newline, mode 0600. Made on first use, loaded afterwards. Shared by the coordinator
// (coordinator.key) and knitd (node.key, disco.key); callers derive the public key.
//
// Files are written to a private temporary file and then moved into place, so a reader (or a
// crash) sees the old file or the new one, never half of one. A new key is put in place with
// link(), which never replaces: of two racing first uses one key wins and both load it.
//
// A key file that group or others may read is refused (the key may have leaked) with what to do
// about it. Errors are values: a kind to branch on and one line a person can act on.
#pragma once

#include <cstddef>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <variant>

#include "base/bytes.hpp"
#include "base/random.hpp"
#include "base/secret.hpp"

namespace knit {

inline constexpr std::size_t kKeyFileKeySize = 32;

enum class FileErrc {
  not_found,    // the file does not exist
  not_regular,  // a directory, a device, a symlink (never followed) or cannot be stat()ed
  too_large,    // longer than the caller's limit
  too_open,     // a key file group or others may read: the key may have leaked
  malformed,    // a key file that is not base64 of 32 bytes, or holds an all-zero key
  io,           // open, read, write or link failed; the message says which and why
};

struct FileError {
  FileErrc code;
  std::string message;  // one line naming the file, e.g. "... `chmod 600 FILE` ..."
  unsigned mode = 0;    // the file's permission bits (07777), set for too_open
};

// Either a T or a FileError.
template <typename T>
class [[nodiscard]] FileResult {
 public:
  FileResult(T value) : state_(std::move(value)) {}          // NOLINT: implicit by design
  FileResult(FileError error) : state_(std::move(error)) {}  // NOLINT

  explicit operator bool() const { return state_.index() == 0; }
  T& operator*() { return std::get<0>(state_); }
  const T& operator*() const { return std::get<0>(state_); }
  T* operator->() { return &std::get<0>(state_); }
  const T* operator->() const { return &std::get<0>(state_); }
  const FileError& error() const { return std::get<1>(state_); }

 private:
  std::variant<T, FileError> state_;
};

struct StoredKey {
  Secret<kKeyFileKeySize> key;  // zeroed when dropped
  bool created = false;         // made by this call (false when a racing process won)
};

// Loads the key in `file`. not_found when there is no such file.
FileResult<StoredKey> load_key_file(const std::filesystem::path& file);

// Loads the key in `file`, or makes one with rng (clamped for X25519) when there is no such file.
// Two processes or threads racing to make the first key end up with the same one.
FileResult<StoredKey> load_or_create_key_file(const std::filesystem::path& file, Random& rng);

// Writes bytes to `file` (mode 0600) through a temporary file next to it. With replace, an
// existing file is replaced atomically (rename); without, an existing file is kept as it is
// (link), which counts as success. Returns the error, or nullopt when done.
[[nodiscard]] std::optional<FileError> write_private_file(const std::filesystem::path& file,
                                                          ByteSpan bytes, bool replace);

// Reads a regular file of at most `limit` bytes whole; `mode` gets its permission bits.
FileResult<std::string> read_small_file(const std::filesystem::path& file, std::size_t limit,
                                        unsigned* mode = nullptr);

}  // namespace knit
