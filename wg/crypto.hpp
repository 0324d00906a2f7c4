// The cryptographic primitives of the WireGuard protocol (whitepaper §5.4), each a thin,
// zeroing wrapper over libsodium (X25519, ChaCha20-Poly1305) and libb2 (BLAKE2s).
//
//   HASH(x)      BLAKE2s-256
//   MAC(k, x)    keyed BLAKE2s with a 16-byte digest (a 16-byte BLAKE2s, not a truncation)
//   HMAC(k, x)   RFC 2104 over BLAKE2s, 64-byte block
//   KDFn(k, x)   HKDF over HMAC: t0 = HMAC(k, x), t1 = HMAC(t0, 0x1), ti = HMAC(t0, t(i-1) || i)
//   DH(priv, pub) X25519; an all-zero result is an error
//   AEAD         ChaCha20-Poly1305 IETF, nonce = 4 zero bytes || LE64(counter)
//   XAEAD        XChaCha20-Poly1305, 24-byte nonce (cookie replies only)
//   TAI64N       BE64(2^62 + 10 + unix seconds) || BE32(nanoseconds)
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>

#include "base/bytes.hpp"
#include "base/random.hpp"
#include "base/time.hpp"
#include "wg/keys.hpp"

namespace knit::wg::crypto {

inline constexpr std::size_t kHashSize = 32;
inline constexpr std::size_t kMacSize = 16;
inline constexpr std::size_t kAeadTagSize = 16;
inline constexpr std::size_t kXNonceSize = 24;

// BLAKE2s-256 of the concatenation of parts.
void hash(std::span<std::uint8_t, 32> out, std::initializer_list<ByteSpan> parts);
// BLAKE2s with a 16-byte digest keyed by key (at most 32 bytes; a longer key yields zeros).
void mac(std::span<std::uint8_t, 16> out, ByteSpan key, ByteSpan data);
void hmac(std::span<std::uint8_t, 32> out, ByteSpan key, ByteSpan data);

// The outputs may alias key or input (kdf2(ck, k, ck.span(), x) is the common call).
void kdf1(SymmetricKey& t1, ByteSpan key, ByteSpan input);
void kdf2(SymmetricKey& t1, SymmetricKey& t2, ByteSpan key, ByteSpan input);
void kdf3(SymmetricKey& t1, SymmetricKey& t2, SymmetricKey& t3, ByteSpan key, ByteSpan input);

// X25519. false (and out zeroed) when the result is all zero: pub is a low-order point.
[[nodiscard]] bool dh(SymmetricKey& out, const PrivateKey& priv, const PublicKey& pub);
PublicKey public_key_of(const PrivateKey& priv);
// 32 random bytes, clamped per curve25519 (as `wg genkey` does).
PrivateKey generate_private_key(Random& rng);

// ChaCha20-Poly1305 IETF. out may alias the input exactly (in place). out.size() must be
// plaintext.size() + 16; on a size mismatch nothing is encrypted and out is zeroed.
void aead_encrypt(std::span<std::uint8_t> out, ByteSpan plaintext, std::uint64_t counter,
                  const SymmetricKey& key, ByteSpan ad);
// out.size() must be ciphertext.size() - 16. false on a size mismatch or a bad tag (out zeroed).
[[nodiscard]] bool aead_decrypt(std::span<std::uint8_t> out, ByteSpan ciphertext,
                                std::uint64_t counter, const SymmetricKey& key, ByteSpan ad);

// XChaCha20-Poly1305; key32 must be 32 bytes. Same size rules as above.
void xaead_encrypt(std::span<std::uint8_t> out, ByteSpan plaintext,
                   std::span<const std::uint8_t, 24> nonce, ByteSpan key32, ByteSpan ad);
[[nodiscard]] bool xaead_decrypt(std::span<std::uint8_t> out, ByteSpan ciphertext,
                                 std::span<const std::uint8_t, 24> nonce, ByteSpan key32,
                                 ByteSpan ad);

// TAI64N label of a wall-clock time, exact to the nanosecond (§5.4.2).
std::array<std::uint8_t, 12> tai64n(WallTime now);

}  // namespace knit::wg::crypto
