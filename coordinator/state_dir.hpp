// The coordinator's state directory (--state-dir): knit.db (the SQLite store) and
// coordinator.key. Created mode 0700 on first use; nothing in it is for other users.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "coordinator/result.hpp"
#include "coordinator/store.hpp"

namespace knit::coordinator {

inline constexpr std::string_view kDefaultStateDir = "/var/lib/knit-coordinator";

// Creates the directory (and its parents) when missing; the directory itself gets mode 0700.
// An existing directory is left as it is.
Result<void> prepare_state_dir(const std::filesystem::path& dir);

// Whether dir already holds a mesh (a knit.db).
bool has_state(const std::filesystem::path& dir);

// Opens (creating and migrating) dir/knit.db.
Result<std::unique_ptr<Store>> open_store(const std::filesystem::path& dir);

// Where a mesh's state is (`--store`, or KNIT_COORDINATOR_STORE): "sqlite:PATH",
// "postgres://..." / "postgresql://..." (libpq's URI or key=value form), or empty for knit.db in
// the state directory. The state directory always holds the coordinator's key.
inline constexpr std::string_view kStoreEnv = "KNIT_COORDINATOR_STORE";
struct StoreLocation {
  StoreBackend backend = StoreBackend::sqlite;
  std::string where;  // the SQLite file, or the PostgreSQL connection string
};
// nullopt (and why) for a location that is neither.
std::optional<StoreLocation> parse_store_location(std::string_view text,
                                                  const std::filesystem::path& state_dir,
                                                  std::string& why);
Result<std::unique_ptr<Store>> open_store(const StoreLocation& location);
// Whether it already holds a mesh (SQLite: the file exists; PostgreSQL: mesh settings stored).
bool has_state(const StoreLocation& location);

}  // namespace knit::coordinator
