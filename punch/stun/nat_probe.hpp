// NAT behaviour discovery (RFC 5780 §4) over one shared UDP socket — the engine of
// `knit netcheck`. Sans-I/O: the agent feeds it the STUN datagrams its WireGuard socket
// receives and sends what take_outgoing() returns, from that same socket (the mapping being
// measured is that socket's).
//
//   NatProbe probe(random);
//   probe.start(now, {relay_a_stun, relay_b_stun});
//   loop: send probe.take_outgoing(); on a datagram: if (probe.handle(now, from, bytes)) continue;
//         at probe.next_deadline(): probe.on_timers(now);   until probe.done()
//   probe.result(): udp, public v4/v6, mapping, mapping_varies, filtering, RTT per server
//
// The tests, in this order (the order matters: a request to the server's other address would
// open an address-dependent filter for it and spoil the filtering test):
//   1. binding  — a plain request to every server: UDP works, reflexive address X1, RTT,
//                 OTHER-ADDRESS (B:q) of an RFC 5780 server.
//   2. filtering (first server with an OTHER-ADDRESS, "S" = A:p): CHANGE-REQUEST ip+port and
//                 port-only, at once. ip+port answered (from B:q) → EIF; port-only answered
//                 (from A:q) → ADF; neither → APDF; a 420 → unknown.
//   3. mapping  — a request to B:p: X2 == X1 → EIM; else one to B:q: X3 == X2 → ADM, else APDM.
//                 Without an RFC 5780 server, two servers at different IPs still tell whether
//                 the mapping varies (mapping_varies) but not how (mapping stays unknown).
// With one server whose OTHER-ADDRESS has our server's IP and another port (one knit-relay
// host: A:p and A:q), only the mapping test runs, and first: a request to A:q, X2 == X1 → EIM
// (an ADM NAT looks the same from one IP), else APDM; filtering stays unknown (why: the
// comment in advance()).
#pragma once

#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include "punch/stun/client.hpp"

namespace knit::punch {

enum class NatMapping { unknown, endpoint_independent, address_dependent, address_and_port_dependent };
enum class NatFiltering { unknown, endpoint_independent, address_dependent, address_and_port_dependent };
// "EIM", "ADM", "APDM", "unknown" / "EIF", "ADF", "APDF", "unknown".
std::string_view to_string(NatMapping mapping);
std::string_view to_string(NatFiltering filtering);

struct NatProbeServer {
  Endpoint server{};
  bool answered = false;
  std::optional<Endpoint> mapped{};         // the reflexive address it saw
  std::optional<Endpoint> other_address{};  // RFC 5780 OTHER-ADDRESS
  std::optional<Duration> rtt{};
  std::string software{};
};

struct NatProbeResult {
  bool udp = false;  // any server answered
  std::optional<Endpoint> public_v4{};
  std::optional<Endpoint> public_v6{};
  NatMapping mapping = NatMapping::unknown;
  std::optional<bool> mapping_varies{};  // known when two destinations of one family answered
  NatFiltering filtering = NatFiltering::unknown;
  std::vector<NatProbeServer> servers{};  // in start() order
  // The RFC 5780 tests' raw answers (X2 from B:p, X3 from B:q), for reports and debugging.
  std::optional<Endpoint> mapped_other_ip{};
  std::optional<Endpoint> mapped_other_ip_port{};
  std::optional<Endpoint> mapped_other_port{};  // one-IP server: X2 from A:q
};

struct NatProbeOptions {
  // Binding and mapping requests: short, because the agent wants a fast answer.
  StunRetransmit retransmit{.rto = std::chrono::milliseconds(250), .max_sends = 4, .last_wait_rtos = 4};
  // Filtering requests expect silence from most NATs, so they give up sooner.
  StunRetransmit filter_retransmit{.rto = std::chrono::milliseconds(250), .max_sends = 3, .last_wait_rtos = 4};
  bool test_filtering = true;
  bool test_mapping = true;
  std::string software{};
};

class NatProbe {
 public:
  explicit NatProbe(Random& random, NatProbeOptions options = {});

  // Starts (or restarts, forgetting everything) a probe of these servers.
  void start(Instant now, std::span<const Endpoint> servers);
  // true: the datagram was STUN and is consumed (matched or counted and dropped).
  bool handle(Instant now, const Endpoint& from, ByteSpan datagram);
  void on_timers(Instant now);
  std::optional<Instant> next_deadline() const { return client_.next_deadline(); }
  std::vector<StunDatagram> take_outgoing() { return client_.take_outgoing(); }

  bool done() const { return phase_ == Phase::done; }
  const NatProbeResult& result() const { return result_; }
  const StunClientCounters& counters() const { return client_.counters(); }

 private:
  enum class Phase { idle, binding, filtering, mapping, done };
  enum class Role { binding, filter_both, filter_port, map_other_ip, map_other_ip_port, map_other_port };
  struct Pending {
    StunTransactionId id{};
    Role role = Role::binding;
    std::size_t server = 0;
  };

  void begin(Instant now, Role role, std::size_t server, const Endpoint& to,
             std::optional<std::uint8_t> change, const StunRetransmit& retransmit);
  void collect(Instant now);
  void record(const Pending& p, const StunResult& r);
  void advance(Instant now);
  void start_filtering(Instant now);
  void start_mapping(Instant now);
  bool need_test3() const;
  void finish();

  NatProbeOptions options_;
  StunClient client_;
  Phase phase_ = Phase::idle;
  std::vector<Pending> pending_;
  std::optional<std::size_t> behaviour_server_;  // index of the RFC 5780 server used
  bool behaviour_one_ip_ = false;                // its OTHER-ADDRESS is only another port
  bool filter_both_answered_ = false, filter_port_answered_ = false, filter_refused_ = false;
  bool filter_answers_ok_ = true;  // answers came from where they should
  bool mapping_test3_started_ = false;
  NatProbeResult result_;
};

}  // namespace knit::punch
