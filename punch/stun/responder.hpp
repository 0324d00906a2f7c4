// The STUN server's core: binding request in, binding response (and where to send it from) out.
// Sans-I/O; punch/stun/server.hpp puts it on sockets.
//
// A responder serves one address group: a primary IP and port, and optionally an alternate IP
// and/or an alternate port (RFC 5780 §4: up to four sockets, A:p, A:q, B:p, B:q):
//
//   StunResponder r({.primary = {ip_a, 3478}, .alternate_ip = ip_b, .alternate_port = 3479});
//   if (auto reply = r.handle(client, local_the_request_arrived_on, datagram))
//     send reply->datagram from reply->from to reply->to;
//
// What it answers:
//   RFC 8489 binding request → XOR-MAPPED-ADDRESS, MAPPED-ADDRESS, RESPONSE-ORIGIN, OTHER-ADDRESS
//     (when an alternate IP exists: always the group's B:q, as coturn answers; with an
//     alternate port alone: A:q, so one relay host can tell symmetric NATs), SOFTWARE (if
//     configured), FINGERPRINT (if the request had one), PADDING (if the request had some;
//     never larger than the request).
//   CHANGE-REQUEST → answered from the other IP and/or port; 420 + UNKNOWN-ATTRIBUTES(0x0003)
//     when the group lacks what was asked for (RFC 5780 §6.1).
//   RESPONSE-PORT → answered to that port of the client's IP (RFC 5780 §7.5).
//   RFC 3489 request (no cookie) → MAPPED-ADDRESS, SOURCE-ADDRESS, CHANGED-ADDRESS.
//   Unknown comprehension-required attributes → 420 with UNKNOWN-ATTRIBUTES (RFC 8489 §6.3.1).
//   Everything else (not STUN, malformed, responses, indications, other methods) → dropped and
//   counted; nothing is ever sent to a source that did not send a well-formed request.
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "base/bytes.hpp"
#include "base/ip.hpp"
#include "punch/stun/message.hpp"

namespace knit::punch {

struct StunAddressGroup {
  Endpoint primary{};                          // address may be unspecified (wildcard bind)
  std::optional<IpAddress> alternate_ip{};       // same family as primary; needs a specific primary
  std::optional<std::uint16_t> alternate_port{};
};

struct StunResponderOptions {
  std::string software{};     // SOFTWARE in answers; empty: none
  bool answer_classic = true;
};

struct StunReply {
  Bytes datagram{};
  Endpoint from{};  // the local (address, port) to send from: a socket of the group
  Endpoint to{};
};

struct StunResponderCounters {
  std::uint64_t requests = 0;          // well-formed binding requests
  std::uint64_t answered = 0;          // success responses
  std::uint64_t classic = 0;           // of which RFC 3489
  std::uint64_t changed = 0;           // answered from another address or port
  std::uint64_t error_420 = 0;         // unknown attribute / unsupported CHANGE-REQUEST
  std::uint64_t drop_not_stun = 0;
  std::uint64_t drop_malformed = 0;
  std::uint64_t drop_bad_fingerprint = 0;
  std::uint64_t drop_not_request = 0;  // responses and indications
  std::uint64_t drop_method = 0;       // not the binding method
  std::uint64_t drop_classic = 0;      // RFC 3489 while answer_classic is off
  std::uint64_t drop_bad_port = 0;     // RESPONSE-PORT 0
  std::uint64_t drops() const {
    return drop_not_stun + drop_malformed + drop_bad_fingerprint + drop_not_request + drop_method +
           drop_classic + drop_bad_port;
  }
};

class StunResponder {
 public:
  explicit StunResponder(StunAddressGroup group, StunResponderOptions options = {});

  // from: the client; local: the (address, port) of ours the request arrived on (for a wildcard
  // socket, the address the kernel reported with IP_PKTINFO).
  std::optional<StunReply> handle(const Endpoint& from, const Endpoint& local, ByteSpan request);

  const StunAddressGroup& group() const { return group_; }
  const StunResponderCounters& counters() const { return counters_; }

 private:
  // The other IP / port of the group, relative to what the request arrived on.
  std::optional<IpAddress> other_ip(const IpAddress& ip) const;
  std::optional<std::uint16_t> other_port(std::uint16_t port) const;
  StunReply error_420(const StunMessage& req, const Endpoint& from, const Endpoint& local,
                      const std::vector<std::uint16_t>& unknown) ;

  StunAddressGroup group_;
  StunResponderOptions options_;
  StunResponderCounters counters_;
};

}  // namespace knit::punch
