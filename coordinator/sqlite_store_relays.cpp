// SqliteStore: relays registering themselves with relay tokens, and the relay map.
#include "control/constants.hpp"
#include "control/host_port.hpp"
#include "coordinator/names.hpp"
#include "coordinator/sqlite_rows.hpp"
#include "coordinator/sqlite_store.hpp"

namespace knit::coordinator {

namespace {

Result<void> validate(const RelayRegistration& relay) {
  if (relay.name.empty() || sanitize_label(relay.name) != relay.name)
    return Error{Errc::invalid, "a relay name is a DNS label (a-z 0-9 -, at most 63), not '" +
                                    relay.name + "'"};
  if (relay.addresses.empty() || relay.addresses.size() > control::kMaxRelayAddresses)
    return Error{Errc::invalid, "relay " + relay.name + " needs 1 to " +
                                    std::to_string(control::kMaxRelayAddresses) +
                                    " addresses agents can reach"};
  for (const auto& address : relay.addresses)
    if (!control::HostPort::parse(address))
      return Error{Errc::invalid, "relay address '" + address + "' is not HOST:PORT"};
  return Ok{};
}

// "[2001:DB8::0:1]:443" is stored as "[2001:db8::1]:443", so one address has one spelling.
std::vector<std::string> canonical_addresses(const RelayRegistration& relay) {
  std::vector<std::string> out;
  for (const auto& address : relay.addresses)
    out.push_back(control::HostPort::parse(address)->to_string());
  return out;
}

}  // namespace

Result<RelayJoinResult> SqliteStore::join_relay(const RelayRegistration& relay,
                                                const std::optional<PresentedToken>& presented,
                                                UnixSeconds now) {
  if (auto r = validate(relay); !r) return r.error();
  auto tx = Transaction::begin(db_);
  if (!tx) return tx.error();
  auto node = key_in_table("nodes", relay.node_key);
  if (!node) return node.error();
  if (*node) return Error{Errc::conflict, "this key is a node's key, not a relay's"};

  // The relay already registered under this key, and the token it registered with.
  std::optional<std::string> own_token;
  {
    auto stmt = db_.prepare("SELECT COALESCE(token_id, '') FROM relays WHERE node_key = ?1");
    if (!stmt) return stmt.error();
    stmt->bind(1, rows::key_text(relay.node_key));
    auto step = stmt->step();
    if (step == Statement::Step::failed) return stmt->error();
    if (step == Statement::Step::row) own_token = stmt->column_text(0);
  }
  RelayJoinResult result;
  std::string token_id = own_token.value_or("");
  if (presented) {
    bool own = own_token && *own_token == presented->id;
    auto check = judge_token(*presented, TokenUse::relay, now, /*count_use=*/!own, nullptr);
    if (!check) return check.error();
    bool accepted = own ? (*check != TokenCheck::unknown && *check != TokenCheck::wrong_kind)
                        : *check == TokenCheck::ok;
    if (!accepted) {
      result.token = *check;
      return result;
    }
    token_id = presented->id;
  } else if (!own_token) {
    result.token = TokenCheck::unknown;  // a new relay must bring a token
    return result;
  }
  result.token = TokenCheck::ok;

  // A name held by another key is taken over (see store.hpp).
  auto drop = db_.prepare("DELETE FROM relays WHERE name = ?1 AND node_key <> ?2");
  if (!drop) return drop.error();
  if (auto r = drop->bind(1, relay.name).bind(2, rows::key_text(relay.node_key)).run(); !r)
    return r.error();

  auto stmt = db_.prepare(
      "INSERT INTO relays (name, node_key, addresses, stun_port, token_id, registered_at, "
      "online, last_seen) VALUES (?1, ?2, ?3, ?4, NULLIF(?5, ''), ?6, 1, ?6) "
      "ON CONFLICT (node_key) DO UPDATE SET name = excluded.name, "
      "addresses = excluded.addresses, stun_port = excluded.stun_port, "
      "token_id = excluded.token_id, online = 1, last_seen = excluded.last_seen");
  if (!stmt) return stmt.error();
  stmt->bind(1, relay.name)
      .bind(2, rows::key_text(relay.node_key))
      .bind(3, rows::join_list(canonical_addresses(relay)))
      .bind(4, std::int64_t{relay.stun_port})
      .bind(5, token_id)
      .bind(6, now);
  if (auto r = stmt->run(); !r) return r.error();

  auto read = db_.prepare("SELECT " + std::string(rows::kRelayColumns) +
                          " FROM relays WHERE node_key = ?1");
  if (!read) return read.error();
  read->bind(1, rows::key_text(relay.node_key));
  if (read->step() != Statement::Step::row) return read->error();
  result.relay = rows::read_relay(*read);
  result.created = !own_token.has_value();
  if (auto r = note(StoreChange::Kind::relays, nullptr); !r) return r.error();
  if (auto r = tx->commit(); !r) return r.error();
  return result;
}

Result<std::vector<Relay>> SqliteStore::list_relays() {
  auto stmt = db_.prepare("SELECT " + std::string(rows::kRelayColumns) +
                          " FROM relays ORDER BY name");
  if (!stmt) return stmt.error();
  std::vector<Relay> out;
  for (;;) {
    auto step = stmt->step();
    if (step == Statement::Step::done) return out;
    if (step == Statement::Step::failed) return stmt->error();
    out.push_back(rows::read_relay(*stmt));
  }
}

Result<void> SqliteStore::set_relay_online(const wg::PublicKey& relay_key, bool online,
                                           UnixSeconds now) {
  auto stmt = db_.prepare("UPDATE relays SET online = ?1, last_seen = ?2 WHERE node_key = ?3");
  if (!stmt) return stmt.error();
  if (auto r = stmt->bind(1, std::int64_t{online}).bind(2, now).bind(3, rows::key_text(relay_key)).run();
      !r)
    return r;
  if (db_.changes() == 0) return Error{Errc::not_found, "no relay with this key"};
  return Ok{};
}

Result<void> SqliteStore::remove_relay(std::string_view name) {
  auto tx = Transaction::begin(db_);
  if (!tx) return tx.error();
  auto stmt = db_.prepare("DELETE FROM relays WHERE name = ?1");
  if (!stmt) return stmt.error();
  if (auto r = stmt->bind(1, name).run(); !r) return r;
  if (db_.changes() == 0)
    return Error{Errc::not_found, "no relay named '" + std::string(name) + "' (see relays list)"};
  if (auto r = note(StoreChange::Kind::relays, nullptr); !r) return r;
  return tx->commit();
}

}  // namespace knit::coordinator
