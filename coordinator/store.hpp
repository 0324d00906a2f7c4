// The coordinator's state behind one interface, so the SQLite store (one machine) and a
// PostgreSQL store (several coordinators, docs/ARCHITECTURE.md "Scaling out") are interchangeable. Every
// operation that reads and then writes is atomic: two coordinators or an admin command and a
// running server may use the same state at once. Time is always passed in as `now`.
//
// Noticing changes made elsewhere (an admin removing a node, another coordinator on the same
// PostgreSQL): every write that changes what agents see is noted in its own transaction, with
// the writing connection's origin() and the node it is about: in SQLite as a row of a change log
// that the server reads when the database file changes (sqlite_change_feed.hpp), in PostgreSQL
// as a NOTIFY every coordinator LISTENs for (pg_change_feed.hpp). A coordinator skips its own
// notes: it already knows.
//
// Addresses come from a table of free IPv4 ranges (ipam.hpp), so a join costs O(log N) in the
// store whatever the size of the mesh.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/ip.hpp"
#include "base/random.hpp"
#include "coordinator/dns_settings.hpp"
#include "coordinator/policy_settings.hpp"
#include "coordinator/records.hpp"
#include "coordinator/result.hpp"
#include "coordinator/tokens.hpp"

namespace knit::coordinator {

// What an agent reports when it registers.
struct NodeRegistration {
  wg::PublicKey node_key{};
  wg::PublicKey disco_key{};
  std::string hostname;
  std::string os;
};

// A join token as presented, reduced to what the store checks: its id (hex) and the hash of its
// secret (control::secret_hash).
struct PresentedToken {
  std::string id;
  SecretHash secret_hash{};
};

struct JoinResult {
  TokenCheck token = TokenCheck::unknown;  // anything but ok: refused, nothing changed
  bool created = false;                    // a new node rather than a known key re-joining
  Node node;
};

// One join of a batch (Store::join_nodes): what join_node takes, and the endpoints the agent
// reported with it, stored with the node (set_node_endpoints) when they differ.
struct BatchedJoin {
  NodeRegistration registration;
  std::optional<PresentedToken> token;
  std::vector<Endpoint> endpoints;
};

struct RelayRegistration {
  std::string name;  // sanitised to a DNS label
  wg::PublicKey node_key{};
  std::vector<std::string> addresses;  // "host:port"
  std::uint16_t stun_port = 0;
};

// A note of a change (see the header comment).
struct StoreChange {
  enum class Kind : std::uint8_t {
    node = 1,    // node_key joined, changed, or was removed: read it again
    relays = 2,  // the relay map changed
    nodes = 3,   // many nodes at once (a coordinator marking its nodes offline): read them all
    dns = 4,     // the mesh's DNS settings (older coordinators read everything for it)
    policy = 5,  // the access policy or admin tags (policy_settings.hpp; older: read everything)
  };
  Kind kind = Kind::node;
  wg::PublicKey node_key{};
  friend bool operator==(const StoreChange&, const StoreChange&) = default;
};

// Everything a mesh is, for `knit-coordinator migrate`: rows as they are stored.
struct StoreSnapshot {
  std::optional<MeshSettings> mesh;
  std::optional<std::string> listen_address;
  std::uint32_t ipv4_cursor = 0;
  std::vector<Token> tokens;
  std::vector<Node> nodes;
  std::vector<std::pair<Relay, std::string>> relays;  // with the token id each registered with
};

enum class StoreBackend { sqlite, postgres };

// What Store::expire_leases did: the coordinators whose lease ran out, and their nodes it took
// offline.
struct ExpiredLeases {
  std::vector<std::string> coordinators;
  std::vector<wg::PublicKey> nodes;
};

// Past this many nodes a lease expiry is noted as one Kind::nodes change (others read every
// node again) rather than one note per node.
inline constexpr std::size_t kMaxLeaseNodeNotes = 256;

struct RelayJoinResult {
  TokenCheck token = TokenCheck::unknown;
  bool created = false;
  Relay relay;
};

class Store {
 public:
  virtual ~Store() = default;

