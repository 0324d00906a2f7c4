// nat/too_big: the "packet too big" answers knitd gives its host for a packet its peer's path
// cannot carry (ICMP 3/4 with the next-hop MTU, ICMPv6 2/0), when none is due, and the limit.
#include "nat/too_big.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstring>

#include "base/checksum.hpp"
#include "base/random.hpp"
#include "nat/packet_builder.hpp"

namespace knit::nat {
namespace {

IpAddress ip(const char* text) { return IpAddress::parse(text).value(); }
Endpoint ep(const char* text, std::uint16_t port) { return Endpoint(ip(text), port); }

struct Answer {
  TooBigVerdict verdict;
  Bytes bytes;
};

Answer answer(ByteSpan packet, std::size_t mtu) {
  std::array<std::uint8_t, kTooBigMaxSize> out{};
  std::size_t size = 123;
  const TooBigVerdict verdict = write_too_big(out, packet, mtu, size);
  if (verdict != TooBigVerdict::answered) {
    EXPECT_EQ(size, 0u);
  }
  return {verdict, Bytes(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(size))};
}

// A UDP datagram over IPv6 (the builder makes IPv4 only), checksum left zero: not looked at.
Bytes udp6(std::size_t payload, std::uint8_t next = 17, const char* destination = "fd7a:115c:a1e0::2") {
  Bytes p(40 + 8 + payload, 0);
  p[0] = 0x60;
  store_be16(p.data() + 4, static_cast<std::uint16_t>(8 + payload));
  p[6] = next;
  p[7] = 64;
  std::memcpy(p.data() + 8, ip("fd7a:115c:a1e0::1").bytes(), 16);
  std::memcpy(p.data() + 24, ip(destination).bytes(), 16);
  return p;
}

TEST(TooBig, Ipv4WithDfGetsFragmentationNeededWithTheMtu) {
  const Bytes big = make_udp(ep("100.64.0.1", 5000), ep("100.64.0.2", 6000), Bytes(1372, 0xab),
                             Ipv4Options{.dont_fragment = true});
  ASSERT_EQ(big.size(), 1400u);
  const Answer a = answer(big, 1200);
  ASSERT_EQ(a.verdict, TooBigVerdict::answered);
  EXPECT_TRUE(verify_checksums(a.bytes).all());
  const PacketSummary s = summarize(a.bytes);
  EXPECT_EQ(s.protocol, 1);
  EXPECT_EQ(s.icmp_type, 3);
  EXPECT_EQ(s.icmp_code, 4);
  // From the peer's address (routed through the TUN), to the sender.
  EXPECT_EQ(s.source.address(), ip("100.64.0.2"));
  EXPECT_EQ(s.destination.address(), ip("100.64.0.1"));
  EXPECT_EQ(load_be16(a.bytes.data() + 20 + 6), 1200);  // RFC 1191 next-hop MTU
  // The quote: the IP header and 8 bytes (the UDP header) of the offending packet.
  ASSERT_EQ(a.bytes.size(), 20u + 8 + 28);
  EXPECT_EQ(0, std::memcmp(a.bytes.data() + 28, big.data(), 28));
  const PacketSummary quoted = summarize(a.bytes, true);
  EXPECT_EQ(quoted.source, ep("100.64.0.1", 5000));
  EXPECT_EQ(quoted.destination, ep("100.64.0.2", 6000));
}

TEST(TooBig, Ipv4MtuNeverBelowTheMinimum) {
  const Bytes big = make_udp(ep("100.64.0.1", 5000), ep("100.64.0.2", 6000), Bytes(1000, 0),
                             Ipv4Options{.dont_fragment = true});
  const Answer a = answer(big, 300);
  ASSERT_EQ(a.verdict, TooBigVerdict::answered);
  EXPECT_EQ(load_be16(a.bytes.data() + 20 + 6), kMinLinkMtuV4);
}

TEST(TooBig, Ipv4WithoutDfIsLeftToFragment) {
  const Bytes big = make_udp(ep("100.64.0.1", 5000), ep("100.64.0.2", 6000), Bytes(1372, 0));
  EXPECT_EQ(answer(big, 1200).verdict, TooBigVerdict::fragmentable);
}

TEST(TooBig, NoAnswerAboutErrorsLaterFragmentsOrMartians) {
  const Bytes inner = make_udp(ep("100.64.0.2", 6000), ep("100.64.0.1", 5000), Bytes(8, 0));
  Bytes error = make_icmp_error(ip("100.64.0.1"), ip("100.64.0.2"), 3, 3, inner, 1300);
  store_be16(error.data() + 6, 0x4000);  // DF
  EXPECT_EQ(answer(error, 1200).verdict, TooBigVerdict::not_allowed);
  const Bytes echo = make_icmp_query(ip("100.64.0.1"), ip("100.64.0.2"), 8, 7, 1, Bytes(1372, 0),
                                     Ipv4Options{.dont_fragment = true});
  EXPECT_EQ(answer(echo, 1200).verdict, TooBigVerdict::answered);  // ping -M do
  const Bytes later = make_udp(ep("100.64.0.1", 5000), ep("100.64.0.2", 6000), Bytes(1372, 0),
                               Ipv4Options{.fragment_offset = 100});
  EXPECT_EQ(answer(later, 1200).verdict, TooBigVerdict::not_allowed);
  const Bytes to_multicast = make_udp(ep("100.64.0.1", 5000), ep("224.0.0.251", 5353), Bytes(1372, 0),
                                      Ipv4Options{.dont_fragment = true});
  EXPECT_EQ(answer(to_multicast, 1200).verdict, TooBigVerdict::not_allowed);
}

bool icmpv6_checksum_ok(const Bytes& p) {
  const std::size_t length = load_be16(p.data() + 4);
  std::uint8_t pseudo[40] = {};
  std::memcpy(pseudo, p.data() + 8, 32);
  store_be32(pseudo + 32, static_cast<std::uint32_t>(length));
  pseudo[39] = 58;
  const std::uint64_t sum = checksum_accumulate(ByteSpan(p.data() + 40, length),
                                                checksum_accumulate(ByteSpan(pseudo, sizeof pseudo)));
  return checksum_fold(sum) == 0xffff;
}

TEST(TooBig, Ipv6GetsPacketTooBigQuotingWhatFitsIn1280) {
  const Bytes big = udp6(1352);
  ASSERT_EQ(big.size(), 1400u);
  const Answer a = answer(big, 1360);
  ASSERT_EQ(a.verdict, TooBigVerdict::answered);
  ASSERT_EQ(a.bytes.size(), 1280u);
  EXPECT_EQ(a.bytes[0] >> 4, 6);
  EXPECT_EQ(load_be16(a.bytes.data() + 4), 1280 - 40);
  EXPECT_EQ(a.bytes[6], 58);
  EXPECT_EQ(0, std::memcmp(a.bytes.data() + 8, big.data() + 24, 16));   // from the peer
  EXPECT_EQ(0, std::memcmp(a.bytes.data() + 24, big.data() + 8, 16));   // to the sender
  EXPECT_EQ(a.bytes[40], 2);
  EXPECT_EQ(a.bytes[41], 0);
  EXPECT_EQ(load_be32(a.bytes.data() + 44), 1360u);
  EXPECT_EQ(0, std::memcmp(a.bytes.data() + 48, big.data(), 1280 - 48));
  EXPECT_TRUE(icmpv6_checksum_ok(a.bytes));
  // A short packet is quoted whole; the MTU is never below IPv6's minimum.
  const Bytes small = udp6(100);
  const Answer b = answer(small, 1000);
  ASSERT_EQ(b.verdict, TooBigVerdict::answered);
  EXPECT_EQ(b.bytes.size(), 48u + small.size());
  EXPECT_EQ(load_be32(b.bytes.data() + 44), 1280u);
  EXPECT_TRUE(icmpv6_checksum_ok(b.bytes));
}

TEST(TooBig, Ipv6NoAnswerAboutErrorsLaterFragmentsOrMulticast) {
  Bytes error = udp6(1352, 58);
  error[40] = 1;  // destination unreachable
  EXPECT_EQ(answer(error, 1280).verdict, TooBigVerdict::not_allowed);
  Bytes echo = udp6(1352, 58);
  echo[40] = 128;
  EXPECT_EQ(answer(echo, 1280).verdict, TooBigVerdict::answered);
  Bytes later = udp6(1352, 44);
  store_be16(later.data() + 42, 8 * 10);  // fragment offset 10
  EXPECT_EQ(answer(later, 1280).verdict, TooBigVerdict::not_allowed);
  Bytes first = udp6(1352, 44);
  store_be16(first.data() + 42, 0x0001);  // offset 0, more fragments
  EXPECT_EQ(answer(first, 1280).verdict, TooBigVerdict::answered);
  EXPECT_EQ(answer(udp6(1352, 17, "ff02::1"), 1280).verdict, TooBigVerdict::not_allowed);
  EXPECT_EQ(answer(udp6(1352, 17, "::1"), 1280).verdict, TooBigVerdict::not_allowed);
}

TEST(TooBig, MalformedInputIsRefusedNeverRead) {
  EXPECT_EQ(answer(Bytes{}, 1280).verdict, TooBigVerdict::malformed);
  EXPECT_EQ(answer(Bytes{0x44, 0, 0}, 1280).verdict, TooBigVerdict::malformed);   // IHL 4
  EXPECT_EQ(answer(Bytes{0x4f, 0, 0, 0}, 1280).verdict, TooBigVerdict::malformed);  // 60 B header, 4 B
  EXPECT_EQ(answer(Bytes(39, 0x60), 1280).verdict, TooBigVerdict::malformed);
  EXPECT_EQ(answer(Bytes{0x20, 0}, 1280).verdict, TooBigVerdict::malformed);
  std::array<std::uint8_t, 100> small_out{};
  std::size_t size = 0;
  const Bytes big = udp6(1352);
  EXPECT_EQ(write_too_big(small_out, big, 1280, size), TooBigVerdict::malformed);
  // Random bytes: any verdict, never a read past the input (ASan checks) or a bad size.
  SeededRandom rng(7);
  for (int i = 0; i < 20000; ++i) {
    Bytes p(rng.uniform(1500), 0);
    rng.fill(p);
    if (!p.empty() && (i & 1)) p[0] = static_cast<std::uint8_t>((i & 2 ? 0x40 : 0x60) | (p[0] & 0x0f));
    const Answer a = answer(p, rng.uniform(2000));
    if (a.verdict == TooBigVerdict::answered) {
      EXPECT_LE(a.bytes.size(), kTooBigMaxSize);
    }
  }
}

TEST(TooBig, LimiterAllowsABurstThenTheRate) {
  TooBigLimiter limiter(50, 20);
  const Instant t0{};
  int allowed = 0;
  for (int i = 0; i < 100; ++i) allowed += limiter.allow(t0) ? 1 : 0;
  EXPECT_EQ(allowed, 20);
  EXPECT_FALSE(limiter.allow(t0 + std::chrono::milliseconds(10)));
  EXPECT_TRUE(limiter.allow(t0 + std::chrono::milliseconds(30)));  // 1.5 tokens back
  allowed = 0;
  for (int i = 0; i < 100; ++i) allowed += limiter.allow(t0 + std::chrono::seconds(10)) ? 1 : 0;
  EXPECT_EQ(allowed, 20);  // never more than the burst, however long the pause
}

}  // namespace
}  // namespace knit::nat
