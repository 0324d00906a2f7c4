// SqliteStore: coordinators' leases (Store::renew_lease). One SQLite file usually has one
// coordinator, but the semantics are the PostgreSQL store's, so the store suite runs on both.
#include "coordinator/sqlite_rows.hpp"
#include "coordinator/sqlite_store.hpp"

namespace knit::coordinator {

Result<bool> SqliteStore::renew_lease(UnixSeconds now, UnixSeconds duration) {
  if (coordinator_id_.empty()) return true;
  auto tx = Transaction::begin(db_);
  if (!tx) return tx.error();
  auto held = db_.prepare("SELECT 1 FROM coordinators WHERE id = ?1");
  if (!held) return held.error();
  held->bind(1, coordinator_id_);
  const auto step = held->step();
  if (step == Statement::Step::failed) return held->error();
  const bool had = step == Statement::Step::row;
  auto upsert = db_.prepare(
      "INSERT INTO coordinators (id, expires_at) VALUES (?1, ?2) "
      "ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at");
  if (!upsert) return upsert.error();
  if (auto r = upsert->bind(1, coordinator_id_).bind(2, now + duration).run(); !r) return r.error();
  if (auto r = tx->commit(); !r) return r.error();
  return had;
}

Result<ExpiredLeases> SqliteStore::expire_leases(UnixSeconds now) {
  ExpiredLeases out;
  if (coordinator_id_.empty()) return out;
  auto tx = Transaction::begin(db_);
  if (!tx) return tx.error();
  auto expired = db_.prepare("SELECT id FROM coordinators WHERE expires_at < ?1 AND id <> ?2");
  if (!expired) return expired.error();
  expired->bind(1, now).bind(2, coordinator_id_);
  for (;;) {
    const auto step = expired->step();
    if (step == Statement::Step::done) break;
    if (step == Statement::Step::failed) return expired->error();
    out.coordinators.push_back(expired->column_text(0));
  }
  if (out.coordinators.empty()) return out;
  for (const std::string& id : out.coordinators) {
    // The partial index nodes_connected_to (online = 1) finds them.
    auto held = db_.prepare("SELECT node_key FROM nodes WHERE connected_to = ?1 AND online = 1");
    if (!held) return held.error();
    held->bind(1, id);
    for (;;) {
      const auto step = held->step();
      if (step == Statement::Step::done) break;
      if (step == Statement::Step::failed) return held->error();
      out.nodes.push_back(rows::parse_key(held->column_text(0)));
    }
    auto offline = db_.prepare(
        "UPDATE nodes SET online = 0, disconnected_at = ?2 WHERE connected_to = ?1 AND online = 1");
    if (!offline) return offline.error();
    if (auto r = offline->bind(1, id).bind(2, now).run(); !r) return r.error();
    auto gone = db_.prepare("DELETE FROM coordinators WHERE id = ?1");
    if (!gone) return gone.error();
    if (auto r = gone->bind(1, id).run(); !r) return r.error();
  }
  if (out.nodes.size() > kMaxLeaseNodeNotes) {
    if (auto r = note(StoreChange::Kind::nodes, nullptr); !r) return r.error();
  } else {
    for (const wg::PublicKey& key : out.nodes)
      if (auto r = note(StoreChange::Kind::node, &key); !r) return r.error();
  }
  if (auto r = tx->commit(); !r) return r.error();
  return out;
}

Result<void> SqliteStore::release_lease() {
  if (coordinator_id_.empty()) return Ok{};
  auto stmt = db_.prepare("DELETE FROM coordinators WHERE id = ?1");
  if (!stmt) return stmt.error();
  return stmt->bind(1, coordinator_id_).run();
}

}  // namespace knit::coordinator
