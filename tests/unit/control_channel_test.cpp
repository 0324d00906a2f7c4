// The Noise IK control channel between an initiator and a responder object, no sockets: the
// handshake with payloads both ways, 1000 transport messages split arbitrarily (and byte by
// byte), a wrong coordinator key, tampering, oversized frames and nonce exhaustion.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/random.hpp"
#include "control/channel.hpp"
#include "wg/crypto.hpp"

namespace knit::control {
namespace {

using Kind = ChannelEvent::Kind;

ByteSpan text(std::string_view s) {
  return ByteSpan(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
}
std::string str(const Bytes& b) { return std::string(b.begin(), b.end()); }

// Feeds `stream` in pieces whose sizes come from rng (1 .. max_piece) and collects every event
// that is not need_more.
std::vector<ChannelEvent> feed_split(Channel& channel, const Bytes& stream, Random& rng,
                                     std::uint32_t max_piece) {
  std::vector<ChannelEvent> events;
  std::size_t at = 0;
  while (at < stream.size()) {
    const std::size_t piece = std::min<std::size_t>(1 + rng.uniform(max_piece), stream.size() - at);
    ByteSpan input(stream.data() + at, piece);
    at += piece;
    while (!input.empty()) {
      ChannelEvent event = channel.feed(input);
      const Kind kind = event.kind;
      if (kind != Kind::need_more) events.push_back(std::move(event));
      if (kind == Kind::error) return events;
    }
  }
  return events;
}

std::vector<ChannelEvent> feed_all(Channel& channel, const Bytes& stream) {
  SeededRandom rng(0);
  return feed_split(channel, stream, rng, static_cast<std::uint32_t>(stream.size() + 1));
}

struct Keys {
  wg::PrivateKey node;
  wg::PrivateKey coordinator;
  wg::PublicKey coordinator_public{};
  wg::PublicKey node_public{};
  explicit Keys(Random& rng)
      : node(wg::crypto::generate_private_key(rng)),
        coordinator(wg::crypto::generate_private_key(rng)),
        coordinator_public(wg::crypto::public_key_of(coordinator)),
        node_public(wg::crypto::public_key_of(node)) {}
};

// A pair whose handshake completed: agent (initiator) and coordinator (responder).
struct OpenPair {
  Channel agent;
  Channel coordinator;
};

OpenPair open_pair(Random& rng, const Keys& keys, std::size_t coordinator_limit = kMaxFrameSize) {
  OpenPair pair{Channel::initiator(keys.node, keys.coordinator_public),
                Channel::responder(keys.coordinator, coordinator_limit)};
  Bytes m1;
  EXPECT_EQ(pair.agent.start(rng, text("hello"), m1), ChannelError::ok);
  auto events = feed_all(pair.coordinator, m1);
  EXPECT_EQ(events.size(), 1u);
  Bytes m2;
  EXPECT_EQ(pair.coordinator.answer(rng, text("welcome"), m2), ChannelError::ok);
  events = feed_all(pair.agent, m2);
  EXPECT_EQ(events.size(), 1u);
  EXPECT_TRUE(pair.agent.is_open());
  EXPECT_TRUE(pair.coordinator.is_open());
  return pair;
}

TEST(ControlChannel, HandshakeCarriesPayloadsBothWays) {
  SeededRandom rng(1);
  const Keys keys(rng);
  Channel agent = Channel::initiator(keys.node, keys.coordinator_public);
  Channel coordinator = Channel::responder(keys.coordinator);
  EXPECT_EQ(agent.remote_static(), keys.coordinator_public);

  Bytes m1;
  ASSERT_EQ(agent.start(rng, text(R"({"type":"register"})"), m1), ChannelError::ok);
  EXPECT_EQ(agent.state(), Channel::State::requested);
  EXPECT_EQ(load_be32(m1.data()), m1.size() - kFrameHeaderSize);
  EXPECT_EQ(m1.size(), kFrameHeaderSize + 96 + 19);

  auto events = feed_all(coordinator, m1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, Kind::request);
  EXPECT_EQ(str(events[0].data), R"({"type":"register"})");
  // The responder knows who is asking before it answers.
  EXPECT_EQ(coordinator.remote_static(), keys.node_public);
  EXPECT_EQ(coordinator.state(), Channel::State::answering);
  Bytes early;
  EXPECT_EQ(coordinator.seal(text("x"), early), ChannelError::wrong_state);

  Bytes m2;
  ASSERT_EQ(coordinator.answer(rng, text(R"({"ok":true})"), m2), ChannelError::ok);
  EXPECT_TRUE(coordinator.is_open());
  events = feed_all(agent, m2);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, Kind::handshake_done);
  EXPECT_EQ(str(events[0].data), R"({"ok":true})");
  EXPECT_TRUE(agent.is_open());
}

TEST(ControlChannel, ThousandMessagesSplitArbitrarily) {
  SeededRandom rng(2);
  const Keys keys(rng);
  for (std::uint32_t max_piece : {1u, 3u, 17u, 200u, 5000u, 1u << 20}) {
    OpenPair pair = open_pair(rng, keys);
    for (Channel* from : {&pair.agent, &pair.coordinator}) {
      Channel& to = from == &pair.agent ? pair.coordinator : pair.agent;
      Bytes stream;
      std::vector<std::string> sent;
      for (int i = 0; i < 1000; ++i) {
        std::string message(rng.uniform(300), '\0');
        for (char& c : message) c = static_cast<char>(rng.uniform(256));
        Bytes frame;
        ASSERT_EQ(from->seal(text(message), frame), ChannelError::ok);
        stream.insert(stream.end(), frame.begin(), frame.end());
        sent.push_back(std::move(message));
      }
      const auto events = feed_split(to, stream, rng, max_piece);
      ASSERT_EQ(events.size(), sent.size()) << max_piece;
      for (std::size_t i = 0; i < sent.size(); ++i) {
        ASSERT_EQ(events[i].kind, Kind::message);
        ASSERT_EQ(str(events[i].data), sent[i]);
      }
    }
  }
}

TEST(ControlChannel, HandshakeByteByByteWithTransportBehindIt) {
  SeededRandom rng(3);
  const Keys keys(rng);
  Channel agent = Channel::initiator(keys.node, keys.coordinator_public);
  Channel coordinator = Channel::responder(keys.coordinator);
  Bytes m1;
  ASSERT_EQ(agent.start(rng, text("req"), m1), ChannelError::ok);
  auto events = feed_split(coordinator, m1, rng, 1);
  ASSERT_EQ(events.size(), 1u);
  ASSERT_EQ(events[0].kind, Kind::request);

  // Message 2 and the first transport frames arrive in one piece.
  Bytes stream;
  ASSERT_EQ(coordinator.answer(rng, text("resp"), stream), ChannelError::ok);
  for (const char* m : {"peer map", "relay map", ""}) {
    Bytes frame;
    ASSERT_EQ(coordinator.seal(text(m), frame), ChannelError::ok);
    stream.insert(stream.end(), frame.begin(), frame.end());
  }
  events = feed_all(agent, stream);
  ASSERT_EQ(events.size(), 4u);
  EXPECT_EQ(events[0].kind, Kind::handshake_done);
  EXPECT_EQ(str(events[1].data), "peer map");
  EXPECT_EQ(str(events[2].data), "relay map");
  EXPECT_EQ(events[3].kind, Kind::message);
  EXPECT_TRUE(events[3].data.empty());
}

TEST(ControlChannel, WrongCoordinatorKeyCannotBeDecrypted) {
  SeededRandom rng(4);
  const Keys keys(rng);
  const Keys impostor(rng);
  // The agent holds a token for another coordinator.
  Channel agent = Channel::initiator(keys.node, impostor.coordinator_public);
  Channel coordinator = Channel::responder(keys.coordinator);
  Bytes m1;
  ASSERT_EQ(agent.start(rng, text("req"), m1), ChannelError::ok);
  const auto events = feed_all(coordinator, m1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].kind, Kind::error);
  EXPECT_EQ(events[0].error, ChannelError::decrypt_failed);
  EXPECT_EQ(coordinator.state(), Channel::State::closed);
  Bytes m2;
  EXPECT_EQ(coordinator.answer(rng, {}, m2), ChannelError::wrong_state);
}

TEST(ControlChannel, ImpostorCoordinatorCannotAnswer) {
  SeededRandom rng(5);
  const Keys keys(rng);
  const Keys impostor(rng);
  Channel agent = Channel::initiator(keys.node, keys.coordinator_public);
  Channel fake = Channel::responder(impostor.coordinator);
  Bytes m1;
  ASSERT_EQ(agent.start(rng, text("req"), m1), ChannelError::ok);
  // The impostor cannot read message 1, so it cannot produce message 2 either; a forged
  // message 2 from a fresh handshake fails at the agent.
  EXPECT_EQ(feed_all(fake, m1)[0].error, ChannelError::decrypt_failed);
  Channel other_agent = Channel::initiator(keys.node, impostor.coordinator_public);
  Channel fake2 = Channel::responder(impostor.coordinator);
  Bytes m1b;
  Bytes m2b;
  ASSERT_EQ(other_agent.start(rng, text("req"), m1b), ChannelError::ok);
  ASSERT_EQ(feed_all(fake2, m1b)[0].kind, Kind::request);
  ASSERT_EQ(fake2.answer(rng, text("resp"), m2b), ChannelError::ok);
  const auto events = feed_all(agent, m2b);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].error, ChannelError::decrypt_failed);
}

