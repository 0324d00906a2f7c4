#include "agent/node_identity.hpp"

#include <fcntl.h>
#include <sodium.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>

#include "base/bytes.hpp"
#include "control/constants.hpp"
#include "wg/crypto.hpp"

namespace knit::agent {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Base64 of 32 bytes is 44 characters; room for a newline, a CR and a terminating zero.
constexpr std::size_t kEncodedKeySize =
    sodium_base64_ENCODED_LEN(wg::kKeySize, sodium_base64_VARIANT_ORIGINAL);
// A mesh.json is a few hundred bytes; anything much bigger is not ours.
constexpr std::size_t kMaxMeshFileSize = 64 * 1024;

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

// Writes text to a private temporary file next to `file`, then moves it into place, so a reader
// (or a crash) sees the old file or the new one, never half of one.
void write_private_file(const fs::path& file, const char* data, std::size_t size, bool replace) {
  const std::string temp = file.string() + ".tmp-" + std::to_string(::getpid());
  ::unlink(temp.c_str());
  Fd fd(::open(temp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
  if (!fd.ok()) throw StateError("cannot create " + temp + ": " + errno_text(errno));
  if (!write_all(fd.get(), data, size) || ::fsync(fd.get()) != 0) {
    const int error = errno;
    ::unlink(temp.c_str());
    throw StateError("cannot write " + temp + ": " + errno_text(error));
  }
  // link() never replaces: of two racing first uses one key wins and both load it.
  const int result = replace ? ::rename(temp.c_str(), file.c_str()) : ::link(temp.c_str(), file.c_str());
  const int error = errno;
  ::unlink(temp.c_str());
  if (result != 0 && !(error == EEXIST && !replace))
    throw StateError("cannot create " + file.string() + ": " + errno_text(error));
}

// Reads a small regular file whole; nullopt when it does not exist.
std::optional<std::string> read_small_file(const fs::path& file, std::size_t limit, struct stat& st) {
  Fd fd(::open(file.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.ok()) {
    if (errno == ENOENT) return std::nullopt;
    throw StateError("cannot read " + file.string() + ": " + errno_text(errno));
  }
  if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
    throw StateError(file.string() + " is not a regular file: remove it");
  std::string text;
  std::array<char, 4096> chunk{};
  for (;;) {
    ssize_t n = ::read(fd.get(), chunk.data(), chunk.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw StateError("cannot read " + file.string() + ": " + errno_text(errno));
    if (n == 0) break;
    text.append(chunk.data(), static_cast<std::size_t>(n));
    if (text.size() > limit) {
      sodium_memzero(text.data(), text.size());
      throw StateError(file.string() + " is too large to be Knit's: remove it");
    }
  }
  sodium_memzero(chunk.data(), chunk.size());
  return text;
}

std::optional<KeyPair> load_key(const fs::path& file) {
  struct stat st {};
  auto text = read_small_file(file, kEncodedKeySize + 8, st);
  if (!text) return std::nullopt;
  if ((st.st_mode & 077) != 0) {
    sodium_memzero(text->data(), text->size());
    throw StateError(file.string() + " may be read by other users, so the key in it may have leaked: "
                     "`chmod 600 " + file.string() + "` if you are sure it has not, or remove it");
  }
  while (!text->empty() && (text->back() == '\n' || text->back() == '\r' || text->back() == ' '))
    text->pop_back();
  KeyPair pair;
  std::size_t decoded = 0;
  const int result = sodium_base642bin(pair.private_key.data(), pair.private_key.size(), text->data(),
                                       text->size(), nullptr, &decoded, nullptr,
                                       sodium_base64_VARIANT_ORIGINAL);
  sodium_memzero(text->data(), text->size());
  if (result != 0 || decoded != wg::kKeySize || pair.private_key.is_zero()) {
    pair.private_key.wipe();
    throw StateError(file.string() + " does not hold a key (want base64 of 32 bytes, as `wg genkey` "
                     "writes): remove it to make a new one");
  }
  pair.public_key = wg::crypto::public_key_of(pair.private_key);
  return pair;
}

std::string key_text(const wg::PublicKey& key) { return to_base64(key); }

wg::PublicKey key_from_text(const std::string& text) {
  auto bytes = from_base64(text);
  if (!bytes || bytes->size() != wg::kKeySize) throw std::invalid_argument("bad key");
  wg::PublicKey key{};
  std::copy(bytes->begin(), bytes->end(), key.begin());
  return key;
}

IpAddress address_of_family(const std::string& text, bool v4) {
  auto address = IpAddress::parse(text);
  if (!address || address->is_v4() != v4) throw std::invalid_argument("bad address");
  return *address;
}

IpPrefix prefix_of_family(const std::string& text, bool v4) {
  auto prefix = IpPrefix::parse(text);
  if (!prefix || prefix->address.is_v4() != v4) throw std::invalid_argument("bad prefix");
  return *prefix;
}

}  // namespace

KeyPair load_or_create_key(const fs::path& file, Random& rng) {
  if (auto pair = load_key(file)) return std::move(*pair);
  const wg::PrivateKey key = wg::crypto::generate_private_key(rng);
  std::array<char, kEncodedKeySize + 1> text{};
  sodium_bin2base64(text.data(), kEncodedKeySize, key.data(), key.size(), sodium_base64_VARIANT_ORIGINAL);
  std::size_t length = std::strlen(text.data());
  text[length] = '\n';
  try {
    write_private_file(file, text.data(), length + 1, /*replace=*/false);
  } catch (...) {
    sodium_memzero(text.data(), text.size());
    throw;
  }
  sodium_memzero(text.data(), text.size());
  if (auto pair = load_key(file)) return std::move(*pair);
  throw StateError("cannot read back " + file.string());
}

void StateDir::ensure() const {
  std::error_code ec;
  if (fs::is_directory(dir_, ec)) return;
  fs::create_directories(dir_, ec);
  if (ec) throw StateError("cannot create the state directory " + dir_.string() + ": " + ec.message());
  ::chmod(dir_.c_str(), 0700);
}

NodeIdentity StateDir::load_or_create_identity(Random& rng) const {
  ensure();
  NodeIdentity identity;
  identity.node = load_or_create_key(dir_ / kNodeKeyFile, rng);
  identity.disco = load_or_create_key(dir_ / kDiscoKeyFile, rng);
  return identity;
}

std::optional<MeshRecord> StateDir::load_mesh() const {
  struct stat st {};
  const fs::path file = dir_ / kMeshFile;
  auto text = read_small_file(file, kMaxMeshFileSize, st);
  if (!text) return std::nullopt;
  std::string why;
  auto record = parse_mesh_record(*text, why);
  if (!record)
    throw StateError(file.string() + " is damaged (" + why + "): remove it and join again with "
                     "`knit up --token TOKEN`");
  return record;
}

void StateDir::save_mesh(const MeshRecord& record) const {
  ensure();
  const std::string text = encode_mesh_record(record);
  write_private_file(dir_ / kMeshFile, text.data(), text.size(), /*replace=*/true);
}

void StateDir::forget_mesh() const {
  const fs::path file = dir_ / kMeshFile;
  if (::unlink(file.c_str()) != 0 && errno != ENOENT)
    throw StateError("cannot remove " + file.string() + ": " + errno_text(errno));
}

std::string encode_mesh_record(const MeshRecord& record) {
  json addresses = json::array();
  for (const auto& address : record.coordinator_addresses) addresses.push_back(address.to_string());
  json doc = {
      {"coordinator", {{"addresses", addresses}, {"public_key", key_text(record.coordinator_key)}}},
      {"hostname", record.hostname},
      {"node",
       {{"name", record.name}, {"ipv4", record.ipv4.to_string()}, {"ipv6", record.ipv6.to_string()}}},
      {"mesh",
       {{"ipv4_prefix", record.ipv4_prefix.to_string()},
        {"ipv6_prefix", record.ipv6_prefix.to_string()}}},
  };
  return doc.dump(2, ' ', false, json::error_handler_t::replace) + "\n";
}

std::optional<MeshRecord> parse_mesh_record(const std::string& text, std::string& why) {
  json doc = json::parse(text, nullptr, false);
  if (doc.is_discarded() || !doc.is_object()) {
    why = "not JSON";
    return std::nullopt;
  }
  try {
    MeshRecord record;
    const json& coordinator = doc.at("coordinator");
    for (const auto& item : coordinator.at("addresses")) {
      auto address = control::HostPort::parse(item.get<std::string>());
      if (!address) throw std::invalid_argument("bad coordinator address");
      record.coordinator_addresses.push_back(*address);
    }
    if (record.coordinator_addresses.empty() ||
        record.coordinator_addresses.size() > control::kMaxTokenAddresses)
      throw std::invalid_argument("no coordinator address");
    record.coordinator_key = key_from_text(coordinator.at("public_key").get<std::string>());
    record.hostname = doc.at("hostname").get<std::string>();
    const json& node = doc.at("node");
    record.name = node.at("name").get<std::string>();
    record.ipv4 = address_of_family(node.at("ipv4").get<std::string>(), true);
    record.ipv6 = address_of_family(node.at("ipv6").get<std::string>(), false);
    const json& mesh = doc.at("mesh");
    record.ipv4_prefix = prefix_of_family(mesh.at("ipv4_prefix").get<std::string>(), true);
    record.ipv6_prefix = prefix_of_family(mesh.at("ipv6_prefix").get<std::string>(), false);
    return record;
  } catch (const std::exception& e) {
    why = e.what();
    return std::nullopt;
  }
}

}  // namespace knit::agent
