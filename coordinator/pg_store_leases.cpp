// PgStore: coordinators' leases (Store::renew_lease). Of two survivors expiring the same lease,
// the DELETE ... RETURNING that takes the row is the one that takes its nodes offline; the other
// waits on the row lock and then finds it gone.
#include "base/bytes.hpp"
#include "coordinator/pg_store.hpp"
#include "coordinator/pg_store_rows.hpp"

namespace knit::coordinator {

Result<bool> PgStore::renew_lease(UnixSeconds now, UnixSeconds duration) {
  if (coordinator_id_.empty()) return true;
  bool had = false;
  auto done = conn_.run_transaction([&]() -> Result<void> {
    auto renewed = conn_.exec("UPDATE coordinators SET expires_at = $2 WHERE id = $1",
                              {coordinator_id_, pg_int(now + duration)});
    if (!renewed) return renewed.error();
    had = renewed->affected() > 0;
    if (had) return Ok{};
    auto taken = conn_.exec(
        "INSERT INTO coordinators (id, expires_at) VALUES ($1, $2) "
        "ON CONFLICT (id) DO UPDATE SET expires_at = excluded.expires_at",
        {coordinator_id_, pg_int(now + duration)});
    if (!taken) return taken.error();
    return Ok{};
  });
  if (!done) return done.error();
  return had;
}

Result<ExpiredLeases> PgStore::expire_leases(UnixSeconds now) {
  ExpiredLeases out;
  if (coordinator_id_.empty()) return out;
  auto done = conn_.run_transaction([&]() -> Result<void> {
    out = {};  // a retried transaction starts again
    auto expired = conn_.exec(
        "DELETE FROM coordinators WHERE expires_at < $1 AND id <> $2 RETURNING id",
        {pg_int(now), coordinator_id_});
    if (!expired) return expired.error();
    for (int i = 0; i < expired->rows(); ++i) out.coordinators.push_back(expired->text(i, 0));
    for (const std::string& id : out.coordinators) {
      // The partial index nodes_connected_to (online = 1) finds them.
      auto offline = conn_.exec(
          "UPDATE nodes SET online = 0, disconnected_at = $2 "
          "WHERE connected_to = $1 AND online = 1 RETURNING node_key",
          {id, pg_int(now)});
      if (!offline) return offline.error();
      for (int i = 0; i < offline->rows(); ++i)
        out.nodes.push_back(pg_rows::parse_key(offline->text(i, 0)));
    }
    if (out.nodes.size() > kMaxLeaseNodeNotes) return notify(StoreChange::Kind::nodes, nullptr);
    for (const wg::PublicKey& key : out.nodes)
      if (auto r = notify(StoreChange::Kind::node, &key); !r) return r;
    return Ok{};
  });
  if (!done) return done.error();
  return out;
}

Result<void> PgStore::release_lease() {
  if (coordinator_id_.empty()) return Ok{};
  return conn_.run_transaction([&]() -> Result<void> {
    auto r = conn_.exec("DELETE FROM coordinators WHERE id = $1", {coordinator_id_});
    if (!r) return r.error();
    return Ok{};
  });
}

}  // namespace knit::coordinator