TEST(ControlChannel, TamperedCiphertextFailsToDecrypt) {
  SeededRandom rng(6);
  const Keys keys(rng);
  OpenPair pair = open_pair(rng, keys);
  Bytes frame;
  ASSERT_EQ(pair.agent.seal(text("endpoint update"), frame), ChannelError::ok);
  frame[kFrameHeaderSize + 3] ^= 0x40;
  auto events = feed_all(pair.coordinator, frame);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].error, ChannelError::decrypt_failed);
  // Fatal: later frames, even good ones, are refused.
  Bytes good;
  ASSERT_EQ(pair.agent.seal(text("again"), good), ChannelError::ok);
  events = feed_all(pair.coordinator, good);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].error, ChannelError::decrypt_failed);
  Bytes out;
  EXPECT_EQ(pair.coordinator.seal(text("x"), out), ChannelError::wrong_state);
}

TEST(ControlChannel, TamperedHandshakeMessages) {
  SeededRandom rng(7);
  const Keys keys(rng);
  for (std::size_t at = kFrameHeaderSize; at < kFrameHeaderSize + 96 + 3; ++at) {
    Channel agent = Channel::initiator(keys.node, keys.coordinator_public);
    Channel coordinator = Channel::responder(keys.coordinator);
    Bytes m1;
    ASSERT_EQ(agent.start(rng, text("abc"), m1), ChannelError::ok);
    m1[at] ^= 1;
    const auto events = feed_all(coordinator, m1);
    ASSERT_EQ(events.size(), 1u);
    EXPECT_EQ(events[0].kind, Kind::error) << at;
  }
  Channel agent = Channel::initiator(keys.node, keys.coordinator_public);
  Channel coordinator = Channel::responder(keys.coordinator);
  Bytes m1;
  Bytes m2;
  ASSERT_EQ(agent.start(rng, text("abc"), m1), ChannelError::ok);
  ASSERT_EQ(feed_all(coordinator, m1)[0].kind, Kind::request);
  ASSERT_EQ(coordinator.answer(rng, text("def"), m2), ChannelError::ok);
  m2[m2.size() - 1] ^= 1;
  EXPECT_EQ(feed_all(agent, m2)[0].error, ChannelError::decrypt_failed);
}

