#include "net/coordinator_connection.hpp"

#include "net/underlay_connect.hpp"

#include <sodium.h>

#include <deque>
#include <optional>
#include <variant>

#include "base/log.hpp"
#include "control/client_session.hpp"

namespace knit::net {

namespace {

constexpr std::size_t kReadChunk = 64 * 1024;

std::string lower_first(std::string text) {
  if (!text.empty() && text[0] >= 'A' && text[0] <= 'Z') text[0] = static_cast<char>(text[0] - 'A' + 'a');
  return text;
}

std::string seconds_text(Duration d) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(d).count();
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + " s";
  return std::to_string(ms / 1000) + "." + std::to_string((ms % 1000) / 100) + " s";
}

// A hello may carry a join token: leave no copy of it behind.
void wipe_token(control::Message& message) {
  std::visit(
      [](auto& m) {
        if constexpr (requires { m.token.has_value(); m.token->data(); }) {
          if (m.token) sodium_memzero(m.token->data(), m.token->size());
        }
      },
      message);
}

// What a register answer (either kind) says.
struct Verdict {
  bool ok = false;
  control::ErrorCode code = control::ErrorCode::internal;
  std::string detail;
};

Verdict verdict_of(const control::Message& answer) {
  Verdict verdict;
  std::visit(
      [&](const auto& m) {
        if constexpr (requires { m.ok; m.error_code; m.error_message; }) {
          verdict = {m.ok, m.error_code, m.error_message};
        }
      },
      answer);
  return verdict;
}

}  // namespace

std::string_view to_string(CoordinatorConnection::State state) {
  switch (state) {
    case CoordinatorConnection::State::stopped: return "stopped";
    case CoordinatorConnection::State::connecting: return "connecting";
    case CoordinatorConnection::State::connected: return "connected";
    case CoordinatorConnection::State::waiting: return "waiting";
  }
  return "stopped";
}

// Everything the pending handlers touch, kept alive by them. A generation number tells a
// handler whether the connection it was started for is still the current one.
class CoordinatorConnection::Core : public std::enable_shared_from_this<Core> {
 public:
  Core(asio::io_context& io, const wg::PrivateKey& own_key, Options options,
       std::weak_ptr<Listener> listener, Random& rng)
      : own_key_(own_key),
        options_(std::move(options)),
        listener_(std::move(listener)),
        rng_(rng),
        backoff_(rng, options_.backoff),
        resolver_(io),
        socket_(io),
        deadline_(io),
        ping_timer_(io),
        retry_timer_(io),
        read_buffer_(kReadChunk) {}

  void start();
  void stop();
  bool send(const control::Message& message);
  State state() const { return state_; }
  const std::string& last_error() const { return last_error_; }
  std::string address() const { return state_ == State::connected ? here() : std::string(); }

 private:
  // ---- rounds over the addresses ----
  void begin_round(std::size_t first);
  void try_address();
  void on_resolved(std::uint64_t gen, std::error_code ec, const asio::ip::tcp::resolver::results_type& results);
  void on_connected(std::uint64_t gen, std::error_code ec);
  void address_failed(const std::string& why);
  void round_failed();
  void session_lost(const std::string& why);
  void refused(const control::Message& refusal, control::ErrorCode code, const std::string& detail);
  void schedule_retry(Duration delay);
  void close_connection();

  // ---- the session ----
  void write_frame(Bytes frame);
  void write_next();
  void read_next();
  void on_read(std::uint64_t gen, std::error_code ec, std::size_t n);
  void handle(control::ClientEvent& event);
  void on_answer(const control::Message& answer);
  void arm_deadline(Duration after);
  void on_deadline();
  void arm_ping();

  std::string io_failure(std::error_code ec) const;
  bool current(std::uint64_t gen) const { return !stopped_ && gen == generation_; }
  std::string here() const { return options_.addresses[index_].to_string(); }
  // Null once stopped (or when the owner has gone): no callback then.
  std::shared_ptr<Listener> listener() const { return stopped_ ? nullptr : listener_.lock(); }

  wg::PrivateKey own_key_;
  Options options_;
  std::weak_ptr<Listener> listener_;
  Random& rng_;
  control::ReconnectBackoff backoff_;
  asio::ip::tcp::resolver resolver_;
  asio::ip::tcp::socket socket_;
  asio::steady_timer deadline_;  // resolve + connect, then the handshake, then liveness
  asio::steady_timer ping_timer_;
  asio::steady_timer retry_timer_;

