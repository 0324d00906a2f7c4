// A connection to one relay, on the caller's Asio loop: knitd's link to its home relay (and the
// test and benchmark clients). It dials the relay's addresses in order, runs the relay
// handshake (client_session.hpp) and keeps the connection up, reconnecting with backoff.
//
//   stopped --connect()--> connecting --admitted--> connected --lost/closing--> waiting
//                              ^   every address failed, or refused                 |
//                              +----------------------------------------------------+
//
// send() never blocks: a packet is sealed into a bounded queue or dropped (and counted). Pings
// every ping_interval measure the round trip (rtt(), for picking the home relay by latency)
// and keep NATs open; nothing heard for dead_after means the connection is dead.
//
// Addresses: "host:port" for plain TCP, "tls://host:port" for TLS (e.g. a relay on 443). The
// relay is authenticated by its key through Noise, never by a certificate.
#pragma once

#include <asio.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/bytes.hpp"
#include "base/random.hpp"
#include "base/time.hpp"
#include "relay/frame.hpp"
#include "wg/keys.hpp"

namespace knit::relay {

class RelayClient {
 public:
  enum class State { stopped, connecting, connected, waiting };

  struct Options {
    Duration connect_timeout = std::chrono::seconds(5);  // per address: resolve, TCP, TLS
    Duration handshake_timeout = std::chrono::seconds(10);
    Duration ping_interval = std::chrono::seconds(15);
    Duration dead_after = std::chrono::seconds(45);
    Duration backoff_min = std::chrono::milliseconds(500);
    Duration backoff_max = std::chrono::seconds(30);
    std::size_t max_queue_bytes = 512 * 1024;  // sealed bytes waiting for the socket
    std::size_t read_chunk = 64 * 1024;        // the receive buffer
    Role role = Role::client;                  // relay: a relay's own link (tests)
    // Offer split data frames (frame.hpp: packets with only their head sealed on this hop);
    // false sends the original Hello, and every frame goes sealed whole.
    bool split_data = true;
    // Offer data runs with them (frame.hpp: one sealed head for a burst of packets to one node).
    bool data_runs = true;
  };

  struct Stats {
    std::uint64_t packets_sent = 0;  // queued for the relay
    std::uint64_t bytes_sent = 0;
    std::uint64_t packets_received = 0;
    std::uint64_t bytes_received = 0;
    std::uint64_t dropped_queue_full = 0;
    std::uint64_t dropped_not_connected = 0;
    std::uint64_t dropped_malformed = 0;  // frames from the relay that did not parse (or a run it may not send)
    std::uint64_t peer_gone = 0;
    std::uint64_t sessions = 0;  // times admitted
  };

  // The packet lies in the connection's receive arena, writable until the batch it belongs to
  // ends (on_batch_end: after every read, and before any frame that is not a packet).
  using PacketHandler = std::function<void(const NodeKey& src, MutableByteSpan packet)>;
  // connected: admitted by the relay; detail says where, or why not.
  using StateHandler = std::function<void(bool connected, const std::string& detail)>;
  using PeerGoneHandler = std::function<void(const NodeKey& peer)>;

  // my_key: the node key (copied, zeroed on drop). io and rng outlive the client.
  RelayClient(asio::io_context& io, const wg::PrivateKey& my_key, Random& rng);
  RelayClient(asio::io_context& io, const wg::PrivateKey& my_key, Random& rng, Options options);
  ~RelayClient();  // close()
  RelayClient(const RelayClient&) = delete;
  RelayClient& operator=(const RelayClient&) = delete;

  // Callbacks run on the loop; they may call any method, close() included.
  void on_packet(PacketHandler handler);
  void on_state(StateHandler handler);
  // After the packets of one read (or of the part of it before a control frame): a receiver
  // that collected them hands them on as one batch.
  void on_batch_end(std::function<void()> handler);
  void on_peer_gone(PeerGoneHandler handler);

  // Starts (or moves to) the relay with this key at these addresses. Invalid addresses are
  // skipped; none valid leaves the client stopped with on_state(false, why).
  void connect(std::vector<std::string> addresses, const NodeKey& relay_key);
  // Closes the connection and every timer; no callback after this returns.
  void close();
  // Queues a packet for dst. False (and counted) when not connected, the packet is empty or
  // over kMaxPacketSize, or the queue is full.
  bool send(const NodeKey& dst, ByteSpan packet);

  State state() const;
  bool connected() const { return state() == State::connected; }
  // The last measured round trip to the relay (ping/pong), while connected.
  std::optional<Duration> rtt() const;
  const Stats& stats() const;
  // The address in use while connected ("tls://relay.example:443").
  std::string address() const;

  class Core;

 private:
  std::shared_ptr<Core> core_;
};

std::string_view to_string(RelayClient::State state);

}  // namespace knit::relay
