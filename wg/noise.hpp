// A generic Noise Protocol Framework core (Noise rev. 34, §5) over X25519, ChaChaPoly and
// BLAKE2s, and the one handshake pattern Knit needs, IK, with or without the psk2 modifier:
//
//   IK:        <- s            IKpsk2:    <- s
//              ...                        ...
//              -> e, es, s, ss            -> e, es, s, ss
//              <- e, ee, se               <- e, ee, se, psk
//
// WireGuard (whitepaper §5.4.2-§5.4.5) is IKpsk2 with protocol name
// "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s", prologue "WireGuard v1 zx2c4 Jason@zx2c4.com",
// a 12-byte TAI64N first payload and an empty second payload; Knit's control channel reuses
// this with its own name and prologue. Messages are written into caller-owned buffers:
//
//   message 1:  e.pub[32] | AEAD(s.pub)[48] | AEAD(payload)[n + 16]
//   message 2:  e.pub[32] | AEAD(payload)[n + 16]
//
// No I/O, no clock, no randomness: the ephemeral private key is a parameter.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "base/bytes.hpp"
#include "wg/keys.hpp"

namespace knit::wg::noise {

enum class NoiseError {
  ok,
  bad_size,         // a buffer or message of the wrong length
  bad_key,          // a DH result of all zeros (a low-order public key)
  decrypt_failed,   // an AEAD tag did not verify
  wrong_state,      // the call does not fit the pattern's next step or this side's role
  nonce_exhausted,  // the cipher reached nonce 2^64 - 1, which Noise reserves
};

inline constexpr std::size_t kTagSize = 16;
inline constexpr std::size_t kDhSize = 32;

// Noise §5.1: a key k and a nonce counter n. Without a key it passes plaintext through.
class CipherState {
 public:
  void initialize_key(const SymmetricKey& key);  // n = 0
  bool has_key() const { return has_key_; }
  const SymmetricKey& key() const { return key_; }
  std::uint64_t nonce() const { return nonce_; }
  void set_nonce(std::uint64_t n) { nonce_ = n; }
  // How much longer a ciphertext is than its plaintext: 16 with a key, 0 without.
  std::size_t overhead() const { return has_key_ ? kTagSize : 0; }

  // out.size() == plaintext.size() + overhead(); out may alias plaintext exactly.
  [[nodiscard]] NoiseError encrypt_with_ad(MutableByteSpan out, ByteSpan ad, ByteSpan plaintext);
  // out.size() == ciphertext.size() - overhead(); n advances only on success.
  [[nodiscard]] NoiseError decrypt_with_ad(MutableByteSpan out, ByteSpan ad, ByteSpan ciphertext);
  // Noise §4.2 Rekey(): k = the first 32 bytes of ENCRYPT(k, 2^64 - 1, empty, 32 zeros).
  void rekey();
  void clear();

 private:
  SymmetricKey key_;
  std::uint64_t nonce_ = 0;
  bool has_key_ = false;
};

// Noise §5.2: the chaining key ck, the handshake hash h and the current cipher.
class SymmetricState {
 public:
  // h = the name padded with zeros if it fits in 32 bytes, else HASH(name); ck = h.
  void initialize(std::string_view protocol_name);
  void mix_key(ByteSpan input_key_material);           // (ck, k) = HKDF2(ck, ikm); n = 0
  void mix_hash(ByteSpan data);                        // h = HASH(h || data)
  void mix_key_and_hash(ByteSpan input_key_material);  // (ck, t, k) = HKDF3(ck, ikm); mix_hash(t)
  // out.size() == plaintext.size() + overhead(); h covers the ciphertext. In place allowed.
  [[nodiscard]] NoiseError encrypt_and_hash(MutableByteSpan out, ByteSpan plaintext);
  // out.size() == ciphertext.size() - overhead(); h is updated only on success. In place allowed.
  [[nodiscard]] NoiseError decrypt_and_hash(MutableByteSpan out, ByteSpan ciphertext);
  // (c1, c2) = HKDF2(ck, empty): c1 for initiator to responder, c2 for the reverse.
  void split(CipherState& c1, CipherState& c2) const;

  std::size_t overhead() const { return cipher_.overhead(); }
  const SymmetricKey& chaining_key() const { return ck_; }
  const SymmetricKey& handshake_hash() const { return h_; }
  // Resumes from (ck, h) with no cipher key. Only sound at a point where the pattern's next
  // token is a DH or psk (a mix_key) before anything is encrypted, as at IK's second message.
  void restore(const SymmetricKey& chaining_key, const SymmetricKey& handshake_hash);
  bool is_zeroed() const;
  void clear();

