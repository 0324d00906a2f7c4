#include "base/key_file.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace knit {

namespace fs = std::filesystem;

namespace {

// Base64 of 32 bytes is 44 characters (45 with sodium's terminating zero).
constexpr std::size_t kEncodedKeySize =
    sodium_base64_ENCODED_LEN(kKeyFileKeySize, sodium_base64_VARIANT_ORIGINAL);
// Room for the newline `wg genkey` writes, a CR an editor may add, and a little more.
constexpr std::size_t kMaxKeyFileSize = kEncodedKeySize + 8;

std::string errno_text(int error) { return std::strerror(error); }

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const { return fd_; }
  bool ok() const { return fd_ >= 0; }

 private:
  int fd_;
};

bool write_all(int fd, const std::uint8_t* data, std::size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

// Trailing white space as `wg genkey`, editors and `echo` leave it.
std::size_t trimmed_length(const std::string& text) {
  std::size_t length = text.size();
  while (length > 0 && (text[length - 1] == '\n' || text[length - 1] == '\r' ||
                        text[length - 1] == ' '))
    --length;
  return length;
}

FileError too_open(const fs::path& file, unsigned mode) {
  return FileError{FileErrc::too_open,
                   file.string() + " may be read by other users, so the key in it may have "
                                   "leaked: `chmod 600 " + file.string() +
                       "` if you are sure it has not, or remove it",
                   mode};
}

FileError malformed(const fs::path& file) {
  return FileError{FileErrc::malformed,
                   file.string() + " does not hold a key (want base64 of 32 bytes, as `wg genkey` "
                                   "writes): remove it to make a new one"};
}

}  // namespace

FileResult<std::string> read_small_file(const fs::path& file, std::size_t limit, unsigned* mode) {
  Fd fd(::open(file.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.ok()) {
    const int error = errno;
    if (error == ENOENT) return FileError{FileErrc::not_found, file.string() + " does not exist"};
    return FileError{FileErrc::io, "cannot read " + file.string() + ": " + errno_text(error)};
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
    return FileError{FileErrc::not_regular, file.string() + " is not a regular file: remove it"};
  if (mode) *mode = static_cast<unsigned>(st.st_mode & 07777);
  // Sized once, so a key read into it is never left behind in a buffer grown and freed.
  std::string text(limit + 1, '\0');
  std::size_t used = 0;
  while (used < text.size()) {
    ssize_t n = ::read(fd.get(), text.data() + used, text.size() - used);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int error = errno;
      sodium_memzero(text.data(), text.size());
      return FileError{FileErrc::io, "cannot read " + file.string() + ": " + errno_text(error)};
    }
    if (n == 0) break;
    used += static_cast<std::size_t>(n);
  }
  if (used > limit) {
    sodium_memzero(text.data(), text.size());
    return FileError{FileErrc::too_large, file.string() + " is too large to be Knit's: remove it"};
  }
  text.resize(used);
  return text;
}

std::optional<FileError> write_private_file(const fs::path& file, ByteSpan bytes, bool replace) {
  std::string temp = file.string() + ".tmp-XXXXXX";
  // mkostemp makes the file 0600 under a name no other process or thread is using.
  Fd fd(::mkostemp(temp.data(), O_CLOEXEC));
  if (!fd.ok()) return FileError{FileErrc::io, "cannot create " + temp + ": " + errno_text(errno)};
  if (!write_all(fd.get(), bytes.data(), bytes.size()) || ::fsync(fd.get()) != 0) {
    const int error = errno;
    ::unlink(temp.c_str());
    return FileError{FileErrc::io, "cannot write " + temp + ": " + errno_text(error)};
  }
  // link() never replaces: of two racing first uses one key wins and both load it.
  const int result =
      replace ? ::rename(temp.c_str(), file.c_str()) : ::link(temp.c_str(), file.c_str());
  const int error = errno;
  ::unlink(temp.c_str());
  if (result != 0 && !(error == EEXIST && !replace))
    return FileError{FileErrc::io, "cannot create " + file.string() + ": " + errno_text(error)};
  return std::nullopt;
}

FileResult<StoredKey> load_key_file(const fs::path& file) {
  unsigned mode = 0;
  auto text = read_small_file(file, kMaxKeyFileSize, &mode);
  if (!text) return text.error();
  if ((mode & 077) != 0) {
    sodium_memzero(text->data(), text->size());
    return too_open(file, mode);
  }
  StoredKey stored;
  std::size_t decoded = 0;
  const int result =
      sodium_base642bin(stored.key.data(), stored.key.size(), text->data(), trimmed_length(*text),
                        nullptr, &decoded, nullptr, sodium_base64_VARIANT_ORIGINAL);
  sodium_memzero(text->data(), text->size());
  if (result != 0 || decoded != stored.key.size() || stored.key.is_zero()) {
    stored.key.wipe();
    return malformed(file);
  }
  return stored;
}

FileResult<StoredKey> load_or_create_key_file(const fs::path& file, Random& rng) {
  auto loaded = load_key_file(file);
  if (loaded || loaded.error().code != FileErrc::not_found) return loaded;

  Secret<kKeyFileKeySize> fresh;
  rng.fill(fresh.span());
  // Curve25519 clamping, as `wg genkey` does: a multiple of the cofactor 8, bit 254 set, bit 255
  // clear.
  fresh.data()[0] &= 248;
  fresh.data()[31] &= 127;
  fresh.data()[31] |= 64;

  std::array<char, kEncodedKeySize> text{};
  sodium_bin2base64(text.data(), text.size(), fresh.data(), fresh.size(),
                    sodium_base64_VARIANT_ORIGINAL);
  text.back() = '\n';  // in place of the terminating zero: exactly what `wg genkey` prints
  auto failed = write_private_file(
      file, ByteSpan(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()),
      /*replace=*/false);
  sodium_memzero(text.data(), text.size());
  if (failed) return *failed;

  loaded = load_key_file(file);  // the winner's key, should another process have raced us
  if (loaded) loaded->created = loaded->key.equals(fresh.span());
  return loaded;
}

}  // namespace knit
