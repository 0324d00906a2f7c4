#include "nat/nat66.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "nat/checksum.hpp"

namespace knit::nat {

namespace {

constexpr std::size_t kIpv6Header = 40;
constexpr std::uint8_t kTcp = 6;
constexpr std::uint8_t kUdp = 17;
constexpr std::uint8_t kIcmpv6 = 58;
constexpr std::uint8_t kEchoRequest = 128;
constexpr std::uint8_t kEchoReply = 129;
constexpr std::uint8_t kIcmpv6ErrorLast = 4;  // RFC 4443: 1-4 are the defined errors
constexpr std::size_t kIcmpv6ErrorHeader = 8;
constexpr std::size_t kSourceOffset = 8;
constexpr std::size_t kDestinationOffset = 24;

// One packet's transport as translation needs it (offsets from the packet's start).
struct Transport {
  std::uint8_t protocol = 0;        // kTcp, kUdp, kIcmpv6
  std::size_t l4 = 0;               // transport header offset
  std::size_t end = 0;              // end of the bytes present
  std::size_t port_offset = 0;      // the inside side's port (or echo identifier) to rewrite
  std::uint16_t source_port = 0;    // echo request: the identifier
  std::uint16_t destination_port = 0;  // echo reply: the identifier
  std::size_t checksum = 0;         // offset of the transport checksum; 0: not present
  std::uint8_t icmp_type = 0;
  std::uint8_t tcp_flags = 0;
};

enum class Parsed : std::uint8_t { ok, malformed, unsupported };

// `quoted`: the packet inside an ICMPv6 error, cut short, so its length is not checked and
// only 8 transport bytes are needed (RFC 4443 §2.4: as much as fits in 1280 bytes).
Parsed parse(ByteSpan bytes, std::size_t start, bool quoted, Transport& out) {
  if (bytes.size() < start + kIpv6Header || (bytes[start] >> 4) != 6) return Parsed::malformed;
  std::size_t end = bytes.size();
  if (!quoted) {
    const std::size_t payload = load_be16(&bytes[start + 4]);
    if (payload == 0 || start + kIpv6Header + payload > bytes.size()) return Parsed::malformed;
    end = start + kIpv6Header + payload;
  }
  out.protocol = bytes[start + 6];
  out.l4 = start + kIpv6Header;
  out.end = end;
  const std::size_t size = end - out.l4;
  const std::uint8_t* t = bytes.data() + out.l4;
  switch (out.protocol) {
    case kTcp:
      if (size < (quoted ? 8u : 20u)) return Parsed::malformed;
      if (!quoted) {
        const std::size_t data_offset = static_cast<std::size_t>(t[12] >> 4) * 4;
        if (data_offset < 20 || data_offset > size) return Parsed::malformed;
        out.tcp_flags = t[13];
      }
      out.source_port = load_be16(t);
      out.destination_port = load_be16(t + 2);
      out.checksum = size >= 18 ? out.l4 + 16 : 0;
      return out.source_port != 0 && out.destination_port != 0 ? Parsed::ok : Parsed::malformed;
    case kUdp:
      if (size < 8) return Parsed::malformed;
      out.source_port = load_be16(t);
      out.destination_port = load_be16(t + 2);
      out.checksum = out.l4 + 6;
      return out.source_port != 0 && out.destination_port != 0 ? Parsed::ok : Parsed::malformed;
    case kIcmpv6:
      if (size < 8) return Parsed::malformed;
      out.icmp_type = t[0];
      out.checksum = out.l4 + 2;
      if (t[0] == kEchoRequest) out.source_port = load_be16(t + 4);
      else if (t[0] == kEchoReply) out.destination_port = load_be16(t + 4);
      else if (t[0] < 1 || t[0] > kIcmpv6ErrorLast || quoted) return Parsed::unsupported;
      return Parsed::ok;
    default:
      return Parsed::unsupported;  // extension headers, fragments, other protocols
  }
}

// Writes a 16-byte address word by word, keeping `a` (and the writer's enclosing sum) right.
void set_address(ChecksumWriter& writer, std::uint8_t* field, const std::array<std::uint8_t, 16>& value,
                 ChecksumField a) {
  for (std::size_t i = 0; i < 16; i += 2)
    writer.set16(field + i, static_cast<std::uint16_t>(value[i] << 8 | value[i + 1]), a);
}

std::array<std::uint8_t, 16> address_at(const std::uint8_t* p) {
  std::array<std::uint8_t, 16> a{};
  std::memcpy(a.data(), p, 16);
  return a;
}

Protocol protocol_of(std::uint8_t p) {
  return p == kTcp ? Protocol::tcp : p == kUdp ? Protocol::udp : Protocol::icmp;
}

}  // namespace

const char* to_string(Nat66::Drop drop) {
  switch (drop) {
    case Nat66::Drop::malformed: return "malformed";
    case Nat66::Drop::unsupported: return "unsupported";
    case Nat66::Drop::not_external: return "not_external";
    case Nat66::Drop::no_session: return "no_session";
    case Nat66::Drop::ports_exhausted: return "ports_exhausted";
    case Nat66::Drop::table_full: return "table_full";
  }
  return "?";
}

Nat66::Nat66(Config config, Random& rng) : config_(config), rng_(rng) {
  if (!config_.external.is_v6()) throw std::invalid_argument("Nat66: the external address must be IPv6");
  if (config_.port_min == 0 || config_.port_min > config_.port_max)
    throw std::invalid_argument("Nat66: empty port range");
  std::memcpy(external_.data(), config_.external.bytes(), 16);
}

Nat66::Outcome Nat66::drop(Drop reason) {
  ++stats_.drops[static_cast<std::size_t>(reason)];
  return Outcome::dropped;
}

Duration Nat66::timeout_of(std::uint8_t protocol, TcpState state) const {
  if (protocol == kUdp) return config_.udp_timeout;
  if (protocol == kTcp)
    return tcp_is_established(state) ? config_.tcp_established_timeout : config_.tcp_transitory_timeout;
  return config_.icmp_timeout;
}

std::optional<std::uint16_t> Nat66::allocate_port(std::uint8_t protocol) {
  const std::uint32_t span = std::uint32_t{config_.port_max} - config_.port_min + 1;
  const std::uint32_t first = rng_.uniform(span);
  for (std::uint32_t i = 0; i < span; ++i) {
    const auto port = static_cast<std::uint16_t>(config_.port_min + (first + i) % span);
    if (by_external_.count({protocol, port}) == 0) return port;
  }
  return std::nullopt;
}

Nat66::Outcome Nat66::outbound(Instant now, MutableByteSpan packet) {
  Transport t;
  switch (parse(packet, 0, false, t)) {
    case Parsed::ok: break;
    case Parsed::malformed: return drop(Drop::malformed);
    case Parsed::unsupported: return drop(Drop::unsupported);
  }
  // From the inside only flows and echo requests open mappings. An error (1-4) is an inside
  // host's answer to a translated inbound packet, translated back through its mapping; an echo
  // reply would answer a request that came in untranslated: not ours to pass.
  if (t.protocol == kIcmpv6 && t.icmp_type != kEchoRequest) {
    if (t.icmp_type >= 1 && t.icmp_type <= kIcmpv6ErrorLast) return outbound_error(now, packet, t.l4);
    return drop(Drop::unsupported);
  }
  const MappingKey key{t.protocol, address_at(&packet[kSourceOffset]), t.source_port};
  const SessionKey partial{t.protocol, 0, address_at(&packet[kDestinationOffset]),
                           t.protocol == kIcmpv6 ? std::uint16_t{0} : t.destination_port};
  std::uint16_t external_port = 0;
  bool new_mapping = false;
  if (auto it = by_internal_.find(key); it != by_internal_.end()) {
    external_port = it->second;
  } else {
    if (sessions_.size() >= config_.max_sessions) return drop(Drop::table_full);
    const std::optional<std::uint16_t> port = allocate_port(t.protocol);
    if (!port) return drop(Drop::ports_exhausted);
    external_port = *port;
    new_mapping = true;
  }
  SessionKey skey = partial;
  skey.external_port = external_port;
  auto session = sessions_.find(skey);
  if (session != sessions_.end() && session->second.expires <= now) {
    // Expired but not swept yet: starts afresh.
    session->second = SessionState{};
  } else if (session == sessions_.end()) {
    if (sessions_.size() >= config_.max_sessions) return drop(Drop::table_full);
    if (new_mapping) {
      by_internal_.emplace(key, external_port);
      by_external_.emplace(std::pair{t.protocol, external_port}, Mapping{key, 0});
      ++stats_.mappings_created;
    }
    session = sessions_.emplace(skey, SessionState{}).first;
    ++by_external_[{t.protocol, external_port}].sessions;
    ++stats_.sessions_created;
  }
  SessionState& s = session->second;
  if (t.protocol == kTcp) s.tcp = tcp_next_state(s.tcp, Direction::outbound, t.tcp_flags);
  if (s.tcp != TcpState::reset || s.expires <= now) s.expires = now + timeout_of(t.protocol, s.tcp);

  ChecksumWriter writer;
  const ChecksumField sum{t.checksum ? &packet[t.checksum] : nullptr, t.protocol == kUdp};
  set_address(writer, &packet[kSourceOffset], external_, sum);
  writer.set16(&packet[t.l4 + (t.protocol == kIcmpv6 ? 4 : 0)], external_port, sum);
  ++stats_.translated_outbound;
  return Outcome::translated;
}

Nat66::Outcome Nat66::inbound(Instant now, MutableByteSpan packet) {
  Transport t;
  switch (parse(packet, 0, false, t)) {
    case Parsed::ok: break;
    case Parsed::malformed: return drop(Drop::malformed);
    case Parsed::unsupported: return drop(Drop::unsupported);
  }
  if (address_at(&packet[kDestinationOffset]) != external_) return drop(Drop::not_external);
  if (t.protocol == kIcmpv6 && t.icmp_type != kEchoReply) {
    if (t.icmp_type == kEchoRequest) return drop(Drop::unsupported);  // to the router itself
    return inbound_error(now, packet, t.l4);
  }
  const std::uint16_t external_port = t.destination_port;
  const SessionKey skey{t.protocol, external_port, address_at(&packet[kSourceOffset]),
                        t.protocol == kIcmpv6 ? std::uint16_t{0} : t.source_port};
  auto session = sessions_.find(skey);
  auto mapping = by_external_.find({t.protocol, external_port});
  if (session == sessions_.end() || session->second.expires <= now || mapping == by_external_.end())
    return drop(Drop::no_session);  // RFC 4787 REQ-8: address and port dependent filtering
  SessionState& s = session->second;
  if (t.protocol == kTcp) s.tcp = tcp_next_state(s.tcp, Direction::inbound, t.tcp_flags);
  if (s.tcp != TcpState::reset) s.expires = now + timeout_of(t.protocol, s.tcp);

  ChecksumWriter writer;
  const ChecksumField sum{t.checksum ? &packet[t.checksum] : nullptr, t.protocol == kUdp};
  set_address(writer, &packet[kDestinationOffset], mapping->second.key.internal, sum);
  writer.set16(&packet[t.l4 + (t.protocol == kIcmpv6 ? 4 : 2)], mapping->second.key.port, sum);
  ++stats_.translated_inbound;
  return Outcome::translated;
}

// An ICMPv6 error about a translated packet (RFC 4443 §3; RFC 5508 REQ-3 in spirit): the quoted
// packet left from E:e; it goes back to X:x, outer destination and quote alike.
Nat66::Outcome Nat66::inbound_error(Instant now, MutableByteSpan packet, std::size_t icmp_offset) {
  const std::size_t quote = icmp_offset + kIcmpv6ErrorHeader;
  Transport q;
  switch (parse(packet, quote, true, q)) {
    case Parsed::ok: break;
    case Parsed::malformed: return drop(Drop::malformed);
    case Parsed::unsupported: return drop(Drop::unsupported);
  }
  if (q.protocol == kIcmpv6 && q.icmp_type != kEchoRequest) return drop(Drop::unsupported);
  if (address_at(&packet[quote + kSourceOffset]) != external_) return drop(Drop::no_session);
  const std::uint16_t external_port = q.source_port;
  const SessionKey skey{q.protocol, external_port, address_at(&packet[quote + kDestinationOffset]),
                        q.protocol == kIcmpv6 ? std::uint16_t{0} : q.destination_port};
  auto session = sessions_.find(skey);
  auto mapping = by_external_.find({q.protocol, external_port});
  if (session == sessions_.end() || session->second.expires <= now || mapping == by_external_.end())
    return drop(Drop::no_session);
  const MappingKey& inside = mapping->second.key;
  const ChecksumField icmp_sum{&packet[icmp_offset + 2], false};
  // The outer destination: only in the ICMPv6 pseudo-header.
  ChecksumWriter outer;
  set_address(outer, &packet[kDestinationOffset], inside.internal, icmp_sum);
  // The quote: inside the ICMPv6 message (its checksum encloses every word written, including
  // the quoted transport checksum), and in the quoted transport's pseudo-header.
  ChecksumWriter quoted(icmp_sum);
  const ChecksumField quoted_sum{q.checksum && q.checksum + 2 <= q.end ? &packet[q.checksum] : nullptr,
                                 q.protocol == kUdp};
  set_address(quoted, &packet[quote + kSourceOffset], inside.internal, quoted_sum);
  quoted.set16(&packet[q.l4 + (q.protocol == kIcmpv6 ? 4 : 0)], inside.port, quoted_sum);
  ++stats_.icmp_errors_translated;
  ++stats_.translated_inbound;
  return Outcome::translated;
}

// An inside host's ICMPv6 error about a packet that came in translated (RFC 4443 §3; RFC 5508
// REQ-3 in spirit): the quoted packet went Y:y -> X:x; it must read Y:y -> E:e, and the error
// leave from E. The mapping of X:x and a live session with Y:y must exist, so an inside host
// can neither send errors to strangers through the NAT nor learn other hosts' mappings.
Nat66::Outcome Nat66::outbound_error(Instant now, MutableByteSpan packet, std::size_t icmp_offset) {
  const std::size_t quote = icmp_offset + kIcmpv6ErrorHeader;
  Transport q;
  switch (parse(packet, quote, true, q)) {
    case Parsed::ok: break;
    case Parsed::malformed: return drop(Drop::malformed);
    case Parsed::unsupported: return drop(Drop::unsupported);
  }
  // What came in translated: TCP, UDP, or an echo reply (its identifier is the inside side's).
  if (q.protocol == kIcmpv6 && q.icmp_type != kEchoReply) return drop(Drop::unsupported);
  const MappingKey key{q.protocol, address_at(&packet[quote + kDestinationOffset]), q.destination_port};
  const auto mapping = by_internal_.find(key);
  if (mapping == by_internal_.end()) return drop(Drop::no_session);
  const std::uint16_t external_port = mapping->second;
  const SessionKey skey{q.protocol, external_port, address_at(&packet[quote + kSourceOffset]),
                        q.protocol == kIcmpv6 ? std::uint16_t{0} : q.source_port};
  const auto session = sessions_.find(skey);
  if (session == sessions_.end() || session->second.expires <= now) return drop(Drop::no_session);
  const ChecksumField icmp_sum{&packet[icmp_offset + 2], false};
  // The outer source (whoever in the mesh sent it: only the external address may leave).
  ChecksumWriter outer;
  set_address(outer, &packet[kSourceOffset], external_, icmp_sum);
  // The quote's destination and port (or echo identifier), inside the ICMPv6 message.
  ChecksumWriter quoted(icmp_sum);
  const ChecksumField quoted_sum{q.checksum && q.checksum + 2 <= q.end ? &packet[q.checksum] : nullptr,
                                 q.protocol == kUdp};
  set_address(quoted, &packet[quote + kDestinationOffset], external_, quoted_sum);
  quoted.set16(&packet[q.l4 + (q.protocol == kIcmpv6 ? 4 : 2)], external_port, quoted_sum);
  ++stats_.icmp_errors_translated;
  ++stats_.translated_outbound;
  return Outcome::translated;
}

void Nat66::expire(Instant now) {
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    if (it->second.expires > now) {
      ++it;
      continue;
    }
    auto mapping = by_external_.find({it->first.protocol, it->first.external_port});
    if (mapping != by_external_.end() && --mapping->second.sessions == 0) {
      by_internal_.erase(mapping->second.key);
      by_external_.erase(mapping);
    }
    it = sessions_.erase(it);
  }
}

Nat66::Stats Nat66::stats() const {
  Stats s = stats_;
  s.mappings_live = by_external_.size();
  s.sessions_live = sessions_.size();
  return s;
}

std::vector<Nat66::Session> Nat66::sessions() const {
  std::vector<Session> out;
  for (const auto& [key, state] : sessions_) {
    auto mapping = by_external_.find({key.protocol, key.external_port});
    if (mapping == by_external_.end()) continue;
    Session s;
    s.protocol = protocol_of(key.protocol);
    s.internal = Endpoint(IpAddress::v6(mapping->second.key.internal.data()), mapping->second.key.port);
    s.external = Endpoint(config_.external, key.external_port);
    s.remote = Endpoint(IpAddress::v6(key.remote.data()), key.remote_port);
    s.tcp_state = state.tcp;
    s.expires = state.expires;
    out.push_back(s);
  }
  return out;
}

}  // namespace knit::nat
