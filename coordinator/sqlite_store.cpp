#include "coordinator/sqlite_store.hpp"

#include <sodium.h>

#include <array>

#include "base/bytes.hpp"

#include "coordinator/ipam.hpp"
#include "coordinator/mesh_settings.hpp"
#include "coordinator/migrations.hpp"
#include "coordinator/sqlite_rows.hpp"

namespace knit::coordinator {

Result<std::unique_ptr<SqliteStore>> SqliteStore::open(const std::string& path) {
  auto db = Database::open(path);
  if (!db) return db.error();
  if (auto r = migrate(*db); !r) return r.error();
  std::array<std::uint8_t, 8> id{};
  randombytes_buf(id.data(), id.size());
  return std::unique_ptr<SqliteStore>(new SqliteStore(std::move(*db), path, to_hex(id)));
}

Result<std::optional<std::string>> SqliteStore::get_setting(std::string_view key) {
  auto stmt = db_.prepare("SELECT value FROM settings WHERE key = ?1");
  if (!stmt) return stmt.error();
  stmt->bind(1, key);
  switch (stmt->step()) {
    case Statement::Step::row: return std::optional<std::string>(stmt->column_text(0));
    case Statement::Step::done: return std::optional<std::string>();
    case Statement::Step::failed: break;
  }
  return stmt->error();
}

Result<void> SqliteStore::put_setting(std::string_view key, std::string_view value) {
  auto stmt = db_.prepare(
      "INSERT INTO settings (key, value) VALUES (?1, ?2) "
      "ON CONFLICT (key) DO UPDATE SET value = excluded.value");
  if (!stmt) return stmt.error();
  return stmt->bind(1, key).bind(2, value).run();
}

Result<std::int64_t> SqliteStore::count_nodes() {
  auto stmt = db_.prepare("SELECT COUNT(*) FROM nodes");
  if (!stmt) return stmt.error();
  if (stmt->step() != Statement::Step::row) return stmt->error();
  return stmt->column_int(0);
}

Result<std::optional<MeshSettings>> SqliteStore::mesh_settings() {
  auto v4 = get_setting(kIpv4PrefixKey);
  if (!v4) return v4.error();
  auto v6 = get_setting(kIpv6PrefixKey);
  if (!v6) return v6.error();
  return mesh_settings_from(*v4, *v6);
}

Result<MeshSettings> SqliteStore::ensure_mesh(const std::optional<IpPrefix>& ipv4_prefix,
                                              Random& rng) {
  if (ipv4_prefix) {
    if (auto why = Ipam::why_invalid_ipv4(*ipv4_prefix); !why.empty())
      return Error{Errc::invalid, why};
  }
  auto tx = Transaction::begin(db_);
  if (!tx) return tx.error();
  auto stored = mesh_settings();
  if (!stored) return stored.error();
  MeshSettings mesh;
  if (*stored) {
    mesh = **stored;
    if (!ipv4_prefix || *ipv4_prefix == mesh.ipv4_prefix) return mesh;  // nothing to change
    auto nodes = count_nodes();
    if (!nodes) return nodes.error();
    if (*nodes > 0)
      return Error{Errc::conflict,
                   "the mesh already uses " + mesh.ipv4_prefix.to_string() + " and has " +
                       std::to_string(*nodes) +
                       " node(s); the IPv4 prefix can change only while the mesh is empty"};
    mesh.ipv4_prefix = *ipv4_prefix;
  } else {
    mesh.ipv4_prefix = ipv4_prefix ? *ipv4_prefix : *IpPrefix::parse(kDefaultIpv4Prefix);
    mesh.ipv6_prefix = random_ula_prefix(rng);
    if (auto r = put_setting(kIpv6PrefixKey, mesh.ipv6_prefix.to_string()); !r) return r.error();
  }
  if (auto r = put_setting(kIpv4PrefixKey, mesh.ipv4_prefix.to_string()); !r) return r.error();
  if (auto r = put_setting(kIpv4CursorKey, "0"); !r) return r.error();
  if (auto r = rebuild_free_ranges(mesh); !r) return r.error();
  if (auto r = tx->commit(); !r) return r.error();
  return mesh;
}

Result<void> SqliteStore::set_listen_address(std::string_view address) {
  return put_setting(kListenKey, address);
}

Result<std::optional<std::string>> SqliteStore::listen_address() { return get_setting(kListenKey); }

Result<DnsSettings> SqliteStore::dns_settings() {
  auto domain = get_setting(kDnsDomainKey);
  if (!domain) return domain.error();
  auto split = get_setting(kDnsSplitKey);
  if (!split) return split.error();
  return dns_settings_from(*domain, *split);
}

Result<void> SqliteStore::set_dns_settings(const DnsSettings& settings) {
  DnsSettings normal = settings;
  if (auto why = normalize_dns_settings(normal); !why.empty()) return Error{Errc::invalid, why};
  auto tx = Transaction::begin(db_);
  if (!tx) return tx.error();
  if (auto r = put_setting(kDnsDomainKey, normal.domain); !r) return r;
  if (auto r = put_setting(kDnsSplitKey, encode_split(normal.split)); !r) return r;
  if (auto r = note(StoreChange::Kind::dns, nullptr); !r) return r;
  return tx->commit();
}

Result<PolicySettings> SqliteStore::policy_settings() {
  auto document = get_setting(kPolicyKey);
  if (!document) return document.error();
  auto tags = get_setting(kPolicyTagsKey);
  if (!tags) return tags.error();
  auto version = get_setting(kPolicyVersionKey);
  if (!version) return version.error();
  return policy_settings_from(*document, *tags, *version);
}

Result<void> SqliteStore::set_policy_settings(const PolicySettings& settings) {
  auto tx = Transaction::begin(db_);
  if (!tx) return tx.error();
  auto version = get_setting(kPolicyVersionKey);
  if (!version) return version.error();
  const std::uint64_t next = policy_settings_from({}, {}, *version).version + 1;
  if (auto r = put_setting(kPolicyKey, settings.document); !r) return r;
  if (auto r = put_setting(kPolicyTagsKey, encode_admin_tags(settings.admin_tags)); !r) return r;
  if (auto r = put_setting(kPolicyVersionKey, std::to_string(next)); !r) return r;
  if (auto r = note(StoreChange::Kind::policy, nullptr); !r) return r;
  return tx->commit();
}

Result<void> SqliteStore::add_token(const Token& token) {
  if (auto why = why_invalid_token(token); !why.empty()) return Error{Errc::invalid, why};
  auto stmt = db_.prepare(
      "INSERT INTO tokens (id, secret_hash, reusable, ephemeral, relay, revoked, expires_at, "
      "tags, uses, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)");
  if (!stmt) return stmt.error();
  stmt->bind(1, token.id)
      .bind(2, std::span<const std::uint8_t>(token.secret_hash))
      .bind(3, std::int64_t{token.reusable})
      .bind(4, std::int64_t{token.ephemeral})
      .bind(5, std::int64_t{token.relay})
      .bind(6, std::int64_t{token.revoked})
      .bind(7, token.expires_at)
      .bind(8, rows::join_list(token.tags))
      .bind(9, static_cast<std::int64_t>(token.uses))
      .bind(10, token.created_at);
  auto r = stmt->run();
  if (!r && sqlite3_extended_errcode(db_.handle()) == SQLITE_CONSTRAINT_PRIMARYKEY)
    return Error{Errc::conflict, "a token with id " + token.id + " already exists"};
  return r;
}

Result<std::vector<Token>> SqliteStore::list_tokens() {
  auto stmt = db_.prepare("SELECT " + std::string(rows::kTokenColumns) +
                          " FROM tokens ORDER BY created_at, id");
  if (!stmt) return stmt.error();
  std::vector<Token> out;
  for (;;) {
    auto step = stmt->step();
    if (step == Statement::Step::done) return out;
    if (step == Statement::Step::failed) return stmt->error();
    out.push_back(rows::read_token(*stmt));
  }
}

Result<std::optional<Token>> SqliteStore::find_token(std::string_view id) {
  auto stmt = db_.prepare("SELECT " + std::string(rows::kTokenColumns) +
                          " FROM tokens WHERE id = ?1");
  if (!stmt) return stmt.error();
  stmt->bind(1, id);
  switch (stmt->step()) {
    case Statement::Step::row: return std::optional<Token>(rows::read_token(*stmt));
    case Statement::Step::done: return std::optional<Token>();
    case Statement::Step::failed: break;
  }
  return stmt->error();
}

Result<void> SqliteStore::revoke_token(std::string_view id) {
  auto stmt = db_.prepare("UPDATE tokens SET revoked = 1 WHERE id = ?1");
  if (!stmt) return stmt.error();
  if (auto r = stmt->bind(1, id).run(); !r) return r;
  if (db_.changes() == 0)
    return Error{Errc::not_found, "no token with id '" + std::string(id) + "' (see token list)"};
  return Ok{};
}

Result<TokenCheck> SqliteStore::judge_token(const PresentedToken& token, TokenUse use,
                                            UnixSeconds now, bool count_use,
                                            std::optional<Token>* out) {
  auto stored = find_token(token.id);
  if (!stored) return stored.error();
  const Token* found = *stored ? &**stored : nullptr;
  TokenCheck check = check_token(found, token.secret_hash, use, now);
  if (check == TokenCheck::ok && count_use) {
    // Inside the caller's IMMEDIATE transaction: no other connection can count a use between
    // the check above and this update.
    auto stmt = db_.prepare("UPDATE tokens SET uses = uses + 1 WHERE id = ?1");
    if (!stmt) return stmt.error();
    if (auto r = stmt->bind(1, token.id).run(); !r) return r.error();
    ++(*stored)->uses;
  }
  if (out != nullptr) *out = std::move(*stored);
  return check;
}

Result<TokenCheck> SqliteStore::consume_token(const PresentedToken& token, TokenUse use,
                                              UnixSeconds now) {
  auto tx = Transaction::begin(db_);
  if (!tx) return tx.error();
  auto check = judge_token(token, use, now, /*count_use=*/true, nullptr);
  if (!check) return check.error();
  if (*check == TokenCheck::ok)
    if (auto r = tx->commit(); !r) return r.error();
  return *check;
}

}  // namespace knit::coordinator