  State state_ = State::stopped;
  bool stopped_ = true;
  std::uint64_t generation_ = 0;
  std::size_t round_start_ = 0;  // where the current round began
  std::size_t tried_ = 0;        // addresses tried in it
  std::size_t index_ = 0;        // the address being tried or in use
  std::size_t next_start_ = 0;   // where the next round begins
  std::vector<std::string> round_errors_;
  std::string last_error_;
  bool timed_out_ = false;

  std::optional<control::ClientSession> session_;
  std::vector<control::ClientEvent> events_;
  Bytes read_buffer_;
  std::deque<Bytes> output_;
  bool writing_ = false;
  Instant last_received_{};
  Instant connected_at_{};
  std::uint64_t ping_seq_ = 0;
};

void CoordinatorConnection::Core::start() {
  if (!stopped_) return;
  if (options_.addresses.empty()) {
    last_error_ = "no coordinator address";
    return;
  }
  stopped_ = false;
  begin_round(next_start_);
}

void CoordinatorConnection::Core::stop() {
  if (stopped_) return;
  stopped_ = true;
  listener_.reset();
  ++generation_;
  close_connection();
  retry_timer_.cancel();
  state_ = State::stopped;
}

void CoordinatorConnection::Core::close_connection() {
  std::error_code ignored;
  resolver_.cancel();
  socket_.shutdown(asio::ip::tcp::socket::shutdown_both, ignored);
  socket_.close(ignored);
  deadline_.cancel();
  ping_timer_.cancel();
  session_.reset();
  output_.clear();
  writing_ = false;
}

bool CoordinatorConnection::Core::send(const control::Message& message) {
  if (state_ != State::connected || !session_) return false;
  auto frame = session_->seal(message);
  if (!frame) return false;
  write_frame(std::move(*frame));
  return true;
}

// ---------------------------------------------------------------- rounds

void CoordinatorConnection::Core::begin_round(std::size_t first) {
  round_start_ = first % options_.addresses.size();
  tried_ = 0;
  round_errors_.clear();
  try_address();
}

void CoordinatorConnection::Core::try_address() {
  if (tried_ >= options_.addresses.size()) return round_failed();
  index_ = (round_start_ + tried_) % options_.addresses.size();
  close_connection();
  const std::uint64_t gen = ++generation_;
  state_ = State::connecting;
  timed_out_ = false;
  arm_deadline(options_.connect_timeout);
  const control::HostPort& target = options_.addresses[index_];
  resolver_.async_resolve(
      target.host, std::to_string(target.port), asio::ip::resolver_base::numeric_service,
      [self = shared_from_this(), gen](std::error_code ec, asio::ip::tcp::resolver::results_type results) {
        self->on_resolved(gen, ec, results);
      });
}

void CoordinatorConnection::Core::on_resolved(std::uint64_t gen, std::error_code ec,
                                              const asio::ip::tcp::resolver::results_type& results) {
  if (!current(gen)) return;
  if (ec) return address_failed(timed_out_ ? "timed out" : lower_first(ec.message()));
  // Marked: it stays on the underlay while an exit node carries the default route.
  async_connect_underlay(socket_, results,
                      [self = shared_from_this(), gen](std::error_code error, const asio::ip::tcp::endpoint&) {
                        self->on_connected(gen, error);
                      });
}

void CoordinatorConnection::Core::on_connected(std::uint64_t gen, std::error_code ec) {
  if (!current(gen)) return;
  if (ec) return address_failed(timed_out_ ? "timed out" : lower_first(ec.message()));
  std::error_code ignored;
  socket_.set_option(asio::ip::tcp::no_delay(true), ignored);

  auto owner = listener();
  if (!owner) return stop();  // the owner went away without stopping us
  control::Message hello = owner->hello();
  session_.emplace(own_key_, options_.coordinator_key, options_.prologue);
  auto frame = session_->start(rng_, hello);
  wipe_token(hello);
  if (!frame) return address_failed(session_->failure());
  arm_deadline(options_.handshake_timeout);
  write_frame(std::move(*frame));
  read_next();
}

void CoordinatorConnection::Core::address_failed(const std::string& why) {
  round_errors_.push_back("cannot reach the coordinator at " + here() + ": " + why);
  log(LogLevel::debug, options_.log_tag, round_errors_.back());
  ++tried_;
  try_address();
}

