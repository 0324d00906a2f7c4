#include "wg/handshake.hpp"

#include <algorithm>
#include <chrono>
#include <cstring>

#include "wg/crypto.hpp"

namespace knit::wg {
namespace {

// Offsets inside the messages (see the header's drawing).
constexpr std::size_t kInitiationSenderOffset = 4;
constexpr std::size_t kInitiationNoiseOffset = 8;
constexpr std::size_t kInitiationNoiseSize = noise::IkHandshake::message1_size(kTimestampSize);
constexpr std::size_t kResponseSenderOffset = 4;
constexpr std::size_t kResponseReceiverOffset = 8;
constexpr std::size_t kResponseNoiseOffset = 12;
constexpr std::size_t kResponseNoiseSize = noise::IkHandshake::message2_size(0);
static_assert(kInitiationNoiseOffset + kInitiationNoiseSize == kInitiationMac1Offset);
static_assert(kResponseNoiseOffset + kResponseNoiseSize == kResponseMac1Offset);

bool header_is(ByteSpan msg, MessageType type) {
  return msg[0] == static_cast<std::uint8_t>(type) && msg[1] == 0 && msg[2] == 0 && msg[3] == 0;
}

void write_header(MutableByteSpan msg, MessageType type) {
  msg[0] = static_cast<std::uint8_t>(type);
  msg[1] = msg[2] = msg[3] = 0;
}

HandshakeError from_noise(noise::NoiseError err) {
  switch (err) {
    case noise::NoiseError::ok: return HandshakeError::ok;
    case noise::NoiseError::bad_key: return HandshakeError::bad_key;
    case noise::NoiseError::decrypt_failed: return HandshakeError::decrypt_failed;
    case noise::NoiseError::wrong_state: return HandshakeError::wrong_state;
    case noise::NoiseError::bad_size:
    case noise::NoiseError::nonce_exhausted: break;
  }
  return HandshakeError::malformed;
}

// The TAI64N put in an initiation. Stock WireGuard rounds the nanoseconds down to a power of
// two no longer than the 20 ms initiation rate (2^24 ns), so the timestamp does not reveal a
// precise clock; a responder refuses two initiations inside 20 ms anyway.
std::array<std::uint8_t, kTimestampSize> whitened_timestamp(WallTime wall_now) {
  constexpr std::uint32_t kWhitenerMask = (1u << 24) - 1;
  auto ts = crypto::tai64n(wall_now);
  store_be32(ts.data() + 8, load_be32(ts.data() + 8) & ~kWhitenerMask);
  return ts;
}

}  // namespace

const noise::IkProtocol& wireguard_protocol() {
  static const noise::IkProtocol protocol{
      kConstruction,
      ByteSpan(reinterpret_cast<const std::uint8_t*>(kIdentifier.data()), kIdentifier.size()),
      true};
  return protocol;
}

void LocalIdentity::set(const PrivateKey& key) {
  private_key = key;
  if (private_key.is_zero()) {
    public_key.fill(0);
  } else {
    public_key = crypto::public_key_of(private_key);
  }
}

bool LocalIdentity::empty() const { return private_key.is_zero(); }

HandshakeError consume_initiation(const LocalIdentity& local,
                                  std::span<const std::uint8_t, kInitiationSize> msg,
                                  ConsumedInitiation& out) {
  if (local.empty()) return HandshakeError::wrong_state;
  if (!header_is(msg, MessageType::initiation)) return HandshakeError::malformed;

  noise::IkHandshake responder;
  responder.start_responder(wireguard_protocol(), local.private_key, local.public_key);
  std::array<std::uint8_t, kTimestampSize> timestamp{};
  // e, es, s, ss, {timestamp}
  const auto err = responder.read_message1(
      timestamp, msg.subspan<kInitiationNoiseOffset, kInitiationNoiseSize>());
  if (err != noise::NoiseError::ok) return from_noise(err);

  out.remote_static = responder.remote_static();
  out.remote_ephemeral = responder.remote_ephemeral();
  out.remote_index = load_le32(msg.data() + kInitiationSenderOffset);
  out.timestamp = timestamp;
  out.chaining_key = responder.chaining_key();
  out.hash = responder.handshake_hash();
  return HandshakeError::ok;  // `responder` wipes its keys as it goes out of scope
}

void Handshake::configure(const LocalIdentity& local, const PublicKey& remote_static,
                          const PresharedKey& psk) {
  clear();
  if (remote_static != remote_static_) {
    // A different peer: its replay and flood history start afresh.
    latest_timestamp_.fill(0);
    last_initiation_accepted_.reset();
  }
  local_private_ = local.private_key;
  local_public_ = local.public_key;
  remote_static_ = remote_static;
  psk_ = psk;
  // §5.4.2 "ss" is the same for every handshake with this peer: compute it once. A remote key
  // of small order makes it zero, and such a peer can never complete a handshake.
  configured_ = !local.empty() && crypto::dh(static_static_, local_private_, remote_static_);
}

bool Handshake::create_initiation(std::span<std::uint8_t, kInitiationSize> out,
                                  std::uint32_t local_index, WallTime wall_now, Random& rng) {
  if (!configured_) return false;
  clear();
  if (noise_.start_initiator(wireguard_protocol(), local_private_, local_public_, remote_static_,
                             &psk_, &static_static_) != noise::NoiseError::ok) {
    return false;
  }
  const PrivateKey ephemeral = crypto::generate_private_key(rng);
  const auto timestamp = whitened_timestamp(wall_now);

  write_header(out, MessageType::initiation);
  store_le32(out.data() + kInitiationSenderOffset, local_index);
  // e, es, s, ss, {timestamp}
  if (noise_.write_message1(out.subspan<kInitiationNoiseOffset, kInitiationNoiseSize>(),
                            ephemeral, timestamp) != noise::NoiseError::ok) {
    clear();
    std::fill(out.begin(), out.end(), std::uint8_t{0});
    return false;
  }
  std::fill(out.begin() + kInitiationMac1Offset, out.end(), std::uint8_t{0});  // mac1, mac2
  local_index_ = local_index;
  state_ = State::created_initiation;
  return true;
}

HandshakeError Handshake::accept_initiation(const ConsumedInitiation& in, Instant now) {
  if (!configured_ || in.remote_static != remote_static_) {
    return HandshakeError::wrong_state;
  }
  // §5.1: a replayed initiation must not reset the session, so the timestamp must grow
  // (big-endian bytes compare as numbers).
  if (std::memcmp(in.timestamp.data(), latest_timestamp_.data(), kTimestampSize) <= 0) {
    return HandshakeError::replayed_timestamp;
  }
  // §5.1 again: at most one initiation per kHandshakeInitiationRate, so a flood of fresh
  // initiations cannot keep the responder recomputing sessions.
  if (last_initiation_accepted_ && now - *last_initiation_accepted_ < kHandshakeInitiationRate) {
    return HandshakeError::flood;
  }
  clear();
  latest_timestamp_ = in.timestamp;
  last_initiation_accepted_ = now;
  noise_.resume_responder(wireguard_protocol(), local_private_, local_public_, in.remote_static,
                          in.remote_ephemeral, in.chaining_key, in.hash, &psk_);
  remote_index_ = in.remote_index;
  state_ = State::consumed_initiation;
  return HandshakeError::ok;
}

bool Handshake::create_response(std::span<std::uint8_t, kResponseSize> out,
                                std::uint32_t local_index, Random& rng) {
  if (state_ != State::consumed_initiation) return false;
  const PrivateKey ephemeral = crypto::generate_private_key(rng);

  write_header(out, MessageType::response);
  store_le32(out.data() + kResponseSenderOffset, local_index);
  store_le32(out.data() + kResponseReceiverOffset, remote_index_);
  // e, ee, se, psk, {}
  if (noise_.write_message2(out.subspan<kResponseNoiseOffset, kResponseNoiseSize>(), ephemeral,
                            {}) != noise::NoiseError::ok) {
    clear();
    std::fill(out.begin(), out.end(), std::uint8_t{0});
    return false;
  }
  std::fill(out.begin() + kResponseMac1Offset, out.end(), std::uint8_t{0});  // mac1, mac2
  local_index_ = local_index;
  state_ = State::created_response;
  return true;
}

HandshakeError Handshake::consume_response(std::span<const std::uint8_t, kResponseSize> msg) {
  if (!header_is(msg, MessageType::response)) return HandshakeError::malformed;
  if (state_ != State::created_initiation ||
      load_le32(msg.data() + kResponseReceiverOffset) != local_index_) {
    return HandshakeError::wrong_state;
  }
  // Read on a copy: a forged response must not destroy the genuine handshake in flight.
  noise::IkHandshake attempt = noise_;
  // e, ee, se, psk, {}
  const auto err =
      attempt.read_message2({}, msg.subspan<kResponseNoiseOffset, kResponseNoiseSize>());
  if (err != noise::NoiseError::ok) return from_noise(err);
  noise_ = attempt;
  remote_index_ = load_le32(msg.data() + kResponseSenderOffset);
  state_ = State::consumed_response;
  return HandshakeError::ok;
}

std::optional<SessionKeys> Handshake::derive_session() {
  if (state_ != State::created_response && state_ != State::consumed_response) {
    return std::nullopt;
  }
  // §5.4.5: (T_send_i, T_send_r) = KDF2(C, empty); the initiator sends with the first.
  noise::CipherState send;
  noise::CipherState receive;
  if (noise_.split(send, receive) != noise::NoiseError::ok) return std::nullopt;
  SessionKeys keys;
  keys.send = send.key();
  keys.receive = receive.key();
  keys.local_index = local_index_;
  keys.remote_index = remote_index_;
  keys.initiator = state_ == State::consumed_response;
  clear();
  return keys;
}

void Handshake::clear() {
  noise_.clear();
  state_ = State::zeroed;
  local_index_ = 0;
  remote_index_ = 0;
}

}  // namespace knit::wg
