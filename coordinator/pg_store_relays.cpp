// PgStore: relays registering themselves with relay tokens, and the relay map.
#include "base/bytes.hpp"
#include "control/constants.hpp"
#include "control/host_port.hpp"
#include "coordinator/names.hpp"
#include "coordinator/pg_store.hpp"
#include "coordinator/pg_store_rows.hpp"

namespace knit::coordinator {

namespace {

bool accepts_own_token(TokenCheck check) {
  return check != TokenCheck::unknown && check != TokenCheck::wrong_kind;
}

}  // namespace

Result<RelayJoinResult> PgStore::join_relay(const RelayRegistration& relay,
                                            const std::optional<PresentedToken>& presented,
                                            UnixSeconds now) {
  if (relay.name.empty() || sanitize_label(relay.name) != relay.name)
    return Error{Errc::invalid, "a relay name is a DNS label (a-z 0-9 -, at most 63), not '" +
                                    relay.name + "'"};
  if (relay.addresses.empty() || relay.addresses.size() > control::kMaxRelayAddresses)
    return Error{Errc::invalid, "relay " + relay.name + " needs 1 to " +
                                    std::to_string(control::kMaxRelayAddresses) +
                                    " addresses agents can reach"};
  std::vector<std::string> canonical;
  for (const auto& address : relay.addresses) {
    auto parsed = control::HostPort::parse(address);
    if (!parsed) return Error{Errc::invalid, "relay address '" + address + "' is not HOST:PORT"};
    canonical.push_back(parsed->to_string());
  }
  RelayJoinResult result;
  auto done = conn_.run_transaction([&]() -> Result<void> {
    result = {};
    auto node = key_in_table("nodes", relay.node_key);
    if (!node) return node.error();
    if (*node) return Error{Errc::conflict, "this key is a node's key, not a relay's"};
    auto own_rows = conn_.exec(
        "SELECT COALESCE(token_id, '') FROM relays WHERE node_key = $1 FOR UPDATE",
        {to_base64(relay.node_key)});
    if (!own_rows) return own_rows.error();
    std::optional<std::string> own_token;
    if (own_rows->rows() > 0) own_token = own_rows->text(0, 0);
    std::string token_id = own_token.value_or("");
    if (presented) {
      const bool own = own_token && *own_token == presented->id;
      auto check = judge_token(*presented, TokenUse::relay, now, /*count_use=*/!own, nullptr);
      if (!check) return check.error();
      const bool accepted = own ? accepts_own_token(*check) : *check == TokenCheck::ok;
      if (!accepted) {
        result.token = *check;
        return Error{Errc::invalid, "refused"};
      }
      token_id = presented->id;
    } else if (!own_token) {
      result.token = TokenCheck::unknown;
      return Error{Errc::invalid, "refused"};
    }
    result.token = TokenCheck::ok;
    if (auto r = conn_.exec("DELETE FROM relays WHERE name = $1 AND node_key <> $2",
                            {relay.name, to_base64(relay.node_key)});
        !r)
      return r.error();
    auto r = conn_.exec(
        "INSERT INTO relays (name, node_key, addresses, stun_port, token_id, registered_at, "
        "online, last_seen) VALUES ($1, $2, $3, $4, NULLIF($5, ''), $6, 1, $6) "
        "ON CONFLICT (node_key) DO UPDATE SET name = excluded.name, "
        "addresses = excluded.addresses, stun_port = excluded.stun_port, "
        "token_id = excluded.token_id, online = 1, last_seen = excluded.last_seen",
        {relay.name, to_base64(relay.node_key), pg_rows::join_list(canonical),
         pg_int(relay.stun_port), token_id, pg_int(now)});
    if (!r) return r.error();
    auto read = conn_.exec("SELECT " + std::string(pg_rows::kRelayColumns) +
                               " FROM relays WHERE node_key = $1",
                           {to_base64(relay.node_key)});
    if (!read) return read.error();
    if (read->rows() == 0) return Error{Errc::io, "database: the relay vanished"};
    result.relay = pg_rows::read_relay(*read, 0);
    result.created = !own_token.has_value();
    return notify(StoreChange::Kind::relays, nullptr);
  });
  if (!done) {
    if (done.error().code == Errc::invalid && result.token != TokenCheck::ok &&
        done.error().message == "refused")
      return result;
    return done.error();
  }
  return result;
}

Result<std::vector<Relay>> PgStore::list_relays() {
  std::vector<Relay> out;
  auto done = conn_.run_transaction([&]() -> Result<void> {
    auto r = conn_.exec("SELECT " + std::string(pg_rows::kRelayColumns) +
                        " FROM relays ORDER BY name");
    if (!r) return r.error();
    out.clear();
    for (int i = 0; i < r->rows(); ++i) out.push_back(pg_rows::read_relay(*r, i));
    return Ok{};
  });
  if (!done) return done.error();
  return out;
}

Result<void> PgStore::remove_relay(std::string_view name) {
  return conn_.run_transaction([&]() -> Result<void> {
    auto r = conn_.exec("DELETE FROM relays WHERE name = $1", {std::string(name)});
    if (!r) return r.error();
    if (r->affected() == 0)
      return Error{Errc::not_found, "no relay named '" + std::string(name) + "' (see relays list)"};
    return notify(StoreChange::Kind::relays, nullptr);
  });
}

Result<void> PgStore::set_relay_online(const wg::PublicKey& relay_key, bool online,
                                       UnixSeconds now) {
  return conn_.run_transaction([&]() -> Result<void> {
    auto r = conn_.exec("UPDATE relays SET online = $1, last_seen = $2 WHERE node_key = $3",
                        {pg_int(online), pg_int(now), to_base64(relay_key)});
    if (!r) return r.error();
    if (r->affected() == 0) return Error{Errc::not_found, "no relay with this key"};
    return Ok{};
  });
}

}  // namespace knit::coordinator
