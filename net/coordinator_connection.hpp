// One connection to the coordinator, kept up on the caller's Asio loop: the I/O shell every
// client of the coordinator shares (knitd's agent/coordinator_client.hpp, knit-relay's
// relay/coordinator_link.hpp). It dials, runs the Noise IK session (control/client_session.hpp)
// with the hello its owner makes, reads frames, pings, declares a silent coordinator dead and
// reconnects with control::ReconnectBackoff; the owner keeps only its own protocol: what its
// hello says and what it does with the answer and the maps.
//
//   stopped --start--> connecting --answer ok--> connected --lost--> (next address) connecting
//                          |  every address failed       |                ^
//                          +------> waiting (backoff) ---+----------------+
//                                                  refused: waiting (internal error) or stopped
//
// Addresses (a join token carries up to 8): a round tries each once, in order, from where it
// starts. A lost session starts the next round at the address after the one it was on, so a
// dead coordinator is tried last, and at once when that session had been up a while (another
// address is untried: no reason to wait); the backoff paces only failed rounds and sessions that
// end as soon as they start. The peers WireGuard knows are never touched here: tunnels outlive
// the coordinator, and survive a move to another one.
//
// Timers: connect (resolve + TCP) 5 s per address, handshake 10 s, Ping every 15 s, no message
// for 45 s = a dead connection (all Options).
#pragma once

#include <asio.hpp>

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "base/random.hpp"
#include "base/time.hpp"
#include "control/channel.hpp"
#include "control/host_port.hpp"
#include "control/messages.hpp"
#include "control/reconnect_backoff.hpp"
#include "wg/keys.hpp"

namespace knit::net {

class CoordinatorConnection {
 public:
  enum class State { stopped, connecting, connected, waiting };

  // The owner's protocol. Called on the io_context's thread; any callback may call stop() or
  // drop the connection (the listener is held while it is called, as a weak_ptr otherwise).
  class Listener {
   public:
    virtual ~Listener() = default;
    // Message 1 of a new session: a RegisterRequest or a RelayRegister. A join token in it is
    // wiped once the frame is made.
    virtual control::Message hello() = 0;
    // The coordinator accepted the hello (`answer` is its response); state() is connected.
    virtual void on_connected(const control::Message& answer) = 0;
    // The coordinator refused: `refusal` is its response (!ok) or an ErrorMessage is_final()
    // chose. retrying: the refusal may pass (an internal error) and a retry is scheduled;
    // otherwise the connection has stopped.
    virtual void on_refused(const control::Message& refusal, bool retrying) = 0;
    virtual void on_peers(const control::PeerMap& map) = 0;
    // A delta turned the map into `map` (which may already include later deltas of the same
    // read): a listener that keeps its own state can follow the delta in O(change). By
    // default, the whole map again.
    virtual void on_peer_delta(const control::PeerMap& map, const control::PeerDelta& /*delta*/) {
      on_peers(map);
    }
    virtual void on_relay_map(control::RelayMap relays) = 0;
    // The mesh's DNS settings (only to a client whose hello listed the "dns" feature).
    virtual void on_dns_config(control::DnsConfig /*dns*/) {}
    // The access policy's rules for this node (only with the "policy" feature in the hello).
    virtual void on_policy_rules(control::PolicyRules /*rules*/) {}
    // This node's own entry changed (only with the "self" feature in the hello).
    virtual void on_self_update(const control::NodeAssignment& /*self*/) {}
    // Every address was tried and none gave a session; the next round starts after retry_in.
    virtual void on_unreachable(const std::string& error, Duration retry_in) = 0;
    // An established session ended; reconnecting.
    virtual void on_disconnected(const std::string& reason) = 0;
    // An ErrorMessage that ends the membership rather than the session (a refusal, not a loss).
    virtual bool is_final(const control::ErrorMessage& /*error*/) const { return false; }
    // last_error() for a refusal: one line a person can act on.
    virtual std::string refusal_text(control::ErrorCode code, const std::string& /*detail*/) const {
      return control::human_message(code);
    }
  };

  // The timers and the backoff, which an owner's own options inherit (and tests shorten).
  struct Timing {
    Duration connect_timeout = std::chrono::seconds(5);  // per address: resolve + TCP
    Duration handshake_timeout = std::chrono::seconds(10);
    Duration ping_interval = std::chrono::seconds(15);
    Duration dead_after = std::chrono::seconds(45);  // no message for this long: dead
    // A session that lasted this long moves to the next address at once when it ends; a shorter
    // one waits the backoff first (a coordinator that accepts and drops is not hammered).
    Duration stable_after = std::chrono::seconds(1);
    control::ReconnectBackoff::Config backoff;
  };

  struct Options : Timing {
    std::vector<control::HostPort> addresses;  // 1..8: the coordinator and its peers
    wg::PublicKey coordinator_key{};
    std::string prologue{control::kChannelPrologue};
    std::string log_tag = "knitd";  // who logs the per-address failures (at debug level)
  };

  // io and rng must outlive the connection. own_key (the node or relay key) is copied, and
  // zeroed when dropped. Nothing happens before start().
  CoordinatorConnection(asio::io_context& io, const wg::PrivateKey& own_key, Options options,
                        std::weak_ptr<Listener> listener, Random& rng);
  ~CoordinatorConnection();  // stop()
  CoordinatorConnection(const CoordinatorConnection&) = delete;
  CoordinatorConnection& operator=(const CoordinatorConnection&) = delete;

  // Connects and keeps reconnecting. With no address, last_error() says so and nothing starts.
  void start();
  // Closes the connection and cancels every timer; no listener call after this returns.
  void stop();
  // A message to the coordinator; false (nothing sent) unless connected.
  bool send(const control::Message& message);

  State state() const;
  // Why the last attempt or session failed; empty once a session is open.
  const std::string& last_error() const;
  // "HOST:PORT" of the coordinator while connected, else "".
  std::string address() const;

  class Core;

 private:
  std::shared_ptr<Core> core_;
};

std::string_view to_string(CoordinatorConnection::State state);

}  // namespace knit::net