TEST(ControlChannel, OversizedLengthPrefixIsRefusedBeforeAllocation) {
  SeededRandom rng(8);
  const Keys keys(rng);
  OpenPair pair = open_pair(rng, keys, /*coordinator_limit=*/64 * 1024);
  EXPECT_EQ(pair.coordinator.max_frame(), 64u * 1024);
  // Only the 4-byte header is sent: if the reader allocated the declared size this would
  // ask for 4 GiB.
  Bytes header(4);
  store_be32(header.data(), 0xffffffffu);
  auto events = feed_all(pair.coordinator, header);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].error, ChannelError::frame_too_large);

  // One byte past the role's limit, and one past the absolute limit for the agent.
  OpenPair second = open_pair(rng, keys, 64 * 1024);
  store_be32(header.data(), 64 * 1024 + 1);
  EXPECT_EQ(feed_all(second.coordinator, header)[0].error, ChannelError::frame_too_large);
  store_be32(header.data(), static_cast<std::uint32_t>(kMaxFrameSize + 1));
  EXPECT_EQ(feed_all(second.agent, header)[0].error, ChannelError::frame_too_large);

  // Before the handshake too: the limit guards message 1.
  Channel listener = Channel::responder(keys.coordinator, 4096);
  store_be32(header.data(), 4097);
  EXPECT_EQ(feed_all(listener, header)[0].error, ChannelError::frame_too_large);
}

