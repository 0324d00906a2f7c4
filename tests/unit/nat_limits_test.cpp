// Bounds and router duties: table exhaustion (RFC 5508 REQ-8), TTL, fragments, inside/martian
// source checks, configuration errors.
#include <gtest/gtest.h>

#include <stdexcept>

#include "nat/checksum.hpp"
#include "nat/nat_engine.hpp"
#include "nat/packet_builder.hpp"
#include "nat/wire.hpp"

namespace knit::nat {
namespace {

using namespace std::chrono_literals;

Endpoint ep(const char* text) { return Endpoint::parse(text).value(); }
IpAddress ip(const char* text) { return IpAddress::parse(text).value(); }

const IpAddress kPublic = ip("203.0.113.1");
const Endpoint kServer = ep("198.51.100.1:3478");

Config config() {
  Config c;
  c.external_addresses = {kPublic};
  return c;
}

struct Nat {
  explicit Nat(Config c) : rng(1), engine(std::move(c), rng) {}
  SeededRandom rng;
  NatEngine engine;
  Instant now{};
  std::array<std::uint8_t, kIcmpErrorMaxSize> reply{};
};

Endpoint host(std::uint32_t i, std::uint16_t port = 5000) {
  return Endpoint(IpAddress::v4(0x0a000000 + 2 + i), port);
}

TEST(NatLimits, Rfc5508Req8ExhaustionAnswersIcmp313) {
  Config c = config();
  c.max_mappings = 4;
  Nat nat(c);
  for (std::uint32_t i = 0; i < 4; ++i) {
    Bytes p = make_udp(host(i), kServer);
    ASSERT_EQ(nat.engine.outbound(nat.now, p, nat.reply).verdict, Verdict::forward);
  }
  Bytes p = make_udp(host(4), kServer, Bytes(10, 1));
  const Bytes original = p;
  const Result r = nat.engine.outbound(nat.now, p, nat.reply);
  ASSERT_EQ(r.verdict, Verdict::reply);
  EXPECT_EQ(r.reason, DropReason::table_full);
  const ByteSpan icmp(nat.reply.data(), r.reply_length);
  EXPECT_TRUE(verify_checksums(icmp).all());
  const PacketSummary s = summarize(icmp);
  EXPECT_EQ(s.icmp_type, kIcmpDestinationUnreachable);
  EXPECT_EQ(s.icmp_code, kIcmpCodeAdminProhibited);
  EXPECT_EQ(s.destination.address(), host(4).address());
  EXPECT_EQ(s.source.address(), kPublic);
  EXPECT_EQ(summarize(icmp, true).source, host(4));  // quotes the refused packet
  EXPECT_EQ(p, original);                            // which was left untouched
  // Existing mappings keep working; the bound holds.
  Bytes existing = make_udp(host(0), ep("192.0.2.1:1"));
  EXPECT_EQ(nat.engine.outbound(nat.now, existing, nat.reply).verdict, Verdict::forward);
  const Stats st = nat.engine.stats();
  EXPECT_EQ(st.mappings_live, 4u);
  EXPECT_EQ(st.drops_of(DropReason::table_full), 1u);
  EXPECT_EQ(st.replied_outbound, 1u);
  EXPECT_EQ(st.icmp_errors_generated, 1u);
}

TEST(NatLimits, ExhaustionWithoutIcmpOrBufferDrops) {
  Config c = config();
  c.max_mappings = 1;
  c.icmp_error_on_exhaustion = false;
  Nat nat(c);
  Bytes a = make_udp(host(0), kServer);
  ASSERT_EQ(nat.engine.outbound(nat.now, a, nat.reply).verdict, Verdict::forward);
  Bytes b = make_udp(host(1), kServer);
  EXPECT_EQ(nat.engine.outbound(nat.now, b, nat.reply).verdict, Verdict::drop);

  Config d = config();
  d.max_sessions = 1;
  Nat other(d);
  Bytes x = make_udp(host(0), kServer);
  ASSERT_EQ(other.engine.outbound(other.now, x).verdict, Verdict::forward);
  Bytes y = make_udp(host(0), ep("192.0.2.1:1"));
  const Result r = other.engine.outbound(other.now, y);  // no reply buffer given
  EXPECT_EQ(r.verdict, Verdict::drop);
  EXPECT_EQ(r.reason, DropReason::table_full);
  // Inbound never gets an ICMP for exhaustion: EIF admission is refused quietly.
}

TEST(NatLimits, ExpiredEntriesMakeRoom) {
  Config c = config();
  c.max_mappings = 2;
  Nat nat(c);
  for (std::uint32_t i = 0; i < 2; ++i) {
    Bytes p = make_udp(host(i), kServer);
    ASSERT_EQ(nat.engine.outbound(nat.now, p).verdict, Verdict::forward);
  }
  nat.now += 301s;  // both expired, neither collected yet
  Bytes p = make_udp(host(9), kServer);
  EXPECT_EQ(nat.engine.outbound(nat.now, p).verdict, Verdict::forward);
}

TEST(NatLimits, PortsExhaustedIsCountedApart) {
  Config c = config();
  c.port_min = 40000;
  c.port_max = 40001;
  Nat nat(c);
  for (std::uint32_t i = 0; i < 2; ++i) {
    Bytes p = make_udp(host(i, 6000), kServer);
    ASSERT_EQ(nat.engine.outbound(nat.now, p, nat.reply).verdict, Verdict::forward);
  }
  Bytes p = make_udp(host(2, 6000), kServer);
  const Result r = nat.engine.outbound(nat.now, p, nat.reply);
  EXPECT_EQ(r.verdict, Verdict::reply);
  EXPECT_EQ(r.reason, DropReason::ports_exhausted);
}

TEST(NatRouter, TtlDecrementedAndExpiryAnswered) {
  Config c = config();
  c.inside_address = ip("10.0.0.1");
  Nat nat(c);
  Ipv4Options one;
  one.ttl = 1;
  Bytes p = make_udp(host(0), kServer, {}, one);
  Result r = nat.engine.outbound(nat.now, p, nat.reply);
  ASSERT_EQ(r.verdict, Verdict::reply);
  EXPECT_EQ(r.reason, DropReason::ttl_expired);
  const ByteSpan icmp(nat.reply.data(), r.reply_length);
  EXPECT_TRUE(verify_checksums(icmp).all());
  EXPECT_EQ(summarize(icmp).icmp_type, kIcmpTimeExceeded);
  EXPECT_EQ(summarize(icmp).source.address(), ip("10.0.0.1"));  // inside_address
  EXPECT_EQ(nat.engine.stats().mappings_live, 0u);              // nothing created for it

  Bytes q = make_udp(host(0), kServer);
  ASSERT_EQ(nat.engine.outbound(nat.now, q).verdict, Verdict::forward);
  EXPECT_EQ(summarize(q).ttl, 63);
  EXPECT_TRUE(verify_checksums(q).all());

  // Inbound with TTL 1: answered from the external address toward the sender.
  Bytes in = make_udp(kServer, Endpoint(kPublic, 5000), {}, one);
  r = nat.engine.inbound(nat.now, in, nat.reply);
  ASSERT_EQ(r.verdict, Verdict::reply);
  EXPECT_EQ(summarize(ByteSpan(nat.reply.data(), r.reply_length)).source.address(), kPublic);

  // Never an ICMP error about an ICMP error.
  Bytes err =
      make_icmp_error(kServer.address(), kPublic, 3, 3, make_udp(Endpoint(kPublic, 5000), kServer));
  err[kIpv4OffTtl] = 1;
  store_be16(&err[kIpv4OffChecksum], 0);
  store_be16(&err[kIpv4OffChecksum], internet_checksum(ByteSpan(err.data(), 20)));
  r = nat.engine.inbound(nat.now, err, nat.reply);
  EXPECT_EQ(r.verdict, Verdict::drop);
  EXPECT_EQ(r.reason, DropReason::ttl_expired);

  Config keep = config();
  keep.decrement_ttl = false;
  Nat plain(keep);
  Bytes k = make_udp(host(0), kServer, {}, one);
  ASSERT_EQ(plain.engine.outbound(plain.now, k).verdict, Verdict::forward);
  EXPECT_EQ(summarize(k).ttl, 1);
}

TEST(NatRouter, FragmentsFollowTheirFirstFragment) {
  Nat nat(config());
  Bytes payload(3000);
  for (std::size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<std::uint8_t>(i * 7);
  Ipv4Options o;
  o.id = 0x1234;
  const Bytes datagram = make_udp(host(0), kServer, payload, o);
  auto fragments = fragment_packet(datagram, 1400);
  ASSERT_EQ(fragments.size(), 3u);
  // A later fragment before the first: dropped (no buffering), counted.
  Bytes early = fragments[2];
  EXPECT_EQ(nat.engine.outbound(nat.now, early).reason, DropReason::fragment);
  Bytes reassembled(datagram.size());
  for (Bytes& f : fragments) {
    ASSERT_EQ(nat.engine.outbound(nat.now, f).verdict, Verdict::forward);
    EXPECT_TRUE(verify_checksums(f).ip);
    EXPECT_EQ(summarize(f).source.address(), kPublic);
    const std::size_t offset = std::size_t{load_be16(&f[6]) & 0x1fffu} * 8;
    std::copy(f.begin() + 20, f.end(), reassembled.begin() + 20 + offset);
  }
  // Reassembled, the datagram's UDP checksum holds for the new source: the first fragment's
  // incremental update covered the whole datagram.
  std::copy(fragments[0].begin(), fragments[0].begin() + 20, reassembled.begin());
  store_be16(&reassembled[2], static_cast<std::uint16_t>(reassembled.size()));
  reassembled[6] = 0;
  reassembled[7] = 0;
  store_be16(&reassembled[kIpv4OffChecksum], 0);
  store_be16(&reassembled[kIpv4OffChecksum], internet_checksum(ByteSpan(reassembled.data(), 20)));
  EXPECT_TRUE(verify_checksums(reassembled).all());
  EXPECT_EQ(summarize(reassembled).source, Endpoint(kPublic, 5000));
  EXPECT_EQ(nat.engine.stats().fragments_translated, 2u);

  // The reply in fragments, inbound.
  Ipv4Options r;
  r.id = 0x9999;
  auto replies = fragment_packet(make_udp(kServer, Endpoint(kPublic, 5000), payload, r), 1000);
  for (Bytes& f : replies) {
    ASSERT_EQ(nat.engine.inbound(nat.now, f).verdict, Verdict::forward);
    EXPECT_EQ(summarize(f).destination.address(), host(0).address());
  }
  // Unknown non-first fragments from outside: dropped.
  Ipv4Options stray;
  stray.fragment_offset = 100;
  stray.id = 7;
  Bytes s = make_ipv4(kServer.address(), kPublic, kProtoUdp, Bytes(64, 0), stray);
  EXPECT_EQ(nat.engine.inbound(nat.now, s).reason, DropReason::fragment);
}

TEST(NatRouter, SourceChecks) {
  Config c = config();
  c.inside_prefixes = {IpPrefix::parse("10.0.0.0/24").value()};
  Nat nat(c);
  Bytes outside = make_udp(ep("10.9.0.2:5000"), kServer);
  EXPECT_EQ(nat.engine.outbound(nat.now, outside).reason, DropReason::not_inside);
  Bytes own = make_udp(Endpoint(kPublic, 5000), kServer);
  EXPECT_EQ(nat.engine.outbound(nat.now, own).reason, DropReason::not_inside);
  Bytes loop = make_udp(ep("127.0.0.1:5000"), kServer);
  EXPECT_EQ(nat.engine.outbound(nat.now, loop).reason, DropReason::martian);
  Bytes multicast = make_udp(ep("10.0.0.2:5000"), ep("224.0.0.251:5353"));
  EXPECT_EQ(nat.engine.outbound(nat.now, multicast).reason, DropReason::martian);
  Bytes spoofed = make_udp(ep("0.0.0.0:68"), Endpoint(kPublic, 5000));
  EXPECT_EQ(nat.engine.inbound(nat.now, spoofed).reason, DropReason::martian);
  Bytes elsewhere = make_udp(kServer, ep("203.0.113.77:5000"));
  EXPECT_EQ(nat.engine.inbound(nat.now, elsewhere).reason, DropReason::not_external);
}

TEST(NatConfig, InvalidConfigurationsRefusedAtStartup) {
  SeededRandom rng(1);
  Config none;
  EXPECT_EQ(validate(none), ConfigError::no_external_address);
  EXPECT_THROW(NatEngine(none, rng), std::invalid_argument);
  Config v6 = config();
  v6.external_addresses = {ip("2001:db8::1")};
  EXPECT_EQ(validate(v6), ConfigError::not_ipv4);
  Config range = config();
  range.port_min = 1000;
  EXPECT_EQ(validate(range), ConfigError::bad_port_range);
  range.port_min = 5000;
  range.port_max = 4000;
  EXPECT_EQ(validate(range), ConfigError::bad_port_range);
  Config timer = config();
  timer.udp_timeout = Duration::zero();
  EXPECT_EQ(validate(timer), ConfigError::bad_timeout);
  Config bound = config();
  bound.max_mappings = 0;
  EXPECT_EQ(validate(bound), ConfigError::zero_bound);
  Config clash = config();
  clash.port_forwards = {PortForward{Protocol::tcp, 22, ip("10.0.0.5"), 22, {}},
                         PortForward{Protocol::tcp, 22, ip("10.0.0.6"), 22, {}}};
  EXPECT_THROW(NatEngine(clash, rng), std::invalid_argument);
}

}  // namespace
}  // namespace knit::nat
