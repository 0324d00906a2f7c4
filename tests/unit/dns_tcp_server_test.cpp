// DNS over TCP for local stubs (dns/tcp_server.hpp) on a manual clock: the handshake, queries
// reassembled from any segmentation, pipelining, answers within the client's MSS and window,
// retransmission and timeouts, both ways of closing, resets, bounds, and hostile segments.
#include <gtest/gtest.h>

#include "base/checksum.hpp"
#include "base/random.hpp"
#include "dns/constants.hpp"
#include "dns/ip_packet.hpp"
#include "dns/tcp_server.hpp"

namespace knit::dns {
namespace {

constexpr std::uint8_t FIN = 0x01, SYN = 0x02, RST = 0x04, PSH = 0x08, ACK = 0x10;

Endpoint ep(const char* text) { return Endpoint::parse(text).value(); }

struct Seg {
  Endpoint from, to;
  std::uint32_t seq = 0, ack = 0;
  std::uint8_t flags = 0;
  std::uint16_t window = 0;
  std::optional<std::uint16_t> mss;
  Bytes data;
  bool checksum_ok = false;
  bool has(std::uint8_t f) const { return (flags & f) == f; }
};

// What the server wrote, parsed independently of the server's own parser, checksum verified.
Seg parse_out(const Bytes& packet) {
  Seg s;
  const auto ip = parse_ip_packet(packet);
  EXPECT_TRUE(ip);
  if (!ip) return s;
  EXPECT_EQ(ip->protocol, kProtocolTcp);
  const ByteSpan t = ip->payload;
  EXPECT_GE(t.size(), 20u);
  if (t.size() < 20) return s;
  s.from = Endpoint(ip->source, load_be16(t.data()));
  s.to = Endpoint(ip->destination, load_be16(t.data() + 2));
  s.seq = load_be32(t.data() + 4);
  s.ack = load_be32(t.data() + 8);
  const std::size_t offset = static_cast<std::size_t>(t[12] >> 4) * 4;
  s.flags = t[13];
  s.window = load_be16(t.data() + 14);
  if (offset == 24 && t[20] == 2 && t[21] == 4) s.mss = load_be16(t.data() + 22);
  s.data.assign(t.begin() + static_cast<std::ptrdiff_t>(offset), t.end());
  std::uint64_t sum = checksum_accumulate(ByteSpan(ip->source.bytes(), ip->source.size()));
  sum = checksum_accumulate(ByteSpan(ip->destination.bytes(), ip->destination.size()), sum);
  sum += kProtocolTcp + static_cast<std::uint64_t>(t.size());
  sum = checksum_accumulate(t, sum);
  s.checksum_ok = checksum_fold(sum) == 0xffff;
  if (ip->source.is_v4()) {
    EXPECT_EQ(internet_checksum(ByteSpan(packet.data(), 20)), 0);
  }
  return s;
}

Bytes segment(const Endpoint& from, const Endpoint& to, std::uint32_t seq, std::uint32_t ack, std::uint8_t flags,
              std::uint16_t window, ByteSpan data = {}, std::optional<std::uint16_t> mss = std::nullopt) {
  const std::size_t options = mss ? 4 : 0;
  Bytes tcp(20 + options + data.size(), 0);
  store_be16(tcp.data(), from.port());
  store_be16(tcp.data() + 2, to.port());
  store_be32(tcp.data() + 4, seq);
  store_be32(tcp.data() + 8, ack);
  tcp[12] = static_cast<std::uint8_t>(((20 + options) / 4) << 4);
  tcp[13] = flags;
  store_be16(tcp.data() + 14, window);
  if (mss) {
    tcp[20] = 2;
    tcp[21] = 4;
    store_be16(tcp.data() + 22, *mss);
  }
  std::copy(data.begin(), data.end(), tcp.begin() + static_cast<std::ptrdiff_t>(20 + options));
  return build_ip_packet(from.address(), to.address(), kProtocolTcp, tcp, 16);
}

// A query on the wire, with its 2-byte length prefix: 12-byte header + `body` filler.
Bytes framed(std::uint16_t id, std::size_t body = 20) {
  Bytes out(2 + 12 + body, 0x61);
  store_be16(out.data(), static_cast<std::uint16_t>(12 + body));
  store_be16(out.data() + 2, id);
  return out;
}

class TcpServerTest : public ::testing::Test {
 protected:
  explicit TcpServerTest(TcpServer::Options options = {}) : server_(options) {}

