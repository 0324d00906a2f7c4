// One agent's (or one knit-relay's) control connection, as the coordinator sees it: a TCP stream
// carrying the Noise IK channel (control/channel.hpp), on the server's single-threaded Asio
// event loop. Message 1 says which it is: a register request makes an agent session, a
// relay_register a relay session (it receives the same relay map, peer map and deltas, and may
// send nothing but pings).
//
//   accept ──► handshake ──(message 1: register request)──► answered ──► open ──► closed
//              ≤ 10 s                                        │ refused: the answer is flushed,
//                                                            ▼ then the connection closes
//
// Everything the agent sends is hostile until it parses: a frame over 1 MiB
// (kMaxAgentFrameSize), a frame that does not decrypt, JSON that is not a message an agent may
// send, a handshake not done within the handshake timeout or no message for the idle timeout
// closes this connection and nothing else. Outgoing frames wait in a queue bounded in bytes; an
// agent that does not read fast enough to keep it under the bound is disconnected (it comes back
// for a full map). Queued messages are plaintexts (shared among sessions where they are the
// same: a delta), sealed only as the socket takes them, up to kMaxFramesPerWrite per write. A full map goes out page by page (map_snapshot.hpp): the next page is sealed
// only when the queue has drained below kMapPumpBytes, and messages sent meanwhile (deltas)
// wait, counted against the same bound, until the last page is out. The session decides nothing about the mesh: it hands what the agent said to
// its SessionHost (the server) and sends what it is given.
#pragma once

#include <asio.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "base/bytes.hpp"
#include "base/random.hpp"
#include "control/channel.hpp"
#include "control/messages.hpp"
#include "coordinator/map_snapshot.hpp"
#include "wg/keys.hpp"

namespace knit::coordinator {

// What the server counts about its connections (logged at shutdown).
struct ServerCounters {
  std::uint64_t accepted = 0;            // TCP connections accepted
  std::uint64_t refused_connections = 0;  // closed at once: too many connections
  std::uint64_t evicted_handshakes = 0;   // unregistered, closed to make room (base/handshake_slots.hpp)
  std::uint64_t handshake_failures = 0;  // garbage, wrong key, oversized frame before the answer
  std::uint64_t malformed = 0;           // unparsable or unexpected messages, bad frames after it
  std::uint64_t queue_overflows = 0;     // agents too slow to read what they were sent
  std::uint64_t timeouts = 0;            // handshake not done in time, or idle too long
  std::uint64_t registered = 0;          // register requests answered ok
  std::uint64_t rejected = 0;            // register requests refused (token, unknown key, ...)
  // Several coordinators on one database (Store::renew_lease): other coordinators' leases this
  // one found run out, their online nodes it marked offline, and the times this one found its
  // own lease gone (its loop or the database stalled past it) and took its nodes back.
  std::uint64_t leases_expired = 0;
  std::uint64_t lease_nodes_offline = 0;
  std::uint64_t lease_lost = 0;
};

enum class CloseReason {
  peer_closed,       // the agent closed the connection
  io_error,          // a socket error
  handshake_failed,  // the channel failed before the node was answered
  malformed,         // a message (or frame) the agent may not send
  timeout,           // handshake or idle timeout, or the refusal could not be flushed in time
  overflow,          // the send queue went over its bound
  refused,           // the register request was refused; the answer said why
  replaced,          // the same node key connected again
  removed,           // the node was removed from the mesh
  shutdown,          // the server is stopping
  evicted,           // not registered yet, and its slot went to a newer connection
};

std::string_view to_string(CloseReason reason);

struct SessionLimits {
  std::chrono::steady_clock::duration handshake_timeout = std::chrono::seconds(10);
  std::chrono::steady_clock::duration idle_timeout = std::chrono::seconds(45);
  // How long a refusal or a last message may take to reach the agent before closing anyway.
  std::chrono::steady_clock::duration flush_timeout = std::chrono::seconds(5);
  // Bytes waiting to be written (a full map's pages are sealed as the queue drains).
  std::size_t send_queue_bytes = std::size_t{4} << 20;
};

class AgentSession;

// The server, as a session needs it. Every call is made on the event loop, from inside one of
// the session's handlers; a call may close the session it is given.
class SessionHost {
 public:
  // Message 1 was read and parsed: decide. The session sends the answer; after an ok one it is
  // the node's session (registered()) until on_closed, even if answering fails. No answer yet
  // (nullopt): the host answers later with answer_register, on a later turn of the loop (joins
  // are stored in batches), unless the session closed meanwhile.
  virtual std::optional<control::RegisterResponse> on_register(
      AgentSession& session, const control::RegisterRequest& request) = 0;
  // The same for a relay registering itself (session.role() == relay).
  virtual control::RelayRegisterResponse on_relay_register(
      AgentSession& session, const control::RelayRegister& request) = 0;
  // The agent was answered ok: send it what it needs first (relay map, full peer map).
  virtual void on_open(AgentSession& session) = 0;
  virtual void on_endpoints(AgentSession& session, const control::EndpointUpdate& update) = 0;
  virtual void on_nat_report(AgentSession& session, const control::NatReport& report) = 0;
  // The agent logs out (`knit logout`): remove its node; closing the session answers it.
  virtual void on_logout(AgentSession& session) = 0;
  // The agent says which routes it offers (coordinator/routes.hpp).
  virtual void on_route_advertise(AgentSession& session, const control::RouteAdvertise& ad) = 0;
  // The session closed (once). It must not be destroyed from inside this call.
  virtual void on_closed(AgentSession& session, CloseReason reason) = 0;
  virtual ServerCounters& session_counters() = 0;