  // --- The mesh ---
  // Fixes the mesh's settings on first use: the IPv4 prefix (ipv4_prefix, else 100.64.0.0/10)
  // and a random ULA /48. Later calls return the stored settings; asking for a different IPv4
  // prefix is allowed only while the mesh has no nodes (Errc::conflict otherwise).
  virtual Result<MeshSettings> ensure_mesh(const std::optional<IpPrefix>& ipv4_prefix,
                                           Random& rng) = 0;
  virtual Result<std::optional<MeshSettings>> mesh_settings() = 0;
  // The HOST:PORT `serve --listen` last used; token create puts it in tokens by default.
  virtual Result<void> set_listen_address(std::string_view address) = 0;
  virtual Result<std::optional<std::string>> listen_address() = 0;
  // The mesh's DNS settings (dns_settings.hpp); defaults (knit.internal, no split) until set.
  virtual Result<DnsSettings> dns_settings() = 0;
  // Stores them (normalize_dns_settings first: Errc::invalid with its sentence) and notes a
  // change, so every coordinator pushes them to its agents.
  virtual Result<void> set_dns_settings(const DnsSettings& settings) = 0;
  // The access policy and the tags admins set (policy_settings.hpp).
  virtual Result<PolicySettings> policy_settings() = 0;
  // Stores them with the version one past the stored one (settings.version is ignored) and
  // notes a change, so every coordinator pushes the new rules. Validate before calling.
  virtual Result<void> set_policy_settings(const PolicySettings& settings) = 0;

  // --- Other settings rows (routes.hpp keeps route advertisements and approvals there) ---
  virtual Result<std::optional<std::string>> read_setting(std::string_view key) = 0;
  // Reads one row, lets `change` decide its new value (nullopt: leave it) and the nodes whose
  // peer-map entries that changes (noted as node changes), and writes it, in one transaction.
  using SettingChange = std::function<Result<std::optional<std::string>>(
      const std::optional<std::string>& old, std::vector<wg::PublicKey>& changed)>;
  virtual Result<void> update_setting(std::string_view key, const SettingChange& change) = 0;

  // --- Join tokens ---
  virtual Result<void> add_token(const Token& token) = 0;
  virtual Result<std::vector<Token>> list_tokens() = 0;  // oldest first
  virtual Result<std::optional<Token>> find_token(std::string_view id) = 0;
  // Errc::not_found for an unknown id. Nodes that joined with it stay.
  virtual Result<void> revoke_token(std::string_view id) = 0;
  // Checks a presented token and, when it is ok, counts one use, atomically: of two concurrent
  // uses of a one-use token exactly one gets ok, the other `used`.
  virtual Result<TokenCheck> consume_token(const PresentedToken& token, TokenUse use,
                                           UnixSeconds now) = 0;

  // --- Nodes ---
  // Registers a node, in one transaction: checks and consumes the token, names the node and
  // allocates its addresses, and marks it online (last_seen = now). A node key already known
  // keeps its name (unless its hostname changed) and its addresses; it needs no token (the
  // control channel proved the key), and re-presenting the token it joined with is not a second
  // use. A known key with a different token takes that token's tags and kind.
  // Errc::mesh_full when no IPv4 address is free (the token is then not used up);
  // Errc::conflict before ensure_mesh.
  virtual Result<JoinResult> join_node(const NodeRegistration& node,
                                       const std::optional<PresentedToken>& token,
                                       UnixSeconds now) = 0;
  // Several joins (the register requests that arrived in one turn of the server's loop), each
  // with join_node's semantics and its own result, then its endpoints stored when they differ
  // from the node's. A backend may run them in one transaction, a savepoint each, so a join
  // storm costs one commit per batch rather than two per node; a failed commit fails every join
  // of the batch. The default runs them one by one.
  virtual std::vector<Result<JoinResult>> join_nodes(const std::vector<BatchedJoin>& joins,
                                                     UnixSeconds now);
  virtual Result<std::vector<Node>> list_nodes() = 0;  // by name
  virtual Result<std::optional<Node>> find_node(const wg::PublicKey& node_key) = 0;
  virtual Result<std::optional<Node>> find_node_by_name(std::string_view name) = 0;
  // Returns the removed node (the server sends a delta); Errc::not_found if there is none.
  virtual Result<Node> remove_node(std::string_view name) = 0;
  // The same by node key (a node logging itself out).
  virtual Result<Node> remove_node(const wg::PublicKey& node_key) = 0;
  // Gives a node another name (a DNS label, sanitize_label's form): Errc::invalid for another
  // form, Errc::conflict when a node has it, Errc::not_found for no node named `from`. The
  // node keeps it across rejoins until its hostname changes. Returns the renamed node.
  virtual Result<Node> rename_node(std::string_view from, std::string_view to) = 0;
  // online: last_seen = now, no disconnection time. Offline: disconnected_at = now, which
  // starts an ephemeral node's grace period. Errc::not_found for an unknown key.
  virtual Result<void> set_node_online(const wg::PublicKey& node_key, bool online,
                                       UnixSeconds now) = 0;
  virtual Result<void> touch_node(const wg::PublicKey& node_key, UnixSeconds now) = 0;
  virtual Result<void> set_node_endpoints(const wg::PublicKey& node_key,
                                          const std::vector<Endpoint>& endpoints,
                                          std::string_view home_relay, UnixSeconds now) = 0;
  // Removes ephemeral nodes offline since at least `grace` seconds; returns them.
  virtual Result<std::vector<Node>> expire_ephemeral(UnixSeconds now, UnixSeconds grace) = 0;
  // At server start: nobody is connected yet. Nodes marked online (a crash) or never seen
  // disconnected become offline as of now; so do relays marked online.
  virtual Result<void> mark_all_offline(UnixSeconds now) = 0;

