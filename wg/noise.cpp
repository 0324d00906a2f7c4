#include "wg/noise.hpp"

#include <sodium.h>

#include <algorithm>
#include <array>

#include "wg/crypto.hpp"

namespace knit::wg::noise {
namespace {

constexpr std::uint64_t kMaxNonce = ~std::uint64_t{0};  // reserved by Noise §5.1

ByteSpan bytes_of(const PublicKey& key) { return ByteSpan(key); }
ByteSpan bytes_of(const SymmetricKey& key) { return ByteSpan(key.span()); }

}  // namespace

// ---- CipherState (Noise §5.1) ----

void CipherState::initialize_key(const SymmetricKey& key) {
  key_ = key;
  nonce_ = 0;
  has_key_ = true;
}

NoiseError CipherState::encrypt_with_ad(MutableByteSpan out, ByteSpan ad, ByteSpan plaintext) {
  if (out.size() != plaintext.size() + overhead()) return NoiseError::bad_size;
  if (!has_key_) {
    if (out.data() != plaintext.data()) std::copy(plaintext.begin(), plaintext.end(), out.begin());
    return NoiseError::ok;
  }
  if (nonce_ == kMaxNonce) return NoiseError::nonce_exhausted;
  crypto::aead_encrypt(out, plaintext, nonce_, key_, ad);
  ++nonce_;
  return NoiseError::ok;
}

NoiseError CipherState::decrypt_with_ad(MutableByteSpan out, ByteSpan ad, ByteSpan ciphertext) {
  if (ciphertext.size() < overhead() || out.size() != ciphertext.size() - overhead()) {
    return NoiseError::bad_size;
  }
  if (!has_key_) {
    if (out.data() != ciphertext.data()) {
      std::copy(ciphertext.begin(), ciphertext.end(), out.begin());
    }
    return NoiseError::ok;
  }
  if (nonce_ == kMaxNonce) return NoiseError::nonce_exhausted;
  if (!crypto::aead_decrypt(out, ciphertext, nonce_, key_, ad)) return NoiseError::decrypt_failed;
  ++nonce_;
  return NoiseError::ok;
}

void CipherState::rekey() {
  if (!has_key_) return;
  std::array<std::uint8_t, 32 + kTagSize> block{};
  crypto::aead_encrypt(block, ByteSpan(block.data(), 32), kMaxNonce, key_, {});
  key_.assign(std::span<const std::uint8_t, 32>(block.data(), 32));
  sodium_memzero(block.data(), block.size());
}

void CipherState::clear() {
  key_.wipe();
  nonce_ = 0;
  has_key_ = false;
}

// ---- SymmetricState (Noise §5.2) ----

void SymmetricState::initialize(std::string_view protocol_name) {
  const ByteSpan name(reinterpret_cast<const std::uint8_t*>(protocol_name.data()),
                      protocol_name.size());
  h_.wipe();
  if (name.size() <= crypto::kHashSize) {
    std::copy(name.begin(), name.end(), h_.data());
  } else {
    crypto::hash(h_.span(), {name});
  }
  ck_ = h_;
  cipher_.clear();
}

void SymmetricState::mix_key(ByteSpan input_key_material) {
  SymmetricKey temp_k;
  crypto::kdf2(ck_, temp_k, bytes_of(ck_), input_key_material);
  cipher_.initialize_key(temp_k);
}

void SymmetricState::mix_hash(ByteSpan data) { crypto::hash(h_.span(), {bytes_of(h_), data}); }

void SymmetricState::mix_key_and_hash(ByteSpan input_key_material) {
  SymmetricKey temp_h;
  SymmetricKey temp_k;
  crypto::kdf3(ck_, temp_h, temp_k, bytes_of(ck_), input_key_material);
  mix_hash(bytes_of(temp_h));
  cipher_.initialize_key(temp_k);
}

NoiseError SymmetricState::encrypt_and_hash(MutableByteSpan out, ByteSpan plaintext) {
  const NoiseError err = cipher_.encrypt_with_ad(out, bytes_of(h_), plaintext);
  if (err == NoiseError::ok) mix_hash(out);
  return err;
}

NoiseError SymmetricState::decrypt_and_hash(MutableByteSpan out, ByteSpan ciphertext) {
  // h must cover the ciphertext, which an in-place decryption overwrites: hash it first and
  // commit only once the tag has verified against the old h.
  SymmetricKey next_h;
  crypto::hash(next_h.span(), {bytes_of(h_), ciphertext});
  const NoiseError err = cipher_.decrypt_with_ad(out, bytes_of(h_), ciphertext);
  if (err == NoiseError::ok) h_ = next_h;
  return err;
}

void SymmetricState::split(CipherState& c1, CipherState& c2) const {
  SymmetricKey k1;
  SymmetricKey k2;
  crypto::kdf2(k1, k2, bytes_of(ck_), {});
  c1.initialize_key(k1);
  c2.initialize_key(k2);
}

void SymmetricState::restore(const SymmetricKey& chaining_key,
                             const SymmetricKey& handshake_hash) {
  ck_ = chaining_key;
  h_ = handshake_hash;
  cipher_.clear();
}

bool SymmetricState::is_zeroed() const {
  return ck_.is_zero() && h_.is_zero() && !cipher_.has_key() && cipher_.key().is_zero();
}

void SymmetricState::clear() {
  cipher_.clear();
  ck_.wipe();
  h_.wipe();
}

// ---- IkHandshake (Noise §5.3, pattern IK §7.5, modifier psk2 §9) ----

void IkHandshake::start(const IkProtocol& protocol, Role role,
                        const PublicKey& responder_static) {
  clear();
  role_ = role;
  psk2_ = protocol.psk2;
  symmetric_.initialize(protocol.name);
  symmetric_.mix_hash(protocol.prologue);
  // Pre-message "<- s": both sides hash the responder's static key.
  symmetric_.mix_hash(bytes_of(responder_static));
  step_ = Step::message1;
}

NoiseError IkHandshake::start_initiator(const IkProtocol& protocol, const PrivateKey& s,
                                        const PublicKey& s_public, const PublicKey& rs,
                                        const PresharedKey* psk,
                                        const SymmetricKey* static_static) {
  if (static_static != nullptr && static_static->is_zero()) {
    clear();
    return NoiseError::bad_key;
  }
  start(protocol, Role::initiator, rs);
  s_ = s;
  s_public_ = s_public;
  rs_ = rs;
  if (psk != nullptr) psk_ = *psk;
  if (static_static != nullptr) {
    static_static_ = *static_static;
    have_static_static_ = true;
  }
  return NoiseError::ok;
}

void IkHandshake::start_responder(const IkProtocol& protocol, const PrivateKey& s,
                                  const PublicKey& s_public, const PresharedKey* psk) {
  start(protocol, Role::responder, s_public);
  s_ = s;
  s_public_ = s_public;
  if (psk != nullptr) psk_ = *psk;
}

void IkHandshake::resume_responder(const IkProtocol& protocol, const PrivateKey& s,
                                   const PublicKey& s_public, const PublicKey& rs,
                                   const PublicKey& re, const SymmetricKey& chaining_key,
                                   const SymmetricKey& handshake_hash, const PresharedKey* psk) {
  clear();
  role_ = Role::responder;
  psk2_ = protocol.psk2;
  // Message 2 opens with "e" then "ee": a mix_key comes before any encryption, so (ck, h) is
  // the whole state that message 1 left behind.
  symmetric_.restore(chaining_key, handshake_hash);
  s_ = s;
  s_public_ = s_public;
  rs_ = rs;
  re_ = re;
  if (psk != nullptr) psk_ = *psk;
  step_ = Step::message2;
}

void IkHandshake::mix_ephemeral(SymmetricState& sym, const PublicKey& e_public) const {
  sym.mix_hash(bytes_of(e_public));
  if (psk2_) sym.mix_key(bytes_of(e_public));
}

NoiseError IkHandshake::write_message1(MutableByteSpan out, const PrivateKey& e,
                                       ByteSpan payload) {
  if (role_ != Role::initiator || step_ != Step::message1) return NoiseError::wrong_state;
  if (out.size() != message1_size(payload.size())) return NoiseError::bad_size;
  // Work on a copy: a failure leaves this object as it was.
  SymmetricState sym = symmetric_;
  SymmetricKey shared;
  const PublicKey e_public = crypto::public_key_of(e);

  // e
  std::copy(e_public.begin(), e_public.end(), out.begin());
  mix_ephemeral(sym, e_public);
  // es
  if (!crypto::dh(shared, e, rs_)) return NoiseError::bad_key;
  sym.mix_key(bytes_of(shared));
  // s
  if (auto err = sym.encrypt_and_hash(out.subspan(kDhSize, kDhSize + kTagSize),
                                      bytes_of(s_public_));
      err != NoiseError::ok) {
    return err;
  }
  // ss
  if (have_static_static_) {
    shared = static_static_;
  } else if (!crypto::dh(shared, s_, rs_)) {
    return NoiseError::bad_key;
  }
  sym.mix_key(bytes_of(shared));
  // payload
  if (auto err = sym.encrypt_and_hash(out.subspan(message1_size(0) - kTagSize), payload);
      err != NoiseError::ok) {
    return err;
  }

  symmetric_ = sym;
  e_ = e;
  e_public_ = e_public;
  step_ = Step::message2;
  return NoiseError::ok;
}

NoiseError IkHandshake::read_message1(MutableByteSpan payload_out, ByteSpan message) {
  if (role_ != Role::responder || step_ != Step::message1) return NoiseError::wrong_state;
  if (message.size() < message1_size(0) ||
      payload_out.size() != message.size() - message1_size(0)) {
    return NoiseError::bad_size;
  }
  SymmetricState sym = symmetric_;
  SymmetricKey shared;
  PublicKey re{};
  PublicKey rs{};

  // e
  std::copy_n(message.begin(), kDhSize, re.begin());
  mix_ephemeral(sym, re);
  // es
  if (!crypto::dh(shared, s_, re)) return NoiseError::bad_key;
  sym.mix_key(bytes_of(shared));
  // s
  if (auto err = sym.decrypt_and_hash(rs, message.subspan(kDhSize, kDhSize + kTagSize));
      err != NoiseError::ok) {
    return err;
  }
  // ss
  if (!crypto::dh(shared, s_, rs)) return NoiseError::bad_key;
  sym.mix_key(bytes_of(shared));
  // payload
  if (auto err = sym.decrypt_and_hash(payload_out, message.subspan(message1_size(0) - kTagSize));
      err != NoiseError::ok) {
    return err;
  }

  symmetric_ = sym;
  re_ = re;
  rs_ = rs;
  step_ = Step::message2;
  return NoiseError::ok;
}

NoiseError IkHandshake::write_message2(MutableByteSpan out, const PrivateKey& e,
                                       ByteSpan payload) {
  if (role_ != Role::responder || step_ != Step::message2) return NoiseError::wrong_state;
  if (out.size() != message2_size(payload.size())) return NoiseError::bad_size;
  SymmetricState sym = symmetric_;
  SymmetricKey shared;
  const PublicKey e_public = crypto::public_key_of(e);

  // e
  std::copy(e_public.begin(), e_public.end(), out.begin());
  mix_ephemeral(sym, e_public);
  // ee
  if (!crypto::dh(shared, e, re_)) return NoiseError::bad_key;
  sym.mix_key(bytes_of(shared));
  // se: the initiator's static with the responder's ephemeral
  if (!crypto::dh(shared, e, rs_)) return NoiseError::bad_key;
  sym.mix_key(bytes_of(shared));
  // psk
  if (psk2_) sym.mix_key_and_hash(ByteSpan(psk_.span()));
  // payload
  if (auto err = sym.encrypt_and_hash(out.subspan(kDhSize), payload); err != NoiseError::ok) {
    return err;
  }

  symmetric_ = sym;
  e_ = e;
  e_public_ = e_public;
  step_ = Step::split;
  return NoiseError::ok;
}

NoiseError IkHandshake::read_message2(MutableByteSpan payload_out, ByteSpan message) {
  if (role_ != Role::initiator || step_ != Step::message2) return NoiseError::wrong_state;
  if (message.size() < message2_size(0) ||
      payload_out.size() != message.size() - message2_size(0)) {
    return NoiseError::bad_size;
  }
  SymmetricState sym = symmetric_;
  SymmetricKey shared;
  PublicKey re{};

  // e
  std::copy_n(message.begin(), kDhSize, re.begin());
  mix_ephemeral(sym, re);
  // ee
  if (!crypto::dh(shared, e_, re)) return NoiseError::bad_key;
  sym.mix_key(bytes_of(shared));
  // se: our static with the responder's ephemeral
  if (!crypto::dh(shared, s_, re)) return NoiseError::bad_key;
  sym.mix_key(bytes_of(shared));
  // psk
  if (psk2_) sym.mix_key_and_hash(ByteSpan(psk_.span()));
  // payload
  if (auto err = sym.decrypt_and_hash(payload_out, message.subspan(kDhSize));
      err != NoiseError::ok) {
    return err;
  }

  symmetric_ = sym;
  re_ = re;
  step_ = Step::split;
  return NoiseError::ok;
}

NoiseError IkHandshake::split(CipherState& send, CipherState& receive) const {
  if (step_ != Step::split) return NoiseError::wrong_state;
  if (role_ == Role::initiator) {
    symmetric_.split(send, receive);
  } else {
    symmetric_.split(receive, send);
  }
  return NoiseError::ok;
}

void IkHandshake::clear() {
  step_ = Step::idle;
  psk2_ = false;
  symmetric_.clear();
  s_.wipe();
  s_public_.fill(0);
  rs_.fill(0);
  e_.wipe();
  e_public_.fill(0);
  re_.fill(0);
  psk_.wipe();
  static_static_.wipe();
  have_static_static_ = false;
}

bool IkHandshake::is_zeroed() const {
  auto zero = [](const PublicKey& k) { return sodium_is_zero(k.data(), k.size()) == 1; };
  return step_ == Step::idle && symmetric_.is_zeroed() && s_.is_zero() && e_.is_zero() &&
         psk_.is_zero() && static_static_.is_zero() && zero(s_public_) && zero(rs_) &&
         zero(e_public_) && zero(re_);
}

}  // namespace knit::wg::noise
