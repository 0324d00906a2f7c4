// The Store on PostgreSQL (libpq), for several coordinators sharing one database and for meshes
// past one machine (`serve --store postgres://...`). The same schema versions as SQLite
// (pg_migrations.cpp, in PostgreSQL's dialect) and the same semantics, with PostgreSQL's
// locking in place of SQLite's single writer:
//   - a token row is read FOR UPDATE before a use is counted: of two concurrent joins with a
//     one-use token exactly one succeeds;
//   - the address cursor row is read FOR UPDATE before an address is taken from the free
//     ranges: allocations are serialised, and the UNIQUE constraints back that up;
//   - a race lost on a unique name or key (23505) runs the transaction again.
// Changes that agents see are announced with NOTIFY knit_changes in the same transaction
// (pg_change_feed.hpp): "<origin> <kind> <node key>". Each PgStore is one connection, used from
// one thread. Implemented in pg_store.cpp (mesh, tokens, export and import),
// pg_store_nodes.cpp (nodes, addresses, relays) and pg_store_leases.cpp (coordinators' leases).
#pragma once

#include <memory>
#include <string>

#include "coordinator/ipam.hpp"
#include "coordinator/pg_conn.hpp"
#include "coordinator/store.hpp"

namespace knit::coordinator {

inline constexpr std::string_view kNotifyChannel = "knit_changes";

// postgres://... or postgresql://... (libpq's URI), or libpq's "key=value" form.
bool is_postgres_location(std::string_view location);

class PgStore final : public Store {
 public:
  // Connects and applies pending schema migrations.
  static Result<std::unique_ptr<PgStore>> open(const std::string& conninfo,
                                               PgConnection::Limits limits = {});

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
  StoreBackend backend() const override { return StoreBackend::postgres; }
  const std::string& origin() const override { return origin_; }
  Result<StoreSnapshot> export_all() override;
  Result<void> import_all(const StoreSnapshot& snapshot) override;

  const std::string& conninfo() const { return conn_.conninfo(); }
  PgConnection& connection() { return conn_; }

 private:
  PgStore(std::string conninfo, PgConnection::Limits limits, std::string origin)
      : conn_(std::move(conninfo), limits), origin_(std::move(origin)) {}

  // Inside a transaction.
  Result<void> notify(StoreChange::Kind kind, const wg::PublicKey* node_key);
  Result<std::optional<std::string>> get_setting(std::string_view key, bool for_update = false);
  Result<void> put_setting(std::string_view key, std::string_view value);
  Result<std::vector<Node>> select_nodes(std::string_view where_and_order,
                                         const std::vector<PgParam>& params);
  Result<Node> remove_node_where(const std::string& where, const std::string& value,
                                 const std::string& not_found);
  Result<TokenCheck> judge_token(const PresentedToken& token, TokenUse use, UnixSeconds now,
                                 bool count_use, std::optional<Token>* out);
  // join_node's body, inside the caller's transaction, in two round trips (pipelines): the
  // reads (the node, the relay key, the token, the name, the free range at the cursor), then
  // the writes. The result says a refusal (Errc::invalid, result.token). `decided`: the error is
  // this join's own outcome (refused, mesh full, a relay's key), not the transaction's: it is
  // decided before anything of the join is written, so nothing needs rolling back. With
  // `endpoints` the node's endpoints are written too.
  Result<void> join_in_transaction(const NodeRegistration& reg,
                                   const std::optional<PresentedToken>& presented,
                                   const MeshSettings& mesh, UnixSeconds now,
                                   const std::vector<Endpoint>* endpoints, JoinResult& result,
                                   bool& decided);
  // Its three steps; join_nodes sends one join's writes and the next one's reads in one round
  // trip. Where each step's statements sit among the results of their pipeline:
  struct JoinPlan {
    std::size_t node_at = 0;   // reads: the node row, then the relay key
    std::size_t token_at = 0;  // reads, with a token: its row, then the base name's
    std::size_t floor_at = 0;  // reads: the free range at the held cursor (0: not read)
    std::size_t node_row = 0;  // writes: the node's row (RETURNING)
    bool existing = false;
  };
  void join_reads(const NodeRegistration& reg, const std::optional<PresentedToken>& presented,
                  std::vector<PgStatement>& reads, JoinPlan& plan);
  // The reads' results from `offset` of `rows`; appends the writes.
  Result<void> join_writes(const NodeRegistration& reg,
                           const std::optional<PresentedToken>& presented,
                           const MeshSettings& mesh, UnixSeconds now,
                           const std::vector<Endpoint>* endpoints,
                           const std::vector<PgResult>& rows, std::size_t offset, JoinPlan& plan,
                           std::vector<PgStatement>& writes, JoinResult& result, bool& decided);
  // The writes' results from `offset` of `rows`: the node as stored.
  Result<void> join_finish(const std::vector<PgResult>& rows, std::size_t offset,
                           const JoinPlan& plan, JoinResult& result);
  // An address for a new node, its writes appended to `writes`. The first allocation of a
  // transaction locks the cursor row and keeps it (cursor_); `floor_at_cursor`, when given, is
  // the free range at or before that cursor, read in the join's first round trip.
  Result<Ipam::Allocation> take_address(const Ipam& ipam, const MeshSettings& mesh,
                                        const std::optional<std::optional<FreeRange>>& floor_at_cursor,
                                        std::vector<PgStatement>& writes);
  // Reads and locks the cursor row into cursor_ when this transaction does not hold it yet.
  Result<void> hold_cursor(const MeshSettings& mesh);
  Result<void> release_address(const MeshSettings& mesh, const IpAddress& ipv4);
  Result<void> rebuild_free_ranges(const MeshSettings& mesh);
  Result<std::optional<FreeRange>> range_lookup(bool floor, std::uint32_t at);
  Result<bool> key_in_table(std::string_view table, const wg::PublicKey& key);
  Result<void> insert_token(const Token& token);

  // The IPv4 cursor while this transaction holds its row's lock (a join transaction, from its
  // first allocation): allocations are serialised by that lock, so nobody else moves it and the
  // next join needs no round trip to read it. Reset when a transaction starts.
  struct HeldCursor {
    std::uint32_t value = 0;
  };
  std::optional<HeldCursor> cursor_;

  PgConnection conn_;
  std::string origin_;
  std::string coordinator_id_;
};

}  // namespace knit::coordinator
