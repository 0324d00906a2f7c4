// The control channel: Noise IK over a TCP stream, sans I/O. The agent (initiator) knows the
// coordinator's static key from the join token; its own static key is its node key, which the
// coordinator (responder) learns from message 1 and decides whether to accept.
//
//   Noise_IK_25519_ChaChaPoly_BLAKE2s, prologue "knit control v1" (never a WireGuard message)
//
//   <- s
//   ...
//   -> e, es, s, ss   + payload: the register request     (frame 1, agent -> coordinator)
//   <- e, ee, se      + payload: the register response    (frame 2, coordinator -> agent)
//   <-> transport: AEAD(k, n, ad = empty, message), n counting up from 0 per direction
//
// Every message, handshake ones included, travels in one frame (frame_reader.hpp):
//
//   0 length be32 | 4 ciphertext[length]
//     message 1: 96 + payload, message 2: 48 + payload, transport: 16 + plaintext
//
// A frame is at most 16 MiB (a peer map of 10k nodes fits); each side may receive less
// (max_frame). A bigger frame, a frame that does not decrypt, a frame in the wrong state or a
// nonce at 2^64 - 1 is fatal: the channel closes and the caller drops the connection. There is
// no rekey: 2^64 - 1 messages a direction cannot be reached, and the channel fails closed
// rather than reuse a nonce.
//
// Split messages (only where both sides enabled them: set_split_frames; the relay negotiates
// it for its data frames, relay/frame.hpp). A message whose tail is already authenticated end
// to end (a WireGuard packet) seals only its head and carries the tail as it is:
//
//   0 length be32 | kSplitFlag | 4 head_size u8 | 5 AEAD(k, n, ad, head)[head_size + 16] | tail
//     ad = the 4 length bytes as sent (the flag included) | head_size
//
// The nonce is the same counter as every other transport message's, so a split message can be
// neither replayed, reordered, dropped nor moved to another channel without the next head
// failing; the ad binds the tail's length. The tail's bytes are not authenticated on this hop:
// the receiver learns which bytes were (ChannelEvent::sealed_size) and must treat the rest as
// untrusted until their own AEAD has been checked. A split message to a side that did not
// enable them reads there as a frame over the limit (fatal), never as something else.
//
// Runs (only where both sides enabled them: set_run_frames, on top of split messages): one
// sealed head for several tails (a burst of packets to one node), their lengths in a trailer
// the head's tag covers:
//
//   0 length be32 | kSplitFlag | 4 kRunMark | head_size | 5 AEAD(k, n, ad, head)[head_size + 16]
//     | tail 1 | ... | tail n | len 1 be16 | ... | len n be16 | n u8
//     ad = the 4 length bytes as sent | byte 4 | the trailer (the lengths and n)
//
// n is 1..kMaxRunTails, every tail at least one byte, and the lengths add up to exactly the
// bytes between the tag and the trailer; anything else, or a tag that does not verify, is
// fatal like any bad transport message. What a run authenticates is what a split message of
// each tail would: the head, the place in the stream, and where every tail starts and ends.
//
// Message 1 is replayable (Noise §7.7, IK payload 1 has no freshness from the responder): the
// coordinator must treat a register request as idempotent, or commit its effects only once the
// first transport frame from the agent proves the agent is live.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "base/bytes.hpp"
#include "base/random.hpp"
#include "control/constants.hpp"
#include "control/frame_reader.hpp"
#include "wg/keys.hpp"
#include "wg/noise.hpp"

