// STUN (punch/stun): parse_stun on any datagram, as the agent's shared socket and netcheck read
// answers, and the StunResponder on any request, as knit-relay and knit-stun answer the world.
// Properties: what parses rebuilds (StunBuilder) into a message that parses to the same
// addresses and values; the responder answers only well-formed binding requests, from one of
// its own sockets, with a message that parses and carries the request's transaction id.
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "base/ip.hpp"
#include "fuzz/fuzz_util.hpp"
#include "punch/stun/message.hpp"
#include "punch/stun/responder.hpp"

using namespace knit;
using namespace knit::punch;

namespace {

void check_rebuild(const StunMessage& m) {
  StunBuilder b(m.type, m.raw_id);
  if (m.xor_mapped) b.add_xor_address(stun::kXorMappedAddress, *m.xor_mapped);
  if (m.mapped) b.add_address(stun::kMappedAddress, *m.mapped);
  if (m.response_origin) b.add_address(stun::kResponseOrigin, *m.response_origin);
  if (m.other_address) b.add_address(stun::kOtherAddress, *m.other_address);
  if (m.change_flags) b.add_u32(stun::kChangeRequest, *m.change_flags);
  if (m.error_code) b.add_error_code(m.error_code->code, m.error_code->reason);
  const Bytes rebuilt = b.finish(true);
  StunMessage again;
  const StunError error =
      parse_stun(rebuilt, again, StunParseOptions{.allow_classic = m.classic});
  KNIT_FUZZ_CHECK(error == StunError::ok);
  KNIT_FUZZ_CHECK(again.type == m.type && again.raw_id == m.raw_id);
  KNIT_FUZZ_CHECK(again.has_fingerprint || m.classic);
  if (b.dropped() != 0) return;
  KNIT_FUZZ_CHECK(again.xor_mapped == m.xor_mapped);
  KNIT_FUZZ_CHECK(again.mapped == m.mapped);
  KNIT_FUZZ_CHECK(again.response_origin == m.response_origin);
  KNIT_FUZZ_CHECK(again.other_address == m.other_address);
  KNIT_FUZZ_CHECK(again.change_flags == m.change_flags);
  if (m.error_code) {
    KNIT_FUZZ_CHECK(again.error_code && again.error_code->code == m.error_code->code);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const ByteSpan datagram(data, size);
  for (const bool classic : {false, true}) {
    StunMessage m;
    const StunError error = parse_stun(datagram, m, StunParseOptions{.allow_classic = classic});
    (void)to_string(error);
    if (error == StunError::ok) {
      KNIT_FUZZ_CHECK(looks_like_stun(datagram, classic) || m.classic);
      KNIT_FUZZ_CHECK(m.software.size() <= stun::kMaxText);
      KNIT_FUZZ_CHECK(m.unknown_required.size() <= stun::kMaxUnknown);
      KNIT_FUZZ_CHECK(m.unknown_required.size() <= m.unknown_required_count);
      check_rebuild(m);
    }
  }

  // One responder with both alternates (RFC 5780's four sockets), one request on each.
  static StunResponder responder(
      StunAddressGroup{.primary = {*IpAddress::parse("192.0.2.1"), 3478},
                       .alternate_ip = *IpAddress::parse("192.0.2.2"),
                       .alternate_port = 3479},
      StunResponderOptions{.software = "knit fuzz"});
  const Endpoint client{*IpAddress::parse("203.0.113.7"), 40000};
  const Endpoint locals[] = {{*IpAddress::parse("192.0.2.1"), 3478},
                             {*IpAddress::parse("192.0.2.2"), 3479}};
  for (const Endpoint& local : locals) {
    const auto reply = responder.handle(client, local, datagram);
    if (!reply) continue;
    StunMessage request;
    KNIT_FUZZ_CHECK(parse_stun(datagram, request, StunParseOptions{.allow_classic = true}) ==
                    StunError::ok);
    KNIT_FUZZ_CHECK(request.type == stun::kBindingRequest);
    KNIT_FUZZ_CHECK(reply->to.address() == client.address());
    KNIT_FUZZ_CHECK(reply->from.address() == locals[0].address() ||
                    reply->from.address() == locals[1].address());
    KNIT_FUZZ_CHECK(reply->from.port() == 3478 || reply->from.port() == 3479);
    KNIT_FUZZ_CHECK(reply->datagram.size() <= stun::kMaxBuiltMessage);
    if (request.classic) {
      // An RFC 3489 answer has no cookie, which parse_stun accepts only in a request (a client
      // of Knit never reads one): check its header by hand.
      const Bytes& d = reply->datagram;
      KNIT_FUZZ_CHECK(d.size() >= stun::kHeaderSize && load_be16(d.data() + 2) == d.size() - stun::kHeaderSize);
      KNIT_FUZZ_CHECK(load_be16(d.data()) == stun::kBindingSuccess ||
                      load_be16(d.data()) == stun::kBindingError);
      KNIT_FUZZ_CHECK(std::equal(request.raw_id.begin(), request.raw_id.end(), d.begin() + 4));
      continue;
    }
    StunMessage answer;
    KNIT_FUZZ_CHECK(parse_stun(reply->datagram, answer) == StunError::ok);
    KNIT_FUZZ_CHECK(answer.raw_id == request.raw_id);
    KNIT_FUZZ_CHECK(answer.type == stun::kBindingSuccess || answer.type == stun::kBindingError);
    KNIT_FUZZ_CHECK(answer.has_fingerprint == request.has_fingerprint);
  }
  return 0;
}
