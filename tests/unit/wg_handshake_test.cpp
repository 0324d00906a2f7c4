// The WireGuard handshake between two Handshake objects: the happy path, replay and flood
// protection, tampering, calls out of order and the zeroing of key material.
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <optional>

#include "base/bytes.hpp"
#include "base/random.hpp"
#include "wg/crypto.hpp"
#include "wg/handshake.hpp"
#include "wg/messages.hpp"

namespace knit::wg {
namespace {

using Initiation = std::array<std::uint8_t, kInitiationSize>;
using Response = std::array<std::uint8_t, kResponseSize>;

std::string hex_of(const SymmetricKey& key) { return to_hex(key.span()); }

PrivateKey private_from_base64(std::string_view b64) {
  auto bytes = from_base64(b64);
  EXPECT_TRUE(bytes && bytes->size() == 32);
  PrivateKey key;
  if (bytes && bytes->size() == 32) {
    key.assign(std::span<const std::uint8_t, 32>(bytes->data(), 32));
    sodium_memzero(bytes->data(), bytes->size());
  }
  return key;
}

const WallTime kWall{std::chrono::seconds(1700000000)};
const Instant kStart{};

class HandshakeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Alice's pair was made with `wg genkey | tee /dev/stderr | wg pubkey` (interop sanity:
    // LocalIdentity derives the same public key as stock WireGuard).
    alice_.set(private_from_base64("SKeIebLRw0owC5KjCEZ0quqfZZFnnHFnoD/CXKanmWI="));
    bob_.set(crypto::generate_private_key(rng_));
    rng_.fill(psk_.span());
    a_.configure(alice_, bob_.public_key, psk_);
    b_.configure(bob_, alice_.public_key, psk_);
  }

  // Alice initiates at wall time `wall`; bob's device consumes the message.
  ConsumedInitiation initiate(WallTime wall, Initiation& msg) {
    EXPECT_TRUE(a_.create_initiation(msg, kAliceIndex, wall, rng_));
    ConsumedInitiation consumed;
    EXPECT_EQ(consume_initiation(bob_, msg, consumed), HandshakeError::ok);
    return consumed;
  }

  static constexpr std::uint32_t kAliceIndex = 0x11223344;
  static constexpr std::uint32_t kBobIndex = 0xa1b2c3d4;

  SeededRandom rng_{2024};
  LocalIdentity alice_;
  LocalIdentity bob_;
  PresharedKey psk_;
  Handshake a_;
  Handshake b_;
};

TEST_F(HandshakeTest, LocalIdentityMatchesWgPubkey) {
  EXPECT_EQ(to_base64(alice_.public_key), "6GbdJcqg5wnzxHe74yV+8ZFVxHiZu8NlL+2DWdBocj4=");
  EXPECT_FALSE(alice_.empty());
  LocalIdentity none;
  EXPECT_TRUE(none.empty());
}

TEST_F(HandshakeTest, FullHandshakeYieldsMatchingSessionKeys) {
  ASSERT_TRUE(a_.configured());
  ASSERT_TRUE(b_.configured());
  Initiation init{};
  ASSERT_TRUE(a_.create_initiation(init, kAliceIndex, kWall, rng_));
  EXPECT_EQ(a_.state(), Handshake::State::created_initiation);
  EXPECT_EQ(a_.local_index(), kAliceIndex);
  EXPECT_EQ(classify(init), Classified::initiation);
  EXPECT_EQ(sender_index(init), kAliceIndex);
  for (std::size_t i = kInitiationMac1Offset; i < kInitiationSize; ++i) EXPECT_EQ(init[i], 0);

  ConsumedInitiation consumed;
  ASSERT_EQ(consume_initiation(bob_, init, consumed), HandshakeError::ok);
  EXPECT_EQ(consumed.remote_static, alice_.public_key);
  EXPECT_EQ(consumed.remote_index, kAliceIndex);
  EXPECT_EQ(consumed.timestamp, crypto::tai64n(kWall));  // whole seconds: nothing to round
  ASSERT_EQ(b_.accept_initiation(consumed, kStart), HandshakeError::ok);
  EXPECT_EQ(b_.state(), Handshake::State::consumed_initiation);

  Response resp{};
  ASSERT_TRUE(b_.create_response(resp, kBobIndex, rng_));
  EXPECT_EQ(b_.state(), Handshake::State::created_response);
  EXPECT_EQ(classify(resp), Classified::response);
  EXPECT_EQ(sender_index(resp), kBobIndex);
  EXPECT_EQ(receiver_index(resp), kAliceIndex);
  for (std::size_t i = kResponseMac1Offset; i < kResponseSize; ++i) EXPECT_EQ(resp[i], 0);

  ASSERT_EQ(a_.consume_response(resp), HandshakeError::ok);
  EXPECT_EQ(a_.state(), Handshake::State::consumed_response);

  const auto ka = a_.derive_session();
  const auto kb = b_.derive_session();
  ASSERT_TRUE(ka && kb);
  EXPECT_EQ(hex_of(ka->send), hex_of(kb->receive));
  EXPECT_EQ(hex_of(ka->receive), hex_of(kb->send));
  EXPECT_NE(hex_of(ka->send), hex_of(ka->receive));
  EXPECT_FALSE(ka->send.is_zero());
  EXPECT_EQ(ka->local_index, kAliceIndex);
  EXPECT_EQ(ka->remote_index, kBobIndex);
  EXPECT_EQ(kb->local_index, kBobIndex);
  EXPECT_EQ(kb->remote_index, kAliceIndex);
  EXPECT_TRUE(ka->initiator);
  EXPECT_FALSE(kb->initiator);

  // Data keys work: alice's first transport message opens on bob's side (§5.4.6).
  std::array<std::uint8_t, 16> sealed{};
  crypto::aead_encrypt(sealed, {}, 0, ka->send, {});
  EXPECT_TRUE(crypto::aead_decrypt({}, sealed, 0, kb->receive, {}));
}

