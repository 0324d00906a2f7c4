// Disco: the sealed path-discovery messages (ping, pong, call-me-maybe) that agents exchange on
// the WireGuard UDP socket, on probe sockets, and through the relay.
//
// Packet (all integers big-endian):
//
//   0       6                                38                      62
//   +-------+--------------------------------+-----------------------+--------------------+
//   | magic | sender disco public key (32)   | nonce (24)            | crypto_box(...)    |
//   +-------+--------------------------------+-----------------------+--------------------+
//   magic = "KNIT" 0x44 0x31                   nonce = counter (8) | random (16)
//
//   crypto_box = XSalsa20-Poly1305 under the X25519 shared key of the two disco keys
//                (libsodium crypto_box_easy_afternm): Poly1305 tag (16) | ciphertext
//
//   plaintext  = type (1) | version (1) | body
//     ping          1   tx_id (12) | sender node key (32) [| padding (zeros)]
//     pong          2   tx_id (12) | observed source: endpoint (19) [| flags (1)]
//     call_me_maybe 3   flags (1: bit 0 mapping varies, bit 1 sender has traffic for us,
//                       bit 2 sender has opened its NAT towards our candidates: ping now,
//                       bit 3 full pings welcome: the sender has no NAT, or its NAT's filtering
//                       was measured not to depend on the port (EIF/ADF)) |
//                       epoch (8) | count (1) |
//                       count x { kind (1) | endpoint (19) }          count <= 16
//   endpoint   = family (1: 4 or 6) | address (16: IPv4 in the first 4, the rest zero) | port (2)
//
// Path MTU probes (pmtu.hpp) are pings padded with zeros to the size under test. Older agents
// refuse any datagram longer than a full call-me-maybe (too_big) and so never answer a padded
// ping; agents that accept them append a flags byte to every pong (bit 0: padded pings are
// welcome), which older agents ignore (a version may append fields). A peer whose pongs lack it
// is never sent padded pings.
//
// Told apart from the other traffic on the socket by the first byte: WireGuard messages start
// with 1..4 (whitepaper §5.4) and STUN with the two top bits 00 (RFC 8489 §5); 'K' (0x4b) is
// neither 1..4 nor < 0x40.
//
// Replay protection: the first 8 nonce bytes carry the sender's counter, which only grows (the
// agent seeds it from the wall clock in nanoseconds at start, so a restart continues upward, as
// WireGuard's TAI64N timestamps do). The nonce is authenticated by the box, so the counter cannot
// be forged; the receiver keeps a per-sender sliding window (RFC 6479, wg::ReplayWindow) and
// drops anything seen before or older than the window. The 16 random bytes keep nonces unique
// even if a sender's clock went backwards across a restart.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "base/bytes.hpp"
#include "base/ip.hpp"
#include "base/random.hpp"
#include "base/secret.hpp"
#include "wg/keys.hpp"
#include "wg/replay.hpp"

