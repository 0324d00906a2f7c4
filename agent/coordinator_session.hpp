// One session with the coordinator over one TCP connection, without I/O: the Noise IK channel
// (control/channel.hpp) and the control messages (control/messages.hpp) in the order the
// coordinator speaks them:
//
//   agent                                   coordinator
//   frame 1: RegisterRequest        ---->
//                                   <----   frame 2: RegisterResponse (ok, or a refusal and close)
//                                   <----   RelayMap, PeerMap{version}, PeerDelta{version + 1}...
//   EndpointUpdate, Ping{seq}       ---->
//                                   <----   Pong{seq}, ErrorMessage (then close)
//
// Bytes in (feed), frames out (start, seal), events out. The session keeps the current peer map;
// a delta that does not fit it (a gap in versions, or contents that do not match) ends the
// session, and the next session's full map sets things right.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "base/bytes.hpp"
#include "base/random.hpp"
#include "control/channel.hpp"
#include "control/messages.hpp"
#include "wg/keys.hpp"

namespace knit::agent {

struct SessionEvent {
  enum class Kind {
    registered,         // response: the coordinator accepted us; the session is open
    refused,            // response: the coordinator refused us (!ok); the session is over
    peers_changed,      // the peer map changed: a full map or a delta applied
    relay_map,          // relays
    pong,               // a Pong (liveness only)
    coordinator_error,  // error: the coordinator ends the session with a reason
    failed,             // failure: the session is unusable (hostile or broken input)
  };
  Kind kind = Kind::failed;
  control::RegisterResponse response;
  control::RelayMap relays;
  control::ErrorMessage error;
  std::string failure;
};

class CoordinatorSession {
 public:
  CoordinatorSession(const wg::PrivateKey& node_key, const wg::PublicKey& coordinator_key);

  // Message 1 carrying the register request, as a frame to write; nullopt (with `failure`
  // set) when it cannot be made (e.g. a low-order coordinator key).
  std::optional<Bytes> start(Random& rng, const control::RegisterRequest& request);
  // Consumes every byte of input, appending what happened to events. After a refused,
  // coordinator_error or failed event the session is over and further input is ignored.
  void feed(ByteSpan input, std::vector<SessionEvent>& events);
  // A message to the coordinator as one frame; nullopt when the session is not open.
  std::optional<Bytes> seal(const control::Message& message);

  bool registered() const { return registered_; }
  bool over() const { return over_; }
  const std::string& failure() const { return failure_; }
  bool has_peer_map() const { return has_map_; }
  const control::PeerMap& peer_map() const { return map_; }

 private:
  void on_response(ByteSpan payload, std::vector<SessionEvent>& events);
  void on_message(ByteSpan plaintext, std::vector<SessionEvent>& events);
  void fail(std::string why, std::vector<SessionEvent>& events);

  control::Channel channel_;
  bool registered_ = false;
  bool over_ = false;
  std::string failure_;
  bool has_map_ = false;
  control::PeerMap map_;
};

}  // namespace knit::agent
