// ServerCore without sockets, on a manual clock: clients are ClientSessions whose bytes the test
// carries by hand. Admission and refusal by membership, cut-off of a removed member,
// replacement, forwarding (local, through a second relay, unknown -> peer_gone), queue bounds,
// handshake/idle timeouts and keepalives, a replayed message 1, garbage and oversized frames.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <set>
#include <vector>

#include "base/random.hpp"
#include "relay/client_session.hpp"
#include "relay/server_core.hpp"
#include "tests/support/relay_clients.hpp"
#include "wg/crypto.hpp"

namespace knit::relay {
namespace {

using ConnId = ServerIo::ConnId;
using testing::admit_all;
using testing::Client;
using testing::FakeIo;
using testing::Got;
using testing::pull;

class RelayCoreTest : public ::testing::Test {
 protected:
  RelayCoreTest() : relay_key_(wg::crypto::generate_private_key(rng_)) {}
  ServerCore make(ServerConfig config = {}) { return ServerCore(relay_key_, config, io_, rng_); }

  SeededRandom rng_{7};
  wg::PrivateKey relay_key_;
  FakeIo io_;
  Instant now_{};
};

TEST_F(RelayCoreTest, MembersAreAdmittedAndForwardLocally) {
  ServerCore core(relay_key_, {}, io_, rng_);
  Client a(rng_, core), b(rng_, core);
  ASSERT_TRUE(admit_all(core, {&a, &b}, now_));
  EXPECT_TRUE(core.has_client(a.pub()));
  EXPECT_TRUE(core.has_client(b.pub()));

  const Bytes packet(1420, 0xab);
  a.send(b.pub(), packet, now_);
  b.pump(now_);
  const auto got = b.of(FrameType::recv);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].key, a.pub());  // the relay names the sender from its handshake
  EXPECT_EQ(got[0].packet, packet);
  EXPECT_EQ(core.stats().packets_local, 1u);
  EXPECT_EQ(core.stats().bytes_local, 1420u);
  EXPECT_EQ(core.stats().clients, 2u);

  // The first Ping got a pong.
  a.pump(now_);
  EXPECT_EQ(a.of(FrameType::pong).size(), 1u);
}

TEST_F(RelayCoreTest, UnknownKeyIsRefusedAndCounted) {
  ServerCore core = make();
  Client stranger(rng_, core);
  // No membership yet: refused with its own reason.
  EXPECT_EQ(stranger.connect(now_), Admission::membership_unknown);
  EXPECT_TRUE(stranger.close_after());
  EXPECT_EQ(core.stats().refused_membership_unknown, 1u);

  Client member(rng_, core);
  core.set_members({member.pub()}, now_);
  Client stranger2(rng_, core);
  EXPECT_EQ(stranger2.connect(now_), Admission::not_member);
  EXPECT_TRUE(stranger2.close_after());
  EXPECT_FALSE(core.has_client(stranger2.pub()));
  EXPECT_EQ(core.stats().refused_not_member, 1u);
  // A client claiming to be a relay is refused too.
  Client fake_relay(rng_, core, Role::relay);
  EXPECT_EQ(fake_relay.connect(now_), Admission::not_relay);
  EXPECT_EQ(core.stats().refused_not_relay, 1u);
}

TEST_F(RelayCoreTest, RemovedMemberIsCutOffAtOnce) {
  ServerCore core = make();
  Client a(rng_, core), b(rng_, core);
  ASSERT_TRUE(admit_all(core, {&a, &b}, now_));
  core.set_members({b.pub()}, now_);
  EXPECT_FALSE(core.has_client(a.pub()));
  a.pump(now_);
  const auto closing = a.of(FrameType::closing);
  ASSERT_EQ(closing.size(), 1u);
  EXPECT_EQ(closing[0].reason, static_cast<std::uint8_t>(CloseReason::removed));
  EXPECT_TRUE(a.close_after());
  EXPECT_EQ(core.stats().cut_off, 1u);
  // Whatever a still sends is not read, and b cannot reach it any more.
  a.send(b.pub(), Bytes(10, 1), now_);
  b.pump(now_);
  EXPECT_TRUE(b.of(FrameType::recv).empty());
  b.send(a.pub(), Bytes(10, 2), now_);
  b.pump(now_);
  EXPECT_EQ(b.of(FrameType::peer_gone).size(), 1u);
}

