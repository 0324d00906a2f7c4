// The WireGuard handshake (whitepaper §5.4.2-§5.4.5): Noise IKpsk2 (wg/noise.hpp) framed in
// WireGuard's two handshake messages. No I/O, no clock: wall time, monotonic time and
// randomness are parameters. mac1/mac2 are left zero here; wg/cookie.hpp fills and checks them.
//
//   initiation (148):  0 type=1 | 1 reserved[3] | 4 sender LE32 | 8 ephemeral[32]
//                      | 40 AEAD(static)[48] | 88 AEAD(TAI64N)[28] | 116 mac1[16] | 132 mac2[16]
//   response (92):     0 type=2 | 1 reserved[3] | 4 sender LE32 | 8 receiver LE32
//                      | 12 ephemeral[32] | 44 AEAD(empty)[16] | 60 mac1[16] | 76 mac2[16]
//
// Flow: the initiator create_initiation()s; the responder's device runs consume_initiation()
// (authenticates the message and reveals the initiator's static key), finds the peer, then
// that peer's Handshake accept_initiation()s and create_response()s; the initiator's device
// finds the peer by the receiver index and consume_response()s. Both sides derive_session().
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "base/bytes.hpp"
#include "base/random.hpp"
#include "base/time.hpp"
#include "wg/constants.hpp"
#include "wg/keys.hpp"
#include "wg/noise.hpp"

namespace knit::wg {

// §5.4: CONSTRUCTION names the Noise protocol; IDENTIFIER is the prologue.
inline constexpr std::string_view kConstruction = "Noise_IKpsk2_25519_ChaChaPoly_BLAKE2s";
inline constexpr std::string_view kIdentifier = "WireGuard v1 zx2c4 Jason@zx2c4.com";

// The Noise parameters of WireGuard: IKpsk2, prologue = IDENTIFIER.
const noise::IkProtocol& wireguard_protocol();

// The device's static key pair.
struct LocalIdentity {
  PrivateKey private_key;
  PublicKey public_key{};
  void set(const PrivateKey& key);  // derives public_key
  bool empty() const;               // no private key configured
};

enum class HandshakeError {
  ok,
  malformed,           // wrong type byte or reserved bytes
  decrypt_failed,      // an AEAD tag did not verify: forged, corrupted or for another key
  bad_key,             // a DH result of all zeros (a low-order public key)
  replayed_timestamp,  // an initiation whose TAI64N is not newer than the last accepted one
  flood,               // an initiation within kHandshakeInitiationRate of the last accepted one
  wrong_state,         // not configured, not this peer, or not the step in progress
};

struct SessionKeys {
  SymmetricKey send;
  SymmetricKey receive;
  std::uint32_t local_index = 0;
  std::uint32_t remote_index = 0;
  bool initiator = false;
};

// An initiation authenticated before its peer is known: the device looks the peer up by
// remote_static, then hands this to that peer's Handshake::accept_initiation.
struct ConsumedInitiation {
  PublicKey remote_static{};
  PublicKey remote_ephemeral{};
  std::uint32_t remote_index = 0;
  std::array<std::uint8_t, kTimestampSize> timestamp{};
  SymmetricKey chaining_key;
  SymmetricKey hash;
};

// Checks the type and reserved bytes, then runs the responder's side of message 1
// (e, es, s, ss, timestamp) with the device's key. mac1 must have been checked already.
[[nodiscard]] HandshakeError consume_initiation(const LocalIdentity& local,
                                                std::span<const std::uint8_t, kInitiationSize> msg,
                                                ConsumedInitiation& out);

// One per peer.
class Handshake {
 public:
  enum class State { zeroed, created_initiation, consumed_initiation, created_response,
                     consumed_response };

  // Precomputes the static-static DH. Call again when the local key, remote key or psk
  // changes: this clears any handshake in flight (and, for a new remote key, the replay and
  // flood history).
  void configure(const LocalIdentity& local, const PublicKey& remote_static,
                 const PresharedKey& psk);
  // True when configured with a local key and a remote key whose static-static DH is valid.
  bool configured() const { return configured_; }

  // Initiator: the whole initiation with mac1/mac2 zero. Replaces any handshake in flight.
  // false if not configured. The timestamp's nanoseconds are rounded down to 2^24 ns, as the
  // stock implementations do, so it leaks no precise clock.
  [[nodiscard]] bool create_initiation(std::span<std::uint8_t, kInitiationSize> out,
                                       std::uint32_t local_index, WallTime wall_now, Random& rng);
  // Responder, after consume_initiation matched this peer: refuses a timestamp not newer than
  // the last accepted one and an initiation within kHandshakeInitiationRate of the last
  // accepted one; on ok replaces any handshake in flight.
  [[nodiscard]] HandshakeError accept_initiation(const ConsumedInitiation& in, Instant now);
  // Responder: the response with mac1/mac2 zero. false in any state but consumed_initiation.
  [[nodiscard]] bool create_response(std::span<std::uint8_t, kResponseSize> out,
                                     std::uint32_t local_index, Random& rng);
  // Initiator: the device found this peer by the response's receiver index. A response that
  // fails leaves the initiation in flight untouched.
  [[nodiscard]] HandshakeError consume_response(std::span<const std::uint8_t, kResponseSize> msg);
  // After create_response (responder) or consume_response (initiator): the transport keys
  // (§5.4.5), then the handshake state is zeroed. nullopt in any other state.
  std::optional<SessionKeys> derive_session();
  // Zeroes all in-flight state; keeps the configuration and the replay/flood history.
  void clear();

  State state() const { return state_; }
  std::uint32_t local_index() const { return local_index_; }
  const PublicKey& remote_static() const { return remote_static_; }
  // True while ephemeral keys, chaining key or hash of a handshake in flight are held.
  bool holds_key_material() const { return !noise_.is_zeroed(); }

 private:
  noise::IkHandshake noise_;
  PrivateKey local_private_;
  PublicKey local_public_{};
  PublicKey remote_static_{};
  PresharedKey psk_;
  SymmetricKey static_static_;  // DH(S_local, S_remote), §5.4.2 "ss"
  bool configured_ = false;
  State state_ = State::zeroed;
  std::uint32_t local_index_ = 0;
  std::uint32_t remote_index_ = 0;
  std::array<std::uint8_t, kTimestampSize> latest_timestamp_{};
  std::optional<Instant> last_initiation_accepted_;
};

}  // namespace knit::wg
