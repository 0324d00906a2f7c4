#include "nat/ipv6_conntrack.hpp"

#include <algorithm>
#include <cstring>

namespace knit::nat {

namespace {

constexpr std::size_t kIpv6Header = 40;
constexpr std::uint8_t kHopByHop = 0;
constexpr std::uint8_t kTcp = 6;
constexpr std::uint8_t kUdp = 17;
constexpr std::uint8_t kRouting = 43;
constexpr std::uint8_t kFragment = 44;
constexpr std::uint8_t kAuthentication = 51;
constexpr std::uint8_t kIcmpv6 = 58;
constexpr std::uint8_t kDestinationOptions = 60;
constexpr std::uint8_t kTcpFin = 0x01;
constexpr std::uint8_t kTcpSyn = 0x02;
constexpr std::uint8_t kTcpRst = 0x04;
constexpr std::uint8_t kTcpAck = 0x10;
// RFC 4443 §2.1: error messages have types 0-127; these four are the ones defined.
constexpr std::uint8_t kIcmpv6ErrorLast = 4;
constexpr std::uint8_t kEchoRequest = 128;
constexpr std::uint8_t kEchoReply = 129;
constexpr std::size_t kIcmpv6ErrorHeader = 8;

enum class Kind : std::uint8_t { flow, echo_request, echo_reply, icmp_error, other, fragment };

struct Packet {
  Kind kind = Kind::other;
  std::uint8_t protocol = 0;
  const std::uint8_t* source = nullptr;
  const std::uint8_t* destination = nullptr;
  std::uint16_t source_port = 0;  // echo: the identifier
  std::uint16_t destination_port = 0;
  std::uint8_t tcp_flags = 0;
  std::size_t l4_offset = 0;
  std::size_t l4_end = 0;
};

std::uint16_t read16(const std::uint8_t* p) { return static_cast<std::uint16_t>(p[0] << 8 | p[1]); }

// `quoted`: the packet inside an ICMPv6 error, cut short by the error's size limit, so its
// payload length is not checked and only the first 8 transport bytes are needed.
bool parse(ByteSpan bytes, bool quoted, Packet& out) {
  if (bytes.size() < kIpv6Header || (bytes[0] >> 4) != 6) return false;
  std::size_t end = bytes.size();
  if (!quoted) {
    const std::size_t payload = read16(&bytes[4]);
    if (payload == 0 || kIpv6Header + payload > bytes.size()) return false;  // no jumbograms
    end = kIpv6Header + payload;
  }
  out.source = &bytes[8];
  out.destination = &bytes[24];
  std::uint8_t next = bytes[6];
  std::size_t offset = kIpv6Header;
  for (std::size_t walked = 0;; ++walked) {
    const bool extension = next == kHopByHop || next == kRouting || next == kFragment ||
                           next == kAuthentication || next == kDestinationOptions;
    if (!extension) break;
    if (walked == Ipv6Conntrack::kMaxExtensionHeaders || offset + 8 > end) return false;
    const std::uint8_t* h = &bytes[offset];
    std::size_t length = 0;
    if (next == kFragment) {
      length = 8;
      if ((read16(h + 2) >> 3) != 0) {
        out.kind = Kind::fragment;
        out.protocol = h[0];
        return true;
      }
    } else if (next == kAuthentication) {
      length = (std::size_t{h[1]} + 2) * 4;
    } else {
      length = (std::size_t{h[1]} + 1) * 8;
    }
    if (offset + length > end) return false;
    next = h[0];
    offset += length;
  }
  out.protocol = next;
  out.l4_offset = offset;
  out.l4_end = end;
  const std::size_t size = end - offset;
  const std::uint8_t* t = bytes.data() + offset;
  switch (next) {
    case kTcp:
      if (size < (quoted ? 8 : 20)) return false;
      if (!quoted) {
        const std::size_t data_offset = static_cast<std::size_t>(t[12] >> 4) * 4;
        if (data_offset < 20 || data_offset > size) return false;
        out.tcp_flags = t[13];
      }
      out.kind = Kind::flow;
      out.source_port = read16(t);
      out.destination_port = read16(t + 2);
      return true;
    case kUdp:
      if (size < 8) return false;
      out.kind = Kind::flow;
      out.source_port = read16(t);
      out.destination_port = read16(t + 2);
      return true;
    case kIcmpv6:
      if (size < 4) return false;
      if (t[0] == kEchoRequest || t[0] == kEchoReply) {
        if (size < 8) return false;
        out.kind = t[0] == kEchoRequest ? Kind::echo_request : Kind::echo_reply;
        // The identifier is the querying side's "port" (as the NAT engine's ICMP queries).
        if (out.kind == Kind::echo_request) out.source_port = read16(t + 4);
        else out.destination_port = read16(t + 4);
        return true;
      }
      if (t[0] >= 1 && t[0] <= kIcmpv6ErrorLast) {
        if (quoted || size < kIcmpv6ErrorHeader + kIpv6Header + 8) return false;
        out.kind = Kind::icmp_error;
        return true;
      }
      out.kind = Kind::other;
      return true;
    default:
      out.kind = Kind::other;  // no next header (59), ESP, SCTP, ...: nothing to key on
      return true;
  }
}

}  // namespace

const char* to_string(Ipv6Conntrack::Outcome outcome) {
  switch (outcome) {
    case Ipv6Conntrack::Outcome::tracked: return "tracked";
    case Ipv6Conntrack::Outcome::untracked: return "untracked";
    case Ipv6Conntrack::Outcome::unsolicited: return "unsolicited";
    case Ipv6Conntrack::Outcome::fragment: return "fragment";
    case Ipv6Conntrack::Outcome::malformed: return "malformed";
    case Ipv6Conntrack::Outcome::table_full: return "table_full";
  }
  return "?";
}

std::size_t Ipv6Conntrack::KeyHash::operator()(const Key& key) const {
  // Salted so peers cannot aim packets at one bucket (FNV-1a over the key, then a mix).
  std::uint64_t h = 0xcbf29ce484222325ull ^ salt;
  auto add = [&h](std::uint8_t byte) { h = (h ^ byte) * 0x100000001b3ull; };
  for (std::uint8_t b : key.local) add(b);
  for (std::uint8_t b : key.remote) add(b);
  add(static_cast<std::uint8_t>(key.local_port >> 8));
  add(static_cast<std::uint8_t>(key.local_port));
  add(static_cast<std::uint8_t>(key.remote_port >> 8));
  add(static_cast<std::uint8_t>(key.remote_port));
  add(key.protocol);
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return static_cast<std::size_t>(h);
}

Ipv6Conntrack::Ipv6Conntrack(std::uint64_t hash_salt, Limits limits)
    : limits_(limits), flows_(16, KeyHash{hash_salt}) {}

Duration Ipv6Conntrack::timeout_of(std::uint8_t protocol, TcpPhase phase) const {
  if (protocol == kUdp) return limits_.udp_timeout;
  if (protocol == kTcp)
    return phase == TcpPhase::established ? limits_.tcp_established_timeout
                                          : limits_.tcp_transitory_timeout;
  return limits_.icmp_timeout;
}

Ipv6Conntrack::Flow* Ipv6Conntrack::live(const Key& key, Instant now) {
  auto it = flows_.find(key);
  if (it == flows_.end()) return nullptr;
  if (it->second.expires > now) return &it->second;
  flows_.erase(it);
  return nullptr;
}

Ipv6Conntrack::Outcome Ipv6Conntrack::outbound(Instant now, ByteSpan bytes) {
  Packet p;
  if (!parse(bytes, false, p)) return Outcome::malformed;
  if (p.kind == Kind::fragment) return Outcome::fragment;
  if (p.kind != Kind::flow && p.kind != Kind::echo_request) return Outcome::untracked;
  Key key;
  std::memcpy(key.local.data(), p.source, 16);
  std::memcpy(key.remote.data(), p.destination, 16);
  key.local_port = p.source_port;
  key.remote_port = p.destination_port;
  key.protocol = p.protocol;
  Flow* flow = live(key, now);
  if (flow == nullptr) {
    // A RST opens nothing; any other segment does (a SYN, or a connection picked up midway
    // after a restart, or one the peer opened while the shields were down).
    if (p.protocol == kTcp && (p.tcp_flags & kTcpRst)) return Outcome::untracked;
    if (flows_.size() >= limits_.max_flows) expire(now);
    if (flows_.size() >= limits_.max_flows) return Outcome::table_full;
    Flow fresh;
    fresh.phase = (p.protocol == kTcp && !(p.tcp_flags & kTcpSyn)) ? TcpPhase::established
                                                                   : TcpPhase::opening;
    flow = &flows_.emplace(key, fresh).first->second;
  }
  if (p.protocol == kTcp) {
    if (p.tcp_flags & (kTcpRst | kTcpFin)) flow->phase = TcpPhase::closing;
    else if ((p.tcp_flags & kTcpSyn) && !(p.tcp_flags & kTcpAck)) flow->phase = TcpPhase::opening;
  }
  flow->expires = now + timeout_of(p.protocol, flow->phase);
  return Outcome::tracked;
}

Ipv6Conntrack::Outcome Ipv6Conntrack::inbound(Instant now, ByteSpan bytes) {
  Packet p;
  if (!parse(bytes, false, p)) return Outcome::malformed;
  if (p.kind == Kind::fragment) return Outcome::fragment;
  Key key;
  std::memcpy(key.local.data(), p.destination, 16);
  std::memcpy(key.remote.data(), p.source, 16);
  if (p.kind == Kind::icmp_error) {
    // The quoted packet is one this host sent: its source is us, its destination the remote.
    const ByteSpan quote = bytes.subspan(p.l4_offset + kIcmpv6ErrorHeader,
                                         p.l4_end - p.l4_offset - kIcmpv6ErrorHeader);
    Packet q;
    if (!parse(quote, true, q)) return Outcome::malformed;
    if (q.kind != Kind::flow && q.kind != Kind::echo_request) return Outcome::unsolicited;
    if (std::memcmp(q.source, p.destination, 16) != 0) return Outcome::unsolicited;
    Key quoted;
    std::memcpy(quoted.local.data(), q.source, 16);
    std::memcpy(quoted.remote.data(), q.destination, 16);
    quoted.local_port = q.source_port;
    quoted.remote_port = q.destination_port;
    quoted.protocol = q.protocol;
    return live(quoted, now) != nullptr ? Outcome::tracked : Outcome::unsolicited;
  }
  if (p.kind != Kind::flow && p.kind != Kind::echo_reply) return Outcome::unsolicited;
  key.local_port = p.destination_port;
  key.remote_port = p.source_port;
  key.protocol = p.protocol;
  Flow* flow = live(key, now);
  if (flow == nullptr) return Outcome::unsolicited;
  if (p.protocol == kTcp) {
    if (p.tcp_flags & (kTcpRst | kTcpFin)) flow->phase = TcpPhase::closing;
    else if ((p.tcp_flags & kTcpAck) && flow->phase == TcpPhase::opening)
      flow->phase = TcpPhase::established;
  }
  flow->expires = now + timeout_of(p.protocol, flow->phase);
  return Outcome::tracked;
}

void Ipv6Conntrack::expire(Instant now) {
  std::erase_if(flows_, [now](const auto& entry) { return entry.second.expires <= now; });
}

}  // namespace knit::nat
