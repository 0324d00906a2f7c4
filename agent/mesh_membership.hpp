// This host as a mesh member: joins with a token (`knit up`), keeps the coordinator session,
// applies what it says (mesh.hpp) and hands the mesh's paths what they need (mesh_paths.hpp),
// remembers the membership (node_identity.hpp) so a restarted knitd rejoins without a token,
// disconnects while staying a member (`knit down`) and leaves for good (`knit logout`). The
// CLI's questions are answered by local_api.hpp from its state.
//
//   not joined --up(token)--> joining --register ok--> joined <--up (no token)-- down
//                                 |  refused / unreachable / 30 s  |  |  --down------->  |
//                                 +--> not joined (the CLI gets why)  |                  |
//                                                                     | logout           | logout
//                                                                     v                  v
//                   not joined <--removed / 15 s / older coordinator-- logging out <-----+
//
// down: the coordinator session, the paths, the peers and the TUN's addresses go; mesh.json
// stays with "down": true, so a restarted knitd stays down and `knit up` reconnects without a
// token. logout: a session to the coordinator (opened for it when down) sends `logout`; the
// coordinator removes the node and ends the session with not_registered. When it cannot be
// told (unreachable for 15 s, or too old to know `logout`), the membership is forgotten here
// anyway and the answer says so: the node then stays in the coordinator's list until an admin
// runs `nodes remove`. A rejoin the coordinator refuses for good (the node was removed) also
// ends the membership.
//
// While joined the client reconnects on its own; tunnels are left as they are while the
// coordinator is away. Without a mesh, knitd is a plain WireGuard interface configured by `wg`.
//
// mesh_membership.cpp: the states above and the CLI's requests; mesh_membership_session.cpp:
// the coordinator's answers, and applying the peer map to the device, paths and host routes.
#pragma once

#include <asio.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "agent/carrier_watch.hpp"
#include "agent/control_server.hpp"
#include "agent/coordinator_client.hpp"
#include "agent/local_endpoints.hpp"
#include "agent/mesh.hpp"
#include "agent/mesh_paths.hpp"
#include "agent/node_identity.hpp"
#include "agent/route_settings.hpp"
#include "control/peer_map.hpp"
#include "base/random.hpp"

namespace knit::agent {

// What the membership needs of the data plane.
class MeshDevice {
 public:
  virtual ~MeshDevice() = default;
  // Runs change on the WireGuard device, then lets the data plane send what it queued.
  virtual void configure(const std::function<void(wg::Device&, wg::Now)>& change) = 0;
  virtual wg::Device& device() = 0;
  virtual std::uint16_t port() const = 0;
  // This node's mesh IPv4 (nullopt when it leaves the mesh), for the packet filter.
  virtual void set_mesh_address(const std::optional<IpAddress>& /*ipv4*/) {}
  // Its mesh IPv6 (the ULA), for the packet filter: an exit node's routed ::/0 leaves it out.
  virtual void set_mesh_ipv6(const std::optional<IpAddress>& /*ipv6*/) {}
  // The subnets this node routes for the mesh (packet_filter.hpp: routed traffic passes).
  virtual void set_routed_prefixes(const std::vector<IpPrefix>& /*routes*/) {}
  // `--snat-routes` (router_nat.hpp); told before set_routed_prefixes.
  virtual void set_snat_routes(bool /*on*/) {}
  // The access policy's rules for traffic into this node, as pushed (hostile until the filter
  // has decoded them); no policy (the mesh is open) when !rules.in_force.
  virtual void set_policy_rules(const control::PolicyRules& /*rules*/) {}
};

// The host's default route, for an exit node (exit_routing.hpp carries it out).
class ExitHost {
 public:
  virtual ~ExitHost() = default;
  // nullopt: the host's own default route; otherwise through the TUN, with the LAN kept off the
  // tunnel when allow_lan. Idempotent. Returns one line per failed step.
  virtual std::vector<std::string> route_default(std::optional<bool> allow_lan) = 0;
};

class Membership final : private CoordinatorClient::Listener {
 public:
  struct Options {
    std::filesystem::path state_dir;
    std::string tun_name;  // not reported as an endpoint
    std::string version;
    std::chrono::steady_clock::duration up_timeout = std::chrono::seconds(30);
    std::chrono::steady_clock::duration logout_timeout = std::chrono::seconds(15);
    std::chrono::steady_clock::duration endpoint_poll = std::chrono::seconds(10);
    CoordinatorClient::Options client;  // timers and backoff; addresses etc. are filled in
  };

