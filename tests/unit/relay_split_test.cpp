// Split data frames on the relay hop (relay/frame.hpp, control/channel.hpp): the channel's split
// messages (head sealed, tail as it is), the feature's negotiation between the real cores in
// every old/new combination, and hostile bytes: a tampered head, a tampered packet (passed on by
// the relay, dropped by WireGuard at the receiver), a replayed frame, a control frame sent
// split, a split message to a side that never enabled them.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <deque>

#include "base/random.hpp"
#include "control/channel.hpp"
#include "relay/client_session.hpp"
#include "relay/server_core.hpp"
#include "tests/support/relay_channel_pair.hpp"
#include "tests/support/relay_clients.hpp"
#include "tests/support/ipv4_udp_packet.hpp"
#include "wg/crypto.hpp"
#include "wg/device.hpp"

namespace knit::relay {
namespace {

using control::Channel;
using control::ChannelError;
using control::ChannelEvent;
using testing::admit_all;
using testing::ChannelPair;
using testing::Client;
using testing::FakeIo;
using testing::pull;

// ---------------------------------------------------------------- the channel alone

const Bytes kHead{0x01, 2, 3, 4};
const Bytes kTail(1420, 0x5c);

TEST(ChannelSplit, RoundTripShowsWhatWasSealed) {
  ChannelPair p(5);
  p.server.set_split_frames(true);
  Bytes wire;
  ASSERT_EQ(p.client.seal_split_append(kHead, kTail, wire), ChannelError::ok);
  ASSERT_EQ(wire.size(), 4 + control::kSplitOverhead + kHead.size() + kTail.size());
  EXPECT_EQ(load_be32(wire.data()) & control::kSplitFlag, control::kSplitFlag);
  // The tail travels as it is; the head does not.
  EXPECT_TRUE(std::equal(kTail.begin(), kTail.end(), wire.end() - static_cast<std::ptrdiff_t>(kTail.size())));
  ByteSpan in(wire);
  const ChannelEvent ev = p.server.feed(in);
  ASSERT_EQ(ev.kind, ChannelEvent::Kind::message);
  EXPECT_TRUE(ev.split);
  EXPECT_EQ(ev.sealed_size, kHead.size());
  Bytes expect = kHead;
  expect.insert(expect.end(), kTail.begin(), kTail.end());
  EXPECT_EQ(ev.data, expect);
  // Whole messages still go both ways on the same nonce counter.
  Bytes whole;
  ASSERT_EQ(p.client.seal(kHead, whole), ChannelError::ok);
  ByteSpan in2(whole);
  const ChannelEvent ev2 = p.server.feed(in2);
  ASSERT_EQ(ev2.kind, ChannelEvent::Kind::message);
  EXPECT_FALSE(ev2.split);
  EXPECT_EQ(ev2.data, kHead);
}

TEST(ChannelSplit, TamperedTailPassesTheChannelTamperedHeadOrLengthDoesNot) {
  for (int where = 0; where < 5; ++where) {
    SCOPED_TRACE(where);
    ChannelPair p(5);
    p.server.set_split_frames(true);
    Bytes wire;
    ASSERT_EQ(p.client.seal_split_append(kHead, kTail, wire), ChannelError::ok);
    Bytes cut;  // the same message with its tail one byte shorter and the length to match
    switch (where) {
      case 0: wire.back() ^= 1; break;          // the tail: not this hop's to check
      case 1: wire[4 + 1] ^= 1; break;          // the sealed head
      case 2: wire[4] = 3; break;               // the head size
      case 3: wire[4 + 1 + kHead.size() + 3] ^= 1; break;  // the head's tag
      case 4:
        wire.pop_back();
        store_be32(wire.data(), load_be32(wire.data()) - 1);
        break;
    }
    ByteSpan in(wire);
    const ChannelEvent ev = p.server.feed(in);
    if (where == 0) {
      ASSERT_EQ(ev.kind, ChannelEvent::Kind::message);
      EXPECT_EQ(ev.sealed_size, kHead.size());
      EXPECT_NE(ev.data.back(), kTail.back());
    } else {
      ASSERT_EQ(ev.kind, ChannelEvent::Kind::error);
      EXPECT_EQ(ev.error, ChannelError::decrypt_failed);
      EXPECT_FALSE(p.server.is_open());
    }
  }
}

TEST(ChannelSplit, ReplayedOrReorderedSplitMessagesFail) {
  ChannelPair p(5);
  p.server.set_split_frames(true);
  Bytes first, second;
  ASSERT_EQ(p.client.seal_split_append(kHead, kTail, first), ChannelError::ok);
  ASSERT_EQ(p.client.seal_split_append(kHead, kTail, second), ChannelError::ok);
  ByteSpan in(first);
  ASSERT_EQ(p.server.feed(in).kind, ChannelEvent::Kind::message);
  ByteSpan again(first);  // the same bytes once more
  const ChannelEvent ev = p.server.feed(again);
  EXPECT_EQ(ev.kind, ChannelEvent::Kind::error);
  EXPECT_EQ(ev.error, ChannelError::decrypt_failed);

  ChannelPair q(5);
  q.server.set_split_frames(true);
  Bytes a, b;
  ASSERT_EQ(q.client.seal_split_append(kHead, kTail, a), ChannelError::ok);
  ASSERT_EQ(q.client.seal_split_append(kHead, kTail, b), ChannelError::ok);
  ByteSpan in_b(b);  // the second before the first
  EXPECT_EQ(q.server.feed(in_b).kind, ChannelEvent::Kind::error);
}

TEST(ChannelSplit, NotEnabledIsFatalAndMalformedSplitIsFatal) {
  ChannelPair p(5);  // the server never enabled split messages
  Bytes wire;
  ASSERT_EQ(p.client.seal_split_append(kHead, kTail, wire), ChannelError::ok);
  ByteSpan in(wire);
  const ChannelEvent ev = p.server.feed(in);
  ASSERT_EQ(ev.kind, ChannelEvent::Kind::error);
  EXPECT_EQ(ev.error, ChannelError::frame_too_large);

  // A head size of 0, and one longer than the body: malformed, never read past the frame.
  for (std::uint8_t head : {std::uint8_t{0}, std::uint8_t{200}}) {
    ChannelPair q(5);
    q.server.set_split_frames(true);
    Bytes bad(4 + 1 + 20, 0);
    store_be32(bad.data(), static_cast<std::uint32_t>(bad.size() - 4) | control::kSplitFlag);
    bad[4] = head;
    ByteSpan bin(bad);
    const ChannelEvent e = q.server.feed(bin);
    ASSERT_EQ(e.kind, ChannelEvent::Kind::error);
    EXPECT_EQ(e.error, ChannelError::malformed);
  }
  // Sealing refuses an empty or oversized head.
  ChannelPair r(5);
  Bytes out;
  EXPECT_EQ(r.client.seal_split_append({}, kTail, out), ChannelError::malformed);
  EXPECT_EQ(r.client.seal_split_append(Bytes(256, 1), kTail, out), ChannelError::malformed);
  EXPECT_TRUE(out.empty());
  EXPECT_TRUE(r.client.is_open());
}

// ---------------------------------------------------------------- frames

TEST(RelaySplitFrame, HelloAndResultKeepTheirOriginalFormWithoutFeatures) {
  EXPECT_EQ(encode(Hello{}), (Bytes{kRelayVersion, 0}));
  Hello offer;
  offer.features = kFeatureSplitData;
  EXPECT_EQ(encode(offer), (Bytes{kRelayVersion, 0, kFeatureSplitData}));
  EXPECT_EQ(parse_hello(Bytes{1, 0})->features, 0);
  EXPECT_EQ(parse_hello(encode(offer))->features, kFeatureSplitData);
  EXPECT_EQ(encode(Result{}).size(), kResultSize);
  Result grant;
  grant.features = kFeatureSplitData;
  EXPECT_EQ(parse_result(encode(grant))->features, kFeatureSplitData);
  EXPECT_EQ(parse_result(Bytes{0, 0, 20})->features, 0);
}

TEST(RelaySplitFrame, OnlyDataFramesWithExactlyTheirHeadSealed) {
  Bytes send;
  ASSERT_TRUE(encode_send(NodeKey{}, Bytes(100, 1), send));
  Frame f;
  EXPECT_EQ(parse_split_frame(send, kDataHeadSize, f), ParseError::ok);
  EXPECT_EQ(f.packet.size(), 100u);
  EXPECT_EQ(parse_split_frame(send, kDataHeadSize - 1, f), ParseError::not_data);
  EXPECT_EQ(parse_split_frame(send, kDataHeadSize + 1, f), ParseError::not_data);
  Bytes fwd;
  ASSERT_TRUE(encode_forward(NodeKey{}, NodeKey{}, Bytes(100, 1), fwd));
  EXPECT_EQ(parse_split_frame(fwd, kForwardHeadSize, f), ParseError::ok);
  Bytes ping;
  encode_ping(7, ping);
  EXPECT_EQ(parse_split_frame(ping, 1, f), ParseError::not_data);
  EXPECT_EQ(parse_split_frame(ping, ping.size(), f), ParseError::not_data);
  EXPECT_EQ(parse_split_frame({}, 0, f), ParseError::empty);
  Bytes head_only(kDataHeadSize, 0);
  head_only[0] = static_cast<std::uint8_t>(FrameType::recv);
  EXPECT_EQ(parse_split_frame(head_only, kDataHeadSize, f), ParseError::bad_packet);
}

// ---------------------------------------------------------------- the cores, old and new

class RelaySplitCore : public ::testing::Test {
 protected:
  RelaySplitCore() : relay_key_(wg::crypto::generate_private_key(rng_)) {}
  SeededRandom rng_{17};
  wg::PrivateKey relay_key_;
  FakeIo io_;
  Instant now_{};
};

// Packets both ways between a and b, sealed by each side's seal_send (split where granted).
void exchange(Client& a, Client& b, Instant now) {
  const Bytes one(1420, 0x11), two(200, 0x22);
  a.feed_raw(a.seal_sends(b.pub(), {one}), now);
  b.feed_raw(b.seal_sends(a.pub(), {two}), now);
  a.pump(now);
  b.pump(now);
  const auto at_b = b.of(FrameType::recv);
  const auto at_a = a.of(FrameType::recv);
  ASSERT_EQ(at_b.size(), 1u);
  ASSERT_EQ(at_a.size(), 1u);
  EXPECT_EQ(at_b[0].packet, one);
  EXPECT_EQ(at_b[0].key, a.pub());
  EXPECT_EQ(at_a[0].packet, two);
  EXPECT_EQ(at_a[0].key, b.pub());
  EXPECT_EQ(a.bad_frames + b.bad_frames, 0u);
}

TEST_F(RelaySplitCore, NewAgentsOnANewRelaySplit) {
  ServerCore core(relay_key_, {}, io_, rng_);
  Client a(rng_, core), b(rng_, core);
  ASSERT_TRUE(admit_all(core, {&a, &b}, now_));
  EXPECT_TRUE(a.session().split_data());
  EXPECT_TRUE(b.session().split_data());
  EXPECT_TRUE(a.session().data_runs());
  // a's send leaves as a run of one: the packet is in the clear on the wire after a 33-byte
  // sealed head, then its length and the count.
  const Bytes packet(300, 0x77);
  const Bytes wire = a.seal_sends(b.pub(), {packet});
  ASSERT_EQ(wire.size(), 4 + control::kSplitOverhead + kDataHeadSize + packet.size() + control::run_trailer_size(1));
  EXPECT_TRUE(std::equal(packet.begin(), packet.end(), wire.end() - 300 - 3));
  a.feed_raw(wire, now_);  // (it took a nonce: the relay must see it)
  b.pump(now_);
  ASSERT_EQ(b.of(FrameType::recv).size(), 1u);
  b.received.clear();
  exchange(a, b, now_);
}

TEST_F(RelaySplitCore, OldAgentOnANewRelayGetsWholeFramesAndStillTalksToNewOnes) {
  ServerCore core(relay_key_, {}, io_, rng_);
  Client a(rng_, core), old(rng_, core, Role::client, 0);
  ASSERT_TRUE(admit_all(core, {&a, &old}, now_));
  EXPECT_TRUE(a.session().split_data());
  EXPECT_FALSE(old.session().split_data());
  // The old agent's message 1 is the original size: a two-byte Hello.
  EXPECT_EQ(old.message1().size(), 4 + wg::noise::IkHandshake::message1_size(kHelloSize));
  exchange(a, old, now_);
  EXPECT_EQ(core.stats().connection_errors, 0u);
  EXPECT_EQ(core.stats().drop_split_not_data, 0u);
}

TEST_F(RelaySplitCore, NewAgentOnAnOldRelayKeepsWholeFrames) {
  ServerConfig old_relay;
  old_relay.split_data = false;  // the original Result: no features byte
  ServerCore core(relay_key_, old_relay, io_, rng_);
  Client a(rng_, core), b(rng_, core);
  ASSERT_TRUE(admit_all(core, {&a, &b}, now_));
  EXPECT_FALSE(a.session().split_data());
  EXPECT_FALSE(b.session().split_data());
  const Bytes wire = a.seal_sends(b.pub(), {Bytes(300, 0x77)});
  EXPECT_EQ(wire.size(), 4 + 1 + kKeySize + 300 + control::kAeadTagSize);
  EXPECT_EQ(load_be32(wire.data()) & control::kSplitFlag, 0u);
  a.feed_raw(wire, now_);
  b.pump(now_);
  ASSERT_EQ(b.of(FrameType::recv).size(), 1u);
  b.received.clear();
  exchange(a, b, now_);
}

TEST_F(RelaySplitCore, TamperedHeadEndsTheConnectionReplayToo) {
  ServerCore core(relay_key_, {}, io_, rng_);
  Client a(rng_, core), b(rng_, core), c(rng_, core);
  ASSERT_TRUE(admit_all(core, {&a, &b, &c}, now_));
  Bytes wire = a.seal_sends(b.pub(), {Bytes(300, 0x77)});
  wire[4 + 1 + 5] ^= 0x01;  // a byte of the sealed destination key
  a.feed_raw(wire, now_);
  b.pump(now_);
  EXPECT_TRUE(b.of(FrameType::recv).empty());
  EXPECT_EQ(core.stats().connection_errors, 1u);
  EXPECT_FALSE(core.has_client(a.pub()));

  const Bytes once = c.seal_sends(b.pub(), {Bytes(300, 0x78)});
  c.feed_raw(once, now_);
  c.feed_raw(once, now_);  // replayed on the stream
  b.pump(now_);
  EXPECT_EQ(b.of(FrameType::recv).size(), 1u) << "the first copy only";
  EXPECT_EQ(core.stats().connection_errors, 2u);
  EXPECT_FALSE(core.has_client(c.pub()));
}

TEST_F(RelaySplitCore, SessionSealsOnlyDataHeadsSplit) {
  ServerCore core(relay_key_, {}, io_, rng_);
  Client a(rng_, core), b(rng_, core);
  ASSERT_TRUE(admit_all(core, {&a, &b}, now_));
  Bytes ping;
  encode_ping(99, ping);
  Bytes out;
  EXPECT_FALSE(a.session().seal_data(ping, Bytes(4, 0), out)) << "not a data head";
  Bytes send;
  ASSERT_TRUE(encode_send(b.pub(), Bytes(10, 1), send));
  EXPECT_FALSE(a.session().seal_data(ByteSpan(send).first(kDataHeadSize + 1), Bytes(4, 0), out));
  EXPECT_FALSE(a.session().seal_data(ByteSpan(send).first(kDataHeadSize), {}, out)) << "no packet";
  EXPECT_TRUE(out.empty());
  EXPECT_TRUE(a.session().seal_data(ByteSpan(send).first(kDataHeadSize), Bytes(4, 0), out));
}

// A hostile client: the real channel, driven by hand, so it can split what it likes.
TEST_F(RelaySplitCore, HostileSplitMessagesAreCountedNotForwarded) {
  ServerCore core(relay_key_, {}, io_, rng_);
  Client b(rng_, core);
  SeededRandom rng(3);
  const wg::PrivateKey key = wg::crypto::generate_private_key(rng);
  core.set_members({b.pub(), wg::crypto::public_key_of(key)}, now_);
  ASSERT_EQ(b.connect(now_), Admission::ok);
  const auto id = core.on_accept(now_);
  Channel ch = Channel::initiator(key, core.public_key(), kMaxNoiseFrame, kRelayPrologue);
  Hello hello;
  hello.features = kFeatureSplitData;
  Bytes m1;
  ASSERT_EQ(ch.start(rng, encode(hello), m1), ChannelError::ok);
  core.on_bytes(id, m1, now_);
  const Bytes m2 = pull(core, id);
  ByteSpan in(m2);
  const ChannelEvent done = ch.feed(in);
  ASSERT_EQ(done.kind, ChannelEvent::Kind::handshake_done);
  ASSERT_EQ(parse_result(done.data)->features, kFeatureSplitData);

  Bytes wire;
  Bytes ping;
  encode_ping(5, ping);
  ASSERT_EQ(ch.seal_split_append(ping, Bytes(1, 0), wire), ChannelError::ok);  // control, split
  ASSERT_EQ(ch.seal_split_append(ByteSpan(ping).first(1), ByteSpan(ping).subspan(1), wire),
            ChannelError::ok);  // a ping with only its type sealed
  Bytes send;
  ASSERT_TRUE(encode_send(b.pub(), Bytes(50, 9), send));
  // A send with 10 bytes of its packet sealed too: not the data head.
  ASSERT_EQ(ch.seal_split_append(ByteSpan(send).first(kDataHeadSize + 10), ByteSpan(send).subspan(kDataHeadSize + 10), wire),
            ChannelError::ok);
  // And a proper one, which is forwarded.
  ASSERT_EQ(ch.seal_split_append(ByteSpan(send).first(kDataHeadSize), ByteSpan(send).subspan(kDataHeadSize), wire),
            ChannelError::ok);
  core.on_bytes(id, wire, now_);
  EXPECT_EQ(core.stats().drop_split_not_data, 3u);
  EXPECT_TRUE(core.has_client(wg::crypto::public_key_of(key)));  // dropped frames, not the client
  b.pump(now_);
  const auto got = b.of(FrameType::recv);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].packet, Bytes(50, 9));
  const Bytes pongs = pull(core, id);
  ByteSpan pin(pongs);
  for (ChannelEvent ev = ch.feed(pin); ev.kind == ChannelEvent::Kind::message; ev = ch.feed(pin)) {
    Frame f;
    ASSERT_EQ(parse_frame(ev.data, f), ParseError::ok);
    EXPECT_NE(f.type, FrameType::pong) << "a split ping is not answered";
  }
}

