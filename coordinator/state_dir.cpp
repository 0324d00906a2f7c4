#include "coordinator/state_dir.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "coordinator/pg_store.hpp"
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

std::optional<StoreLocation> parse_store_location(std::string_view text,
                                                  const std::filesystem::path& state_dir,
                                                  std::string& why) {
  if (text.empty()) return StoreLocation{StoreBackend::sqlite, (state_dir / kDatabaseFile).string()};
  if (text.starts_with("sqlite:")) {
    std::string path(text.substr(7));
    if (path.empty()) {
      why = "sqlite: needs a path, as in sqlite:/var/lib/knit-coordinator/knit.db";
      return std::nullopt;
    }
    return StoreLocation{StoreBackend::sqlite, path};
  }
  if (is_postgres_location(text)) return StoreLocation{StoreBackend::postgres, std::string(text)};
  why = "'" + std::string(text) +
        "' is not a store: use sqlite:PATH or postgres://USER@HOST/DATABASE";
  return std::nullopt;
}

Result<std::unique_ptr<Store>> open_store(const StoreLocation& location) {
  if (location.backend == StoreBackend::postgres) {
    auto store = PgStore::open(location.where);
    if (!store) return store.error();
    return std::unique_ptr<Store>(std::move(*store));
  }
  auto store = SqliteStore::open(location.where);
  if (!store) return store.error();
  return std::unique_ptr<Store>(std::move(*store));
}

bool has_state(const StoreLocation& location) {
  if (location.backend == StoreBackend::sqlite) {
    std::error_code ec;
    return std::filesystem::is_regular_file(location.where, ec);
  }
  auto store = open_store(location);
  if (!store) return false;
  auto mesh = (*store)->mesh_settings();
  return mesh && mesh->has_value();
}

}  // namespace knit::coordinator
