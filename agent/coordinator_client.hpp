// knitd's connection to the coordinator: the register request and what the answers mean for the
// agent (the peer map, the relay map, endpoint and NAT reports), over the shared coordinator
// connection (net/coordinator_connection.hpp: TCP to the join token's addresses, the Noise
// session, pings, liveness, reconnection and failover between addresses), on the caller's loop.
//
//   stopped --start--> connecting --register ok--> connected --lost--> waiting --> connecting
//                          |  every address failed                        ^      (next address)
//                          +-----------------------> waiting -------------+
//
// Timers: connect (resolve + TCP) 5 s per address, handshake 10 s, Ping every 15 s, no message
// for 45 s = a dead connection. Reconnection follows ReconnectBackoff; a settled session that is
// lost moves to the next address at once. The peers WireGuard knows are never touched here:
// tunnels outlive the coordinator.
#pragma once

#include <asio.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/random.hpp"
#include "base/time.hpp"
#include "control/host_port.hpp"
#include "control/messages.hpp"
#include "control/reconnect_backoff.hpp"
#include "net/coordinator_connection.hpp"
#include "wg/keys.hpp"

namespace knit::agent {

// The reconnection policy is shared with knit-relay's coordinator link.
using ReconnectBackoff = control::ReconnectBackoff;

class CoordinatorClient {
 public:
  using State = net::CoordinatorConnection::State;

  // Called on the io_context's thread. A listener may call stop() from any callback.
  class Listener {
   public:
    virtual ~Listener() = default;
    // The coordinator accepted our register request (every session).
    virtual void on_registered(const control::RegisterResponse& response) = 0;
    // The coordinator refused us. `retrying`: the refusal may pass (an internal error) and the
    // client tries again; otherwise the client has stopped.
    virtual void on_refused(const control::RegisterResponse& response, bool retrying) = 0;
    virtual void on_peers(const control::PeerMap& map) = 0;
    // A delta applied (net::CoordinatorConnection::Listener::on_peer_delta); by default the
    // whole map again.
    virtual void on_peer_delta(const control::PeerMap& map, const control::PeerDelta& /*delta*/) {
      on_peers(map);
    }
    virtual void on_relay_map(const control::RelayMap& relays) = 0;
    virtual void on_dns_config(const control::DnsConfig& /*dns*/) {}
    // The access policy's rules for traffic into this node (policy/wire.hpp inside).
    virtual void on_policy_rules(const control::PolicyRules& /*rules*/) {}
    // This node's own entry changed while connected (an admin renamed it).
    virtual void on_self_update(const control::NodeAssignment& /*self*/) {}
    // Every address was tried and none gave a session; the client tries again after retry_in.
    virtual void on_unreachable(const std::string& error, Duration retry_in) = 0;
    // An established session ended; the client reconnects.
    virtual void on_disconnected(const std::string& reason) = 0;
    // After logout(): the coordinator removed this node (it ended the session with
    // not_registered). The client has stopped.
    virtual void on_logged_out() {}
  };

  // The timers and backoff (connect_timeout, handshake_timeout, ping_interval, dead_after,
  // stable_after, backoff) are the connection's.
  struct Options : net::CoordinatorConnection::Timing {
    std::vector<control::HostPort> addresses;  // a round tries each, in order
    wg::PublicKey coordinator_key{};
    std::optional<std::string> token;  // first join only; forgotten after the first ok
    control::DiscoKey disco_key{};
    std::string hostname;
    std::string os = "linux";
    std::string version;
    std::vector<Endpoint> endpoints;
  };

  // io, rng and listener must outlive the client. The node key is copied (and zeroed on drop).
  CoordinatorClient(asio::io_context& io, const wg::PrivateKey& node_key, Options options,
                    Listener& listener, Random& rng);
  ~CoordinatorClient();  // stop()
  CoordinatorClient(const CoordinatorClient&) = delete;
  CoordinatorClient& operator=(const CoordinatorClient&) = delete;

  void start();
  // Closes the connection and cancels every timer; no listener call after this returns.
  void stop();
  // Our endpoints changed: sent as an EndpointUpdate while connected, and in every register.
  void set_endpoints(std::vector<Endpoint> endpoints);
  // The latest netcheck, sent now and again after every reconnection when it changed.
  void set_nat_report(const control::NatReport& report);
  // `knit logout`: from now on the session exists to say so. Sent at once while connected to a
  // coordinator that understands it, else as soon as a session with one opens; on_logged_out
  // tells when it is done. False when the coordinator this client is connected to is too old
  // to be told (it did not list the "logout" feature).
  bool logout();
  // What this node offers to route: sent in every session whose coordinator listed the
  // "routes" feature, and at once when it changes while connected.
  void set_route_advertise(const control::RouteAdvertise& ad);
  bool coordinator_can_route() const;
  // The coordinator of the current session listed the "logout" feature.
  bool coordinator_can_logout() const;

  State state() const;
  // Why the last attempt or session failed; empty when none has.
  std::string last_error() const;
  // "HOST:PORT" of the coordinator while connected.
  std::string address() const;

  class Core;

 private:
  std::shared_ptr<Core> core_;
};

using net::to_string;  // of a CoordinatorClient::State

}  // namespace knit::agent