TEST_F(RelayCoreTest, UnknownDestinationGetsPeerGone) {
  ServerCore core = make();
  Client a(rng_, core);
  ASSERT_TRUE(admit_all(core, {&a}, now_));
  NodeKey nobody{};
  nobody.fill(5);
  a.send(nobody, Bytes(100, 1), now_);
  a.pump(now_);
  const auto gone = a.of(FrameType::peer_gone);
  ASSERT_EQ(gone.size(), 1u);
  EXPECT_EQ(gone[0].key, nobody);
  EXPECT_EQ(core.stats().drop_no_route, 1u);
  EXPECT_EQ(core.stats().peer_gone_sent, 1u);
}

TEST_F(RelayCoreTest, ReconnectReplacesTheOldConnection) {
  ServerCore core = make();
  Client a(rng_, core), b(rng_, core);
  ASSERT_TRUE(admit_all(core, {&a, &b}, now_));
  const ConnId first = a.id();
  ASSERT_EQ(a.connect(now_), Admission::ok);  // same key, new connection
  EXPECT_NE(a.id(), first);
  EXPECT_EQ(core.stats().replaced, 1u);
  bool close_after = false;
  pull(core, first, &close_after);
  EXPECT_TRUE(close_after);
  // Traffic goes to the new connection.
  b.send(a.pub(), Bytes(50, 3), now_);
  a.pump(now_);
  EXPECT_EQ(a.of(FrameType::recv).size(), 1u);
}

// Message 1 is replayable: a replay answers, but takes nothing over until a transport message
// proves the keys, and the replayer has none.
TEST_F(RelayCoreTest, ReplayedMessage1ReplacesNothing) {
  ServerCore core = make();
  Client a(rng_, core), b(rng_, core);
  ASSERT_TRUE(admit_all(core, {&a, &b}, now_));
  const ConnId replay = core.on_accept(now_);
  core.on_bytes(replay, a.message1(), now_);
  EXPECT_FALSE(pull(core, replay).empty());  // an answer nobody can read
  core.on_bytes(replay, Bytes(40, 0), now_);  // garbage instead of a transport message
  EXPECT_EQ(core.stats().replaced, 0u);
  b.send(a.pub(), Bytes(50, 3), now_);
  a.pump(now_);
  EXPECT_EQ(a.of(FrameType::recv).size(), 1u);
}

TEST_F(RelayCoreTest, QueueIsBoundedAndDropsAreCounted) {
  ServerConfig config;
  config.max_queue_bytes = 16 * 1024;
  config.max_queue_frames = 1000;
  ServerCore core = make(config);
  Client a(rng_, core), b(rng_, core);
  ASSERT_TRUE(admit_all(core, {&a, &b}, now_));
  b.pump(now_);
  // b does not read: its queue fills and the rest is dropped.
  for (int i = 0; i < 100; ++i) a.send(b.pub(), Bytes(1000, static_cast<std::uint8_t>(i)), now_);
  const Stats& s = core.stats();
  EXPECT_GT(s.drop_queue_full, 0u);
  EXPECT_EQ(s.packets_local + s.drop_queue_full, 100u);
  Bytes queued;
  core.take_output(b.id(), queued);
  EXPECT_LE(queued.size(), config.max_queue_bytes);
  // Every queued packet is one split frame of the same size (b has split data frames).
  const std::size_t frame_size =
      control::kFrameHeaderSize + control::kSplitOverhead + kDataHeadSize + 1000;
  EXPECT_EQ(queued.size(), s.packets_local * frame_size);
  // Once drained, packets flow again.
  a.send(b.pub(), Bytes(1000, 1), now_);
  EXPECT_EQ(core.stats().packets_local, s.packets_local);
}

TEST_F(RelayCoreTest, FrameCountBoundToo) {
  ServerConfig config;
  config.max_queue_frames = 10;
  ServerCore core = make(config);
  Client a(rng_, core), b(rng_, core);
  ASSERT_TRUE(admit_all(core, {&a, &b}, now_));
  b.pump(now_);
  for (int i = 0; i < 30; ++i) a.send(b.pub(), Bytes(10, 1), now_);
  EXPECT_EQ(core.stats().packets_local, 10u);
  EXPECT_EQ(core.stats().drop_queue_full, 20u);
}

