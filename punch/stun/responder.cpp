#include "punch/stun/responder.hpp"

#include <string>
#include <utility>

namespace knit::punch {

using namespace stun;

StunResponder::StunResponder(StunAddressGroup group, StunResponderOptions options)
    : group_(std::move(group)), options_(std::move(options)) {}

std::optional<IpAddress> StunResponder::other_ip(const IpAddress& ip) const {
  if (!group_.alternate_ip) return std::nullopt;
  return ip == *group_.alternate_ip ? group_.primary.address() : *group_.alternate_ip;
}

std::optional<std::uint16_t> StunResponder::other_port(std::uint16_t port) const {
  if (!group_.alternate_port) return std::nullopt;
  return port == *group_.alternate_port ? group_.primary.port() : *group_.alternate_port;
}

StunReply StunResponder::error_420(const StunMessage& req, const Endpoint& from, const Endpoint& local,
                                   const std::vector<std::uint16_t>& unknown) {
  ++counters_.error_420;
  StunBuilder b(kBindingError, req.raw_id);
  b.add_error_code(kErrorUnknownAttribute, "Unknown Attribute");
  b.add_unknown_attributes(unknown);
  if (!options_.software.empty()) b.add_text(kSoftware, options_.software);
  return StunReply{b.finish(req.has_fingerprint), Endpoint(local.address(), local.port()),
                   Endpoint(from.address(), from.port())};
}

std::optional<StunReply> StunResponder::handle(const Endpoint& from, const Endpoint& local, ByteSpan request) {
  StunMessage req;
  switch (parse_stun(request, req, {.allow_classic = true})) {
    case StunError::ok: break;
    case StunError::too_short:
    case StunError::not_stun:
    case StunError::bad_length:
    case StunError::bad_cookie: ++counters_.drop_not_stun; return std::nullopt;
    case StunError::bad_fingerprint: ++counters_.drop_bad_fingerprint; return std::nullopt;
    default: ++counters_.drop_malformed; return std::nullopt;
  }
  if (req.message_class() != MessageClass::request) {
    ++counters_.drop_not_request;
    return std::nullopt;
  }
  if (req.method() != method_of(kBindingRequest)) {
    ++counters_.drop_method;
    return std::nullopt;
  }
  if (req.classic && !options_.answer_classic) {
    ++counters_.drop_classic;
    return std::nullopt;
  }
  ++counters_.requests;
  if (!req.unknown_required.empty()) return error_420(req, from, local, req.unknown_required);

  const std::uint8_t flags = req.change_flags.value_or(0);
  const auto alt_ip = other_ip(local.address());
  const auto alt_port = other_port(local.port());
  // RFC 5780 §6.1: a CHANGE-REQUEST the server cannot honour is an unknown attribute.
  if (((flags & kChangeIp) && !alt_ip) || ((flags & kChangePort) && !alt_port))
    return error_420(req, from, local, {kChangeRequest});
  if (req.response_port && *req.response_port == 0) {
    ++counters_.drop_bad_port;
    return std::nullopt;
  }

  StunReply reply;
  reply.from = Endpoint((flags & kChangeIp) ? *alt_ip : local.address(),
                        (flags & kChangePort) ? *alt_port : local.port());
  reply.to = Endpoint(from.address(), req.response_port.value_or(from.port()));
  const Endpoint client(from.address(), from.port());
  // OTHER-ADDRESS / CHANGED-ADDRESS name the group's alternate pair (B:q) whichever socket the
  // request reached, as coturn does: turnutils_natdiscovery takes test III's destination from
  // test II's answer (sent to B:p), and a relative B:p → A:q would send it back to A.
  const Endpoint other(group_.alternate_ip.value_or(local.address()),
                       group_.alternate_port.value_or(local.port()));
  const bool origin_known = !reply.from.address().is_unspecified();

  StunBuilder b(kBindingSuccess, req.raw_id);
  if (req.classic) {
    // RFC 3489 §11.2: MAPPED-ADDRESS, SOURCE-ADDRESS and CHANGED-ADDRESS are all mandatory.
    ++counters_.classic;
    b.add_address(kMappedAddress, client);
    b.add_address(kSourceAddress, reply.from);
    b.add_address(kChangedAddress, other);
  } else {
    b.add_xor_address(kXorMappedAddress, client);
    b.add_address(kMappedAddress, client);  // for RFC 3489-era parsers of modern answers
    if (origin_known) b.add_address(kResponseOrigin, reply.from);
    // RFC 5780 §7.4 sends OTHER-ADDRESS only from a server that can change its IP. We also
    // send it from a server with an alternate port alone (A:q): one relay host with one
    // address still lets a client tell a mapping that varies by destination port (symmetric)
    // from one that does not. Clients that need a second IP see OTHER-ADDRESS's IP is ours.
    if (alt_ip || alt_port) b.add_address(kOtherAddress, other);
  }
  if (!options_.software.empty()) {
    if (req.classic) {
      // RFC 3489 §11.2.14: SERVER's length is a multiple of 4 (NUL-padded); Debian's `stun`
      // rejects the whole answer otherwise.
      std::string text = options_.software.substr(0, kMaxText & ~std::size_t{3});
      text.resize((text.size() + 3) & ~std::size_t{3}, '\0');
      b.add_text(kSoftware, text);
    } else {
      b.add_text(kSoftware, options_.software);
    }
  }
  if (req.padding_size > 0) {
    // RFC 5780 §7.6: pad the answer to about the request's size (MTU discovery) — never more.
    const std::size_t tail = kAttributeHeaderSize + (req.has_fingerprint ? kFingerprintSize : 0);
    if (request.size() > b.size() + tail) b.add_padding(request.size() - b.size() - tail);
  }
  reply.datagram = b.finish(req.has_fingerprint);
  ++counters_.answered;
  if (flags != 0) ++counters_.changed;
  return reply;
}

}  // namespace knit::punch
