#include "agent/coordinator_session.hpp"

#include <sodium.h>

#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

#include "control/peer_map.hpp"

namespace knit::agent {

namespace {

std::string_view as_text(ByteSpan bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

std::string channel_failure(control::ChannelError error, bool handshake) {
  if (handshake && error == control::ChannelError::decrypt_failed)
    return "the coordinator could not prove it holds the key in the join token (wrong token, or "
           "something else answers at that address)";
  return std::string("the control channel failed: ") + std::string(control::to_string(error));
}

}  // namespace

CoordinatorSession::CoordinatorSession(const wg::PrivateKey& node_key,
                                       const wg::PublicKey& coordinator_key)
    : channel_(control::Channel::initiator(node_key, coordinator_key)) {}

std::optional<Bytes> CoordinatorSession::start(Random& rng, const control::RegisterRequest& request) {
  std::string text = control::encode(request);
  Bytes frame;
  const auto error = channel_.start(rng, ByteSpan(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()), frame);
  // The payload carries the join token: leave no copy of it behind.
  sodium_memzero(text.data(), text.size());
  if (error != control::ChannelError::ok) {
    over_ = true;
    failure_ = error == control::ChannelError::bad_key
                   ? "the coordinator key in the join token is not usable: create a new token"
                   : channel_failure(error, true);
    return std::nullopt;
  }
  return frame;
}

void CoordinatorSession::fail(std::string why, std::vector<SessionEvent>& events) {
  over_ = true;
  failure_ = why;
  SessionEvent event;
  event.kind = SessionEvent::Kind::failed;
  event.failure = std::move(why);
  events.push_back(std::move(event));
}

void CoordinatorSession::feed(ByteSpan input, std::vector<SessionEvent>& events) {
  while (!over_ && !input.empty()) {
    control::ChannelEvent event = channel_.feed(input);
    switch (event.kind) {
      case control::ChannelEvent::Kind::need_more:
        return;
      case control::ChannelEvent::Kind::handshake_done:
        on_response(event.data, events);
        break;
      case control::ChannelEvent::Kind::message:
        on_message(event.data, events);
        break;
      case control::ChannelEvent::Kind::request:
        fail("the coordinator sent a handshake request, as only an agent does", events);
        break;
      case control::ChannelEvent::Kind::error:
        fail(channel_failure(event.error, !registered_), events);
        break;
    }
  }
}

void CoordinatorSession::on_response(ByteSpan payload, std::vector<SessionEvent>& events) {
  auto parsed = control::parse_message(as_text(payload));
  auto* response = std::get_if<control::RegisterResponse>(&parsed);
  if (response == nullptr) {
    if (auto* error = std::get_if<control::ParseError>(&parsed))
      return fail("the coordinator's register answer is malformed: " + error->describe(), events);
    return fail("the coordinator answered the register request with another message", events);
  }
  SessionEvent event;
  event.response = std::move(*response);
  if (event.response.ok) {
    registered_ = true;
    event.kind = SessionEvent::Kind::registered;
  } else {
    over_ = true;
    failure_ = "refused: " + std::string(control::to_string(event.response.error_code));
    event.kind = SessionEvent::Kind::refused;
  }
  events.push_back(std::move(event));
}

void CoordinatorSession::on_message(ByteSpan plaintext, std::vector<SessionEvent>& events) {
  auto parsed = control::parse_message(as_text(plaintext));
  if (auto* error = std::get_if<control::ParseError>(&parsed))
    return fail("malformed message from the coordinator: " + error->describe(), events);

  SessionEvent event;
  bool ok = std::visit(
      [&](auto&& message) -> bool {
        using T = std::decay_t<decltype(message)>;
        if constexpr (std::is_same_v<T, control::PeerMap>) {
          map_ = std::move(message);
          control::sort_by_node_key(map_.peers);
          has_map_ = true;
          event.kind = SessionEvent::Kind::peers_changed;
          return true;
        } else if constexpr (std::is_same_v<T, control::PeerDelta>) {
          if (!has_map_) {
            fail("the coordinator sent a peer delta before any full map", events);
            return false;
          }
          if (!control::apply_delta(map_, message)) {
            fail("peer delta " + std::to_string(message.version) + " does not fit map version " +
                     std::to_string(map_.version) + ": reconnecting for a full map",
                 events);
            return false;
          }
          event.kind = SessionEvent::Kind::peers_changed;
          return true;
        } else if constexpr (std::is_same_v<T, control::RelayMap>) {
          event.kind = SessionEvent::Kind::relay_map;
          event.relays = std::move(message);
          return true;
        } else if constexpr (std::is_same_v<T, control::Pong>) {
          event.kind = SessionEvent::Kind::pong;
          return true;
        } else if constexpr (std::is_same_v<T, control::ErrorMessage>) {
          over_ = true;
          failure_ = "the coordinator ended the session: " + std::string(control::to_string(message.code));
          event.kind = SessionEvent::Kind::coordinator_error;
          event.error = std::move(message);
          return true;
        } else if constexpr (std::is_same_v<T, control::ParseError>) {
          return false;  // handled above
        } else {
          fail("the coordinator sent a message only an agent sends", events);
          return false;
        }
      },
      parsed);
  if (ok) events.push_back(std::move(event));
}

std::optional<Bytes> CoordinatorSession::seal(const control::Message& message) {
  if (over_ || !channel_.is_open()) return std::nullopt;
  const std::string text = control::encode(message);
  Bytes frame;
  if (channel_.seal(ByteSpan(reinterpret_cast<const std::uint8_t*>(text.data()), text.size()), frame) !=
      control::ChannelError::ok) {
    over_ = true;
    failure_ = "the control channel cannot send any more";
    return std::nullopt;
  }
  return frame;
}

}  // namespace knit::agent
