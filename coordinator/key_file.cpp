#include "coordinator/key_file.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "wg/crypto.hpp"

namespace knit::coordinator {

namespace {

// Base64 of 32 bytes is 44 characters; room for a newline, a CR and a terminating zero.
constexpr std::size_t kEncodedSize =
    sodium_base64_ENCODED_LEN(wg::kKeySize, sodium_base64_VARIANT_ORIGINAL);

std::string errno_text() { return std::strerror(errno); }

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

bool write_all(int fd, const char* data, std::size_t size) {
  while (size > 0) {
    ssize_t n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

// Writes the key to a private temporary file, then links it into place: link() never replaces
// an existing file, so of two racing first uses one key wins and the other process loads it.
Result<void> write_new_key(const std::filesystem::path& file, const wg::PrivateKey& key) {
  std::string temp = file.string() + ".tmp-" + std::to_string(::getpid());
  ::unlink(temp.c_str());
  Fd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd.ok()) return Error{Errc::io, "cannot create " + temp + ": " + errno_text()};
  char text[kEncodedSize + 1];
  sodium_bin2base64(text, kEncodedSize, key.data(), key.size(), sodium_base64_VARIANT_ORIGINAL);
  std::size_t length = std::strlen(text);
  text[length] = '\n';
  bool written = write_all(fd.get(), text, length + 1) && ::fsync(fd.get()) == 0;
  sodium_memzero(text, sizeof text);
  if (!written) {
    std::string why = errno_text();
    ::unlink(temp.c_str());
    return Error{Errc::io, "cannot write " + temp + ": " + why};
  }
  int linked = ::link(temp.c_str(), file.c_str());
  int link_errno = errno;
  ::unlink(temp.c_str());
  if (linked != 0 && link_errno != EEXIST)
    return Error{Errc::io, "cannot create " + file.string() + ": " + std::strerror(link_errno)};
  return Ok{};
}

}  // namespace

Result<CoordinatorKey> load_key(const std::filesystem::path& file) {
  Fd fd(::open(file.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.ok()) {
    if (errno == ENOENT) return Error{Errc::not_found, "no key file " + file.string()};
    return Error{Errc::io, "cannot read " + file.string() + ": " + errno_text()};
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
    return Error{Errc::io, file.string() + " is not a regular file"};
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return Error{Errc::invalid, file.string() + " is readable by other users (mode " + mode +
                                    "): run chmod 600 " + file.string() +
                                    " and consider the key exposed"};
  }
  char text[kEncodedSize + 8];
  ssize_t n;
  do {
    n = ::read(fd.get(), text, sizeof text - 1);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return Error{Errc::io, "cannot read " + file.string() + ": " + errno_text()};
  std::size_t length = static_cast<std::size_t>(n);
  while (length > 0 && (text[length - 1] == '\n' || text[length - 1] == '\r' ||
                        text[length - 1] == ' '))
    --length;
  CoordinatorKey key;
  std::size_t decoded = 0;
  int rc = sodium_base642bin(key.private_key.data(), key.private_key.size(), text, length,
                             nullptr, &decoded, nullptr, sodium_base64_VARIANT_ORIGINAL);
  sodium_memzero(text, sizeof text);
  if (rc != 0 || decoded != key.private_key.size() || key.private_key.is_zero())
    return Error{Errc::invalid, file.string() +
                                    " does not hold a base64 X25519 private key (as `wg genkey` "
                                    "writes); move it away to make a new mesh key"};
  key.public_key = wg::crypto::public_key_of(key.private_key);
  return key;
}

Result<CoordinatorKey> load_or_create_key(const std::filesystem::path& file, Random& rng) {
  auto loaded = load_key(file);
  if (loaded || loaded.error().code != Errc::not_found) return loaded;
  wg::PrivateKey fresh = wg::crypto::generate_private_key(rng);
  if (auto r = write_new_key(file, fresh); !r) return r.error();
  loaded = load_key(file);  // the winner's key, should another process have raced us
  if (loaded) loaded->created = loaded->private_key.equals(fresh.span());
  return loaded;
}

}  // namespace knit::coordinator
