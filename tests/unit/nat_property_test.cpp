// Properties over random traffic from SeededRandom:
//  - every reply to a translated flow comes back to exactly its origin, checksums intact;
//  - the mapping behaviour holds for every flow, and no external (proto, address, port) is
//    shared by two internal endpoints (a reply could never be ambiguous);
//  - the table never exceeds its bounds while flows churn and expire;
// and a fuzz loop throwing random and mutated packets both ways: no crash, sane verdicts,
// valid headers on everything forwarded, and counters that add up.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <tuple>

#include "base/random.hpp"
#include "nat/checksum.hpp"
#include "nat/nat_engine.hpp"
#include "nat/packet_builder.hpp"
#include "nat/wire.hpp"
#include "tests/support/nat_combinations.hpp"

namespace knit::nat {
namespace {

using namespace std::chrono_literals;

const IpAddress kPool[] = {IpAddress::parse("203.0.113.1").value(), IpAddress::parse("203.0.113.2").value()};

struct Flow {
  std::uint8_t protocol;  // kProto*
  Endpoint internal;
  Endpoint remote;  // port 0 for ICMP
  auto key() const { return std::tie(protocol, internal, remote); }
  bool operator<(const Flow& o) const { return key() < o.key(); }
};

Bytes outbound_packet(const Flow& f, bool first) {
  switch (f.protocol) {
    case kProtoTcp: return make_tcp(f.internal, f.remote, first ? kTcpSyn : kTcpAck, Bytes(8, 1));
    case kProtoIcmp:
      return make_icmp_query(f.internal.address(), f.remote.address(), kIcmpEchoRequest,
                             f.internal.port(), 1, Bytes(16, 2));
    default: return make_udp(f.internal, f.remote, Bytes(12, 3));
  }
}

Bytes reply_packet(const Flow& f, const Endpoint& external) {
  switch (f.protocol) {
    case kProtoTcp: return make_tcp(f.remote, external, kTcpSyn | kTcpAck, Bytes(8, 4));
    case kProtoIcmp:
      return make_icmp_query(f.remote.address(), external.address(), kIcmpEchoReply,
                             external.port(), 1, Bytes(16, 5));
    default: return make_udp(f.remote, external, Bytes(12, 6));
  }
}

Flow random_flow(Random& rng, std::uint32_t hosts, std::uint32_t remotes) {
  static const std::uint8_t kProtocols[] = {kProtoUdp, kProtoUdp, kProtoTcp, kProtoIcmp};
  Flow f;
  f.protocol = kProtocols[rng.uniform(4)];
  // A few ports per host, some shared across hosts so clashes are common; some well-known.
  const std::uint16_t ports[] = {53, 500, 4500, 5000, 41641, 50000};
  const std::uint16_t port = rng.uniform(3) == 0
                                 ? ports[rng.uniform(6)]
                                 : static_cast<std::uint16_t>(1024 + rng.uniform(60000));
  f.internal = Endpoint(IpAddress::v4(0x0a000000 + 1 + rng.uniform(hosts)), port);
  const std::uint16_t remote_port =
      f.protocol == kProtoIcmp
          ? 0
          : static_cast<std::uint16_t>(1 + rng.uniform(3) * 1000 + rng.uniform(3));
  f.remote = Endpoint(IpAddress::v4(0xc6336400 + rng.uniform(remotes)), remote_port);
  return f;
}

// The mapping key a behaviour implies for a flow.
std::tuple<std::uint8_t, Endpoint, IpAddress, std::uint16_t> mapping_key(Mapping m, const Flow& f) {
  const IpAddress y = m == Mapping::endpoint_independent ? IpAddress() : f.remote.address();
  const std::uint16_t port = m == Mapping::address_and_port_dependent ? f.remote.port() : 0;
  return {f.protocol, f.internal, y, port};
}

using Combination = knit::testing::NatCombination;
class NatProperty : public ::testing::TestWithParam<Combination> {};

TEST_P(NatProperty, RepliesReturnToTheirOriginAndNothingIsAmbiguous) {
  const auto [mapping, filtering] = GetParam();
  Config config;
  config.external_addresses = {kPool[0], kPool[1]};
  config.mapping = mapping;
  config.filtering = filtering;
  SeededRandom rng(2024 + static_cast<int>(mapping) * 3 + static_cast<int>(filtering));
  NatEngine nat(config, rng);
  SeededRandom traffic(99);
  Instant now{};

  std::map<Flow, Endpoint> external_of;                          // flow -> its external endpoint
  std::map<std::tuple<std::uint8_t, Endpoint>, Endpoint> owner;  // (proto, external) -> internal
  std::map<decltype(mapping_key(mapping, Flow{})), Endpoint> by_key;
  std::map<IpAddress, IpAddress> paired;

  for (int step = 0; step < 12000; ++step) {
    now += 1ms;
    const Flow f = random_flow(traffic, 3000, 400);
    const bool first = external_of.count(f) == 0;
    Bytes p = outbound_packet(f, first);
    const Result r = nat.outbound(now, p);
    ASSERT_EQ(r.verdict, Verdict::forward) << "step " << step << " " << to_string(r.reason);
    ASSERT_TRUE(verify_checksums(p).all());
    const PacketSummary s = summarize(p);
    const Endpoint external = s.source;
    EXPECT_EQ(s.destination, f.remote);
    // Stable: the same flow always leaves by the same external endpoint.
    auto [it, fresh] = external_of.emplace(f, external);
    ASSERT_EQ(it->second, external) << "flow moved";
    // The mapping behaviour: flows with one mapping key share one external endpoint.
    auto [k, new_key] = by_key.emplace(mapping_key(mapping, f), external);
    ASSERT_EQ(k->second, external) << "mapping behaviour broken";
    // Never ambiguous: one external endpoint, one internal endpoint.
    auto [o, new_owner] = owner.emplace(std::make_tuple(f.protocol, external), f.internal);
    ASSERT_EQ(o->second, f.internal) << "external " << external.to_string() << " shared";
    // Paired pooling.
    auto [pa, new_pair] = paired.emplace(f.internal.address(), external.address());
    ASSERT_EQ(pa->second, external.address());
    // Port class (RFC 4787 REQ-3a) and parity (REQ-4, with room to spare here).
    if (f.protocol != kProtoIcmp) {
      EXPECT_EQ(external.port() < 1024, f.internal.port() < 1024);
      EXPECT_EQ(external.port() & 1, f.internal.port() & 1);
    }
    (void)fresh;
    (void)new_key;
    (void)new_owner;
    (void)new_pair;
  }
  // Every reply comes back to exactly its origin.
  for (const auto& [flow, external] : external_of) {
    Bytes reply = reply_packet(flow, external);
    const Result r = nat.inbound(now, reply);
    ASSERT_EQ(r.verdict, Verdict::forward) << to_string(r.reason);
    ASSERT_TRUE(verify_checksums(reply).all());
    const PacketSummary s = summarize(reply);
    ASSERT_EQ(s.destination, flow.internal);
    ASSERT_EQ(s.source, flow.remote);
  }
  // Strangers: admitted only as the filtering says, and then only to the owner.
  std::size_t admitted = 0;
  const std::vector<std::pair<std::tuple<std::uint8_t, Endpoint>, Endpoint>> owners(owner.begin(),
                                                                                    owner.end());
  for (int i = 0; i < 3000; ++i) {
    const auto* pick = &owners[traffic.uniform(static_cast<std::uint32_t>(owners.size()))];
    const auto [protocol, external] = pick->first;
    if (protocol == kProtoTcp) continue;  // TCP strangers are covered by nat_tcp_test
    const Flow stranger{
        protocol, Endpoint(),
        Endpoint(
            IpAddress::v4(0xc0000200 + traffic.uniform(200)),
            protocol == kProtoIcmp ? 0 : static_cast<std::uint16_t>(7000 + traffic.uniform(100)))};
    Bytes p = reply_packet(stranger, external);
    const Result r = nat.inbound(now, p);
    if (r.verdict == Verdict::forward) {
      ++admitted;
      EXPECT_EQ(summarize(p).destination, pick->second);
    } else {
      EXPECT_TRUE(r.reason == DropReason::filtered || r.reason == DropReason::tuple_conflict)
          << to_string(r.reason);
    }
  }
  if (filtering == Filtering::endpoint_independent) {
    EXPECT_GT(admitted, 0u);
  } else {
    EXPECT_EQ(admitted, 0u);  // strangers' addresses were never contacted
  }
}

INSTANTIATE_TEST_SUITE_P(AllNine, NatProperty, knit::testing::all_nine_behaviours(), knit::testing::behaviour_name);

// Checks the counters add up and the live table respects its bounds and is unambiguous.
void check_books(const NatEngine& nat, Instant now) {
  const Stats s = nat.stats();
  ASSERT_EQ(s.outbound_packets,
            s.forwarded_outbound + s.hairpinned + s.dropped_outbound + s.replied_outbound);
  ASSERT_EQ(s.inbound_packets, s.forwarded_inbound + s.dropped_inbound + s.replied_inbound);
  ASSERT_EQ(s.drops_total(),
            s.dropped_outbound + s.dropped_inbound + s.replied_outbound + s.replied_inbound);
  ASSERT_EQ(s.drops_of(DropReason::none), 0u);
  ASSERT_EQ(s.mappings_live, s.mappings_created - s.mappings_removed);
  ASSERT_EQ(s.sessions_live, s.sessions_created - s.sessions_removed);
  ASSERT_LE(s.mappings_live, nat.config().max_mappings);
  ASSERT_LE(s.sessions_live, nat.config().max_sessions);
  std::map<std::tuple<Protocol, Endpoint>, Endpoint> owner;
  std::set<std::tuple<Protocol, Endpoint, Endpoint>> inside_tuples;
  const auto sessions = nat.sessions();
  ASSERT_EQ(sessions.size(), s.sessions_live);
  for (const SessionInfo& si : sessions) {
    auto [it, fresh] = owner.emplace(std::make_tuple(si.protocol, si.external), si.internal);
    ASSERT_EQ(it->second, si.internal) << "external endpoint shared: " << si.external.to_string();
    ASSERT_TRUE(inside_tuples.emplace(si.protocol, si.internal, si.remote).second)
        << "internal 5-tuple twice";
    (void)fresh;
    (void)now;
  }
}

TEST(NatProperty, BoundedTableUnderChurn) {
  Config config;
  config.external_addresses = {kPool[0]};
  config.mapping = Mapping::address_and_port_dependent;
  config.filtering = Filtering::endpoint_independent;
  config.max_mappings = 500;
  config.max_sessions = 900;
  config.udp_timeout = 2min;
  config.icmp_timeout = 60s;
  SeededRandom rng(5);
  NatEngine nat(config, rng);
  SeededRandom traffic(6);
  Instant now{};
  std::array<std::uint8_t, kIcmpErrorMaxSize> reply{};
  std::size_t forwarded = 0;
  std::size_t refused = 0;
  for (int step = 0; step < 40000; ++step) {
    now += std::chrono::milliseconds(traffic.uniform(500));
    const Flow f = random_flow(traffic, 400, 50);
    Bytes p = outbound_packet(f, true);
    const Result r = nat.outbound(now, p, reply);
    if (r.verdict == Verdict::forward) {
      ++forwarded;
      // Its reply maps straight back.
      Bytes back = reply_packet(f, summarize(p).source);
      const Result b = nat.inbound(now, back);
      ASSERT_EQ(b.verdict, Verdict::forward);
      ASSERT_EQ(summarize(back).destination, f.internal);
    } else {
      ASSERT_EQ(r.verdict, Verdict::reply);  // exhaustion answers ICMP 3/13
      ASSERT_TRUE(r.reason == DropReason::table_full || r.reason == DropReason::ports_exhausted);
      ASSERT_TRUE(verify_checksums(ByteSpan(reply.data(), r.reply_length)).all());
      ++refused;
    }
    if (step % 500 == 0) check_books(nat, now);
    if (step % 5000 == 0) nat.expire(now);
  }
  check_books(nat, now);
  EXPECT_GT(forwarded, 10000u);
  EXPECT_GT(refused, 0u);  // the bound was actually reached
  now += 10min;
  nat.expire(now);
  const Stats s = nat.stats();
  EXPECT_EQ(s.mappings_live, 0u);
  EXPECT_EQ(s.sessions_live, 0u);
}

// ---- fuzzing ---------------------------------------------------------------------------

void fix_ip_checksum(std::uint8_t* ip, std::size_t available) {
  const std::size_t header = std::size_t{ip[0] & 0x0fu} * 4;
  if (header < kIpv4MinHeader || header > available) return;
  store_be16(ip + kIpv4OffChecksum, 0);
  store_be16(ip + kIpv4OffChecksum, internet_checksum(ByteSpan(ip, header)));
}

// Makes a mutated packet get past the checksum checks, so the deeper paths see it too.
void fix_checksums(Bytes& p) {
  if (p.size() < kIpv4MinHeader) return;
  fix_ip_checksum(p.data(), p.size());
  const std::size_t header = std::size_t{p[0] & 0x0fu} * 4;
  if (header < kIpv4MinHeader || p.size() < header + kIcmpHeader + kIpv4MinHeader) return;
  if (p[kIpv4OffProtocol] != kProtoIcmp) return;
  fix_ip_checksum(p.data() + header + kIcmpHeader, p.size() - header - kIcmpHeader);
  std::size_t total = load_be16(&p[kIpv4OffTotalLength]);
  if (total > p.size() || total < header + kIcmpHeader) return;
  store_be16(&p[header + kIcmpOffChecksum], 0);
  store_be16(&p[header + kIcmpOffChecksum],
             internet_checksum(ByteSpan(p.data() + header, total - header)));
}

Bytes mutate(Random& rng, Bytes p) {
  switch (rng.uniform(9)) {
    case 0: {  // flip a few bytes
      const std::uint32_t n = 1 + rng.uniform(4);
      for (std::uint32_t i = 0; i < n && !p.empty(); ++i)
        p[rng.uniform(static_cast<std::uint32_t>(p.size()))] ^=
            static_cast<std::uint8_t>(1 + rng.uniform(255));
      break;
    }
    case 1:  // truncate
      p.resize(rng.uniform(static_cast<std::uint32_t>(p.size() + 1)));
      break;
    case 2: {  // extend with junk
      const std::size_t n = rng.uniform(40);
      for (std::size_t i = 0; i < n; ++i) p.push_back(static_cast<std::uint8_t>(rng.uniform(256)));
      break;
    }
    case 3:  // random IHL
      if (!p.empty()) p[0] = static_cast<std::uint8_t>(0x40 | rng.uniform(16));
      break;
    case 4:  // random total length
      if (p.size() >= 4) store_be16(&p[2], static_cast<std::uint16_t>(rng.uniform(p.size() + 64)));
      break;
    case 5:  // random fragment fields
      if (p.size() >= 8) store_be16(&p[6], static_cast<std::uint16_t>(rng.uniform(65536)));
      break;
    case 6:  // random protocol
      if (p.size() >= 10) p[9] = static_cast<std::uint8_t>(rng.uniform(256));
      break;
    case 7: {  // all random
      p.assign(rng.uniform(120), 0);
      rng.fill(p);
      if (!p.empty() && rng.uniform(2)) p[0] = 0x45;
      break;
    }
    default: {  // mutate inside the quoted packet of an ICMP error
      if (p.size() > 36) {
        const std::uint32_t at = 28 + rng.uniform(static_cast<std::uint32_t>(p.size() - 28));
        p[at] ^= static_cast<std::uint8_t>(1 + rng.uniform(255));
      }
      break;
    }
  }
  if (rng.uniform(10) < 7) fix_checksums(p);
  return p;
}

TEST(NatFuzz, RandomAndMutatedPacketsNeverCorruptTheTable) {
  Config config;
  config.external_addresses = {kPool[0], kPool[1]};
  config.mapping = Mapping::address_dependent;
  config.filtering = Filtering::endpoint_independent;
  config.max_mappings = 300;
  config.max_sessions = 600;
  config.max_held_syns = 16;
  config.max_fragment_flows = 16;
  config.udp_timeout = 2min;
  config.port_forwards = {PortForward{Protocol::udp, 2000, IpAddress::parse("10.0.0.9").value(), 53, {}}};
  SeededRandom rng(11);
  NatEngine nat(config, rng);
  SeededRandom fuzz(12);
  Instant now{};
  std::array<std::uint8_t, kIcmpErrorMaxSize> reply{};

  // A corpus of valid packets of every kind, in both directions, many of them matching the
  // flows the engine is carrying.
  std::vector<Flow> flows;
  std::vector<Bytes> corpus_out;
  std::vector<Bytes> corpus_in;
  for (int i = 0; i < 200; ++i) {
    const Flow f = random_flow(fuzz, 60, 20);
    Bytes p = outbound_packet(f, true);
    corpus_out.push_back(p);
    if (nat.outbound(now, p).verdict != Verdict::forward) continue;
    const Endpoint external = summarize(p).source;
    corpus_in.push_back(reply_packet(f, external));
    corpus_in.push_back(make_icmp_error(IpAddress::v4(0xc0000201), external.address(),
                                        kIcmpTimeExceeded, 0, p, fuzz.uniform(2) ? 0 : p.size()));
    auto fragments = fragment_packet(make_udp(f.internal, f.remote, Bytes(200, 9)), 64);
    for (auto& frag : fragments) corpus_out.push_back(frag);
    flows.push_back(f);
  }
  corpus_in.push_back(make_udp(Endpoint::parse("192.0.2.1:999").value(), Endpoint(kPool[0], 2000)));
  corpus_in.push_back(make_tcp(Endpoint::parse("192.0.2.1:999").value(), Endpoint(kPool[0], 80), kTcpSyn));
  corpus_out.push_back(make_udp(Endpoint::parse("10.0.0.2:1").value(), Endpoint(kPool[1], 2000)));

  for (int i = 0; i < 1000000; ++i) {
    now += std::chrono::milliseconds(fuzz.uniform(30));
    const bool out = fuzz.uniform(2) == 0;
    const auto& corpus = out ? corpus_out : corpus_in;
    Bytes p = corpus[fuzz.uniform(static_cast<std::uint32_t>(corpus.size()))];
    if (fuzz.uniform(4) != 0) p = mutate(fuzz, std::move(p));
    const std::size_t size = p.size();
    const std::span<std::uint8_t> reply_span =
        fuzz.uniform(8) == 0 ? std::span<std::uint8_t>(reply.data(), fuzz.uniform(60))
                             : std::span<std::uint8_t>(reply);
    const Result r = out ? nat.outbound(now, p, reply_span) : nat.inbound(now, p, reply_span);
    ASSERT_EQ(p.size(), size);
    switch (r.verdict) {
      case Verdict::forward:
      case Verdict::hairpin:
        ASSERT_EQ(r.reason, DropReason::none);
        ASSERT_LE(r.length, p.size());
        ASSERT_GE(r.length, kIpv4MinHeader);
        ASSERT_TRUE(verify_checksums(ByteSpan(p.data(), r.length)).ip) << "iteration " << i;
        break;
      case Verdict::reply:
        ASSERT_NE(r.reason, DropReason::none);
        ASSERT_LE(r.reply_length, reply_span.size());
        ASSERT_TRUE(verify_checksums(ByteSpan(reply.data(), r.reply_length)).all());
        break;
      case Verdict::drop: ASSERT_NE(r.reason, DropReason::none); break;
    }
    if (i % 50000 == 0) {
      nat.expire(now);
      std::array<std::uint8_t, kIcmpErrorMaxSize> icmp{};
      while (std::size_t n = nat.take_timer_icmp(icmp))
        ASSERT_TRUE(verify_checksums(ByteSpan(icmp.data(), n)).all());
      check_books(nat, now);
    }
    // Keep live traffic flowing, so mutated packets keep meeting live sessions.
    if (i % 50 == 0 && !flows.empty()) {
      Bytes keep =
          outbound_packet(flows[fuzz.uniform(static_cast<std::uint32_t>(flows.size()))], false);
      nat.outbound(now, keep);
    }
  }
  check_books(nat, now);
  const Stats s = nat.stats();
  // The fuzzer reached the interesting places.
  EXPECT_GT(s.forwarded_outbound, 1000u);
  EXPECT_GT(s.forwarded_inbound, 1000u);
  EXPECT_GT(s.drops_of(DropReason::malformed), 1000u);
  EXPECT_GT(s.drops_of(DropReason::bad_checksum), 100u);
  EXPECT_GT(s.icmp_errors_translated, 100u);
  EXPECT_GT(s.fragments_translated, 10u);
  std::printf("fuzz: out %llu in %llu; drops:", static_cast<unsigned long long>(s.outbound_packets),
              static_cast<unsigned long long>(s.inbound_packets));
  for (std::size_t r = 0; r < kDropReasonCount; ++r)
    if (s.drops[r] != 0)
      std::printf(" %s=%llu", to_string(static_cast<DropReason>(r)),
                  static_cast<unsigned long long>(s.drops[r]));
  std::printf("\n");
}

}  // namespace
}  // namespace knit::nat