TEST(ControlChannel, LargestFrameFitsAndOneMoreByteDoesNot) {
  SeededRandom rng(9);
  const Keys keys(rng);
  OpenPair pair = open_pair(rng, keys);
  Bytes big(kMaxFrameSize - kAeadTagSize, 0x5a);
  Bytes frame;
  ASSERT_EQ(pair.coordinator.seal(big, frame), ChannelError::ok);
  EXPECT_EQ(frame.size(), kFrameHeaderSize + kMaxFrameSize);
  const auto events = feed_all(pair.agent, frame);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].data, big);
  big.push_back(0);
  EXPECT_EQ(pair.coordinator.seal(big, frame), ChannelError::frame_too_large);
  // Refusing to send is not fatal.
  EXPECT_TRUE(pair.coordinator.is_open());
}

TEST(ControlChannel, ShortFramesAreMalformed) {
  SeededRandom rng(10);
  const Keys keys(rng);
  OpenPair pair = open_pair(rng, keys);
  Bytes frame(kFrameHeaderSize + 15, 0);
  store_be32(frame.data(), 15);
  EXPECT_EQ(feed_all(pair.agent, frame)[0].error, ChannelError::malformed);

  Channel listener = Channel::responder(keys.coordinator);
  Bytes short_m1(kFrameHeaderSize + 95, 1);
  store_be32(short_m1.data(), 95);
  EXPECT_EQ(feed_all(listener, short_m1)[0].error, ChannelError::malformed);

  Bytes empty(kFrameHeaderSize, 0);
  Channel listener2 = Channel::responder(keys.coordinator);
  EXPECT_EQ(feed_all(listener2, empty)[0].error, ChannelError::malformed);
}

TEST(ControlChannel, LowOrderKeysAreRefused) {
  SeededRandom rng(11);
  const Keys keys(rng);
  // All-zero is a low-order point: the DH result would be zero.
  const wg::PublicKey zero{};
  Channel agent = Channel::initiator(keys.node, zero);
  Bytes m1;
  EXPECT_EQ(agent.start(rng, text("x"), m1), ChannelError::bad_key);

  // A message 1 whose ephemeral key is zero.
  Channel good = Channel::initiator(keys.node, keys.coordinator_public);
  ASSERT_EQ(good.start(rng, text("x"), m1), ChannelError::ok);
  std::fill(m1.begin() + kFrameHeaderSize, m1.begin() + kFrameHeaderSize + 32, 0);
  Channel listener = Channel::responder(keys.coordinator);
  EXPECT_EQ(feed_all(listener, m1)[0].error, ChannelError::malformed);
}

