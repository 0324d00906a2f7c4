// `knit-coordinator serve`: the control server. One Asio event loop, single-threaded, serving
// every agent's control session (agent_session.hpp) from one Store. Its jobs, by file:
//   server.cpp           lifecycle, the accept loop, sessions and who owns which node key
//   server_register.cpp  registration of agents and relays, what agents report
//   server_publish.cpp   publishing the peer map, changes made by others, the ephemeral sweep
//
//   agent ──TCP──► AgentSession ──on_register/on_endpoints/...──► Server ──► Store
//                       ▲                                            │     ▲
//                       └──── relay map, map pages, deltas ──────────┘     │ ChangeFeed
//                                    PeerView (peer_view.hpp)              │ (others' changes)
//
// Joins: the register requests that arrive in one turn of the loop are stored in one
// transaction (Store::join_nodes) on the next, then answered: a join storm costs the store one
// commit per batch, not two per node.
//
// What each agent holds: the relay map, then a full peer map (every node but itself) at the
// server's current version V, then one peer delta per version V+1, V+2, ... The server keeps one
// published map for everybody (PeerView); a change (a join, a disconnect, new endpoints, an
// admin's `nodes remove` heard through the change feed, an ephemeral node expiring) is noted as
// pending and published within publish_delay, several changes as one delta; while changes keep
// coming (a join storm), versions are spaced by a multiple of what sending the last one cost, so
// each session gets fewer, larger deltas and the fan-out cannot crowd out joins. A delta is encoded
// once and the same bytes go to every session, except to the few nodes the delta is about, who
// get it without their own entry: O(size of the change) encoding and one seal per session. A
// joining agent's full map streams as pages from a snapshot of per-peer entries kept with the
// published map (map_snapshot.hpp), sealed as its socket drains.
//
// Presence: a node is online while it has a live session here (the newest session of a node
// key replaces an older one). On disconnect it goes offline with last_seen, which for an
// ephemeral node starts its grace period; a periodic sweep removes those past it. A coordinator
// that dies cannot say its nodes went offline: each holds a lease in the store, renewed every
// few seconds, and the others take the nodes of a lease that ran out offline (keep_lease).
//
// Other processes (the admin CLI, other coordinators on one PostgreSQL) change the same store:
// the change feed (change_feed.hpp) tells the server which nodes changed, it reads those again
// and publishes the differences; a removed node's own session is told and closed. When the
// feed may have missed something it reloads everything.
//
// Relays (knit-relay) connect like agents, with a relay_register as message 1 and their relay
// key as the channel's static key: a relay token the first time, nothing but the key later. A
// relay session gets the relay map, the full peer map and every delta exactly as an agent does
// (a relay admits only current members), and is online while connected (`relays list`). A relay
// is never a peer: its key is refused as a node's and a node's key as a relay's (key_in_use).
// A relay joining, changing its addresses or being removed (`relays remove`) sends the new relay
// map to every agent and relay; a removed relay's own session is told and closed.
#pragma once

#include <asio.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "base/random.hpp"
#include "control/messages.hpp"
#include "control/peer_map.hpp"
#include "base/handshake_slots.hpp"
#include "coordinator/agent_session.hpp"
#include "coordinator/change_feed.hpp"
#include "coordinator/peer_view.hpp"
#include "coordinator/routes.hpp"
#include "coordinator/policy_publisher.hpp"
#include "coordinator/records.hpp"
#include "coordinator/store.hpp"
#include "wg/keys.hpp"

