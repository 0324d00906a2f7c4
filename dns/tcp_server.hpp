// DNS over TCP (RFC 7766) for this host's own stub resolvers, on the resolver address. The
// resolver has no socket (agent/dns_service.hpp): queries arrive as IP packets read from the
// TUN. A stub asks over TCP when a UDP answer came back truncated (TC), so without TCP a large
// answer could not be had at all. This is a deliberately small TCP (RFC 9293) for one kind of
// peer, the host's own kernel across a virtual link that neither loses nor reorders packets:
//
//   client                              TcpServer
//   SYN (MSS) ───────────────────────►  new connection (bounded), ISN from Random
//             ◄───────────────────────  SYN-ACK (MSS, window; no scaling, SACK or timestamps)
//   ACK, | len | query | len | ... ──►  in-order bytes reassembled; each complete message is a
//             ◄───────────────────────  query (Actions::queries); ACK
//             ◄───────────────────────  | len | answer | in segments of the client's MSS, within
//                                       its window; retransmitted from the first unacknowledged
//                                       byte after the RTO (doubling), reset after kMaxRetries
//   FIN ──────────────────────────────► ACK, then our FIN once every query is answered
//   (idle for idle_timeout)             our FIN (RFC 7766 §6.2.3: the server closes idle ones)
//
// What it does not do, on purpose: out-of-order queueing (a segment that does not start at the
// next expected byte, after trimming what was already received, gets a duplicate ACK and is
// dropped: the kernel resends), congestion control (the link is a memory copy), TIME_WAIT
// (the client port is the kernel's to reuse), urgent data. Checksums are written, not
// verified: the packets come from this host's own kernel (and with TUN offloads they may carry
// only a partial sum).
//
// Hostile input: anything that is not one whole TCP segment in an IPv4 or IPv6 packet (no
// fragments, no IPv6 extension headers) is counted and dropped; a length prefix over
// kMaxQuerySize or under a DNS header resets the connection; table, buffers and outstanding
// queries per connection are bounded. No I/O and no clock: now and randomness are passed in.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <tuple>
#include <vector>

#include "base/bytes.hpp"
#include "base/ip.hpp"
#include "base/random.hpp"
#include "base/time.hpp"

namespace knit::dns {

class TcpServer {
 public:
  struct Options {
    std::size_t max_connections = 64;
    std::size_t max_outstanding = 32;           // queries of one connection awaiting answers
    std::size_t max_send_buffer = 256 * 1024;   // answer bytes of one connection not yet acked
    Duration idle_timeout = std::chrono::seconds(10);
    Duration initial_rto = std::chrono::milliseconds(500);
    int max_retries = 5;                        // RTOs in a row without progress, then RST
    std::uint16_t mss = 1200;                   // the most we send in one segment
  };
  struct Counters {
    std::uint64_t connections = 0;      // handshakes started
    std::uint64_t refused_full = 0;     // SYNs answered with RST: max_connections open
    std::uint64_t queries = 0;          // complete messages handed out
    std::uint64_t answers = 0;          // answers queued to a connection
    std::uint64_t answers_dropped = 0;  // answers for a connection that is gone or full
    std::uint64_t queries_dropped = 0;  // over max_outstanding on one connection
    std::uint64_t bad_length = 0;       // a length prefix out of bounds: connection reset
    std::uint64_t malformed = 0;        // not a whole TCP segment: dropped
    std::uint64_t resets_sent = 0;
    std::uint64_t resets_received = 0;
    std::uint64_t out_of_order = 0;     // unacceptable segments: duplicate ACK
    std::uint64_t retransmits = 0;
    std::uint64_t timed_out = 0;        // reset after max_retries
    std::uint64_t idle_closed = 0;      // closed by us after idle_timeout
  };
  // One DNS message from a client: client.local() is the resolver address it connected to.
  struct Query {
    Endpoint client;
    Bytes wire;
  };
  struct Actions {
    std::vector<Bytes> packets;  // IP packets to write to the TUN
    std::vector<Query> queries;
    void clear() {
      packets.clear();
      queries.clear();
    }
  };

  TcpServer() : TcpServer(Options{}) {}
  explicit TcpServer(Options options) : options_(options) {}

  // An IP packet carrying TCP to the resolver address (the caller checked the destination
  // address, the port and who sent it).
  void on_segment(Instant now, ByteSpan packet, Random& rng, Actions& out);
  // The answer to a query of `client` (Query::client): queued on its connection and sent.
  void on_answer(Instant now, const Endpoint& client, ByteSpan wire, Actions& out);
  // Retransmissions, idle closes and timeouts due at `now`.
  void on_timer(Instant now, Actions& out);
  std::optional<Instant> next_deadline() const;

  std::size_t connections() const { return connections_.size(); }
  const Counters& counters() const { return counters_; }

 private:
  enum class State : std::uint8_t {
    syn_received,  // SYN-ACK sent
    established,
    closing,       // a FIN sent or due (ours, or after theirs); gone when both are done
  };
  struct Segment;
  // (client address, client port, server address): the server port is always 53.
  using Key = std::tuple<IpAddress, std::uint16_t, IpAddress>;
  struct Connection {
    Endpoint client;  // with local() = the server address
    State state = State::syn_received;
    std::uint32_t iss = 0;
    std::uint32_t snd_una = 0;   // oldest unacknowledged sequence number
    std::uint32_t snd_nxt = 0;   // next to send
    std::uint32_t snd_wnd = 0;   // the client's window (unscaled: we offer no scaling)
    std::uint32_t rcv_nxt = 0;
    std::uint16_t send_mss = 536;
    Bytes received;   // an incomplete message (length prefix and what came of it)
    Bytes send;       // unacknowledged answer bytes; send[0] is at sequence snd_una (after SYN)
    std::size_t outstanding = 0;
    bool fin_received = false;
    bool fin_wanted = false;     // send our FIN once `send` is out
    bool fin_sent = false;
    std::optional<Instant> rto_deadline;  // while something is in flight (or a window is shut)
    Duration rto{};
    int retries = 0;
    Instant idle_deadline{};
  };

  void on_new(Instant now, const Segment& segment, Random& rng, Actions& out);
  // False when the connection was closed (erased).
  bool on_existing(Instant now, Connection& c, const Segment& segment, Actions& out);
  bool take_data(Connection& c, ByteSpan data, Actions& out);
  void transmit(Instant now, Connection& c, Actions& out);
  void send_ack(const Connection& c, Actions& out) const;
  void reset(Connection& c, Actions& out);
  bool finished(const Connection& c) const;
  std::uint16_t window(const Connection& c) const;
  static Key key_of(const Endpoint& client);

  Options options_;
  std::map<Key, Connection> connections_;
  Counters counters_;
};

}  // namespace knit::dns