TEST_F(RelayCoreTest, SlowlorisHandshakeTimesOut) {
  ServerConfig config;
  ServerCore core = make(config);
  Client a(rng_, core);
  core.set_members({a.pub()}, now_);
  const ConnId silent = core.on_accept(now_);
  const ConnId dribbler = core.on_accept(now_);
  core.on_bytes(dribbler, Bytes{0, 0}, now_);
  now_ += config.handshake_timeout / 2;
  core.on_bytes(dribbler, Bytes{0}, now_);  // still busy, still not a handshake
  core.on_timer(now_);
  EXPECT_EQ(io_.closed.count(silent), 0u);
  now_ += config.handshake_timeout / 2;
  core.on_timer(now_);
  EXPECT_EQ(io_.closed.count(silent), 1u);
  EXPECT_EQ(io_.closed.count(dribbler), 1u);
  EXPECT_EQ(core.stats().handshake_timeouts, 2u);
  EXPECT_EQ(core.connections(), 2u);  // destroyed on the next entry
  core.on_timer(now_);
  EXPECT_EQ(core.connections(), 0u);
}

TEST_F(RelayCoreTest, SilentConnectionsFromOneSourceLoseTheirOwnOldestNotMembers) {
  ServerConfig config;
  config.max_handshakes = 4;
  config.max_handshakes_per_source = 2;
  ServerCore core = make(config);
  Client a(rng_, core), b(rng_, core);
  core.set_members({a.pub(), b.pub()}, now_);
  const IpAddress flooder = IpAddress::parse("192.0.2.9").value();
  std::vector<ConnId> flood;
  for (int i = 0; i < 6; ++i) flood.push_back(core.on_accept(now_, flooder));
  // The source keeps its newest two; each newer one cost it its oldest.
  for (int i = 0; i < 4; ++i) EXPECT_EQ(io_.closed.count(flood[i]), 1u) << i;
  for (int i = 4; i < 6; ++i) EXPECT_EQ(io_.closed.count(flood[i]), 0u) << i;
  EXPECT_EQ(core.stats().handshake_evicted, 4u);

  // Members from elsewhere get in; admission gives their slots back.
  ASSERT_EQ(a.connect(now_), Admission::ok);
  a.pump(now_);
  ASSERT_EQ(b.connect(now_), Admission::ok);
  b.pump(now_);
  EXPECT_TRUE(core.has_client(a.pub()));
  EXPECT_TRUE(core.has_client(b.pub()));
  EXPECT_EQ(core.stats().handshake_evicted, 4u);
  // A full table from several sources: the newcomer evicts the busiest source's oldest.
  const ConnId other = core.on_accept(now_, IpAddress::parse("198.51.100.7").value());
  const ConnId v6 = core.on_accept(now_, IpAddress::parse("2001:db8::1").value());
  const ConnId v6_same_64 = core.on_accept(now_, IpAddress::parse("2001:db8::2").value());
  EXPECT_EQ(io_.closed.count(flood[4]), 1u);  // 192.0.2.9 held the most
  EXPECT_EQ(io_.closed.count(other), 0u);
  EXPECT_EQ(io_.closed.count(v6), 0u);
  EXPECT_EQ(io_.closed.count(v6_same_64), 0u);
  EXPECT_EQ(core.stats().handshake_evicted, 5u);
  EXPECT_TRUE(core.has_client(a.pub()));
}

TEST_F(RelayCoreTest, GarbageAndOversizedHandshakesAreDroppedUnread) {
  ServerCore core = make();
  const ConnId huge = core.on_accept(now_);
  core.on_bytes(huge, Bytes{0x00, 0x01, 0x00, 0x00}, now_);  // declares 64 KiB: refused unread
  EXPECT_EQ(io_.closed.count(huge), 1u);
  EXPECT_EQ(core.stats().drop_oversize, 1u);

  SeededRandom garbage_rng(3);
  for (int i = 0; i < 200; ++i) {
    const ConnId id = core.on_accept(now_);
    Bytes junk(1 + garbage_rng.uniform(300));
    garbage_rng.fill(junk);
    if (garbage_rng.uniform(2) == 0 && junk.size() >= 4) store_be32(junk.data(), 98);  // plausible length
    core.on_bytes(id, junk, now_);
  }
  EXPECT_EQ(core.stats().admitted, 0u);
  EXPECT_GT(core.stats().handshake_failed, 100u);
}

