#include "wg/crypto.hpp"

#include <blake2.h>
#include <sodium.h>

#include <chrono>
#include <cstring>

namespace knit::wg::crypto {
namespace {

// libsodium picks its SIMD implementations (ChaCha20 AVX2/SSSE3, Poly1305 SSE2) in sodium_init();
// without it every AEAD runs the portable reference code at a fraction of the speed. Running it
// while this file's statics initialise means every program that uses the core gets it.
[[maybe_unused]] const bool kSodiumReady = [] { return sodium_init() >= 0; }();

constexpr std::size_t kBlockSize = BLAKE2S_BLOCKBYTES;  // 64, the HMAC block (RFC 2104 "B")

// Zeroes a BLAKE2s state: it holds the (possibly secret) bytes absorbed so far.
struct Blake2s {
  blake2s_state state;
  explicit Blake2s(std::size_t outlen) { blake2s_init(&state, outlen); }
  // An empty key means unkeyed, as in BLAKE2 itself.
  Blake2s(std::size_t outlen, ByteSpan key) {
    if (key.empty()) {
      blake2s_init(&state, outlen);
    } else {
      blake2s_init_key(&state, outlen, key.data(), key.size());
    }
  }
  ~Blake2s() { sodium_memzero(&state, sizeof state); }
  Blake2s(const Blake2s&) = delete;
  Blake2s& operator=(const Blake2s&) = delete;
  void update(ByteSpan part) {
    if (!part.empty()) blake2s_update(&state, part.data(), part.size());
  }
  void final(std::uint8_t* out, std::size_t outlen) { blake2s_final(&state, out, outlen); }
};

// Zeroes a caller's buffer; a no-op for an empty span (whose data() may be null).
void wipe(std::span<std::uint8_t> bytes) {
  if (!bytes.empty()) sodium_memzero(bytes.data(), bytes.size());
}

// The nonce of the data and handshake AEAD: 32 zero bits, then the counter little-endian (§5.4.6).
std::array<std::uint8_t, crypto_aead_chacha20poly1305_IETF_NPUBBYTES> counter_nonce(
    std::uint64_t counter) {
  std::array<std::uint8_t, crypto_aead_chacha20poly1305_IETF_NPUBBYTES> nonce{};
  store_le64(nonce.data() + 4, counter);
  return nonce;
}

// KDFn (§5.4.1): t0 = HMAC(key, input); t1 = HMAC(t0, 0x1); ti = HMAC(t0, t(i-1) || i).
// key and input are read only to form t0, so the outputs may alias them.
void kdf(std::initializer_list<SymmetricKey*> outputs, ByteSpan key, ByteSpan input) {
  std::uint8_t t0[kHashSize];
  std::uint8_t block[kHashSize + 1];
  hmac(std::span<std::uint8_t, 32>(t0), key, input);
  std::size_t used = 0;  // bytes of `block` holding t(i-1)
  std::uint8_t i = 1;
  for (SymmetricKey* out : outputs) {
    block[used] = i++;
    hmac(out->span(), ByteSpan(t0), ByteSpan(block, used + 1));
    std::memcpy(block, out->data(), kHashSize);
    used = kHashSize;
  }
  sodium_memzero(t0, sizeof t0);
  sodium_memzero(block, sizeof block);
}

}  // namespace

void hash(std::span<std::uint8_t, 32> out, std::initializer_list<ByteSpan> parts) {
  Blake2s b(kHashSize);
  for (ByteSpan part : parts) b.update(part);
  b.final(out.data(), out.size());
}

void mac(std::span<std::uint8_t, 16> out, ByteSpan key, ByteSpan data) {
  // A BLAKE2s parameterised for a 16-byte digest from the start (§5.4.4): not a truncation.
  // Keyed through our own state so that it is zeroed (the cookie secret R is such a key).
  if (key.size() > BLAKE2S_KEYBYTES) {
    std::memset(out.data(), 0, out.size());
    return;
  }
  Blake2s b(out.size(), key);
  b.update(data);
  b.final(out.data(), out.size());
}

void hmac(std::span<std::uint8_t, 32> out, ByteSpan key, ByteSpan data) {
  // RFC 2104: K' = K padded to the block (hashed first if longer);
  // HMAC = H((K' ^ opad) || H((K' ^ ipad) || data)).
  std::uint8_t k[kBlockSize] = {};
  std::uint8_t pad[kBlockSize];
  std::uint8_t inner[kHashSize];
  if (key.size() > kBlockSize) {
    hash(std::span<std::uint8_t, 32>(k, kHashSize), {key});
  } else if (!key.empty()) {
    std::memcpy(k, key.data(), key.size());
  }
  for (std::size_t i = 0; i < kBlockSize; ++i) pad[i] = k[i] ^ 0x36;
  hash(std::span<std::uint8_t, 32>(inner), {ByteSpan(pad), data});
  for (std::size_t i = 0; i < kBlockSize; ++i) pad[i] = k[i] ^ 0x5c;
  hash(out, {ByteSpan(pad), ByteSpan(inner)});
  sodium_memzero(k, sizeof k);
  sodium_memzero(pad, sizeof pad);
  sodium_memzero(inner, sizeof inner);
}

void kdf1(SymmetricKey& t1, ByteSpan key, ByteSpan input) { kdf({&t1}, key, input); }

void kdf2(SymmetricKey& t1, SymmetricKey& t2, ByteSpan key, ByteSpan input) {
  kdf({&t1, &t2}, key, input);
}

void kdf3(SymmetricKey& t1, SymmetricKey& t2, SymmetricKey& t3, ByteSpan key, ByteSpan input) {
  kdf({&t1, &t2, &t3}, key, input);
}

bool dh(SymmetricKey& out, const PrivateKey& priv, const PublicKey& pub) {
  // libsodium refuses (returns -1) when the shared point is all zero, i.e. pub has small
  // order; the check on the output is kept so the rule does not hang on a library detail.
  if (crypto_scalarmult_curve25519(out.data(), priv.data(), pub.data()) != 0 || out.is_zero()) {
    out.wipe();
    return false;
  }
  return true;
}

PublicKey public_key_of(const PrivateKey& priv) {
  PublicKey pub{};
  if (crypto_scalarmult_curve25519_base(pub.data(), priv.data()) != 0) pub.fill(0);
  return pub;
}

PrivateKey generate_private_key(Random& rng) {
  PrivateKey key;
  rng.fill(key.span());
  // Curve25519 clamping: a multiple of the cofactor 8, bit 254 set, bit 255 clear.
  key.data()[0] &= 248;
  key.data()[31] &= 127;
  key.data()[31] |= 64;
  return key;
}

void aead_encrypt(std::span<std::uint8_t> out, ByteSpan plaintext, std::uint64_t counter,
                  const SymmetricKey& key, ByteSpan ad) {
  if (out.size() != plaintext.size() + kAeadTagSize) {
    wipe(out);
    return;
  }
  const auto nonce = counter_nonce(counter);
  // libsodium allows the ciphertext to overwrite the plaintext exactly (in place).
  crypto_aead_chacha20poly1305_ietf_encrypt(out.data(), nullptr, plaintext.data(),
                                            plaintext.size(), ad.data(), ad.size(), nullptr,
                                            nonce.data(), key.data());
}

bool aead_decrypt(std::span<std::uint8_t> out, ByteSpan ciphertext, std::uint64_t counter,
                  const SymmetricKey& key, ByteSpan ad) {
  if (ciphertext.size() < kAeadTagSize || out.size() != ciphertext.size() - kAeadTagSize) {
    wipe(out);
    return false;
  }
  const auto nonce = counter_nonce(counter);
  if (crypto_aead_chacha20poly1305_ietf_decrypt(out.data(), nullptr, nullptr, ciphertext.data(),
                                                ciphertext.size(), ad.data(), ad.size(),
                                                nonce.data(), key.data()) != 0) {
    wipe(out);
    return false;
  }
  return true;
}

void xaead_encrypt(std::span<std::uint8_t> out, ByteSpan plaintext,
                   std::span<const std::uint8_t, 24> nonce, ByteSpan key32, ByteSpan ad) {
  if (key32.size() != crypto_aead_xchacha20poly1305_ietf_KEYBYTES ||
      out.size() != plaintext.size() + kAeadTagSize) {
    wipe(out);
    return;
  }
  crypto_aead_xchacha20poly1305_ietf_encrypt(out.data(), nullptr, plaintext.data(),
                                             plaintext.size(), ad.data(), ad.size(), nullptr,
                                             nonce.data(), key32.data());
}

bool xaead_decrypt(std::span<std::uint8_t> out, ByteSpan ciphertext,
                   std::span<const std::uint8_t, 24> nonce, ByteSpan key32, ByteSpan ad) {
  if (key32.size() != crypto_aead_xchacha20poly1305_ietf_KEYBYTES ||
      ciphertext.size() < kAeadTagSize || out.size() != ciphertext.size() - kAeadTagSize) {
    wipe(out);
    return false;
  }
  if (crypto_aead_xchacha20poly1305_ietf_decrypt(out.data(), nullptr, nullptr, ciphertext.data(),
                                                 ciphertext.size(), ad.data(), ad.size(),
                                                 nonce.data(), key32.data()) != 0) {
    wipe(out);
    return false;
  }
  return true;
}

std::array<std::uint8_t, 12> tai64n(WallTime now) {
  // TAI64 labels second s of the Unix epoch as 2^62 + 10 + s (the 10 being TAI - UTC in 1970).
  constexpr std::uint64_t kTai64Epoch = 0x400000000000000aULL;
  const auto since_epoch = now.time_since_epoch();
  const auto seconds = std::chrono::floor<std::chrono::seconds>(since_epoch);
  const auto nanos = std::chrono::duration_cast<std::chrono::nanoseconds>(since_epoch - seconds);
  std::array<std::uint8_t, 12> out{};
  store_be64(out.data(), kTai64Epoch + static_cast<std::uint64_t>(seconds.count()));
  store_be32(out.data() + 8, static_cast<std::uint32_t>(nanos.count()));
  return out;
}

}  // namespace knit::wg::crypto