  std::vector<Seg> feed(const Bytes& packet) {
    out_.clear();
    server_.on_segment(now_, packet, rng_, out_);
    return collect();
  }
  std::vector<Seg> answer(const Endpoint& client, const Bytes& wire) {
    out_.clear();
    server_.on_answer(now_, client, wire, out_);
    return collect();
  }
  std::vector<Seg> tick(Duration elapsed) {
    now_ += elapsed;
    out_.clear();
    server_.on_timer(now_, out_);
    return collect();
  }
  std::vector<Seg> collect() {
    std::vector<Seg> segs;
    for (const Bytes& p : out_.packets) {
      segs.push_back(parse_out(p));
      EXPECT_TRUE(segs.back().checksum_ok);
      EXPECT_EQ(segs.back().from, server_ep_);
      EXPECT_EQ(segs.back().to, client_);
    }
    return segs;
  }
  // SYN, SYN-ACK, ACK: returns the server's ISN.
  std::uint32_t connect(std::uint16_t window = 65535, std::optional<std::uint16_t> mss = 1460) {
    auto syn_ack = feed(segment(client_, server_ep_, iss_, 0, SYN, window, {}, mss));
    EXPECT_EQ(syn_ack.size(), 1u);
    if (syn_ack.empty()) return 0;
    EXPECT_TRUE(syn_ack[0].has(SYN | ACK));
    EXPECT_EQ(syn_ack[0].ack, iss_ + 1);
    EXPECT_EQ(syn_ack[0].mss, 1200);
    EXPECT_EQ(syn_ack[0].window, 4096);
    const std::uint32_t server_iss = syn_ack[0].seq;
    EXPECT_TRUE(feed(segment(client_, server_ep_, iss_ + 1, server_iss + 1, ACK, window)).empty());
    next_ = iss_ + 1;
    server_next_ = server_iss + 1;
    return server_iss;
  }
  std::vector<Seg> send(ByteSpan data, std::uint8_t flags = ACK | PSH, std::uint16_t window = 65535) {
    auto segs = feed(segment(client_, server_ep_, next_, server_next_, flags, window, data));
    next_ += static_cast<std::uint32_t>(data.size()) + ((flags & FIN) ? 1 : 0);
    return segs;
  }
  Endpoint client_with_local() const {
    Endpoint c = client_;
    c.set_local(server_ep_.address());
    return c;
  }

