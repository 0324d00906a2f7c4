// The relay's brain, without I/O: every connection's handshake, admission by mesh membership,
// forwarding by destination key, the relay mesh, bounded queues and timers. The Asio adapter
// (server.hpp) only moves bytes and calls in with `now`.
//
//   accepted ──message 1──► answered ──first transport message──► open ──► closing ──► gone
//      │ (handshake_timeout, garbage, refusal)                      │ (idle, cut off, replaced)
//      └────────────────────────────────────────────────────────────┴──► gone
//
// Output is pulled: the core seals frames into one byte buffer per connection (bounded:
// max_queue_bytes and max_queue_frames for packets, twice that for control frames) and calls
// ServerIo::want_write; the adapter calls take_output when its socket can take more and gets
// everything queued as one buffer for one write. take_output swaps buffers with the caller, so
// a busy connection cycles between two buffers and the packet path allocates nothing: a
// transport message is decrypted into the channel's own buffer (its body read straight from
// the adapter's read buffer when it lies whole in it), a send becomes a recv in place (the
// same layout: type, key, packet) and is sealed straight into the destination's buffer.
//
// Split data frames (frame.hpp): granted to a client or relay that offers them (and offered
// on dialed links) unless config.split_data is off; a packet then goes out split to every
// connection that has them, whole to the rest, whichever form it came in. Data runs (one head
// for a burst of packets to one node) are granted with them to clients only: a run from a
// client reaches a local client that has runs as one run (one head opened, one sealed), and
// anywhere else packet by packet, as sends.
//
// Routing: a `send` to dst goes to the local client dst, else over the link of the peer relay
// that announced dst (present/absent), else it is dropped and a peer_gone goes back. A forward
// from a peer relay reaches only a local client (one hop: relays form a full mesh).
//
// Relay mesh: of two relays in the relay map, the one with the smaller key dials the other
// (ServerIo::dial), redialing with backoff while both are in the map; a link made the other way
// round is accepted too, and the newest link to a relay wins.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "base/bytes.hpp"
#include "base/handshake_slots.hpp"
#include "base/ip.hpp"
#include "base/random.hpp"
#include "base/time.hpp"
#include "control/messages.hpp"
#include "relay/frame.hpp"
#include "relay/stats.hpp"
#include "wg/keys.hpp"

namespace knit::relay {

struct KeyHash {
  std::size_t operator()(const NodeKey& key) const noexcept {
    std::size_t h;
    static_assert(sizeof(h) <= kKeySize);
    std::copy_n(key.begin(), sizeof(h), reinterpret_cast<std::uint8_t*>(&h));
    return h;  // keys are uniformly random (public X25519 points of random scalars)
  }
};

using KeySet = std::unordered_set<NodeKey, KeyHash>;

struct ServerConfig {
  std::size_t max_queue_bytes = 512 * 1024;  // per connection, packets
  std::size_t max_queue_frames = 1024;
  Duration keepalive = std::chrono::seconds(20);   // send a keepalive after this much silence
  Duration idle_timeout = std::chrono::seconds(65);  // nothing received: the connection is dead
  Duration handshake_timeout = std::chrono::seconds(10);
  Duration closing_grace = std::chrono::seconds(5);  // to flush a refusal or closing frame
  // Connections accepted and not admitted yet, and of those from one IPv4 address or IPv6 /64:
  // a newcomer beyond either takes the slot of the busiest source's oldest (base/handshake_slots.hpp).
  std::size_t max_handshakes = 4096;
  std::size_t max_handshakes_per_source = 1024;
  Duration tick = std::chrono::seconds(1);           // how often on_timer wants to run
  Duration redial_min = std::chrono::seconds(1);
  Duration redial_max = std::chrono::seconds(30);
  // Grant split data frames (frame.hpp) to clients and peer relays that offer them, and offer
  // them on the links this relay dials. false: the original Hello and Result, whole frames.
  bool split_data = true;
  // Grant data runs (frame.hpp) to clients that offer them with split data frames.
  bool data_runs = true;
};

class ServerIo {
 public:
  using ConnId = std::uint64_t;
  virtual ~ServerIo() = default;
  // Frames wait in the connection's queue: call take_output (now or when the socket is ready).
  virtual void want_write(ConnId id) = 0;
  // Drop the connection at once. The core has forgotten it already (on_closed is not needed).
  virtual void close(ConnId id) = 0;
  // Open a TCP stream to a peer relay (its addresses in order); then on_dialed, or on_closed.
  virtual void dial(ConnId id, const control::RelayInfo& relay) = 0;
};

class ServerCore {
 public:
  using ConnId = ServerIo::ConnId;
  enum class Take {
    keep,         // out holds what there was; keep the connection
    close_after,  // write out, then close the connection and call on_closed
  };

  // relay_key: this relay's static key (the one in the relay map). io and rng outlive the core.
  ServerCore(const wg::PrivateKey& relay_key, ServerConfig config, ServerIo& io, Random& rng);
  ~ServerCore();
  ServerCore(const ServerCore&) = delete;
  ServerCore& operator=(const ServerCore&) = delete;

  // The full current membership. Clients not in it are cut off at once.
  void set_members(const std::vector<NodeKey>& members, Instant now);
  // The full relay map (may include this relay). Links to relays gone from it are closed.
  void set_relays(const std::vector<control::RelayInfo>& relays, Instant now);