  // paths: the mesh's paths while joined (knitd's); null in tests of the membership alone,
  // whose peers then go to their published endpoints.
  Membership(asio::io_context& io, MeshDevice& device, LinkControl& link, MeshPaths* paths, Options options);
  ~Membership() override;

  // Rejoins the mesh remembered in the state directory, if any. Problems are logged, not thrown.
  void start();
  // Disconnects (shutdown). The mesh configuration stays: the TUN goes with the process.
  void stop();

  // `knit up`: joins with the token (or answers for the mesh already joined); the reply comes
  // when the coordinator has answered, or the attempt failed or timed out.
  void up(localapi::UpRequest request, ControlHandler::Reply reply);
  // `knit down`: disconnects, staying a member.
  localapi::ControlResponse down();
  // `knit logout`: tells the coordinator and forgets the mesh; the reply comes when the
  // coordinator has removed the node, or it could not be told (the answer says why).
  void logout(ControlHandler::Reply reply);

  // A member and connected (not down).
  bool joined() const { return mesh_.has_value() && !mesh_->down; }
  // The mesh this node is a member of (also while down).
  const std::optional<MeshRecord>& mesh() const { return mesh_; }
  const std::optional<NodeIdentity>& identity() const { return identity_; }
  const control::PeerMap& peers() const { return peers_.map(); }
  // What the last peer-map change cost (mesh.hpp PeerChanges; `examined`: peers compared with
  // the device). A delta that touches no subnet or exit route costs O(size of the delta).
  const PeerChanges& last_peer_changes() const { return last_changes_; }
  // The mesh's DNS settings, once the coordinator sent them (nullopt before, and off the mesh).
  const std::optional<control::DnsConfig>& dns_config() const { return dns_; }
  // Called whenever the names the mesh knows may have changed: joined or left, a peer map or a
  // delta applied, new DNS settings (knitd's DnsService follows in its table). What a peer-map
  // delta did to names: the entries of the peers it removed, renamed or gave new
  // addresses as they were (`gone`) and of those it added, renamed or readdressed as they are now
  // (`came`), so the resolver's table follows in O(changed) (dns_control.cpp). Anything else
  // that changes names (a full map, a delta through the routing path, this node renamed, new DNS
  // settings, joining or leaving) calls the listener with nullptr: look at everything again.
  struct NamesChange {
    std::vector<control::PeerInfo> gone;
    std::vector<control::PeerInfo> came;
  };
  using NamesListener = std::function<void(const NamesChange* change)>;
  void set_names_listener(NamesListener listener) { names_listener_ = std::move(listener); }
  // The endpoints sent to the coordinator.
  const std::vector<Endpoint>& endpoints() const { return endpoints_; }
  // Why the CLI cannot ask about the mesh now (not joined, still joining); nullopt when joined.
  std::optional<std::string> not_joined_error() const;
  localapi::CoordinatorStatus coordinator_status() const;
  bool coordinator_connected() const;
  // The paths while joined (null while not, and in tests of the membership alone).
  const MeshPaths* paths() const { return paths_ && paths_->running() ? paths_ : nullptr; }
  MeshPaths* paths() { return paths_ && paths_->running() ? paths_ : nullptr; }
  // Subnet routes (route_control.hpp): what we advertise (sent to the coordinator) and whether
  // peers' routes are used (their allowed IPs and the host's routes through the TUN).
  void set_route_settings(const RouteSettings& settings);
  const RouteSettings& route_settings() const { return routes_; }
  // Who carries each accepted route now (empty unless accepting), and the default routes of
  // the exit node in use.
  const RouteCarriers& route_carriers() const { return carriers_; }
  // The liveness of the carriers of prefixes more than one peer carries (carrier_health.hpp).
  const CarrierWatch& carrier_watch() const { return watch_; }
  // This host's interface addresses, as of the last look.
  const std::vector<InterfaceAddress>& local_addresses() const { return local_; }
  // The exit node this node uses (`knit set --exit-node`), as of the last peer map.
  const ExitChoice& exit_choice() const { return exit_; }
  // Where the default route is changed (knitd's ExitRouting); null: nowhere (tests).
  void set_exit_host(ExitHost* host) { exit_host_ = host; }
  // The coordinator's addresses that are IP literals (the underlay advertise_problem guards).
  std::vector<IpAddress> coordinator_ips() const;
  // The WireGuard device, for status.
  wg::Device& device() { return device_.device(); }
  const std::string& version() const { return options_.version; }

