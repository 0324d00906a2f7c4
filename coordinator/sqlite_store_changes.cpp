// SqliteStore: the change log the server tails (store.hpp, sqlite_change_feed.hpp), and moving
// a whole mesh out and in (`knit-coordinator migrate`).
#include "coordinator/mesh_settings.hpp"
#include "coordinator/sqlite_rows.hpp"
#include "coordinator/sqlite_store.hpp"

namespace knit::coordinator {

Result<void> SqliteStore::note(StoreChange::Kind kind, const wg::PublicKey* node_key) {
  auto stmt = db_.prepare(
      "INSERT INTO changes (origin, kind, node_key, at) VALUES (?1, ?2, ?3, strftime('%s'))");
  if (!stmt) return stmt.error();
  return stmt->bind(1, origin_)
      .bind(2, std::int64_t{static_cast<int>(kind)})
      .bind(3, node_key != nullptr ? rows::key_text(*node_key) : std::string())
      .run();
}

Result<std::uint64_t> SqliteStore::data_version() {
  // Changes only when another connection commits; sqlite.org/pragma.html#pragma_data_version.
  auto stmt = db_.prepare("PRAGMA data_version");
  if (!stmt) return stmt.error();
  if (stmt->step() != Statement::Step::row) return stmt->error();
  return static_cast<std::uint64_t>(stmt->column_int(0));
}

Result<std::uint64_t> SqliteStore::latest_change() {
  auto stmt = db_.prepare("SELECT COALESCE(MAX(id), 0) FROM changes");
  if (!stmt) return stmt.error();
  if (stmt->step() != Statement::Step::row) return stmt->error();
  return static_cast<std::uint64_t>(stmt->column_int(0));
}

Result<std::vector<StoreChange>> SqliteStore::changes_after(std::uint64_t& cursor) {
  auto stmt = db_.prepare(
      "SELECT id, origin, kind, node_key FROM changes WHERE id > ?1 ORDER BY id LIMIT 10000");
  if (!stmt) return stmt.error();
  stmt->bind(1, static_cast<std::int64_t>(cursor));
  std::vector<StoreChange> out;
  for (;;) {
    auto step = stmt->step();
    if (step == Statement::Step::done) return out;
    if (step == Statement::Step::failed) return stmt->error();
    cursor = static_cast<std::uint64_t>(stmt->column_int(0));
    if (stmt->column_text(1) == origin_) continue;
    const auto kind = stmt->column_int(2);
    StoreChange change;
    if (kind == static_cast<int>(StoreChange::Kind::node)) {
      change.kind = StoreChange::Kind::node;
      change.node_key = rows::parse_key(stmt->column_text(3));
    } else if (kind == static_cast<int>(StoreChange::Kind::relays)) {
      change.kind = StoreChange::Kind::relays;
    } else if (kind == static_cast<int>(StoreChange::Kind::dns)) {
      change.kind = StoreChange::Kind::dns;
    } else if (kind == static_cast<int>(StoreChange::Kind::policy)) {
      change.kind = StoreChange::Kind::policy;
    } else {
      change.kind = StoreChange::Kind::nodes;  // and anything newer: read everything
    }
    out.push_back(change);
  }
}

Result<void> SqliteStore::trim_changes(UnixSeconds before) {
  auto stmt = db_.prepare("DELETE FROM changes WHERE at < ?1");
  if (!stmt) return stmt.error();
  return stmt->bind(1, before).run();
}

Result<StoreSnapshot> SqliteStore::export_all() {
  // One read transaction: a consistent picture even while a server writes.
  if (auto r = db_.exec("BEGIN"); !r) return r.error();
  struct Rollback {
    Database& db;
    ~Rollback() { (void)db.exec("ROLLBACK"); }
  } rollback{db_};
  StoreSnapshot out;
  auto mesh = mesh_settings();
  if (!mesh) return mesh.error();
  out.mesh = *mesh;
  auto listen = listen_address();
  if (!listen) return listen.error();
  out.listen_address = *listen;
  auto cursor = get_setting(kIpv4CursorKey);
  if (!cursor) return cursor.error();
  if (*cursor) out.ipv4_cursor = static_cast<std::uint32_t>(std::strtoul((*cursor)->c_str(), nullptr, 10));
  auto tokens = list_tokens();
  if (!tokens) return tokens.error();
  out.tokens = std::move(*tokens);
  auto nodes = list_nodes();
  if (!nodes) return nodes.error();
  out.nodes = std::move(*nodes);
  auto stmt = db_.prepare("SELECT " + std::string(rows::kRelayColumns) + " FROM relays ORDER BY name");
  if (!stmt) return stmt.error();
  for (;;) {
    auto step = stmt->step();
    if (step == Statement::Step::done) break;
    if (step == Statement::Step::failed) return stmt->error();
    out.relays.emplace_back(rows::read_relay(*stmt), stmt->column_text(5));
  }
  return out;
}

Result<void> SqliteStore::import_all(const StoreSnapshot& snapshot) {
  auto tx = Transaction::begin(db_);
  if (!tx) return tx.error();
  auto count = db_.prepare(
      "SELECT (SELECT COUNT(*) FROM nodes) + (SELECT COUNT(*) FROM tokens) + "
      "(SELECT COUNT(*) FROM relays)");
  if (!count) return count.error();
  if (count->step() != Statement::Step::row) return count->error();
  if (count->column_int(0) != 0)
    return Error{Errc::conflict, "the target store already holds a mesh: migrate into an empty one"};
  if (snapshot.mesh) {
    if (auto r = put_setting(kIpv4PrefixKey, snapshot.mesh->ipv4_prefix.to_string()); !r) return r;
    if (auto r = put_setting(kIpv6PrefixKey, snapshot.mesh->ipv6_prefix.to_string()); !r) return r;
  }
  if (snapshot.listen_address)
    if (auto r = put_setting(kListenKey, *snapshot.listen_address); !r) return r;
  if (auto r = put_setting(kIpv4CursorKey, std::to_string(snapshot.ipv4_cursor)); !r) return r;
  for (const Token& token : snapshot.tokens)
    if (auto r = add_token(token); !r) return r;
  for (const Node& n : snapshot.nodes) {
    auto stmt = db_.prepare(
        "INSERT INTO nodes (node_key, disco_key, name, hostname, os, ipv4, ipv6, tags, ephemeral, "
        "token_id, created_at, last_seen, online, endpoints, home_relay, disconnected_at) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, NULLIF(?10, ''), ?11, ?12, 0, ?13, ?14, ?15)");
    if (!stmt) return stmt.error();
    stmt->bind(1, rows::key_text(n.node_key))
        .bind(2, rows::key_text(n.disco_key))
        .bind(3, n.name)
        .bind(4, n.hostname)
        .bind(5, n.os)
        .bind(6, n.ipv4.to_string())
        .bind(7, n.ipv6.to_string())
        .bind(8, rows::join_list(n.tags))
        .bind(9, std::int64_t{n.ephemeral})
        .bind(10, n.token_id)
        .bind(11, n.created_at)
        .bind(12, n.last_seen)
        .bind(13, rows::join_endpoints(n.endpoints))
        .bind(14, n.home_relay)
        .bind(15, n.disconnected_at);
    if (auto r = stmt->run(); !r) return r;
  }
  for (const auto& [relay, token_id] : snapshot.relays) {
    auto stmt = db_.prepare(
        "INSERT INTO relays (name, node_key, addresses, stun_port, token_id, registered_at, "
        "online, last_seen) VALUES (?1, ?2, ?3, ?4, NULLIF(?5, ''), ?6, 0, ?7)");
    if (!stmt) return stmt.error();
    stmt->bind(1, relay.name)
        .bind(2, rows::key_text(relay.node_key))
        .bind(3, rows::join_list(relay.addresses))
        .bind(4, std::int64_t{relay.stun_port})
        .bind(5, token_id)
        .bind(6, relay.registered_at)
        .bind(7, relay.last_seen);
    if (auto r = stmt->run(); !r) return r;
  }
  if (snapshot.mesh)
    if (auto r = rebuild_free_ranges(*snapshot.mesh); !r) return r;
  if (auto r = note(StoreChange::Kind::nodes, nullptr); !r) return r;
  return tx->commit();
}

}  // namespace knit::coordinator
