// One session with the coordinator over one TCP connection, without I/O: the client session
// knitd and knit-relay share (control/client_session.hpp) with knitd's register request and
// answer. The messages in the order the coordinator speaks them:
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
#include "control/client_session.hpp"
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
  bool over() const { return session_.over(); }
  const std::string& failure() const { return session_.failure(); }
  bool has_peer_map() const { return session_.has_peer_map(); }
  const control::PeerMap& peer_map() const { return session_.peer_map(); }

 private:
  control::ClientSession session_;
  std::vector<control::ClientEvent> client_events_;
  bool registered_ = false;
};

}  // namespace knit::agent