// ---------------------------------------------------------------- with WireGuard at both ends

struct WgEnd : wg::Transport, wg::TunSink {
  void send(const wg::Peer&, std::span<const ByteSpan> datagrams) override {
    for (ByteSpan d : datagrams) sent.emplace_back(d.begin(), d.end());
  }
  void send_reply(const Endpoint&, ByteSpan d) override { sent.emplace_back(d.begin(), d.end()); }
  void write_tun(MutableByteSpan packet) override { tun.emplace_back(packet.begin(), packet.end()); }
  std::deque<Bytes> sent;
  std::deque<Bytes> tun;
};

Bytes ipv4_udp(std::uint32_t src, std::uint32_t dst, std::size_t payload) {
  return knit::testing::ipv4_udp_packet(src, dst, payload);
}

// Two WireGuard devices whose datagrams go through the relay core, split on both hops; the
// test may flip bytes of what the relay queued for the receiver, where a man in the middle of
// the receiver's TCP stream would.
TEST_F(RelaySplitCore, TamperedPacketIsPassedOnAndDroppedByWireGuard) {
  ServerCore core(relay_key_, {}, io_, rng_);
  Client ca(rng_, core), cb(rng_, core);
  ASSERT_TRUE(admit_all(core, {&ca, &cb}, now_));
  cb.pump(now_);
  ca.pump(now_);

  SeededRandom ra(1), rb(2);
  WgEnd io_a, io_b;
  wg::Device a(io_a, io_a, ra), b(io_b, io_b, rb);
  a.set_private_key(wg::crypto::generate_private_key(ra));
  b.set_private_key(wg::crypto::generate_private_key(rb));
  const wg::Now wnow{Instant{} + std::chrono::seconds(1000),
                     WallTime{} + std::chrono::hours(24 * 365 * 50)};
  wg::Peer* pb = a.add_peer(b.identity().public_key, wnow);
  wg::Peer* pa = b.add_peer(a.identity().public_key, wnow);
  const Endpoint ep = Endpoint::parse("[100::1]:1").value();
  a.set_endpoint(*pb, ep);
  b.set_endpoint(*pa, ep);
  a.add_allowed_ip(*pb, IpPrefix::parse("10.0.0.2/32").value());
  b.add_allowed_ip(*pa, IpPrefix::parse("10.0.0.1/32").value());

  // Carries every datagram through the relay: a's via ca -> core -> cb -> b, and back.
  auto relay_all = [&](bool tamper) {
    for (int round = 0; round < 10 && !(io_a.sent.empty() && io_b.sent.empty()); ++round) {
      for (Bytes& d : std::exchange(io_a.sent, {})) ca.feed_raw(ca.seal_sends(cb.pub(), {d}), now_);
      for (Bytes& d : std::exchange(io_b.sent, {})) cb.feed_raw(cb.seal_sends(ca.pub(), {d}), now_);
      Bytes to_b = pull(core, cb.id());
      if (tamper && !to_b.empty()) to_b[to_b.size() - 20] ^= 0x40;  // inside the last packet
      ByteSpan in(to_b);
      while (!in.empty()) {
        const auto step = cb.session().feed(in);
        if (step.kind == ClientSession::Step::Kind::need_more) break;
        ASSERT_NE(step.kind, ClientSession::Step::Kind::failed) << step.error;
        if (step.kind == ClientSession::Step::Kind::frame && step.frame.type == FrameType::recv)
          b.on_datagram(wnow, ep, cb.session().writable(step.frame.packet));
        if (step.kind == ClientSession::Step::Kind::run)
          step.run.for_each([&](ByteSpan p) { b.on_datagram(wnow, ep, cb.session().writable(p)); });
      }
      ca.received.clear();
      ca.pump(now_);
      for (auto got : ca.of(FrameType::recv)) a.on_datagram(wnow, ep, got.packet);
    }
  };
  auto send_from_a = [&](const Bytes& packet) {
    Bytes frame(wg::kFrameHeadroom + packet.size() + wg::kFrameTailroom);
    std::memcpy(frame.data() + wg::kFrameHeadroom, packet.data(), packet.size());
    a.on_tun_packet(wnow, frame, packet.size());
  };
  const Bytes inner = ipv4_udp(0x0a000001, 0x0a000002, 1000);
  send_from_a(inner);
  relay_all(false);
  ASSERT_EQ(io_b.tun.size(), 1u) << "the handshake and the first packet went through the relay";
  EXPECT_EQ(io_b.tun[0], inner);
  EXPECT_TRUE(ca.session().split_data());

  send_from_a(inner);
  relay_all(true);
  EXPECT_EQ(io_b.tun.size(), 1u) << "the tampered packet never reaches the TUN";
  EXPECT_EQ(b.stats().rx_decrypt_failed, 1u);
  EXPECT_TRUE(core.has_client(cb.pub())) << "the hop passed it on: it was not this hop's to check";

  send_from_a(inner);
  relay_all(false);
  EXPECT_EQ(io_b.tun.size(), 2u) << "the stream goes on";
}