void CoordinatorConnection::Core::round_failed() {
  close_connection();
  ++generation_;
  std::string error;
  for (const auto& line : round_errors_) error += (error.empty() ? "" : "; ") + line;
  last_error_ = error;
  const Duration delay = backoff_.next_delay(Clock::now());
  schedule_retry(delay);
  if (auto owner = listener()) owner->on_unreachable(error, delay);
}

void CoordinatorConnection::Core::session_lost(const std::string& why) {
  const Instant now = Clock::now();
  const bool stable = now - connected_at_ >= options_.stable_after;
  close_connection();
  ++generation_;
  last_error_ = why;
  backoff_.on_session_lost(now);
  // Failover: the next round starts at the next address, this one last. Another address is
  // untried, so a session that had settled does not wait for it.
  next_start_ = index_ + 1;
  const bool elsewhere = options_.addresses.size() > 1;
  schedule_retry(elsewhere && stable ? Duration::zero() : backoff_.next_delay(now));
  if (auto owner = listener()) owner->on_disconnected(why);
}

void CoordinatorConnection::Core::refused(const control::Message& refusal, control::ErrorCode code,
                                          const std::string& detail) {
  const bool retrying = code == control::ErrorCode::internal;
  auto owner = listener();
  last_error_ = owner ? owner->refusal_text(code, detail) : control::human_message(code);
  close_connection();
  ++generation_;
  if (retrying) {
    next_start_ = index_ + 1;  // a coordinator in trouble: another may do better
    schedule_retry(backoff_.next_delay(Clock::now()));
  } else {
    stopped_ = true;
    state_ = State::stopped;
    listener_.reset();
  }
  if (owner) owner->on_refused(refusal, retrying);
}

void CoordinatorConnection::Core::schedule_retry(Duration delay) {
  if (stopped_) return;
  state_ = State::waiting;
  const std::uint64_t gen = generation_;
  retry_timer_.expires_after(delay);
  retry_timer_.async_wait([self = shared_from_this(), gen](std::error_code ec) {
    if (ec == asio::error::operation_aborted || !self->current(gen)) return;
    self->begin_round(self->next_start_);
  });
}

// ---------------------------------------------------------------- the session

std::string CoordinatorConnection::Core::io_failure(std::error_code ec) const {
  if (ec == asio::error::eof) return "the coordinator closed the connection";
  return "the connection to the coordinator failed: " + lower_first(ec.message());
}

void CoordinatorConnection::Core::write_frame(Bytes frame) {
  output_.push_back(std::move(frame));
  if (!writing_) write_next();
}

void CoordinatorConnection::Core::write_next() {
  if (output_.empty()) {
    writing_ = false;
    return;
  }
  writing_ = true;
  const std::uint64_t gen = generation_;
  asio::async_write(socket_, asio::buffer(output_.front()),
                    [self = shared_from_this(), gen](std::error_code ec, std::size_t) {
                      if (!self->current(gen)) return;
                      if (ec) {
                        const std::string why = self->io_failure(ec);
                        if (self->state_ == State::connected) return self->session_lost(why);
                        return self->address_failed(why);
                      }
                      self->output_.pop_front();
                      self->write_next();
                    });
}

void CoordinatorConnection::Core::read_next() {
  const std::uint64_t gen = generation_;
  socket_.async_read_some(asio::buffer(read_buffer_),
                          [self = shared_from_this(), gen](std::error_code ec, std::size_t n) {
                            self->on_read(gen, ec, n);
                          });
}

void CoordinatorConnection::Core::on_read(std::uint64_t gen, std::error_code ec, std::size_t n) {
  if (!current(gen)) return;
  if (ec) {
    std::string why = timed_out_ ? "timed out" : io_failure(ec);
    if (state_ != State::connected) {
      if (ec == asio::error::eof)
        why = "the coordinator closed the connection during the handshake (is the token for this coordinator?)";
      else if (timed_out_) why = "no answer to the handshake within " + seconds_text(options_.handshake_timeout);
      return address_failed(why);
    }
    return session_lost(why);
  }
  last_received_ = Clock::now();
  events_.clear();
  session_->feed(ByteSpan(read_buffer_.data(), n), events_);
  for (control::ClientEvent& event : events_) {
    handle(event);
    if (!current(gen)) return;  // the event ended the connection, or the owner stopped us
  }
  read_next();
}

