// MSS clamping (nat/mss_clamp.hpp): a table of SYNs built by hand (IPv4 and IPv6, the option
// present or absent, at even and odd offsets, among other options), each checked against a
// full recomputation of the TCP checksum; malformed options left alone and counted.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "nat/checksum.hpp"
#include "nat/mss_clamp.hpp"

using namespace knit;
using namespace knit::nat;

namespace {

constexpr std::uint8_t kSyn = 0x02;
constexpr std::uint8_t kAck = 0x10;

std::uint16_t tcp_checksum(const Bytes& p, std::size_t tcp_at) {
  const std::size_t tcp_len = p.size() - tcp_at;
  std::uint64_t sum = 0;  // checksum_accumulate's own width
  if ((p[0] >> 4) == 4) {
    sum = pseudo_header_sum(load_be32(p.data() + 12), load_be32(p.data() + 16), 6,
                            static_cast<std::uint16_t>(tcp_len));
  } else {
    sum = checksum_accumulate(ByteSpan(p.data() + 8, 32));
    sum += tcp_len + 6;
  }
  Bytes tcp(p.begin() + static_cast<std::ptrdiff_t>(tcp_at), p.end());
  tcp[16] = tcp[17] = 0;
  return static_cast<std::uint16_t>(~checksum_fold(checksum_accumulate(tcp, sum)));
}

// A TCP segment with `options` (padded with zeros to a multiple of 4) and `payload`.
Bytes tcp_segment(std::uint8_t flags, const Bytes& options, std::size_t payload = 0) {
  Bytes opts = options;
  while (opts.size() % 4 != 0) opts.push_back(0);
  Bytes t(20 + opts.size() + payload, 0xab);
  store_be16(t.data(), 40000);
  store_be16(t.data() + 2, 443);
  store_be32(t.data() + 4, 0x11223344);
  store_be32(t.data() + 8, (flags & kAck) ? 0x55667788u : 0u);
  t[12] = static_cast<std::uint8_t>((20 + opts.size()) / 4 << 4);
  t[13] = flags;
  store_be16(t.data() + 14, 64240);
  t[16] = t[17] = 0;
  t[18] = t[19] = 0;
  std::copy(opts.begin(), opts.end(), t.begin() + 20);
  return t;
}

// Wraps a TCP segment in IPv4 (with `ip_options` bytes of NOPs) or IPv6 (with a hop-by-hop
// header when `extension`), and computes the TCP checksum.
Bytes wrap(int version, const Bytes& tcp, std::size_t ip_options = 0, bool extension = false) {
  Bytes p;
  if (version == 4) {
    const std::size_t ihl = 20 + ip_options;
    p.assign(ihl, 0);
    p[0] = static_cast<std::uint8_t>(0x40 | (ihl / 4));
    store_be16(p.data() + 2, static_cast<std::uint16_t>(ihl + tcp.size()));
    p[8] = 64;
    p[9] = 6;
    const std::uint8_t src[4] = {100, 64, 0, 1}, dst[4] = {100, 64, 0, 2};
    std::copy(src, src + 4, p.begin() + 12);
    std::copy(dst, dst + 4, p.begin() + 16);
    for (std::size_t i = 20; i < ihl; ++i) p[i] = 1;
    p.insert(p.end(), tcp.begin(), tcp.end());
    const std::uint16_t ipsum = internet_checksum(ByteSpan(p.data(), ihl));
    store_be16(p.data() + 10, ipsum);
    store_be16(p.data() + ihl + 16, tcp_checksum(p, ihl));
  } else {
    const std::size_t ext = extension ? 8 : 0;
    p.assign(40 + ext, 0);
    p[0] = 0x60;
    store_be16(p.data() + 4, static_cast<std::uint16_t>(ext + tcp.size()));
    p[6] = extension ? 0 : 6;
    p[7] = 64;
    p[8] = 0xfd;
    p[23] = 1;
    p[24] = 0xfd;
    p[39] = 2;
    if (extension) {
      p[40] = 6;  // next: TCP
      p[41] = 0;  // 8 bytes
      p[42] = 1;  // PadN
      p[43] = 4;
    }
    p.insert(p.end(), tcp.begin(), tcp.end());
    store_be16(p.data() + 40 + ext + 16, tcp_checksum(p, 40 + ext));
  }
  return p;
}

std::size_t tcp_at(const Bytes& p) {
  if ((p[0] >> 4) == 4) return static_cast<std::size_t>(p[0] & 0x0f) * 4;
  return p[6] == 6 ? 40 : 48;
}

Bytes mss_option(std::uint16_t mss) {
  return {2, 4, static_cast<std::uint8_t>(mss >> 8), static_cast<std::uint8_t>(mss)};
}

Bytes cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const Bytes& b : parts) out.insert(out.end(), b.begin(), b.end());
  return out;
}

