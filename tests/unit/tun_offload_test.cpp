// The TUN offload core (tun/offload.hpp) against a deliberately naive reference: packets are
// built field by field and checksummed 16 bits at a time, super-packets are split by building
// every expected segment from scratch, and the coalescer's grouping is compared with a plain
// model written from parsed fields. Random flows, IPv4 options, IPv6 extension headers, and
// the flags and ECN marks that must never be merged across.
#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <vector>

#include "tun/offload.hpp"

namespace knit::tun {
namespace {

using Packet = std::vector<std::uint8_t>;

std::uint16_t naive_checksum(const Packet& bytes, std::size_t from, std::uint32_t sum) {
  for (std::size_t i = from; i < bytes.size(); i += 2) {
    std::uint32_t word = std::uint32_t{bytes[i]} << 8;
    if (i + 1 < bytes.size()) word |= bytes[i + 1];
    sum += word;
    while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  }
  return static_cast<std::uint16_t>(~sum);
}

struct Spec {
  int version = 4;
  std::uint8_t protocol = 6;
  std::uint8_t src = 1, dst = 2;  // last address byte
  std::uint16_t sport = 40000, dport = 5201;
  std::uint32_t seq = 1000, ack = 77;
  std::uint8_t flags = 0x10;
  std::uint16_t window = 502;
  std::vector<std::uint8_t> tcp_options;  // multiple of 4
  std::vector<std::uint8_t> ip_options;   // IPv4, multiple of 4
  int v6_extensions = 0;                  // hop-by-hop + destination options headers
  std::uint8_t tos = 0;
  std::uint8_t ttl = 64;
  std::uint16_t id = 100;
  std::vector<std::uint8_t> payload;
};

// Builds the packet one field at a time, with correct lengths and checksums.
Packet build(const Spec& s) {
  Packet p;
  auto put16 = [&](std::uint16_t v) { p.push_back(static_cast<std::uint8_t>(v >> 8)); p.push_back(static_cast<std::uint8_t>(v)); };
  auto put32 = [&](std::uint32_t v) { put16(static_cast<std::uint16_t>(v >> 16)); put16(static_cast<std::uint16_t>(v)); };
  const std::size_t l4 = s.protocol == 6 ? 20 + s.tcp_options.size() : 8;
  const std::size_t l4_total = l4 + s.payload.size();
  std::vector<std::uint8_t> src, dst;
  std::size_t ip_header;
  if (s.version == 4) {
    ip_header = 20 + s.ip_options.size();
    p.push_back(static_cast<std::uint8_t>(0x40 | (ip_header / 4)));
    p.push_back(s.tos);
    put16(static_cast<std::uint16_t>(ip_header + l4_total));
    put16(s.id);
    put16(0x4000);  // DF
    p.push_back(s.ttl);
    p.push_back(s.protocol);
    put16(0);
    src = {10, 0, 0, s.src};
    dst = {10, 0, 0, s.dst};
    p.insert(p.end(), src.begin(), src.end());
    p.insert(p.end(), dst.begin(), dst.end());
    p.insert(p.end(), s.ip_options.begin(), s.ip_options.end());
    Packet header(p.begin(), p.end());
    const std::uint16_t c = naive_checksum(header, 0, 0);
    p[10] = static_cast<std::uint8_t>(c >> 8);
    p[11] = static_cast<std::uint8_t>(c);
  } else {
    const std::size_t ext = static_cast<std::size_t>(s.v6_extensions) * 8;
    ip_header = 40 + ext;
    put32(0x60000000u | (std::uint32_t{s.tos} << 20) | 0x12345u);
    put16(static_cast<std::uint16_t>(ext + l4_total));
    p.push_back(s.v6_extensions > 0 ? 0 : s.protocol);
    p.push_back(s.ttl);
    src.assign(16, 0);
    dst.assign(16, 0);
    src[0] = dst[0] = 0xfd;
    src[15] = s.src;
    dst[15] = s.dst;
    p.insert(p.end(), src.begin(), src.end());
    p.insert(p.end(), dst.begin(), dst.end());
    for (int i = 0; i < s.v6_extensions; ++i) {
      const bool last = i + 1 == s.v6_extensions;
      p.push_back(last ? s.protocol : 60);
      p.push_back(0);  // 8 bytes
      for (int j = 0; j < 6; ++j) p.push_back(j == 0 ? 1 : 0);  // PadN option
    }
  }
  const std::size_t t = p.size();
  put16(s.sport);
  put16(s.dport);
  if (s.protocol == 6) {
    put32(s.seq);
    put32(s.ack);
    p.push_back(static_cast<std::uint8_t>((l4 / 4) << 4));
    p.push_back(s.flags);
    put16(s.window);
    put16(0);
    put16(0);
    p.insert(p.end(), s.tcp_options.begin(), s.tcp_options.end());
  } else {
    put16(static_cast<std::uint16_t>(l4_total));
    put16(0);
  }
  p.insert(p.end(), s.payload.begin(), s.payload.end());
  std::uint32_t sum = 0;
  for (std::size_t i = 0; i < src.size(); i += 2) sum += (src[i] << 8) | src[i + 1];
  for (std::size_t i = 0; i < dst.size(); i += 2) sum += (dst[i] << 8) | dst[i + 1];
  sum += s.protocol;
  sum += static_cast<std::uint32_t>(l4_total >> 16) + static_cast<std::uint32_t>(l4_total & 0xffff);
  std::uint16_t c = naive_checksum(p, t, sum);
  if (s.protocol == 17 && c == 0) c = 0xffff;
  const std::size_t field = t + (s.protocol == 6 ? 16 : 6);
  p[field] = static_cast<std::uint8_t>(c >> 8);
  p[field + 1] = static_cast<std::uint8_t>(c);
  (void)ip_header;
  return p;
}

std::vector<std::uint8_t> random_bytes(std::mt19937& rng, std::size_t n) {
  std::vector<std::uint8_t> v(n);
  for (auto& b : v) b = static_cast<std::uint8_t>(rng());
  return v;
}

std::vector<Packet> split(const VirtioNetHeader& h, const Packet& super, OffloadError* error = nullptr) {
  Segmenter s;
  std::vector<Packet> out;
  OffloadError e = s.start(h, super);
  if (e == OffloadError::ok) {
    Packet buffer(70000);
    for (;;) {
      const std::size_t n = s.next(buffer);
      if (n == 0) break;
      out.emplace_back(buffer.begin(), buffer.begin() + static_cast<std::ptrdiff_t>(n));
    }
    e = s.error();
  }
  if (error) *error = e;
  return out;
}

// ---------------------------------------------------------------- checksums

TEST(TunOffload, ChecksumMatchesTheNaiveSumAtEveryLength) {
  std::mt19937 rng(1);
  for (std::size_t n = 0; n < 300; ++n) {
    const Packet data = random_bytes(rng, n);
    EXPECT_EQ(static_cast<std::uint16_t>(~checksum_fold(checksum_accumulate(data))), naive_checksum(data, 0, 0)) << n;
  }
}

TEST(TunOffload, VirtioHeaderRoundTripsLittleEndian) {
  VirtioNetHeader h{1, 4, 0x0102, 1448, 40, 16};
  std::uint8_t b[kVirtioNetHeaderSize];
  h.write(b);
  EXPECT_EQ(b[2], 0x02);
  EXPECT_EQ(b[3], 0x01);
  const VirtioNetHeader back = VirtioNetHeader::parse(b);
  EXPECT_EQ(back.gso_size, 1448);
  EXPECT_EQ(back.csum_start, 40);
  EXPECT_EQ(back.hdr_len, 0x0102);
}

// ---------------------------------------------------------------- splitting

struct SplitCase {
  Spec spec;
  std::uint16_t gso_size;
};

SplitCase random_super_packet(std::mt19937& rng, std::uint8_t protocol) {
  SplitCase c;
  Spec& s = c.spec;
  s.version = rng() % 2 ? 4 : 6;
  s.protocol = protocol;
  s.seq = static_cast<std::uint32_t>(rng());  // wraps around sometimes
  s.ack = static_cast<std::uint32_t>(rng());
  s.id = static_cast<std::uint16_t>(rng());    // wraps around sometimes
  s.tos = static_cast<std::uint8_t>(rng() % 4 == 0 ? 0x03 : rng() % 4);  // ECN bits too
  const std::uint8_t flag_choices[] = {0x10, 0x18, 0x19, 0x90, 0xd0, 0x98};
  s.flags = flag_choices[rng() % 6];
  if (rng() % 2) s.tcp_options = {1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8};  // NOP NOP timestamps
  if (s.version == 4 && rng() % 3 == 0) s.ip_options.assign(4 * (1 + rng() % 9), 1);  // NOPs
  if (s.version == 6) s.v6_extensions = static_cast<int>(rng() % 3);
  c.gso_size = static_cast<std::uint16_t>(100 + rng() % 1400);
  const std::size_t headers = (s.version == 4 ? 20 + s.ip_options.size() : 40 + 8 * s.v6_extensions) +
                              (protocol == 6 ? 20 + s.tcp_options.size() : 8);
  s.payload = random_bytes(rng, 1 + rng() % (65535 - headers));
  return c;
}

TEST(TunOffload, SplittingMatchesSegmentsBuiltFromScratch) {
  std::mt19937 rng(7);
  for (int round = 0; round < 300; ++round) {
    const std::uint8_t protocol = round % 3 == 0 ? 17 : 6;
    const SplitCase c = random_super_packet(rng, protocol);
    Packet super = build(c.spec);
    // As the kernel hands it over: the checksum field holds only the pseudo-header sum.
    VirtioNetHeader h;
    h.flags = VirtioNetHeader::kNeedsCsum;
    h.gso_type = protocol == 17 ? VirtioNetHeader::kGsoUdpL4
                                : (c.spec.version == 4 ? VirtioNetHeader::kGsoTcpV4 : VirtioNetHeader::kGsoTcpV6);
    h.gso_size = c.gso_size;
    const auto layout = transport_layout(super);
    ASSERT_TRUE(layout);
    h.csum_start = static_cast<std::uint16_t>(layout->ip_header);
    h.csum_offset = protocol == 6 ? 16 : 6;
    super[h.csum_start + h.csum_offset] = 0x5a;  // garbage: the splitter must recompute

    OffloadError error;
    const std::vector<Packet> got = split(h, super, &error);
    ASSERT_EQ(error, OffloadError::ok);

    std::vector<Packet> want;
    const std::size_t n = c.spec.payload.size();
    for (std::size_t off = 0, i = 0; off < n; off += c.gso_size, ++i) {
      Spec s = c.spec;
      const std::size_t len = std::min<std::size_t>(c.gso_size, n - off);
      s.payload.assign(c.spec.payload.begin() + static_cast<std::ptrdiff_t>(off),
                       c.spec.payload.begin() + static_cast<std::ptrdiff_t>(off + len));
      s.seq = c.spec.seq + static_cast<std::uint32_t>(off);
      s.id = static_cast<std::uint16_t>(c.spec.id + i);
      const bool first = off == 0, last = off + len == n;
      if (!last) s.flags &= static_cast<std::uint8_t>(~0x09);  // FIN, PSH
      if (!first) s.flags &= static_cast<std::uint8_t>(~0x80);  // CWR
      want.push_back(build(s));
    }
    ASSERT_EQ(got.size(), want.size()) << "round " << round;
    for (std::size_t i = 0; i < got.size(); ++i) ASSERT_EQ(got[i], want[i]) << "round " << round << " segment " << i;
  }
}

TEST(TunOffload, APartialChecksumIsCompleted) {
  std::mt19937 rng(3);
  for (int round = 0; round < 100; ++round) {
    Spec s;
    s.version = round % 2 ? 4 : 6;
    s.protocol = round % 3 ? 6 : 17;
    s.payload = random_bytes(rng, rng() % 1400);
    const Packet want = build(s);
    Packet partial = want;
    const auto layout = transport_layout(partial);
    ASSERT_TRUE(layout);
    const std::size_t field = layout->ip_header + (s.protocol == 6 ? 16 : 6);
    // The pseudo-header sum, folded, as the kernel leaves it.
    const std::size_t addr = s.version == 4 ? 12 : 8, alen = s.version == 4 ? 4 : 16;
    const std::uint16_t pseudo = checksum_fold(pseudo_header_sum(
        ByteSpan(partial).subspan(addr, alen), ByteSpan(partial).subspan(addr + alen, alen), s.protocol,
        static_cast<std::uint32_t>(partial.size() - layout->ip_header)));
    partial[field] = static_cast<std::uint8_t>(pseudo >> 8);
    partial[field + 1] = static_cast<std::uint8_t>(pseudo);
    VirtioNetHeader h;
    h.flags = VirtioNetHeader::kNeedsCsum;
    h.csum_start = static_cast<std::uint16_t>(layout->ip_header);
    h.csum_offset = s.protocol == 6 ? 16 : 6;
    const std::vector<Packet> got = split(h, partial);
    ASSERT_EQ(got.size(), 1u);
    // 0x0000 and 0xffff are the same one's-complement value: compare by verifying.
    Packet a = got[0], b = want;
    a[field] = a[field + 1] = b[field] = b[field + 1] = 0;
    EXPECT_EQ(a, b);
    const std::uint16_t got_c = static_cast<std::uint16_t>((got[0][field] << 8) | got[0][field + 1]);
    const std::uint16_t want_c = static_cast<std::uint16_t>((want[field] << 8) | want[field + 1]);
    EXPECT_TRUE(got_c == want_c || (got_c == 0xffff && want_c == 0)) << round;
  }
}

TEST(TunOffload, HostileHeadersAreRefusedNotTrusted) {
  std::mt19937 rng(11);
  Packet buffer(2000);
  for (int round = 0; round < 20000; ++round) {
    Packet p = random_bytes(rng, rng() % 200);
    if (!p.empty()) p[0] = static_cast<std::uint8_t>((rng() % 2 ? 0x40 : 0x60) | (p[0] & 0x0f));
    VirtioNetHeader h;
    h.flags = static_cast<std::uint8_t>(rng() % 2);
    const std::uint8_t types[] = {0, 1, 4, 5, 3, 0x81};
    h.gso_type = types[rng() % 6];
    h.gso_size = static_cast<std::uint16_t>(rng() % 3 == 0 ? 0 : rng() % 2000);
    h.csum_start = static_cast<std::uint16_t>(rng() % 300);
    h.csum_offset = static_cast<std::uint16_t>(rng() % 300);
    Segmenter s;
    if (s.start(h, p) != OffloadError::ok) continue;
    for (int i = 0; i < 70000 && s.next(buffer) > 0; ++i) {
    }
  }
  SUCCEED();
}

TEST(TunOffload, ASegmentLargerThanTheBufferIsReported) {
  Spec s;
  s.payload.assign(3000, 7);
  const Packet super = build(s);
  VirtioNetHeader h;
  h.gso_type = VirtioNetHeader::kGsoTcpV4;
  h.gso_size = 1400;
  Segmenter seg;
  ASSERT_EQ(seg.start(h, super), OffloadError::ok);
  Packet small(1000);
  EXPECT_EQ(seg.next(small), 0u);
  EXPECT_EQ(seg.error(), OffloadError::too_small);
}

// ---------------------------------------------------------------- coalescing

struct Recorder final : CoalescedSink {
  struct Written {
    VirtioNetHeader header;
    Packet bytes;
  };
  std::vector<Written> out;
  void write_coalesced(const VirtioNetHeader& h, ByteSpan p) override { out.push_back({h, Packet(p.begin(), p.end())}); }
};

// One segment, parsed back into the fields the naive model looks at.
struct Seg {
  Spec spec;
  Packet bytes;
  bool bad_checksum = false;
};

bool naive_holdable(const Seg& s) {
  return s.spec.protocol == 6 && s.spec.ip_options.empty() && s.spec.v6_extensions == 0 &&
         (s.spec.flags == 0x10 || s.spec.flags == 0x18) && !s.spec.payload.empty() && !s.bad_checksum;
}

bool naive_same_flow(const Spec& a, const Spec& b) {
  return a.version == b.version && a.src == b.src && a.dst == b.dst && a.sport == b.sport && a.dport == b.dport;
}

struct Group {
  std::vector<Seg> segs;
};

bool naive_joins(const Group& g, const Seg& s) {
  const Spec& first = g.segs.front().spec;
  const Spec& last = g.segs.back().spec;
  std::size_t total = g.segs.front().bytes.size();
  for (std::size_t i = 1; i < g.segs.size(); ++i) total += g.segs[i].spec.payload.size();
  if (last.flags & 0x08) return false;                                   // PSH closed it
  if (last.payload.size() < first.payload.size()) return false;          // a short one closed it
  if (total + first.payload.size() > 65535) return false;                // no room for another
  return s.spec.tos == first.tos && s.spec.ttl == first.ttl && s.spec.ack == first.ack &&
         s.spec.window == first.window && s.spec.tcp_options == first.tcp_options &&
         s.spec.seq == last.seq + last.payload.size() &&
         (s.spec.version == 6 || s.spec.id == static_cast<std::uint16_t>(last.id + 1)) &&
         s.spec.payload.size() <= first.payload.size() && total + s.spec.payload.size() <= 65535;
}

// The model: groups of packets, written in the order the coalescer promises.
std::vector<std::vector<Packet>> naive_coalesce(const std::vector<Seg>& input) {
  std::vector<std::vector<Packet>> out;
  std::vector<Group> held;
  auto emit = [&](const Group& g) {
    std::vector<Packet> v;
    for (const Seg& s : g.segs) v.push_back(s.bytes);
    out.push_back(v);
  };
  for (const Seg& s : input) {
    if (!naive_holdable(s)) {
      for (const Group& g : held) emit(g);
      held.clear();
      out.push_back({s.bytes});
      continue;
    }
    bool done = false;
    for (std::size_t i = 0; i < held.size(); ++i) {
      if (!naive_same_flow(held[i].segs.front().spec, s.spec)) continue;
      if (naive_joins(held[i], s)) {
        held[i].segs.push_back(s);
        done = true;
      } else {
        emit(held[i]);
        held.erase(held.begin() + static_cast<std::ptrdiff_t>(i));
      }
      break;
    }
    if (done) continue;
    if (held.size() == TcpCoalescer::kMaxFlows) {
      for (const Group& g : held) emit(g);
      held.clear();
    }
    held.push_back({{s}});
  }
  for (const Group& g : held) emit(g);
  return out;
}

std::vector<Seg> random_traffic(std::mt19937& rng, int flows, int packets) {
  std::vector<Spec> state(static_cast<std::size_t>(flows));
  for (int f = 0; f < flows; ++f) {
    Spec& s = state[static_cast<std::size_t>(f)];
    s.version = rng() % 2 ? 4 : 6;
    s.src = static_cast<std::uint8_t>(1 + f);
    s.sport = static_cast<std::uint16_t>(40000 + f);
    s.seq = static_cast<std::uint32_t>(rng());
    s.id = static_cast<std::uint16_t>(rng());
    if (rng() % 2) s.tcp_options = {1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2};
  }
  const std::size_t mss = 1200 + rng() % 200;
  std::vector<Seg> out;
  for (int i = 0; i < packets; ++i) {
    Spec& flow = state[rng() % state.size()];
    Spec s = flow;
    s.flags = 0x10;
    std::size_t len = mss;
    bool bad = false;
    switch (rng() % 24) {
      case 0: s.flags = 0x18; break;                        // PSH
      case 1: s.flags = 0x90; break;                        // CWR
      case 2: s.flags = 0x50; break;                        // ECE
      case 3: s.flags = 0x11; break;                        // FIN
      case 4: s.tos = 0x03; break;                          // CE marked
      case 5: len = rng() % mss; break;                     // short (or a pure ACK)
      case 6: s.seq += 1000; flow.seq += 1000; break;       // a gap
      case 7: s.id = static_cast<std::uint16_t>(s.id + 5); flow.id = s.id; break;
      case 8: s.ack += 1; flow.ack += 1; break;             // the ACK number moves on
      case 9: if (s.version == 4) s.ip_options = {1, 1, 1, 0}; else s.v6_extensions = 1; break;
      case 10: if (!s.tcp_options.empty()) { s.tcp_options[11]++; flow.tcp_options[11]++; } break;
      case 11: bad = true; break;
      case 12: s.protocol = 17; break;                      // UDP in between
      case 13: s.window = static_cast<std::uint16_t>(s.window + 1); flow.window = s.window; break;
      default: break;
    }
    s.payload = random_bytes(rng, len);
    Seg seg{s, build(s), bad};
    if (bad) seg.bytes.back() ^= 0x55;
    out.push_back(seg);
    if (s.protocol == 6) {
      flow.seq += static_cast<std::uint32_t>(len) + ((s.flags & 0x01) ? 1 : 0);
      flow.id = static_cast<std::uint16_t>(flow.id + 1);
    }
  }
  return out;
}

TEST(TunOffload, CoalescingMatchesTheNaiveModelAndSplitsBackExactly) {
  std::mt19937 rng(5);
  std::uint64_t merged = 0;
  for (int round = 0; round < 200; ++round) {
    const std::vector<Seg> input = random_traffic(rng, 1 + static_cast<int>(rng() % 10), 200);
    TcpCoalescer coalescer;
    Recorder rec;
    for (const Seg& s : input) coalescer.add(s.bytes, rec);
    coalescer.flush(rec);
    EXPECT_TRUE(coalescer.empty());

    const auto want = naive_coalesce(input);
    ASSERT_EQ(rec.out.size(), want.size()) << "round " << round;
    for (std::size_t i = 0; i < want.size(); ++i) {
      const auto& w = rec.out[i];
      if (want[i].size() == 1) {
        EXPECT_EQ(w.header.gso_type, VirtioNetHeader::kGsoNone);
        ASSERT_EQ(w.bytes, want[i][0]) << "round " << round << " output " << i;
        continue;
      }
      merged += want[i].size() - 1;
      ASSERT_NE(w.header.gso_type, VirtioNetHeader::kGsoNone);
      const std::vector<Packet> back = split(w.header, w.bytes);
      ASSERT_EQ(back, want[i]) << "round " << round << " output " << i;
    }
  }
  EXPECT_GT(merged, 1000u);  // the random traffic does exercise merging
}

TEST(TunOffload, ACoalescedPacketCarriesAPartialChecksumTheKernelCanFinish) {
  Spec s;
  s.flags = 0x10;
  TcpCoalescer coalescer;
  Recorder rec;
  for (int i = 0; i < 3; ++i) {
    s.payload.assign(1000, static_cast<std::uint8_t>(i));
    coalescer.add(build(s), rec);
    s.seq += 1000;
    ++s.id;
  }
  coalescer.flush(rec);
  ASSERT_EQ(rec.out.size(), 1u);
  const auto& w = rec.out[0];
  EXPECT_EQ(w.header.flags, VirtioNetHeader::kNeedsCsum);
  EXPECT_EQ(w.header.gso_type, VirtioNetHeader::kGsoTcpV4);
  EXPECT_EQ(w.header.gso_size, 1000);
  EXPECT_EQ(w.header.hdr_len, 40);
  EXPECT_EQ(w.header.csum_start, 20);
  EXPECT_EQ(w.header.csum_offset, 16);
  EXPECT_EQ(w.bytes.size(), 3040u);
  // Finishing the checksum over the whole super-packet gives a valid TCP checksum.
  Packet done = w.bytes;
  ASSERT_EQ(complete_checksum(VirtioNetHeader{VirtioNetHeader::kNeedsCsum, 0, 0, 0, 20, 16}, done), OffloadError::ok);
  std::uint64_t sum = pseudo_header_sum(ByteSpan(done).subspan(12, 4), ByteSpan(done).subspan(16, 4), 6, 3020);
  EXPECT_EQ(checksum_fold(checksum_accumulate(ByteSpan(done).subspan(20), sum)), 0xffff);
  EXPECT_EQ(naive_checksum(Packet(done.begin(), done.begin() + 20), 0, 0), 0);  // IPv4 header
}

}  // namespace
}  // namespace knit::tun