TEST_F(HandshakeTest, KeyMaterialIsZeroedAfterDeriveSession) {
  EXPECT_FALSE(a_.holds_key_material());
  Initiation init{};
  ConsumedInitiation consumed = initiate(kWall, init);
  EXPECT_TRUE(a_.holds_key_material());
  ASSERT_EQ(b_.accept_initiation(consumed, kStart), HandshakeError::ok);
  EXPECT_TRUE(b_.holds_key_material());
  Response resp{};
  ASSERT_TRUE(b_.create_response(resp, kBobIndex, rng_));
  ASSERT_EQ(a_.consume_response(resp), HandshakeError::ok);

  ASSERT_TRUE(a_.derive_session());
  ASSERT_TRUE(b_.derive_session());
  for (Handshake* h : {&a_, &b_}) {
    EXPECT_EQ(h->state(), Handshake::State::zeroed);
    EXPECT_FALSE(h->holds_key_material());
    EXPECT_EQ(h->local_index(), 0u);
    EXPECT_FALSE(h->derive_session());  // nothing left to derive from
  }
  // clear() zeroes a handshake in flight too.
  ASSERT_TRUE(a_.create_initiation(init, kAliceIndex, kWall + 1s, rng_));
  a_.clear();
  EXPECT_EQ(a_.state(), Handshake::State::zeroed);
  EXPECT_FALSE(a_.holds_key_material());
}

TEST_F(HandshakeTest, ReplayedInitiationIsRefused) {
  Initiation init{};
  ConsumedInitiation consumed = initiate(kWall, init);
  ASSERT_EQ(b_.accept_initiation(consumed, kStart), HandshakeError::ok);

  // The very same datagram again, long after the flood window.
  ConsumedInitiation again;
  ASSERT_EQ(consume_initiation(bob_, init, again), HandshakeError::ok);
  EXPECT_EQ(b_.accept_initiation(again, kStart + 10s), HandshakeError::replayed_timestamp);
  // An older timestamp is refused as well.
  Initiation older{};
  ConsumedInitiation old = initiate(kWall - 1s, older);
  EXPECT_EQ(b_.accept_initiation(old, kStart + 10s), HandshakeError::replayed_timestamp);
  // The refused initiations did not disturb the one being answered.
  EXPECT_EQ(b_.state(), Handshake::State::consumed_initiation);
}

TEST_F(HandshakeTest, SecondInitiationWithin20msIsAFlood) {
  Initiation init{};
  ASSERT_EQ(b_.accept_initiation(initiate(kWall, init), kStart), HandshakeError::ok);
  // A genuinely newer initiation (a fresh timestamp), but only 19 ms later.
  ConsumedInitiation second = initiate(kWall + 1s, init);
  EXPECT_EQ(b_.accept_initiation(second, kStart + 19ms), HandshakeError::flood);
  // Once kHandshakeInitiationRate has passed it is accepted.
  EXPECT_EQ(b_.accept_initiation(second, kStart + kHandshakeInitiationRate),
            HandshakeError::ok);
}