  SeededRandom rng_{11};
  TcpServer server_;
  TcpServer::Actions out_;
  Instant now_ = Instant{} + std::chrono::hours(1);
  Endpoint client_ = ep("100.64.0.2:41000");
  Endpoint server_ep_ = ep("100.100.100.100:53");
  std::uint32_t iss_ = 0xfffffff0;  // wraps during the test: sequence arithmetic is modular
  std::uint32_t next_ = 0;
  std::uint32_t server_next_ = 0;
};

TEST_F(TcpServerTest, QueryAnswerAndClientClose) {
  connect();
  const Bytes q = framed(0x1234);
  auto acks = send(q);
  ASSERT_EQ(acks.size(), 1u);
  EXPECT_TRUE(acks[0].has(ACK));
  EXPECT_EQ(acks[0].ack, next_);
  EXPECT_EQ(acks[0].window, 4096);  // nothing left half-read
  ASSERT_EQ(out_.queries.size(), 1u);
  EXPECT_EQ(out_.queries[0].client, client_with_local());
  EXPECT_EQ(out_.queries[0].wire, Bytes(q.begin() + 2, q.end()));

  const Bytes reply(100, 0x55);
  auto data = answer(out_.queries[0].client, reply);
  ASSERT_EQ(data.size(), 1u);
  EXPECT_TRUE(data[0].has(ACK | PSH));
  EXPECT_EQ(data[0].seq, server_next_);
  ASSERT_EQ(data[0].data.size(), 102u);
  EXPECT_EQ(load_be16(data[0].data.data()), 100);
  EXPECT_EQ(Bytes(data[0].data.begin() + 2, data[0].data.end()), reply);
  server_next_ += 102;

  // The client acknowledges and closes: the server acknowledges its FIN with its own.
  auto fin = send({}, ACK | FIN);
  ASSERT_EQ(fin.size(), 1u);
  EXPECT_TRUE(fin[0].has(FIN | ACK));
  EXPECT_EQ(fin[0].ack, next_);
  EXPECT_EQ(server_.connections(), 1u);
  EXPECT_TRUE(feed(segment(client_, server_ep_, next_, server_next_ + 1, ACK, 65535)).empty());
  EXPECT_EQ(server_.connections(), 0u);
  EXPECT_EQ(server_.counters().queries, 1u);
  EXPECT_EQ(server_.counters().answers, 1u);
  EXPECT_FALSE(server_.next_deadline());
}

TEST_F(TcpServerTest, QueryArrivesByteByByteAndFinWaitsForTheAnswer) {
  connect();
  const Bytes q = framed(7, 40);
  for (std::size_t i = 0; i < q.size(); ++i) {
    auto acks = send(ByteSpan(q.data() + i, 1), i + 1 == q.size() ? ACK | PSH | FIN : ACK | PSH);
    ASSERT_EQ(acks.size(), 1u);
    EXPECT_FALSE(acks[0].has(FIN)) << "no FIN before the answer";
    EXPECT_EQ(out_.queries.size(), i + 1 == q.size() ? 1u : 0u);
  }
  const Endpoint client = out_.queries[0].client;
  auto data = answer(client, Bytes(30, 1));
  ASSERT_EQ(data.size(), 2u);  // the answer, then our FIN
  EXPECT_EQ(data[0].data.size(), 32u);
  EXPECT_TRUE(data[1].has(FIN));
  EXPECT_EQ(data[1].seq, server_next_ + 32);
  feed(segment(client_, server_ep_, next_, server_next_ + 33, ACK, 65535));
  EXPECT_EQ(server_.connections(), 0u);
}

TEST_F(TcpServerTest, PipelinedQueriesAnsweredInAnyOrder) {
  connect();
  Bytes two = framed(1);
  const Bytes second = framed(2, 33);
  two.insert(two.end(), second.begin(), second.end());
  send(two);
  ASSERT_EQ(out_.queries.size(), 2u);
  const auto queries = out_.queries;
  EXPECT_EQ(load_be16(queries[1].wire.data()), 2);
  auto b = answer(queries[1].client, Bytes(10, 2));
  auto a = answer(queries[0].client, Bytes(20, 1));
  ASSERT_EQ(b.size(), 1u);
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].seq, b[0].seq + 12);
  EXPECT_EQ(server_.counters().answers, 2u);
}

TEST_F(TcpServerTest, LargeAnswerKeepsToTheMssAndTheWindow) {
  connect(2500, 1000);
  send(framed(9), ACK | PSH, 2500);
  Bytes reply(5000);
  for (std::size_t i = 0; i < reply.size(); ++i) reply[i] = static_cast<std::uint8_t>(i * 7);
  auto first = answer(out_.queries[0].client, reply);
  ASSERT_EQ(first.size(), 3u);  // 1000 + 1000 + 500: the window is full
  EXPECT_EQ(first[0].data.size(), 1000u);
  EXPECT_EQ(first[2].data.size(), 500u);
  Bytes stream;
  for (const Seg& s : first) stream.insert(stream.end(), s.data.begin(), s.data.end());
  std::uint32_t acked = server_next_;
  // The client reads and acknowledges as it goes, opening the window each time.
  for (int round = 0; round < 10 && stream.size() < reply.size() + 2; ++round) {
    acked += 1000;
    auto more = feed(segment(client_, server_ep_, next_, acked, ACK, 2500));
    for (const Seg& s : more) {
      EXPECT_EQ(s.seq, server_next_ + stream.size());
      EXPECT_LE(s.data.size(), 1000u);
      EXPECT_LE(s.seq + s.data.size(), acked + 2500);
      stream.insert(stream.end(), s.data.begin(), s.data.end());
    }
  }
  ASSERT_EQ(stream.size(), reply.size() + 2);
  EXPECT_EQ(load_be16(stream.data()), 5000);
  EXPECT_EQ(Bytes(stream.begin() + 2, stream.end()), reply);
}

