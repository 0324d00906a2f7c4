#include "control/channel.hpp"

#include <sodium.h>

#include <algorithm>
#include <array>

#include "wg/crypto.hpp"

namespace knit::control {
namespace {

using wg::noise::IkHandshake;
using wg::noise::NoiseError;

// The handshake mixes the prologue in when it starts, so the protocol only lives for that call.
wg::noise::IkProtocol protocol(std::string_view prologue) {
  return wg::noise::IkProtocol{
      kChannelProtocolName,
      ByteSpan(reinterpret_cast<const std::uint8_t*>(prologue.data()), prologue.size()),
      false,
  };
}

// A frame: the header, then room for a body of `body_size` that the caller fills.
Bytes frame_with_body(std::size_t body_size) {
  Bytes frame(kFrameHeaderSize + body_size);
  store_be32(frame.data(), static_cast<std::uint32_t>(body_size));
  return frame;
}

MutableByteSpan body_of(Bytes& frame) { return MutableByteSpan(frame).subspan(kFrameHeaderSize); }

// Handshake payloads carry a join token: their plaintext copies do not outlive their use.
void wipe_bytes(Bytes& bytes) {
  sodium_memzero(bytes.data(), bytes.size());
  bytes.clear();
}

ChannelEvent event(ChannelEvent::Kind kind, Bytes data = {}) {
  ChannelEvent out;
  out.kind = kind;
  out.data = std::move(data);
  return out;
}

}  // namespace

std::string_view to_string(ChannelError error) {
  switch (error) {
    case ChannelError::ok:
      return "ok";
    case ChannelError::malformed:
      return "malformed frame";
    case ChannelError::decrypt_failed:
      return "decryption failed";
    case ChannelError::frame_too_large:
      return "frame too large";
    case ChannelError::wrong_state:
      return "unexpected in this state";
    case ChannelError::nonce_exhausted:
      return "nonce exhausted";
    case ChannelError::bad_key:
      return "bad key";
  }
  return "unknown";
}

Channel::Channel(Role role, std::size_t max_frame)
    : role_(role),
      state_(role == Role::initiator ? State::ready : State::listening),
      reader_(std::clamp(max_frame, kMinFrameLimit, kMaxFrameSize)) {}

Channel Channel::initiator(const wg::PrivateKey& node_key, const wg::PublicKey& coordinator_key,
                           std::size_t max_frame, std::string_view prologue) {
  Channel channel(Role::initiator, max_frame);
  channel.remote_static_ = coordinator_key;
  // Without a precomputed DH nothing here can fail; a low-order coordinator key shows in start().
  (void)channel.handshake_.start_initiator(protocol(prologue), node_key,
                                           wg::crypto::public_key_of(node_key), coordinator_key);
  return channel;
}

Channel Channel::responder(const wg::PrivateKey& coordinator_key, std::size_t max_frame,
                           std::string_view prologue) {
  Channel channel(Role::responder, max_frame);
  channel.handshake_.start_responder(protocol(prologue), coordinator_key,
                                     wg::crypto::public_key_of(coordinator_key));
  return channel;
}

Channel::Channel(Channel&& other) noexcept
    : role_(other.role_),
      state_(other.state_),
      failure_(other.failure_),
      reader_(std::move(other.reader_)),
      handshake_(other.handshake_),
      remote_static_(other.remote_static_),
      send_(other.send_),
      receive_(other.receive_),
      lend_(other.lend_),
      runs_(other.runs_),
      lent_(std::move(other.lent_)),
      arena_(other.arena_) {
  other.failure_ = ChannelError::wrong_state;
  other.wipe();
}

Channel& Channel::operator=(Channel&& other) noexcept {
  if (this != &other) {
    role_ = other.role_;
    state_ = other.state_;
    failure_ = other.failure_;
    reader_ = std::move(other.reader_);
    handshake_ = other.handshake_;
    remote_static_ = other.remote_static_;
    send_ = other.send_;
    receive_ = other.receive_;
    lend_ = other.lend_;
    runs_ = other.runs_;
    lent_ = std::move(other.lent_);
    arena_ = other.arena_;
    other.failure_ = ChannelError::wrong_state;
    other.wipe();
  }
  return *this;
}

void Channel::wipe() {
  state_ = State::closed;
  handshake_.clear();
  send_.clear();
  receive_.clear();
}

ChannelEvent Channel::fail(ChannelError error) {
  if (state_ != State::closed) {
    failure_ = error;
    wipe();
  }
  ChannelEvent out;
  out.kind = ChannelEvent::Kind::error;
  out.error = error;
  return out;
}

ChannelError Channel::start(Random& rng, ByteSpan payload, Bytes& frame) {
  if (role_ != Role::initiator || state_ != State::ready) return ChannelError::wrong_state;
  const std::size_t size = IkHandshake::message1_size(payload.size());
  if (size > kMaxFrameSize) return ChannelError::frame_too_large;
  const wg::PrivateKey ephemeral = wg::crypto::generate_private_key(rng);
  Bytes out = frame_with_body(size);
  const NoiseError err = handshake_.write_message1(body_of(out), ephemeral, payload);
  if (err == NoiseError::bad_key) return fail(ChannelError::bad_key).error;
  if (err != NoiseError::ok) return fail(ChannelError::wrong_state).error;
  frame = std::move(out);
  state_ = State::requested;
  return ChannelError::ok;
}

ChannelError Channel::answer(Random& rng, ByteSpan payload, Bytes& frame) {
  if (role_ != Role::responder || state_ != State::answering) return ChannelError::wrong_state;
  const std::size_t size = IkHandshake::message2_size(payload.size());
  if (size > kMaxFrameSize) return ChannelError::frame_too_large;
  const wg::PrivateKey ephemeral = wg::crypto::generate_private_key(rng);
  Bytes out = frame_with_body(size);
  NoiseError err = handshake_.write_message2(body_of(out), ephemeral, payload);
  if (err == NoiseError::ok) err = handshake_.split(send_, receive_);
  // bad_key here means message 1 carried a low-order key the DH could not use.
  if (err != NoiseError::ok) return fail(ChannelError::malformed).error;
  handshake_.clear();  // the static and ephemeral private keys are no longer needed
  frame = std::move(out);
  state_ = State::open;
  return ChannelError::ok;
}

ChannelError Channel::seal(ByteSpan plaintext, Bytes& frame) {
  if (state_ != State::open) return ChannelError::wrong_state;
  if (plaintext.size() > kMaxFrameSize - kAeadTagSize) return ChannelError::frame_too_large;
  Bytes out = frame_with_body(plaintext.size() + kAeadTagSize);
  const NoiseError err = send_.encrypt_with_ad(body_of(out), {}, plaintext);
  if (err == NoiseError::nonce_exhausted) return fail(ChannelError::nonce_exhausted).error;
  if (err != NoiseError::ok) return fail(ChannelError::wrong_state).error;
  frame = std::move(out);
  return ChannelError::ok;
}

ChannelError Channel::seal_append(ByteSpan plaintext, Bytes& out) {
  const std::size_t at = out.size();
  if (state_ == State::open && plaintext.size() <= kMaxFrameSize - kAeadTagSize) {
    out.resize(at + kFrameHeaderSize + plaintext.size() + kAeadTagSize);
    store_be32(out.data() + at, static_cast<std::uint32_t>(plaintext.size() + kAeadTagSize));
    const NoiseError err = send_.encrypt_with_ad(
        MutableByteSpan(out).subspan(at + kFrameHeaderSize), {}, plaintext);
    if (err == NoiseError::ok) return ChannelError::ok;
    out.resize(at);
    if (err == NoiseError::nonce_exhausted) return fail(ChannelError::nonce_exhausted).error;
    return fail(ChannelError::wrong_state).error;
  }
  return state_ != State::open ? ChannelError::wrong_state : ChannelError::frame_too_large;
}

ChannelError Channel::seal_tail(Bytes& out, std::size_t at) {
  if (at > out.size() || out.size() - at < kFrameHeaderSize) {
    if (at < out.size()) out.resize(at);
    return ChannelError::malformed;
  }
  const std::size_t plaintext = out.size() - at - kFrameHeaderSize;
  if (state_ != State::open || plaintext > kMaxFrameSize - kAeadTagSize) {
    out.resize(at);
    return state_ != State::open ? ChannelError::wrong_state : ChannelError::frame_too_large;
  }
  out.resize(out.size() + kAeadTagSize);
  store_be32(out.data() + at, static_cast<std::uint32_t>(plaintext + kAeadTagSize));
  const MutableByteSpan body = MutableByteSpan(out).subspan(at + kFrameHeaderSize);
  // encrypt_with_ad may work in place: out aliasing the plaintext exactly.
  const NoiseError err = send_.encrypt_with_ad(body, {}, body.first(plaintext));
  if (err == NoiseError::ok) return ChannelError::ok;
  out.resize(at);
  if (err == NoiseError::nonce_exhausted) return fail(ChannelError::nonce_exhausted).error;
  return fail(ChannelError::wrong_state).error;
}

ChannelEvent Channel::feed(ByteSpan& input) {
  if (state_ == State::closed) {
    input = {};
    ChannelEvent out;
    out.kind = ChannelEvent::Kind::error;
    out.error = failure_;
    return out;
  }
  if (input.empty()) return event(ChannelEvent::Kind::need_more);
  // Nothing may arrive before we spoke (initiator) or while the answer is pending (responder):
  // in IK the initiator cannot send again before it has read message 2.
  if (state_ == State::ready || state_ == State::answering) {
    input = {};
    return fail(ChannelError::wrong_state);
  }
  switch (reader_.feed(input)) {
    case FrameReader::Status::need_more:
      return event(ChannelEvent::Kind::need_more);
    case FrameReader::Status::too_large:
      input = {};
      return fail(ChannelError::frame_too_large);
    case FrameReader::Status::frame:
      break;
  }
  ChannelEvent out = on_frame(reader_.body());
  if (out.kind == ChannelEvent::Kind::error) input = {};
  return out;
}

ChannelEvent Channel::on_frame(ByteSpan body) {
  switch (state_) {
    case State::listening:
      return on_message1(body);
    case State::requested:
      return on_message2(body);
    case State::open:
      return on_transport(body);
    case State::ready:
    case State::answering:
    case State::closed:
      break;
  }
  return fail(ChannelError::wrong_state);
}

ChannelEvent Channel::on_message1(ByteSpan body) {
  if (body.size() < IkHandshake::message1_size(0)) return fail(ChannelError::malformed);
  Bytes payload(body.size() - IkHandshake::message1_size(0));
  const NoiseError err = handshake_.read_message1(payload, body);
  if (err == NoiseError::decrypt_failed) return fail(ChannelError::decrypt_failed);
  if (err != NoiseError::ok) {
    wipe_bytes(payload);
    return fail(ChannelError::malformed);
  }
  remote_static_ = handshake_.remote_static();
  state_ = State::answering;
  return event(ChannelEvent::Kind::request, std::move(payload));
}

ChannelEvent Channel::on_message2(ByteSpan body) {
  if (body.size() < IkHandshake::message2_size(0)) return fail(ChannelError::malformed);
  Bytes payload(body.size() - IkHandshake::message2_size(0));
  NoiseError err = handshake_.read_message2(payload, body);
  if (err == NoiseError::ok) err = handshake_.split(send_, receive_);
  if (err != NoiseError::ok) {
    wipe_bytes(payload);
    return fail(err == NoiseError::decrypt_failed ? ChannelError::decrypt_failed
                                                  : ChannelError::malformed);
  }
  handshake_.clear();
  state_ = State::open;
  return event(ChannelEvent::Kind::handshake_done, std::move(payload));
}

MutableByteSpan Channel::plaintext_room(std::size_t size, Bytes& plain) {
  if (lend_ && arena_ != nullptr) {
    const std::size_t at = arena_->size();
    arena_->resize(at + size);
    return MutableByteSpan(*arena_).subspan(at, size);
  }
  if (lend_) {
    // Grows to the largest message and stays: resize within the capacity allocates nothing.
    if (lent_.size() < size) lent_.resize(size);
    return MutableByteSpan(lent_).first(size);
  }
  plain.resize(size);
  return plain;
}

namespace {

// A split message's associated data: the length word, the head size byte and, for a run, the
// trailer (empty for a plain split message).
struct SplitAd {
  std::array<std::uint8_t, kFrameHeaderSize + 1 + run_trailer_size(kMaxRunTails)> bytes{};
  std::size_t size = 0;
  SplitAd(ByteSpan header, std::uint8_t head_byte, ByteSpan trailer) {
    std::copy(header.begin(), header.end(), bytes.begin());
    bytes[kFrameHeaderSize] = head_byte;
    std::copy(trailer.begin(), trailer.end(), bytes.begin() + kFrameHeaderSize + 1);
    size = kFrameHeaderSize + 1 + trailer.size();
  }
  ByteSpan span() const { return ByteSpan(bytes.data(), size); }
};

// The trailer at the end of a run's bytes after its sealed head (tails | trailer): its size
// when the count is 1..kMaxRunTails, every length >= 1 and the lengths add up exactly; else 0.
std::size_t check_run_trailer(ByteSpan after_head) {
  if (after_head.empty()) return 0;
  const std::size_t count = after_head.back();
  const std::size_t trailer = run_trailer_size(count);
  if (count == 0 || count > kMaxRunTails || after_head.size() < trailer) return 0;
  const std::size_t tails = after_head.size() - trailer;
  const std::uint8_t* lengths = after_head.data() + tails;
  std::size_t sum = 0;
  for (std::size_t i = 0; i < count; ++i) {
    const std::size_t length = load_be16(lengths + 2 * i);
    if (length == 0) return 0;
    sum += length;
  }
  return sum == tails ? trailer : 0;
}

}  // namespace

ChannelError Channel::seal_split_append(ByteSpan head, ByteSpan tail, Bytes& out) {
  if (state_ != State::open) return ChannelError::wrong_state;
  if (head.empty() || head.size() > kMaxSplitHead) return ChannelError::malformed;
  const std::size_t body = kSplitOverhead + head.size() + tail.size();
  if (body > kMaxFrameSize) return ChannelError::frame_too_large;
  const std::size_t at = out.size();
  out.resize(at + kFrameHeaderSize + body);
  std::uint8_t* p = out.data() + at;
  store_be32(p, static_cast<std::uint32_t>(body) | kSplitFlag);
  p[kFrameHeaderSize] = static_cast<std::uint8_t>(head.size());
  const ByteSpan ad(p, kFrameHeaderSize + 1);
  const MutableByteSpan sealed(p + kFrameHeaderSize + 1, head.size() + kAeadTagSize);
  std::copy(tail.begin(), tail.end(), sealed.data() + sealed.size());
  const NoiseError err = send_.encrypt_with_ad(sealed, ad, head);
  if (err == NoiseError::ok) return ChannelError::ok;
  out.resize(at);
  if (err == NoiseError::nonce_exhausted) return fail(ChannelError::nonce_exhausted).error;
  return fail(ChannelError::wrong_state).error;
}


ChannelError Channel::seal_run(Bytes& out, std::size_t at, std::size_t head_size) {
  const std::size_t before_tails = kFrameHeaderSize + 1 + head_size + kAeadTagSize;
  if (at > out.size() || out.size() - at < before_tails) {
    if (at < out.size()) out.resize(at);
    return ChannelError::malformed;
  }
  if (state_ != State::open) {
    out.resize(at);
    return ChannelError::wrong_state;
  }
  const std::size_t body = out.size() - at - kFrameHeaderSize;
  const ByteSpan after_head = ByteSpan(out).subspan(at + before_tails);
  const std::size_t trailer = check_run_trailer(after_head);
  if (head_size == 0 || head_size > kMaxRunHead || trailer == 0 || body > kMaxFrameSize) {
    out.resize(at);
    return body > kMaxFrameSize ? ChannelError::frame_too_large : ChannelError::malformed;
  }
  std::uint8_t* p = out.data() + at;
  store_be32(p, static_cast<std::uint32_t>(body) | kSplitFlag);
  p[kFrameHeaderSize] = static_cast<std::uint8_t>(kRunMark | head_size);
  const SplitAd ad(ByteSpan(p, kFrameHeaderSize), p[kFrameHeaderSize], after_head.last(trailer));
  const MutableByteSpan sealed(p + kFrameHeaderSize + 1, head_size + kAeadTagSize);
  const NoiseError err = send_.encrypt_with_ad(sealed, ad.span(), sealed.first(head_size));
  if (err == NoiseError::ok) return ChannelError::ok;
  out.resize(at);
  if (err == NoiseError::nonce_exhausted) return fail(ChannelError::nonce_exhausted).error;
  return fail(ChannelError::wrong_state).error;
}

ChannelEvent Channel::on_split(ByteSpan body) {
  // head_size u8 | AEAD(head) | tail; at least one byte of head. A run (runs enabled, kRunMark
  // on the head size): its tail ends in the trailer, which the ad covers too.
  if (body.size() < kSplitOverhead + 1) return fail(ChannelError::malformed);
  const bool run = runs_ && (body[0] & kRunMark) != 0;
  const std::size_t head = run ? body[0] & kMaxRunHead : body[0];
  if (head == 0 || body.size() < kSplitOverhead + head) return fail(ChannelError::malformed);
  const ByteSpan tail = body.subspan(kSplitOverhead + head);
  const std::size_t trailer = run ? check_run_trailer(tail) : 0;
  if (run && trailer == 0) return fail(ChannelError::malformed);
  const SplitAd ad(reader_.header(), body[0], tail.last(trailer));
  const ByteSpan sealed = body.subspan(1, head + kAeadTagSize);
  Bytes plaintext;
  const MutableByteSpan out = plaintext_room(head + tail.size(), plaintext);
  const NoiseError err = receive_.decrypt_with_ad(out.first(head), ad.span(), sealed);
  if (err != NoiseError::ok) {
    if (lend_ && arena_ != nullptr) arena_->resize(arena_->size() - out.size());
    if (err == NoiseError::decrypt_failed) return fail(ChannelError::decrypt_failed);
    if (err == NoiseError::nonce_exhausted) return fail(ChannelError::nonce_exhausted);
    return fail(ChannelError::malformed);
  }
  std::copy(tail.begin(), tail.end(), out.begin() + static_cast<std::ptrdiff_t>(head));
  ChannelEvent ok = event(ChannelEvent::Kind::message, std::move(plaintext));
  if (lend_) ok.lent = out;
  ok.split = true;
  ok.sealed_size = head;
  if (run) ok.run_tails = tail.back();
  return ok;
}

ChannelEvent Channel::on_transport(ByteSpan body) {
  if (reader_.split()) return on_split(body);
  if (body.size() < kAeadTagSize) return fail(ChannelError::malformed);
  const std::size_t size = body.size() - kAeadTagSize;
  Bytes plaintext;
  const MutableByteSpan out = plaintext_room(size, plaintext);
  const NoiseError err = receive_.decrypt_with_ad(out, {}, body);
  if (err != NoiseError::ok && lend_ && arena_ != nullptr) arena_->resize(arena_->size() - size);
  switch (err) {
    case NoiseError::ok: {
      ChannelEvent ok = event(ChannelEvent::Kind::message, std::move(plaintext));
      if (lend_) ok.lent = out;
      return ok;
    }
    case NoiseError::decrypt_failed:
      return fail(ChannelError::decrypt_failed);
    case NoiseError::nonce_exhausted:
      return fail(ChannelError::nonce_exhausted);
    default:
      return fail(ChannelError::malformed);
  }
}

void Channel::set_nonces_for_testing(std::uint64_t send, std::uint64_t receive) {
  send_.set_nonce(send);
  receive_.set_nonce(receive);
}

}  // namespace knit::control