TEST_F(RelayCoreTest, KeepalivesAndIdleTimeout) {
  ServerConfig config;
  ServerCore core = make(config);
  Client a(rng_, core), b(rng_, core);
  ASSERT_TRUE(admit_all(core, {&a, &b}, now_));
  a.pump(now_);
  b.pump(now_);
  now_ += config.keepalive;
  core.on_timer(now_);
  a.pump(now_);
  EXPECT_EQ(a.of(FrameType::keepalive).size(), 1u);
  // a keeps talking, b goes silent.
  for (int i = 0; i < 4; ++i) {
    now_ += config.idle_timeout / 4;
    Bytes keepalive;
    encode_keepalive(keepalive);
    a.send_frame(keepalive, now_);
    core.on_timer(now_);
    b.pump(now_);  // b reads (it is only silent)
  }
  EXPECT_TRUE(core.has_client(a.pub()));
  EXPECT_FALSE(core.has_client(b.pub()));
  EXPECT_EQ(core.stats().idle_timeouts, 1u);
  ASSERT_FALSE(b.of(FrameType::closing).empty());
  EXPECT_EQ(b.of(FrameType::closing).back().reason, static_cast<std::uint8_t>(CloseReason::idle));
}

TEST_F(RelayCoreTest, ClientsMayNotSendRelayFrames) {
  ServerCore core = make();
  Client a(rng_, core), b(rng_, core);
  ASSERT_TRUE(admit_all(core, {&a, &b}, now_));
  Bytes frame;
  encode_forward(b.pub(), b.pub(), Bytes(10, 1), frame);  // spoofing a source
  a.send_frame(frame, now_);
  encode_keys(FrameType::present, {b.pub()}, frame);
  a.send_frame(frame, now_);
  a.send_frame(Bytes{0x55, 1, 2}, now_);  // unknown type
  a.send_frame(Bytes{0x01, 1}, now_);     // truncated send
  b.pump(now_);
  EXPECT_TRUE(b.of(FrameType::recv).empty());
  EXPECT_EQ(core.stats().drop_not_allowed, 2u);
  EXPECT_EQ(core.stats().drop_unknown_type, 1u);
  EXPECT_EQ(core.stats().drop_malformed, 1u);
  EXPECT_TRUE(core.has_client(a.pub()));  // a bad frame drops the frame, not the client
}

// ---------------------------------------------------------------- two relays

// Two cores whose dials the test connects by hand.
class RelayMeshTest : public ::testing::Test {
 protected:
  struct Side {
    Side(Random& rng) : key(wg::crypto::generate_private_key(rng)) {}
    wg::PrivateKey key;
    FakeIo io;
    std::unique_ptr<ServerCore> core;
    control::RelayInfo info;
  };

  RelayMeshTest() : x_(rng_), y_(rng_) {
    for (Side* s : {&x_, &y_}) {
      s->core = std::make_unique<ServerCore>(s->key, ServerConfig{}, s->io, rng_);
      s->info.name = s == &x_ ? "x" : "y";
      s->info.node_key = s->core->public_key();
      s->info.addresses = {control::HostPort{"127.0.0.1", 1}};
    }
  }

  // Carries the dial the smaller relay asked for to the other one, and pumps the link.
  void link() {
    Side& dialer = x_.core->public_key() < y_.core->public_key() ? x_ : y_;
    Side& other = &dialer == &x_ ? y_ : x_;
    ASSERT_EQ(dialer.io.dials.size(), 1u);
    ASSERT_TRUE(other.io.dials.empty());
    out_ = dialer.io.dials[0].first;
    in_ = other.core->on_accept(now_);
    dialer.core->on_dialed(out_, now_);
    dialer_ = &dialer;
    other_ = &other;
    pump_link();
  }
  void pump_link() {
    for (int i = 0; i < 6; ++i) {
      const Bytes a = pull(*dialer_->core, out_);
      if (!a.empty()) other_->core->on_bytes(in_, a, now_);
      const Bytes b = pull(*other_->core, in_);
      if (!b.empty()) dialer_->core->on_bytes(out_, b, now_);
    }
  }

