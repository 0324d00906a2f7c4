// The coordinator's end of one control session, without I/O, for the tests of its clients: a
// responder Channel that reads the hello and seals answers and messages as the coordinator
// would; peer(n), a peer entry with every field set from n; and accepted(), the register
// response a coordinator gives a new node. tests/support/fake_coordinator.hpp puts the same end
// behind a TCP listener.
#pragma once

#include <gtest/gtest.h>

#include <optional>
#include <string>

#include "base/ip.hpp"
#include "base/random.hpp"
#include "control/channel.hpp"
#include "control/messages.hpp"
#include "wg/keys.hpp"

namespace knit::testing {

inline ByteSpan bytes_of(const std::string& s) {
  return ByteSpan(reinterpret_cast<const std::uint8_t*>(s.data()), s.size());
}

inline control::PeerInfo peer(std::uint8_t n) {
  control::PeerInfo info;
  info.name = "node-" + std::to_string(n);
  info.node_key.fill(n);
  info.disco_key.fill(static_cast<std::uint8_t>(n + 100));
  info.ipv4 = IpAddress::parse("100.64.0." + std::to_string(n)).value();
  info.ipv6 = IpAddress::parse("fd7a::" + std::to_string(n)).value();
  return info;
}

// What a coordinator answers a node it accepts as `hostname` (address 100.64.0.1).
inline control::RegisterResponse accepted(const std::string& hostname = "host-a") {
  control::RegisterResponse r;
  r.ok = true;
  r.node = {hostname, IpAddress::parse("100.64.0.1").value(), IpAddress::parse("fd7a::1").value(), {}};
  r.node.node_key.fill(1);  // all-zero keys are refused on the wire
  r.mesh = {IpPrefix::parse("100.64.0.0/10").value(), IpPrefix::parse("fd7a::/48").value()};
  return r;
}

// The message a channel event carries, if it parses.
inline std::optional<control::Message> message_of(const control::ChannelEvent& event) {
  return control::to_message(control::parse_message(std::string(event.data.begin(), event.data.end())));
}

class CoordinatorEnd {
 public:
  CoordinatorEnd(Random& rng, const wg::PrivateKey& key) : rng_(rng), channel_(control::Channel::responder(key)) {}

  // The channel itself, for a reader that takes frames from a stream.
  control::Channel& channel() { return channel_; }

  // Reads message 1 (one whole frame); returns the register request.
  control::RegisterRequest read_request(const Bytes& frame) {
    ByteSpan input(frame);
    auto event = channel_.feed(input);
    EXPECT_EQ(event.kind, control::ChannelEvent::Kind::request);
    auto parsed = control::parse_message(std::string(event.data.begin(), event.data.end()));
    EXPECT_TRUE(std::holds_alternative<control::RegisterRequest>(parsed));
    return std::holds_alternative<control::RegisterRequest>(parsed) ? std::get<control::RegisterRequest>(parsed)
                                                                    : control::RegisterRequest{};
  }
  // Message 2 carrying the answer.
  Bytes answer(const control::Message& response) {
    Bytes frame;
    EXPECT_EQ(channel_.answer(rng_, bytes_of(control::encode(response)), frame), control::ChannelError::ok);
    return frame;
  }
  Bytes send(const control::Message& message) { return send_text(control::encode(message)); }
  Bytes send_text(const std::string& text) {
    Bytes frame;
    EXPECT_EQ(channel_.seal(bytes_of(text), frame), control::ChannelError::ok);
    return frame;
  }
  // A transport frame from the client.
  std::optional<control::Message> receive(const Bytes& frame) {
    ByteSpan input(frame);
    auto event = channel_.feed(input);
    if (event.kind != control::ChannelEvent::Kind::message) return std::nullopt;
    return message_of(event);
  }

 private:
  Random& rng_;
  control::Channel channel_;
};

}  // namespace knit::testing