struct Case {
  const char* name;
  int version;
  std::uint8_t flags;
  Bytes options;
  std::size_t mtu;
  MssOutcome expected;
  std::uint16_t mss_after;  // 0: no option to look at
  std::size_t ip_options = 0;
  bool extension = false;
  std::size_t payload = 0;
};

}  // namespace

TEST(MssClamp, Table) {
  const Bytes sack_ok = {4, 2};
  const Bytes wscale = {3, 3, 7};
  const Bytes ts = {8, 10, 1, 2, 3, 4, 0, 0, 0, 0};
  const std::vector<Case> cases = {
      // 1. the usual Linux SYN: MSS first; IPv4, MTU 1216 -> 1176
      {"v4 syn", 4, kSyn, cat({mss_option(1460), sack_ok, ts, {1}, wscale}), 1216, MssOutcome::clamped, 1176},
      // 2. the SYN-ACK too
      {"v4 syn-ack", 4, kSyn | kAck, cat({mss_option(1380), {1, 1}, sack_ok, {1}, wscale}), 1216, MssOutcome::clamped, 1176},
      // 3. after one NOP: the value sits at an odd offset (straddles two checksum words)
      {"v4 odd offset", 4, kSyn, cat({{1}, mss_option(1460), {1, 1, 1}}), 1300, MssOutcome::clamped, 1260},
      // 4. after other options, last
      {"v4 mss last", 4, kSyn, cat({ts, {1, 1}, mss_option(1460)}), 1280, MssOutcome::clamped, 1240},
      // 5. already small enough
      {"v4 fits", 4, kSyn, mss_option(1000), 1216, MssOutcome::fits, 1000},
      // 6. exactly the limit
      {"v4 equal", 4, kSyn, mss_option(1176), 1216, MssOutcome::fits, 1176},
      // 7. no MSS option
      {"v4 no option", 4, kSyn, cat({sack_ok, {1, 1}}), 1216, MssOutcome::no_option, 0},
      // 8. not a SYN: never touched, whatever it carries
      {"v4 ack", 4, kAck, mss_option(1460), 1216, MssOutcome::not_syn, 1460},
      // 9. IPv4 options do not change the limit (RFC 6691)
      {"v4 ip options", 4, kSyn, mss_option(1460), 1216, MssOutcome::clamped, 1176, 8},
      // 10. IPv6: MTU - 60
      {"v6 syn", 6, kSyn, cat({mss_option(1440), sack_ok, ts, {1}, wscale}), 1200, MssOutcome::clamped, 1140},
      // 11. IPv6 odd offset, SYN-ACK
      {"v6 odd syn-ack", 6, kSyn | kAck, cat({{1}, mss_option(1440), {1, 1, 1}}), 1216, MssOutcome::clamped, 1156},
      // 12. IPv6 behind a hop-by-hop header
      {"v6 hop-by-hop", 6, kSyn, mss_option(1440), 1280, MssOutcome::clamped, 1220, 0, true},
      // 13. IPv6 already fits
      {"v6 fits", 6, kSyn, mss_option(1200), 1420, MssOutcome::fits, 1200},
      // 14. a SYN with data (TFO): the checksum covers it, and an odd length
      {"v4 syn data", 4, kSyn, cat({mss_option(1460), sack_ok}), 1216, MssOutcome::clamped, 1176, 0, false, 33},
      // 15. the end-of-list option stops the walk before a later MSS
      {"v4 after eol", 4, kSyn, cat({{0, 0, 0, 0}, mss_option(1460)}), 1216, MssOutcome::no_option, 0},
      // 16. MTU 0: leave alone
      {"v4 no mtu", 4, kSyn, mss_option(1460), 0, MssOutcome::fits, 1460},
  };
  int n = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message() << ++n << ". " << c.name);
    Bytes p = wrap(c.version, tcp_segment(c.flags, c.options, c.payload), c.ip_options, c.extension);
    const Bytes before = p;
    MssClamp clamp;
    std::uint8_t seen_version = 0;
    const MssOutcome got = clamp.clamp(p, [&](const MssOption& o) {
      seen_version = o.ip_version;
      return c.mtu;
    });
    EXPECT_EQ(to_string(got), std::string(to_string(c.expected)));
    const std::size_t t = tcp_at(p);
    EXPECT_EQ(load_be16(p.data() + t + 16), tcp_checksum(p, t)) << "the checksum must stay right";
    if (c.mss_after != 0) {
      MssOption o;
      if (c.expected != MssOutcome::not_syn) {
        ASSERT_EQ(find_syn_mss(p, o), MssOutcome::fits);
        EXPECT_EQ(o.value, c.mss_after);
        EXPECT_EQ(seen_version, c.version);
      }
    }
    if (got != MssOutcome::clamped) {
      EXPECT_EQ(p, before) << "only a clamp changes bytes";
    }
    EXPECT_EQ(clamp.stats().clamped, got == MssOutcome::clamped ? 1u : 0u);
  }
}