namespace knit::control {

inline constexpr std::string_view kChannelProtocolName = "Noise_IK_25519_ChaChaPoly_BLAKE2s";
inline constexpr std::string_view kChannelPrologue = "knit control v1";
// The smallest receive limit a side may set: room for both handshake messages' overhead.
inline constexpr std::size_t kMinFrameLimit = 256;
// A split message's sealed head: its size travels in one byte.
inline constexpr std::size_t kMaxSplitHead = 255;
// What a split message adds to head + tail: the head size byte and the head's tag.
inline constexpr std::size_t kSplitOverhead = 1 + kAeadTagSize;
// A run (header comment): its head size byte carries this mark, so its head is at most 127.
inline constexpr std::uint8_t kRunMark = 0x80;
inline constexpr std::size_t kMaxRunHead = 0x7f;
inline constexpr std::size_t kMaxRunTails = 64;
// A run's trailer for n tails: n lengths and the count.
constexpr std::size_t run_trailer_size(std::size_t tails) { return 2 * tails + 1; }

enum class ChannelError {
  ok,
  malformed,        // a frame too short for what it must hold, or a low-order key in it
  decrypt_failed,   // an AEAD tag did not verify (wrong coordinator key, tampering)
  frame_too_large,  // a frame over the limit (received or to be sent)
  wrong_state,      // the call or the frame does not fit where the handshake is
  nonce_exhausted,  // 2^64 - 1 messages in one direction
  bad_key,          // start(): the coordinator key is a low-order point
};

std::string_view to_string(ChannelError error);

struct ChannelEvent {
  enum class Kind {
    need_more,       // the input is used up; feed more bytes
    request,         // responder: message 1 read; data = its payload, remote_static() = the node
                     // key. Answer with answer() or drop the connection.
    handshake_done,  // initiator: message 2 read; data = its payload; seal() may be used now
    message,         // a transport message; data = its plaintext
    error,           // fatal; see error
  };
  Kind kind = Kind::need_more;
  Bytes data;
  // A transport message's plaintext when the channel lends its messages (set_lend_messages):
  // then `data` stays empty and this points into the channel's own buffer, writable, valid
  // until the next feed().
  MutableByteSpan lent;
  ChannelError error = ChannelError::ok;
  // A split message (header comment): only its first sealed_size bytes were authenticated by
  // this channel; the rest is the tail as it arrived.
  bool split = false;
  std::size_t sealed_size = 0;
  // A run (split too): lent/data = head | tails | trailer, as on the wire but for the head's
  // tag; run_tails tails, whose lengths the channel has checked (each >= 1, the sum exact).
  std::size_t run_tails = 0;
};

class Channel {
 public:
  enum class Role { initiator, responder };
  enum class State {
    ready,      // initiator: before start()
    requested,  // initiator: message 1 sent, waiting for message 2
    listening,  // responder: waiting for message 1
    answering,  // responder: message 1 read, waiting for answer()
    open,       // transport
    closed,     // after a fatal error; every key wiped
  };

  // The agent: its node key and the coordinator key from the join token.
  // prologue: kChannelPrologue for the control channel; another protocol riding on the same
  // channel (the relay: "knit relay v1") passes its own, so a handshake of one can never be
  // accepted as a handshake of the other. The text must outlive the call only.
  static Channel initiator(const wg::PrivateKey& node_key, const wg::PublicKey& coordinator_key,
                           std::size_t max_frame = kMaxFrameSize,
                           std::string_view prologue = kChannelPrologue);
  // The coordinator: its static key.
  static Channel responder(const wg::PrivateKey& coordinator_key,
                           std::size_t max_frame = kMaxFrameSize,
                           std::string_view prologue = kChannelPrologue);

  // Move-only: a copy would send with the same keys and nonces. A moved-from channel is closed.
  Channel(Channel&& other) noexcept;
  Channel& operator=(Channel&& other) noexcept;
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;
  ~Channel() = default;