TEST(ControlChannel, WrongStateCalls) {
  SeededRandom rng(12);
  const Keys keys(rng);
  Channel agent = Channel::initiator(keys.node, keys.coordinator_public);
  Channel coordinator = Channel::responder(keys.coordinator);
  Bytes out;
  EXPECT_EQ(agent.seal(text("x"), out), ChannelError::wrong_state);
  EXPECT_EQ(agent.answer(rng, text("x"), out), ChannelError::wrong_state);
  EXPECT_EQ(coordinator.start(rng, text("x"), out), ChannelError::wrong_state);
  EXPECT_EQ(coordinator.answer(rng, text("x"), out), ChannelError::wrong_state);
  Bytes m1;
  ASSERT_EQ(agent.start(rng, text("x"), m1), ChannelError::ok);
  EXPECT_EQ(agent.start(rng, text("x"), out), ChannelError::wrong_state);

  // Bytes before the agent has spoken are a protocol violation.
  Channel fresh = Channel::initiator(keys.node, keys.coordinator_public);
  EXPECT_EQ(feed_all(fresh, Bytes(10, 0))[0].error, ChannelError::wrong_state);

  // The agent cannot send anything between message 1 and message 2: anything the responder
  // sees while it holds the request unanswered is refused.
  Bytes stream = m1;
  stream.insert(stream.end(), {0, 0, 0, 16});
  const auto events = feed_all(coordinator, stream);
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(events[0].kind, Kind::request);
  EXPECT_EQ(events[1].error, ChannelError::wrong_state);

  // A second message 1 after the handshake is just an undecryptable transport frame.
  Channel agent2 = Channel::initiator(keys.node, keys.coordinator_public);
  OpenPair pair = open_pair(rng, keys);
  ASSERT_EQ(agent2.start(rng, text("x"), m1), ChannelError::ok);
  EXPECT_EQ(feed_all(pair.coordinator, m1)[0].error, ChannelError::decrypt_failed);
}

TEST(ControlChannel, NonceExhaustionIsFatalBeforeWrap) {
  SeededRandom rng(13);
  const Keys keys(rng);
  OpenPair pair = open_pair(rng, keys);
  const std::uint64_t last = ~std::uint64_t{0} - 1;  // the last usable nonce
  pair.agent.set_nonces_for_testing(last, 0);
  pair.coordinator.set_nonces_for_testing(0, last);
  Bytes frame;
  ASSERT_EQ(pair.agent.seal(text("last"), frame), ChannelError::ok);
  auto events = feed_all(pair.coordinator, frame);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(str(events[0].data), "last");
  // 2^64 - 1 is reserved (Noise §5.1): the sender fails closed instead of wrapping.
  EXPECT_EQ(pair.agent.seal(text("one more"), frame), ChannelError::nonce_exhausted);
  EXPECT_EQ(pair.agent.state(), Channel::State::closed);
  // And the receiver refuses to go past it too.
  Bytes any(kFrameHeaderSize + 16, 0);
  store_be32(any.data(), 16);
  events = feed_all(pair.coordinator, any);
  EXPECT_EQ(events[0].error, ChannelError::nonce_exhausted);
}

TEST(ControlChannel, MovedFromChannelIsClosed) {
  SeededRandom rng(15);
  const Keys keys(rng);
  OpenPair pair = open_pair(rng, keys);
  Channel moved = std::move(pair.agent);
  EXPECT_TRUE(moved.is_open());
  EXPECT_EQ(pair.agent.state(), Channel::State::closed);
  Bytes frame;
  EXPECT_EQ(pair.agent.seal(text("x"), frame), ChannelError::wrong_state);
  ASSERT_EQ(moved.seal(text("still works"), frame), ChannelError::ok);
  EXPECT_EQ(str(feed_all(pair.coordinator, frame)[0].data), "still works");
}

TEST(ControlChannel, RandomGarbageNeverCrashes) {
  SeededRandom rng(14);
  const Keys keys(rng);
  for (int round = 0; round < 300; ++round) {
    Bytes garbage(rng.uniform(400));
    rng.fill(garbage);
    if (garbage.size() >= 4 && rng.uniform(2) == 0) {
      store_be32(garbage.data(), static_cast<std::uint32_t>(garbage.size() - 4));
    }
    Channel listener = Channel::responder(keys.coordinator, 1024);
    for (const auto& event : feed_split(listener, garbage, rng, 50)) {
      EXPECT_NE(event.kind, Kind::request);
    }
    OpenPair pair = open_pair(rng, keys);
    for (const auto& event : feed_split(pair.agent, garbage, rng, 50)) {
      EXPECT_EQ(event.kind, Kind::error);
    }
  }
}

}  // namespace
}  // namespace knit::control