 protected:
  ~SessionHost() = default;
};

class AgentSession : public std::enable_shared_from_this<AgentSession> {
 public:
  using Socket = asio::ip::tcp::socket;
  // Who is at the other end, as message 1 says (agent until then).
  enum class Role { agent, relay };

  // coordinator_key and rng are used while the session lives; host must outlive its open state
  // (after close() the session never calls it).
  AgentSession(Socket socket, const wg::PrivateKey& coordinator_key, Random& rng,
               SessionHost& host, const SessionLimits& limits);
  ~AgentSession();
  AgentSession(const AgentSession&) = delete;
  AgentSession& operator=(const AgentSession&) = delete;

  // Starts reading and the handshake timer. Call on a session owned by a shared_ptr.
  void start();

  // Queues a message; it is sealed when its turn to be written comes. false when the session
  // is closed or closing, or when the message made the queue overflow (the session is then
  // closed). The shared form is how one delta goes to thousands of sessions: each queue holds
  // a reference to the same plaintext, not a sealed copy, so agents that read slowly cost the
  // server a pointer each, not the delta's size each.
  bool send(std::string_view message);
  bool send(std::shared_ptr<const std::string> message);
  // Streams the map's pages, then whatever send() was given meanwhile. With `only` (sorted
  // keys), the pages hold only those peers: the map trimmed by the access policy.
  bool send_map(std::shared_ptr<const MapSnapshot> map,
                std::shared_ptr<const std::vector<control::NodeKey>> only = nullptr);
  // The peers this agent's map holds once it has read what is queued, while its map is trimmed
  // by the access policy (server_publish.cpp); null while it holds every peer. The generation
  // is the policy publisher's visibility generation the set was last reconciled with.
  std::set<control::NodeKey>* trimmed() { return trimmed_ ? &*trimmed_ : nullptr; }
  void set_trimmed(std::optional<std::set<control::NodeKey>> held, std::uint64_t generation) {
    trimmed_ = std::move(held);
    trimmed_generation_ = generation;
  }
  std::uint64_t trimmed_generation() const { return trimmed_generation_; }
  bool streaming_map() const { return map_ != nullptr; }
  // Closes at once; pending output is dropped. Idempotent.
  void close(CloseReason reason);
  // Sends `last` (if not empty) after what is queued, then closes; closes anyway after the
  // flush timeout. Reads stop at once.
  void close_after(std::string_view last, CloseReason reason);