  // Initiator: message 1 carrying payload, as a frame to write. The ephemeral key comes from rng.
  [[nodiscard]] ChannelError start(Random& rng, ByteSpan payload, Bytes& frame);
  // Consumes bytes from input (advancing it) up to the end of one frame and reports what that
  // frame was. Call again while input is not empty; need_more means it is used up.
  ChannelEvent feed(ByteSpan& input);
  // Responder, after a request event: message 2 carrying payload, as a frame to write; the
  // channel is open. Refusing a node is answering with an error payload, then closing.
  [[nodiscard]] ChannelError answer(Random& rng, ByteSpan payload, Bytes& frame);
  // Open channel: plaintext as one transport frame.
  [[nodiscard]] ChannelError seal(ByteSpan plaintext, Bytes& frame);
  // The same frame appended to out (which keeps its capacity: a caller that reuses one output
  // buffer seals without allocating). On an error out is as it was.
  [[nodiscard]] ChannelError seal_append(ByteSpan plaintext, Bytes& out);
  // Seals in place a frame the caller built at the end of out: out[at, at + kFrameHeaderSize) is
  // room for the header and out[at + kFrameHeaderSize, end) the plaintext. The tag is appended.
  // On an error out is cut back to at.
  [[nodiscard]] ChannelError seal_tail(Bytes& out, std::size_t at);
  // Open channel: head sealed and tail appended as they are, one split message appended to
  // out (header comment). The tail is copied once, nothing allocated beyond out's growth. A
  // head of 0 or over kMaxSplitHead bytes, or a message over the limit, is refused (out as it
  // was); the caller sends split messages only to a side that enabled them.
  [[nodiscard]] ChannelError seal_split_append(ByteSpan head, ByteSpan tail, Bytes& out);
  // Accept split messages from the other side (off by default: they are then fatal).
  void set_split_frames(bool allowed) { reader_.set_split_allowed(allowed); }
  // Open channel: seals in place a run (header comment) the caller built at the end of out:
  // out[at, at + 5) is room for the length word and the head size byte, then head_size bytes
  // of head, kAeadTagSize bytes of room for its tag, the tails and the trailer. Refused (out cut
  // back to at) when the layout does not hold or the run is over the limit; the caller sends
  // runs only to a side that enabled them.
  [[nodiscard]] ChannelError seal_run(Bytes& out, std::size_t at, std::size_t head_size);
  // Accept runs from the other side (with split messages on; off by default: a head size byte
  // with kRunMark is then an ordinary head of that size).
  void set_run_frames(bool allowed) { runs_ = allowed; }
  // Transport messages are decrypted into one buffer the channel keeps (ChannelEvent::lent)
  // instead of a new Bytes each (ChannelEvent::data): for a stream of many small messages.
  void set_lend_messages(bool lend) { lend_ = lend; }
  // With lending on, each message is appended to *arena instead, so a caller can keep many
  // messages of one read alive at once (a batch); it clears the arena between batches and
  // keeps room in its capacity for a whole message (max_frame()), so appending never moves
  // what was lent before. nullptr: back to the one buffer.
  void set_lend_arena(Bytes* arena) { arena_ = arena; }

  Role role() const { return role_; }
  State state() const { return state_; }
  bool is_open() const { return state_ == State::open; }
  // The other side's static key: the coordinator's from the start (initiator), the node key
  // once a request event has been seen (responder).
  const wg::PublicKey& remote_static() const { return remote_static_; }
  std::size_t max_frame() const { return reader_.max_body(); }

  // Tests only: jump the nonce counters to reach exhaustion without 2^64 messages.
  void set_nonces_for_testing(std::uint64_t send, std::uint64_t receive);

 private:
  Channel(Role role, std::size_t max_frame);
  ChannelEvent fail(ChannelError error);
  void wipe();
  ChannelEvent on_frame(ByteSpan body);
  ChannelEvent on_message1(ByteSpan body);
  ChannelEvent on_message2(ByteSpan body);
  ChannelEvent on_transport(ByteSpan body);
  ChannelEvent on_split(ByteSpan body);  // runs too
  // Where a transport message's plaintext of `size` bytes goes (lent buffer, arena, or plain).
  MutableByteSpan plaintext_room(std::size_t size, Bytes& plain);

  Role role_;
  State state_;
  ChannelError failure_ = ChannelError::ok;
  FrameReader reader_;
  wg::noise::IkHandshake handshake_;
  wg::PublicKey remote_static_{};
  wg::noise::CipherState send_;
  wg::noise::CipherState receive_;
  bool lend_ = false;
  bool runs_ = false;
  Bytes lent_;  // the last lent message (capacity kept up to the largest message seen)
  Bytes* arena_ = nullptr;
};

}  // namespace knit::control
