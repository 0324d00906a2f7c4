// Nat66 on a manual clock: TCP, UDP and ICMPv6 echo from the inside leave with the external
// address and a port of the range (one mapping per inside endpoint, EIM), replies come back only
// from endpoints the inside talked to (APDF), ICMPv6 errors about translated packets are
// translated back (outer destination and quote), an inside host's errors about translated
// replies leave with the external address (outer source and quote), every checksum stays valid, timers expire
// sessions and mappings, the port range and the table are bounded, and malformed or unsupported
// packets are dropped and counted.
#include <gtest/gtest.h>

#include <cstring>

#include "base/checksum.hpp"
#include "base/random.hpp"
#include "nat/nat66.hpp"

namespace knit::nat {
namespace {

using std::chrono::minutes;
using std::chrono::seconds;

IpAddress ip(const char* text) { return IpAddress::parse(text).value(); }

const IpAddress kInside = ip("fd7a:115c:a1e0::7");
const IpAddress kInside2 = ip("fd7a:115c:a1e0::8");
const IpAddress kExternal = ip("2001:db8:1::1");
const IpAddress kRemote = ip("2001:db8:99::5");
const IpAddress kOther = ip("2001:db8:99::6");

constexpr std::uint8_t kTcp = 6, kUdp = 17, kIcmp = 58;

std::uint64_t pseudo_sum(ByteSpan packet, std::size_t ip, std::size_t length, std::uint8_t next) {
  std::uint8_t pseudo[40] = {};
  std::memcpy(pseudo, &packet[ip + 8], 32);
  pseudo[32 + 2] = static_cast<std::uint8_t>(length >> 8);
  pseudo[32 + 3] = static_cast<std::uint8_t>(length);
  pseudo[39] = next;
  return checksum_accumulate(ByteSpan(pseudo, 40));
}

// The transport checksum of the IPv6 packet at `ip`, `length` transport bytes: valid?
bool checksum_ok(ByteSpan packet, std::size_t ip, std::size_t length) {
  const std::uint8_t next = packet[ip + 6];
  const std::uint64_t sum = checksum_accumulate(packet.subspan(ip + 40, length), pseudo_sum(packet, ip, length, next));
  return checksum_fold(sum) == 0xffff;
}

void fill_checksum(Bytes& p, std::size_t ip, std::size_t length) {
  const std::uint8_t next = p[ip + 6];
  const std::size_t at = ip + 40 + (next == kTcp ? 16 : next == kUdp ? 6 : 2);
  p[at] = p[at + 1] = 0;
  std::uint16_t c = static_cast<std::uint16_t>(
      ~checksum_fold(checksum_accumulate(ByteSpan(p).subspan(ip + 40, length), pseudo_sum(p, ip, length, next))));
  if (next == kUdp && c == 0) c = 0xffff;
  store_be16(&p[at], c);
}

// An IPv6 packet: TCP (flags), UDP, or ICMPv6 (type, with the identifier as `sport`).
Bytes packet(std::uint8_t proto, const IpAddress& src, std::uint16_t sport, const IpAddress& dst,
             std::uint16_t dport, std::uint8_t flags_or_type = 0, std::size_t payload = 12) {
  const std::size_t header = proto == kTcp ? 20 : 8;
  Bytes p(40 + header + payload, 0);
  p[0] = 0x60;
  store_be16(&p[4], static_cast<std::uint16_t>(header + payload));
  p[6] = proto;
  p[7] = 64;
  std::memcpy(&p[8], src.bytes(), 16);
  std::memcpy(&p[24], dst.bytes(), 16);
  std::uint8_t* t = &p[40];
  if (proto == kIcmp) {
    t[0] = flags_or_type;
    store_be16(t + 4, sport);
    store_be16(t + 6, 1);
  } else {
    store_be16(t, sport);
    store_be16(t + 2, dport);
    if (proto == kTcp) {
      t[12] = 5 << 4;
      t[13] = flags_or_type;
    } else {
      store_be16(t + 4, static_cast<std::uint16_t>(header + payload));
    }
  }
  for (std::size_t i = 0; i < payload; ++i) p[40 + header + i] = static_cast<std::uint8_t>(i * 7);
  fill_checksum(p, 0, header + payload);
  return p;
}

IpAddress source_of(const Bytes& p) { return IpAddress::v6(&p[8]); }
IpAddress destination_of(const Bytes& p) { return IpAddress::v6(&p[24]); }
std::uint16_t sport_of(const Bytes& p) { return load_be16(&p[40 + (p[6] == kIcmp ? 4 : 0)]); }
std::uint16_t dport_of(const Bytes& p) { return load_be16(&p[40 + (p[6] == kIcmp ? 4 : 2)]); }

struct Nat66Translation : ::testing::Test {
  SeededRandom rng{7};
  Instant now{};
  Nat66 nat{Nat66::Config{kExternal}, rng};

