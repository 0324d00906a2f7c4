// The relay protocol: every wire size and limit, the handshake payloads and the frame codec.
// Sans I/O: bytes in, structs out.
//
// A client (an agent, or a relay dialing another relay) opens a TCP stream to the relay, wrapped
// in TLS when it dials "tls://host:port" (the relay tells TLS from plain by the first byte: 0x16
// starts a TLS record, 0x00 a Noise frame). On the stream runs the control channel
// (control/channel.hpp) with its own prologue:
//
//   Noise_IK_25519_ChaChaPoly_BLAKE2s, prologue "knit relay v1" (never a control handshake)
//   -> e, es, s, ss  + Hello    s = the client's node key (its WireGuard key), or a relay's key
//   <- e, ee, se     + Result   the responder's static key = the relay key from the relay map
//
//   Hello:  0 version u8 (1) | 1 role u8 (0 client, 1 relay) | 2 features u8   more bytes ignored
//   Result: 0 status u8 (Admission) | 1 keepalive_s be16 | 3 features u8       more bytes ignored
//
// features (optional: an older side sends the short form, read as 0): the Hello offers, the
// Result grants a subset of what was offered, and only granted features are used, both ways.
//   bit 0  split_data: data frames (send, recv, forward) travel as split channel messages
//          (control/channel.hpp): the head (type and keys) sealed, the packet as it is.
//   bit 1  data_runs (granted with split_data, to clients only): consecutive packets to one
//          node may travel as one run (control/channel.hpp): one sealed send or recv head for
//          up to kMaxRunTails packets, their lengths in the trailer the head's tag covers.
//          A relay forwards a run to a client that has them as a run (one head opened, one
//          sealed, where split frames need one of each per packet), packet by packet otherwise.
//
// A split data frame on the wire, inside the channel's framing:
//
//   0 length be32 | 0x80000000 | 4 head_size u8 (33, or 65 for forward)
//   5 AEAD(head: type u8 | key[32] (| key[32]), ad = length | head_size) | tag[16]
//   head_size + 21 packet (not sealed again: a WireGuard message or a disco message)
//
// Why the packet may go unsealed on this hop: it is already authenticated end to end by its
// own AEAD (WireGuard's transport data or handshake MACs, disco's crypto_box), so on the relay
// hop it gets exactly the protection it has on a direct UDP path; the hop's seal keeps covering
// everything the relay acts on: the type, the keys, the length and the place in the stream (the
// nonce), so frames cannot be injected, replayed, reordered or redirected. A tampered packet is
// dropped by WireGuard at the receiver. Control frames are always sealed whole; a split
// message that is not a data frame with exactly its head sealed is dropped and counted.
// docs/ARCHITECTURE.md ("The relay hop's seal") has the full argument and what it gives up.
//
// A refused client reads the Result and the relay closes. An admitted one must send a transport
// message first (it sends a Ping): message 1 is replayable (channel.hpp), so until then the
// relay neither replaces an older connection of that key nor announces it.
//
// After the handshake every Noise transport message carries exactly one frame:
//
//   0 type u8 | 1 body
//   0x01 send       dst[32] | packet          client -> relay: forward to node dst
//   0x02 recv       src[32] | packet          relay -> client: node src sent this
//   0x03 keepalive  (empty)                   either way, when nothing else was sent
//   0x04 ping       token be64                either way; answered by a pong with the same token
//   0x05 pong       token be64
//   0x06 peer_gone  key[32] | reason u8       relay -> client: dst is not connected anywhere
//   0x07 closing    reason u8                 relay -> client: the relay ends this connection
//   0x10 forward    src[32] | dst[32] | packet    relay <-> relay
//   0x11 present    key[32] x n (1..kMaxKeysPerFrame)  relay <-> relay: clients connected here
//   0x12 absent     key[32] x n                        relay <-> relay: clients gone from here
//
// Packets (WireGuard datagrams, disco messages) are opaque, 1..kMaxPacketSize bytes. A frame
// that does not parse is dropped and counted; it does not end the connection. A Noise frame over
// the limit does (the channel cannot skip it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "base/bytes.hpp"
#include "control/constants.hpp"
#include "wg/keys.hpp"