TEST(MssClamp, EveryOffsetAndValueKeepsTheChecksum) {
  // The option after 0..3 NOPs, every MTU from 1200 to 1500: a differential against a full
  // recomputation, both IP versions.
  for (int version : {4, 6}) {
    for (std::size_t nops = 0; nops < 4; ++nops) {
      for (std::size_t mtu = 1200; mtu <= 1500; mtu += 7) {
        Bytes options(nops, 1);
        const Bytes m = mss_option(static_cast<std::uint16_t>(1460 - nops));
        options.insert(options.end(), m.begin(), m.end());
        Bytes p = wrap(version, tcp_segment(kSyn, options, nops));
        MssClamp clamp;
        clamp.clamp(p, [&](const MssOption&) { return mtu; });
        const std::size_t t = tcp_at(p);
        ASSERT_EQ(load_be16(p.data() + t + 16), tcp_checksum(p, t)) << version << " " << nops << " " << mtu;
      }
    }
  }
}

TEST(MssClamp, PartialChecksumIsLeftForWhoeverCompletesIt) {
  Bytes p = wrap(4, tcp_segment(kSyn, mss_option(1460)));
  const std::size_t t = tcp_at(p);
  // A NEEDS_CSUM packet: the field holds some partial sum; a clamp must not touch it.
  store_be16(p.data() + t + 16, 0x1234);
  MssClamp clamp;
  EXPECT_EQ(clamp.clamp(p, [](const MssOption&) { return std::size_t{1216}; }, true), MssOutcome::clamped);
  EXPECT_EQ(load_be16(p.data() + t + 16), 0x1234);
  MssOption o;
  ASSERT_EQ(find_syn_mss(p, o), MssOutcome::fits);
  EXPECT_EQ(o.value, 1176);
}

