#include "coordinator/pg_migrations.hpp"

#include <iterator>
#include <string>

namespace knit::coordinator {

namespace {

struct PgMigration {
  int version;
  const char* summary;
  const char* sql;
};

constexpr const char* kV1 = R"sql(
CREATE TABLE settings (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
);
CREATE TABLE tokens (
  id          TEXT PRIMARY KEY,
  secret_hash BYTEA NOT NULL,
  reusable    BIGINT NOT NULL DEFAULT 0,
  ephemeral   BIGINT NOT NULL DEFAULT 0,
  relay       BIGINT NOT NULL DEFAULT 0,
  revoked     BIGINT NOT NULL DEFAULT 0,
  expires_at  BIGINT,
  tags        TEXT NOT NULL DEFAULT '',
  uses        BIGINT NOT NULL DEFAULT 0,
  created_at  BIGINT NOT NULL
);
CREATE TABLE nodes (
  id         BIGSERIAL PRIMARY KEY,
  node_key   TEXT NOT NULL UNIQUE,
  disco_key  TEXT NOT NULL,
  name       TEXT NOT NULL UNIQUE,
  hostname   TEXT NOT NULL,
  os         TEXT NOT NULL DEFAULT '',
  ipv4       TEXT NOT NULL UNIQUE,
  ipv6       TEXT NOT NULL UNIQUE,
  tags       TEXT NOT NULL DEFAULT '',
  ephemeral  BIGINT NOT NULL DEFAULT 0,
  token_id   TEXT REFERENCES tokens(id) ON DELETE SET NULL,
  created_at BIGINT NOT NULL,
  last_seen  BIGINT,
  online     BIGINT NOT NULL DEFAULT 0,
  endpoints  TEXT NOT NULL DEFAULT '',
  home_relay TEXT NOT NULL DEFAULT ''
);
)sql";

constexpr const char* kV2 = R"sql(
ALTER TABLE nodes ADD COLUMN disconnected_at BIGINT;
CREATE INDEX nodes_ephemeral ON nodes (ephemeral, online, disconnected_at) WHERE ephemeral = 1;
CREATE TABLE relays (
  name          TEXT PRIMARY KEY,
  node_key      TEXT NOT NULL UNIQUE,
  addresses     TEXT NOT NULL,
  stun_port     BIGINT NOT NULL DEFAULT 0,
  token_id      TEXT REFERENCES tokens(id) ON DELETE SET NULL,
  registered_at BIGINT NOT NULL
);
)sql";

constexpr const char* kV3 = R"sql(
ALTER TABLE relays ADD COLUMN online BIGINT NOT NULL DEFAULT 0;
ALTER TABLE relays ADD COLUMN last_seen BIGINT;
)sql";

constexpr const char* kV4 = R"sql(
CREATE TABLE ipv4_free (
  first BIGINT PRIMARY KEY,
  last  BIGINT NOT NULL
);
ALTER TABLE nodes ADD COLUMN connected_to TEXT NOT NULL DEFAULT '';
)sql";

constexpr const char* kV5 = R"sql(
CREATE TABLE coordinators (
  id         TEXT PRIMARY KEY,
  expires_at BIGINT NOT NULL
);
CREATE INDEX nodes_connected_to ON nodes (connected_to) WHERE online = 1;
)sql";

constexpr PgMigration kMigrations[] = {
    {1, "settings, tokens and nodes", kV1},
    {2, "ephemeral expiry and relays", kV2},
    {3, "relay presence", kV3},
    {4, "free address ranges, change log, node's coordinator", kV4},
    {5, "coordinator leases", kV5},
};

// Any number, the same in every coordinator: serialises migrations across processes.
constexpr const char* kLock = "SELECT pg_advisory_xact_lock(7415000001)";

}  // namespace

int pg_latest_schema_version() { return kMigrations[std::size(kMigrations) - 1].version; }

Result<int> pg_schema_version(PgConnection& conn) {
  auto r = conn.exec("SELECT COALESCE(MAX(version), 0) FROM schema_version");
  if (!r) return r.error();
  return static_cast<int>(r->integer(0, 0));
}

Result<void> pg_migrate(PgConnection& conn) {
  if (auto r = conn.exec_script(
          "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)");
      !r && conn.last_state() != "23505" && conn.last_state() != "42P07")
    return r;  // two coordinators creating it at once: one wins, the other finds it
  return conn.run_transaction([&]() -> Result<void> {
    if (auto r = conn.exec(kLock); !r) return r.error();
    auto current = pg_schema_version(conn);
    if (!current) return current.error();
    if (*current > pg_latest_schema_version())
      return Error{Errc::newer_schema,
                   "the PostgreSQL database is at schema version " + std::to_string(*current) +
                       " but this knit-coordinator knows only up to " +
                       std::to_string(pg_latest_schema_version()) + ": upgrade knit-coordinator"};
    for (const PgMigration& step : kMigrations) {
      if (step.version <= *current) continue;
      if (auto r = conn.exec_script(step.sql); !r)
        return Error{Errc::io, "schema migration " + std::to_string(step.version) + " (" +
                                   step.summary + ") failed: " + r.error().message};
      if (auto r = conn.exec("INSERT INTO schema_version (version) VALUES ($1)",
                             {pg_int(step.version)});
          !r)
        return r.error();
    }
    return Ok{};
  });
}

}  // namespace knit::coordinator
