// mac1/mac2 and cookie replies (§5.4.4, §5.4.7): the responder's CookieChecker and the
// initiator's CookieMacs, on a manual clock.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>

#include "base/bytes.hpp"
#include "base/ip.hpp"
#include "base/random.hpp"
#include "wg/cookie.hpp"
#include "wg/crypto.hpp"
#include "wg/handshake.hpp"
#include "wg/messages.hpp"

namespace knit::wg {
namespace {

using Initiation = std::array<std::uint8_t, kInitiationSize>;
using Reply = std::array<std::uint8_t, kCookieReplySize>;

ByteSpan text(std::string_view s) {
  return ByteSpan(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
}

Endpoint endpoint(std::string_view s) {
  auto e = Endpoint::parse(s);
  EXPECT_TRUE(e) << s;
  return e.value_or(Endpoint{});
}

bool all_zero(ByteSpan bytes) {
  return std::all_of(bytes.begin(), bytes.end(), [](std::uint8_t b) { return b == 0; });
}

const WallTime kWall{std::chrono::seconds(1700000000)};
const Instant kStart = Instant{} + 1000s;

class CookieTest : public ::testing::Test {
 protected:
  void SetUp() override {
    alice_.set(crypto::generate_private_key(rng_));
    bob_.set(crypto::generate_private_key(rng_));
    handshake_.configure(alice_, bob_.public_key, PresharedKey{});
    checker_.configure(bob_.public_key);
    macs_.configure(bob_.public_key);
  }

  // A fresh initiation from alice to bob, macs not yet added.
  Initiation initiation() {
    Initiation msg{};
    EXPECT_TRUE(handshake_.create_initiation(msg, 7, kWall + std::chrono::seconds(++round_),
                                             rng_));
    return msg;
  }

  // What only bob and alice can compute: the cookie inside a reply, decrypted by hand.
  std::array<std::uint8_t, kCookieSize> open_reply(const Reply& reply, ByteSpan mac1) {
    std::array<std::uint8_t, 32> key{};
    crypto::hash(key, {text(kLabelCookie), bob_.public_key});
    std::array<std::uint8_t, kCookieSize> cookie{};
    EXPECT_TRUE(crypto::xaead_decrypt(cookie, ByteSpan(reply).subspan(32),
                                      std::span<const std::uint8_t, 24>(reply.data() + 8, 24),
                                      key, mac1));
    return cookie;
  }

  SeededRandom rng_{99};
  LocalIdentity alice_;
  LocalIdentity bob_;
  Handshake handshake_;
  CookieChecker checker_;
  CookieMacs macs_;
  const Endpoint source_ = endpoint("192.0.2.10:51820");
  int round_ = 0;
};

TEST_F(CookieTest, Mac1IsKeyedByTheReceiversPublicKey) {
  Initiation msg = initiation();
  macs_.add_macs(msg, kStart);
  // mac1 = MAC(HASH(LABEL_MAC1 || S_pub_r), msg[0..116]), computed by hand.
  std::array<std::uint8_t, 32> key{};
  crypto::hash(key, {text(kLabelMac1), bob_.public_key});
  std::array<std::uint8_t, 16> want{};
  crypto::mac(want, key, ByteSpan(msg).first(kInitiationMac1Offset));
  EXPECT_TRUE(std::equal(want.begin(), want.end(), msg.begin() + kInitiationMac1Offset));
  EXPECT_TRUE(all_zero(ByteSpan(msg).subspan(kInitiationMac2Offset)));  // no cookie: mac2 = 0

  EXPECT_EQ(checker_.check(msg, source_, kStart, false), MacCheck::valid_mac_no_cookie);
  EXPECT_EQ(checker_.check(msg, source_, kStart, true), MacCheck::valid_mac_no_cookie);
}

TEST_F(CookieTest, InvalidMac1IsRejected) {
  Initiation msg = initiation();
  macs_.add_macs(msg, kStart);
  for (std::size_t i = 0; i < kInitiationMac2Offset; ++i) {
    Initiation bad = msg;
    bad[i] ^= 0x01;
    EXPECT_EQ(checker_.check(bad, source_, kStart, false), MacCheck::invalid_mac) << i;
  }
  // mac2 is not covered by mac1.
  Initiation with_junk_mac2 = msg;
  with_junk_mac2[kInitiationMac2Offset] ^= 0xff;
  EXPECT_EQ(checker_.check(with_junk_mac2, source_, kStart, false), MacCheck::valid_mac_no_cookie);

  // Macs for someone else's key.
  CookieMacs for_carol;
  LocalIdentity carol;
  carol.set(crypto::generate_private_key(rng_));
  for_carol.configure(carol.public_key);
  Initiation other = initiation();
  for_carol.add_macs(other, kStart);
  EXPECT_EQ(checker_.check(other, source_, kStart, false), MacCheck::invalid_mac);

  // Not a handshake message's size.
  EXPECT_EQ(checker_.check(ByteSpan(msg).first(147), source_, kStart, false),
            MacCheck::invalid_mac);
  EXPECT_EQ(checker_.check({}, source_, kStart, false), MacCheck::invalid_mac);
  Bytes data(kCookieReplySize);
  EXPECT_EQ(checker_.check(data, source_, kStart, true), MacCheck::invalid_mac);
}

TEST_F(CookieTest, ResponsesCarryMacsToo) {
  std::array<std::uint8_t, kResponseSize> resp{};
  resp[0] = 2;
  SeededRandom(5).fill(MutableByteSpan(resp).subspan(4, 56));
  macs_.add_macs(resp, kStart);
  EXPECT_FALSE(all_zero(ByteSpan(resp).subspan(kResponseMac1Offset, kMacSize)));
  EXPECT_EQ(checker_.check(resp, source_, kStart, false), MacCheck::valid_mac_no_cookie);
  resp[50] ^= 1;
  EXPECT_EQ(checker_.check(resp, source_, kStart, false), MacCheck::invalid_mac);
}

TEST_F(CookieTest, UnderLoadTheCookieRoundTrips) {
  Initiation first = initiation();
  macs_.add_macs(first, kStart);
  ASSERT_EQ(checker_.check(first, source_, kStart, true), MacCheck::valid_mac_no_cookie);

  Reply reply{};
  checker_.create_reply(reply, first, 7, source_, kStart, rng_);
  EXPECT_EQ(classify(reply), Classified::cookie_reply);
  EXPECT_EQ(receiver_index(reply), 7u);
  ASSERT_EQ(macs_.consume_reply(reply, kStart + 10ms), CookieMacs::ReplyResult::ok);
  EXPECT_TRUE(macs_.has_fresh_cookie(kStart + 10ms));

  Initiation second = initiation();
  macs_.add_macs(second, kStart + 1s);
  EXPECT_FALSE(all_zero(ByteSpan(second).subspan(kInitiationMac2Offset)));
  EXPECT_EQ(checker_.check(second, source_, kStart + 1s, true), MacCheck::valid_mac_with_cookie);
  // Not under load, mac2 is not even looked at.
  EXPECT_EQ(checker_.check(second, source_, kStart + 1s, false), MacCheck::valid_mac_no_cookie);

  // mac2 covers everything before it, mac1 included.
  Initiation bad = second;
  bad[kInitiationMac2Offset + 3] ^= 1;
  EXPECT_EQ(checker_.check(bad, source_, kStart + 1s, true), MacCheck::valid_mac_no_cookie);

  // The cookie is bound to the source address and port.
  EXPECT_EQ(checker_.check(second, endpoint("192.0.2.11:51820"), kStart + 1s, true),
            MacCheck::valid_mac_no_cookie);
  EXPECT_EQ(checker_.check(second, endpoint("192.0.2.10:51821"), kStart + 1s, true),
            MacCheck::valid_mac_no_cookie);
  EXPECT_EQ(checker_.check(second, endpoint("[2001:db8::10]:51820"), kStart + 1s, true),
            MacCheck::valid_mac_no_cookie);
}

TEST_F(CookieTest, CookieIsTheMacOfAddressBytesAndBigEndianPort) {
  Initiation msg = initiation();
  macs_.add_macs(msg, kStart);
  Reply reply{};
  std::array<std::uint8_t, 32> secret{};
  SeededRandom twin(1234);  // the checker draws R first, from the same stream
  twin.fill(secret);
  SeededRandom rng(1234);
  checker_.create_reply(reply, msg, 7, source_, kStart, rng);
  const auto cookie = open_reply(reply, ByteSpan(msg).subspan(kInitiationMac1Offset, kMacSize));
  const std::array<std::uint8_t, 6> a = {192, 0, 2, 10, 51820 >> 8, 51820 & 0xff};
  std::array<std::uint8_t, 16> want{};
  crypto::mac(want, secret, a);
  EXPECT_EQ(cookie, want);
}

TEST_F(CookieTest, IPv6SourcesWork) {
  const Endpoint v6 = endpoint("[2001:db8::10]:4500");
  Initiation first = initiation();
  macs_.add_macs(first, kStart);
  Reply reply{};
  checker_.create_reply(reply, first, 7, v6, kStart, rng_);
  ASSERT_EQ(macs_.consume_reply(reply, kStart), CookieMacs::ReplyResult::ok);
  Initiation second = initiation();
  macs_.add_macs(second, kStart);
  EXPECT_EQ(checker_.check(second, v6, kStart, true), MacCheck::valid_mac_with_cookie);
  EXPECT_EQ(checker_.check(second, source_, kStart, true), MacCheck::valid_mac_no_cookie);
}

TEST_F(CookieTest, CookieOlderThan120sIsNotUsed) {
  Initiation first = initiation();
  macs_.add_macs(first, kStart);
  Reply reply{};
  checker_.create_reply(reply, first, 7, source_, kStart, rng_);
  ASSERT_EQ(macs_.consume_reply(reply, kStart), CookieMacs::ReplyResult::ok);

  Initiation msg = initiation();
  macs_.add_macs(msg, kStart + 119s);
  EXPECT_FALSE(all_zero(ByteSpan(msg).subspan(kInitiationMac2Offset)));
  EXPECT_TRUE(macs_.has_fresh_cookie(kStart + 119s));

  macs_.add_macs(msg, kStart + kCookieRefreshTime);
  EXPECT_FALSE(macs_.has_fresh_cookie(kStart + kCookieRefreshTime));
  EXPECT_TRUE(all_zero(ByteSpan(msg).subspan(kInitiationMac2Offset)));
  EXPECT_EQ(checker_.check(msg, source_, kStart + kCookieRefreshTime, false),
            MacCheck::valid_mac_no_cookie);
}

TEST_F(CookieTest, SecretRotatesAfter120s) {
  Initiation first = initiation();
  macs_.add_macs(first, kStart);
  Reply reply{};
  checker_.create_reply(reply, first, 7, source_, kStart, rng_);
  const auto old_cookie = open_reply(reply, ByteSpan(first).subspan(kInitiationMac1Offset, 16));
  ASSERT_EQ(macs_.consume_reply(reply, kStart), CookieMacs::ReplyResult::ok);

  // Within the secret's life a second reply carries the same cookie.
  Initiation msg = initiation();
  macs_.add_macs(msg, kStart + 100s);
  ASSERT_EQ(checker_.check(msg, source_, kStart + 100s, true), MacCheck::valid_mac_with_cookie);
  checker_.create_reply(reply, msg, 7, source_, kStart + 100s, rng_);
  EXPECT_EQ(open_reply(reply, ByteSpan(msg).subspan(kInitiationMac1Offset, 16)), old_cookie);

  // Past 120 s the secret has expired: the old mac2 no longer counts...
  EXPECT_EQ(checker_.check(msg, source_, kStart + kCookieRefreshTime, true),
            MacCheck::valid_mac_no_cookie);
  // ...and the next reply is minted with a new secret, under which the old one stays invalid.
  checker_.create_reply(reply, msg, 7, source_, kStart + 121s, rng_);
  const auto new_cookie = open_reply(reply, ByteSpan(msg).subspan(kInitiationMac1Offset, 16));
  EXPECT_NE(new_cookie, old_cookie);
  EXPECT_EQ(checker_.check(msg, source_, kStart + 122s, true), MacCheck::valid_mac_no_cookie);

  // The initiator picks the new cookie up and is let through again.
  ASSERT_EQ(macs_.consume_reply(reply, kStart + 121s), CookieMacs::ReplyResult::ok);
  Initiation again = initiation();
  macs_.add_macs(again, kStart + 122s);
  EXPECT_EQ(checker_.check(again, source_, kStart + 122s, true), MacCheck::valid_mac_with_cookie);
}

TEST_F(CookieTest, ForgedOrCorruptedReplyFailsToDecrypt) {
  Initiation first = initiation();
  macs_.add_macs(first, kStart);
  Reply reply{};
  checker_.create_reply(reply, first, 7, source_, kStart, rng_);

  for (std::size_t i = 8; i < kCookieReplySize; ++i) {  // nonce and sealed cookie
    Reply bad = reply;
    bad[i] ^= 0x40;
    EXPECT_EQ(macs_.consume_reply(bad, kStart), CookieMacs::ReplyResult::decrypt_failed) << i;
  }
  // A reply minted by a responder with another key.
  CookieChecker impostor;
  LocalIdentity carol;
  carol.set(crypto::generate_private_key(rng_));
  impostor.configure(carol.public_key);
  Reply forged{};
  impostor.create_reply(forged, first, 7, source_, kStart, rng_);
  EXPECT_EQ(macs_.consume_reply(forged, kStart), CookieMacs::ReplyResult::decrypt_failed);
  // A reply answering an older message (its mac1 is no longer the last one sent).
  Initiation second = initiation();
  macs_.add_macs(second, kStart);
  EXPECT_EQ(macs_.consume_reply(reply, kStart), CookieMacs::ReplyResult::decrypt_failed);
  EXPECT_FALSE(macs_.has_fresh_cookie(kStart));

  // None of that stopped the genuine reply to the latest message.
  checker_.create_reply(reply, second, 7, source_, kStart, rng_);
  EXPECT_EQ(macs_.consume_reply(reply, kStart), CookieMacs::ReplyResult::ok);
}

TEST_F(CookieTest, ReplyWithoutAMac1SentIsUnexpected) {
  Initiation first = initiation();
  CookieMacs fresh;
  fresh.configure(bob_.public_key);
  Reply reply{};
  macs_.add_macs(first, kStart);
  checker_.create_reply(reply, first, 7, source_, kStart, rng_);
  EXPECT_EQ(fresh.consume_reply(reply, kStart), CookieMacs::ReplyResult::unexpected);

  // One reply per mac1 sent: a replay of the consumed reply is unexpected too.
  ASSERT_EQ(macs_.consume_reply(reply, kStart), CookieMacs::ReplyResult::ok);
  EXPECT_EQ(macs_.consume_reply(reply, kStart), CookieMacs::ReplyResult::unexpected);
  // Reconfiguring forgets the cookie and the mac1.
  macs_.configure(bob_.public_key);
  EXPECT_FALSE(macs_.has_fresh_cookie(kStart));
}

TEST_F(CookieTest, ReplyToANonHandshakeMessageIsAllZero) {
  Reply reply{};
  reply.fill(0xaa);
  checker_.create_reply(reply, Bytes(kMinDataSize), 7, source_, kStart, rng_);
  EXPECT_TRUE(all_zero(reply));
  EXPECT_EQ(classify(reply), Classified::unknown_type);
  // add_macs leaves other sizes alone.
  Bytes data(40, 0x33);
  macs_.add_macs(data, kStart);
  EXPECT_EQ(data, Bytes(40, 0x33));
}

}  // namespace
}  // namespace knit::wg