  // Outbound, then asserts it was translated; returns the external port.
  std::uint16_t out(Bytes& p) {
    EXPECT_EQ(nat.outbound(now, p), Nat66::Outcome::translated);
    return sport_of(p);
  }
};

TEST_F(Nat66Translation, UdpAndTcpLeaveWithTheExternalAddressAndComeBack) {
  for (std::uint8_t proto : {kUdp, kTcp}) {
    Bytes p = packet(proto, kInside, 40000, kRemote, 443, 0x02 /* SYN */);
    const std::uint16_t port = out(p);
    EXPECT_EQ(source_of(p), kExternal);
    EXPECT_EQ(destination_of(p), kRemote);
    EXPECT_GE(port, 61000);
    EXPECT_LE(port, 61999);
    EXPECT_TRUE(checksum_ok(p, 0, p.size() - 40)) << int(proto);
    // The reply.
    Bytes r = packet(proto, kRemote, 443, kExternal, port, 0x12 /* SYN/ACK */);
    ASSERT_EQ(nat.inbound(now, r), Nat66::Outcome::translated);
    EXPECT_EQ(destination_of(r), kInside);
    EXPECT_EQ(dport_of(r), 40000);
    EXPECT_EQ(source_of(r), kRemote);
    EXPECT_TRUE(checksum_ok(r, 0, r.size() - 40));
  }
  const auto s = nat.stats();
  EXPECT_EQ(s.translated_outbound, 2u);
  EXPECT_EQ(s.translated_inbound, 2u);
  EXPECT_EQ(s.mappings_live, 2u);
  EXPECT_EQ(s.sessions_live, 2u);
  const auto sessions = nat.sessions();
  ASSERT_EQ(sessions.size(), 2u);
  EXPECT_EQ(sessions[0].internal, Endpoint(kInside, 40000));
  EXPECT_EQ(sessions[0].external.address(), kExternal);
}

TEST_F(Nat66Translation, EndpointIndependentMappingAndAddressAndPortDependentFiltering) {
  Bytes a = packet(kUdp, kInside, 5000, kRemote, 53);
  const std::uint16_t port = out(a);
  Bytes b = packet(kUdp, kInside, 5000, kOther, 53);
  EXPECT_EQ(out(b), port) << "one mapping per inside endpoint (RFC 4787 REQ-1)";
  Bytes c = packet(kUdp, kInside2, 5000, kRemote, 53);
  EXPECT_NE(out(c), port);
  // From an endpoint nobody inside talked to: filtered.
  Bytes stranger = packet(kUdp, kRemote, 54, kExternal, port);
  EXPECT_EQ(nat.inbound(now, stranger), Nat66::Outcome::dropped);
  Bytes wrong_port = packet(kUdp, kRemote, 53, kExternal, static_cast<std::uint16_t>(port == 61999 ? 61000 : port + 1));
  EXPECT_EQ(nat.inbound(now, wrong_port), Nat66::Outcome::dropped);
  Bytes not_ours = packet(kUdp, kRemote, 53, kOther, port);
  EXPECT_EQ(nat.inbound(now, not_ours), Nat66::Outcome::dropped);
  EXPECT_EQ(nat.stats().drops_of(Nat66::Drop::no_session), 2u);
  EXPECT_EQ(nat.stats().drops_of(Nat66::Drop::not_external), 1u);
}

TEST_F(Nat66Translation, EchoIdentifierIsTranslatedAndRepliesReturn) {
  Bytes ping = packet(kIcmp, kInside, 0x1234, kRemote, 0, 128);
  const std::uint16_t id = out(ping);
  EXPECT_NE(id, 0x1234);
  EXPECT_TRUE(checksum_ok(ping, 0, ping.size() - 40));
  Bytes pong = packet(kIcmp, kRemote, id, kExternal, 0, 129);
  ASSERT_EQ(nat.inbound(now, pong), Nat66::Outcome::translated);
  EXPECT_EQ(destination_of(pong), kInside);
  EXPECT_EQ(dport_of(pong), 0x1234);
  EXPECT_TRUE(checksum_ok(pong, 0, pong.size() - 40));
  // An echo request from outside to the external address is not the NAT's.
  Bytes request = packet(kIcmp, kRemote, 9, kExternal, 0, 128);
  EXPECT_EQ(nat.inbound(now, request), Nat66::Outcome::dropped);
}

// An ICMPv6 error quoting `inner` (as it left the NAT), from `from` to the external address.
Bytes error_about(const Bytes& inner, const IpAddress& from, std::uint8_t type, std::size_t quoted) {
  const std::size_t n = std::min(quoted, inner.size());
  Bytes p(40 + 8 + n, 0);
  p[0] = 0x60;
  store_be16(&p[4], static_cast<std::uint16_t>(8 + n));
  p[6] = kIcmp;
  p[7] = 64;
  std::memcpy(&p[8], from.bytes(), 16);
  std::memcpy(&p[24], &inner[8], 16);  // to the quoted packet's source
  p[40] = type;
  if (type == 2) store_be16(&p[46], 1280);  // Packet Too Big: the MTU
  std::memcpy(&p[48], inner.data(), n);
  fill_checksum(p, 0, 8 + n);
  return p;
}

TEST_F(Nat66Translation, IcmpErrorsAboutTranslatedPacketsGoBackToTheInsideHost) {
  for (std::uint8_t proto : {kUdp, kTcp, kIcmp}) {
    Bytes p = proto == kIcmp ? packet(kIcmp, kInside, 77, kRemote, 0, 128) : packet(proto, kInside, 40000, kRemote, 443, 0x02);
    const Bytes original = p;
    out(p);
    // The whole packet quoted (a Packet Too Big), then only the first 8 transport bytes.
    for (std::size_t quoted : {p.size(), std::size_t{48}}) {
      Bytes e = error_about(p, ip("2001:db8:50::1"), quoted == 48 ? 1 : 2, quoted);
      ASSERT_EQ(nat.inbound(now, e), Nat66::Outcome::translated) << int(proto) << " " << quoted;
      EXPECT_EQ(destination_of(e), kInside);
      EXPECT_TRUE(checksum_ok(e, 0, e.size() - 40)) << "the ICMPv6 checksum";
      // The quote is the packet as the inside host sent it (checksum included, when whole).
      EXPECT_EQ(IpAddress::v6(&e[48 + 8]), kInside);
      EXPECT_EQ(load_be16(&e[48 + 40 + (proto == kIcmp ? 4 : 0)]), proto == kIcmp ? 77 : 40000);
      if (quoted == p.size()) {
        EXPECT_TRUE(std::equal(original.begin(), original.end(), e.begin() + 48)) << int(proto);
      }
    }
  }
  EXPECT_EQ(nat.stats().icmp_errors_translated, 6u);
  // An error about a flow nobody has: dropped.
  Bytes stray = packet(kUdp, kExternal, 61500, kOther, 9);
  Bytes e = error_about(stray, kOther, 1, stray.size());
  EXPECT_EQ(nat.inbound(now, e), Nat66::Outcome::dropped);
}

TEST_F(Nat66Translation, InsideHostsErrorsAboutTranslatedRepliesLeaveWithTheExternalAddress) {
  for (std::uint8_t proto : {kUdp, kTcp, kIcmp}) {
    Bytes p = proto == kIcmp ? packet(kIcmp, kInside, 77, kRemote, 0, 128) : packet(proto, kInside, 40000, kRemote, 443, 0x02);
    const std::uint16_t port = out(p);
    // The reply as it reaches the NAT, then as the inside host gets it.
    Bytes r = proto == kIcmp ? packet(kIcmp, kRemote, port, kExternal, 0, 129)
                             : packet(proto, kRemote, 443, kExternal, port, 0x12);
    const Bytes arrived = r;
    ASSERT_EQ(nat.inbound(now, r), Nat66::Outcome::translated);
    // The inside host answers it with an error (port unreachable, then packet too big).
    for (std::size_t quoted : {r.size(), std::size_t{48}}) {
      Bytes e = error_about(r, kInside, quoted == 48 ? 2 : 1, quoted);
      ASSERT_EQ(destination_of(e), kRemote);
      ASSERT_EQ(nat.outbound(now, e), Nat66::Outcome::translated) << int(proto) << " " << quoted;
      EXPECT_EQ(source_of(e), kExternal);
      EXPECT_EQ(destination_of(e), kRemote);
      EXPECT_TRUE(checksum_ok(e, 0, e.size() - 40)) << "the ICMPv6 checksum";
      EXPECT_EQ(IpAddress::v6(&e[48 + 24]), kExternal);
      EXPECT_EQ(load_be16(&e[48 + 40 + (proto == kIcmp ? 4 : 2)]), port);
      if (quoted == r.size()) {
        // The quote is the reply as it reached the NAT, its checksum included.
        EXPECT_TRUE(std::equal(arrived.begin(), arrived.end(), e.begin() + 48)) << int(proto);
      }
    }
  }
  EXPECT_EQ(nat.stats().icmp_errors_translated, 6u);
  // About a packet from an endpoint the inside host never talked to, or to an inside endpoint
  // without a mapping: dropped (no mapping can be learned or used that way).
  Bytes stranger = packet(kUdp, kOther, 443, kInside, 40000);
  Bytes e1 = error_about(stranger, kInside, 1, stranger.size());
  EXPECT_EQ(nat.outbound(now, e1), Nat66::Outcome::dropped);
  Bytes unmapped = packet(kUdp, kRemote, 443, kInside2, 41000);
  Bytes e2 = error_about(unmapped, kInside2, 1, unmapped.size());
  EXPECT_EQ(nat.outbound(now, e2), Nat66::Outcome::dropped);
  EXPECT_EQ(nat.stats().drops_of(Nat66::Drop::no_session), 2u);
  // About an echo request (never translated inbound): unsupported.
  Bytes request = packet(kIcmp, kRemote, 5, kInside, 0, 128);
  Bytes e3 = error_about(request, kInside, 1, request.size());
  EXPECT_EQ(nat.outbound(now, e3), Nat66::Outcome::dropped);
  // Expired: the session is gone, so is the error's way out.
  Bytes p = packet(kUdp, kInside, 42000, kRemote, 53);
  const std::uint16_t port = out(p);
  Bytes r = packet(kUdp, kRemote, 53, kExternal, port);
  ASSERT_EQ(nat.inbound(now, r), Nat66::Outcome::translated);
  now += minutes(6);
  Bytes late = error_about(r, kInside, 1, r.size());
  EXPECT_EQ(nat.outbound(now, late), Nat66::Outcome::dropped);
  // Every truncation of an error: dropped, never a crash.
  Bytes good = error_about(r, kInside, 1, r.size());
  for (std::size_t n = 40; n < good.size(); ++n) {
    Bytes cut(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n));
    store_be16(&cut[4], static_cast<std::uint16_t>(n - 40));
    EXPECT_EQ(nat.outbound(now, cut), Nat66::Outcome::dropped) << n;
  }
}

TEST_F(Nat66Translation, TimersExpireSessionsAndMappings) {
  Bytes u = packet(kUdp, kInside, 5000, kRemote, 53);
  const std::uint16_t port = out(u);
  Bytes ping = packet(kIcmp, kInside, 1, kRemote, 0, 128);
  out(ping);
  Bytes syn = packet(kTcp, kInside, 6000, kRemote, 80, 0x02);
  const std::uint16_t tcp_port = out(syn);
  Bytes synack = packet(kTcp, kRemote, 80, kExternal, tcp_port, 0x12);
  ASSERT_EQ(nat.inbound(now, synack), Nat66::Outcome::translated);
  Bytes ack = packet(kTcp, kInside, 6000, kRemote, 80, 0x10);
  out(ack);
  now += seconds(61);  // ICMP: 60 s
  nat.expire(now);
  EXPECT_EQ(nat.stats().sessions_live, 2u);
  now += minutes(5);  // UDP: 5 min since its last packet
  nat.expire(now);
  EXPECT_EQ(nat.stats().sessions_live, 1u);
  Bytes late = packet(kUdp, kRemote, 53, kExternal, port);
  EXPECT_EQ(nat.inbound(now, late), Nat66::Outcome::dropped);
  now += minutes(100);  // established TCP: 124 min
  nat.expire(now);
  EXPECT_EQ(nat.stats().sessions_live, 1u);
  now += minutes(30);
  nat.expire(now);
  EXPECT_EQ(nat.stats().sessions_live, 0u);
  EXPECT_EQ(nat.stats().mappings_live, 0u);
}

TEST(Nat66, PortRangeAndTableAreBounded) {
  SeededRandom rng(3);
  Nat66::Config config{kExternal};
  config.port_min = 62000;
  config.port_max = 62003;  // 4 ports
  config.max_sessions = 6;
  Nat66 nat(config, rng);
  const Instant now{};
  for (int i = 0; i < 4; ++i) {
    Bytes p = packet(kUdp, kInside, static_cast<std::uint16_t>(1000 + i), kRemote, 53);
    EXPECT_EQ(nat.outbound(now, p), Nat66::Outcome::translated);
  }
  Bytes fifth = packet(kUdp, kInside, 2000, kRemote, 53);
  EXPECT_EQ(nat.outbound(now, fifth), Nat66::Outcome::dropped);
  EXPECT_EQ(nat.stats().drops_of(Nat66::Drop::ports_exhausted), 1u);
  // TCP has its own ports; sessions of existing mappings count against the table.
  for (int i = 0; i < 2; ++i) {
    Bytes p = packet(kUdp, kInside, 1000, ip(i == 0 ? "2001:db8:99::10" : "2001:db8:99::11"), 53);
    EXPECT_EQ(nat.outbound(now, p), Nat66::Outcome::translated);
  }
  Bytes seventh = packet(kUdp, kInside, 1001, kOther, 53);
  EXPECT_EQ(nat.outbound(now, seventh), Nat66::Outcome::dropped);
  EXPECT_EQ(nat.stats().drops_of(Nat66::Drop::table_full), 1u);
  EXPECT_EQ(nat.stats().sessions_live, 6u);
  EXPECT_THROW(Nat66(Nat66::Config{ip("192.0.2.1")}, rng), std::invalid_argument);
}

TEST(Nat66, MalformedAndUnsupportedAreDroppedAndCounted) {
  SeededRandom rng(4);
  Nat66 nat(Nat66::Config{kExternal}, rng);
  const Instant now{};
  Bytes good = packet(kUdp, kInside, 1, kRemote, 2);
  // Every truncation of a good packet: dropped, never a crash.
  for (std::size_t n = 0; n < good.size(); ++n) {
    Bytes cut(good.begin(), good.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_EQ(nat.outbound(now, cut), Nat66::Outcome::dropped) << n;
  }
  Bytes v4 = good;
  v4[0] = 0x45;
  EXPECT_EQ(nat.outbound(now, v4), Nat66::Outcome::dropped);
  Bytes ext = good;
  ext[6] = 0;  // hop-by-hop options
  EXPECT_EQ(nat.outbound(now, ext), Nat66::Outcome::dropped);
  Bytes frag = good;
  frag[6] = 44;
  EXPECT_EQ(nat.outbound(now, frag), Nat66::Outcome::dropped);
  Bytes reply = packet(kIcmp, kInside, 5, kRemote, 0, 129);  // an echo reply from inside
  EXPECT_EQ(nat.outbound(now, reply), Nat66::Outcome::dropped);
  Bytes port0 = packet(kUdp, kInside, 0, kRemote, 2);
  EXPECT_EQ(nat.outbound(now, port0), Nat66::Outcome::dropped);
  const auto s = nat.stats();
  EXPECT_EQ(s.drops_of(Nat66::Drop::unsupported), 3u);
  EXPECT_EQ(s.drops_of(Nat66::Drop::malformed), good.size() + 2);
  EXPECT_EQ(s.translated_outbound, 0u);
  EXPECT_EQ(s.mappings_live, 0u);
}

}  // namespace
}  // namespace knit::nat
