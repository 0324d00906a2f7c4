// Data runs on the relay hop (relay/frame.hpp, control/channel.hpp): one sealed head for a
// burst of packets to one node, the packets' lengths in a trailer the head's tag covers. The
// channel's layout checks and tampering; the real cores: bursts arrive whole and in order,
// control frames between runs keep their place, agents without runs get the packets one by
// one, a relay that does not grant runs, and hostile runs (counted, never forwarded).
#include <gtest/gtest.h>

#include <algorithm>
#include <vector>

#include "base/random.hpp"
#include "control/channel.hpp"
#include "relay/client_session.hpp"
#include "relay/server_core.hpp"
#include "tests/support/relay_channel_pair.hpp"
#include "tests/support/relay_clients.hpp"
#include "wg/crypto.hpp"

namespace knit::relay {
namespace {

using control::Channel;
using control::ChannelError;
using control::ChannelEvent;
using testing::admit_all;
using testing::ChannelPair;
using testing::Client;
using testing::FakeIo;

// ---------------------------------------------------------------- the channel alone

// A channel pair whose server reads split messages and runs.
struct RunPair : ChannelPair {
  RunPair() : ChannelPair(6) {
    server.set_split_frames(true);
    server.set_run_frames(true);
  }
};

const Bytes kHead{0x01, 2, 3, 4};

// A run laid out for seal_run at the end of out: room, head, tag room, tails, trailer (count
// as given, lengths as given).
std::size_t lay_out(Bytes& out, const std::vector<Bytes>& tails, std::vector<std::uint16_t> lengths = {},
                    int count = -1) {
  const std::size_t at = out.size();
  out.resize(at + control::kFrameHeaderSize + 1);
  out.insert(out.end(), kHead.begin(), kHead.end());
  out.resize(out.size() + control::kAeadTagSize);
  for (const Bytes& t : tails) out.insert(out.end(), t.begin(), t.end());
  if (lengths.empty())
    for (const Bytes& t : tails) lengths.push_back(static_cast<std::uint16_t>(t.size()));
  for (std::uint16_t l : lengths) {
    out.push_back(static_cast<std::uint8_t>(l >> 8));
    out.push_back(static_cast<std::uint8_t>(l));
  }
  out.push_back(static_cast<std::uint8_t>(count < 0 ? lengths.size() : static_cast<std::size_t>(count)));
  return at;
}

TEST(ChannelRuns, RoundTripShowsHeadTailsAndTrailer) {
  RunPair p;
  const std::vector<Bytes> tails{Bytes(1420, 0x11), Bytes(1, 0x22), Bytes(300, 0x33)};
  Bytes wire;
  const std::size_t at = lay_out(wire, tails);
  ASSERT_EQ(p.client.seal_run(wire, at, kHead.size()), ChannelError::ok);
  EXPECT_EQ(wire[4], control::kRunMark | kHead.size());
  // The tails are on the wire as they are.
  EXPECT_TRUE(std::equal(tails[0].begin(), tails[0].end(), wire.begin() + 5 + 4 + 16));
  ByteSpan in(wire);
  const ChannelEvent e = p.server.feed(in);
  ASSERT_EQ(e.kind, ChannelEvent::Kind::message);
  EXPECT_TRUE(e.split);
  EXPECT_EQ(e.sealed_size, kHead.size());
  EXPECT_EQ(e.run_tails, 3u);
  ASSERT_EQ(e.data.size(), kHead.size() + 1721 + control::run_trailer_size(3));
  EXPECT_TRUE(std::equal(kHead.begin(), kHead.end(), e.data.begin()));
  EXPECT_EQ(e.data.back(), 3);
}

TEST(ChannelRuns, BadLayoutsAreRefusedOnSealAndOutIsKept) {
  RunPair p;
  const Bytes before{9, 9, 9};
  const std::vector<Bytes> two{Bytes(10, 1), Bytes(20, 2)};
  struct Case {
    std::vector<std::uint16_t> lengths;
    int count;
  };
  for (const Case& c : {Case{{10, 21}, -1}, Case{{10, 20}, 3}, Case{{0, 30}, -1}, Case{{31}, -1},
                        Case{{10, 20}, 0}}) {
    Bytes out = before;
    const std::size_t at = lay_out(out, two, c.lengths, c.count);
    EXPECT_EQ(p.client.seal_run(out, at, kHead.size()), ChannelError::malformed);
    EXPECT_EQ(out, before);
  }
  Bytes out = before;
  const std::size_t at = lay_out(out, two);
  EXPECT_EQ(p.client.seal_run(out, at, 0), ChannelError::malformed);
  EXPECT_EQ(out, before);
  // More tails than a run may have.
  Bytes many;
  const std::size_t m = lay_out(many, std::vector<Bytes>(control::kMaxRunTails + 1, Bytes(1, 7)));
  EXPECT_EQ(p.client.seal_run(many, m, kHead.size()), ChannelError::malformed);
  EXPECT_TRUE(p.client.is_open());
}

TEST(ChannelRuns, TamperedTailPassesTamperedLengthsOrCountDoNot) {
  const std::vector<Bytes> tails{Bytes(100, 0x11), Bytes(200, 0x22)};
  {
    RunPair p;
    Bytes wire;
    ASSERT_EQ(p.client.seal_run(wire, lay_out(wire, tails), kHead.size()), ChannelError::ok);
    wire[5 + 4 + 16 + 50] ^= 0xff;  // inside tail 1: not this hop's to check
    ByteSpan in(wire);
    EXPECT_EQ(p.server.feed(in).kind, ChannelEvent::Kind::message);
  }
  {
    RunPair p;
    Bytes wire;
    ASSERT_EQ(p.client.seal_run(wire, lay_out(wire, tails), kHead.size()), ChannelError::ok);
    // The lengths swapped: they still add up, so only the tag can tell.
    const std::size_t t = wire.size() - 5;
    std::swap_ranges(wire.begin() + static_cast<std::ptrdiff_t>(t), wire.begin() + static_cast<std::ptrdiff_t>(t + 2),
                     wire.begin() + static_cast<std::ptrdiff_t>(t + 2));
    ByteSpan in(wire);
    const ChannelEvent e = p.server.feed(in);
    EXPECT_EQ(e.kind, ChannelEvent::Kind::error);
    EXPECT_EQ(e.error, ChannelError::decrypt_failed);
  }
  {
    RunPair p;
    Bytes wire;
    ASSERT_EQ(p.client.seal_run(wire, lay_out(wire, tails), kHead.size()), ChannelError::ok);
    wire.back() = 1;  // the count: the trailer no longer adds up
    ByteSpan in(wire);
    const ChannelEvent e = p.server.feed(in);
    EXPECT_EQ(e.kind, ChannelEvent::Kind::error);
    EXPECT_EQ(e.error, ChannelError::malformed);
  }
}

TEST(ChannelRuns, ARunToASideWithoutRunsIsFatal) {
  RunPair p;
  p.server.set_run_frames(false);
  Bytes wire;
  ASSERT_EQ(p.client.seal_run(wire, lay_out(wire, {Bytes(50, 1)}), kHead.size()), ChannelError::ok);
  ByteSpan in(wire);
  EXPECT_EQ(p.server.feed(in).kind, ChannelEvent::Kind::error);
}

// ---------------------------------------------------------------- the cores

class RelayRunsCore : public ::testing::Test {
 protected:
  RelayRunsCore() : relay_key_(wg::crypto::generate_private_key(rng_)) {}
  std::vector<Bytes> burst(std::size_t n) {
    std::vector<Bytes> out;
    for (std::size_t i = 0; i < n; ++i) out.push_back(Bytes(1 + (i * 97) % 1420, static_cast<std::uint8_t>(i)));
    return out;
  }
  static std::vector<Bytes> packets_of(const Client& c) {
    std::vector<Bytes> out;
    for (const auto& g : c.of(FrameType::recv)) out.push_back(g.packet);
    return out;
  }
  SeededRandom rng_{29};
  wg::PrivateKey relay_key_;
  FakeIo io_;
  Instant now_{};
};

TEST_F(RelayRunsCore, ABurstArrivesAsRunsWholeAndInOrder) {
  ServerCore core(relay_key_, {}, io_, rng_);
  Client a(rng_, core), b(rng_, core);
  ASSERT_TRUE(admit_all(core, {&a, &b}, now_));
  ASSERT_TRUE(a.session().data_runs());
  ASSERT_TRUE(b.session().data_runs());
  const std::vector<Bytes> packets = burst(200);
  a.feed_raw(a.seal_sends(b.pub(), packets), now_);
  b.pump(now_);
  EXPECT_EQ(packets_of(b), packets);
  // 200 packets: at most 64 a run, and at most kMaxRunBytes of them.
  EXPECT_GE(b.runs, 4u);
  EXPECT_LE(b.runs, 8u);
  EXPECT_EQ(core.stats().packets_local, 200u);
  EXPECT_EQ(core.stats().connection_errors, 0u);
  for (const auto& g : b.of(FrameType::recv)) EXPECT_EQ(g.key, a.pub());
}

TEST_F(RelayRunsCore, AControlFrameBetweenPacketsKeepsItsPlace) {
  ServerCore core(relay_key_, {}, io_, rng_);
  Client a(rng_, core), b(rng_, core);
  ASSERT_TRUE(admit_all(core, {&a, &b}, now_));
  a.pump(now_);
  a.received.clear();  // the pong to the first ping
  const std::vector<Bytes> packets = burst(5);
  Bytes out;
  for (std::size_t i = 0; i < 3; ++i) ASSERT_TRUE(a.session().seal_send(b.pub(), packets[i], out));
  EXPECT_TRUE(a.session().run_open());
  Bytes ping;
  encode_ping(99, ping);
  ASSERT_TRUE(a.session().seal_append(ping, out));  // seals the open run first
  EXPECT_FALSE(a.session().run_open());
  for (std::size_t i = 3; i < 5; ++i) ASSERT_TRUE(a.session().seal_send(b.pub(), packets[i], out));
  ASSERT_TRUE(a.session().flush_run());
  a.feed_raw(out, now_);
  a.pump(now_);
  b.pump(now_);
  EXPECT_EQ(packets_of(b), packets);
  EXPECT_EQ(b.runs, 2u);
  ASSERT_EQ(a.of(FrameType::pong).size(), 1u);
  EXPECT_EQ(core.stats().connection_errors, 0u);
}

TEST_F(RelayRunsCore, RunsToTwoNodesAlternateAndStayApart) {
  ServerCore core(relay_key_, {}, io_, rng_);
  Client a(rng_, core), b(rng_, core), c(rng_, core);
  ASSERT_TRUE(admit_all(core, {&a, &b, &c}, now_));
  const std::vector<Bytes> packets = burst(6);
  Bytes out;
  for (std::size_t i = 0; i < packets.size(); ++i)
    ASSERT_TRUE(a.session().seal_send(i % 3 == 2 ? c.pub() : b.pub(), packets[i], out));
  ASSERT_TRUE(a.session().flush_run());
  a.feed_raw(out, now_);
  b.pump(now_);
  c.pump(now_);
  EXPECT_EQ(packets_of(b), (std::vector<Bytes>{packets[0], packets[1], packets[3], packets[4]}));
  EXPECT_EQ(packets_of(c), (std::vector<Bytes>{packets[2], packets[5]}));
}

TEST_F(RelayRunsCore, AgentsWithoutRunsGetThePacketsOneByOne) {
  ServerCore core(relay_key_, {}, io_, rng_);
  Client a(rng_, core), split_only(rng_, core, Role::client, kFeatureSplitData), old(rng_, core, Role::client, 0);
  ASSERT_TRUE(admit_all(core, {&a, &split_only, &old}, now_));
  EXPECT_TRUE(split_only.session().split_data());
  EXPECT_FALSE(split_only.session().data_runs());
  EXPECT_FALSE(old.session().data_runs());
  const std::vector<Bytes> packets = burst(70);
  a.feed_raw(a.seal_sends(split_only.pub(), packets), now_);
  a.feed_raw(a.seal_sends(old.pub(), packets), now_);
  split_only.pump(now_);
  old.pump(now_);
  EXPECT_EQ(packets_of(split_only), packets);
  EXPECT_EQ(packets_of(old), packets);
  EXPECT_EQ(split_only.runs + old.runs, 0u);
  EXPECT_EQ(split_only.bad_frames + old.bad_frames, 0u);
  // And back: their single frames reach a.
  split_only.feed_raw(split_only.seal_sends(a.pub(), {packets[1]}), now_);
  a.pump(now_);
  EXPECT_EQ(packets_of(a), (std::vector<Bytes>{packets[1]}));
}

TEST_F(RelayRunsCore, ARelayThatDoesNotGrantRunsGetsSplitFrames) {
  ServerConfig config;
  config.data_runs = false;
  ServerCore core(relay_key_, config, io_, rng_);
  Client a(rng_, core), b(rng_, core);
  ASSERT_TRUE(admit_all(core, {&a, &b}, now_));
  EXPECT_TRUE(a.session().split_data());
  EXPECT_FALSE(a.session().data_runs());
  const std::vector<Bytes> packets = burst(10);
  const Bytes wire = a.seal_sends(b.pub(), packets);
  EXPECT_FALSE(a.session().run_open());
  a.feed_raw(wire, now_);
  b.pump(now_);
  EXPECT_EQ(packets_of(b), packets);
  EXPECT_EQ(b.runs, 0u);
}

TEST_F(RelayRunsCore, HostileRunsAreCountedNotForwarded) {
  ServerCore core(relay_key_, {}, io_, rng_);
  Client a(rng_, core), b(rng_, core);
  ASSERT_TRUE(admit_all(core, {&a, &b}, now_));
  const Bytes after{0xaa, 0xbb, 0xcc, 0x00, 0x03, 0x01};  // one packet of 3 bytes
  Bytes send_head(kDataHeadSize);
  send_head[0] = static_cast<std::uint8_t>(FrameType::send);
  std::copy(b.pub().begin(), b.pub().end(), send_head.begin() + 1);
  Bytes recv_head = send_head;
  recv_head[0] = static_cast<std::uint8_t>(FrameType::recv);  // a client may not send recv
  Bytes ping_head{static_cast<std::uint8_t>(FrameType::ping), 0, 0, 0, 0, 0, 0, 0, 1};
  Bytes short_head(send_head.begin(), send_head.end() - 1);  // not exactly a data head
  Bytes out;
  ASSERT_TRUE(a.session().seal_run_unchecked(recv_head, after, out));
  ASSERT_TRUE(a.session().seal_run_unchecked(ping_head, after, out));
  ASSERT_TRUE(a.session().seal_run_unchecked(short_head, after, out));
  ASSERT_TRUE(a.session().seal_run_unchecked(send_head, after, out));  // the one good run
  a.feed_raw(out, now_);
  b.pump(now_);
  EXPECT_EQ(packets_of(b), (std::vector<Bytes>{Bytes{0xaa, 0xbb, 0xcc}}));
  EXPECT_EQ(core.stats().drop_not_allowed, 1u);
  EXPECT_EQ(core.stats().drop_split_not_data, 2u);
  EXPECT_EQ(core.stats().connection_errors, 0u);
  EXPECT_TRUE(core.has_client(a.pub()));
}

TEST_F(RelayRunsCore, ARunThatDoesNotFitWholeGoesInAsFarAsItFits) {
  ServerConfig config;
  config.max_queue_bytes = 16 * 1024;
  ServerCore core(relay_key_, config, io_, rng_);
  Client a(rng_, core), b(rng_, core);
  ASSERT_TRUE(admit_all(core, {&a, &b}, now_));
  b.pump(now_);
  const std::vector<Bytes> packets(40, Bytes(1000, 0x5a));
  a.feed_raw(a.seal_sends(b.pub(), packets), now_);
  const Stats& s = core.stats();
  EXPECT_EQ(s.packets_local + s.drop_queue_full, 40u);
  EXPECT_GE(s.packets_local, 14u);  // about 16 KiB of them, one by one
  b.pump(now_);
  EXPECT_EQ(packets_of(b).size(), s.packets_local);
}

}  // namespace
}  // namespace knit::relay