namespace knit::control {
namespace {

// seal_append and seal_tail write the very bytes seal() would (same keys, same nonces), back to
// back in one buffer; a lending receiver opens many of them from one read, and from reads cut
// anywhere, into its own buffer.
TEST(ControlChannelBatch, AppendedFramesOpenFromOneReadAndFromAnySplit) {
  SeededRandom rng(21);
  const Keys keys(rng);
  OpenPair one = open_pair(rng, keys);
  SeededRandom rng2(21);
  const Keys keys2(rng2);
  OpenPair two = open_pair(rng2, keys2);  // the same keys and nonces
  Bytes batch;
  std::vector<Bytes> messages;
  for (int i = 0; i < 50; ++i) {
    Bytes message(1 + static_cast<std::size_t>(i) * 37, static_cast<std::uint8_t>(i));
    Bytes single;
    ASSERT_EQ(one.agent.seal(message, single), ChannelError::ok);
    const std::size_t at = batch.size();
    if (i % 2 == 0) {
      ASSERT_EQ(two.agent.seal_append(message, batch), ChannelError::ok);
    } else {
      batch.resize(at + kFrameHeaderSize);
      batch.insert(batch.end(), message.begin(), message.end());
      ASSERT_EQ(two.agent.seal_tail(batch, at), ChannelError::ok);
    }
    EXPECT_EQ(Bytes(batch.begin() + static_cast<std::ptrdiff_t>(at), batch.end()), single) << i;
    messages.push_back(std::move(message));
  }
  two.coordinator.set_lend_messages(true);
  ByteSpan input(batch);
  std::size_t n = 0;
  while (!input.empty()) {
    const ChannelEvent event = two.coordinator.feed(input);
    ASSERT_EQ(event.kind, Kind::message);
    EXPECT_TRUE(event.data.empty());  // lent, not allocated
    EXPECT_EQ(Bytes(event.lent.begin(), event.lent.end()), messages[n]) << n;
    ++n;
  }
  EXPECT_EQ(n, messages.size());
  // Cut anywhere, into an arena: every message lent stays valid until the arena is cleared.
  one.coordinator.set_lend_messages(true);
  Bytes arena;
  arena.reserve(batch.size() + 1024);
  const std::uint8_t* storage = arena.data();
  one.coordinator.set_lend_arena(&arena);
  const auto events = feed_split(one.coordinator, batch, rng, 300);
  EXPECT_EQ(arena.data(), storage) << "the arena never moved";
  ASSERT_EQ(events.size(), messages.size());
  for (std::size_t i = 0; i < events.size(); ++i)
    EXPECT_EQ(Bytes(events[i].lent.begin(), events[i].lent.end()), messages[i]) << i;
}

TEST(ControlChannelBatch, SealTailRefusesWhatSealRefuses) {
  SeededRandom rng(22);
  const Keys keys(rng);
  Channel closed = Channel::initiator(keys.node, keys.coordinator_public);
  Bytes out{1, 2, 3};
  out.resize(out.size() + kFrameHeaderSize + 5);
  EXPECT_EQ(closed.seal_tail(out, 3), ChannelError::wrong_state);
  EXPECT_EQ(out.size(), 3u);  // cut back to where the frame began
  EXPECT_EQ(closed.seal_append(text("x"), out), ChannelError::wrong_state);
  EXPECT_EQ(out.size(), 3u);
  OpenPair pair = open_pair(rng, keys);
  EXPECT_EQ(pair.agent.seal_tail(out, 2), ChannelError::malformed);  // no room for a header
}

}  // namespace
}  // namespace knit::control
