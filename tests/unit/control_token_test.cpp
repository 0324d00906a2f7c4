// Join tokens: the round trip, every spelling of damage (each single-character change, each
// truncation), other prefixes and garbage, and the secret hash.
#include <gtest/gtest.h>

#include <string>

#include "base/random.hpp"
#include "control/token.hpp"
#include "wg/crypto.hpp"

namespace knit::control {
namespace {

constexpr std::string_view kAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

JoinToken sample_token(std::uint64_t seed = 1) {
  SeededRandom rng(seed);
  JoinToken token;
  token.addresses = {*HostPort::parse("coord.example.com:7443"),
                     *HostPort::parse("192.0.2.10:7443"), *HostPort::parse("[2001:db8::10]:7443")};
  rng.fill(token.coordinator_key);
  rng.fill(token.id);
  rng.fill(token.secret.span());
  return token;
}

void expect_same(const JoinToken& a, const JoinToken& b) {
  EXPECT_EQ(a.addresses, b.addresses);
  EXPECT_EQ(a.coordinator_key, b.coordinator_key);
  EXPECT_EQ(a.id, b.id);
  EXPECT_TRUE(a.secret.equals(b.secret.span()));
}

TEST(ControlToken, RoundTrip) {
  const JoinToken token = sample_token();
  const std::string text = encode_token(token);
  ASSERT_FALSE(text.empty());
  EXPECT_TRUE(text.starts_with("knit1-"));
  EXPECT_EQ(text.find_first_not_of(std::string(kAlphabet) + "knit1-"), std::string::npos);
  JoinToken back;
  ASSERT_EQ(decode_token(text, back), TokenError::ok);
  expect_same(token, back);
  // Encoding is deterministic: one token, one spelling.
  EXPECT_EQ(encode_token(back), text);
}

TEST(ControlToken, RoundTripManyShapes) {
  SeededRandom rng(7);
  for (int round = 0; round < 200; ++round) {
    JoinToken token = sample_token(static_cast<std::uint64_t>(round) + 100);
    token.addresses.clear();
    const std::size_t count = 1 + rng.uniform(kMaxTokenAddresses);
    for (std::size_t i = 0; i < count; ++i) {
      const std::uint16_t port = static_cast<std::uint16_t>(1 + rng.uniform(65535));
      switch (rng.uniform(3)) {
        case 0:
          token.addresses.push_back({IpAddress::v4(rng.uniform(0xffffffff)).to_string(), port});
          break;
        case 1: {
          std::uint8_t b[16];
          rng.fill(b);
          token.addresses.push_back({IpAddress::v6(b).to_string(), port});
          break;
        }
        default: {
          std::string name(1 + rng.uniform(60), 'a');
          for (char& c : name) c = static_cast<char>('a' + rng.uniform(26));
          token.addresses.push_back({name + ".example", port});
        }
      }
    }
    const std::string text = encode_token(token);
    ASSERT_FALSE(text.empty());
    ASSERT_LE(text.size(), kMaxTokenLength);
    JoinToken back;
    ASSERT_EQ(decode_token(text, back), TokenError::ok) << text;
    expect_same(token, back);
  }
}

TEST(ControlToken, LongestTokenFitsTheLimit) {
  JoinToken token = sample_token();
  token.addresses.clear();
  std::string name;
  for (int label = 0; label < 4; ++label)
    name += std::string(label == 3 ? 61 : 63, 'x') + (label == 3 ? "" : ".");
  ASSERT_EQ(name.size(), kMaxHostNameLength);
  for (std::size_t i = 0; i < kMaxTokenAddresses; ++i) token.addresses.push_back({name, 65535});
  const std::string text = encode_token(token);
  ASSERT_FALSE(text.empty());
  EXPECT_EQ(text.size(), kMaxTokenLength);
  JoinToken back;
  EXPECT_EQ(decode_token(text, back), TokenError::ok);
}

TEST(ControlToken, PastedWhitespaceIsIgnored) {
  const std::string text = encode_token(sample_token());
  JoinToken back;
  EXPECT_EQ(decode_token("  " + text + "\r\n", back), TokenError::ok);
}

TEST(ControlToken, EveryCharacterChangeIsDetected) {
  const std::string text = encode_token(sample_token());
  const std::size_t start = kTokenPrefix.size();
  int checked = 0;
  for (std::size_t i = start; i < text.size(); ++i) {
    for (char c : std::string(kAlphabet) + "=+/ .!\x01\xff") {
      if (c == text[i]) continue;
      std::string damaged = text;
      damaged[i] = c;
      JoinToken back;
      const TokenError err = decode_token(damaged, back);
      ASSERT_NE(err, TokenError::ok) << "position " << i << " char " << c;
      EXPECT_TRUE(back.secret.is_zero());
      ++checked;
    }
  }
  EXPECT_GT(checked, 5000);
}

TEST(ControlToken, EveryTruncationIsDetected) {
  const std::string text = encode_token(sample_token());
  for (std::size_t length = 0; length < text.size(); ++length) {
    JoinToken back;
    EXPECT_NE(decode_token(text.substr(0, length), back), TokenError::ok) << length;
    // Cutting from the front too.
    EXPECT_NE(decode_token(text.substr(text.size() - length), back), TokenError::ok) << length;
  }
}

TEST(ControlToken, TypicalDamageGetsTheChecksumMessage) {
  std::string text = encode_token(sample_token());
  text[20] = text[20] == 'A' ? 'B' : 'A';
  JoinToken back;
  const TokenError err = decode_token(text, back);
  EXPECT_EQ(err, TokenError::bad_checksum);
  EXPECT_EQ(describe(err), "the token is damaged (checksum mismatch): copy it again");
}

TEST(ControlToken, WrongPrefixAndGarbage) {
  const std::string text = encode_token(sample_token());
  const std::string body = text.substr(kTokenPrefix.size());
  JoinToken back;
  EXPECT_EQ(decode_token(body, back), TokenError::bad_prefix);
  EXPECT_EQ(decode_token("tskey-" + body, back), TokenError::bad_prefix);
  EXPECT_EQ(decode_token("KNIT1-" + body, back), TokenError::bad_prefix);
  EXPECT_EQ(decode_token("", back), TokenError::bad_prefix);
  EXPECT_EQ(decode_token("hello world", back), TokenError::bad_prefix);
  EXPECT_EQ(decode_token("knit2-" + body, back), TokenError::bad_version);
  EXPECT_EQ(decode_token("knit1-", back), TokenError::truncated);
  EXPECT_EQ(decode_token("knit1-!!!!", back), TokenError::bad_encoding);
  EXPECT_EQ(decode_token("knit1-" + body + "=", back), TokenError::bad_encoding);
  EXPECT_EQ(decode_token("knit1-" + std::string(kMaxTokenLength, 'A'), back), TokenError::too_long);
  EXPECT_EQ(decode_token(std::string(1 << 20, 'k'), back), TokenError::bad_prefix);
  EXPECT_EQ(describe(TokenError::bad_prefix).rfind("this is not a Knit join token", 0), 0u);

  SeededRandom rng(3);
  for (int i = 0; i < 2000; ++i) {
    std::string garbage(rng.uniform(300), '\0');
    for (char& c : garbage)
      c = kAlphabet[rng.uniform(static_cast<std::uint32_t>(kAlphabet.size()))];
    EXPECT_NE(decode_token("knit1-" + garbage, back), TokenError::ok);
  }
}

TEST(ControlToken, EncodeRefusesWhatItCannotCarry) {
  JoinToken token = sample_token();
  token.addresses.clear();
  EXPECT_EQ(encode_token(token), "");
  token.addresses.assign(kMaxTokenAddresses + 1, *HostPort::parse("a.example:1"));
  EXPECT_EQ(encode_token(token), "");
  token.addresses = {HostPort{"bad host", 1}};
  EXPECT_EQ(encode_token(token), "");
  token.addresses = {HostPort{"a.example", 0}};
  EXPECT_EQ(encode_token(token), "");
  token.addresses = {HostPort{"2001:DB8::1", 5}};  // not canonical
  EXPECT_EQ(encode_token(token), "");
}

TEST(ControlToken, TokenIdHex) {
  const TokenId id{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef};
  EXPECT_EQ(token_id_hex(id), "0123456789abcdef");
}

TEST(ControlToken, SecretHashIsLabeledAndMatchesOnlyItsSecret) {
  const JoinToken token = sample_token();
  const SecretHash hash = secret_hash(token.secret);
  EXPECT_TRUE(secret_matches(token.secret, hash));
  TokenSecret other = token.secret;
  other.data()[0] ^= 1;
  EXPECT_FALSE(secret_matches(other, hash));
  EXPECT_NE(secret_hash(other), hash);
  // Not the plain BLAKE2s of the secret: the label separates it from every other use.
  std::array<std::uint8_t, 32> plain{};
  wg::crypto::hash(plain, {ByteSpan(token.secret.span())});
  EXPECT_NE(plain, hash);
}

TEST(ControlHostPort, ParseAndPrint) {
  EXPECT_EQ(HostPort::parse("coord.example.com:443")->to_string(), "coord.example.com:443");
  EXPECT_EQ(HostPort::parse("[2001:DB8::0:1]:443")->to_string(), "[2001:db8::1]:443");
  EXPECT_EQ(HostPort::parse("192.0.2.1:1")->host, "192.0.2.1");
  for (const char* bad :
       {"", "host", "host:", "host:0", "host:65536", ":443", "[::1]", "[::1]443", "::1:443",
        "a..b:1", ".a:1", "a.:1", "a b:1", "[1.2.3.4]:5", "[fe80::1%eth0]:1"}) {
    EXPECT_FALSE(HostPort::parse(bad)) << bad;
  }
  EXPECT_FALSE(is_valid_host_name(std::string(64, 'a')));
  EXPECT_TRUE(is_valid_host_name(std::string(63, 'a')));
}

}  // namespace
}  // namespace knit::control