TEST_F(TcpServerTest, UnacknowledgedAnswerIsResentThenReset) {
  connect();
  send(framed(3));
  answer(out_.queries[0].client, Bytes(50, 3));
  EXPECT_EQ(server_.next_deadline(), now_ + std::chrono::milliseconds(500));
  EXPECT_TRUE(tick(std::chrono::milliseconds(499)).empty());
  Duration rto = std::chrono::milliseconds(500);
  for (int i = 0; i < 5; ++i) {
    auto again = tick(rto);
    ASSERT_EQ(again.size(), 1u) << i;
    EXPECT_EQ(again[0].seq, server_next_);
    EXPECT_EQ(again[0].data.size(), 52u);
    rto *= 2;
  }
  auto reset = tick(rto);
  ASSERT_EQ(reset.size(), 1u);
  EXPECT_TRUE(reset[0].has(RST));
  EXPECT_EQ(server_.connections(), 0u);
  EXPECT_EQ(server_.counters().retransmits, 5u);
  EXPECT_EQ(server_.counters().timed_out, 1u);
  // The resolver's late answer finds nothing.
  EXPECT_TRUE(answer(client_with_local(), Bytes(10, 0)).empty());
  EXPECT_EQ(server_.counters().answers_dropped, 1u);
}

TEST_F(TcpServerTest, ClosedWindowIsProbed) {
  connect(0);
  send(framed(4), ACK | PSH, 0);
  EXPECT_TRUE(answer(out_.queries[0].client, Bytes(10, 4)).empty());  // window 0: nothing goes
  auto probe = tick(std::chrono::milliseconds(500));
  ASSERT_EQ(probe.size(), 1u);
  EXPECT_EQ(probe[0].data.size(), 1u);
  // The window opens: the rest follows.
  auto rest = feed(segment(client_, server_ep_, next_, server_next_ + 1, ACK, 1000));
  ASSERT_EQ(rest.size(), 1u);
  EXPECT_EQ(rest[0].seq, server_next_ + 1);
  EXPECT_EQ(rest[0].data.size(), 11u);
}

TEST_F(TcpServerTest, LostSynAckAndLostAck) {
  auto first = feed(segment(client_, server_ep_, iss_, 0, SYN, 65535, {}, 1460));
  auto again = feed(segment(client_, server_ep_, iss_, 0, SYN, 65535, {}, 1460));
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].seq, first[0].seq);  // the same SYN-ACK
  EXPECT_EQ(server_.counters().connections, 1u);
  // Our SYN-ACK retransmits on its own too.
  auto timed = tick(std::chrono::milliseconds(500));
  ASSERT_EQ(timed.size(), 1u);
  EXPECT_TRUE(timed[0].has(SYN | ACK));
  // The handshake's ACK carries the query already.
  server_next_ = first[0].seq + 1;
  next_ = iss_ + 1;
  send(framed(5));
  EXPECT_EQ(out_.queries.size(), 1u);
  // That segment again (our ACK was lost): ACKed again, not a second query.
  auto dup = feed(segment(client_, server_ep_, iss_ + 1, server_next_, ACK | PSH, 65535, framed(5)));
  ASSERT_EQ(dup.size(), 1u);
  EXPECT_EQ(dup[0].ack, next_);
  EXPECT_TRUE(out_.queries.empty());
  EXPECT_EQ(server_.counters().queries, 1u);
  EXPECT_EQ(server_.counters().out_of_order, 1u);
}

TEST_F(TcpServerTest, PartlyRetransmittedSegmentTakesOnlyTheNewBytes) {
  connect();
  const Bytes q = framed(6, 30);
  send(ByteSpan(q.data(), 10));
  // The kernel resends from the start with more bytes: the first 10 are trimmed.
  feed(segment(client_, server_ep_, next_ - 10, server_next_, ACK | PSH, 65535, q));
  ASSERT_EQ(out_.queries.size(), 1u);
  EXPECT_EQ(out_.queries[0].wire, Bytes(q.begin() + 2, q.end()));
}

