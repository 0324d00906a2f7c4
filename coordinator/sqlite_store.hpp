// The Store on one SQLite file, <state-dir>/knit.db. Each SqliteStore is one connection, used
// from one thread; an admin command and the server each open their own, and WAL mode plus a busy
// timeout let them work side by side. Implemented in sqlite_store.cpp (mesh, tokens, changes),
// sqlite_store_nodes.cpp and sqlite_store_relays.cpp.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "coordinator/sqlite_db.hpp"
#include "coordinator/store.hpp"

namespace knit::coordinator {

inline constexpr std::string_view kDatabaseFile = "knit.db";

class SqliteStore final : public Store {
 public:
  // Opens the database at path, creating it and applying pending schema migrations.
  static Result<std::unique_ptr<SqliteStore>> open(const std::string& path);

  Result<MeshSettings> ensure_mesh(const std::optional<IpPrefix>& ipv4_prefix,
                                   Random& rng) override;
  Result<std::optional<MeshSettings>> mesh_settings() override;
  Result<void> set_listen_address(std::string_view address) override;
  Result<std::optional<std::string>> listen_address() override;

  Result<void> add_token(const Token& token) override;
  Result<std::vector<Token>> list_tokens() override;
  Result<std::optional<Token>> find_token(std::string_view id) override;
  Result<void> revoke_token(std::string_view id) override;
  Result<TokenCheck> consume_token(const PresentedToken& token, TokenUse use,
                                   UnixSeconds now) override;

  Result<JoinResult> join_node(const NodeRegistration& node,
                               const std::optional<PresentedToken>& token,
                               UnixSeconds now) override;
  Result<std::vector<Node>> list_nodes() override;
  Result<std::optional<Node>> find_node(const wg::PublicKey& node_key) override;
  Result<std::optional<Node>> find_node_by_name(std::string_view name) override;
  Result<Node> remove_node(std::string_view name) override;
  Result<void> set_node_online(const wg::PublicKey& node_key, bool online,
                               UnixSeconds now) override;
  Result<void> touch_node(const wg::PublicKey& node_key, UnixSeconds now) override;
  Result<void> set_node_endpoints(const wg::PublicKey& node_key,
                                  const std::vector<Endpoint>& endpoints,
                                  std::string_view home_relay, UnixSeconds now) override;
  Result<std::vector<Node>> expire_ephemeral(UnixSeconds now, UnixSeconds grace) override;
  Result<void> mark_all_offline(UnixSeconds now) override;

  Result<RelayJoinResult> join_relay(const RelayRegistration& relay,
                                     const std::optional<PresentedToken>& token,
                                     UnixSeconds now) override;
  Result<std::vector<Relay>> list_relays() override;
  Result<void> remove_relay(std::string_view name) override;
  Result<void> set_relay_online(const wg::PublicKey& relay_key, bool online,
                                UnixSeconds now) override;

  Result<std::uint64_t> change_version() override;

 private:
  explicit SqliteStore(Database db) : db_(std::move(db)) {}

  Result<std::optional<std::string>> get_setting(std::string_view key);
  Result<void> put_setting(std::string_view key, std::string_view value);
  Result<std::int64_t> count_nodes();
  // Whether the key is registered as a relay (nodes) or as a node (relays).
  Result<bool> key_in_table(std::string_view table, const wg::PublicKey& key);
  // The token a presenter names, judged; counts a use when `count_use` and it is ok.
  Result<TokenCheck> judge_token(const PresentedToken& token, TokenUse use, UnixSeconds now,
                                 bool count_use, std::optional<Token>* out);
  Result<Node> insert_node(const NodeRegistration& reg, const Token* token,
                           const MeshSettings& mesh, UnixSeconds now);
  Result<void> update_node(const Node& old, const NodeRegistration& reg, const Token* token,
                           UnixSeconds now);
  Result<std::vector<Node>> select_nodes(std::string_view where_and_order,
                                         const std::function<void(Statement&)>& bind);
  Result<void> update_node_fields(const wg::PublicKey& node_key, std::string_view set_clause,
                                  std::int64_t now);

  Database db_;
};

}  // namespace knit::coordinator
