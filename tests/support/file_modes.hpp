// File-mode checks for the tests of every path that writes a secret (keys, mesh and relay
// state): the mode a file ends with, what is left in its directory, and a umask held for one
// test (process-wide, so tests that use it run one at a time, as gtest runs them).
#pragma once

#include <sys/stat.h>

#include <filesystem>
#include <set>
#include <string>

namespace knit::testing {

// The permission bits of `path` (lstat: a symlink is not followed); 0 when it does not exist.
inline unsigned mode_of(const std::filesystem::path& path) {
  struct stat st {};
  if (::lstat(path.c_str(), &st) != 0) return 0;
  return static_cast<unsigned>(st.st_mode & 07777);
}

// Names in `dir`, to prove no temporary file of an atomic replace is left behind.
inline std::set<std::string> names_in(const std::filesystem::path& dir) {
  std::set<std::string> out;
  for (const auto& entry : std::filesystem::directory_iterator(dir))
    out.insert(entry.path().filename().string());
  return out;
}

// Sets the process umask for one scope. A permissive umask (0) is the hard case: nothing but
// the code's own choice of mode keeps a secret private.
class ScopedUmask {
 public:
  explicit ScopedUmask(mode_t mask) : saved_(::umask(mask)) {}
  ~ScopedUmask() { ::umask(saved_); }
  ScopedUmask(const ScopedUmask&) = delete;
  ScopedUmask& operator=(const ScopedUmask&) = delete;

 private:
  mode_t saved_;
};

}  // namespace knit::testing
