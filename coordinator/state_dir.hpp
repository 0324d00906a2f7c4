// The coordinator's state directory (--state-dir): knit.db (the SQLite store) and
// coordinator.key. Created mode 0700 on first use; nothing in it is for other users.
#pragma once

#include <filesystem>
#include <memory>
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

}  // namespace knit::coordinator
