// The client's side of one control session over one TCP connection, without I/O, shared by
// every client of the coordinator: knitd (agent/coordinator_client.hpp) and knit-relay
// (relay/coordinator_link.hpp), both through net/coordinator_connection.hpp. The Noise IK
// channel (channel.hpp) and the messages (messages.hpp) in the order the coordinator speaks them:
//
//   client                                  coordinator
//   frame 1: hello (register or     ---->
//            relay_register)
//                                   <----   frame 2: the answer (ok, or a refusal and close)
//                                   <----   RelayMap, PeerMapPage{version, 0..count-1},
//                                           PeerDelta{version + 1}...
//   EndpointUpdate, Ping{seq}       ---->
//                                   <----   Pong{seq}, ErrorMessage (then close)
//
// Bytes in (feed), frames out (start, seal), events out. The answer is the response of the
// hello's kind: a register_response to a register, a relay_register_response to a
// relay_register (anything else fails the session); a refusal (!ok) ends the session after its
// `answered` event. The session keeps the current peer map (a PeerTable: a delta costs
// O(changed peers)); pages of a full map are gathered until the last one is in, and only then
// replace the map. Pages out of order, a map over kMaxPeers peers, or a delta that does not fit
// (a gap in versions, or contents that do not match) end the session, and the next session's
// full map sets things right.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/bytes.hpp"
#include "base/random.hpp"
#include "control/channel.hpp"
#include "control/messages.hpp"
#include "control/peer_map.hpp"
#include "wg/keys.hpp"

namespace knit::control {

struct ClientEvent {
  enum class Kind {
    answered,           // message 2 read: `answer` holds the parsed register_response or
                        // relay_register_response; over() when it refused us
    peers_changed,      // the peer map changed: a full map or a delta applied (`delta`)
    relay_map,          // relays
    dns_config,         // dns: the mesh domain and split DNS
    policy_rules,       // policy: the access policy's rules for traffic into this node
    self_update,        // self: this node's own entry changed (`self`)
    pong,               // a Pong (liveness only)
    coordinator_error,  // error: the coordinator ends the session with a reason
    failed,             // the session is unusable (hostile or broken input)
  };
  Kind kind = Kind::failed;
  Message answer;
  // peers_changed by a delta: the delta, as applied (so a listener can follow in O(change));
  // nullopt for a full map.
  std::optional<PeerDelta> delta;
  RelayMap relays;
  DnsConfig dns;
  PolicyRules policy;
  NodeAssignment self;
  ErrorMessage error;
  std::string failure;
};

class ClientSession {
 public:
  // own_key: the node key (knitd) or the relay key (knit-relay). prologue: the channel's
  // (channel.hpp); the text must outlive the call only.
  ClientSession(const wg::PrivateKey& own_key, const wg::PublicKey& coordinator_key,
                std::string_view prologue = kChannelPrologue);

  // Message 1 carrying `hello`, as a frame to write; nullopt (with `failure` set) when it cannot
  // be made (e.g. a low-order coordinator key). The encoded hello (it may carry a join token)
  // is wiped.
  std::optional<Bytes> start(Random& rng, const Message& hello);
  // Consumes every byte of input, appending what happened to events. After a refusal, a
  // coordinator_error or failed event the session is over and input is ignored.
  void feed(ByteSpan input, std::vector<ClientEvent>& events);
  // A message to the coordinator as one frame; nullopt when the session is not open.
  std::optional<Bytes> seal(const Message& message);

  bool answered() const { return answered_; }
  bool over() const { return over_; }
  const std::string& failure() const { return failure_; }
  bool has_peer_map() const { return has_map_; }
  const PeerMap& peer_map() const { return table_.map(); }

 private:
  void on_answer(ByteSpan payload, std::vector<ClientEvent>& events);
  void on_message(ByteSpan plaintext, std::vector<ClientEvent>& events);
  void fail(std::string why, std::vector<ClientEvent>& events);

  Channel channel_;
  bool relay_hello_ = false;  // the hello was a relay_register: only its response answers it
  bool answered_ = false;
  bool over_ = false;
  std::string failure_;
  void on_page(PeerMapPage& page, std::vector<ClientEvent>& events, ClientEvent& event,
               bool& ok);

  bool has_map_ = false;
  PeerTable table_;
  // The map being gathered from pages: the next page expected is its index.
  bool paging_ = false;
  std::uint32_t next_page_ = 0;
  std::uint32_t page_count_ = 0;
  PeerMap incoming_;
};

}  // namespace knit::control
