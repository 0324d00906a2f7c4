#include "coordinator/migrations.hpp"

#include <string>

namespace knit::coordinator {

namespace {

// v1: the mesh's settings, join tokens and nodes.
constexpr const char* kV1 = R"sql(
CREATE TABLE settings (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE tokens (
  id          TEXT PRIMARY KEY,           -- 16 hex digits
  secret_hash BLOB NOT NULL,              -- 32 bytes; the secret itself is never stored
  reusable    INTEGER NOT NULL DEFAULT 0,
  ephemeral   INTEGER NOT NULL DEFAULT 0,
  relay       INTEGER NOT NULL DEFAULT 0,
  revoked     INTEGER NOT NULL DEFAULT 0,
  expires_at  INTEGER,                    -- unix seconds; NULL: never
  tags        TEXT NOT NULL DEFAULT '',   -- comma-separated
  uses        INTEGER NOT NULL DEFAULT 0,
  created_at  INTEGER NOT NULL
);

CREATE TABLE nodes (
  id         INTEGER PRIMARY KEY,
  node_key   TEXT NOT NULL UNIQUE,        -- base64, as wg shows keys
  disco_key  TEXT NOT NULL,
  name       TEXT NOT NULL UNIQUE,
  hostname   TEXT NOT NULL,
  os         TEXT NOT NULL DEFAULT '',
  ipv4       TEXT NOT NULL UNIQUE,
  ipv6       TEXT NOT NULL UNIQUE,
  tags       TEXT NOT NULL DEFAULT '',
  ephemeral  INTEGER NOT NULL DEFAULT 0,
  token_id   TEXT REFERENCES tokens(id) ON DELETE SET NULL,
  created_at INTEGER NOT NULL,
  last_seen  INTEGER,
  online     INTEGER NOT NULL DEFAULT 0,
  endpoints  TEXT NOT NULL DEFAULT '',    -- comma-separated ip:port
  home_relay TEXT NOT NULL DEFAULT ''
);
)sql";

// v2: ephemeral nodes expire after a grace period, and relays register themselves.
constexpr const char* kV2 = R"sql(
ALTER TABLE nodes ADD COLUMN disconnected_at INTEGER;
CREATE INDEX nodes_ephemeral ON nodes (ephemeral, online, disconnected_at) WHERE ephemeral = 1;

CREATE TABLE relays (
  name          TEXT PRIMARY KEY,
  node_key      TEXT NOT NULL UNIQUE,
  addresses     TEXT NOT NULL,            -- comma-separated host:port
  stun_port     INTEGER NOT NULL DEFAULT 0,
  token_id      TEXT REFERENCES tokens(id) ON DELETE SET NULL,
  registered_at INTEGER NOT NULL
);
)sql";

// v3: relays connect to the coordinator, so `relays list` shows which are online.
constexpr const char* kV3 = R"sql(
ALTER TABLE relays ADD COLUMN online INTEGER NOT NULL DEFAULT 0;
ALTER TABLE relays ADD COLUMN last_seen INTEGER;
)sql";

// v4: joins in O(log N) (free IPv4 ranges, built from the nodes on first use: the setting
// ipv4_free_built says they are), the change log the server tails, and which coordinator a node
// is connected to (several coordinators on one PostgreSQL; one here).
constexpr const char* kV4 = R"sql(
CREATE TABLE ipv4_free (
  first INTEGER PRIMARY KEY,              -- host-order IPv4, first..last unused
  last  INTEGER NOT NULL
);
CREATE TABLE changes (
  id       INTEGER PRIMARY KEY AUTOINCREMENT,
  origin   TEXT NOT NULL,                 -- the writing connection (Store::origin)
  kind     INTEGER NOT NULL,              -- StoreChange::Kind
  node_key TEXT NOT NULL DEFAULT '',
  at       INTEGER NOT NULL
);
ALTER TABLE nodes ADD COLUMN connected_to TEXT NOT NULL DEFAULT '';
)sql";

// v5: coordinators' leases (Store::renew_lease): a coordinator that died without marking its
// nodes offline is found by its lease running out, and its nodes by connected_to.
constexpr const char* kV5 = R"sql(
CREATE TABLE coordinators (
  id         TEXT PRIMARY KEY,            -- Store::set_coordinator_id, "host/listen"
  expires_at INTEGER NOT NULL             -- unix seconds, the holder's clock
) WITHOUT ROWID;
CREATE INDEX nodes_connected_to ON nodes (connected_to) WHERE online = 1;
)sql";

constexpr Migration kMigrations[] = {
    {1, "settings, tokens and nodes", kV1},
    {2, "ephemeral expiry and relays", kV2},
    {3, "relay presence", kV3},
    {4, "free address ranges, change log, node's coordinator", kV4},
    {5, "coordinator leases", kV5},
};

}  // namespace

std::span<const Migration> migrations() { return kMigrations; }

int latest_schema_version() { return kMigrations[std::size(kMigrations) - 1].version; }

Result<int> schema_version(Database& db) {
  auto created = db.exec(
      "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)");
  if (!created) return created.error();
  auto stmt = db.prepare("SELECT COALESCE(MAX(version), 0) FROM schema_version");
  if (!stmt) return stmt.error();
  if (stmt->step() != Statement::Step::row) return stmt->error();
  return static_cast<int>(stmt->column_int(0));
}

Result<void> migrate(Database& db, int target) {
  if (target <= 0) target = latest_schema_version();
  auto current = schema_version(db);
  if (!current) return current.error();
  if (*current > latest_schema_version())
    return Error{Errc::newer_schema,
                 "the state database is at schema version " + std::to_string(*current) +
                     " but this knit-coordinator knows only up to " +
                     std::to_string(latest_schema_version()) + ": upgrade knit-coordinator"};
  for (const Migration& step : kMigrations) {
    if (step.version <= *current || step.version > target) continue;
    auto tx = Transaction::begin(db);
    if (!tx) return tx.error();
    // Re-read inside the write lock: another process may have migrated meanwhile.
    auto now_at = schema_version(db);
    if (!now_at) return now_at.error();
    if (*now_at >= step.version) continue;
    auto applied = db.exec(step.sql);
    if (!applied)
      return Error{Errc::io, "schema migration " + std::to_string(step.version) + " (" +
                                 step.summary + ") failed: " + applied.error().message};
    auto record = db.prepare(
        "INSERT INTO schema_version (version) VALUES (?1)");
    if (!record) return record.error();
    if (auto r = record->bind(1, std::int64_t{step.version}).run(); !r) return r.error();
    if (auto r = tx->commit(); !r) return r.error();
  }
  return Ok{};
}

}  // namespace knit::coordinator
