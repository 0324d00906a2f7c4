#include "coordinator/state_dir.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "coordinator/sqlite_store.hpp"

namespace knit::coordinator {

Result<void> prepare_state_dir(const std::filesystem::path& dir) {
  std::error_code ec;
  if (std::filesystem::is_directory(dir, ec)) return Ok{};
  if (dir.has_parent_path() && !dir.parent_path().empty()) {
    std::filesystem::create_directories(dir.parent_path(), ec);
    if (ec)
      return Error{Errc::io, "cannot create " + dir.parent_path().string() + ": " + ec.message()};
  }
  // mkdir with 0700 rather than chmod afterwards: no moment where others may enter.
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    return Error{Errc::io, "cannot create the state directory " + dir.string() + ": " +
                               std::strerror(errno)};
  return Ok{};
}

bool has_state(const std::filesystem::path& dir) {
  std::error_code ec;
  return std::filesystem::is_regular_file(dir / kDatabaseFile, ec);
}

Result<std::unique_ptr<Store>> open_store(const std::filesystem::path& dir) {
  auto store = SqliteStore::open((dir / kDatabaseFile).string());
  if (!store) return store.error();
  return std::unique_ptr<Store>(std::move(*store));
}

}  // namespace knit::coordinator