void CoordinatorConnection::Core::handle(control::ClientEvent& event) {
  using Kind = control::ClientEvent::Kind;
  switch (event.kind) {
    case Kind::answered:
      return on_answer(event.answer);
    case Kind::peers_changed:
      if (auto owner = listener()) {
        if (event.delta)
          owner->on_peer_delta(session_->peer_map(), *event.delta);
        else
          owner->on_peers(session_->peer_map());
      }
      return;
    case Kind::relay_map:
      if (auto owner = listener()) owner->on_relay_map(std::move(event.relays));
      return;
    case Kind::dns_config:
      if (auto owner = listener()) owner->on_dns_config(std::move(event.dns));
      return;
    case Kind::policy_rules:
      if (auto owner = listener()) owner->on_policy_rules(std::move(event.policy));
      return;
    case Kind::self_update:
      if (auto owner = listener()) owner->on_self_update(event.self);
      return;
    case Kind::pong:
      return;
    case Kind::coordinator_error: {
      auto owner = listener();
      if (owner && owner->is_final(event.error))
        return refused(control::Message(event.error), event.error.code, event.error.message);
      return session_lost("the coordinator ended the session (" +
                          std::string(control::to_string(event.error.code)) +
                          (event.error.message.empty() ? "" : ": " + event.error.message) + ")");
    }
    case Kind::failed:
      if (state_ != State::connected) return address_failed(event.failure);
      return session_lost(event.failure);
  }
}

void CoordinatorConnection::Core::on_answer(const control::Message& answer) {
  const Verdict verdict = verdict_of(answer);
  if (!verdict.ok) return refused(answer, verdict.code, verdict.detail);
  state_ = State::connected;
  last_error_.clear();
  connected_at_ = Clock::now();
  next_start_ = index_;  // a later round starts where the last session was
  backoff_.on_session();
  arm_deadline(options_.dead_after);
  arm_ping();
  if (auto owner = listener()) owner->on_connected(answer);
}

void CoordinatorConnection::Core::arm_deadline(Duration after) {
  const std::uint64_t gen = generation_;
  deadline_.expires_after(after);
  deadline_.async_wait([self = shared_from_this(), gen](std::error_code ec) {
    if (ec == asio::error::operation_aborted || !self->current(gen)) return;
    self->on_deadline();
  });
}

void CoordinatorConnection::Core::on_deadline() {
  if (state_ == State::connected) {
    // Liveness: re-arm for whatever is left of dead_after since the last message.
    const Duration quiet = Clock::now() - last_received_;
    if (quiet < options_.dead_after) return arm_deadline(options_.dead_after - quiet);
    return session_lost("no message from the coordinator for " + seconds_text(options_.dead_after));
  }
  // Resolving, connecting or handshaking for too long: cancel, and let the handler say so.
  timed_out_ = true;
  std::error_code ignored;
  resolver_.cancel();
  socket_.close(ignored);
}

void CoordinatorConnection::Core::arm_ping() {
  const std::uint64_t gen = generation_;
  ping_timer_.expires_after(options_.ping_interval);
  ping_timer_.async_wait([self = shared_from_this(), gen](std::error_code ec) {
    if (ec == asio::error::operation_aborted || !self->current(gen) || !self->session_) return;
    if (auto frame = self->session_->seal(control::Ping{++self->ping_seq_})) self->write_frame(std::move(*frame));
    self->arm_ping();
  });
}

// ---------------------------------------------------------------- the facade

CoordinatorConnection::CoordinatorConnection(asio::io_context& io, const wg::PrivateKey& own_key,
                                             Options options, std::weak_ptr<Listener> listener,
                                             Random& rng)
    : core_(std::make_shared<Core>(io, own_key, std::move(options), std::move(listener), rng)) {}

CoordinatorConnection::~CoordinatorConnection() { stop(); }

void CoordinatorConnection::start() { core_->start(); }
void CoordinatorConnection::stop() { core_->stop(); }
bool CoordinatorConnection::send(const control::Message& message) { return core_->send(message); }
CoordinatorConnection::State CoordinatorConnection::state() const { return core_->state(); }
const std::string& CoordinatorConnection::last_error() const { return core_->last_error(); }
std::string CoordinatorConnection::address() const { return core_->address(); }

}  // namespace knit::net
