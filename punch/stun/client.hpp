// STUN binding transactions, client side (RFC 8489 §6.2.1). Sans-I/O: now in, datagrams and
// deadlines out. Many transactions run at once on one shared socket (the agent's WireGuard
// socket); answers are matched by transaction id alone, because an RFC 5780 CHANGE-REQUEST is
// answered from an address the request was not sent to.
//
//   StunClient client(random, {.retransmit = {.rto = 250ms, .max_sends = 3}});
//   auto id = client.begin(now, server, {});
//   for (auto& d : client.take_outgoing()) socket.send(d.to, d.bytes);
//   if (looks_like_stun(datagram)) client.handle(now, from, datagram);
//   client.on_timers(now);            // at client.next_deadline()
//   for (auto& r : client.take_results()) ...
//
// Retransmission (§6.2.1): a request is sent at 0, RTO, 3·RTO, 7·RTO, ... (the wait doubles);
// after the last of max_sends the client waits last_wait_rtos·RTO and gives up.
// Defaults are the RFC's (RTO 500 ms, Rc 7, Rm 16: 39.5 s); the agent passes shorter ones.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/bytes.hpp"
#include "base/ip.hpp"
#include "base/random.hpp"
#include "base/time.hpp"
#include "punch/stun/message.hpp"

namespace knit::punch {

struct StunRetransmit {
  Duration rto = std::chrono::milliseconds(500);
  unsigned max_sends = 7;        // Rc
  unsigned last_wait_rtos = 16;  // Rm
  // Time from the first send to giving up.
  Duration total() const;
};

struct StunClientOptions {
  StunRetransmit retransmit{};
  std::string software{};  // SOFTWARE in requests; empty: none
  bool fingerprint = true;
  std::size_t max_pending = 64;  // begin() refuses more (a bound, not a queue)
};

// A datagram for the caller to send from the shared socket.
struct StunDatagram {
  Endpoint to{};
  Bytes bytes{};
};

enum class StunOutcome {
  success,         // a binding success response
  error_response,  // a binding error response (response.error_code)
  timeout,         // no answer after the last retransmission's wait
};
std::string_view to_string(StunOutcome outcome);

struct StunResult {
  StunTransactionId id{};
  Endpoint server{};          // where the request went
  StunOutcome outcome = StunOutcome::timeout;
  StunMessage response{};     // success / error_response only
  Endpoint responder{};       // where the answer came from
  Duration rtt{};           // from the most recent send (Karn: ambiguous when sends > 1)
  unsigned sends = 0;
};

struct StunClientCounters {
  std::uint64_t requests = 0;        // transactions begun
  std::uint64_t sent = 0;            // datagrams, retransmissions included
  std::uint64_t retransmits = 0;
  std::uint64_t responses = 0;       // matched answers
  std::uint64_t timeouts = 0;
  std::uint64_t error_responses = 0;
  std::uint64_t drop_unknown_id = 0;  // well-formed STUN with no pending transaction
  std::uint64_t drop_malformed = 0;   // looked like STUN, failed to parse
  std::uint64_t drop_bad_fingerprint = 0;
  std::uint64_t drop_not_response = 0;  // requests / indications arriving at the client
  std::uint64_t drop_unknown_required = 0;  // success with an attribute we must understand
  std::uint64_t refused = 0;          // begin() past max_pending
};

class StunClient {
 public:
  explicit StunClient(Random& random, StunClientOptions options = {});

  // Starts a binding transaction; the first request is queued at once. nullopt when
  // max_pending transactions are already running.
  std::optional<StunTransactionId> begin(Instant now, const Endpoint& server,
                                         std::optional<std::uint8_t> change_flags = std::nullopt);
  // Per-transaction retransmission policy (e.g. short ones for filtering tests).
  std::optional<StunTransactionId> begin(Instant now, const Endpoint& server,
                                         std::optional<std::uint8_t> change_flags,
                                         const StunRetransmit& retransmit);
  void cancel(const StunTransactionId& id);
  void cancel_all();

  // Returns true when the datagram is STUN (looks_like_stun) and so belongs to STUN, whether it
  // matched a transaction or was dropped and counted; false: not ours, the caller goes on.
  bool handle(Instant now, const Endpoint& from, ByteSpan datagram);
  void on_timers(Instant now);
  std::optional<Instant> next_deadline() const;

  std::vector<StunDatagram> take_outgoing();
  std::vector<StunResult> take_results();
  std::size_t pending() const { return transactions_.size(); }
  const StunClientCounters& counters() const { return counters_; }

 private:
  struct Transaction {
    StunTransactionId id{};
    Endpoint server{};
    Bytes request;
    StunRetransmit retransmit;
    Instant first_sent{};
    Instant last_sent{};
    Instant deadline{};  // next retransmission, or the give-up time after the last send
    Duration wait{};     // the current wait (doubles)
    unsigned sends = 0;
  };
  void send(Instant now, Transaction& t);

  Random& random_;
  StunClientOptions options_;
  std::vector<Transaction> transactions_;  // few at once: a vector beats a map
  std::vector<StunDatagram> outgoing_;
  std::vector<StunResult> results_;
  StunClientCounters counters_;
};

}  // namespace knit::punch
