#include "agent/coordinator_session.hpp"

#include <utility>
#include <variant>

namespace knit::agent {

CoordinatorSession::CoordinatorSession(const wg::PrivateKey& node_key,
                                       const wg::PublicKey& coordinator_key)
    : session_(node_key, coordinator_key) {}

std::optional<Bytes> CoordinatorSession::start(Random& rng, const control::RegisterRequest& request) {
  return session_.start(rng, control::Message(request));
}

void CoordinatorSession::feed(ByteSpan input, std::vector<SessionEvent>& events) {
  client_events_.clear();
  session_.feed(input, client_events_);
  for (control::ClientEvent& in : client_events_) {
    using In = control::ClientEvent::Kind;
    SessionEvent event;
    switch (in.kind) {
      case In::answered: {
        auto* response = std::get_if<control::RegisterResponse>(&in.answer);
        if (response == nullptr) {
          const std::string why = "the coordinator answered the register request with another message";
          session_.end(why);
          event.kind = SessionEvent::Kind::failed;
          event.failure = why;
          break;
        }
        event.response = std::move(*response);
        registered_ = event.response.ok;
        event.kind = registered_ ? SessionEvent::Kind::registered : SessionEvent::Kind::refused;
        break;
      }
      case In::peers_changed: event.kind = SessionEvent::Kind::peers_changed; break;
      case In::relay_map:
        event.kind = SessionEvent::Kind::relay_map;
        event.relays = std::move(in.relays);
        break;
      case In::pong: event.kind = SessionEvent::Kind::pong; break;
      case In::coordinator_error:
        event.kind = SessionEvent::Kind::coordinator_error;
        event.error = std::move(in.error);
        break;
      case In::failed:
        event.kind = SessionEvent::Kind::failed;
        event.failure = std::move(in.failure);
        break;
    }
    const bool wrong_answer = in.kind == In::answered && event.kind == SessionEvent::Kind::failed;
    events.push_back(std::move(event));
    // A wrong answer ends the session: what followed it in the same input is not looked at.
    if (wrong_answer) break;
  }
}

std::optional<Bytes> CoordinatorSession::seal(const control::Message& message) {
  return session_.seal(message);
}

}  // namespace knit::agent