// ---------------------------------------------------------------- two relays

TEST(RelaySplitMesh, ForwardIsSplitOnlyBetweenRelaysThatBothHaveIt) {
  for (int old_side = 0; old_side < 3; ++old_side) {
    SCOPED_TRACE(old_side);  // 0: both new, 1: x old, 2: y old
    SeededRandom rng(23);
    struct Side {
      wg::PrivateKey key;
      FakeIo io;
      std::unique_ptr<ServerCore> core;
      control::RelayInfo info;
    } x{wg::crypto::generate_private_key(rng), {}, nullptr, {}},
        y{wg::crypto::generate_private_key(rng), {}, nullptr, {}};
    for (Side* s : {&x, &y}) {
      ServerConfig config;
      config.split_data = !((s == &x && old_side == 1) || (s == &y && old_side == 2));
      s->core = std::make_unique<ServerCore>(s->key, config, s->io, rng);
      s->info.name = s == &x ? "x" : "y";
      s->info.node_key = s->core->public_key();
      s->info.addresses = {control::HostPort{"127.0.0.1", 1}};
    }
    Client a(rng, *x.core), b(rng, *y.core);
    Instant now{};
    for (Side* s : {&x, &y}) {
      s->core->set_members({a.pub(), b.pub()}, now);
      s->core->set_relays({x.info, y.info}, now);
    }
    ASSERT_EQ(a.connect(now), Admission::ok);
    ASSERT_EQ(b.connect(now), Admission::ok);
    Side& dialer = x.core->public_key() < y.core->public_key() ? x : y;
    Side& other = &dialer == &x ? y : x;
    ASSERT_EQ(dialer.io.dials.size(), 1u);
    const auto out = dialer.io.dials[0].first;
    const auto in = other.core->on_accept(now);
    dialer.core->on_dialed(out, now);
    auto pump = [&] {
      for (int i = 0; i < 6; ++i) {
        const Bytes p = pull(*dialer.core, out);
        if (!p.empty()) other.core->on_bytes(in, p, now);
        const Bytes q = pull(*other.core, in);
        if (!q.empty()) dialer.core->on_bytes(out, q, now);
      }
    };
    pump();
    const Bytes packet(1420, 0x42);
    a.feed_raw(a.seal_sends(b.pub(), {packet}), now);
    pump();
    b.pump(now);
    const auto got = b.of(FrameType::recv);
    ASSERT_EQ(got.size(), 1u);
    EXPECT_EQ(got[0].packet, packet);
    EXPECT_EQ(got[0].key, a.pub());
    EXPECT_EQ(x.core->stats().connection_errors + y.core->stats().connection_errors, 0u);
    EXPECT_EQ(x.core->stats().drop_split_not_data + y.core->stats().drop_split_not_data, 0u);
  }
}

}  // namespace
}  // namespace knit::relay