TEST_F(TcpServerTest, FutureSegmentGetsADuplicateAck) {
  connect();
  auto dup = feed(segment(client_, server_ep_, next_ + 100, server_next_, ACK | PSH, 65535, framed(1)));
  ASSERT_EQ(dup.size(), 1u);
  EXPECT_EQ(dup[0].ack, next_);
  EXPECT_TRUE(out_.queries.empty());
}

TEST_F(TcpServerTest, SegmentsForNoConnectionAreReset) {
  auto a = feed(segment(client_, server_ep_, 100, 5000, ACK, 100));
  ASSERT_EQ(a.size(), 1u);
  EXPECT_TRUE(a[0].has(RST));
  EXPECT_FALSE(a[0].has(ACK));
  EXPECT_EQ(a[0].seq, 5000u);
  auto b = feed(segment(client_, server_ep_, 100, 0, PSH, 100, Bytes(5, 0)));
  ASSERT_EQ(b.size(), 1u);
  EXPECT_TRUE(b[0].has(RST | ACK));
  EXPECT_EQ(b[0].ack, 105u);
  EXPECT_TRUE(feed(segment(client_, server_ep_, 100, 0, RST, 100)).empty());
  EXPECT_EQ(server_.connections(), 0u);
}

TEST_F(TcpServerTest, OnlyAnExactResetCloses) {
  connect();
  auto challenge = feed(segment(client_, server_ep_, next_ + 10, 0, RST, 0));
  ASSERT_EQ(challenge.size(), 1u);
  EXPECT_TRUE(challenge[0].has(ACK));
  EXPECT_TRUE(feed(segment(client_, server_ep_, next_ + 100000, 0, RST, 0)).empty());
  EXPECT_EQ(server_.connections(), 1u);
  // A SYN in the middle of a connection earns a challenge ACK, not a reset.
  auto syn = feed(segment(client_, server_ep_, 42, 0, SYN, 100));
  ASSERT_EQ(syn.size(), 1u);
  EXPECT_EQ(syn[0].flags, ACK);
  feed(segment(client_, server_ep_, next_, 0, RST, 0));
  EXPECT_EQ(server_.connections(), 0u);
  EXPECT_EQ(server_.counters().resets_received, 1u);
}

TEST_F(TcpServerTest, LengthPrefixOutOfBoundsResets) {
  for (std::uint16_t length : {std::uint16_t{0}, std::uint16_t{11}, static_cast<std::uint16_t>(kMaxQuerySize + 1),
                               std::uint16_t{65535}}) {
    connect();
    Bytes prefix(2);
    store_be16(prefix.data(), length);
    auto r = send(prefix);
    ASSERT_EQ(r.size(), 1u) << length;
    EXPECT_TRUE(r[0].has(RST)) << length;
    EXPECT_EQ(server_.connections(), 0u);
  }
  EXPECT_EQ(server_.counters().bad_length, 4u);
}

TEST_F(TcpServerTest, IdleConnectionIsClosedByTheServer) {
  connect();
  EXPECT_TRUE(tick(std::chrono::seconds(9)).empty());
  auto fin = tick(std::chrono::seconds(1));
  ASSERT_EQ(fin.size(), 1u);
  EXPECT_TRUE(fin[0].has(FIN | ACK));
  EXPECT_EQ(server_.counters().idle_closed, 1u);
  // The client acknowledges and closes too.
  feed(segment(client_, server_ep_, next_, server_next_ + 1, ACK | FIN, 65535));
  EXPECT_EQ(server_.connections(), 0u);
}

TEST_F(TcpServerTest, ClientThatNeverClosesIsResetAfterAnotherIdlePeriod) {
  connect();
  tick(std::chrono::seconds(10));
  feed(segment(client_, server_ep_, next_, server_next_ + 1, ACK, 65535));  // acks our FIN only
  EXPECT_EQ(server_.connections(), 1u);
  auto r = tick(std::chrono::seconds(10));
  ASSERT_EQ(r.size(), 1u);
  EXPECT_TRUE(r[0].has(RST));
  EXPECT_EQ(server_.connections(), 0u);
}

