// Two ends of a relay channel (control/channel.hpp with the relay prologue) past the Noise
// handshake, for the split-message and run tests: `client` seals, `server` reads. Neither side
// has split messages or runs enabled; a test turns on what it exercises.
#pragma once

#include <cstdint>
#include <stdexcept>

#include "base/random.hpp"
#include "control/channel.hpp"
#include "relay/frame.hpp"
#include "wg/crypto.hpp"

namespace knit::relay::testing {

struct ChannelPair {
  explicit ChannelPair(std::uint64_t seed) : rng(seed) {
    using control::Channel;
    using control::ChannelError;
    using control::ChannelEvent;
    const wg::PrivateKey server_key = wg::crypto::generate_private_key(rng);
    const wg::PrivateKey client_key = wg::crypto::generate_private_key(rng);
    client = Channel::initiator(client_key, wg::crypto::public_key_of(server_key), 1 << 17, kRelayPrologue);
    server = Channel::responder(server_key, 1 << 17, kRelayPrologue);
    Bytes m1, m2;
    if (client.start(rng, {}, m1) != ChannelError::ok) throw std::runtime_error("start");
    ByteSpan in(m1);
    if (server.feed(in).kind != ChannelEvent::Kind::request) throw std::runtime_error("m1");
    if (server.answer(rng, {}, m2) != ChannelError::ok) throw std::runtime_error("answer");
    ByteSpan in2(m2);
    if (client.feed(in2).kind != ChannelEvent::Kind::handshake_done) throw std::runtime_error("m2");
  }
  SeededRandom rng;
  control::Channel client = control::Channel::responder(wg::PrivateKey{});
  control::Channel server = control::Channel::responder(wg::PrivateKey{});
};

}  // namespace knit::relay::testing