  // --- Relays ---
  // Registers a relay with a relay token and marks it online (last_seen = now). The name is a
  // DNS label; a relay key already known keeps its registration and needs no token (the
  // control channel proved the key; re-presenting its own token is not a second use), and its
  // name, addresses and STUN port are updated; a name held by another key is taken over, since
  // only an admin's relay token gets this far. A relay key and a node key are never the same:
  // Errc::conflict when the key is a node's (join_node refuses a relay's key likewise).
  virtual Result<RelayJoinResult> join_relay(const RelayRegistration& relay,
                                             const std::optional<PresentedToken>& token,
                                             UnixSeconds now) = 0;
  virtual Result<std::vector<Relay>> list_relays() = 0;  // by name
  virtual Result<void> remove_relay(std::string_view name) = 0;
  // last_seen = now either way. Errc::not_found for an unknown key.
  virtual Result<void> set_relay_online(const wg::PublicKey& relay_key, bool online,
                                        UnixSeconds now) = 0;

  // --- Coordinators ---
  // The coordinator this connection writes for ("host:port"): join_node and set_node_online
  // record it as the node's, and a node goes offline (set_node_online false, mark_all_offline)
  // only for the coordinator it is connected to, so a node that moved to another coordinator
  // is not marked offline by the one it left. Empty (the admin CLI): every node.
  virtual void set_coordinator_id(std::string id) = 0;
  // Leases: a coordinator that dies (kill -9, a lost host) cannot mark its nodes offline, so
  // each running coordinator holds a lease in the store, `coordinators(id, expires_at)`, and
  // renews it well before it runs out; the others take the nodes of a lease that ran out
  // offline. Times are each coordinator's wall clock: their clocks must agree to well within a
  // lease (NTP does). The id is set_coordinator_id's; with an empty id these do nothing.
  //
  // Extends this coordinator's lease to now + duration. Returns whether it still held it:
  // false when it had none (its first renewal) or when another coordinator found it expired
  // (this one stalled for longer than a lease) and took its nodes offline; the caller then
  // marks the nodes it serves online again.
  virtual Result<bool> renew_lease(UnixSeconds now, UnixSeconds duration) = 0;
  // Every other coordinator whose lease ran out before `now`: its nodes still marked online
  // go offline as of now (disconnected_at = now, so ephemeral ones start their grace) and
  // its lease is deleted, in one transaction; each node is noted as changed (many at once as
  // Kind::nodes). O(expired leases + their nodes), by the index on connected_to.
  virtual Result<ExpiredLeases> expire_leases(UnixSeconds now) = 0;
  // Deletes this coordinator's lease (a clean stop, once its nodes went offline).
  virtual Result<void> release_lease() = 0;

  // --- Changes made by others ---
  virtual StoreBackend backend() const = 0;
  // This connection's id in the change notes (random, per connection).
  virtual const std::string& origin() const = 0;

  // --- Moving a mesh (migrate) ---
  virtual Result<StoreSnapshot> export_all() = 0;
  // Into an empty store (no node, token or relay: Errc::conflict otherwise), in one
  // transaction, keeping every key, name and address.
  virtual Result<void> import_all(const StoreSnapshot& snapshot) = 0;
};

}  // namespace knit::coordinator
