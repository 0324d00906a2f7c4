// The WireGuard primitives against published vectors (wireguard-go's kdf_test.go, RFC 7693),
// Python's hashlib/hmac, and the stock `wg` tool.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include <array>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>

#include "base/bytes.hpp"
#include "base/random.hpp"
#include "wg/crypto.hpp"
#include "wg/handshake.hpp"

namespace knit::wg {
namespace {

Bytes hex(std::string_view text) {
  auto bytes = from_hex(text);
  EXPECT_TRUE(bytes) << text;
  return bytes.value_or(Bytes{});
}

std::string hex_of(ByteSpan bytes) { return to_hex(bytes); }
std::string hex_of(const SymmetricKey& key) { return to_hex(key.span()); }

ByteSpan text(std::string_view s) {
  return ByteSpan(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
}

nlohmann::json load_kdf_vectors() {
  std::ifstream in(std::string(KNIT_VECTORS_DIR) + "/wireguard_kdf.json");
  EXPECT_TRUE(in.good());
  return nlohmann::json::parse(in);
}

TEST(Kdf, MatchesWireGuardGoVectors) {
  const auto vectors = load_kdf_vectors();
  ASSERT_EQ(vectors["cases"].size(), 3u);
  for (const auto& c : vectors["cases"]) {
    const Bytes key = hex(c["key"].get<std::string>());
    const Bytes input = hex(c["input"].get<std::string>());
    const auto& want = c["outputs"];
    SCOPED_TRACE(c["key"].get<std::string>());

    SymmetricKey t1, t2, t3;
    crypto::kdf3(t1, t2, t3, key, input);
    EXPECT_EQ(hex_of(t1), want[0].get<std::string>());
    EXPECT_EQ(hex_of(t2), want[1].get<std::string>());
    EXPECT_EQ(hex_of(t3), want[2].get<std::string>());

    SymmetricKey u1, u2;
    crypto::kdf2(u1, u2, key, input);
    EXPECT_EQ(hex_of(u1), want[0].get<std::string>());
    EXPECT_EQ(hex_of(u2), want[1].get<std::string>());

    SymmetricKey v1;
    crypto::kdf1(v1, key, input);
    EXPECT_EQ(hex_of(v1), want[0].get<std::string>());
  }
}

TEST(Kdf, OutputMayAliasTheKey) {
  // The chaining-key update (C, k) = KDF2(C, x) writes over its own key.
  const auto vectors = load_kdf_vectors();
  const auto& c = vectors["cases"][0];
  const Bytes key = hex(c["key"].get<std::string>());
  const Bytes input = hex(c["input"].get<std::string>());
  // A 32-byte key to alias: KDF1 of the vector, then KDF2 keyed by it, both ways.
  SymmetricKey ck;
  crypto::kdf1(ck, key, input);
  SymmetricKey want1, want2;
  crypto::kdf2(want1, want2, ck.span(), input);
  SymmetricKey k;
  crypto::kdf2(ck, k, ck.span(), input);
  EXPECT_EQ(hex_of(ck), hex_of(want1));
  EXPECT_EQ(hex_of(k), hex_of(want2));
}

TEST(Hmac, IsTheFirstKdfStepOfTheVectors) {
  // KDF's t1 = HMAC(HMAC(key, input), 0x1).
  const auto vectors = load_kdf_vectors();
  for (const auto& c : vectors["cases"]) {
    std::array<std::uint8_t, 32> t0{}, t1{};
    crypto::hmac(t0, hex(c["key"].get<std::string>()), hex(c["input"].get<std::string>()));
    const std::uint8_t one = 1;
    crypto::hmac(t1, t0, ByteSpan(&one, 1));
    EXPECT_EQ(hex_of(t1), c["outputs"][0].get<std::string>());
  }
}

TEST(Hmac, MatchesPythonHmacBlake2sForKeysAtAndPastTheBlock) {
  // python3: hmac.new(key, b"knit hmac long key", hashlib.blake2s).hexdigest()
  Bytes long_key(100), block_key(64);
  for (std::size_t i = 0; i < long_key.size(); ++i) long_key[i] = static_cast<std::uint8_t>(i);
  for (std::size_t i = 0; i < block_key.size(); ++i) block_key[i] = static_cast<std::uint8_t>(i);
  std::array<std::uint8_t, 32> out{};
  crypto::hmac(out, long_key, text("knit hmac long key"));
  EXPECT_EQ(hex_of(out), "ed344f6745f20352b597415513cc09fbcffa44ae3855dbd1eb063906155420e2");
  crypto::hmac(out, block_key, text("knit hmac long key"));
  EXPECT_EQ(hex_of(out), "87060ed8ad13e58d1567ea681349b6e4f16cbb1351add725178d1c27111a48a5");
}

TEST(Hash, Blake2s256OfTheConcatenation) {
  // RFC 7693 Appendix B: BLAKE2s-256("abc").
  std::array<std::uint8_t, 32> out{};
  crypto::hash(out, {text("abc")});
  EXPECT_EQ(hex_of(out), "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982");
  crypto::hash(out, {text("a"), text(""), text("bc")});
  EXPECT_EQ(hex_of(out), "508c5e8c327c14e2e1a72ba34eeb452f37458b209ed63a294d999b4c86675982");
}

TEST(Hash, InitialChainingKeyAndHash) {
  const auto initial = load_kdf_vectors()["initial"];
  // Ci = HASH(CONSTRUCTION), Hi = HASH(Ci || IDENTIFIER)
  std::array<std::uint8_t, 32> c{}, h{};
  crypto::hash(c, {text(kConstruction)});
  crypto::hash(h, {c, text(kIdentifier)});
  EXPECT_EQ(hex_of(c), initial["chaining_key"].get<std::string>());
  EXPECT_EQ(hex_of(h), initial["hash"].get<std::string>());
  EXPECT_EQ(kConstruction.size(), 37u);
  EXPECT_EQ(kIdentifier.size(), 34u);
}

TEST(Mac, IsASixteenByteBlake2sNotATruncation) {
  Bytes key(32);
  for (std::size_t i = 0; i < key.size(); ++i) key[i] = static_cast<std::uint8_t>(i);
  std::array<std::uint8_t, 16> out{};
  crypto::mac(out, key, text("knit mac"));
  // python3: hashlib.blake2s(b"knit mac", key=key, digest_size=16)
  EXPECT_EQ(hex_of(out), "90d506c70555c428a9483d2710cd0d60");
  // ...whereas a 32-byte digest cut to 16 bytes is something else.
  EXPECT_NE(hex_of(out), "a84d982fbef47fbfb37e2b16a28e7611");
  // A 16-byte key (mac2 is keyed by the cookie) is accepted too.
  crypto::mac(out, ByteSpan(key).first(16), text("knit mac"));
  EXPECT_NE(hex_of(out), "00000000000000000000000000000000");
}

TEST(Dh, AgreesAndRejectsLowOrderPoints) {
  SeededRandom rng(1);
  const PrivateKey a = crypto::generate_private_key(rng);
  const PrivateKey b = crypto::generate_private_key(rng);
  SymmetricKey ab, ba;
  ASSERT_TRUE(crypto::dh(ab, a, crypto::public_key_of(b)));
  ASSERT_TRUE(crypto::dh(ba, b, crypto::public_key_of(a)));
  EXPECT_EQ(hex_of(ab), hex_of(ba));

  const char* low_order[] = {
      "0000000000000000000000000000000000000000000000000000000000000000",  // 0
      "0100000000000000000000000000000000000000000000000000000000000000",  // 1
      "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",  // order 8
      "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",  // order 8
      "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f",  // p - 1
  };
  for (const char* point : low_order) {
    PublicKey pub{};
    ASSERT_TRUE(from_hex_into(point, pub));
    SymmetricKey out;
    EXPECT_FALSE(crypto::dh(out, a, pub)) << point;
    EXPECT_TRUE(out.is_zero());
  }
}

TEST(Keys, GeneratedKeysAreClamped) {
  SeededRandom rng(7);
  for (int i = 0; i < 32; ++i) {
    const PrivateKey key = crypto::generate_private_key(rng);
    EXPECT_EQ(key.data()[0] & 7, 0);
    EXPECT_EQ(key.data()[31] & 0x80, 0);
    EXPECT_EQ(key.data()[31] & 0x40, 0x40);
  }
}

TEST(Keys, PublicKeyMatchesWgPubkey) {
  // A pair made on this machine with `wg genkey | tee /dev/stderr | wg pubkey`.
  auto priv_bytes = from_base64("SKeIebLRw0owC5KjCEZ0quqfZZFnnHFnoD/CXKanmWI=");
  ASSERT_TRUE(priv_bytes && priv_bytes->size() == 32);
  const PrivateKey priv(std::span<const std::uint8_t, 32>(priv_bytes->data(), 32));
  EXPECT_EQ(to_base64(crypto::public_key_of(priv)),
            "6GbdJcqg5wnzxHe74yV+8ZFVxHiZu8NlL+2DWdBocj4=");
  sodium_memzero(priv_bytes->data(), priv_bytes->size());
}

// Runs `wg pubkey` on a base64 private key; empty when the tool is unavailable.
std::string wg_pubkey(const std::string& private_b64) {
  const std::string command = "echo '" + private_b64 + "' | wg pubkey 2>/dev/null";
  FILE* pipe = popen(command.c_str(), "r");
  if (pipe == nullptr) return {};
  char line[128] = {};
  std::string out;
  if (fgets(line, sizeof line, pipe) != nullptr) out = line;
  pclose(pipe);
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

TEST(Keys, GeneratedKeysAgreeWithTheWgTool) {
  if (wg_pubkey("SKeIebLRw0owC5KjCEZ0quqfZZFnnHFnoD/CXKanmWI=").empty()) {
    GTEST_SKIP() << "wg (wireguard-tools) not available";
  }
  SeededRandom rng(42);
  for (int i = 0; i < 4; ++i) {
    const PrivateKey priv = crypto::generate_private_key(rng);
    EXPECT_EQ(wg_pubkey(to_base64(priv.span())), to_base64(crypto::public_key_of(priv)));
  }
}

TEST(Aead, RoundTripsInPlaceAndRejectsTampering) {
  SeededRandom rng(3);
  SymmetricKey key;
  rng.fill(key.span());
  const Bytes ad = {1, 2, 3};
  const Bytes plaintext = {'h', 'e', 'l', 'l', 'o', ' ', 'k', 'n', 'i', 't'};

  Bytes sealed(plaintext.size() + 16);
  crypto::aead_encrypt(sealed, plaintext, 5, key, ad);
  Bytes opened(plaintext.size());
  ASSERT_TRUE(crypto::aead_decrypt(opened, sealed, 5, key, ad));
  EXPECT_EQ(opened, plaintext);

  // In place: the plaintext at the front of a buffer with room for the tag.
  Bytes buffer = plaintext;
  buffer.resize(plaintext.size() + 16);
  crypto::aead_encrypt(buffer, ByteSpan(buffer).first(plaintext.size()), 5, key, ad);
  EXPECT_EQ(buffer, sealed);
  ASSERT_TRUE(
      crypto::aead_decrypt(MutableByteSpan(buffer).first(plaintext.size()), buffer, 5, key, ad));
  EXPECT_EQ(Bytes(buffer.begin(), buffer.begin() + 10), plaintext);

  EXPECT_FALSE(crypto::aead_decrypt(opened, sealed, 6, key, ad));          // wrong counter
  EXPECT_FALSE(crypto::aead_decrypt(opened, sealed, 5, key, Bytes{1, 2}));  // wrong ad
  for (std::size_t i = 0; i < sealed.size(); ++i) {
    Bytes tampered = sealed;
    tampered[i] ^= 0x01;
    EXPECT_FALSE(crypto::aead_decrypt(opened, tampered, 5, key, ad)) << "byte " << i;
  }
  // Too short to hold a tag, or an output of the wrong size: refused, never a crash.
  EXPECT_FALSE(crypto::aead_decrypt({}, ByteSpan(sealed).first(15), 5, key, ad));
  EXPECT_FALSE(crypto::aead_decrypt(opened, ByteSpan(sealed).first(20), 5, key, ad));

  // The empty plaintext (a keepalive, the response's empty payload): just a tag.
  std::array<std::uint8_t, 16> tag{};
  crypto::aead_encrypt(tag, {}, 0, key, {});
  EXPECT_TRUE(crypto::aead_decrypt({}, tag, 0, key, {}));
}

TEST(Aead, NonceIsFourZeroBytesThenTheCounterLittleEndian) {
  // Equivalent to libsodium's IETF AEAD with that explicit nonce.
  SymmetricKey key;
  SeededRandom(9).fill(key.span());
  const std::uint64_t counter = 0x0102030405060708ULL;
  std::array<std::uint8_t, 12> nonce = {0, 0, 0, 0, 8, 7, 6, 5, 4, 3, 2, 1};
  const Bytes plaintext = {9, 9, 9};
  Bytes ours(19), theirs(19);
  crypto::aead_encrypt(ours, plaintext, counter, key, {});
  crypto_aead_chacha20poly1305_ietf_encrypt(theirs.data(), nullptr, plaintext.data(), 3, nullptr,
                                            0, nullptr, nonce.data(), key.data());
  EXPECT_EQ(ours, theirs);
}

TEST(Xaead, RoundTripsAndRejectsTampering) {
  SeededRandom rng(4);
  std::array<std::uint8_t, 32> key{};
  std::array<std::uint8_t, 24> nonce{};
  rng.fill(key);
  rng.fill(nonce);
  const Bytes cookie(16, 0x5a);
  const Bytes ad(16, 0x11);
  Bytes sealed(32);
  crypto::xaead_encrypt(sealed, cookie, nonce, key, ad);
  Bytes opened(16);
  ASSERT_TRUE(crypto::xaead_decrypt(opened, sealed, nonce, key, ad));
  EXPECT_EQ(opened, cookie);
  sealed[3] ^= 0x80;
  EXPECT_FALSE(crypto::xaead_decrypt(opened, sealed, nonce, key, ad));
  EXPECT_FALSE(crypto::xaead_decrypt(opened, Bytes(32), nonce, ByteSpan(key).first(16), ad));
}

TEST(Tai64n, EncodesAKnownTime) {
  // 2020-09-13T12:26:40.123456789Z = Unix 1600000000 s + 123456789 ns.
  const WallTime t{std::chrono::duration_cast<WallTime::duration>(
      std::chrono::seconds(1600000000) + std::chrono::nanoseconds(123456789))};
  const auto label = crypto::tai64n(t);
  // BE64(0x400000000000000a + 0x5f5e1000) || BE32(0x075bcd15)
  EXPECT_EQ(hex_of(label), "400000005f5e100a075bcd15");
  EXPECT_EQ(hex_of(crypto::tai64n(WallTime{})), "400000000000000a00000000");
}

TEST(Tai64n, LaterTimesCompareGreaterBytewise) {
  const WallTime t{std::chrono::seconds(1700000000)};
  const auto a = crypto::tai64n(t);
  const auto b = crypto::tai64n(t + std::chrono::microseconds(1));
  const auto c = crypto::tai64n(t + std::chrono::seconds(1));
  EXPECT_LT(a, b);
  EXPECT_LT(b, c);
}

}  // namespace
}  // namespace knit::wg