namespace knit::punch {

using DiscoKey = wg::PublicKey;
using NodeKey = wg::PublicKey;
using TxId = std::array<std::uint8_t, 12>;

inline constexpr std::array<std::uint8_t, 6> kDiscoMagic = {'K', 'N', 'I', 'T', 0x44, 0x31};
inline constexpr std::size_t kDiscoKeySize = 32;
inline constexpr std::size_t kDiscoNonceSize = 24;
inline constexpr std::size_t kDiscoTagSize = 16;
inline constexpr std::size_t kDiscoHeaderSize = kDiscoMagic.size() + kDiscoKeySize + kDiscoNonceSize;
inline constexpr std::size_t kDiscoEndpointSize = 19;
inline constexpr std::uint8_t kDiscoVersion = 1;
inline constexpr std::size_t kMaxCallMeMaybeEndpoints = 16;
inline constexpr std::size_t kPingBodySize = 12 + 32;
inline constexpr std::size_t kPongBodySize = 12 + kDiscoEndpointSize;
inline constexpr std::size_t kCallMeMaybeFixedSize = 1 + 8 + 1;
// The largest message we ever send or accept (a full call-me-maybe).
inline constexpr std::size_t kMaxDiscoPacket = kDiscoHeaderSize + kDiscoTagSize + 2 +
                                               kCallMeMaybeFixedSize +
                                               kMaxCallMeMaybeEndpoints * (1 + kDiscoEndpointSize);
// The largest padded ping accepted (a path MTU probe; jumbo frames are 9000 bytes).
inline constexpr std::size_t kMaxDiscoProbePacket = 9216;
// The sealed size of a ping without padding.
inline constexpr std::size_t kDiscoPingSize = kDiscoHeaderSize + kDiscoTagSize + 2 + kPingBodySize;
inline constexpr std::uint8_t kPongFlagPaddedPings = 1;

enum class DiscoType : std::uint8_t { ping = 1, pong = 2, call_me_maybe = 3 };

// Where a candidate endpoint came from; the easy side of port prediction aims at the hard
// side's reflexive address.
enum class CandidateKind : std::uint8_t {
  local = 1,       // an interface address
  reflexive = 2,   // what a STUN server saw
  portmapped = 3,  // NAT-PMP / PCP / UPnP mapping
  observed = 4,    // learned from where a peer's ping came from ("peer-reflexive")
  predicted = 5,   // found by port prediction
};

struct CandidateEndpoint {
  CandidateKind kind = CandidateKind::local;
  Endpoint endpoint;
  friend bool operator==(const CandidateEndpoint&, const CandidateEndpoint&) = default;
};

struct DiscoPing {
  TxId tx_id{};
  NodeKey node_key{};
  std::size_t padding = 0;  // zeros after the body: a path MTU probe
};
struct DiscoPong {
  TxId tx_id{};
  Endpoint observed;  // the source the ping arrived from, as the pinged side saw it
  bool padded_pings = false;  // the sender answers padded pings (its flags byte says so)
};
struct CallMeMaybe {
  bool mapping_varies = false;  // the sender's NAT maps per destination ("hard")
  bool active = false;          // the sender is sending us data: port prediction is worth it
  bool opened = false;          // the sender just sent openers/pings to our public candidates
  // The sender has no NAT, or its NAT filters by address at most (measured): a ping to its
  // public candidates from a port it never sent to cannot take a port on its router.
  bool full_pings_welcome = false;
  std::uint64_t epoch = 0;      // grows whenever the sender's candidates change
  std::vector<CandidateEndpoint> endpoints;  // at most kMaxCallMeMaybeEndpoints
};

struct DiscoMessage {
  DiscoType type = DiscoType::ping;
  DiscoPing ping;
  DiscoPong pong;
  CallMeMaybe call_me_maybe;
};

enum class DiscoError : std::uint8_t {
  none,
  not_disco,        // no magic
  truncated,        // shorter than header + tag + type/version
  too_big,          // longer than any message we send (kMaxDiscoProbePacket)
  unknown_sender,   // no peer with that disco key
  bad_box,          // the box does not open (wrong key, tampered, forged)
  replay,           // counter seen before or older than the window
  bad_version,      // version 0
  unknown_type,
  malformed,        // body too short, bad family, too many endpoints
  node_key_mismatch,  // ping names a node key other than the peer's
  unexpected_pong,  // pong matching no outstanding ping
  stale,            // call-me-maybe older than one already processed
  rate_limited,     // dropped by a flood bound
};
inline constexpr std::size_t kDiscoErrorCount = static_cast<std::size_t>(DiscoError::rate_limited) + 1;
const char* to_string(DiscoError error);

// True if the datagram starts with the disco magic (cheap demultiplexing on a shared socket).
bool looks_like_disco(ByteSpan packet);
// The sender's disco public key from the header; nullopt if not disco or truncated.
std::optional<DiscoKey> disco_sender(ByteSpan packet);

// Body codec (plaintext after the box), exposed for tests and fuzzing.
Bytes encode_plaintext(const DiscoMessage& message);
DiscoError decode_plaintext(ByteSpan plaintext, DiscoMessage& out);

// The crypto_box shared key of this node and one peer, and the replay window for what that
// peer sends. One per peer; zeroed when dropped.
class DiscoSession {
 public:
  // False if the peer's key is a low-order point (no usable shared key).
  [[nodiscard]] bool init(const wg::PrivateKey& mine, const DiscoKey& mine_public,
                          const DiscoKey& theirs);
  bool ready() const { return ready_; }

  // Seals `message` with nonce counter `counter` (never reuse; the caller's counter only grows).
  Bytes seal(const DiscoMessage& message, std::uint64_t counter, Random& rng) const;

  // Opens a packet whose header names this peer's key. On success fills `out`, records the
  // counter in the replay window and returns DiscoError::none.
  DiscoError open(ByteSpan packet, DiscoMessage& out);

 private:
  Secret<32> shared_;
  DiscoKey mine_public_{};
  DiscoKey theirs_{};
  wg::ReplayWindow replay_;
  bool ready_ = false;
};

// Generates a disco keypair (X25519).
void generate_disco_key(wg::PrivateKey& private_key, DiscoKey& public_key, Random& rng);

}  // namespace knit::punch