TEST_F(HandshakeTest, TimestampNanosecondsAreWhitened) {
  Initiation init{};
  const WallTime wall = kWall + std::chrono::duration_cast<WallTime::duration>(
                                    std::chrono::nanoseconds(123456789));
  ConsumedInitiation consumed = initiate(wall, init);
  const std::uint32_t nanos = load_be32(consumed.timestamp.data() + 8);
  EXPECT_EQ(nanos, 123456789u & ~((1u << 24) - 1));
  EXPECT_EQ(load_be64(consumed.timestamp.data()), 0x400000000000000aULL + 1700000000ULL);
}

TEST_F(HandshakeTest, TamperedInitiationFails) {
  Initiation init{};
  ASSERT_TRUE(a_.create_initiation(init, kAliceIndex, kWall, rng_));
  ConsumedInitiation out;
  for (std::size_t i = 8; i < kInitiationMac1Offset; ++i) {
    Initiation bad = init;
    bad[i] ^= 0x20;
    const auto err = consume_initiation(bob_, bad, out);
    EXPECT_TRUE(err == HandshakeError::decrypt_failed || err == HandshakeError::bad_key) << i;
  }
  Initiation bad = init;
  bad[0] = 2;
  EXPECT_EQ(consume_initiation(bob_, bad, out), HandshakeError::malformed);
  bad = init;
  bad[2] = 1;
  EXPECT_EQ(consume_initiation(bob_, bad, out), HandshakeError::malformed);
  // Meant for someone else: carol cannot read it.
  LocalIdentity carol;
  carol.set(crypto::generate_private_key(rng_));
  EXPECT_EQ(consume_initiation(carol, init, out), HandshakeError::decrypt_failed);
  // A low-order ephemeral key.
  bad = init;
  std::fill(bad.begin() + 8, bad.begin() + 40, std::uint8_t{0});
  EXPECT_EQ(consume_initiation(bob_, bad, out), HandshakeError::bad_key);
  // And the genuine one still works.
  EXPECT_EQ(consume_initiation(bob_, init, out), HandshakeError::ok);
}

TEST_F(HandshakeTest, TamperedResponseFailsAndKeepsTheInitiationInFlight) {
  Initiation init{};
  ASSERT_EQ(b_.accept_initiation(initiate(kWall, init), kStart), HandshakeError::ok);
  Response resp{};
  ASSERT_TRUE(b_.create_response(resp, kBobIndex, rng_));

  for (std::size_t i = 12; i < kResponseMac1Offset; ++i) {
    Response bad = resp;
    bad[i] ^= 0x01;
    const auto err = a_.consume_response(bad);
    EXPECT_TRUE(err == HandshakeError::decrypt_failed || err == HandshakeError::bad_key) << i;
    EXPECT_EQ(a_.state(), Handshake::State::created_initiation);
  }
  Response bad = resp;
  bad[3] = 7;
  EXPECT_EQ(a_.consume_response(bad), HandshakeError::malformed);
  bad = resp;
  store_le32(bad.data() + 8, kAliceIndex + 1);  // not the index of the initiation in flight
  EXPECT_EQ(a_.consume_response(bad), HandshakeError::wrong_state);

  EXPECT_EQ(a_.consume_response(resp), HandshakeError::ok);
  // A second copy of the response finds no initiation in flight.
  EXPECT_EQ(a_.consume_response(resp), HandshakeError::wrong_state);
}

TEST_F(HandshakeTest, MismatchedPresharedKeyFails) {
  PresharedKey other;
  other.data()[0] = 1;
  b_.configure(bob_, alice_.public_key, other);
  Initiation init{};
  ASSERT_EQ(b_.accept_initiation(initiate(kWall, init), kStart), HandshakeError::ok);
  Response resp{};
  ASSERT_TRUE(b_.create_response(resp, kBobIndex, rng_));
  EXPECT_EQ(a_.consume_response(resp), HandshakeError::decrypt_failed);
}

TEST_F(HandshakeTest, NoPresharedKeyMeansZerosOnBothSides) {
  a_.configure(alice_, bob_.public_key, PresharedKey{});
  b_.configure(bob_, alice_.public_key, PresharedKey{});
  Initiation init{};
  ASSERT_EQ(b_.accept_initiation(initiate(kWall, init), kStart), HandshakeError::ok);
  Response resp{};
  ASSERT_TRUE(b_.create_response(resp, kBobIndex, rng_));
  EXPECT_EQ(a_.consume_response(resp), HandshakeError::ok);
}