namespace knit::relay {

using NodeKey = wg::PublicKey;

// ---- wire sizes and limits ----
inline constexpr std::string_view kRelayPrologue = "knit relay v1";
inline constexpr std::uint8_t kRelayVersion = 1;
inline constexpr std::size_t kKeySize = 32;
// The largest packet: a UDP datagram's payload fits (64 KiB - 1).
inline constexpr std::size_t kMaxPacketSize = 65535;
// The largest frame (a forward with a full packet) and the largest Noise frame body carrying it.
inline constexpr std::size_t kMaxFrameSize = 1 + 2 * kKeySize + kMaxPacketSize;
// (a split message adds the head size byte: one more than a whole sealed frame).
inline constexpr std::size_t kMaxNoiseFrame = kMaxFrameSize + control::kAeadTagSize + 1;
// Handshake payloads are tiny; a larger message 1 is refused before any crypto.
inline constexpr std::size_t kMaxHelloSize = 64;
inline constexpr std::size_t kHelloSize = 2;
inline constexpr std::size_t kResultSize = 3;
// Feature bits of Hello and Result.
inline constexpr std::uint8_t kFeatureSplitData = 0x01;
inline constexpr std::uint8_t kFeatureDataRuns = 0x02;
inline constexpr std::uint8_t kKnownFeatures = kFeatureSplitData | kFeatureDataRuns;
// The packet bytes a sender puts in one run: with its head and trailer it stays well inside
// kMaxNoiseFrame, and a relay forwards it as it is.
inline constexpr std::size_t kMaxRunBytes = 60 * 1024;
// The sealed head of a split data frame: type and key(s).
inline constexpr std::size_t kDataHeadSize = 1 + kKeySize;         // send, recv
inline constexpr std::size_t kForwardHeadSize = 1 + 2 * kKeySize;  // forward
// present/absent carry at most this many keys (16 KiB of keys).
inline constexpr std::size_t kMaxKeysPerFrame = 512;

enum class FrameType : std::uint8_t {
  send = 0x01,
  recv = 0x02,
  keepalive = 0x03,
  ping = 0x04,
  pong = 0x05,
  peer_gone = 0x06,
  closing = 0x07,
  forward = 0x10,
  present = 0x11,
  absent = 0x12,
};

enum class Role : std::uint8_t { client = 0, relay = 1 };

// The relay's answer to a Hello.
enum class Admission : std::uint8_t {
  ok = 0,
  not_member = 1,          // the node key is not a current member of the mesh
  not_relay = 2,           // role relay, but the key is not in the relay map
  membership_unknown = 3,  // the relay has no membership yet (no coordinator, no cache)
  bad_hello = 4,           // unknown version or role
  self = 5,                // a relay dialed itself
};

// Why a peer_gone was sent.
enum class GoneReason : std::uint8_t {
  not_connected = 0,  // dst is connected to no relay of the mesh this relay knows of
};

// Why the relay ends a connection (closing frame).
enum class CloseReason : std::uint8_t {
  removed = 0,       // the node left the mesh
  replaced = 1,      // the same key connected again
  idle = 2,          // nothing received for the idle timeout
  shutting_down = 3, // the relay stops
};

std::string_view to_string(Admission admission);
std::string_view to_string(CloseReason reason);
std::string_view to_string(FrameType type);

// features 0 encodes the short (version 1 original) form, byte for byte.
struct Hello {
  std::uint8_t version = kRelayVersion;
  Role role = Role::client;
  std::uint8_t features = 0;  // offered
};

struct Result {
  Admission status = Admission::ok;
  std::uint16_t keepalive_s = 0;  // how often the relay expects to hear something (0: unknown)
  std::uint8_t features = 0;      // granted: a subset of the Hello's
};

Bytes encode(const Hello& hello);
Bytes encode(const Result& result);
// nullopt when too short; an unknown role or version parses (the relay refuses it with
// bad_hello, so a newer client learns why).
std::optional<Hello> parse_hello(ByteSpan payload);
std::optional<Result> parse_result(ByteSpan payload);

// One decoded frame. `packet` and `keys` point into the bytes given to parse_frame.
struct Frame {
  FrameType type = FrameType::keepalive;
  NodeKey src{};      // recv, forward
  NodeKey dst{};      // send, forward; peer_gone's key
  ByteSpan packet;    // send, recv, forward
  std::uint64_t token = 0;  // ping, pong
  std::uint8_t reason = 0;  // peer_gone (GoneReason), closing (CloseReason)
  ByteSpan keys;      // present, absent: n * 32 bytes
  std::size_t key_count() const { return keys.size() / kKeySize; }
  NodeKey key(std::size_t i) const;
};

enum class ParseError {
  ok,
  empty,         // no type byte
  unknown_type,  // a type this version does not know (a newer peer): ignored, counted
  truncated,     // the body is shorter than the type needs
  trailing,      // bytes after a fixed-size body
  bad_packet,    // an empty packet (over the limit cannot reach here: the channel's limit)
  bad_keys,      // present/absent with no key, too many, or a partial key
  not_data,      // a split message that is not a data frame with exactly its head sealed
};

std::string_view to_string(ParseError error);

ParseError parse_frame(ByteSpan bytes, Frame& out);
// A split message (control::ChannelEvent::split) whose first sealed_size bytes were sealed:
// parses as parse_frame, and only a send, recv or forward whose sealed head is exactly its
// type and keys is ok (not_data otherwise: a control frame must never arrive split).
ParseError parse_split_frame(ByteSpan bytes, std::size_t sealed_size, Frame& out);
// The head a data frame type seals in the split form; 0 for the other types.
std::size_t split_head_size(FrameType type);

// A run's message (control::ChannelEvent with run_tails > 0): head | packets | trailer, the head
// a send or recv (type and key). Spans point into the bytes given to parse_run.
struct RunFrame {
  FrameType type = FrameType::send;
  NodeKey key{};      // dst of a send, src of a recv
  ByteSpan packets;   // every packet, back to back
  ByteSpan trailer;   // len be16 x count | count u8
  std::size_t count() const { return trailer.empty() ? 0 : trailer.back(); }
  // The run's bytes after the head (packets and trailer), as a relay forwards them.
  ByteSpan after_head() const { return ByteSpan(packets.data(), packets.size() + trailer.size()); }
  // Calls fn(ByteSpan packet) for each packet in order.
  template <typename Fn>
  void for_each(Fn&& fn) const {
    std::size_t at = 0;
    for (std::size_t i = 0; i < count(); ++i) {
      const std::size_t length = load_be16(trailer.data() + 2 * i);
      fn(packets.subspan(at, length));
      at += length;
    }
  }
};
// ok for a send or recv head of exactly kDataHeadSize sealed bytes (not_data otherwise) whose
// trailer says `tails` packets of 1..kMaxPacketSize bytes filling the rest exactly (truncated
// or bad_packet otherwise).
ParseError parse_run(ByteSpan bytes, std::size_t sealed_size, std::size_t tails, RunFrame& out);

// Encoders write one frame into out (cleared first). A packet over kMaxPacketSize or empty, or
// more than kMaxKeysPerFrame keys, is refused with false.
bool encode_send(const NodeKey& dst, ByteSpan packet, Bytes& out);
bool encode_recv(const NodeKey& src, ByteSpan packet, Bytes& out);
bool encode_forward(const NodeKey& src, const NodeKey& dst, ByteSpan packet, Bytes& out);
void encode_keepalive(Bytes& out);
void encode_ping(std::uint64_t token, Bytes& out);
void encode_pong(std::uint64_t token, Bytes& out);
void encode_peer_gone(const NodeKey& key, GoneReason reason, Bytes& out);
void encode_closing(CloseReason reason, Bytes& out);
bool encode_keys(FrameType type, const std::vector<NodeKey>& keys, Bytes& out);  // present/absent

// Short printable form of a key for logs: the first 8 base64 characters.
std::string short_key(const NodeKey& key);

}  // namespace knit::relay
