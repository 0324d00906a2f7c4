// A daemon's state directory (knitd's --state-dir, knit-relay's --state-dir): the directory
// made 0700 when missing, 0600 key files (key_file.hpp), and small private files each daemon
// keeps its own records in, replaced atomically and read whole under a size limit. Next to
// key_file.hpp because it is the same file handling one level up: what a daemon does at startup
// and when its membership changes, never per packet.
//
// A file that is damaged is hostile input: load() refuses it with the reason and what to do,
// never trusts it in part. Problems throw StateDirError, one line a person can act on (the
// callers are startup and membership changes, where exceptions are caught and shown).
#pragma once

#include <cstddef>
#include <filesystem>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include "base/key_file.hpp"
#include "base/random.hpp"
#include "base/secret.hpp"

namespace knit {

class StateDirError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class StateDirectory {
 public:
  explicit StateDirectory(std::filesystem::path dir) : dir_(std::move(dir)) {}

  const std::filesystem::path& path() const { return dir_; }
  std::filesystem::path file(std::string_view name) const { return dir_ / name; }

  // Creates the directory and its parents when missing; the directory itself gets mode 0700, and
  // an existing one open to group or others is closed to 0700 (keys go in it).
  void ensure() const;
  // The key in `name`, made (0600, with rng) when missing; the directory is made first.
  Secret<kKeyFileKeySize> load_or_create_key(std::string_view name, Random& rng) const;
  // The text of `name`, at most `limit` bytes; nullopt when there is no such file.
  std::optional<std::string> read(std::string_view name, std::size_t limit) const;
  // Replaces `name` with text atomically (mode 0600); the directory is made first.
  void write(std::string_view name, std::string_view text) const;
  // Removes `name`; no error when it is already gone.
  void remove(std::string_view name) const;

  // read(), then parse(text, why) -> std::optional<T>. A file that does not parse throws
  // "FILE is damaged (why): <what_to_do>".
  template <typename T, typename Parse>
  std::optional<T> load(std::string_view name, std::size_t limit, Parse parse,
                        std::string_view what_to_do) const {
    auto text = read(name, limit);
    if (!text) return std::nullopt;
    std::string why;
    std::optional<T> parsed = parse(*text, why);
    if (!parsed) damaged(name, why, what_to_do);
    return parsed;
  }

 private:
  [[noreturn]] void damaged(std::string_view name, const std::string& why,
                            std::string_view what_to_do) const;

  std::filesystem::path dir_;
};

// A key file anywhere: the key in `file`, made (0600, with rng) when missing. Throws
// StateDirError.
Secret<kKeyFileKeySize> load_or_create_key_or_throw(const std::filesystem::path& file, Random& rng);

}  // namespace knit
