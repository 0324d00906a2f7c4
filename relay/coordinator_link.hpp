// knit-relay's link to the coordinator: the relay joins the mesh with a relay token, appears in
// the relay map, and receives the membership it admits clients by (docs/ARCHITECTURE.md "CLI and daemon").
//
//   relay                                         coordinator
//   frame 1: relay_register {token?, name,  ---->   (Noise IK; static key = the relay key)
//            addresses[], stun_port, version}
//                                           <----   frame 2: relay_register_response
//                                           <----   relay_map, peer_map, peer_delta...
//   ping (every 15 s)                       ---->
//                                           <----   pong; error (then close)
//
// The connection is the one knitd uses (net/coordinator_connection.hpp: TCP to each coordinator
// address, the Noise session, pings and liveness, reconnection with backoff and failover between
// addresses); this file is the relay's protocol over it, and the state directory
// (coordinator_link_state.hpp). The listener gets the node keys of every member (not the whole
// peer entries: a relay needs nothing else), and only when that set changes.
//
//   start: cache? ──► on_members/on_relays at once ──► connecting ──ok──► connected
//                                                        ▲    │ every address failed, lost
//                                                        └── waiting (backoff) ◄──┘
//   refused (bad, used, revoked or expired token; relay removed): on_coordinator(false, why)
//   and the link stops; a relay the coordinator no longer knows also drops its cached membership.
//
// Timers: connect (resolve + TCP) 5 s per address, handshake 10 s, ping every 15 s, no message
// for 45 s = a dead connection. Everything runs on the io_context's thread: call start() and
// stop() there (or before run()); listener calls come from there.
#pragma once

#include <asio.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/time.hpp"
#include "control/messages.hpp"
#include "net/coordinator_connection.hpp"
#include "wg/keys.hpp"

namespace knit::relay {

class MembershipListener {
 public:
  virtual ~MembershipListener() = default;
  virtual void on_members(const std::vector<wg::PublicKey>& node_keys) = 0;  // the full current set
  virtual void on_relays(const std::vector<control::RelayInfo>& relays) = 0;  // the full relay map (includes this relay)
  virtual void on_coordinator(bool connected, const std::string& detail) = 0;
};

class CoordinatorLink {
 public:
  // Tuning (the connection's timers and backoff, inherited): the defaults are what knit-relay
  // uses.
  struct Options : net::CoordinatorConnection::Timing {
    std::optional<std::string> token;    // the relay join token (needed on first start)
    std::filesystem::path state_dir;     // relay.key (0600), the cached membership, coordinator address
    std::string name;                    // relay name
    std::vector<std::string> advertise;  // "host:port" agents dial
    std::uint16_t stun_port = 0;
    std::string version = KNIT_VERSION;
  };

  // Loads (or makes) the relay key and checks the options. Throws std::runtime_error with one
  // line a person can act on: a name that is not a DNS label, an address that is not HOST:PORT,
  // a damaged token, an unusable state directory. io and listener must outlive the link.
  CoordinatorLink(asio::io_context& io, Options options, MembershipListener& listener);
  ~CoordinatorLink();  // stop()
  CoordinatorLink(const CoordinatorLink&) = delete;
  CoordinatorLink& operator=(const CoordinatorLink&) = delete;

  // Loads the cache (calling the listener at once when a cache exists), then connects and keeps
  // reconnecting. Throws std::runtime_error when no coordinator is known (first start without
  // --token) or a state file is damaged.
  void start();
  // Closes the connection and cancels every timer; no listener call after this returns.
  void stop();
  const wg::PrivateKey& relay_key() const;  // the relay's static key (created on first start)

  // For status output and tests.
  bool connected() const;
  // Why the last attempt or session failed; empty when none has.
  std::string last_error() const;

  class Core;

 private:
  std::shared_ptr<Core> core_;
};

// What a refusal means for a relay's operator: the control/error_code.hpp sentence, worded for
// relay tokens (`token create --relay`), then the coordinator's detail.
std::string relay_refusal_text(control::ErrorCode code, const std::string& detail);

}  // namespace knit::relay