 private:
  CipherState cipher_;
  SymmetricKey ck_;
  SymmetricKey h_;
};

// A handshake pattern's fixed parameters.
struct IkProtocol {
  std::string_view name;  // e.g. "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s"
  ByteSpan prologue;      // mixed into h before any message
  bool psk2 = false;      // IKpsk2: "psk" ends message 2, and "e" also runs mix_key (Noise §9.2)
};

// Noise §5.3 HandshakeState for IK / IKpsk2. Copyable, so a caller can try a message on a
// copy and keep the original when it fails; every secret zeroes itself when dropped.
class IkHandshake {
 public:
  enum class Role { initiator, responder };
  // The step this side takes next.
  enum class Step { idle, message1, message2, split };

  static constexpr std::size_t message1_size(std::size_t payload_size) {
    return kDhSize + kDhSize + kTagSize + payload_size + kTagSize;
  }
  static constexpr std::size_t message2_size(std::size_t payload_size) {
    return kDhSize + payload_size + kTagSize;
  }

  // Initiator: knows the responder's static key in advance (the pre-message "<- s").
  // psk: used by psk2 only; null means 32 zero bytes (WireGuard's "no preshared key").
  // static_static: DH(s, rs) when the caller has precomputed it (WireGuard does so per peer).
  // Fails with bad_key when a given static_static is all zero.
  [[nodiscard]] NoiseError start_initiator(const IkProtocol& protocol, const PrivateKey& s,
                                           const PublicKey& s_public, const PublicKey& rs,
                                           const PresharedKey* psk = nullptr,
                                           const SymmetricKey* static_static = nullptr);
  // Responder: learns the initiator's static key from message 1. In psk2 the psk can be given
  // later (set_psk), once the caller knows who the initiator is.
  void start_responder(const IkProtocol& protocol, const PrivateKey& s, const PublicKey& s_public,
                       const PresharedKey* psk = nullptr);
  // Responder: continue after message 1 from a snapshot taken by read_message1 (remote keys,
  // chaining_key(), handshake_hash()), for callers that authenticate message 1 before they know
  // which peer sent it.
  void resume_responder(const IkProtocol& protocol, const PrivateKey& s, const PublicKey& s_public,
                        const PublicKey& rs, const PublicKey& re, const SymmetricKey& chaining_key,
                        const SymmetricKey& handshake_hash, const PresharedKey* psk = nullptr);
  void set_psk(const PresharedKey& psk) { psk_ = psk; }

  // -> e, es, s, ss. out.size() == message1_size(payload.size()).
  [[nodiscard]] NoiseError write_message1(MutableByteSpan out, const PrivateKey& e,
                                          ByteSpan payload);
  // payload_out.size() == message.size() - message1_size(0).
  [[nodiscard]] NoiseError read_message1(MutableByteSpan payload_out, ByteSpan message);
  // <- e, ee, se [, psk]. out.size() == message2_size(payload.size()).
  [[nodiscard]] NoiseError write_message2(MutableByteSpan out, const PrivateKey& e,
                                          ByteSpan payload);
  // payload_out.size() == message.size() - message2_size(0).
  [[nodiscard]] NoiseError read_message2(MutableByteSpan payload_out, ByteSpan message);
  // After message 2: this side's sending and receiving ciphers. The handshake hash stays
  // readable (channel binding) until clear().
  [[nodiscard]] NoiseError split(CipherState& send, CipherState& receive) const;

  Role role() const { return role_; }
  Step next_step() const { return step_; }
  const PublicKey& remote_static() const { return rs_; }
  const PublicKey& remote_ephemeral() const { return re_; }
  const SymmetricKey& chaining_key() const { return symmetric_.chaining_key(); }
  const SymmetricKey& handshake_hash() const { return symmetric_.handshake_hash(); }

  // Drops every key and hash; back to idle.
  void clear();
  // True when no key material of a handshake in flight is held.
  bool is_zeroed() const;

 private:
  void start(const IkProtocol& protocol, Role role, const PublicKey& responder_static);
  // "e": emit or read an ephemeral public key; psk modes also mix it into the key (Noise §9.2).
  void mix_ephemeral(SymmetricState& sym, const PublicKey& e_public) const;

  Role role_ = Role::initiator;
  Step step_ = Step::idle;
  bool psk2_ = false;
  SymmetricState symmetric_;
  PrivateKey s_;
  PublicKey s_public_{};
  PublicKey rs_{};
  PrivateKey e_;
  PublicKey e_public_{};
  PublicKey re_{};
  PresharedKey psk_;
  SymmetricKey static_static_;  // DH(s, rs), when precomputed by the caller
  bool have_static_static_ = false;
};

}  // namespace knit::wg::noise
