// PgStore: connecting, the mesh's settings, join tokens, change notifications, and moving a
// whole mesh in and out (migrate).
#include "coordinator/pg_store.hpp"

#include <sodium.h>

#include <array>

#include "base/bytes.hpp"
#include "coordinator/mesh_settings.hpp"
#include "coordinator/pg_migrations.hpp"
#include "coordinator/pg_store_rows.hpp"

namespace knit::coordinator {

bool is_postgres_location(std::string_view location) {
  return location.starts_with("postgres://") || location.starts_with("postgresql://") ||
         location.find("dbname=") != std::string_view::npos ||
         location.find("host=") != std::string_view::npos;
}

Result<std::unique_ptr<PgStore>> PgStore::open(const std::string& conninfo,
                                               PgConnection::Limits limits) {
  std::array<std::uint8_t, 8> id{};
  randombytes_buf(id.data(), id.size());
  std::unique_ptr<PgStore> store(new PgStore(conninfo, limits, to_hex(id)));
  if (auto r = store->conn_.connect(); !r) return r.error();
  if (auto r = pg_migrate(store->conn_); !r) return r.error();
  return store;
}

Result<void> PgStore::notify(StoreChange::Kind kind, const wg::PublicKey* node_key) {
  const std::string payload = origin_ + " " + std::to_string(static_cast<int>(kind)) + " " +
                              (node_key != nullptr ? to_base64(*node_key) : std::string("-"));
  auto r = conn_.exec("SELECT pg_notify($1, $2)", {std::string(kNotifyChannel), payload});
  if (!r) return r.error();
  return Ok{};
}

Result<std::optional<std::string>> PgStore::get_setting(std::string_view key, bool for_update) {
  auto r = conn_.exec(for_update ? "SELECT value FROM settings WHERE key = $1 FOR UPDATE"
                                 : "SELECT value FROM settings WHERE key = $1",
                      {std::string(key)});
  if (!r) return r.error();
  if (r->rows() == 0) return std::optional<std::string>();
  return std::optional<std::string>(r->text(0, 0));
}

Result<void> PgStore::put_setting(std::string_view key, std::string_view value) {
  auto r = conn_.exec(
      "INSERT INTO settings (key, value) VALUES ($1, $2) "
      "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
      {std::string(key), std::string(value)});
  if (!r) return r.error();
  return Ok{};
}

Result<std::optional<MeshSettings>> PgStore::mesh_settings() {
  auto v4 = get_setting(kIpv4PrefixKey);
  if (!v4) return v4.error();
  auto v6 = get_setting(kIpv6PrefixKey);
  if (!v6) return v6.error();
  return mesh_settings_from(*v4, *v6);
}

Result<MeshSettings> PgStore::ensure_mesh(const std::optional<IpPrefix>& ipv4_prefix,
                                          Random& rng) {
  if (ipv4_prefix) {
    if (auto why = Ipam::why_invalid_ipv4(*ipv4_prefix); !why.empty())
      return Error{Errc::invalid, why};
  }
  MeshSettings mesh;
  auto done = conn_.run_transaction([&]() -> Result<void> {
    // One coordinator at a time decides the mesh's settings.
    if (auto r = conn_.exec("LOCK TABLE settings IN SHARE ROW EXCLUSIVE MODE"); !r)
      return r.error();
    auto stored = mesh_settings();
    if (!stored) return stored.error();
    if (*stored) {
      mesh = **stored;
      if (!ipv4_prefix || *ipv4_prefix == mesh.ipv4_prefix) return Ok{};
      auto nodes = conn_.exec("SELECT COUNT(*) FROM nodes");
      if (!nodes) return nodes.error();
      if (nodes->integer(0, 0) > 0)
        return Error{Errc::conflict,
                     "the mesh already uses " + mesh.ipv4_prefix.to_string() + " and has " +
                         std::to_string(nodes->integer(0, 0)) +
                         " node(s); the IPv4 prefix can change only while the mesh is empty"};
      mesh.ipv4_prefix = *ipv4_prefix;
    } else {
      mesh.ipv4_prefix = ipv4_prefix ? *ipv4_prefix : *IpPrefix::parse(kDefaultIpv4Prefix);
      mesh.ipv6_prefix = random_ula_prefix(rng);
      if (auto r = put_setting(kIpv6PrefixKey, mesh.ipv6_prefix.to_string()); !r) return r;
    }
    if (auto r = put_setting(kIpv4PrefixKey, mesh.ipv4_prefix.to_string()); !r) return r;
    if (auto r = put_setting(kIpv4CursorKey, "0"); !r) return r;
    return rebuild_free_ranges(mesh);
  });
  if (!done) return done.error();
  return mesh;
}

Result<void> PgStore::set_listen_address(std::string_view address) {
  return conn_.run_transaction([&] { return put_setting(kListenKey, address); });
}

Result<DnsSettings> PgStore::dns_settings() {
  DnsSettings out;
  auto r = conn_.run_transaction([&]() -> Result<void> {
    auto domain = get_setting(kDnsDomainKey);
    if (!domain) return domain.error();
    auto split = get_setting(kDnsSplitKey);
    if (!split) return split.error();
    out = dns_settings_from(*domain, *split);
    return Ok{};
  });
  if (!r) return r.error();
  return out;
}

Result<void> PgStore::set_dns_settings(const DnsSettings& settings) {
  DnsSettings normal = settings;
  if (auto why = normalize_dns_settings(normal); !why.empty()) return Error{Errc::invalid, why};
  return conn_.run_transaction([&]() -> Result<void> {
    if (auto r = put_setting(kDnsDomainKey, normal.domain); !r) return r;
    if (auto r = put_setting(kDnsSplitKey, encode_split(normal.split)); !r) return r;
    return notify(StoreChange::Kind::dns, nullptr);
  });
}

Result<PolicySettings> PgStore::policy_settings() {
  PolicySettings out;
  auto r = conn_.run_transaction([&]() -> Result<void> {
    auto document = get_setting(kPolicyKey);
    if (!document) return document.error();
    auto tags = get_setting(kPolicyTagsKey);
    if (!tags) return tags.error();
    auto version = get_setting(kPolicyVersionKey);
    if (!version) return version.error();
    out = policy_settings_from(*document, *tags, *version);
    return Ok{};
  });
  if (!r) return r.error();
  return out;
}

Result<void> PgStore::set_policy_settings(const PolicySettings& settings) {
  return conn_.run_transaction([&]() -> Result<void> {
    auto version = get_setting(kPolicyVersionKey, true);
    if (!version) return version.error();
    const std::uint64_t next = policy_settings_from({}, {}, *version).version + 1;
    if (auto r = put_setting(kPolicyKey, settings.document); !r) return r;
    if (auto r = put_setting(kPolicyTagsKey, encode_admin_tags(settings.admin_tags)); !r) return r;
    if (auto r = put_setting(kPolicyVersionKey, std::to_string(next)); !r) return r;
    return notify(StoreChange::Kind::policy, nullptr);
  });
}

Result<std::optional<std::string>> PgStore::listen_address() {
  std::optional<std::string> out;
  auto r = conn_.run_transaction([&]() -> Result<void> {
    auto v = get_setting(kListenKey);
    if (!v) return v.error();
    out = *v;
    return Ok{};
  });
  if (!r) return r.error();
  return out;
}

Result<void> PgStore::insert_token(const Token& token) {
  auto r = conn_.exec(
      "INSERT INTO tokens (id, secret_hash, reusable, ephemeral, relay, revoked, expires_at, "
      "tags, uses, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
      {token.id, pg_bytes(token.secret_hash.data(), token.secret_hash.size()),
       pg_int(token.reusable), pg_int(token.ephemeral), pg_int(token.relay), pg_int(token.revoked),
       pg_int(token.expires_at), pg_rows::join_list(token.tags),
       pg_int(static_cast<std::int64_t>(token.uses)), pg_int(token.created_at)});
  if (!r) {
    if (r.error().code == Errc::conflict)
      return Error{Errc::conflict, "a token with id " + token.id + " already exists"};
    return r.error();
  }
  return Ok{};
}

Result<void> PgStore::add_token(const Token& token) {
  if (auto why = why_invalid_token(token); !why.empty()) return Error{Errc::invalid, why};
  // Not in run_transaction: a duplicate id is the caller's mistake, not a race to retry.
  auto r = conn_.exec("SELECT 1 FROM tokens WHERE id = $1", {token.id});
  if (!r) {
    if (auto c = conn_.connect(); !c) return c.error();
    r = conn_.exec("SELECT 1 FROM tokens WHERE id = $1", {token.id});
    if (!r) return r.error();
  }
  if (r->rows() > 0) return Error{Errc::conflict, "a token with id " + token.id + " already exists"};
  return conn_.run_transaction([&] { return insert_token(token); });
}

Result<std::vector<Token>> PgStore::list_tokens() {
  std::vector<Token> out;
  auto done = conn_.run_transaction([&]() -> Result<void> {
    auto r = conn_.exec("SELECT " + std::string(pg_rows::kTokenColumns) +
                        " FROM tokens ORDER BY created_at, id");
    if (!r) return r.error();
    out.clear();
    for (int i = 0; i < r->rows(); ++i) out.push_back(pg_rows::read_token(*r, i));
    return Ok{};
  });
  if (!done) return done.error();
  return out;
}

Result<std::optional<Token>> PgStore::find_token(std::string_view id) {
  std::optional<Token> out;
  auto done = conn_.run_transaction([&]() -> Result<void> {
    auto r = conn_.exec("SELECT " + std::string(pg_rows::kTokenColumns) +
                            " FROM tokens WHERE id = $1",
                        {std::string(id)});
    if (!r) return r.error();
    out.reset();
    if (r->rows() > 0) out = pg_rows::read_token(*r, 0);
    return Ok{};
  });
  if (!done) return done.error();
  return out;
}

Result<void> PgStore::revoke_token(std::string_view id) {
  return conn_.run_transaction([&]() -> Result<void> {
    auto r = conn_.exec("UPDATE tokens SET revoked = 1 WHERE id = $1", {std::string(id)});
    if (!r) return r.error();
    if (r->affected() == 0)
      return Error{Errc::not_found, "no token with id '" + std::string(id) + "' (see token list)"};
    return Ok{};
  });
}

Result<TokenCheck> PgStore::judge_token(const PresentedToken& token, TokenUse use,
                                        UnixSeconds now, bool count_use,
                                        std::optional<Token>* out) {
  // FOR UPDATE: a concurrent use of the same token waits here until this one commits, then
  // sees the count it left.
  auto r = conn_.exec("SELECT " + std::string(pg_rows::kTokenColumns) +
                          " FROM tokens WHERE id = $1 FOR UPDATE",
                      {token.id});
  if (!r) return r.error();
  std::optional<Token> stored;
  if (r->rows() > 0) stored = pg_rows::read_token(*r, 0);
  const TokenCheck check = check_token(stored ? &*stored : nullptr, token.secret_hash, use, now);
  if (check == TokenCheck::ok && count_use) {
    auto u = conn_.exec("UPDATE tokens SET uses = uses + 1 WHERE id = $1", {token.id});
    if (!u) return u.error();
    ++stored->uses;
  }
  if (out != nullptr) *out = std::move(stored);
  return check;
}

Result<TokenCheck> PgStore::consume_token(const PresentedToken& token, TokenUse use,
                                          UnixSeconds now) {
  TokenCheck check = TokenCheck::unknown;
  auto done = conn_.run_transaction([&]() -> Result<void> {
    auto c = judge_token(token, use, now, /*count_use=*/true, nullptr);
    if (!c) return c.error();
    check = *c;
    return Ok{};
  });
  if (!done) return done.error();
  return check;
}

Result<StoreSnapshot> PgStore::export_all() {
  StoreSnapshot out;
  auto done = conn_.run_transaction([&]() -> Result<void> {
    out = {};
    if (auto r = conn_.exec("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"); !r)
      return r.error();
    auto mesh = mesh_settings();
    if (!mesh) return mesh.error();
    out.mesh = *mesh;
    auto listen = get_setting(kListenKey);
    if (!listen) return listen.error();
    out.listen_address = *listen;
    auto cursor = get_setting(kIpv4CursorKey);
    if (!cursor) return cursor.error();
    if (*cursor) out.ipv4_cursor = static_cast<std::uint32_t>(std::strtoul((*cursor)->c_str(), nullptr, 10));
    auto tokens = conn_.exec("SELECT " + std::string(pg_rows::kTokenColumns) +
                             " FROM tokens ORDER BY created_at, id");
    if (!tokens) return tokens.error();
    for (int i = 0; i < tokens->rows(); ++i) out.tokens.push_back(pg_rows::read_token(*tokens, i));
    auto nodes = select_nodes("ORDER BY name", {});
    if (!nodes) return nodes.error();
    out.nodes = std::move(*nodes);
    auto relays = conn_.exec("SELECT " + std::string(pg_rows::kRelayColumns) +
                             " FROM relays ORDER BY name");
    if (!relays) return relays.error();
    for (int i = 0; i < relays->rows(); ++i)
      out.relays.emplace_back(pg_rows::read_relay(*relays, i), relays->text(i, 5));
    return Ok{};
  });
  if (!done) return done.error();
  return out;
}

Result<void> PgStore::import_all(const StoreSnapshot& snapshot) {
  return conn_.run_transaction([&]() -> Result<void> {
    auto count = conn_.exec(
        "SELECT (SELECT COUNT(*) FROM nodes) + (SELECT COUNT(*) FROM tokens) + "
        "(SELECT COUNT(*) FROM relays)");
    if (!count) return count.error();
    if (count->integer(0, 0) != 0)
      return Error{Errc::conflict,
                   "the target store already holds a mesh: migrate into an empty one"};
    if (snapshot.mesh) {
      if (auto r = put_setting(kIpv4PrefixKey, snapshot.mesh->ipv4_prefix.to_string()); !r) return r;
      if (auto r = put_setting(kIpv6PrefixKey, snapshot.mesh->ipv6_prefix.to_string()); !r) return r;
    }
    if (snapshot.listen_address)
      if (auto r = put_setting(kListenKey, *snapshot.listen_address); !r) return r;
    if (auto r = put_setting(kIpv4CursorKey, std::to_string(snapshot.ipv4_cursor)); !r) return r;
    for (const Token& token : snapshot.tokens)
      if (auto r = insert_token(token); !r) return r;
    for (const Node& n : snapshot.nodes) {
      auto r = conn_.exec(
          "INSERT INTO nodes (node_key, disco_key, name, hostname, os, ipv4, ipv6, tags, "
          "ephemeral, token_id, created_at, last_seen, online, endpoints, home_relay, "
          "disconnected_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, NULLIF($10, ''), $11, "
          "$12, 0, $13, $14, $15)",
          {to_base64(n.node_key), to_base64(n.disco_key), n.name, n.hostname, n.os,
           n.ipv4.to_string(), n.ipv6.to_string(), pg_rows::join_list(n.tags),
           pg_int(n.ephemeral), n.token_id, pg_int(n.created_at), pg_int(n.last_seen),
           pg_rows::join_endpoints(n.endpoints), n.home_relay, pg_int(n.disconnected_at)});
      if (!r) return r.error();
    }
    for (const auto& [relay, token_id] : snapshot.relays) {
      auto r = conn_.exec(
          "INSERT INTO relays (name, node_key, addresses, stun_port, token_id, registered_at, "
          "online, last_seen) VALUES ($1, $2, $3, $4, NULLIF($5, ''), $6, 0, $7)",
          {relay.name, to_base64(relay.node_key), pg_rows::join_list(relay.addresses),
           pg_int(relay.stun_port), token_id, pg_int(relay.registered_at),
           pg_int(relay.last_seen)});
      if (!r) return r.error();
    }
    if (snapshot.mesh)
      if (auto r = rebuild_free_ranges(*snapshot.mesh); !r) return r;
    return notify(StoreChange::Kind::nodes, nullptr);
  });
}

}  // namespace knit::coordinator
