// Disco messages: the wire layout, seal/open round trips, demultiplexing against WireGuard and
// STUN, tampering, replay (a numbered table of window cases), hostile plaintexts and random
// bytes.
#include <gtest/gtest.h>

#include <sodium.h>

#include "base/random.hpp"
#include "punch/path/disco.hpp"

namespace knit::punch {
namespace {

Endpoint ep(const char* text) { return Endpoint::parse(text).value(); }

struct Keys {
  explicit Keys(std::uint64_t seed) : rng(seed) {
    generate_disco_key(a_priv, a_pub, rng);
    generate_disco_key(b_priv, b_pub, rng);
    EXPECT_TRUE(a_to_b.init(a_priv, a_pub, b_pub));
    EXPECT_TRUE(b_from_a.init(b_priv, b_pub, a_pub));
  }
  SeededRandom rng;
  wg::PrivateKey a_priv, b_priv;
  DiscoKey a_pub{}, b_pub{};
  DiscoSession a_to_b, b_from_a;
};

DiscoMessage make_ping(std::uint8_t seed) {
  DiscoMessage m;
  m.type = DiscoType::ping;
  m.ping.tx_id.fill(seed);
  m.ping.node_key.fill(static_cast<std::uint8_t>(seed + 1));
  return m;
}

TEST(PunchDisco, WireLayout) {
  Keys k(1);
  const Bytes p = k.a_to_b.seal(make_ping(7), 0x0102030405060708ULL, k.rng);
  ASSERT_EQ(p.size(), kDiscoHeaderSize + kDiscoTagSize + 2 + kPingBodySize);
  EXPECT_EQ(Bytes(p.begin(), p.begin() + 6), (Bytes{'K', 'N', 'I', 'T', 0x44, 0x31}));
  EXPECT_EQ(Bytes(p.begin() + 6, p.begin() + 38), Bytes(k.a_pub.begin(), k.a_pub.end()));
  EXPECT_EQ(load_be64(p.data() + 38), 0x0102030405060708ULL);  // the counter, in the nonce
  EXPECT_EQ(disco_sender(p), k.a_pub);
  // Decrypting by hand with libsodium's crypto_box_open_easy gives type | version | body.
  Bytes pt(p.size() - kDiscoHeaderSize - kDiscoTagSize);
  ASSERT_EQ(crypto_box_open_easy(pt.data(), p.data() + kDiscoHeaderSize, p.size() - kDiscoHeaderSize,
                                 p.data() + 38, k.a_pub.data(), k.b_priv.data()),
            0);
  EXPECT_EQ(pt[0], 1);
  EXPECT_EQ(pt[1], kDiscoVersion);
  EXPECT_EQ(pt[2], 7);
}

TEST(PunchDisco, TellsDiscoFromWireGuardAndStun) {
  EXPECT_TRUE(looks_like_disco(Bytes{'K', 'N', 'I', 'T', 0x44, 0x31}));
  EXPECT_FALSE(looks_like_disco(Bytes{'K', 'N', 'I', 'T', 0x44}));
  EXPECT_FALSE(looks_like_disco(Bytes{}));
  for (std::uint8_t wg_type = 1; wg_type <= 4; ++wg_type)
    EXPECT_FALSE(looks_like_disco(Bytes{wg_type, 0, 0, 0, 0x44, 0x31}));
  EXPECT_FALSE(looks_like_disco(Bytes{0x00, 0x01, 0x00, 0x00, 0x21, 0x12, 0xa4, 0x42}));  // STUN
  EXPECT_NE(kDiscoMagic[0] & 0xc0, 0);  // STUN's two top bits are zero
  EXPECT_GT(kDiscoMagic[0], 4);         // WireGuard's types are 1..4
}

TEST(PunchDisco, RoundTripsEveryType) {
  Keys k(2);
  std::uint64_t counter = 100;
  // ping
  DiscoMessage out;
  ASSERT_EQ(k.b_from_a.open(k.a_to_b.seal(make_ping(3), counter++, k.rng), out), DiscoError::none);
  EXPECT_EQ(out.type, DiscoType::ping);
  EXPECT_EQ(out.ping.tx_id, make_ping(3).ping.tx_id);
  EXPECT_EQ(out.ping.node_key, make_ping(3).ping.node_key);
  // pong, v4 and v6
  for (const char* observed : {"203.0.113.9:40000", "[2001:db8::7]:51820"}) {
    DiscoMessage m;
    m.type = DiscoType::pong;
    m.pong.tx_id.fill(9);
    m.pong.observed = ep(observed);
    ASSERT_EQ(k.b_from_a.open(k.a_to_b.seal(m, counter++, k.rng), out), DiscoError::none);
    EXPECT_EQ(out.type, DiscoType::pong);
    EXPECT_EQ(out.pong.tx_id, m.pong.tx_id);
    EXPECT_TRUE(out.pong.observed.same_remote(m.pong.observed));
  }
  // call-me-maybe, full
  DiscoMessage c;
  c.type = DiscoType::call_me_maybe;
  c.call_me_maybe.mapping_varies = true;
  c.call_me_maybe.active = true;
  c.call_me_maybe.epoch = 0x1122334455667788ULL;
  for (int i = 0; i < 20; ++i)  // more than the bound: only 16 go out
    c.call_me_maybe.endpoints.push_back(
        CandidateEndpoint{i % 2 ? CandidateKind::reflexive : CandidateKind::local,
                          Endpoint(IpAddress::v4(0xc0000200u + static_cast<std::uint32_t>(i)),
                                   static_cast<std::uint16_t>(1000 + i))});
  const Bytes sealed = k.a_to_b.seal(c, counter++, k.rng);
  EXPECT_LE(sealed.size(), kMaxDiscoPacket);
  ASSERT_EQ(k.b_from_a.open(sealed, out), DiscoError::none);
  EXPECT_EQ(out.type, DiscoType::call_me_maybe);
  EXPECT_TRUE(out.call_me_maybe.mapping_varies);
  EXPECT_TRUE(out.call_me_maybe.active);
  EXPECT_EQ(out.call_me_maybe.epoch, c.call_me_maybe.epoch);
  ASSERT_EQ(out.call_me_maybe.endpoints.size(), kMaxCallMeMaybeEndpoints);
  for (std::size_t i = 0; i < kMaxCallMeMaybeEndpoints; ++i)
    EXPECT_EQ(out.call_me_maybe.endpoints[i], c.call_me_maybe.endpoints[i]);
}

TEST(PunchDisco, TamperedOrMisaddressedPacketsDoNotOpen) {
  Keys k(3);
  const Bytes good = k.a_to_b.seal(make_ping(1), 5, k.rng);
  DiscoMessage out;
  for (std::size_t i = 0; i < good.size(); ++i) {
    Bytes bad = good;
    bad[i] ^= 0x01;
    const DiscoError e = k.b_from_a.open(bad, out);
    if (i < 6) EXPECT_EQ(e, DiscoError::not_disco) << i;
    else if (i < 38) EXPECT_EQ(e, DiscoError::unknown_sender) << i;
    else EXPECT_EQ(e, DiscoError::bad_box) << i;  // nonce, tag and ciphertext are authenticated
  }
  // A third party's box to B, claiming to be A.
  SeededRandom rng(9);
  wg::PrivateKey m_priv;
  DiscoKey m_pub{};
  generate_disco_key(m_priv, m_pub, rng);
  DiscoSession mallory;
  ASSERT_TRUE(mallory.init(m_priv, k.a_pub, k.b_pub));
  EXPECT_EQ(k.b_from_a.open(mallory.seal(make_ping(1), 6, rng), out), DiscoError::bad_box);
  // Sizes.
  EXPECT_EQ(k.b_from_a.open(ByteSpan(good.data(), kDiscoHeaderSize + kDiscoTagSize + 1), out),
            DiscoError::truncated);
  Bytes huge = good;
  huge.resize(kMaxDiscoProbePacket + 1);
  EXPECT_EQ(k.b_from_a.open(huge, out), DiscoError::too_big);
  // The good packet still opens (failures moved no replay state).
  EXPECT_EQ(k.b_from_a.open(good, out), DiscoError::none);
}

TEST(PunchDisco, LowOrderPeerKeyIsRefused) {
  SeededRandom rng(4);
  wg::PrivateKey priv;
  DiscoKey pub{};
  generate_disco_key(priv, pub, rng);
  DiscoSession s;
  EXPECT_FALSE(s.init(priv, pub, DiscoKey{}));  // the all-zero point
  EXPECT_FALSE(s.ready());
  DiscoMessage out;
  EXPECT_EQ(s.open(Bytes(100, 'K'), out), DiscoError::not_disco);
}

TEST(PunchDisco, ReplayWindowTable) {
  // Counters in the order they arrive, and whether each is accepted.
  struct Step {
    std::uint64_t counter;
    DiscoError want;
  };
  const std::uint64_t base = 1'700'000'000'000'000'000ULL;  // nanoseconds since 1970, as sent
  const Step steps[] = {
      /* 1 */ {base, DiscoError::none},
      /* 2 */ {base, DiscoError::replay},             // the same packet again
      /* 3 */ {base + 2, DiscoError::none},
      /* 4 */ {base + 1, DiscoError::none},           // late but new: reordered by the relay
      /* 5 */ {base + 1, DiscoError::replay},
      /* 6 */ {base + 10000, DiscoError::none},       // a jump forward
      /* 7 */ {base + 3, DiscoError::replay},         // now older than the window (8128)
      /* 8 */ {base + 10000 - 8000, DiscoError::none},  // inside the window, unseen
      /* 9 */ {base + 10000 - 8000, DiscoError::replay},
      /* 10 */ {base + 5'000'000'000ULL, DiscoError::none},  // the sender restarted later
      /* 11 */ {base + 10001, DiscoError::replay},           // its previous life: too old
  };
  Keys k(5);
  int line = 1;
  for (const Step& s : steps) {
    // Each step a freshly sealed packet with that counter (replays of the same bytes are the
    // same as a new packet with an old counter: the counter decides).
    DiscoMessage out;
    EXPECT_EQ(k.b_from_a.open(k.a_to_b.seal(make_ping(1), s.counter, k.rng), out), s.want)
        << "step " << line;
    ++line;
  }
}

TEST(PunchDisco, HostilePlaintexts) {
  DiscoMessage out;
  const auto decode = [&](Bytes b) { return decode_plaintext(b, out); };
  EXPECT_EQ(decode({}), DiscoError::truncated);
  EXPECT_EQ(decode({1}), DiscoError::truncated);
  EXPECT_EQ(decode({1, 0}), DiscoError::bad_version);
  EXPECT_EQ(decode({9, 1}), DiscoError::unknown_type);
  EXPECT_EQ(decode({0, 1}), DiscoError::unknown_type);
  EXPECT_EQ(decode(Bytes{1, 1} ), DiscoError::malformed);  // ping without a body
  Bytes ping(2 + kPingBodySize, 0);
  ping[0] = 1;
  ping[1] = 1;
  EXPECT_EQ(decode(ping), DiscoError::none);
  ping[1] = 2;  // a later version may append fields
  ping.push_back(0xee);
  EXPECT_EQ(decode(ping), DiscoError::none);
  // pong with a bad family, and with junk after an IPv4 address
  Bytes pong(2 + kPongBodySize, 0);
  pong[0] = 2;
  pong[1] = 1;
  pong[14] = 5;
  EXPECT_EQ(decode(pong), DiscoError::malformed);
  pong[14] = 4;
  EXPECT_EQ(decode(pong), DiscoError::none);
  pong[14 + 1 + 6] = 1;
  EXPECT_EQ(decode(pong), DiscoError::malformed);
  // call-me-maybe: too many endpoints, a count larger than the body, a bad kind
  Bytes cmm{3, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, static_cast<std::uint8_t>(kMaxCallMeMaybeEndpoints + 1)};
  EXPECT_EQ(decode(cmm), DiscoError::malformed);
  cmm.back() = 1;
  EXPECT_EQ(decode(cmm), DiscoError::malformed);
  cmm.push_back(1);                             // kind local
  cmm.push_back(4);                             // family
  cmm.insert(cmm.end(), 18, 0);                 // address and port
  EXPECT_EQ(decode(cmm), DiscoError::none);
  cmm[12] = 0;                                  // kind 0
  EXPECT_EQ(decode(cmm), DiscoError::malformed);
  cmm[12] = 9;
  EXPECT_EQ(decode(cmm), DiscoError::malformed);
}

TEST(PunchDisco, RandomBytesNeverCrashAndNeverOpen) {
  Keys k(6);
  SeededRandom rng(42);
  DiscoMessage out;
  for (int i = 0; i < 20000; ++i) {
    Bytes b(rng.uniform(600));
    rng.fill(b);
    if (i % 2 && b.size() >= kDiscoHeaderSize) {  // make the header right half the time
      std::copy(kDiscoMagic.begin(), kDiscoMagic.end(), b.begin());
      std::copy(k.a_pub.begin(), k.a_pub.end(), b.begin() + 6);
    }
    EXPECT_NE(k.b_from_a.open(b, out), DiscoError::none);
    (void)decode_plaintext(b, out);  // must not crash, whatever it says
  }
}


TEST(PunchDisco, PaddedPingsAndThePongFlag) {
  Keys k(9);
  // A padded ping opens to the same ping, its padding counted.
  DiscoMessage ping = make_ping(3);
  ping.ping.padding = 1400 - kDiscoPingSize;
  const Bytes p = k.a_to_b.seal(ping, 10, k.rng);
  EXPECT_EQ(p.size(), 1400u);
  DiscoMessage out;
  ASSERT_EQ(k.b_from_a.open(p, out), DiscoError::none);
  EXPECT_EQ(out.ping.tx_id, ping.ping.tx_id);
  EXPECT_EQ(out.ping.padding, ping.ping.padding);
  // Up to the probe limit, and not one byte more.
  ping.ping.padding = kMaxDiscoProbePacket - kDiscoPingSize;
  ASSERT_EQ(k.b_from_a.open(k.a_to_b.seal(ping, 11, k.rng), out), DiscoError::none);
  ping.ping.padding += 1;
  EXPECT_EQ(k.b_from_a.open(k.a_to_b.seal(ping, 12, k.rng), out), DiscoError::too_big);

  // What an older agent's parser sees: the body it knows, then bytes it ignores (a version may
  // append fields). A pong without the flags byte (from an older agent) says "no padded pings".
  DiscoMessage pong;
  pong.type = DiscoType::pong;
  pong.pong.tx_id.fill(5);
  pong.pong.observed = ep("192.0.2.1:41641");
  pong.pong.padded_pings = true;
  Bytes plain = encode_plaintext(pong);
  ASSERT_EQ(plain.size(), 2 + kPongBodySize + 1);
  EXPECT_EQ(plain.back(), kPongFlagPaddedPings);
  ASSERT_EQ(decode_plaintext(plain, out), DiscoError::none);
  EXPECT_TRUE(out.pong.padded_pings);
  plain.pop_back();  // the old layout
  ASSERT_EQ(decode_plaintext(plain, out), DiscoError::none);
  EXPECT_FALSE(out.pong.padded_pings);
  EXPECT_EQ(out.pong.observed, pong.pong.observed);
}
}  // namespace
}  // namespace knit::punch
