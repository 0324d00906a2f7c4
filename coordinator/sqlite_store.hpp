// The Store on one SQLite file, <state-dir>/knit.db. Each SqliteStore is one connection, used
// from one thread; an admin command and the server each open their own, and WAL mode plus a busy
// timeout let them work side by side. Implemented in sqlite_store.cpp (mesh, tokens),
// sqlite_store_nodes.cpp, sqlite_store_addresses.cpp (the free ranges), sqlite_store_relays.cpp,
// sqlite_store_changes.cpp (the change log, export and import) and sqlite_store_leases.cpp.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "coordinator/ipam.hpp"
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
  Result<std::optional<std::string>> read_setting(std::string_view key) override;
  Result<void> update_setting(std::string_view key, const SettingChange& change) override;
  Result<DnsSettings> dns_settings() override;
  Result<void> set_dns_settings(const DnsSettings& settings) override;
  Result<PolicySettings> policy_settings() override;
  Result<void> set_policy_settings(const PolicySettings& settings) override;

  Result<void> add_token(const Token& token) override;
  Result<std::vector<Token>> list_tokens() override;
  Result<std::optional<Token>> find_token(std::string_view id) override;
  Result<void> revoke_token(std::string_view id) override;
  Result<TokenCheck> consume_token(const PresentedToken& token, TokenUse use,
                                   UnixSeconds now) override;

  Result<JoinResult> join_node(const NodeRegistration& node,
                               const std::optional<PresentedToken>& token,
                               UnixSeconds now) override;
  std::vector<Result<JoinResult>> join_nodes(const std::vector<BatchedJoin>& joins,
                                             UnixSeconds now) override;
  Result<std::vector<Node>> list_nodes() override;
  Result<std::optional<Node>> find_node(const wg::PublicKey& node_key) override;
  Result<std::optional<Node>> find_node_by_name(std::string_view name) override;
  Result<Node> remove_node(std::string_view name) override;
  Result<Node> remove_node(const wg::PublicKey& node_key) override;
  Result<Node> rename_node(std::string_view from, std::string_view to) override;
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

  void set_coordinator_id(std::string id) override { coordinator_id_ = std::move(id); }
  Result<bool> renew_lease(UnixSeconds now, UnixSeconds duration) override;
  Result<ExpiredLeases> expire_leases(UnixSeconds now) override;
  Result<void> release_lease() override;
  StoreBackend backend() const override { return StoreBackend::sqlite; }
  const std::string& origin() const override { return origin_; }
  Result<StoreSnapshot> export_all() override;
  Result<void> import_all(const StoreSnapshot& snapshot) override;

  // --- The change log (sqlite_change_feed.hpp reads it) ---
  const std::string& path() const { return path_; }
  // Moves whenever another connection commits (PRAGMA data_version): a cheap first look.
  Result<std::uint64_t> data_version();
  // The newest note's id (0: none).
  Result<std::uint64_t> latest_change();
  // Notes after `cursor` written by other connections, oldest first; cursor moves past every
  // note read (own ones included).
  Result<std::vector<StoreChange>> changes_after(std::uint64_t& cursor);
  // Drops notes older than `before` (the server does this now and then).
  Result<void> trim_changes(UnixSeconds before);

 private:
  SqliteStore(Database db, std::string path, std::string origin)
      : db_(std::move(db)), path_(std::move(path)), origin_(std::move(origin)) {}

  // Inside the caller's transaction.
  Result<void> note(StoreChange::Kind kind, const wg::PublicKey* node_key);
  // The free ranges (sqlite_store_addresses.cpp), inside the caller's transaction.
  Result<Ipam::Allocation> take_address(const MeshSettings& mesh);
  Result<void> release_address(const MeshSettings& mesh, const IpAddress& ipv4);
  Result<void> rebuild_free_ranges(const MeshSettings& mesh);
  Result<std::optional<FreeRange>> range_lookup(bool floor, std::uint32_t at);

  Result<std::optional<std::string>> get_setting(std::string_view key);
  Result<void> put_setting(std::string_view key, std::string_view value);
  Result<std::int64_t> count_nodes();
  // Whether the key is registered as a relay (nodes) or as a node (relays).
  Result<bool> key_in_table(std::string_view table, const wg::PublicKey& key);
  // The token a presenter names, judged; counts a use when `count_use` and it is ok.
  Result<TokenCheck> judge_token(const PresentedToken& token, TokenUse use, UnixSeconds now,
                                 bool count_use, std::optional<Token>* out);
  // join_node inside the caller's transaction; a refused join may have written: roll it back.
  Result<JoinResult> join_in_transaction(const NodeRegistration& reg,
                                         const std::optional<PresentedToken>& presented,
                                         UnixSeconds now);
  Result<Node> insert_node(const NodeRegistration& reg, const Token* token,
                           const MeshSettings& mesh, UnixSeconds now);
  Result<void> update_node(const Node& old, const NodeRegistration& reg, const Token* token,
                           UnixSeconds now);
  Result<std::vector<Node>> select_nodes(std::string_view where_and_order,
                                         const std::function<void(Statement&)>& bind);
  Result<Node> remove_found_node(Node& node, Transaction& tx);

  Database db_;
  std::string path_;
  std::string origin_;
  std::string coordinator_id_;
};

}  // namespace knit::coordinator