TEST(MssClamp, MalformedIsLeftAloneAndCounted) {
  struct Bad {
    const char* name;
    Bytes options;
  };
  const std::vector<Bad> bad = {
      {"length 0", {3, 0, 0, 0}},
      {"length 1", {3, 1, 0, 0}},
      {"runs past the header", {1, 1, 8, 10, 0, 0}},
      {"mss length 3", {2, 3, 5, 0}},
      {"mss length 6", {2, 6, 5, 0, 0, 0}},
      {"kind without length at the end", {1, 1, 1, 2}},
  };
  MssClamp clamp;
  for (const Bad& b : bad) {
    SCOPED_TRACE(b.name);
    Bytes p = wrap(4, tcp_segment(kSyn, b.options));
    const Bytes before = p;
    bool asked = false;
    EXPECT_EQ(clamp.clamp(p, [&](const MssOption&) {
      asked = true;
      return std::size_t{1216};
    }), MssOutcome::malformed);
    EXPECT_FALSE(asked);
    EXPECT_EQ(p, before);
  }
  EXPECT_EQ(clamp.stats().malformed, bad.size());
  EXPECT_EQ(clamp.stats().clamped, 0u);

  // Broken headers: data offset below 5 or past the packet, lengths past the buffer, truncation.
  Bytes p = wrap(4, tcp_segment(kSyn, mss_option(1460)));
  Bytes low = p;
  low[20 + 12] = 0x40;
  Bytes high = p;
  high[20 + 12] = 0xf0;
  Bytes total = p;
  store_be16(total.data() + 2, 2000);
  Bytes ihl = p;
  ihl[0] = 0x44;
  Bytes v6 = wrap(6, tcp_segment(kSyn, mss_option(1460)));
  Bytes v6_ext = wrap(6, tcp_segment(kSyn, mss_option(1460)), 0, true);
  v6_ext[41] = 200;  // the hop-by-hop header claims more than there is
  for (Bytes* q : {&low, &high, &total, &ihl, &v6_ext}) {
    const Bytes before = *q;
    EXPECT_EQ(clamp.clamp(*q, [](const MssOption&) { return std::size_t{1216}; }), MssOutcome::malformed);
    EXPECT_EQ(*q, before);
  }
  for (std::size_t cut = 0; cut < p.size(); ++cut) {
    Bytes q(p.begin(), p.begin() + static_cast<std::ptrdiff_t>(cut));
    MssClamp c;
    const MssOutcome got = c.clamp(q, [](const MssOption&) { return std::size_t{1216}; });
    EXPECT_NE(got, MssOutcome::clamped) << cut;
  }
  for (std::size_t cut = 0; cut < v6.size(); ++cut) {
    Bytes q(v6.begin(), v6.begin() + static_cast<std::ptrdiff_t>(cut));
    MssClamp c;
    EXPECT_NE(c.clamp(q, [](const MssOption&) { return std::size_t{1216}; }), MssOutcome::clamped) << cut;
  }
}

TEST(MssClamp, FragmentsAndOtherProtocolsAreNotTouched) {
  Bytes p = wrap(4, tcp_segment(kSyn, mss_option(1460)));
  Bytes frag = p;
  store_be16(frag.data() + 6, 0x0010);  // offset 128 bytes
  Bytes udp = p;
  udp[9] = 17;
  MssClamp clamp;
  for (Bytes* q : {&frag, &udp}) {
    const Bytes before = *q;
    EXPECT_EQ(clamp.clamp(*q, [](const MssOption&) { return std::size_t{1216}; }), MssOutcome::not_syn);
    EXPECT_EQ(*q, before);
  }
  EXPECT_EQ(clamp.stats().syns_seen, 0u);
}

TEST(MssClamp, LimitsByVersion) {
  EXPECT_EQ(max_mss_for_mtu(1420, 4), 1380);
  EXPECT_EQ(max_mss_for_mtu(1420, 6), 1360);
  EXPECT_EQ(max_mss_for_mtu(1216, 4), 1176);
  EXPECT_EQ(max_mss_for_mtu(40, 4), 0);
  EXPECT_EQ(max_mss_for_mtu(60, 6), 0);
}
