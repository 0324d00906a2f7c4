#include "base/state_dir.hpp"

#include <sys/stat.h>
#include <unistd.h>


#include <cerrno>
#include <cstring>

namespace knit {

namespace fs = std::filesystem;

void StateDirectory::ensure() const {
  std::error_code ec;
  if (fs::is_directory(dir_, ec)) {
    // Keys go in here: a directory others can read or enter is closed first.
    struct stat st {};
    if (::stat(dir_.c_str(), &st) == 0 && (st.st_mode & 077) != 0 && ::chmod(dir_.c_str(), 0700) != 0) {
      const int error = errno;
      throw StateDirError("the state directory " + dir_.string() + " is open to other users and cannot be closed (chmod 0700): " + std::strerror(error));
    }
    return;
  }
  fs::create_directories(dir_, ec);
  if (ec) throw StateDirError("cannot create the state directory " + dir_.string() + ": " + ec.message());
  ::chmod(dir_.c_str(), 0700);
}

Secret<kKeyFileKeySize> load_or_create_key_or_throw(const fs::path& file, Random& rng) {
  auto stored = load_or_create_key_file(file, rng);
  if (!stored) {
    // Made, then gone before we could load it.
    if (stored.error().code == FileErrc::not_found) throw StateDirError("cannot read back " + file.string());
    throw StateDirError(stored.error().message);  // key_file's wording names the file and the fix
  }
  return stored->key;
}

Secret<kKeyFileKeySize> StateDirectory::load_or_create_key(std::string_view name, Random& rng) const {
  ensure();
  return load_or_create_key_or_throw(file(name), rng);
}

std::optional<std::string> StateDirectory::read(std::string_view name, std::size_t limit) const {
  auto text = read_small_file(file(name), limit);
  if (!text) {
    if (text.error().code == FileErrc::not_found) return std::nullopt;
    throw StateDirError(text.error().message);
  }
  return std::move(*text);
}

void StateDirectory::write(std::string_view name, std::string_view text) const {
  ensure();
  const ByteSpan bytes(reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
  if (auto failed = write_private_file(file(name), bytes, /*replace=*/true)) throw StateDirError(failed->message);
}

void StateDirectory::remove(std::string_view name) const {
  const fs::path path = file(name);
  if (::unlink(path.c_str()) != 0 && errno != ENOENT) {
    const int error = errno;
    throw StateDirError("cannot remove " + path.string() + ": " + std::strerror(error));
  }
}

void StateDirectory::damaged(std::string_view name, const std::string& why,
                             std::string_view what_to_do) const {
  throw StateDirError(file(name).string() + " is damaged (" + why + "): " + std::string(what_to_do));
}

}  // namespace knit
