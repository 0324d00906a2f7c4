// The relay frame codec (relay/frame.hpp): every frame type round-trips, a numbered table of
// malformed frames, and random bytes that must parse or fail cleanly (and re-encode to the
// same bytes when they parse). Also the handshake payloads and a relay-prologue handshake that
// a control-channel responder must refuse.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/random.hpp"
#include "control/channel.hpp"
#include "relay/frame.hpp"
#include "wg/crypto.hpp"

namespace knit::relay {
namespace {

NodeKey key_of(std::uint8_t fill) {
  NodeKey key;
  key.fill(fill);
  return key;
}

Bytes packet_of(std::size_t size, std::uint8_t seed = 7) {
  Bytes out(size);
  for (std::size_t i = 0; i < size; ++i) out[i] = static_cast<std::uint8_t>(seed + i * 31);
  return out;
}

TEST(RelayFrame, PacketFramesRoundTrip) {
  for (const std::size_t size : {std::size_t{1}, std::size_t{148}, std::size_t{1420},
                                 kMaxPacketSize}) {
    const Bytes packet = packet_of(size);
    Bytes bytes;
    Frame frame;
    ASSERT_TRUE(encode_send(key_of(1), packet, bytes));
    ASSERT_EQ(parse_frame(bytes, frame), ParseError::ok);
    EXPECT_EQ(frame.type, FrameType::send);
    EXPECT_EQ(frame.dst, key_of(1));
    EXPECT_EQ(Bytes(frame.packet.begin(), frame.packet.end()), packet);

    ASSERT_TRUE(encode_recv(key_of(2), packet, bytes));
    ASSERT_EQ(parse_frame(bytes, frame), ParseError::ok);
    EXPECT_EQ(frame.type, FrameType::recv);
    EXPECT_EQ(frame.src, key_of(2));
    EXPECT_EQ(Bytes(frame.packet.begin(), frame.packet.end()), packet);

    ASSERT_TRUE(encode_forward(key_of(3), key_of(4), packet, bytes));
    EXPECT_LE(bytes.size(), kMaxFrameSize);
    ASSERT_EQ(parse_frame(bytes, frame), ParseError::ok);
    EXPECT_EQ(frame.type, FrameType::forward);
    EXPECT_EQ(frame.src, key_of(3));
    EXPECT_EQ(frame.dst, key_of(4));
    EXPECT_EQ(Bytes(frame.packet.begin(), frame.packet.end()), packet);
  }
}

TEST(RelayFrame, ControlFramesRoundTrip) {
  Bytes bytes;
  Frame frame;
  encode_keepalive(bytes);
  ASSERT_EQ(parse_frame(bytes, frame), ParseError::ok);
  EXPECT_EQ(frame.type, FrameType::keepalive);

  encode_ping(0x0102030405060708ULL, bytes);
  ASSERT_EQ(parse_frame(bytes, frame), ParseError::ok);
  EXPECT_EQ(frame.type, FrameType::ping);
  EXPECT_EQ(frame.token, 0x0102030405060708ULL);
  EXPECT_EQ(bytes[1], 0x01);  // big-endian

  encode_pong(~0ULL, bytes);
  ASSERT_EQ(parse_frame(bytes, frame), ParseError::ok);
  EXPECT_EQ(frame.type, FrameType::pong);
  EXPECT_EQ(frame.token, ~0ULL);

  encode_peer_gone(key_of(9), GoneReason::not_connected, bytes);
  ASSERT_EQ(parse_frame(bytes, frame), ParseError::ok);
  EXPECT_EQ(frame.type, FrameType::peer_gone);
  EXPECT_EQ(frame.dst, key_of(9));

  encode_closing(CloseReason::removed, bytes);
  ASSERT_EQ(parse_frame(bytes, frame), ParseError::ok);
  EXPECT_EQ(frame.type, FrameType::closing);
  EXPECT_EQ(frame.reason, static_cast<std::uint8_t>(CloseReason::removed));

  std::vector<NodeKey> keys;
  for (std::size_t i = 0; i < kMaxKeysPerFrame; ++i) keys.push_back(key_of(static_cast<std::uint8_t>(i)));
  for (const FrameType type : {FrameType::present, FrameType::absent}) {
    ASSERT_TRUE(encode_keys(type, keys, bytes));
    ASSERT_EQ(parse_frame(bytes, frame), ParseError::ok);
    EXPECT_EQ(frame.type, type);
    ASSERT_EQ(frame.key_count(), keys.size());
    for (std::size_t i = 0; i < keys.size(); ++i) EXPECT_EQ(frame.key(i), keys[i]);
  }
}

TEST(RelayFrame, EncodersRefuseOutOfBounds) {
  Bytes bytes;
  EXPECT_FALSE(encode_send(key_of(1), {}, bytes));
  EXPECT_FALSE(encode_send(key_of(1), packet_of(kMaxPacketSize + 1), bytes));
  EXPECT_FALSE(encode_recv(key_of(1), {}, bytes));
  EXPECT_FALSE(encode_forward(key_of(1), key_of(2), packet_of(kMaxPacketSize + 1), bytes));
  EXPECT_FALSE(encode_keys(FrameType::present, {}, bytes));
  EXPECT_FALSE(encode_keys(FrameType::present, std::vector<NodeKey>(kMaxKeysPerFrame + 1), bytes));
  EXPECT_FALSE(encode_keys(FrameType::send, {key_of(1)}, bytes));
}

// A numbered table of malformed frames and what the parser must say.
TEST(RelayFrame, MalformedTable) {
  struct Case {
    int number;
    Bytes bytes;
    ParseError expected;
  };
  auto with = [](std::initializer_list<std::uint8_t> head, std::size_t zeros) {
    Bytes b(head);
    b.resize(b.size() + zeros, 0);
    return b;
  };
  const std::vector<Case> cases = {
      {1, {}, ParseError::empty},
      {2, {0x00}, ParseError::unknown_type},
      {3, {0x7f, 1, 2, 3}, ParseError::unknown_type},
      {4, {0x01}, ParseError::truncated},                     // send without a key
      {5, with({0x01}, 31), ParseError::truncated},          // send with a partial key
      {6, with({0x01}, 32), ParseError::bad_packet},         // send with no packet
      {7, with({0x02}, 32), ParseError::bad_packet},         // recv with no packet
      {8, with({0x10}, 63), ParseError::truncated},          // forward with a partial dst
      {9, with({0x10}, 64), ParseError::bad_packet},         // forward with no packet
      {10, {0x03, 0x00}, ParseError::trailing},              // keepalive with a body
      {11, with({0x04}, 7), ParseError::truncated},          // short ping
      {12, with({0x05}, 9), ParseError::trailing},           // long pong
      {13, with({0x06}, 32), ParseError::truncated},         // peer_gone without reason
      {14, with({0x06}, 34), ParseError::trailing},
      {15, {0x07}, ParseError::truncated},                   // closing without reason
      {16, {0x07, 1, 2}, ParseError::trailing},
      {17, {0x11}, ParseError::bad_keys},                    // present with no key
      {18, with({0x11}, 33), ParseError::bad_keys},          // a partial key
      {19, with({0x12}, 32 * (kMaxKeysPerFrame + 1)), ParseError::bad_keys},
      {20, with({0x12}, 31), ParseError::bad_keys},
  };
  for (const Case& c : cases) {
    Frame frame;
    EXPECT_EQ(parse_frame(c.bytes, frame), c.expected) << "case " << c.number;
  }
}

// Re-encodes a parsed frame with the encoders; must give back the same bytes.
Bytes reencode(const Frame& frame) {
  Bytes out;
  switch (frame.type) {
    case FrameType::send: encode_send(frame.dst, frame.packet, out); break;
    case FrameType::recv: encode_recv(frame.src, frame.packet, out); break;
    case FrameType::forward: encode_forward(frame.src, frame.dst, frame.packet, out); break;
    case FrameType::keepalive: encode_keepalive(out); break;
    case FrameType::ping: encode_ping(frame.token, out); break;
    case FrameType::pong: encode_pong(frame.token, out); break;
    case FrameType::peer_gone:
      encode_peer_gone(frame.dst, static_cast<GoneReason>(frame.reason), out);
      break;
    case FrameType::closing: encode_closing(static_cast<CloseReason>(frame.reason), out); break;
    case FrameType::present:
    case FrameType::absent: {
      std::vector<NodeKey> keys;
      for (std::size_t i = 0; i < frame.key_count(); ++i) keys.push_back(frame.key(i));
      encode_keys(frame.type, keys, out);
      break;
    }
  }
  return out;
}

TEST(RelayFrame, RandomBytesParseOrFailCleanly) {
  SeededRandom rng(42);
  const std::vector<std::uint8_t> types = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06,
                                           0x07, 0x10, 0x11, 0x12, 0x00, 0xff};
  int parsed = 0;
  for (int i = 0; i < 20000; ++i) {
    // Mostly-valid type bytes with sizes around the interesting boundaries.
    const std::size_t sizes[] = {0, 1, 2, 8, 9, 10, 32, 33, 34, 64, 65, 66, 100, 2000};
    Bytes bytes(sizes[rng.uniform(std::size(sizes))] + rng.uniform(3));
    rng.fill(bytes);
    if (!bytes.empty() && rng.uniform(4) != 0) bytes[0] = types[rng.uniform(types.size())];
    Frame frame;
    const ParseError err = parse_frame(bytes, frame);
    if (err != ParseError::ok) continue;
    ++parsed;
    EXPECT_EQ(reencode(frame), bytes) << "iteration " << i;
  }
  EXPECT_GT(parsed, 1000);  // the generator does reach valid frames
}

TEST(RelayFrame, HandshakePayloads) {
  Hello hello;
  hello.role = Role::relay;
  const auto back = parse_hello(encode(hello));
  ASSERT_TRUE(back);
  EXPECT_EQ(back->version, kRelayVersion);
  EXPECT_EQ(back->role, Role::relay);
  EXPECT_FALSE(parse_hello(Bytes{1}));
  EXPECT_TRUE(parse_hello(Bytes{1, 0, 99}));  // later versions may add fields

  Result result{Admission::not_member, 20};
  const auto r = parse_result(encode(result));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, Admission::not_member);
  EXPECT_EQ(r->keepalive_s, 20);
  EXPECT_FALSE(parse_result(Bytes{0, 0}));
  EXPECT_EQ(to_string(Admission::not_member), "not a mesh member");
}

// The relay's prologue keeps its handshakes apart from the control channel's.
TEST(RelayFrame, RelayHandshakeIsNotAControlHandshake) {
  SeededRandom rng(1);
  const wg::PrivateKey client = wg::crypto::generate_private_key(rng);
  const wg::PrivateKey server = wg::crypto::generate_private_key(rng);
  const NodeKey server_pub = wg::crypto::public_key_of(server);

  for (const bool same : {true, false}) {
    auto initiator = control::Channel::initiator(client, server_pub, kMaxNoiseFrame, kRelayPrologue);
    auto responder = same ? control::Channel::responder(server, kMaxNoiseFrame, kRelayPrologue)
                          : control::Channel::responder(server);
    Bytes m1;
    ASSERT_EQ(initiator.start(rng, encode(Hello{}), m1), control::ChannelError::ok);
    ByteSpan input(m1);
    const auto event = responder.feed(input);
    if (same) {
      EXPECT_EQ(event.kind, control::ChannelEvent::Kind::request);
    } else {
      EXPECT_EQ(event.kind, control::ChannelEvent::Kind::error);
      EXPECT_EQ(event.error, control::ChannelError::decrypt_failed);
    }
  }
}

}  // namespace
}  // namespace knit::relay