  // A TCP (or TLS) connection was accepted from `source`; the returned id names it from now on.
  // It may cost an older unadmitted connection its slot: that one is closed (ServerIo::close).
  ConnId on_accept(Instant now, const IpAddress& source = {});
  // A dial asked for by ServerIo::dial is connected: the core queues message 1.
  void on_dialed(ConnId id, Instant now);
  // Bytes read from a connection.
  void on_bytes(ConnId id, ByteSpan bytes, Instant now);
  // The connection is gone (EOF, error, failed dial, or after close_after). Unknown ids are
  // ignored.
  void on_closed(ConnId id, Instant now);
  // Moves every queued byte (whole sealed frames) into out, which must be empty; out's old
  // storage becomes the connection's next queue (so give back the buffer of the last write).
  Take take_output(ConnId id, Bytes& out);
  // Timeouts, keepalives, redials. Returns when it wants to run next.
  Instant on_timer(Instant now);
  // Sends a closing frame to every admitted connection and stops admitting.
  void shutdown(Instant now);

  // The counters, with the gauges brought up to date.
  const Stats& stats() const;
  std::size_t connections() const { return conns_.size(); }
  bool has_client(const NodeKey& key) const { return clients_.count(key) != 0; }
  const NodeKey& public_key() const { return public_key_; }

  struct Conn;

 private:
  struct PeerRelay {
    control::RelayInfo info;
    ConnId dialing = 0;  // an outbound link in progress or open
    Instant retry_at{};
    int failures = 0;
  };

  Conn* find(ConnId id);
  Conn& add_conn(Instant now, bool outbound);
  void collect_dead();
  // Forgets the connection (destroyed on the next entry); tell_io: ask the adapter to close it.
  void remove(Conn& conn, Instant now, bool tell_io);
  // Routing state only: clients_/links_/routes_ entries and the absent announcement.
  void forget(Conn& conn, Instant now);
  // A closing frame, then close once written (or remove at once when nothing can be sent).
  void begin_close(Conn& conn, CloseReason reason, Instant now);
  // Seals and queues one frame within the bounds; false (nothing queued) when over them.
  bool queue_frame(Conn& conn, ByteSpan frame, bool is_packet);
  bool has_room(const Conn& conn, std::size_t frame_size, bool is_packet) const;
  void queued(Conn& conn, bool was_empty);
  void queue_sealed(Conn& conn, ByteSpan sealed);

  void feed_inbound(Conn& conn, ByteSpan input, Instant now);
  void feed_outbound(Conn& conn, ByteSpan input, Instant now);
  void on_request(Conn& conn, ByteSpan hello, Instant now);
  void admit(Conn& conn, Instant now);
  // raw: the frame's bytes, writable (the channel's buffer), for forwarding in place.
  void on_frame(Conn& conn, const Frame& frame, MutableByteSpan raw, Instant now);
  void on_client_frame(Conn& conn, const Frame& frame, MutableByteSpan raw);
  void on_client_run(Conn& conn, const RunFrame& run);
  // A run of recv packets from src for target, sealed into its buffer (target has runs).
  bool queue_recv_run(Conn& target, const NodeKey& src, const RunFrame& run);
  void on_relay_frame(Conn& conn, const Frame& frame, MutableByteSpan raw);
  void deliver(const NodeKey& src, const NodeKey& dst, ByteSpan packet, Conn& from,
               MutableByteSpan recv_room);
  // Rewrites raw's head as a recv frame's (type, src) and queues raw for target.
  bool queue_recv_in_place(Conn& target, const NodeKey& src, MutableByteSpan raw);
  // A recv frame for target: split when target has split data frames, else whole (in place in
  // recv_room when it is the packet's send frame or a forward's tail).
  bool queue_recv(Conn& target, const NodeKey& src, ByteSpan packet, MutableByteSpan recv_room);
  // A data frame split (head sealed, packet as it is) within the packet bounds.
  bool queue_split(Conn& conn, ByteSpan head, ByteSpan packet);
  void announce(FrameType type, const NodeKey& key);
  void send_present_list(Conn& link);
  void link_opened(Conn& conn, Instant now);
  void link_closed(Conn& conn, Instant now);
  void dial_due(Instant now);

  wg::PrivateKey relay_key_;
  NodeKey public_key_{};
  ServerConfig config_;
  ServerIo& io_;
  Random& rng_;
  mutable Stats stats_;
  Instant now_{};  // of the current entry: when queued frames were sent, for keepalives
  bool shutting_down_ = false;

  ConnId next_id_ = 1;
  std::unordered_map<ConnId, std::unique_ptr<Conn>> conns_;
  HandshakeSlots<ConnId> handshakes_;  // accepted, not admitted yet
  std::optional<KeySet> members_;  // nullopt: membership not known yet
  std::unordered_map<NodeKey, PeerRelay, KeyHash> relays_;  // peer relays (not this one)
  std::unordered_map<NodeKey, ConnId, KeyHash> clients_;     // admitted clients here
  std::unordered_map<NodeKey, ConnId, KeyHash> links_;       // open links to peer relays
  std::unordered_map<NodeKey, ConnId, KeyHash> routes_;      // remote client -> link
  std::vector<ConnId> dead_;
  Bytes scratch_;
};

}  // namespace knit::relay