  SeededRandom rng_{11};
  Side x_, y_;
  Side* dialer_ = nullptr;
  Side* other_ = nullptr;
  ConnId out_ = 0, in_ = 0;
  Instant now_{};
};

TEST_F(RelayMeshTest, ClientsOnDifferentRelaysMeet) {
  Client a(rng_, *x_.core), b(rng_, *y_.core);
  for (Side* s : {&x_, &y_}) {
    s->core->set_members({a.pub(), b.pub()}, now_);
    s->core->set_relays({x_.info, y_.info}, now_);
  }
  ASSERT_EQ(a.connect(now_), Admission::ok);  // before the link: announced in the present list
  link();
  EXPECT_EQ(x_.core->stats().relay_links, 1u);
  EXPECT_EQ(y_.core->stats().relay_links, 1u);
  ASSERT_EQ(b.connect(now_), Admission::ok);  // after: announced on its own
  pump_link();
  EXPECT_EQ(x_.core->stats().remote_clients, 1u);
  EXPECT_EQ(y_.core->stats().remote_clients, 1u);

  const Bytes packet(1420, 0x42);
  a.send(b.pub(), packet, now_);
  pump_link();
  b.pump(now_);
  auto got = b.of(FrameType::recv);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].key, a.pub());
  EXPECT_EQ(got[0].packet, packet);
  EXPECT_EQ(x_.core->stats().packets_to_mesh, 1u);
  EXPECT_EQ(y_.core->stats().packets_from_mesh, 1u);

  b.send(a.pub(), Bytes(64, 1), now_);
  pump_link();
  a.pump(now_);
  EXPECT_EQ(a.of(FrameType::recv).size(), 1u);

  // b leaves y: y announces absent, and x answers a's next packet with peer_gone.
  y_.core->set_members({a.pub()}, now_);
  pump_link();
  a.send(b.pub(), Bytes(64, 1), now_);
  a.pump(now_);
  EXPECT_EQ(a.of(FrameType::peer_gone).size(), 1u);
}

TEST_F(RelayMeshTest, OnlyRelaysInTheMapMayLink) {
  // y does not know x as a relay yet: x's dial is refused and retried later.
  x_.core->set_members({}, now_);
  y_.core->set_members({}, now_);
  x_.core->set_relays({x_.info, y_.info}, now_);
  y_.core->set_relays({x_.info, y_.info}, now_);
  Side& dialer = x_.core->public_key() < y_.core->public_key() ? x_ : y_;
  Side& other = &dialer == &x_ ? y_ : x_;
  other.core->set_relays({other.info}, now_);
  ASSERT_EQ(dialer.io.dials.size(), 1u);
  const ConnId out = dialer.io.dials[0].first;
  const ConnId in = other.core->on_accept(now_);
  dialer.core->on_dialed(out, now_);
  other.core->on_bytes(in, pull(*dialer.core, out), now_);
  dialer.core->on_bytes(out, pull(*other.core, in), now_);
  EXPECT_EQ(other.core->stats().refused_not_relay, 1u);
  EXPECT_EQ(dialer.io.closed.count(out), 1u);
  EXPECT_EQ(dialer.core->stats().relay_links, 0u);
  // The dialer tries again after a backoff, not at once.
  dialer.core->on_timer(now_);
  EXPECT_EQ(dialer.io.dials.size(), 1u);
  now_ += std::chrono::seconds(3);
  dialer.core->on_timer(now_);
  EXPECT_EQ(dialer.io.dials.size(), 2u);
}

}  // namespace
}  // namespace knit::relay

