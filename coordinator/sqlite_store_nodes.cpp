// SqliteStore: nodes joining, their addresses and names, presence and ephemeral expiry.
#include <charconv>
#include <functional>

#include "coordinator/ipam.hpp"
#include "coordinator/names.hpp"
#include "coordinator/sqlite_rows.hpp"
#include "coordinator/sqlite_store.hpp"

namespace knit::coordinator {

namespace {

// A known node re-joining with the token it joined with: the secret must still match, but the
// token's later expiry, revocation or use count do not evict an existing member.
bool accepts_own_token(TokenCheck check) {
  return check != TokenCheck::unknown && check != TokenCheck::wrong_kind;
}

}  // namespace

Result<std::vector<Node>> SqliteStore::select_nodes(
    std::string_view where_and_order, const std::function<void(Statement&)>& bind) {
  auto stmt = db_.prepare("SELECT " + std::string(rows::kNodeColumns) + " FROM nodes " +
                          std::string(where_and_order));
  if (!stmt) return stmt.error();
  if (bind) bind(*stmt);
  std::vector<Node> out;
  for (;;) {
    auto step = stmt->step();
    if (step == Statement::Step::done) return out;
    if (step == Statement::Step::failed) return stmt->error();
    out.push_back(rows::read_node(*stmt));
  }
}

Result<std::vector<Node>> SqliteStore::list_nodes() { return select_nodes("ORDER BY name", {}); }

Result<std::optional<Node>> SqliteStore::find_node(const wg::PublicKey& node_key) {
  auto found = select_nodes("WHERE node_key = ?1",
                            [&](Statement& s) { s.bind(1, rows::key_text(node_key)); });
  if (!found) return found.error();
  if (found->empty()) return std::optional<Node>();
  return std::optional<Node>(std::move(found->front()));
}

Result<std::optional<Node>> SqliteStore::find_node_by_name(std::string_view name) {
  if (name.empty()) return std::optional<Node>();
  auto found = select_nodes("WHERE name = ?1", [&](Statement& s) { s.bind(1, name); });
  if (!found) return found.error();
  if (found->empty()) return std::optional<Node>();
  return std::optional<Node>(std::move(found->front()));
}

Result<JoinResult> SqliteStore::join_node(const NodeRegistration& reg,
                                          const std::optional<PresentedToken>& presented,
                                          UnixSeconds now) {
  auto tx = Transaction::begin(db_);
  if (!tx) return tx.error();
  auto result = join_in_transaction(reg, presented, now);
  if (!result || result->token != TokenCheck::ok) return result;  // the transaction rolls back
  if (auto r = tx->commit(); !r) return r.error();
  return result;
}

std::vector<Result<JoinResult>> SqliteStore::join_nodes(const std::vector<BatchedJoin>& joins,
                                                        UnixSeconds now) {
  std::vector<Result<JoinResult>> out;
  out.reserve(joins.size());
  auto fail_all = [&](const Error& e) {
    out.clear();
    for (std::size_t i = 0; i < joins.size(); ++i) out.emplace_back(e);
    return std::move(out);
  };
  auto run = [&](std::string_view sql) -> Result<void> {
    auto stmt = db_.prepare(sql);
    if (!stmt) return stmt.error();
    return stmt->run();
  };
  auto tx = Transaction::begin(db_);
  if (!tx) return fail_all(tx.error());
  for (const BatchedJoin& join : joins) {
    if (auto r = run("SAVEPOINT one_join"); !r) return fail_all(r.error());
    auto result = join_in_transaction(join.registration, join.token, now);
    if (result && result->token == TokenCheck::ok && result->node.endpoints != join.endpoints) {
      // As set_node_endpoints; the join's own note covers it.
      auto stmt = db_.prepare("UPDATE nodes SET endpoints = ?2, last_seen = ?3 WHERE node_key = ?1");
      if (!stmt) {
        result = stmt.error();
      } else if (auto r = stmt->bind(1, rows::key_text(join.registration.node_key))
                              .bind(2, rows::join_endpoints(join.endpoints))
                              .bind(3, now)
                              .run();
                 !r) {
        result = r.error();
      } else {
        result->node.endpoints = join.endpoints;
        result->node.last_seen = now;
      }
    }
    if (!result || result->token != TokenCheck::ok)
      if (auto r = run("ROLLBACK TO one_join"); !r) return fail_all(r.error());
    if (auto r = run("RELEASE one_join"); !r) return fail_all(r.error());
    out.push_back(std::move(result));
  }
  if (auto r = tx->commit(); !r) return fail_all(r.error());
  return out;
}

Result<JoinResult> SqliteStore::join_in_transaction(const NodeRegistration& reg,
                                                    const std::optional<PresentedToken>& presented,
                                                    UnixSeconds now) {
  auto mesh = mesh_settings();
  if (!mesh) return mesh.error();
  if (!*mesh) return Error{Errc::conflict, "the mesh is not set up yet (ensure_mesh first)"};
  auto existing = find_node(reg.node_key);
  if (!existing) return existing.error();
  auto relay = key_in_table("relays", reg.node_key);
  if (!relay) return relay.error();
  if (*relay) return Error{Errc::conflict, "this key is a relay's key, not a node's"};

  JoinResult result;
  std::optional<Token> token;  // set when the node takes a (new) token's tags and kind
  if (presented) {
    bool own = *existing && (*existing)->token_id == presented->id;
    std::optional<Token> stored;
    auto check = judge_token(*presented, TokenUse::node, now, /*count_use=*/!own, &stored);
    if (!check) return check.error();
    if (own ? !accepts_own_token(*check) : *check != TokenCheck::ok) {
      result.token = *check;
      return result;  // refused; the caller rolls back
    }
    if (!own) token = std::move(stored);
  } else if (!*existing) {
    result.token = TokenCheck::unknown;  // a new node must bring a token
    return result;
  }
  result.token = TokenCheck::ok;

  if (*existing) {
    if (auto r = update_node(**existing, reg, token ? &*token : nullptr, now); !r)
      return r.error();
    auto node = find_node(reg.node_key);
    if (!node) return node.error();
    result.node = std::move(**node);
  } else {
    auto node = insert_node(reg, &*token, **mesh, now);
    if (!node) return node.error();
    result.node = std::move(*node);
    result.created = true;
  }
  if (auto r = note(StoreChange::Kind::node, &reg.node_key); !r) return r.error();
  return result;
}

Result<Node> SqliteStore::insert_node(const NodeRegistration& reg, const Token* token,
                                      const MeshSettings& mesh, UnixSeconds now) {
  auto ipam = Ipam::make(mesh.ipv4_prefix, mesh.ipv6_prefix);
  if (!ipam) return Error{Errc::io, "the state database holds an unusable mesh prefix"};

  // From the free ranges, O(log N); the UNIQUE constraints back this up.
  auto taken = take_address(mesh);
  if (!taken) return taken.error();
  const Ipam::Allocation& allocation = *taken;
  if (allocation.status == Ipam::Status::mesh_full)
    return Error{Errc::mesh_full, "the mesh is full: all " + std::to_string(ipam->capacity()) +
                                      " addresses of " + mesh.ipv4_prefix.to_string() +
                                      " are taken; remove nodes to make room"};

  std::string name = unique_name(sanitize_label(reg.hostname), [&](const std::string& n) {
    auto found = find_node_by_name(n);
    return !found || found->has_value();  // on a read error, treat the name as taken
  });

  auto stmt = db_.prepare(
      "INSERT INTO nodes (node_key, disco_key, name, hostname, os, ipv4, ipv6, tags, ephemeral, "
      "token_id, created_at, last_seen, online, disconnected_at, connected_to) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?11, 1, NULL, ?12)");
  if (!stmt) return stmt.error();
  stmt->bind(1, rows::key_text(reg.node_key))
      .bind(2, rows::key_text(reg.disco_key))
      .bind(3, name)
      .bind(4, reg.hostname)
      .bind(5, reg.os)
      .bind(6, allocation.ipv4.to_string())
      .bind(7, allocation.ipv6.to_string())
      .bind(8, rows::join_list(token->tags))
      .bind(9, std::int64_t{token->ephemeral})
      .bind(10, token->id)
      .bind(11, now)
      .bind(12, coordinator_id_);
  if (auto r = stmt->run(); !r) return r.error();
  auto node = find_node(reg.node_key);
  if (!node) return node.error();
  if (!*node) return Error{Errc::io, "database: the new node vanished"};
  return std::move(**node);
}

Result<void> SqliteStore::update_node(const Node& old, const NodeRegistration& reg,
                                      const Token* token, UnixSeconds now) {
  std::string name = old.name;
  if (sanitize_label(reg.hostname) != sanitize_label(old.hostname)) {
    name = unique_name(sanitize_label(reg.hostname), [&](const std::string& n) {
      auto found = find_node_by_name(n);
      return !found || (found->has_value() && (*found)->node_key != old.node_key);
    });
  }
  auto stmt = db_.prepare(
      "UPDATE nodes SET disco_key = ?2, name = ?3, hostname = ?4, os = ?5, last_seen = ?6, "
      "online = 1, disconnected_at = NULL, tags = ?7, ephemeral = ?8, token_id = ?9, "
      "connected_to = ?10 WHERE node_key = ?1");
  if (!stmt) return stmt.error();
  stmt->bind(1, rows::key_text(old.node_key))
      .bind(2, rows::key_text(reg.disco_key))
      .bind(3, name)
      .bind(4, reg.hostname)
      .bind(5, reg.os)
      .bind(6, now)
      .bind(7, rows::join_list(token ? token->tags : old.tags))
      .bind(8, std::int64_t{token ? token->ephemeral : old.ephemeral})
      .bind(10, coordinator_id_);
  if (token)
    stmt->bind(9, token->id);
  else if (old.token_id.empty())
    stmt->bind_null(9);
  else
    stmt->bind(9, old.token_id);
  return stmt->run();
}

Result<Node> SqliteStore::remove_node(std::string_view name) {
  auto tx = Transaction::begin(db_);
  if (!tx) return tx.error();
  auto node = find_node_by_name(name);
  if (!node) return node.error();
  if (!*node)
    return Error{Errc::not_found, "no node named '" + std::string(name) + "' (see nodes list)"};
  return remove_found_node(**node, *tx);
}

Result<Node> SqliteStore::remove_node(const wg::PublicKey& node_key) {
  auto tx = Transaction::begin(db_);
  if (!tx) return tx.error();
  auto node = find_node(node_key);
  if (!node) return node.error();
  if (!*node) return Error{Errc::not_found, "no node with this node key"};
  return remove_found_node(**node, *tx);
}

// The node, read inside `tx`: its row goes, its address is free again, the change is noted.
Result<Node> SqliteStore::remove_found_node(Node& node, Transaction& tx) {
  auto stmt = db_.prepare("DELETE FROM nodes WHERE node_key = ?1");
  if (!stmt) return stmt.error();
  if (auto r = stmt->bind(1, rows::key_text(node.node_key)).run(); !r) return r.error();
  auto mesh = mesh_settings();
  if (!mesh) return mesh.error();
  if (*mesh)
    if (auto r = release_address(**mesh, node.ipv4); !r) return r.error();
  if (auto r = note(StoreChange::Kind::node, &node.node_key); !r) return r.error();
  if (auto r = tx.commit(); !r) return r.error();
  return std::move(node);
}

Result<Node> SqliteStore::rename_node(std::string_view from, std::string_view to) {
  if (to.empty() || sanitize_label(to) != to)
    return Error{Errc::invalid, "'" + std::string(to) + "' is not a node name: use 1 to 63 of a-z 0-9 -"};
  auto tx = Transaction::begin(db_);
  if (!tx) return tx.error();
  auto node = find_node_by_name(from);
  if (!node) return node.error();
  if (!*node) return Error{Errc::not_found, "no node named '" + std::string(from) + "' (see nodes list)"};
  auto taken = find_node_by_name(to);
  if (!taken) return taken.error();
  if (*taken) return Error{Errc::conflict, "a node is already named '" + std::string(to) + "'"};
  auto stmt = db_.prepare("UPDATE nodes SET name = ?2 WHERE name = ?1");
  if (!stmt) return stmt.error();
  if (auto r = stmt->bind(1, from).bind(2, to).run(); !r) return r.error();
  if (auto r = note(StoreChange::Kind::node, &(*node)->node_key); !r) return r.error();
  if (auto r = tx->commit(); !r) return r.error();
  (*node)->name = std::string(to);
  return std::move(**node);
}

Result<void> SqliteStore::set_node_online(const wg::PublicKey& node_key, bool online,
                                          UnixSeconds now) {
  auto tx = Transaction::begin(db_);
  if (!tx) return tx.error();
  // Online: this coordinator's node from now on. Offline: only for the coordinator it is
  // connected to (?3; empty for an admin), not one it already left.
  auto stmt = db_.prepare(
      online ? "UPDATE nodes SET online = 1, last_seen = ?2, disconnected_at = NULL, "
               "connected_to = ?3 WHERE node_key = ?1"
             : "UPDATE nodes SET online = 0, last_seen = ?2, disconnected_at = ?2 "
               "WHERE node_key = ?1 AND (?3 = '' OR connected_to = ?3 OR connected_to = '')");
  if (!stmt) return stmt.error();
  if (auto r = stmt->bind(1, rows::key_text(node_key)).bind(2, now).bind(3, coordinator_id_).run();
      !r)
    return r;
  if (db_.changes() == 0) {
    auto known = find_node(node_key);
    if (!known) return known.error();
    if (!*known) return Error{Errc::not_found, "no node with this key"};
    return Ok{};  // connected to another coordinator now: nothing to say
  }
  if (auto r = note(StoreChange::Kind::node, &node_key); !r) return r;
  return tx->commit();
}

Result<void> SqliteStore::touch_node(const wg::PublicKey& node_key, UnixSeconds now) {
  auto stmt = db_.prepare("UPDATE nodes SET last_seen = ?2 WHERE node_key = ?1");
  if (!stmt) return stmt.error();
  if (auto r = stmt->bind(1, rows::key_text(node_key)).bind(2, now).run(); !r) return r;
  if (db_.changes() == 0) return Error{Errc::not_found, "no node with this key"};
  return Ok{};
}

Result<void> SqliteStore::set_node_endpoints(const wg::PublicKey& node_key,
                                             const std::vector<Endpoint>& endpoints,
                                             std::string_view home_relay, UnixSeconds now) {
  if (home_relay.find(',') != std::string_view::npos)
    return Error{Errc::invalid, "a relay name cannot contain ','"};
  auto tx = Transaction::begin(db_);
  if (!tx) return tx.error();
  auto stmt = db_.prepare(
      "UPDATE nodes SET endpoints = ?2, home_relay = ?3, last_seen = ?4 WHERE node_key = ?1");
  if (!stmt) return stmt.error();
  stmt->bind(1, rows::key_text(node_key))
      .bind(2, rows::join_endpoints(endpoints))
      .bind(3, home_relay)
      .bind(4, now);
  if (auto r = stmt->run(); !r) return r;
  if (db_.changes() == 0) return Error{Errc::not_found, "no node with this key"};
  if (auto r = note(StoreChange::Kind::node, &node_key); !r) return r;
  return tx->commit();
}

Result<std::vector<Node>> SqliteStore::expire_ephemeral(UnixSeconds now, UnixSeconds grace) {
  auto tx = Transaction::begin(db_);
  if (!tx) return tx.error();
  auto gone = select_nodes(
      "WHERE ephemeral = 1 AND online = 0 AND disconnected_at IS NOT NULL "
      "AND disconnected_at <= ?1 ORDER BY name",
      [&](Statement& s) { s.bind(1, std::int64_t{now - grace}); });
  if (!gone) return gone.error();
  auto mesh = mesh_settings();
  if (!mesh) return mesh.error();
  for (const Node& node : *gone) {
    auto stmt = db_.prepare("DELETE FROM nodes WHERE node_key = ?1");
    if (!stmt) return stmt.error();
    if (auto r = stmt->bind(1, rows::key_text(node.node_key)).run(); !r) return r.error();
    if (*mesh)
      if (auto r = release_address(**mesh, node.ipv4); !r) return r.error();
    if (auto r = note(StoreChange::Kind::node, &node.node_key); !r) return r.error();
  }
  if (auto r = tx->commit(); !r) return r.error();
  return std::move(*gone);
}

Result<void> SqliteStore::mark_all_offline(UnixSeconds now) {
  // Only this coordinator's nodes (set_coordinator_id): another coordinator's are connected.
  auto tx = Transaction::begin(db_);
  if (!tx) return tx.error();
  auto stmt = db_.prepare(
      "UPDATE nodes SET online = 0, disconnected_at = ?1 "
      "WHERE (online = 1 OR disconnected_at IS NULL) "
      "AND (?2 = '' OR connected_to = ?2 OR connected_to = '')");
  if (!stmt) return stmt.error();
  if (auto r = stmt->bind(1, now).bind(2, coordinator_id_).run(); !r) return r;
  const bool changed = db_.changes() > 0;
  auto relays = db_.prepare("UPDATE relays SET online = 0, last_seen = ?1 WHERE online = 1");
  if (!relays) return relays.error();
  if (auto r = relays->bind(1, now).run(); !r) return r;
  if (changed)
    if (auto r = note(StoreChange::Kind::nodes, nullptr); !r) return r;
  return tx->commit();
}

Result<bool> SqliteStore::key_in_table(std::string_view table, const wg::PublicKey& key) {
  auto stmt = db_.prepare("SELECT 1 FROM " + std::string(table) + " WHERE node_key = ?1");
  if (!stmt) return stmt.error();
  stmt->bind(1, rows::key_text(key));
  auto step = stmt->step();
  if (step == Statement::Step::failed) return stmt->error();
  return step == Statement::Step::row;
}

}  // namespace knit::coordinator
