// PgStore: nodes joining, their addresses (free ranges under the cursor row's lock) and names,
// presence and ephemeral expiry.
#include <charconv>

#include "base/bytes.hpp"
#include "control/constants.hpp"
#include "control/host_port.hpp"
#include "coordinator/mesh_settings.hpp"
#include "coordinator/names.hpp"
#include "coordinator/pg_store.hpp"
#include "coordinator/pg_store_rows.hpp"

namespace knit::coordinator {

namespace {

bool accepts_own_token(TokenCheck check) {
  return check != TokenCheck::unknown && check != TokenCheck::wrong_kind;
}

}  // namespace

Result<std::vector<Node>> PgStore::select_nodes(std::string_view where_and_order,
                                                const std::vector<PgParam>& params) {
  auto r = conn_.exec("SELECT " + std::string(pg_rows::kNodeColumns) + " FROM nodes " +
                          std::string(where_and_order),
                      params);
  if (!r) return r.error();
  std::vector<Node> out;
  out.reserve(static_cast<std::size_t>(r->rows()));
  for (int i = 0; i < r->rows(); ++i) out.push_back(pg_rows::read_node(*r, i));
  return out;
}

Result<std::vector<Node>> PgStore::list_nodes() {
  std::vector<Node> out;
  auto done = conn_.run_transaction([&]() -> Result<void> {
    auto nodes = select_nodes("ORDER BY name", {});
    if (!nodes) return nodes.error();
    out = std::move(*nodes);
    return Ok{};
  });
  if (!done) return done.error();
  return out;
}

Result<std::optional<Node>> PgStore::find_node(const wg::PublicKey& node_key) {
  std::optional<Node> out;
  auto done = conn_.run_transaction([&]() -> Result<void> {
    auto nodes = select_nodes("WHERE node_key = $1", {to_base64(node_key)});
    if (!nodes) return nodes.error();
    out.reset();
    if (!nodes->empty()) out = std::move(nodes->front());
    return Ok{};
  });
  if (!done) return done.error();
  return out;
}

Result<std::optional<Node>> PgStore::find_node_by_name(std::string_view name) {
  if (name.empty()) return std::optional<Node>();
  std::optional<Node> out;
  auto done = conn_.run_transaction([&]() -> Result<void> {
    auto nodes = select_nodes("WHERE name = $1", {std::string(name)});
    if (!nodes) return nodes.error();
    out.reset();
    if (!nodes->empty()) out = std::move(nodes->front());
    return Ok{};
  });
  if (!done) return done.error();
  return out;
}

Result<bool> PgStore::key_in_table(std::string_view table, const wg::PublicKey& key) {
  auto r = conn_.exec("SELECT 1 FROM " + std::string(table) + " WHERE node_key = $1",
                      {to_base64(key)});
  if (!r) return r.error();
  return r->rows() > 0;
}

// ---- addresses ----

Result<std::optional<FreeRange>> PgStore::range_lookup(bool floor, std::uint32_t at) {
  auto r = conn_.exec(floor ? "SELECT first, last FROM ipv4_free WHERE first <= $1 "
                              "ORDER BY first DESC LIMIT 1"
                            : "SELECT first, last FROM ipv4_free WHERE first > $1 "
                              "ORDER BY first LIMIT 1",
                      {pg_int(std::int64_t{at})});
  if (!r) return r.error();
  if (r->rows() == 0) return std::optional<FreeRange>();
  return std::optional<FreeRange>(FreeRange{static_cast<std::uint32_t>(r->integer(0, 0)),
                                            static_cast<std::uint32_t>(r->integer(0, 1))});
}

Result<void> PgStore::rebuild_free_ranges(const MeshSettings& mesh) {
  auto ipam = Ipam::make(mesh.ipv4_prefix, mesh.ipv6_prefix);
  if (!ipam) return Error{Errc::io, "the database holds an unusable mesh prefix"};
  auto nodes = conn_.exec("SELECT ipv4 FROM nodes");
  if (!nodes) return nodes.error();
  std::vector<std::uint32_t> used;
  for (int i = 0; i < nodes->rows(); ++i)
    if (auto a = IpAddress::parse(nodes->text(i, 0)); a && a->is_v4()) used.push_back(a->v4_host_order());
  if (auto r = conn_.exec("DELETE FROM ipv4_free"); !r) return r.error();
  for (const FreeRange& range : ipam->free_ranges(std::move(used))) {
    auto r = conn_.exec("INSERT INTO ipv4_free (first, last) VALUES ($1, $2)",
                        {pg_int(std::int64_t{range.first}), pg_int(std::int64_t{range.last})});
    if (!r) return r.error();
  }
  return put_setting(kFreeBuiltKey, "1");
}

Result<void> PgStore::hold_cursor(const MeshSettings& mesh) {
  if (cursor_) return Ok{};
  // The cursor row's lock serialises every allocation in the mesh (see pg_store.hpp).
  auto cursor_text = get_setting(kIpv4CursorKey, /*for_update=*/true);
  if (!cursor_text) return cursor_text.error();
  auto built = get_setting(kFreeBuiltKey);
  if (!built) return built.error();
  if (!*built)
    if (auto r = rebuild_free_ranges(mesh); !r) return r.error();
  std::uint32_t cursor = 0;
  if (const auto& text = *cursor_text) std::from_chars(text->data(), text->data() + text->size(), cursor);
  cursor_ = HeldCursor{cursor};
  return Ok{};
}

Result<Ipam::Allocation> PgStore::take_address(
    const Ipam& ipam, const MeshSettings& mesh,
    const std::optional<std::optional<FreeRange>>& floor_at_cursor, std::vector<PgStatement>& writes) {
  const bool prefetched = cursor_.has_value() && floor_at_cursor.has_value();
  if (auto r = hold_cursor(mesh); !r) return r.error();
  const std::uint32_t cursor = cursor_->value;
  FallibleRanges ranges([&](bool floor, std::uint32_t at) -> Result<std::optional<FreeRange>> {
    if (prefetched && floor && at == cursor) return *floor_at_cursor;
    return range_lookup(floor, at);
  });
  Ipam::Allocation allocation = ipam.allocate(cursor, ranges.floor(), ranges.above());
  if (ranges.failed()) return *ranges.failed();
  if (allocation.status == Ipam::Status::mesh_full) return allocation;
  if (allocation.rest.size() == 1 && allocation.rest[0].last == allocation.from.last) {
    // The usual case (next-fit from the range's first address): the range shrinks in place.
    writes.push_back({"UPDATE ipv4_free SET first = $2 WHERE first = $1",
                      {pg_int(std::int64_t{allocation.from.first}),
                       pg_int(std::int64_t{allocation.rest[0].first})}});
  } else {
    writes.push_back({"DELETE FROM ipv4_free WHERE first = $1", {pg_int(std::int64_t{allocation.from.first})}});
    for (const FreeRange& range : allocation.rest)
      writes.push_back({"INSERT INTO ipv4_free (first, last) VALUES ($1, $2)",
                        {pg_int(std::int64_t{range.first}), pg_int(std::int64_t{range.last})}});
  }
  writes.push_back({"INSERT INTO settings (key, value) VALUES ($1, $2) "
                    "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                    {std::string(kIpv4CursorKey), std::to_string(allocation.next_cursor)}});
  cursor_->value = allocation.next_cursor;
  return allocation;
}

Result<void> PgStore::release_address(const MeshSettings& mesh, const IpAddress& ipv4) {
  if (!ipv4.is_v4()) return Ok{};
  auto cursor = get_setting(kIpv4CursorKey, /*for_update=*/true);  // the same lock
  if (!cursor) return cursor.error();
  auto built = get_setting(kFreeBuiltKey);
  if (!built) return built.error();
  if (!*built) return Ok{};
  auto ipam = Ipam::make(mesh.ipv4_prefix, mesh.ipv6_prefix);
  if (!ipam) return Error{Errc::io, "the database holds an unusable mesh prefix"};
  FallibleRanges ranges([this](bool floor, std::uint32_t at) { return range_lookup(floor, at); });
  const Ipam::Release release = ipam->release(ipv4.v4_host_order(), ranges.floor(), ranges.above());
  if (ranges.failed()) return *ranges.failed();
  if (release.already_free) return Ok{};
  for (const FreeRange& range : release.remove)
    if (auto r = conn_.exec("DELETE FROM ipv4_free WHERE first = $1",
                            {pg_int(std::int64_t{range.first})});
        !r)
      return r.error();
  auto r = conn_.exec("INSERT INTO ipv4_free (first, last) VALUES ($1, $2)",
                      {pg_int(std::int64_t{release.merged.first}),
                       pg_int(std::int64_t{release.merged.last})});
  if (!r) return r.error();
  return Ok{};
}

// ---- joining ----

namespace {

constexpr std::string_view kMeshNotSetUp = "the mesh is not set up yet (ensure_mesh first)";

}  // namespace

Result<JoinResult> PgStore::join_node(const NodeRegistration& reg,
                                      const std::optional<PresentedToken>& presented,
                                      UnixSeconds now) {
  JoinResult result;
  auto done = conn_.run_transaction([&]() -> Result<void> {
    result = {};
    cursor_.reset();  // a retried transaction holds no lock
    auto mesh = mesh_settings();
    if (!mesh) return mesh.error();
    if (!*mesh) return Error{Errc::conflict, std::string(kMeshNotSetUp)};
    bool decided = false;
    return join_in_transaction(reg, presented, **mesh, now, nullptr, result, decided);
  });
  cursor_.reset();
  if (!done) {
    if (done.error().code == Errc::invalid && result.token != TokenCheck::ok) return result;
    return done.error();
  }
  return result;
}

std::vector<Result<JoinResult>> PgStore::join_nodes(const std::vector<BatchedJoin>& joins,
                                                    UnixSeconds now) {
  std::vector<Result<JoinResult>> out;
  auto done = conn_.run_transaction([&]() -> Result<void> {
    out.clear();  // a retried transaction starts again
    cursor_.reset();
    auto mesh = mesh_settings();  // once: this transaction's, as every join's read was
    if (!mesh) return mesh.error();
    if (!*mesh) return Error{Errc::conflict, std::string(kMeshNotSetUp)};
    // One round trip a join: the writes of the join before, then this one's reads. A join's
    // reads see everything the joins before it wrote (a pipeline runs in order).
    std::vector<PgStatement> carried;  // the writes of the last join, not sent yet
    JoinPlan carried_plan;
    JoinResult carried_result;
    bool carrying = false;
    for (const BatchedJoin& join : joins) {
      JoinPlan plan;
      std::vector<PgStatement> statements = std::move(carried);
      carried.clear();
      const std::size_t offset = statements.size();
      // A join writes nothing before it is decided (its writes go with the next join's reads),
      // so a refused one is dropped; no savepoint is needed.
      join_reads(join.registration, join.token, statements, plan);
      auto rows = conn_.exec_pipeline(statements);
      if (!rows) return rows.error();
      if (carrying) {
        if (auto r = join_finish(*rows, 0, carried_plan, carried_result); !r) return r;
        out.emplace_back(std::move(carried_result));
        carrying = false;
      }
      JoinResult result;
      bool decided = false;
      auto r = join_writes(join.registration, join.token, **mesh, now, &join.endpoints, *rows,
                           offset, plan, carried, result, decided);
      if (r) {
        carried_plan = plan;
        carried_result = std::move(result);
        carrying = true;
        continue;
      }
      carried.clear();
      // Anything but this join's own outcome (a refusal, a full mesh, a relay's key) is the
      // transaction's: a lost connection or a race with another coordinator runs it all again.
      if (!decided) return r.error();
      // Its row locks (its node's, the token's, the cursor's) stay until the commit.
      if (r.error().code == Errc::invalid && result.token != TokenCheck::ok)
        out.emplace_back(std::move(result));
      else
        out.emplace_back(r.error());
    }
    if (carrying) {
      auto rows = conn_.exec_pipeline(carried);
      if (!rows) return rows.error();
      if (auto r = join_finish(*rows, 0, carried_plan, carried_result); !r) return r;
      out.emplace_back(std::move(carried_result));
    }
    return Ok{};
  });
  cursor_.reset();
  if (!done) {
    out.clear();
    for (std::size_t i = 0; i < joins.size(); ++i) out.emplace_back(done.error());
  }
  return out;
}

Result<void> PgStore::join_in_transaction(const NodeRegistration& reg,
                                          const std::optional<PresentedToken>& presented,
                                          const MeshSettings& mesh, UnixSeconds now,
                                          const std::vector<Endpoint>* endpoints,
                                          JoinResult& result, bool& decided) {
  JoinPlan plan;
  std::vector<PgStatement> reads;
  join_reads(reg, presented, reads, plan);
  auto rows = conn_.exec_pipeline(reads);
  if (!rows) return rows.error();
  std::vector<PgStatement> writes;
  if (auto r = join_writes(reg, presented, mesh, now, endpoints, *rows, 0, plan, writes, result,
                           decided);
      !r)
    return r;
  auto wrote = conn_.exec_pipeline(writes);
  if (!wrote) return wrote.error();
  return join_finish(*wrote, 0, plan, result);
}

// The node row is locked first, then the token's (the same lock order as every other
// transaction). The name and the free range at the cursor are read in case this is a new node.
void PgStore::join_reads(const NodeRegistration& reg,
                         const std::optional<PresentedToken>& presented,
                         std::vector<PgStatement>& reads, JoinPlan& plan) {
  const std::string key = to_base64(reg.node_key);
  const std::size_t base = reads.size();  // the plan counts from here
  plan.node_at = reads.size() - base;
  reads.push_back({"SELECT " + std::string(pg_rows::kNodeColumns) +
                       " FROM nodes WHERE node_key = $1 FOR UPDATE",
                   {key}});
  reads.push_back({"SELECT 1 FROM relays WHERE node_key = $1", {key}});
  if (!presented) return;
  plan.token_at = reads.size() - base;
  reads.push_back({"SELECT " + std::string(pg_rows::kTokenColumns) +
                       " FROM tokens WHERE id = $1 FOR UPDATE",
                   {presented->id}});
  reads.push_back({"SELECT 1 FROM nodes WHERE name = $1", {sanitize_label(reg.hostname)}});
  if (cursor_) {
    plan.floor_at = reads.size() - base;
    reads.push_back({"SELECT first, last FROM ipv4_free WHERE first <= $1 "
                     "ORDER BY first DESC LIMIT 1",
                     {pg_int(std::int64_t{cursor_->value})}});
  }
}

Result<void> PgStore::join_writes(const NodeRegistration& reg,
                                  const std::optional<PresentedToken>& presented,
                                  const MeshSettings& mesh, UnixSeconds now,
                                  const std::vector<Endpoint>* endpoints,
                                  const std::vector<PgResult>& all_rows, std::size_t offset,
                                  JoinPlan& plan, std::vector<PgStatement>& writes,
                                  JoinResult& result, bool& decided) {
  auto ipam = Ipam::make(mesh.ipv4_prefix, mesh.ipv6_prefix);
  if (!ipam) return Error{Errc::io, "the database holds an unusable mesh prefix"};
  const std::string key = to_base64(reg.node_key);
  const std::string base_name = sanitize_label(reg.hostname);
  auto row = [&](std::size_t at) -> const PgResult& { return all_rows[offset + at]; };

  std::optional<Node> existing;
  if (row(plan.node_at).rows() > 0) existing = pg_rows::read_node(row(plan.node_at), 0);
  plan.existing = existing.has_value();
  if (row(plan.node_at + 1).rows() > 0) {
    decided = true;
    return Error{Errc::conflict, "this key is a relay's key, not a node's"};
  }

  std::optional<Token> token;
  if (presented) {
    const bool own = existing && existing->token_id == presented->id;
    std::optional<Token> stored;
    if (row(plan.token_at).rows() > 0) stored = pg_rows::read_token(row(plan.token_at), 0);
    // The row is locked: a concurrent use of the same token waits until this one commits,
    // then sees the count it left.
    const TokenCheck check =
        check_token(stored ? &*stored : nullptr, presented->secret_hash, TokenUse::node, now);
    if (own ? !accepts_own_token(check) : check != TokenCheck::ok) {
      result.token = check;
      decided = true;
      return Error{Errc::invalid, "refused"};  // rolls back; reported through result.token
    }
    if (!own) {
      writes.push_back({"UPDATE tokens SET uses = uses + 1 WHERE id = $1", {presented->id}});
      ++stored->uses;
      token = std::move(stored);
    }
  } else if (!existing) {
    result.token = TokenCheck::unknown;
    decided = true;
    return Error{Errc::invalid, "refused"};
  }
  result.token = TokenCheck::ok;

  std::optional<Error> failed;
  if (existing) {
    std::string name = existing->name;
    if (base_name != sanitize_label(existing->hostname)) {
      name = unique_name(base_name, [&](const std::string& n) {
        auto r = conn_.exec("SELECT 1 FROM nodes WHERE name = $1 AND node_key <> $2", {n, key});
        if (!r) {
          if (!failed) failed = r.error();
          return true;
        }
        return r->rows() > 0;
      });
    }
    if (failed) return *failed;
    PgParam token_id = token ? PgParam(token->id)
                             : (existing->token_id.empty() ? PgParam() : PgParam(existing->token_id));
    std::vector<PgParam> params{key,
                                to_base64(reg.disco_key),
                                name,
                                reg.hostname,
                                reg.os,
                                pg_int(now),
                                pg_rows::join_list(token ? token->tags : existing->tags),
                                pg_int(token ? token->ephemeral : existing->ephemeral),
                                token_id,
                                coordinator_id_};
    if (endpoints) params.push_back(pg_rows::join_endpoints(*endpoints));
    writes.push_back({std::string("UPDATE nodes SET disco_key = $2, name = $3, hostname = $4, os = $5, "
                                  "last_seen = $6, online = 1, disconnected_at = NULL, tags = $7, "
                                  "ephemeral = $8, token_id = $9, connected_to = $10") +
                          (endpoints ? ", endpoints = $11" : "") + " WHERE node_key = $1 RETURNING " +
                          std::string(pg_rows::kNodeColumns),
                      std::move(params)});
  } else {
    std::optional<std::optional<FreeRange>> floor;
    if (plan.floor_at != 0) {
      floor.emplace();
      if (row(plan.floor_at).rows() > 0)
        *floor = FreeRange{static_cast<std::uint32_t>(row(plan.floor_at).integer(0, 0)),
                           static_cast<std::uint32_t>(row(plan.floor_at).integer(0, 1))};
    }
    auto taken = take_address(*ipam, mesh, floor, writes);
    if (!taken) return taken.error();
    if (taken->status == Ipam::Status::mesh_full) {
      decided = true;
      return Error{Errc::mesh_full, "the mesh is full: all " + std::to_string(ipam->capacity()) +
                                        " addresses of " + mesh.ipv4_prefix.to_string() +
                                        " are taken; remove nodes to make room"};
    }
    const bool base_taken = row(plan.token_at + 1).rows() > 0;
    std::string name = unique_name(base_name, [&](const std::string& n) {
      if (n == base_name) return base_taken;
      auto r = conn_.exec("SELECT 1 FROM nodes WHERE name = $1", {n});
      if (!r) {
        if (!failed) failed = r.error();
        return true;
      }
      return r->rows() > 0;
    });
    if (failed) return *failed;
    std::vector<PgParam> params{key,
                                to_base64(reg.disco_key),
                                name,
                                reg.hostname,
                                reg.os,
                                taken->ipv4.to_string(),
                                taken->ipv6.to_string(),
                                pg_rows::join_list(token->tags),
                                pg_int(token->ephemeral),
                                token->id,
                                pg_int(now),
                                coordinator_id_};
    if (endpoints) params.push_back(pg_rows::join_endpoints(*endpoints));
    writes.push_back(
        {std::string("INSERT INTO nodes (node_key, disco_key, name, hostname, os, ipv4, ipv6, tags, "
                     "ephemeral, token_id, created_at, last_seen, online, disconnected_at, "
                     "connected_to") +
             (endpoints ? ", endpoints" : "") +
             ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, 1, NULL, $12" +
             (endpoints ? ", $13" : "") + ") RETURNING " + std::string(pg_rows::kNodeColumns),
         std::move(params)});
  }
  plan.node_row = writes.size() - 1;
  writes.push_back({"SELECT pg_notify($1, $2)",
                    {std::string(kNotifyChannel),
                     origin_ + " " + std::to_string(static_cast<int>(StoreChange::Kind::node)) +
                         " " + key}});
  return Ok{};
}

Result<void> PgStore::join_finish(const std::vector<PgResult>& rows, std::size_t offset,
                                  const JoinPlan& plan, JoinResult& result) {
  const PgResult& node = rows[offset + plan.node_row];
  if (node.rows() == 0)
    return Error{Errc::io, plan.existing ? "database: the node vanished" : "database: the new node vanished"};
  result.node = pg_rows::read_node(node, 0);
  result.created = !plan.existing;
  return Ok{};
}

Result<Node> PgStore::remove_node(std::string_view name) {
  return remove_node_where("WHERE name = $1 FOR UPDATE", std::string(name),
                           "no node named '" + std::string(name) + "' (see nodes list)");
}

Result<Node> PgStore::remove_node(const wg::PublicKey& node_key) {
  return remove_node_where("WHERE node_key = $1 FOR UPDATE", to_base64(node_key),
                           "no node with this node key");
}

// The one node `where` selects (locked): its row goes, its address is free again, and every
// coordinator is told.
Result<Node> PgStore::remove_node_where(const std::string& where, const std::string& value,
                                        const std::string& not_found) {
  Node removed;
  auto done = conn_.run_transaction([&]() -> Result<void> {
    auto rows = select_nodes(where, {value});
    if (!rows) return rows.error();
    if (rows->empty()) return Error{Errc::not_found, not_found};
    removed = std::move(rows->front());
    if (auto r = conn_.exec("DELETE FROM nodes WHERE node_key = $1", {to_base64(removed.node_key)}); !r)
      return r.error();
    auto mesh = mesh_settings();
    if (!mesh) return mesh.error();
    if (*mesh)
      if (auto r = release_address(**mesh, removed.ipv4); !r) return r;
    return notify(StoreChange::Kind::node, &removed.node_key);
  });
  if (!done) return done.error();
  return removed;
}

Result<Node> PgStore::rename_node(std::string_view from, std::string_view to) {
  if (to.empty() || sanitize_label(to) != to)
    return Error{Errc::invalid, "'" + std::string(to) + "' is not a node name: use 1 to 63 of a-z 0-9 -"};
  Node renamed;
  auto done = conn_.run_transaction([&]() -> Result<void> {
    auto rows = select_nodes("WHERE name = $1 FOR UPDATE", {std::string(from)});
    if (!rows) return rows.error();
    if (rows->empty())
      return Error{Errc::not_found, "no node named '" + std::string(from) + "' (see nodes list)"};
    auto taken = select_nodes("WHERE name = $1", {std::string(to)});
    if (!taken) return taken.error();
    if (!taken->empty()) return Error{Errc::conflict, "a node is already named '" + std::string(to) + "'"};
    renamed = std::move(rows->front());
    if (auto r = conn_.exec("UPDATE nodes SET name = $2 WHERE name = $1", {std::string(from), std::string(to)}); !r)
      return r.error();
    renamed.name = std::string(to);
    return notify(StoreChange::Kind::node, &renamed.node_key);
  });
  if (!done) return done.error();
  return renamed;
}

Result<void> PgStore::set_node_online(const wg::PublicKey& node_key, bool online,
                                      UnixSeconds now) {
  return conn_.run_transaction([&]() -> Result<void> {
    auto r = conn_.exec(
        online ? "UPDATE nodes SET online = 1, last_seen = $2, disconnected_at = NULL, "
                 "connected_to = $3 WHERE node_key = $1"
               : "UPDATE nodes SET online = 0, last_seen = $2, disconnected_at = $2 "
                 "WHERE node_key = $1 AND ($3 = '' OR connected_to = $3 OR connected_to = '')",
        {to_base64(node_key), pg_int(now), coordinator_id_});
    if (!r) return r.error();
    if (r->affected() == 0) {
      auto known = key_in_table("nodes", node_key);
      if (!known) return known.error();
      if (!*known) return Error{Errc::not_found, "no node with this key"};
      return Ok{};  // connected to another coordinator now
    }
    return notify(StoreChange::Kind::node, &node_key);
  });
}

Result<void> PgStore::touch_node(const wg::PublicKey& node_key, UnixSeconds now) {
  return conn_.run_transaction([&]() -> Result<void> {
    auto r = conn_.exec("UPDATE nodes SET last_seen = $2 WHERE node_key = $1",
                        {to_base64(node_key), pg_int(now)});
    if (!r) return r.error();
    if (r->affected() == 0) return Error{Errc::not_found, "no node with this key"};
    return Ok{};
  });
}

Result<void> PgStore::set_node_endpoints(const wg::PublicKey& node_key,
                                         const std::vector<Endpoint>& endpoints,
                                         std::string_view home_relay, UnixSeconds now) {
  if (home_relay.find(',') != std::string_view::npos)
    return Error{Errc::invalid, "a relay name cannot contain ','"};
  return conn_.run_transaction([&]() -> Result<void> {
    auto r = conn_.exec(
        "UPDATE nodes SET endpoints = $2, home_relay = $3, last_seen = $4 WHERE node_key = $1",
        {to_base64(node_key), pg_rows::join_endpoints(endpoints), std::string(home_relay),
         pg_int(now)});
    if (!r) return r.error();
    if (r->affected() == 0) return Error{Errc::not_found, "no node with this key"};
    return notify(StoreChange::Kind::node, &node_key);
  });
}

Result<std::vector<Node>> PgStore::expire_ephemeral(UnixSeconds now, UnixSeconds grace) {
  std::vector<Node> gone;
  auto done = conn_.run_transaction([&]() -> Result<void> {
    auto rows = select_nodes(
        "WHERE ephemeral = 1 AND online = 0 AND disconnected_at IS NOT NULL "
        "AND disconnected_at <= $1 ORDER BY name FOR UPDATE",
        {pg_int(now - grace)});
    if (!rows) return rows.error();
    gone = std::move(*rows);
    auto mesh = mesh_settings();
    if (!mesh) return mesh.error();
    for (const Node& node : gone) {
      if (auto r = conn_.exec("DELETE FROM nodes WHERE node_key = $1", {to_base64(node.node_key)}); !r)
        return r.error();
      if (*mesh)
        if (auto r = release_address(**mesh, node.ipv4); !r) return r;
      if (auto r = notify(StoreChange::Kind::node, &node.node_key); !r) return r;
    }
    return Ok{};
  });
  if (!done) return done.error();
  return gone;
}

Result<void> PgStore::mark_all_offline(UnixSeconds now) {
  return conn_.run_transaction([&]() -> Result<void> {
    auto r = conn_.exec(
        "UPDATE nodes SET online = 0, disconnected_at = $1 "
        "WHERE (online = 1 OR disconnected_at IS NULL) "
        "AND ($2 = '' OR connected_to = $2 OR connected_to = '')",
        {pg_int(now), coordinator_id_});
    if (!r) return r.error();
    const bool changed = r->affected() > 0;
    // Relays too are this coordinator's only while connected; with several coordinators a
    // relay may be on another: it says so again when it reconnects.
    if (auto relays = conn_.exec("UPDATE relays SET online = 0, last_seen = $1 WHERE online = 1",
                                 {pg_int(now)});
        !relays)
      return relays.error();
    if (changed) return notify(StoreChange::Kind::nodes, nullptr);
    return Ok{};
  });
}

}  // namespace knit::coordinator
