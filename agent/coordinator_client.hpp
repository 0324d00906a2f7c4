// knitd's connection to the coordinator: TCP to each address of the join token in order, a
// CoordinatorSession over it, pings, liveness and reconnection, on the caller's Asio loop.
//
//   stopped --start--> connecting --register ok--> connected --lost--> waiting --> connecting
//                          |  every address failed                        ^
//                          +-----------------------> waiting -------------+
//
// Timers: connect (resolve + TCP) 5 s per address, handshake 10 s, Ping every 15 s, no message
// for 45 s = a dead connection. Reconnection follows ReconnectBackoff. The peers WireGuard knows
// are never touched here: tunnels outlive the coordinator.
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
#include "wg/keys.hpp"

namespace knit::agent {

// The reconnection policy is shared with knit-relay's coordinator link.
using ReconnectBackoff = control::ReconnectBackoff;

class CoordinatorClient {
 public:
  enum class State { stopped, connecting, connected, waiting };

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
    virtual void on_relay_map(const control::RelayMap& relays) = 0;
    // Every address was tried and none gave a session; the client tries again after retry_in.
    virtual void on_unreachable(const std::string& error, Duration retry_in) = 0;
    // An established session ended; the client reconnects.
    virtual void on_disconnected(const std::string& reason) = 0;
  };

  struct Options {
    std::vector<control::HostPort> addresses;  // tried in order
    wg::PublicKey coordinator_key{};
    std::optional<std::string> token;  // first join only; forgotten after the first ok
    control::DiscoKey disco_key{};
    std::string hostname;
    std::string os = "linux";
    std::string version;
    std::vector<Endpoint> endpoints;
    Duration connect_timeout = std::chrono::seconds(5);
    Duration handshake_timeout = std::chrono::seconds(10);
    Duration ping_interval = std::chrono::seconds(15);
    Duration dead_after = std::chrono::seconds(45);
    ReconnectBackoff::Config backoff;
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

  State state() const;
  // Why the last attempt or session failed; empty when none has.
  std::string last_error() const;
  // "HOST:PORT" of the coordinator while connected.
  std::string address() const;

  class Core;

 private:
  std::shared_ptr<Core> core_;
};

std::string_view to_string(CoordinatorClient::State state);

}  // namespace knit::agent