namespace knit::coordinator {

struct ServerOptions {
  UnixSeconds ephemeral_grace = kDefaultEphemeralGrace;
  SessionLimits session;
  std::chrono::steady_clock::duration sweep_interval = std::chrono::seconds(30);
  // Changes within this window go out as one delta (a reconnect storm, a flapping agent).
  std::chrono::steady_clock::duration publish_delay = std::chrono::milliseconds(50);
  // Under a storm of changes (thousands joining) versions are spaced so that sending them takes
  // at most 1/kFanOutShare of the loop (server_publish.cpp), but never further apart than this.
  std::chrono::steady_clock::duration max_publish_spacing = std::chrono::seconds(1);
  std::size_t max_sessions = 100000;   // connections at once; more are closed on accept
  std::size_t max_handshakes = 4096;   // of them not registered yet (base/handshake_slots.hpp)
  std::size_t max_handshakes_per_source = 1024;  // of those, from one IPv4 address or IPv6 /64
  std::function<UnixSeconds()> now;    // wall clock, unix seconds; default std::time
  // Who this coordinator is among several on one database (Store::set_coordinator_id).
  std::string coordinator_id;
  // With a coordinator_id: its lease (Store::renew_lease) is renewed every lease_renew_interval
  // for lease_duration seconds, and each renewal expires the leases of others that ran out. So
  // the nodes of a coordinator that died go offline for everyone at most about lease_duration +
  // lease_renew_interval after its last renewal.
  UnixSeconds lease_duration = 30;
  std::chrono::steady_clock::duration lease_renew_interval = std::chrono::seconds(10);
  // Hears of others' changes; default make_change_feed(io, store). Tests may give none.
  std::function<std::unique_ptr<ChangeFeed>(asio::io_context&, Store&)> change_feed;
};

class Server final : private SessionHost {
 public:
  // The store, rng and io must outlive the server. mesh is the store's (ensure_mesh).
  Server(asio::io_context& io, Store& store, const wg::PrivateKey& coordinator_key,
         const MeshSettings& mesh, Random& rng, ServerOptions options = {});
  ~Server();  // stop()
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Listens, marks its nodes offline (nobody is connected yet), loads the mesh from the store
  // and starts accepting, following the change feed and sweeping. Throws std::system_error when it cannot listen,
  // std::runtime_error when the store cannot be read or written.
  void start(const asio::ip::tcp::endpoint& listen);
  // Closes the acceptor and every session (their nodes go offline) and cancels the timers, so
  // io_context::run() returns once nothing else is pending. Logs the counters. Idempotent.
  void stop();

  asio::ip::tcp::endpoint local_endpoint() const;
  const ServerCounters& counters() const { return counters_; }
  // "accepted 12, handshake failures 1, ..." for the log.
  std::string summary() const;
  std::size_t session_count() const { return sessions_.size(); }
  std::size_t online_count() const { return owners_.size(); }
  std::size_t relay_online_count() const { return relay_owners_.size(); }
  std::uint64_t map_version() const { return view_.version(); }

 private:
  using Owners = std::unordered_map<control::NodeKey, AgentSession*, control::NodeKeyHash>;
  Owners& owners_of(const AgentSession& session);
  const Owners& owners_of(const AgentSession& session) const;

  // SessionHost
  std::optional<control::RegisterResponse> on_register(
      AgentSession& session, const control::RegisterRequest& request) override;
  // The register requests of one turn of the loop, stored as one batch (Store::join_nodes) and
  // answered (server_register.cpp).
  void store_joins();
  control::RegisterResponse finish_register(AgentSession& session, const BatchedJoin& join,
                                            Result<JoinResult>& joined);
  control::RelayRegisterResponse on_relay_register(AgentSession& session,
                                                   const control::RelayRegister& request) override;
  void on_open(AgentSession& session) override;
  void on_endpoints(AgentSession& session, const control::EndpointUpdate& update) override;
  void on_nat_report(AgentSession& session, const control::NatReport& report) override;
  void on_logout(AgentSession& session) override;
  void on_route_advertise(AgentSession& session, const control::RouteAdvertise& ad) override;
  void on_closed(AgentSession& session, CloseReason reason) override;
  ServerCounters& session_counters() override { return counters_; }