TEST_F(TcpServerTest, PendingAnswerKeepsTheConnectionOpen) {
  connect();
  send(framed(8));
  ASSERT_EQ(out_.queries.size(), 1u);
  const Endpoint client = out_.queries[0].client;
  EXPECT_TRUE(tick(std::chrono::seconds(30)).empty());
  EXPECT_EQ(server_.connections(), 1u);
  EXPECT_EQ(answer(client, Bytes(12, 8)).size(), 1u);
}

TEST_F(TcpServerTest, Ipv6) {
  client_ = ep("[fd7a:115c:a1e0::2]:50000");
  server_ep_ = ep("[fd7a:115c:a1e0::6464:6464]:53");
  connect();
  send(framed(10));
  ASSERT_EQ(out_.queries.size(), 1u);
  auto data = answer(out_.queries[0].client, Bytes(64, 9));
  ASSERT_EQ(data.size(), 1u);
  EXPECT_EQ(data[0].data.size(), 66u);
}

class TcpServerBoundsTest : public TcpServerTest {
 protected:
  static TcpServer::Options small() {
    TcpServer::Options o;
    o.max_connections = 2;
    o.max_outstanding = 2;
    o.max_send_buffer = 1000;
    return o;
  }
  TcpServerBoundsTest() : TcpServerTest(small()) {}
};

TEST_F(TcpServerBoundsTest, TableOutstandingAndSendBufferAreBounded) {
  connect();
  Bytes three = framed(1);
  for (int i = 2; i <= 3; ++i) {
    const Bytes q = framed(static_cast<std::uint16_t>(i));
    three.insert(three.end(), q.begin(), q.end());
  }
  send(three);
  EXPECT_EQ(out_.queries.size(), 2u);
  EXPECT_EQ(server_.counters().queries_dropped, 1u);
  const Endpoint c = out_.queries[0].client;
  EXPECT_TRUE(answer(c, Bytes(2000, 0)).empty());  // over max_send_buffer: dropped
  EXPECT_EQ(server_.counters().answers_dropped, 1u);

  client_ = ep("100.64.0.2:41001");
  connect();
  client_ = ep("100.64.0.2:41002");
  auto refused = feed(segment(client_, server_ep_, 1, 0, SYN, 100));
  ASSERT_EQ(refused.size(), 1u);
  EXPECT_TRUE(refused[0].has(RST | ACK));
  EXPECT_EQ(server_.counters().refused_full, 1u);
  EXPECT_EQ(server_.connections(), 2u);
}

TEST_F(TcpServerTest, HostileSegmentsNeverCrashAndStayBounded) {
  SeededRandom mutate(99);
  std::vector<Bytes> seeds;
  seeds.push_back(segment(client_, server_ep_, 1, 0, SYN, 100, {}, 1460));
  seeds.push_back(segment(client_, server_ep_, 2, 1, ACK | PSH, 100, framed(1)));
  seeds.push_back(segment(client_, server_ep_, 2, 1, ACK | FIN, 100));
  seeds.push_back(segment(ep("[fd00::2]:1"), ep("[fd00::1]:53"), 1, 0, SYN, 100, {}, 1460));
  for (int i = 0; i < 20000; ++i) {
    Bytes p = seeds[mutate.uniform(static_cast<std::uint32_t>(seeds.size()))];
    const std::uint32_t flips = 1 + mutate.uniform(6);
    for (std::uint32_t f = 0; f < flips; ++f) p[mutate.uniform(static_cast<std::uint32_t>(p.size()))] ^= static_cast<std::uint8_t>(1 + mutate.uniform(255));
    if (mutate.uniform(4) == 0) p.resize(mutate.uniform(static_cast<std::uint32_t>(p.size()) + 1));
    out_.clear();
    server_.on_segment(now_, p, rng_, out_);
    for (const TcpServer::Query& q : out_.queries) server_.on_answer(now_, q.client, Bytes(20, 0), out_);
    if (i % 1000 == 0) {
      now_ += std::chrono::seconds(3);
      server_.on_timer(now_, out_);
    }
    ASSERT_LE(server_.connections(), 64u);
  }
  EXPECT_GT(server_.counters().malformed, 0u);
}

}  // namespace
}  // namespace knit::dns
