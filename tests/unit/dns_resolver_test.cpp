// The mesh resolver core on a manual clock: mesh answers, forwarding (UDP, TCP on truncation,
// timeouts, cache), response matching, rate limit, and malformed queries.
#include <gtest/gtest.h>

#include "base/random.hpp"
#include "dns/message.hpp"
#include "dns/resolver.hpp"

namespace knit::dns {
namespace {

Bytes make_query(std::uint16_t id, std::string_view name, std::uint16_t qtype, bool edns = false) {
  Bytes out = {static_cast<std::uint8_t>(id >> 8), static_cast<std::uint8_t>(id), 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0,
               static_cast<std::uint8_t>(edns ? 1 : 0)};
  std::size_t start = 0;
  while (start < name.size()) {
    std::size_t dot = name.find('.', start);
    if (dot == std::string_view::npos) dot = name.size();
    out.push_back(static_cast<std::uint8_t>(dot - start));
    for (std::size_t i = start; i < dot; ++i) out.push_back(static_cast<std::uint8_t>(name[i]));
    start = dot + 1;
  }
  out.push_back(0);
  out.push_back(static_cast<std::uint8_t>(qtype >> 8));
  out.push_back(static_cast<std::uint8_t>(qtype));
  out.push_back(0);
  out.push_back(1);
  if (edns) {  // OPT: root, type 41, class = UDP size 1232, TTL 0, RDLENGTH 0
    for (std::uint8_t b : {0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0, 0, 0}) out.push_back(b);
  }
  return out;
}

struct Answer {
  std::uint16_t id = 0;
  Rcode rcode = Rcode::noerror;
  bool tc = false;
  std::uint16_t ancount = 0;
  std::uint16_t nscount = 0;
};
Answer header(const Bytes& wire) {
  EXPECT_GE(wire.size(), 12u);
  return {load_be16(wire.data()), static_cast<Rcode>(wire[3] & 0x0f), (wire[2] & 0x02) != 0,
          load_be16(wire.data() + 6), load_be16(wire.data() + 8)};
}

IpAddress ip(const char* text) { return IpAddress::parse(text).value(); }
Endpoint ep(const char* text) { return Endpoint::parse(text).value(); }

class ResolverTest : public ::testing::Test {
 protected:
  ResolverTest() : resolver_(rng_) {
    resolver_.table().set_domain("Knit.Internal.");
    resolver_.table().set_prefixes(IpPrefix::parse("100.64.0.0/10"), IpPrefix::parse("fd7a:1::/48"));
    resolver_.table().set_nodes({{"laptop", ip("100.64.0.7"), ip("fd7a:1::7")}, {"Server", ip("100.64.0.9"), std::nullopt}});
    resolver_.forwarder().set_upstreams({ep("192.0.2.53:53"), ep("198.51.100.53:53")});
  }
  Actions ask(const Bytes& query, const Endpoint& client = ep("100.64.0.2:40000")) {
    Actions out;
    resolver_.on_query(now_, client, query, out);
    return out;
  }
  // The upstream's answer to an UpstreamQuery: one A record with `ttl`.
  Bytes upstream_answer(const UpstreamQuery& sent, const char* address, std::uint32_t ttl, bool tc = false) {
    auto parsed = parse_query(sent.wire);
    EXPECT_TRUE(std::holds_alternative<Query>(parsed));
    const Query q = std::get<Query>(parsed);
    Record record{q.name, ttl, ip(address)};
    Bytes wire = build_response(q, Rcode::noerror, std::span<const Record>(&record, 1), {}, false);
    if (tc) wire[2] |= 0x02;
    return wire;
  }
  SeededRandom rng_{7};
  Resolver resolver_;
  Instant now_{};
};

TEST_F(ResolverTest, AnswersA) {
  auto out = ask(make_query(0x1234, "laptop.knit.internal", type::A));
  ASSERT_EQ(out.replies.size(), 1u);
  EXPECT_TRUE(out.queries.empty());
  const Answer a = header(out.replies[0].wire);
  EXPECT_EQ(a.id, 0x1234);
  EXPECT_EQ(a.rcode, Rcode::noerror);
  EXPECT_EQ(a.ancount, 1);
  auto info = parse_response(out.replies[0].wire);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->name, "laptop.knit.internal");
  EXPECT_EQ(info->min_ttl, kMeshTtl);
  // The address itself is at the end: the A record's RDATA.
  const Bytes& w = out.replies[0].wire;
  EXPECT_EQ(Bytes(w.end() - 4, w.end()), (Bytes{100, 64, 0, 7}));
  EXPECT_EQ(resolver_.counters().answered_mesh, 1u);
}

TEST_F(ResolverTest, AnswersAaaaAndAny) {
  auto out = ask(make_query(1, "laptop.knit.internal", type::AAAA));
  ASSERT_EQ(out.replies.size(), 1u);
  EXPECT_EQ(header(out.replies[0].wire).ancount, 1);
  const Bytes& w = out.replies[0].wire;
  const IpAddress v6 = ip("fd7a:1::7");
  EXPECT_EQ(Bytes(w.end() - 16, w.end()), Bytes(v6.bytes(), v6.bytes() + 16));
  out = ask(make_query(2, "laptop.knit.internal", type::ANY));
  EXPECT_EQ(header(out.replies[0].wire).ancount, 2);
}

TEST_F(ResolverTest, CaseInsensitiveAndDomainWithTrailingDot) {
  auto out = ask(make_query(3, "LapTop.KNIT.internal", type::A));
  ASSERT_EQ(out.replies.size(), 1u);
  EXPECT_EQ(header(out.replies[0].wire).ancount, 1);
  out = ask(make_query(4, "server.knit.internal", type::A));  // the node's name had capitals
  EXPECT_EQ(header(out.replies[0].wire).ancount, 1);
  EXPECT_EQ(resolver_.table().domain(), "knit.internal");
}

TEST_F(ResolverTest, UnknownNameIsNxdomainWithSoa) {
  for (const char* name : {"nobody.knit.internal", "a.laptop.knit.internal"}) {
    auto out = ask(make_query(5, name, type::A));
    ASSERT_EQ(out.replies.size(), 1u) << name;
    const Answer a = header(out.replies[0].wire);
    EXPECT_EQ(a.rcode, Rcode::nxdomain) << name;
    EXPECT_EQ(a.ancount, 0);
    EXPECT_EQ(a.nscount, 1);  // the SOA, for negative caching
  }
  EXPECT_TRUE(resolver_.forwarder().counters().forwarded == 0);
}

TEST_F(ResolverTest, OtherTypesAreNodata) {
  for (std::uint16_t t : {type::MX, type::TXT, type::SOA}) {
    auto out = ask(make_query(6, "laptop.knit.internal", t));
    ASSERT_EQ(out.replies.size(), 1u);
    const Answer a = header(out.replies[0].wire);
    EXPECT_EQ(a.rcode, Rcode::noerror);
    EXPECT_EQ(a.ancount, 0);
  }
  // AAAA of a node without IPv6, and the apex: NODATA too.
  EXPECT_EQ(header(ask(make_query(7, "server.knit.internal", type::AAAA)).replies[0].wire).rcode, Rcode::noerror);
  EXPECT_EQ(header(ask(make_query(8, "knit.internal", type::A)).replies[0].wire).rcode, Rcode::noerror);
}

TEST_F(ResolverTest, Ptr) {
  auto out = ask(make_query(9, "7.0.64.100.in-addr.arpa", type::PTR));
  ASSERT_EQ(out.replies.size(), 1u);
  EXPECT_EQ(header(out.replies[0].wire).ancount, 1);
  out = ask(make_query(10, reverse_name(ip("fd7a:1::7")), type::PTR));
  EXPECT_EQ(header(out.replies[0].wire).ancount, 1);
  // An unassigned mesh address: NXDOMAIN; an address outside the mesh: forwarded.
  EXPECT_EQ(header(ask(make_query(11, "8.0.64.100.in-addr.arpa", type::PTR)).replies[0].wire).rcode, Rcode::nxdomain);
  out = ask(make_query(12, "1.2.0.192.in-addr.arpa", type::PTR));
  EXPECT_TRUE(out.replies.empty());
  EXPECT_EQ(out.queries.size(), 1u);
}

TEST(ReverseName, RoundTrips) {
  for (const char* text : {"100.64.0.7", "fd7a:115c:a1e0::1", "::1", "255.255.255.255"}) {
    const IpAddress a = ip(text);
    EXPECT_EQ(parse_reverse_name(reverse_name(a)), a) << text;
  }
  EXPECT_FALSE(parse_reverse_name("07.0.64.100.in-addr.arpa"));
  EXPECT_FALSE(parse_reverse_name("256.0.64.100.in-addr.arpa"));
  EXPECT_FALSE(parse_reverse_name("0.64.100.in-addr.arpa"));
}

TEST_F(ResolverTest, RenameAndRemovalTakeEffect) {
  resolver_.table().set_nodes({{"desk", ip("100.64.0.7"), std::nullopt}});
  EXPECT_EQ(header(ask(make_query(1, "laptop.knit.internal", type::A)).replies[0].wire).rcode, Rcode::nxdomain);
  EXPECT_EQ(header(ask(make_query(2, "desk.knit.internal", type::A)).replies[0].wire).ancount, 1);
}

TEST_F(ResolverTest, ForwardsAndMatchesResponse) {
  const Endpoint client = ep("100.64.0.2:40000");
  auto out = ask(make_query(0xabcd, "example.com", type::A), client);
  ASSERT_TRUE(out.replies.empty());
  ASSERT_EQ(out.queries.size(), 1u);
  const UpstreamQuery sent = out.queries[0];
  EXPECT_EQ(sent.transport, Transport::udp);
  EXPECT_EQ(sent.upstream, ep("192.0.2.53:53"));
  const Bytes answer = upstream_answer(sent, "203.0.113.5", 60);

  Actions got;
  // From another address or port, with another ID, or for another name: dropped and counted.
  resolver_.on_upstream_udp(now_, ep("192.0.2.54:53"), answer, got);
  resolver_.on_upstream_udp(now_, ep("192.0.2.53:5353"), answer, got);
  Bytes wrong_id = answer;
  set_message_id(wrong_id, static_cast<std::uint16_t>(message_id(answer) + 1));
  resolver_.on_upstream_udp(now_, ep("192.0.2.53:53"), wrong_id, got);
  auto other = parse_query(make_query(message_id(sent.wire), "example.org", type::A));
  Bytes wrong_name = build_response(std::get<Query>(other), Rcode::noerror, {}, {}, false);
  resolver_.on_upstream_udp(now_, ep("192.0.2.53:53"), wrong_name, got);
  resolver_.on_upstream_udp(now_, ep("192.0.2.53:53"), Bytes{1, 2, 3}, got);
  EXPECT_TRUE(got.replies.empty());
  EXPECT_EQ(resolver_.forwarder().counters().mismatched, 4u);
  EXPECT_EQ(resolver_.forwarder().counters().bad_responses, 1u);

  resolver_.on_upstream_udp(now_, ep("192.0.2.53:53"), answer, got);
  ASSERT_EQ(got.replies.size(), 1u);
  EXPECT_EQ(got.replies[0].client, client);
  EXPECT_EQ(message_id(got.replies[0].wire), 0xabcd);
  EXPECT_EQ(resolver_.forwarder().pending(), 0u);
  // A late duplicate matches nothing now.
  got.clear();
  resolver_.on_upstream_udp(now_, ep("192.0.2.53:53"), answer, got);
  EXPECT_TRUE(got.replies.empty());
  EXPECT_EQ(resolver_.forwarder().counters().mismatched, 5u);
}

TEST_F(ResolverTest, CachesForTheTtlThenExpires) {
  auto out = ask(make_query(1, "example.com", type::A));
  Actions got;
  resolver_.on_upstream_udp(now_, ep("192.0.2.53:53"), upstream_answer(out.queries[0], "203.0.113.5", 60), got);
  ASSERT_EQ(got.replies.size(), 1u);

  now_ += 20s;
  out = ask(make_query(2, "EXAMPLE.com", type::A));
  ASSERT_EQ(out.replies.size(), 1u);  // from the cache
  EXPECT_TRUE(out.queries.empty());
  EXPECT_EQ(message_id(out.replies[0].wire), 2);
  auto info = parse_response(out.replies[0].wire);
  ASSERT_TRUE(info);
  EXPECT_EQ(info->min_ttl, 40u);  // aged by the 20 s it spent in the cache
  EXPECT_EQ(resolver_.forwarder().counters().cache_hits, 1u);

  now_ += 41s;
  out = ask(make_query(3, "example.com", type::A));
  EXPECT_TRUE(out.replies.empty());
  EXPECT_EQ(out.queries.size(), 1u);  // expired: asked again
}

TEST_F(ResolverTest, TruncatedAnswerIsRetriedOverTcp) {
  auto out = ask(make_query(77, "big.example.com", type::A));
  Actions got;
  resolver_.on_upstream_udp(now_, ep("192.0.2.53:53"), upstream_answer(out.queries[0], "203.0.113.5", 60, true), got);
  EXPECT_TRUE(got.replies.empty());
  ASSERT_EQ(got.queries.size(), 1u);
  const UpstreamQuery tcp = got.queries[0];
  EXPECT_EQ(tcp.transport, Transport::tcp);
  EXPECT_EQ(tcp.upstream, ep("192.0.2.53:53"));
  EXPECT_EQ(tcp.wire, out.queries[0].wire);
  EXPECT_EQ(resolver_.forwarder().counters().tcp_retries, 1u);
  // A UDP answer now matches nothing: the query moved to TCP.
  got.clear();
  resolver_.on_upstream_udp(now_, ep("192.0.2.53:53"), upstream_answer(out.queries[0], "203.0.113.5", 60), got);
  EXPECT_TRUE(got.replies.empty());
  // Another connection's answer neither.
  resolver_.on_upstream_tcp(now_, tcp.tcp_id + 1, upstream_answer(tcp, "203.0.113.5", 60), got);
  EXPECT_TRUE(got.replies.empty());
  resolver_.on_upstream_tcp(now_, tcp.tcp_id, upstream_answer(tcp, "203.0.113.5", 60), got);
  ASSERT_EQ(got.replies.size(), 1u);
  EXPECT_EQ(message_id(got.replies[0].wire), 77);
  EXPECT_FALSE(header(got.replies[0].wire).tc);
}

// A stub that asks over TCP (after a truncated UDP answer) gets the whole answer, marked
// for its connection; the same answer over UDP without EDNS is cut to the header with TC.
TEST_F(ResolverTest, TcpClientGetsTheWholeAnswer) {
  std::vector<Record> many;
  auto big_answer = [&](const UpstreamQuery& sent) {
    const Query q = std::get<Query>(parse_query(sent.wire));
    many.clear();
    for (int i = 0; i < 60; ++i)
      many.push_back(Record{q.name, 60, IpAddress::v4(std::array<std::uint8_t, 4>{203, 0, 113, static_cast<std::uint8_t>(i)}.data())});
    return build_response(q, Rcode::noerror, many, {}, false);
  };
  auto udp = ask(make_query(21, "many.example.com", type::A));
  ASSERT_EQ(udp.queries.size(), 1u);
  Actions got;
  resolver_.on_upstream_udp(now_, ep("192.0.2.53:53"), big_answer(udp.queries[0]), got);
  ASSERT_EQ(got.replies.size(), 1u);
  EXPECT_TRUE(header(got.replies[0].wire).tc);
  EXPECT_EQ(got.replies[0].transport, Transport::udp);
  EXPECT_LE(got.replies[0].wire.size(), 512u);

  Actions tcp;
  resolver_.on_query(now_, ep("100.64.0.2:40001"), make_query(22, "many.example.com", type::A), tcp, Transport::tcp);
  ASSERT_EQ(tcp.replies.size(), 1u);  // from the cache, whole
  EXPECT_EQ(tcp.replies[0].transport, Transport::tcp);
  EXPECT_FALSE(header(tcp.replies[0].wire).tc);
  EXPECT_EQ(header(tcp.replies[0].wire).ancount, 60);
  EXPECT_GT(tcp.replies[0].wire.size(), 900u);
  EXPECT_EQ(message_id(tcp.replies[0].wire), 22);

  // Mesh answers and errors go back over TCP too.
  Actions mesh;
  resolver_.on_query(now_, ep("100.64.0.2:40002"), make_query(23, "laptop.knit.internal", type::A), mesh, Transport::tcp);
  ASSERT_EQ(mesh.replies.size(), 1u);
  EXPECT_EQ(mesh.replies[0].transport, Transport::tcp);
  resolver_.forwarder().set_upstreams({});
  Actions none;
  resolver_.on_query(now_, ep("100.64.0.2:40003"), make_query(24, "other.example.com", type::A), none, Transport::tcp);
  ASSERT_EQ(none.replies.size(), 1u);
  EXPECT_EQ(header(none.replies[0].wire).rcode, Rcode::servfail);
  EXPECT_EQ(none.replies[0].transport, Transport::tcp);
}

TEST_F(ResolverTest, TimeoutTriesTheNextUpstreamThenServfail) {
  auto out = ask(make_query(5, "slow.example.com", type::A));
  ASSERT_EQ(resolver_.next_deadline(), now_ + kUpstreamTimeout);
  Actions got;
  now_ += kUpstreamTimeout - 1ms;
  resolver_.on_timer(now_, got);
  EXPECT_TRUE(got.queries.empty());
  now_ += 1ms;
  resolver_.on_timer(now_, got);
  ASSERT_EQ(got.queries.size(), 1u);
  EXPECT_EQ(got.queries[0].upstream, ep("198.51.100.53:53"));
  EXPECT_EQ(resolver_.forwarder().counters().timeouts, 1u);
  got.clear();
  now_ += kUpstreamTimeout;
  resolver_.on_timer(now_, got);
  ASSERT_EQ(got.replies.size(), 1u);
  EXPECT_EQ(header(got.replies[0].wire).rcode, Rcode::servfail);
  EXPECT_EQ(message_id(got.replies[0].wire), 5);
  EXPECT_FALSE(resolver_.next_deadline());
}

TEST_F(ResolverTest, TcpFailureFailsOver) {
  auto out = ask(make_query(6, "big.example.com", type::A));
  Actions got;
  resolver_.on_upstream_udp(now_, ep("192.0.2.53:53"), upstream_answer(out.queries[0], "203.0.113.5", 60, true), got);
  ASSERT_EQ(got.queries.size(), 1u);
  const std::uint64_t id = got.queries[0].tcp_id;
  got.clear();
  resolver_.on_upstream_tcp_failed(now_, id, got);
  ASSERT_EQ(got.queries.size(), 1u);
  EXPECT_EQ(got.queries[0].transport, Transport::udp);
  EXPECT_EQ(got.queries[0].upstream, ep("198.51.100.53:53"));
}

TEST_F(ResolverTest, SplitDns) {
  resolver_.forwarder().set_split({{"corp.example", {ep("10.1.0.53:53")}}, {"dev.corp.example", {ep("10.2.0.53:53")}}});
  EXPECT_EQ(ask(make_query(1, "www.corp.example", type::A)).queries.at(0).upstream, ep("10.1.0.53:53"));
  EXPECT_EQ(ask(make_query(2, "a.dev.corp.example", type::A)).queries.at(0).upstream, ep("10.2.0.53:53"));
  EXPECT_EQ(ask(make_query(3, "xcorp.example", type::A)).queries.at(0).upstream, ep("192.0.2.53:53"));
}

TEST_F(ResolverTest, NoUpstreamIsServfail) {
  resolver_.forwarder().set_upstreams({});
  auto out = ask(make_query(1, "example.com", type::A));
  ASSERT_EQ(out.replies.size(), 1u);
  EXPECT_EQ(header(out.replies[0].wire).rcode, Rcode::servfail);
}

TEST_F(ResolverTest, RateLimitedPerSource) {
  const Endpoint a = ep("100.64.0.2:40000");
  const Endpoint b = ep("100.64.0.3:40000");
  const Bytes q = make_query(1, "laptop.knit.internal", type::A);
  int answered = 0;
  for (int i = 0; i < 1000; ++i) answered += static_cast<int>(ask(q, a).replies.size());
  EXPECT_EQ(answered, static_cast<int>(kRateBurst));
  EXPECT_EQ(resolver_.counters().rate_limited, 1000u - static_cast<unsigned>(kRateBurst));
  EXPECT_EQ(ask(q, b).replies.size(), 1u);  // another source is not affected
  now_ += 1s;
  answered = 0;
  for (int i = 0; i < 1000; ++i) answered += static_cast<int>(ask(q, a).replies.size());
  EXPECT_EQ(answered, static_cast<int>(kRatePerSecond));
}

TEST_F(ResolverTest, EdnsClientGetsOpt) {
  auto out = ask(make_query(1, "laptop.knit.internal", type::A, true));
  ASSERT_EQ(out.replies.size(), 1u);
  EXPECT_EQ(load_be16(out.replies[0].wire.data() + 10), 1);  // ARCOUNT: the OPT
}

// ---- malformed queries: dropped and counted, never answered, never a crash ----

TEST_F(ResolverTest, EveryTruncationIsDropped) {
  const Bytes full = make_query(9, "laptop.knit.internal", type::A, true);
  for (std::size_t n = 0; n < full.size(); ++n) {
    auto out = ask(Bytes(full.begin(), full.begin() + static_cast<long>(n)));
    EXPECT_TRUE(out.replies.empty() && out.queries.empty()) << n;
  }
  EXPECT_EQ(resolver_.counters().malformed, full.size());
  EXPECT_EQ(resolver_.counters().queries, 0u);
}

TEST_F(ResolverTest, CompressionLoopsAreDropped) {
  // QNAME is a pointer to itself (offset 12), and a label followed by a pointer back to it.
  Bytes self = {0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1};
  Bytes loop = {0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 'a', 0xc0, 12, 0, 1, 0, 1};
  Bytes forward = {0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 14, 0xc0, 12, 0, 1, 0, 1};
  for (const Bytes& q : {self, loop, forward}) EXPECT_TRUE(ask(q).replies.empty());
  EXPECT_EQ(resolver_.counters().malformed_by_kind[static_cast<int>(QueryError::malformed)], 3u);
}

TEST_F(ResolverTest, OversizedAndWrongShapesAreDropped) {
  Bytes big = make_query(1, "laptop.knit.internal", type::A);
  big.resize(kMaxQuerySize + 1);
  EXPECT_TRUE(ask(big).replies.empty());
  Bytes response = make_query(1, "laptop.knit.internal", type::A);
  response[2] |= 0x80;
  EXPECT_TRUE(ask(response).replies.empty());
  Bytes notify = make_query(1, "laptop.knit.internal", type::A);
  notify[2] |= 4 << 3;
  EXPECT_TRUE(ask(notify).replies.empty());
  Bytes two = make_query(1, "laptop.knit.internal", type::A);
  two[5] = 2;
  EXPECT_TRUE(ask(two).replies.empty());
  Bytes answers = make_query(1, "laptop.knit.internal", type::A);
  answers[7] = 1;
  EXPECT_TRUE(ask(answers).replies.empty());
  // A label over 63 bytes and a name over 255.
  Bytes long_label = {0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 64};
  long_label.resize(long_label.size() + 64, 'a');
  for (std::uint8_t b : {0, 0, 1, 0, 1}) long_label.push_back(b);
  EXPECT_TRUE(ask(long_label).replies.empty());
  std::string huge;
  for (int i = 0; i < 5; ++i) huge += std::string(60, 'a') + ".";
  EXPECT_TRUE(ask(make_query(1, huge + "knit.internal", type::A)).replies.empty());
  const auto& c = resolver_.counters();
  EXPECT_EQ(c.malformed_by_kind[static_cast<int>(QueryError::too_large)], 1u);
  EXPECT_EQ(c.malformed_by_kind[static_cast<int>(QueryError::not_query)], 1u);
  EXPECT_EQ(c.malformed_by_kind[static_cast<int>(QueryError::bad_opcode)], 1u);
  EXPECT_EQ(c.malformed_by_kind[static_cast<int>(QueryError::bad_counts)], 2u);
  EXPECT_EQ(c.malformed_by_kind[static_cast<int>(QueryError::malformed)], 2u);
}

TEST_F(ResolverTest, RandomBytesNeverCrash) {
  SeededRandom random(42);
  resolver_.rate_limiter() = RateLimiter(1e9, 1e9);
  const Bytes base = make_query(1, "laptop.knit.internal", type::A, true);
  for (int i = 0; i < 20000; ++i) {
    Bytes q = base;
    const int flips = 1 + static_cast<int>(random.uniform(4));
    for (int f = 0; f < flips; ++f) q[random.uniform(static_cast<std::uint32_t>(q.size()))] = static_cast<std::uint8_t>(random.uniform(256));
    if (random.uniform(4) == 0) q.resize(random.uniform(static_cast<std::uint32_t>(q.size())));
    ask(q);
    Actions got;
    resolver_.on_upstream_udp(now_, ep("192.0.2.53:53"), q, got);
  }
  SUCCEED();
}

}  // namespace
}  // namespace knit::dns