  void accept_next();
  void on_accept(std::error_code ec, asio::ip::tcp::socket socket);
  void reap();
  bool is_owner(const AgentSession& session) const;
  // The node's (or relay's) session from now on; an older one of the same key is closed.
  void take_ownership(AgentSession& session);
  // A presented join token, checked to be this coordinator's; false (and why) when it is not.
  bool read_token(const std::string& text, std::optional<PresentedToken>& out,
                  std::string& why) const;
  // Sends relay_map_text_ to every agent and relay; closes the sessions of removed relays.
  void push_relay_map();
  void mark_offline(const control::NodeKey& key);
  void update_node(const control::NodeKey& key, const std::vector<Endpoint>& endpoints,
                   const std::string& home_relay);
  void forget_node(const control::NodeKey& key, std::string_view why);
  void schedule_publish();
  void publish();
  void on_store_changes(std::vector<StoreChange> changes, bool resync);
  void refresh_node(const control::NodeKey& key);
  void reload();
  bool load_relays();
  // Reads the DNS settings into dns_config_text_; true when they changed.
  bool load_dns();
  // The route book, read again (server_routes.cpp); a peer entry with its published routes.
  void load_routes();
  control::PeerInfo routed_peer_info(const Node& node) const;
  // Sends dns_config_text_ to every agent that understands it.
  void push_dns();
  // The access policy (policy_publisher.hpp): reads the store's; true when it changed.
  bool load_policy();
  // Sends each agent that enforces policies its rules where they changed (server_publish.cpp).
  // peers_fresh: update_policy_peers() just ran (publish), so the view is not walked again.
  void push_policy(bool peers_fresh = false);
  // Hands the peer view to the policy publisher while a policy is in force (what the rules and
  // who-sees-whom are compiled against).
  void update_policy_peers();
  // The delta of `published` as `session` must see it while the access policy trims maps
  // (visibility.hpp): only the peers it may see, plus those it must now gain or lose; `regroup`:
  // who sees whom changed since its last delta, so every peer is looked at, not only those the
  // delta names. Keeps the session's set of held peers.
  std::string trimmed_delta(AgentSession& session, const Visibility* visibility, std::uint64_t generation,
                            bool regroup, const PeerView::Published& published);
  void sweep();
  // Renews this coordinator's lease and expires others' (server_publish.cpp).
  void keep_lease();
  void arm(asio::steady_timer& timer, std::chrono::steady_clock::duration after,
           void (Server::*handler)());
  UnixSeconds now() const { return options_.now(); }

  asio::io_context& io_;
  Store& store_;
  wg::PrivateKey key_;
  wg::PublicKey public_key_{};
  MeshSettings mesh_;
  RouteBook routes_;
  Random& rng_;
  ServerOptions options_;
  asio::ip::tcp::acceptor acceptor_;
  asio::steady_timer accept_retry_timer_;
  asio::steady_timer sweep_timer_;
  asio::steady_timer publish_timer_;
  asio::steady_timer lease_timer_;
  // Handlers hold a weak reference: one that runs after the server is gone does nothing.
  std::shared_ptr<char> alive_ = std::make_shared<char>();
  bool started_ = false;
  bool stopped_ = false;
  bool publish_armed_ = false;
  // The last publish: when it started and how long sending it took (the pacing above).
  std::chrono::steady_clock::time_point last_publish_started_{};
  std::chrono::steady_clock::duration last_publish_cost_{};
  bool reap_posted_ = false;

  ServerCounters counters_;
  std::unordered_map<AgentSession*, std::shared_ptr<AgentSession>> sessions_;
  HandshakeSlots<AgentSession*> handshakes_;  // sessions not registered yet
  Owners owners_;        // agents: registered, live
  Owners relay_owners_;  // relays: registered, live
  std::vector<AgentSession*> closed_;  // to forget on the next turn of the loop
  struct PendingJoin {
    std::shared_ptr<AgentSession> session;
    BatchedJoin join;
  };
  std::vector<PendingJoin> pending_joins_;  // registers waiting for store_joins
  bool joins_posted_ = false;
  PeerView view_;
  std::vector<control::RelayInfo> relays_;
  std::string relay_map_text_;
  std::string dns_config_text_;  // control::DnsConfig, encoded
  PolicyPublisher policy_;
  std::uint64_t published_generation_ = 0;  // the visibility generation of the last publish
  std::unique_ptr<ChangeFeed> feed_;
};

}  // namespace knit::coordinator
