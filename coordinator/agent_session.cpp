#include "coordinator/agent_session.hpp"

#include <sodium.h>

#include <array>
#include <type_traits>
#include <utility>
#include <variant>

#include "base/log.hpp"

namespace knit::coordinator {

namespace {

using SteadyClock = std::chrono::steady_clock;

constexpr std::string_view kLog = "coordinator";
// Frames handed to one gathered write: fewer system calls when deltas pile up.
constexpr std::size_t kMaxFramesPerWrite = 64;
// And sealed bytes per write (at least one frame): what a slow reader holds sealed.
constexpr std::size_t kMaxBytesPerWrite = 256 * 1024;
constexpr std::size_t kReadChunk = 64 * 1024;
// A map's next page is sealed when less than this waits to be written.
constexpr std::size_t kMapPumpBytes = 128 * 1024;  // about two pages

ByteSpan bytes_of(std::string_view text) {
  return ByteSpan(reinterpret_cast<const std::uint8_t*>(text.data()), text.size());
}

std::string endpoint_text(const asio::ip::tcp::endpoint& endpoint) {
  const auto address = endpoint.address();
  std::string host = address.to_string();
  if (address.is_v6()) host = "[" + host + "]";
  return host + ":" + std::to_string(endpoint.port());
}

}  // namespace

std::string_view to_string(CloseReason reason) {
  switch (reason) {
    case CloseReason::peer_closed: return "closed by the agent";
    case CloseReason::io_error: return "connection error";
    case CloseReason::handshake_failed: return "handshake failed";
    case CloseReason::malformed: return "malformed message";
    case CloseReason::timeout: return "timed out";
    case CloseReason::overflow: return "send queue overflow";
    case CloseReason::refused: return "registration refused";
    case CloseReason::replaced: return "replaced by a new connection";
    case CloseReason::removed: return "node removed";
    case CloseReason::shutdown: return "server stopping";
    case CloseReason::evicted: return "evicted: too many unfinished handshakes";
  }
  return "closed";
}

AgentSession::AgentSession(Socket socket, const wg::PrivateKey& coordinator_key, Random& rng,
                           SessionHost& host, const SessionLimits& limits)
    : socket_(std::move(socket)),
      timer_(socket_.get_executor()),
      rng_(rng),
      host_(host),
      limits_(limits),
      channel_(control::Channel::responder(coordinator_key, control::kMaxAgentFrameSize)) {
  std::error_code ec;
  const auto endpoint = socket_.remote_endpoint(ec);
  remote_ = ec ? std::string("?") : endpoint_text(endpoint);
}

AgentSession::~AgentSession() = default;

void AgentSession::start() {
  std::error_code ignored;
  socket_.non_blocking(true, ignored);  // reads happen only once the socket is readable
  phase_started_ = SteadyClock::now();
  last_received_ = phase_started_;
  arm_timer();
  read();
}

// ---- input ----

// Waits for the socket to be readable and only then reads, into one buffer all sessions share:
// ten thousand idle agents hold no read buffer each.
void AgentSession::read() {
  socket_.async_wait(Socket::wait_read, [self = shared_from_this()](std::error_code ec) {
    self->on_readable(ec);
  });
}

void AgentSession::on_readable(std::error_code ec) {
  if (closing()) return;
  static std::array<std::uint8_t, kReadChunk> buffer;  // one event loop thread (server.hpp)
  std::size_t size = 0;
  if (!ec) {
    size = socket_.read_some(asio::buffer(buffer), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      read();
      return;
    }
  }
  if (ec) {
    if (ec == asio::error::operation_aborted) return;
    const bool by_peer = ec == asio::error::eof || ec == asio::error::connection_reset;
    close(by_peer ? CloseReason::peer_closed : CloseReason::io_error);
    return;
  }
  ByteSpan input(buffer.data(), size);
  while (!input.empty() && !closing()) {
    control::ChannelEvent event = channel_.feed(input);
    switch (event.kind) {
      case control::ChannelEvent::Kind::need_more:
        break;
      case control::ChannelEvent::Kind::request:
        on_request(event.data);
        break;
      case control::ChannelEvent::Kind::message:
        on_message(event.data);
        break;
      case control::ChannelEvent::Kind::handshake_done:  // only an initiator sees this
        on_channel_error(control::ChannelError::wrong_state);
        break;
      case control::ChannelEvent::Kind::error:
        on_channel_error(event.error);
        break;
    }
  }
  if (!closing()) read();
}

void AgentSession::on_request(Bytes& payload) {
  control::ParseResult parsed = control::parse_message(
      std::string_view(reinterpret_cast<const char*>(payload.data()), payload.size()));
  sodium_memzero(payload.data(), payload.size());  // it carries the join token
  node_key_ = channel_.remote_static();
  if (auto* request = std::get_if<control::RegisterRequest>(&parsed)) {
    const auto response = host_.on_register(*this, *request);
    if (request->token) sodium_memzero(request->token->data(), request->token->size());
    if (response) answer(control::encode(*response), response->ok);
    return;
  }
  if (auto* relay = std::get_if<control::RelayRegister>(&parsed)) {
    role_ = Role::relay;
    const control::RelayRegisterResponse response = host_.on_relay_register(*this, *relay);
    if (relay->token) sodium_memzero(relay->token->data(), relay->token->size());
    answer(control::encode(response), response.ok);
    return;
  }
  ++host_.session_counters().malformed;
  const auto* error = std::get_if<control::ParseError>(&parsed);
  log(LogLevel::info, kLog, remote_, ": message 1 is not a register request (",
      error ? error->describe() : std::string("another message type"), ")");
  close(CloseReason::malformed);
}

void AgentSession::answer_register(const control::RegisterResponse& response) {
  answer(control::encode(response), response.ok);
}

void AgentSession::answer(std::string_view text, bool ok) {
  // From here the server holds this session as the node's (or relay's): if answering fails,
  // closing tells it.
  registered_ = ok;
  if (closing()) return;
  Bytes frame;
  if (channel_.answer(rng_, bytes_of(text), frame) != control::ChannelError::ok) {
    ++host_.session_counters().handshake_failures;
    close(CloseReason::handshake_failed);
    return;
  }
  phase_ = Phase::open;
  last_received_ = SteadyClock::now();
  arm_timer();  // from the handshake's deadline to the idle one
  if (!enqueue(Outgoing{std::move(frame), nullptr})) return;
  if (!ok) {
    ++host_.session_counters().rejected;
    close_after({}, CloseReason::refused);
    return;
  }
  ++host_.session_counters().registered;
  host_.on_open(*this);
}

void AgentSession::on_message(const Bytes& plaintext) {
  last_received_ = SteadyClock::now();
  control::ParseResult parsed = control::parse_message(
      std::string_view(reinterpret_cast<const char*>(plaintext.data()), plaintext.size()));
  std::visit(
      [this](auto& message) {
        using T = std::decay_t<decltype(message)>;
        if constexpr (std::is_same_v<T, control::Ping>) {
          send(control::encode(control::Pong{message.seq}));
          return;
        } else if constexpr (std::is_same_v<T, control::EndpointUpdate>) {
          if (role_ == Role::agent) return host_.on_endpoints(*this, message);
        } else if constexpr (std::is_same_v<T, control::NatReport>) {
          if (role_ == Role::agent) return host_.on_nat_report(*this, message);
        } else if constexpr (std::is_same_v<T, control::Logout>) {
          if (role_ == Role::agent) return host_.on_logout(*this);
        } else if constexpr (std::is_same_v<T, control::RouteAdvertise>) {
          if (role_ == Role::agent) return host_.on_route_advertise(*this, message);
        }
        ++host_.session_counters().malformed;
        if constexpr (std::is_same_v<T, control::ParseError>)
          log(LogLevel::info, kLog, remote_, ": ", message.describe());
        else
          log(LogLevel::info, kLog, remote_, ": a message ",
              role_ == Role::relay ? "a relay" : "an agent", " may not send");
        close(CloseReason::malformed);
      },
      parsed);
}

void AgentSession::on_channel_error(control::ChannelError error) {
  if (phase_ == Phase::handshake) {
    ++host_.session_counters().handshake_failures;
    log(LogLevel::debug, kLog, remote_, ": handshake failed: ", control::to_string(error));
    close(CloseReason::handshake_failed);
  } else {
    ++host_.session_counters().malformed;
    log(LogLevel::info, kLog, remote_, ": channel error: ", control::to_string(error));
    close(CloseReason::malformed);
  }
}

// ---- output ----

bool AgentSession::send(std::string_view message) {
  if (closing() || phase_ != Phase::open) return false;
  return send(std::make_shared<const std::string>(message));
}

bool AgentSession::send(std::shared_ptr<const std::string> message) {
  if (closing() || phase_ != Phase::open || message == nullptr) return false;
  if (map_ == nullptr) return enqueue(Outgoing{{}, std::move(message)});
  queued_bytes_ += message->size();
  if (queued_bytes_ > limits_.send_queue_bytes) {
    ++host_.session_counters().queue_overflows;
    log(LogLevel::info, kLog, remote_, ": send queue over ", limits_.send_queue_bytes,
        " bytes while its map streams: disconnecting");
    close(CloseReason::overflow);
    return false;
  }
  held_.push_back(std::move(message));
  return true;
}

// Everything after the answer is sealed in write(), in queue order (the channel's nonces count
// up in the order frames are written).
bool AgentSession::enqueue_text(std::string message) {
  return enqueue(Outgoing{{}, std::make_shared<const std::string>(std::move(message))});
}

bool AgentSession::send_map(std::shared_ptr<const MapSnapshot> map,
                            std::shared_ptr<const std::vector<control::NodeKey>> only) {
  if (closing() || phase_ != Phase::open || map_ != nullptr || map == nullptr) return false;
  map_ = std::move(map);
  map_only_ = std::move(only);
  next_page_ = 0;
  pump_map();
  return !closing();
}

void AgentSession::pump_map() {
  if (pumping_) return;  // enqueue() may start a write that completes inline: no recursion
  pumping_ = true;
  while (map_ != nullptr && !closing() && queued_bytes_ < kMapPumpBytes) {
    if (next_page_ < map_->page_count()) {
      if (!enqueue_text(map_->page_for(next_page_++, node_key_, map_only_.get()))) break;
      continue;
    }
    map_.reset();
    map_only_.reset();
    while (!held_.empty() && !closing()) {
      std::shared_ptr<const std::string> message = std::move(held_.front());
      held_.pop_front();
      queued_bytes_ -= message->size();
      if (!enqueue(Outgoing{{}, std::move(message)})) break;
    }
  }
  pumping_ = false;
}

bool AgentSession::enqueue(Outgoing item) {
  queued_bytes_ += item.size();
  if (queued_bytes_ > limits_.send_queue_bytes) {
    ++host_.session_counters().queue_overflows;
    log(LogLevel::info, kLog, remote_, ": send queue over ", limits_.send_queue_bytes,
        " bytes: disconnecting");
    close(CloseReason::overflow);
    return false;
  }
  queue_.push_back(std::move(item));
  if (!write_pending_) write();
  return !closed_;
}

// Writes at once what the socket takes (it is non-blocking) and leaves only the rest to an
// asynchronous write: a sealed frame the kernel took is freed here, not when a completion
// handler runs after the publish that queued it. Otherwise a publish to 10,000 sessions would
// hold 10,000 sealed copies of the delta at once.
void AgentSession::write() {
  while (!queue_.empty() && !closed_ && !write_pending_) {
    writing_.clear();
    writing_bytes_ = 0;
    std::size_t total = 0;
    while (!queue_.empty() && writing_.size() < kMaxFramesPerWrite &&
           (writing_.empty() || total < kMaxBytesPerWrite)) {
      Outgoing item = std::move(queue_.front());
      queue_.pop_front();
      writing_bytes_ += item.size();
      if (item.text) {
        // Sealed now, in queue order: the channel's nonces follow the order frames are written.
        if (const auto error = channel_.seal(bytes_of(*item.text), item.frame);
            error != control::ChannelError::ok) {
          log(LogLevel::warn, kLog, remote_, ": cannot send a message: ", control::to_string(error));
          close(CloseReason::io_error);
          return;
        }
      }
      total += item.frame.size();
      writing_.push_back(std::move(item.frame));
    }
    std::vector<asio::const_buffer> buffers;
    buffers.reserve(writing_.size());
    for (const Bytes& frame : writing_) buffers.push_back(asio::buffer(frame));
    std::error_code ec;
    std::size_t written = socket_.write_some(buffers, ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      ec = {};
      written = 0;
    }
    if (ec) {
      close(CloseReason::io_error);
      return;
    }
    if (written < total) {
      // The rest when the socket drains.
      auto first = buffers.begin();
      while (written >= first->size()) {
        written -= first->size();
        ++first;
      }
      *first += written;
      write_pending_ = true;
      asio::async_write(socket_, std::vector<asio::const_buffer>(first, buffers.end()),
                        [self = shared_from_this()](std::error_code e, std::size_t) {
                          self->on_write(e);
                        });
      return;
    }
    queued_bytes_ -= writing_bytes_;
    writing_bytes_ = 0;
    writing_.clear();
    if (map_ != nullptr) pump_map();  // no-op when called from inside pump_map
  }
  if (flushing_ && !closed_ && !write_pending_ && queue_.empty()) finish();
}

void AgentSession::on_write(std::error_code ec) {
  write_pending_ = false;
  if (closed_) return;
  if (ec) {
    if (ec != asio::error::operation_aborted) close(CloseReason::io_error);
    return;
  }
  queued_bytes_ -= writing_bytes_;
  writing_bytes_ = 0;
  writing_.clear();
  if (map_ != nullptr) pump_map();
  if (closed_ || write_pending_) return;
  if (!queue_.empty()) {
    write();
  } else if (flushing_) {
    finish();
  }
}

// ---- closing ----

void AgentSession::close_after(std::string_view last, CloseReason reason) {
  if (closing()) return;
  // The last word goes out after what is queued, not after a map nobody needs any more.
  map_.reset();
  map_only_.reset();
  for (const auto& message : held_) queued_bytes_ -= message->size();
  held_.clear();
  if (!last.empty() && !send(last)) return;
  flushing_ = true;
  close_reason_ = reason;
  phase_ = Phase::flushing;
  phase_started_ = SteadyClock::now();
  if (!write_pending_ && queue_.empty()) {
    finish();
    return;
  }
  arm_timer();
}

void AgentSession::finish() {
  // Everything was written: a FIN after it, rather than a reset that could overtake it.
  std::error_code ignored;
  socket_.shutdown(Socket::shutdown_send, ignored);
  close(close_reason_);
}

void AgentSession::close(CloseReason reason) {
  if (closed_) return;
  closed_ = true;
  flushing_ = false;
  std::error_code ignored;
  socket_.close(ignored);
  timer_.cancel();
  queue_.clear();  // writing_ stays until the aborted write hands it back
  queued_bytes_ = 0;
  map_.reset();
  map_only_.reset();
  held_.clear();
  host_.on_closed(*this, reason);
}

// ---- timers ----

std::chrono::steady_clock::time_point AgentSession::deadline() const {
  switch (phase_) {
    case Phase::handshake: return phase_started_ + limits_.handshake_timeout;
    case Phase::open: return last_received_ + limits_.idle_timeout;
    case Phase::flushing: return phase_started_ + limits_.flush_timeout;
  }
  return phase_started_;
}

// One wait at a time: re-arming bumps the generation, so a wake-up already queued for an older
// deadline does nothing. Activity only moves last_received_; the wait finds out when it fires.
void AgentSession::arm_timer() {
  const std::uint64_t generation = ++timer_generation_;
  timer_.expires_at(deadline());
  timer_.async_wait([self = shared_from_this(), generation](std::error_code ec) {
    if (ec == asio::error::operation_aborted || self->closed_ ||
        generation != self->timer_generation_)
      return;
    self->on_timer();
  });
}

void AgentSession::on_timer() {
  if (SteadyClock::now() < deadline()) {
    arm_timer();
    return;
  }
  ++host_.session_counters().timeouts;
  log(LogLevel::info, kLog, remote_, ": ",
      phase_ == Phase::handshake ? "no handshake in time"
      : phase_ == Phase::open    ? "idle too long"
                                 : "could not flush in time",
      ": disconnecting");
  close(CloseReason::timeout);
}

}  // namespace knit::coordinator