 private:
  // CoordinatorClient::Listener
  void on_registered(const control::RegisterResponse& response) override;
  void on_refused(const control::RegisterResponse& response, bool retrying) override;
  void on_peers(const control::PeerMap& map) override;
  void on_peer_delta(const control::PeerMap& map, const control::PeerDelta& delta) override;
  void on_relay_map(const control::RelayMap& relays) override;
  void on_dns_config(const control::DnsConfig& dns) override;
  void on_policy_rules(const control::PolicyRules& rules) override;
  void on_self_update(const control::NodeAssignment& self) override;
  void notify_names(const NamesChange* change = nullptr) {
    if (names_listener_) names_listener_(change);
  }
  void on_unreachable(const std::string& error, Duration retry_in) override;
  void on_disconnected(const std::string& reason) override;
  void on_logged_out() override;

  // with_paths: the data plane's paths too (not for a session that only logs out).
  void start_client(const MeshRecord& record, std::optional<std::string> token, bool with_paths = true);
  void fail_up(const std::string& message);
  // `knit up` after `knit down`: connected again, answered once the coordinator is.
  void reconnect(ControlHandler::Reply reply);
  void answer_up(localapi::ControlResponse response);
  // Drops the session, the paths, the peers and the TUN's addresses; the membership stays.
  void disconnect();
  void forget_mesh(const std::string& why);
  void send_logout();
  void finish_logout(bool told, const std::string& detail);
  void apply_self();
  void apply_peers();
  // A delta that touches no route: only its peers, on the device and the paths.
  void apply_peer_delta(const control::PeerDelta& delta);
  void log_changes(const PeerChanges& changes);
  void refresh_endpoints();
  void start_paths();
  void stop_paths();
  void on_candidates_changed();
  void arm_poll();

  asio::io_context& io_;
  MeshDevice& device_;
  LinkControl& link_;
  MeshPaths* paths_;  // may be null
  Options options_;
  StateDir state_;
  SystemRandom rng_;
  std::optional<NodeIdentity> identity_;
  std::optional<MeshRecord> mesh_;     // joined, as saved in mesh.json
  std::optional<MeshRecord> joining_;  // a `knit up` waiting for its first register answer
  ControlHandler::Reply pending_up_;
  bool reconnecting_ = false;  // pending_up_ is a `knit up` after `knit down`
  ControlHandler::Reply pending_logout_;  // set while logging out
  std::unique_ptr<CoordinatorClient> client_;
  MeshConfigurator configurator_;
  control::PeerTable peers_;  // follows the session's map delta by delta
  PeerChanges last_changes_;
  control::RelayMap relays_;
  std::optional<control::DnsConfig> dns_;
  NamesListener names_listener_;
  std::vector<InterfaceAddress> local_;
  RouteSettings routes_;
  RouteCarriers carriers_;
  CarrierWatch watch_;
  void on_carrier_health_changed();
  void log_carrier_changes(const RouteCarriers& previous) const;
  ExitChoice exit_;
  ExitHost* exit_host_ = nullptr;
  void apply_exit();
  std::vector<Endpoint> endpoints_;
  std::string last_problem_;       // why the membership ended, shown while not joined
  std::string last_logged_error_;  // the last unreachable error logged at warn level
  asio::steady_timer up_timer_;
  asio::steady_timer logout_timer_;
  asio::steady_timer poll_timer_;
  bool running_ = false;
};

}  // namespace knit::agent
