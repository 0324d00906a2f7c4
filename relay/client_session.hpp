// The dialing side of one relay connection, without I/O: an agent talking to its home relay, or
// a relay dialing a peer relay. The Noise channel with the relay prologue, the Hello and Result
// (frame.hpp), then one frame per transport message.
//
//   start()  -> message 1 (Hello)
//   feed()   <- message 2 (Result): admitted, or refused and over
//            <- transport messages: one frame each
//   seal()   -> one frame as a transport message
//
// The Hello offers split data frames (frame.hpp); when the relay's Result grants them, packets
// go both ways with only their head sealed, and a split message that is not a data frame is a
// bad_frame (dropped, counted). It offers data runs too: when granted, seal_send keeps a run
// open in its output buffer and adds each next packet to the same node to it; the run is
// sealed by the next other seal or by flush_run(), which the caller calls before it writes the
// buffer out. With runs granted a session therefore seals into one output buffer only.
//
// Nothing on the packet path allocates: a transport message is decrypted into one buffer the
// channel keeps (a frame and writable() point into it until the next feed()), and
// seal_append / seal_send append to an output buffer the caller reuses.
//
// After `admitted` the caller must send something first (a Ping): the relay admits the
// connection only once a transport message proves we hold the keys (frame.hpp).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

#include "base/bytes.hpp"
#include "base/random.hpp"
#include "control/channel.hpp"
#include "relay/frame.hpp"
#include "wg/keys.hpp"

namespace knit::relay {

class ClientSession {
 public:
  struct Step {
    enum class Kind {
      need_more,  // input is used up
      admitted,   // the relay accepted us; result holds its answer
      refused,    // the relay refused us (result.status); the session is over
      frame,      // one frame; valid until the next feed()
      run,        // a run of recv packets from one node (run); valid until the next feed()
      bad_frame,  // a transport message that did not parse (parse says why); dropped
      failed,     // the channel failed (error says why); the session is over
    };
    Kind kind = Kind::need_more;
    Result result;
    Frame frame;
    RunFrame run;
    ParseError parse = ParseError::ok;
    std::string error;
  };

  // my_key: our static key (the node key, or this relay's key); relay_key: the relay we dial.
  ClientSession(const wg::PrivateKey& my_key, const NodeKey& relay_key, Role role);

  // The features the Hello offers (frame.hpp); kKnownFeatures unless changed before start().
  // 0 sends the original two-byte Hello (what an agent before the features sent).
  void set_offered_features(std::uint8_t features) { offered_ = features & kKnownFeatures; }
  // Message 1 as a frame to write; false (error() says why) when it cannot be made.
  [[nodiscard]] bool start(Random& rng, Bytes& frame);
  // Consumes input up to the end of one message (advancing it) and reports it.
  Step feed(ByteSpan& input);
  // The bytes of a frame's packet from the last feed(), writable: they are this session's own
  // receive buffer, so a receiver may decrypt them in place until the next feed(). Empty when
  // `packet` does not lie in that buffer.
  MutableByteSpan writable(ByteSpan packet);
  // Frames from now on are kept in *arena (control::Channel::set_lend_arena) rather than in
  // the session's one buffer: they, and writable() spans of them, stay valid until the caller
  // clears the arena. The caller keeps kMaxNoiseFrame of room in its capacity before each
  // feed(). nullptr: back to the one buffer.
  void set_arena(Bytes* arena) { channel_.set_lend_arena(arena); }
  // One encoded frame (frame.hpp) as a transport message. False when not admitted.
  [[nodiscard]] bool seal(ByteSpan frame, Bytes& out);
  // The same, appended to out; out is unchanged on false.
  [[nodiscard]] bool seal_append(ByteSpan frame, Bytes& out);
  // A send frame (dst | packet) built and sealed at the end of out, the packet copied once:
  // split (only the head sealed) when the relay granted split_data, else whole; with data runs
  // granted, added to the open run to dst in out, or opening one (header comment).
  // False (out unchanged) when not admitted or the packet is empty or over kMaxPacketSize.
  [[nodiscard]] bool seal_send(const NodeKey& dst, ByteSpan packet, Bytes& out);
  // Seals the open run, if any; false when the channel failed (the run's bytes are gone then).
  bool flush_run();
  // A run is open: its bytes are in the output buffer but not sealed yet.
  bool run_open() const { return run_out_ != nullptr; }
  // A data frame whose head (type and keys, split_head_size) and packet are given, appended to
  // out: split when granted, else whole. False (out unchanged) as for seal_send.
  [[nodiscard]] bool seal_data(ByteSpan head, ByteSpan packet, Bytes& out);
  // Any split message (head sealed, tail as it is), unchecked: what a hostile client can send
  // (tests and fuzzing). False when not admitted or the channel refuses it.
  [[nodiscard]] bool seal_split_unchecked(ByteSpan head, ByteSpan tail, Bytes& out) {
    return admitted_ && flush_run() && channel_.seal_split_append(head, tail, out) == control::ChannelError::ok;
  }
  // Any run (head sealed; after_head = the tails and the trailer as they are), unchecked but for
  // the channel's own layout checks: what a hostile client can send (tests and fuzzing).
  [[nodiscard]] bool seal_run_unchecked(ByteSpan head, ByteSpan after_head, Bytes& out);
  // The relay granted split data frames (both directions use them).
  bool split_data() const { return (granted_ & kFeatureSplitData) != 0; }
  // The relay granted data runs (both directions may use them).
  bool data_runs() const { return (granted_ & kFeatureDataRuns) != 0; }

  bool admitted() const { return admitted_; }
  bool over() const { return over_; }
  const std::string& error() const { return error_; }
  const NodeKey& relay_key() const { return channel_.remote_static(); }

 private:
  Step fail(std::string why);
  control::ChannelError seal_whole(ByteSpan head, ByteSpan packet, Bytes& out);
  bool add_to_run(const NodeKey& dst, ByteSpan packet, Bytes& out);

  control::Channel channel_;
  Role role_;
  MutableByteSpan plaintext_;  // the last transport message (the channel's); frames point into it
  std::uint8_t offered_ = kKnownFeatures;
  std::uint8_t granted_ = 0;
  bool admitted_ = false;
  bool over_ = false;
  // The open run: at run_at_ in *run_out_ (frame header, head byte, head, tag room, packets);
  // its lengths wait here for the trailer.
  Bytes* run_out_ = nullptr;
  std::size_t run_at_ = 0;
  NodeKey run_dst_{};
  std::size_t run_count_ = 0;
  std::size_t run_bytes_ = 0;
  std::array<std::uint16_t, control::kMaxRunTails> run_lengths_{};
  std::string error_;
};

}  // namespace knit::relay
