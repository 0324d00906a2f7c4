#include "control/client_session.hpp"

#include <sodium.h>

#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

#include "control/peer_map.hpp"

namespace knit::control {

namespace {

std::string_view as_text(ByteSpan bytes) {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

ByteSpan as_bytes(std::string_view text) {
  return ByteSpan(reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
}

std::string channel_failure(ChannelError error, bool handshake) {
  if (handshake && error == ChannelError::decrypt_failed)
    return "the coordinator could not prove it holds the key in the join token (wrong token, or "
           "something else answers at that address)";
  return std::string("the control channel failed: ") + std::string(to_string(error));
}

}  // namespace

ClientSession::ClientSession(const wg::PrivateKey& own_key, const wg::PublicKey& coordinator_key,
                             std::string_view prologue)
    : channel_(Channel::initiator(own_key, coordinator_key, kMaxFrameSize, prologue)) {}

std::optional<Bytes> ClientSession::start(Random& rng, const Message& hello) {
  relay_hello_ = std::holds_alternative<RelayRegister>(hello);
  std::string text = encode(hello);
  Bytes frame;
  const auto error = channel_.start(rng, as_bytes(text), frame);
  // The payload may carry a join token: leave no copy of it behind.
  sodium_memzero(text.data(), text.size());
  if (error != ChannelError::ok) {
    over_ = true;
    failure_ = error == ChannelError::bad_key
                   ? "the coordinator key in the join token is not usable: create a new token"
                   : channel_failure(error, true);
    return std::nullopt;
  }
  return frame;
}

void ClientSession::fail(std::string why, std::vector<ClientEvent>& events) {
  over_ = true;
  failure_ = why;
  ClientEvent event;
  event.kind = ClientEvent::Kind::failed;
  event.failure = std::move(why);
  events.push_back(std::move(event));
}

void ClientSession::feed(ByteSpan input, std::vector<ClientEvent>& events) {
  while (!over_ && !input.empty()) {
    ChannelEvent event = channel_.feed(input);
    switch (event.kind) {
      case ChannelEvent::Kind::need_more:
        return;
      case ChannelEvent::Kind::handshake_done:
        on_answer(event.data, events);
        break;
      case ChannelEvent::Kind::message:
        on_message(event.data, events);
        break;
      case ChannelEvent::Kind::request:
        fail("the coordinator sent a handshake request, as only a client does", events);
        break;
      case ChannelEvent::Kind::error:
        fail(channel_failure(event.error, !answered_), events);
        break;
    }
  }
}

void ClientSession::on_answer(ByteSpan payload, std::vector<ClientEvent>& events) {
  auto parsed = parse_message(as_text(payload));
  if (auto* error = std::get_if<ParseError>(&parsed))
    return fail("the coordinator's register answer is malformed: " + error->describe(), events);
  // The answer of the hello's kind: ok opens the session, a refusal ends it.
  std::optional<bool> ok;
  std::optional<ErrorCode> code;
  if (auto* agent = std::get_if<RegisterResponse>(&parsed); agent && !relay_hello_) {
    ok = agent->ok;
    code = agent->error_code;
  } else if (auto* relay = std::get_if<RelayRegisterResponse>(&parsed); relay && relay_hello_) {
    ok = relay->ok;
    code = relay->error_code;
  }
  if (!ok) return fail("the coordinator answered the register request with another message", events);
  answered_ = true;
  if (!*ok) {
    over_ = true;
    failure_ = "refused: " + std::string(to_string(*code));
  }
  ClientEvent event;
  event.kind = ClientEvent::Kind::answered;
  event.answer = *to_message(std::move(parsed));
  events.push_back(std::move(event));
}

void ClientSession::on_message(ByteSpan plaintext, std::vector<ClientEvent>& events) {
  auto parsed = parse_message(as_text(plaintext));
  if (auto* error = std::get_if<ParseError>(&parsed))
    return fail("malformed message from the coordinator: " + error->describe(), events);

  ClientEvent event;
  bool ok = std::visit(
      [&](auto&& message) -> bool {
        using T = std::decay_t<decltype(message)>;
        if constexpr (std::is_same_v<T, PeerMapPage>) {
          bool done = false;
          on_page(message, events, event, done);
          return done;
        } else if constexpr (std::is_same_v<T, PeerDelta>) {
          if (!has_map_ || paging_) {
            fail("the coordinator sent a peer delta before a whole map", events);
            return false;
          }
          if (!table_.apply(message)) {
            fail("peer delta " + std::to_string(message.version) + " does not fit map version " +
                     std::to_string(table_.map().version) + ": reconnecting for a full map",
                 events);
            return false;
          }
          event.kind = ClientEvent::Kind::peers_changed;
          event.delta = std::move(message);
          return true;
        } else if constexpr (std::is_same_v<T, RelayMap>) {
          event.kind = ClientEvent::Kind::relay_map;
          event.relays = std::move(message);
          return true;
        } else if constexpr (std::is_same_v<T, DnsConfig>) {
          event.kind = ClientEvent::Kind::dns_config;
          event.dns = std::move(message);
          return true;
        } else if constexpr (std::is_same_v<T, PolicyRules>) {
          event.kind = ClientEvent::Kind::policy_rules;
          event.policy = std::move(message);
          return true;
        } else if constexpr (std::is_same_v<T, SelfUpdate>) {
          event.kind = ClientEvent::Kind::self_update;
          event.self = std::move(message.node);
          return true;
        } else if constexpr (std::is_same_v<T, Pong>) {
          event.kind = ClientEvent::Kind::pong;
          return true;
        } else if constexpr (std::is_same_v<T, ErrorMessage>) {
          over_ = true;
          failure_ = "the coordinator ended the session: " + std::string(to_string(message.code));
          event.kind = ClientEvent::Kind::coordinator_error;
          event.error = std::move(message);
          return true;
        } else if constexpr (std::is_same_v<T, ParseError>) {
          return false;  // handled above
        } else {
          fail("the coordinator sent a message only a client sends", events);
          return false;
        }
      },
      parsed);
  if (ok) events.push_back(std::move(event));
}

// Pages come in order, all of one version and count; the map they make replaces the current
// one only once the last is in. `ok` is set when that happened (an event to report).
void ClientSession::on_page(PeerMapPage& page, std::vector<ClientEvent>& events,
                            ClientEvent& event, bool& ok) {
  ok = false;
  if (page.index == 0) {
    paging_ = true;
    next_page_ = 0;
    page_count_ = page.count;
    incoming_ = PeerMap{page.version, {}};
  }
  if (!paging_ || page.index != next_page_ || page.count != page_count_ ||
      page.version != incoming_.version)
    return fail("the coordinator sent peer-map pages out of order", events);
  if (incoming_.peers.size() + page.peers.size() > kMaxPeers)
    return fail("the coordinator's peer map is over " + std::to_string(kMaxPeers) + " peers",
                events);
  incoming_.peers.insert(incoming_.peers.end(), std::make_move_iterator(page.peers.begin()),
                         std::make_move_iterator(page.peers.end()));
  if (++next_page_ < page_count_) return;
  paging_ = false;
  if (!table_.reset(std::move(incoming_)))
    return fail("the coordinator's peer map lists a node key twice", events);
  incoming_ = {};
  has_map_ = true;
  event.kind = ClientEvent::Kind::peers_changed;
  ok = true;
}

std::optional<Bytes> ClientSession::seal(const Message& message) {
  if (over_ || !channel_.is_open()) return std::nullopt;
  const std::string text = encode(message);
  Bytes frame;
  if (channel_.seal(as_bytes(text), frame) != ChannelError::ok) {
    over_ = true;
    failure_ = "the control channel cannot send any more";
    return std::nullopt;
  }
  return frame;
}

}  // namespace knit::control