TEST_F(HandshakeTest, CallsInTheWrongStateFail) {
  Response resp{};
  Initiation init{};
  // Nothing in flight.
  EXPECT_FALSE(b_.create_response(resp, kBobIndex, rng_));
  EXPECT_EQ(a_.consume_response(resp), HandshakeError::malformed);  // all zeros: type 0
  resp[0] = 2;
  EXPECT_EQ(a_.consume_response(resp), HandshakeError::wrong_state);
  EXPECT_FALSE(a_.derive_session());

  // The initiator cannot answer its own initiation, nor derive before the response.
  ASSERT_TRUE(a_.create_initiation(init, kAliceIndex, kWall, rng_));
  EXPECT_FALSE(a_.create_response(resp, kAliceIndex, rng_));
  EXPECT_FALSE(a_.derive_session());
  EXPECT_EQ(a_.state(), Handshake::State::created_initiation);

  // The responder cannot consume a response.
  ConsumedInitiation consumed;
  ASSERT_EQ(consume_initiation(bob_, init, consumed), HandshakeError::ok);
  ASSERT_EQ(b_.accept_initiation(consumed, kStart), HandshakeError::ok);
  ASSERT_TRUE(b_.create_response(resp, kBobIndex, rng_));
  EXPECT_EQ(b_.consume_response(resp), HandshakeError::wrong_state);
  EXPECT_FALSE(b_.create_response(resp, kBobIndex, rng_));  // already answered

  // An initiation matched to the wrong peer's Handshake.
  Handshake c;
  LocalIdentity carol;
  carol.set(crypto::generate_private_key(rng_));
  c.configure(bob_, carol.public_key, psk_);
  EXPECT_EQ(c.accept_initiation(consumed, kStart), HandshakeError::wrong_state);

  // Without a local key nothing works.
  Handshake unconfigured;
  EXPECT_FALSE(unconfigured.configured());
  EXPECT_FALSE(unconfigured.create_initiation(init, 1, kWall, rng_));
  EXPECT_EQ(unconfigured.accept_initiation(consumed, kStart), HandshakeError::wrong_state);
  EXPECT_EQ(consume_initiation(LocalIdentity{}, init, consumed), HandshakeError::wrong_state);
}

TEST_F(HandshakeTest, LowOrderRemoteStaticCannotBeConfigured) {
  Handshake h;
  h.configure(alice_, PublicKey{}, psk_);  // the all-zero point
  EXPECT_FALSE(h.configured());
  Initiation init{};
  EXPECT_FALSE(h.create_initiation(init, 1, kWall, rng_));
  EXPECT_EQ(h.state(), Handshake::State::zeroed);
}

TEST_F(HandshakeTest, ReconfiguringClearsTheHandshakeInFlight) {
  Initiation init{};
  ASSERT_TRUE(a_.create_initiation(init, kAliceIndex, kWall, rng_));
  a_.configure(alice_, bob_.public_key, psk_);
  EXPECT_EQ(a_.state(), Handshake::State::zeroed);
  EXPECT_FALSE(a_.holds_key_material());
  EXPECT_EQ(a_.remote_static(), bob_.public_key);
}

TEST_F(HandshakeTest, SimultaneousInitiationsResolveToTheAcceptedOne) {
  // Both sides initiate; bob accepts alice's, which replaces bob's own initiation.
  Initiation from_a{};
  Initiation from_b{};
  ASSERT_TRUE(b_.create_initiation(from_b, kBobIndex, kWall, rng_));
  ConsumedInitiation consumed = initiate(kWall, from_a);
  ASSERT_EQ(b_.accept_initiation(consumed, kStart), HandshakeError::ok);
  Response resp{};
  ASSERT_TRUE(b_.create_response(resp, kBobIndex + 1, rng_));
  ASSERT_EQ(a_.consume_response(resp), HandshakeError::ok);
  const auto ka = a_.derive_session();
  const auto kb = b_.derive_session();
  ASSERT_TRUE(ka && kb);
  EXPECT_EQ(hex_of(ka->send), hex_of(kb->receive));
  EXPECT_EQ(ka->remote_index, kBobIndex + 1);
}

TEST_F(HandshakeTest, RepeatedHandshakesGiveFreshKeys) {
  std::string previous;
  for (int round = 0; round < 3; ++round) {
    Initiation init{};
    ConsumedInitiation consumed = initiate(kWall + std::chrono::seconds(round), init);
    ASSERT_EQ(b_.accept_initiation(consumed, kStart + std::chrono::seconds(round)),
              HandshakeError::ok);
    Response resp{};
    ASSERT_TRUE(b_.create_response(resp, kBobIndex, rng_));
    ASSERT_EQ(a_.consume_response(resp), HandshakeError::ok);
    const auto ka = a_.derive_session();
    const auto kb = b_.derive_session();
    ASSERT_TRUE(ka && kb);
    EXPECT_EQ(hex_of(ka->send), hex_of(kb->receive));
    EXPECT_NE(hex_of(ka->send), previous);
    previous = hex_of(ka->send);
  }
}

}  // namespace
}  // namespace knit::wg
