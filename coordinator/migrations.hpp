// The schema of knit.db as an ordered list of steps. A database records the last step applied in
// schema_version; opening it applies the rest, each step in its own transaction, so a crash leaves
// the database at a whole version. Steps are append-only: never edit one that has shipped.
#pragma once

#include <span>

#include "coordinator/sqlite_db.hpp"

namespace knit::coordinator {

struct Migration {
  int version;  // 1, 2, 3, ... in order
  const char* summary;
  const char* sql;
};

std::span<const Migration> migrations();
int latest_schema_version();

// The version recorded in the database; 0 for a new, empty database.
Result<int> schema_version(Database& db);

// Applies the steps after the recorded version, up to target (default: all). A database newer
// than this program knows is refused (Errc::newer_schema) rather than guessed at.
Result<void> migrate(Database& db, int target = 0);

}  // namespace knit::coordinator