namespace knit::relay {
namespace {

std::vector<Bytes> numbered_packets(std::size_t n, std::size_t size) {
  std::vector<Bytes> packets;
  for (std::size_t i = 0; i < n; ++i) {
    Bytes p(size + i % 7);
    for (std::size_t j = 0; j < p.size(); ++j) p[j] = static_cast<std::uint8_t>(i * 31 + j);
    packets.push_back(std::move(p));
  }
  return packets;
}

// One read carrying many frames: all forwarded, in order, and out in one buffer for one write.
TEST_F(RelayCoreTest, ManyFramesInOneReadAreForwardedInOrder) {
  ServerCore core = make();
  Client a(rng_, core), b(rng_, core);
  ASSERT_TRUE(admit_all(core, {&a, &b}, now_));
  b.pump(now_);
  b.received.clear();
  const auto packets = numbered_packets(100, 1400);
  a.feed_raw(a.seal_sends(b.pub(), packets), now_);
  EXPECT_EQ(core.stats().packets_local, 100u);
  b.pump(now_);
  const auto got = b.of(FrameType::recv);
  ASSERT_EQ(got.size(), packets.size());
  for (std::size_t i = 0; i < packets.size(); ++i) {
    EXPECT_EQ(got[i].key, a.pub());
    EXPECT_EQ(got[i].packet, packets[i]) << i;
  }
}

// The same frames cut at every possible place across two reads, and one byte per read.
TEST_F(RelayCoreTest, FramesSplitAcrossReadsAtAnyByte) {
  ServerCore core = make();
  Client a(rng_, core), b(rng_, core);
  ASSERT_TRUE(admit_all(core, {&a, &b}, now_));
  b.pump(now_);
  b.received.clear();
  std::size_t expected = 0;
  const auto packets = numbered_packets(3, 40);
  // Every batch is fed (each advances the sender's nonce): the first one whole.
  const Bytes first = a.seal_sends(b.pub(), packets);
  a.feed_raw(first, now_);
  expected += packets.size();
  for (std::size_t cut = 1; cut < first.size(); cut += 3) {
    const Bytes bytes = a.seal_sends(b.pub(), packets);
    a.feed_raw(ByteSpan(bytes).first(cut), now_);
    a.feed_raw(ByteSpan(bytes).subspan(cut), now_);
    expected += packets.size();
  }
  const Bytes bytes = a.seal_sends(b.pub(), packets);
  for (std::size_t i = 0; i < bytes.size(); ++i) a.feed_raw(ByteSpan(bytes).subspan(i, 1), now_);
  expected += packets.size();
  b.pump(now_);
  const auto got = b.of(FrameType::recv);
  ASSERT_EQ(got.size(), expected);
  for (std::size_t i = 0; i < got.size(); ++i) EXPECT_EQ(got[i].packet, packets[i % packets.size()]) << i;
  EXPECT_EQ(core.stats().drop_malformed, 0u);
}

// A client that never reads: the relay holds at most max_queue_bytes for it however much is
// sent, and its queue storage does not outgrow that; once drained, an idle queue gives its
// storage back.
TEST_F(RelayCoreTest, SlowClientNeverCostsUnboundedMemory) {
  ServerConfig config;
  config.max_queue_bytes = 64 * 1024;
  ServerCore core = make(config);
  Client a(rng_, core), b(rng_, core);
  ASSERT_TRUE(admit_all(core, {&a, &b}, now_));
  b.pump(now_);
  for (int round = 0; round < 20; ++round)
    a.feed_raw(a.seal_sends(b.pub(), numbered_packets(50, 1400)), now_);
  const Stats& s = core.stats();
  EXPECT_EQ(s.packets_local + s.drop_queue_full, 1000u);
  EXPECT_GT(s.drop_queue_full, 900u);
  Bytes queued;
  core.take_output(b.id(), queued);
  EXPECT_LE(queued.size(), config.max_queue_bytes);
  EXPECT_GT(queued.size(), config.max_queue_bytes - 2000);
  // The writer gives its buffer back (as the adapter does): nothing is queued, and the empty
  // queue keeps no more than a small buffer.
  Bytes next;
  EXPECT_EQ(core.take_output(b.id(), next), ServerCore::Take::keep);
  EXPECT_TRUE(next.empty());
}

// take_output swaps buffers: a busy connection cycles two buffers, so steady forwarding
// reuses the same storage (no allocation per packet or per write).
TEST_F(RelayCoreTest, OutputBuffersAreReused) {
  ServerCore core = make();
  Client a(rng_, core), b(rng_, core);
  ASSERT_TRUE(admit_all(core, {&a, &b}, now_));
  b.pump(now_);
  Bytes writing;
  std::set<const std::uint8_t*> storage;
  for (int round = 0; round < 10; ++round) {
    a.feed_raw(a.seal_sends(b.pub(), numbered_packets(20, 1000)), now_);
    writing.clear();
    core.take_output(b.id(), writing);
    ASSERT_FALSE(writing.empty());
    if (round >= 2) storage.insert(writing.data());
  }
  EXPECT_LE(storage.size(), 2u);
}

}  // namespace
}  // namespace knit::relay