  // The answer to a register request the host deferred (SessionHost::on_register).
  void answer_register(const control::RegisterResponse& response);

  bool closed() const { return closed_; }
  bool closing() const { return closed_ || flushing_; }
  // The server accepted the node (the answer says ok): the session receives peer-map updates,
  // and its end takes the node offline unless a newer session replaced it.
  bool registered() const { return registered_; }
  // Known once message 1 was read: the node key, or a relay's relay key.
  const control::NodeKey& node_key() const { return node_key_; }
  Role role() const { return role_; }
  // "192.0.2.1:40000", for logs.
  const std::string& remote() const { return remote_; }
  std::size_t queued_bytes() const { return queued_bytes_; }
  // The agent listed the "dns" feature in its register (it understands dns_config).
  bool wants_dns() const { return wants_dns_; }
  void set_wants_dns(bool wants) { wants_dns_ = wants; }
  // The agent listed the "policy" feature (it enforces policy_rules).
  bool wants_policy() const { return wants_policy_; }
  void set_wants_policy(bool wants) { wants_policy_ = wants; }
  // "self": tell it when its own entry changes (a rename), with a self_update.
  bool wants_self() const { return wants_self_; }
  void set_wants_self(bool wants) { wants_self_ = wants; }
  // What it last heard of itself (register_response or self_update).
  const control::NodeAssignment& self_sent() const { return self_sent_; }
  void set_self_sent(control::NodeAssignment self) { self_sent_ = std::move(self); }

 private:
  enum class Phase { handshake, open, flushing };

  void read();
  void on_readable(std::error_code ec);
  void on_request(Bytes& payload);
  // Sends the answer to message 1 and opens (ok) or closes (refused) the session.
  void answer(std::string_view text, bool ok);
  void on_message(const Bytes& plaintext);
  void on_channel_error(control::ChannelError error);
  // Something to write: a sealed frame, or a plaintext sealed when it is written.
  struct Outgoing {
    Bytes frame;
    std::shared_ptr<const std::string> text;
    std::size_t size() const { return text ? text->size() : frame.size(); }
  };
  bool enqueue(Outgoing item);
  bool enqueue_text(std::string message);
  // Seals map pages while the queue is short; after the last, the held messages.
  void pump_map();
  void write();
  void on_write(std::error_code ec);
  void arm_timer();
  void on_timer();
  std::chrono::steady_clock::time_point deadline() const;
  void finish();

  Socket socket_;
  asio::steady_timer timer_;
  std::uint64_t timer_generation_ = 0;  // a wake-up from an older arm_timer() is ignored
  Random& rng_;
  SessionHost& host_;
  SessionLimits limits_;
  control::Channel channel_;
  control::NodeKey node_key_{};
  Role role_ = Role::agent;
  std::string remote_;
  Phase phase_ = Phase::handshake;
  bool registered_ = false;
  bool flushing_ = false;
  bool closed_ = false;
  CloseReason close_reason_ = CloseReason::shutdown;
  std::chrono::steady_clock::time_point phase_started_;
  std::chrono::steady_clock::time_point last_received_;

  std::deque<Outgoing> queue_;   // not yet handed to the socket
  std::vector<Bytes> writing_;   // frames of the write in progress
  std::size_t writing_bytes_ = 0;  // what they counted in queued_bytes_
  bool write_pending_ = false;
  std::size_t queued_bytes_ = 0;  // queue_, writing_ and held_
  bool wants_dns_ = false;
  bool wants_policy_ = false;
  bool wants_self_ = false;
  control::NodeAssignment self_sent_;
  std::shared_ptr<const MapSnapshot> map_;  // being streamed
  std::shared_ptr<const std::vector<control::NodeKey>> map_only_;  // its visible keys, or null
  std::optional<std::set<control::NodeKey>> trimmed_;
  std::uint64_t trimmed_generation_ = 0;
  std::size_t next_page_ = 0;
  std::deque<std::shared_ptr<const std::string>> held_;  // sent while the map streams
  bool pumping_ = false;
};

}  // namespace knit::coordinator
