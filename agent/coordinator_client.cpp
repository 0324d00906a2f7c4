#include "agent/coordinator_client.hpp"

#include <sodium.h>

#include <algorithm>
#include <deque>

#include "agent/coordinator_session.hpp"
#include "base/log.hpp"

namespace knit::agent {

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

}  // namespace

std::string_view to_string(CoordinatorClient::State state) {
  switch (state) {
    case CoordinatorClient::State::stopped: return "stopped";
    case CoordinatorClient::State::connecting: return "connecting";
    case CoordinatorClient::State::connected: return "connected";
    case CoordinatorClient::State::waiting: return "waiting";
  }
  return "stopped";
}

// ---------------------------------------------------------------- the client

// Everything the pending handlers touch, kept alive by them. A generation number tells a
// handler whether the connection it was started for is still the current one.
class CoordinatorClient::Core : public std::enable_shared_from_this<Core> {
 public:
  Core(asio::io_context& io, const wg::PrivateKey& node_key, Options options, Listener& listener,
       Random& rng)
      : node_key_(node_key),
        options_(std::move(options)),
        listener_(&listener),
        rng_(rng),
        backoff_(rng, options_.backoff),
        resolver_(io),
        socket_(io),
        deadline_(io),
        ping_timer_(io),
        retry_timer_(io),
        read_buffer_(kReadChunk) {}

  ~Core() { forget_token(); }

  void start();
  void stop();
  void set_endpoints(std::vector<Endpoint> endpoints);
  void set_nat_report(const control::NatReport& report);

  State state() const { return state_; }
  const std::string& last_error() const { return last_error_; }
  std::string address() const {
    return state_ == State::connected ? options_.addresses[index_].to_string() : std::string();
  }

 private:
  void begin_round();
  void try_address();
  void on_resolved(std::uint64_t gen, std::error_code ec, const asio::ip::tcp::resolver::results_type& results);
  void on_connected(std::uint64_t gen, std::error_code ec);
  void address_failed(const std::string& why);
  void round_failed();
  void session_lost(const std::string& why);
  void schedule_retry(Duration delay);
  void close_connection();

  void send(Bytes frame);
  void write_next();
  void read_next();
  void on_read(std::uint64_t gen, std::error_code ec, std::size_t n);
  void handle(SessionEvent& event);
  void on_registered(const control::RegisterResponse& response);
  void arm_deadline(Duration after);
  void on_deadline(std::uint64_t gen);
  void arm_ping();
  // The failure text for an I/O error on the current connection.
  std::string io_failure(std::error_code ec) const;
  bool current(std::uint64_t gen) const { return !stopped_ && gen == generation_; }
  std::string here() const { return options_.addresses[index_].to_string(); }
  void forget_token() {
    if (options_.token) sodium_memzero(options_.token->data(), options_.token->size());
    options_.token.reset();
  }

  wg::PrivateKey node_key_;
  Options options_;
  Listener* listener_;  // null once stopped
  Random& rng_;
  ReconnectBackoff backoff_;
  asio::ip::tcp::resolver resolver_;
  asio::ip::tcp::socket socket_;
  asio::steady_timer deadline_;  // resolve + connect, then the handshake, then liveness
  asio::steady_timer ping_timer_;
  asio::steady_timer retry_timer_;

  State state_ = State::stopped;
  bool stopped_ = true;
  std::uint64_t generation_ = 0;
  std::size_t index_ = 0;  // the address being tried or in use
  std::vector<std::string> round_errors_;
  std::string last_error_;
  bool timed_out_ = false;

  std::optional<CoordinatorSession> session_;
  std::vector<SessionEvent> events_;
  Bytes read_buffer_;
  std::deque<Bytes> output_;
  bool writing_ = false;
  Instant last_received_{};
  std::uint64_t ping_seq_ = 0;
  std::vector<Endpoint> sent_endpoints_;
  std::optional<control::NatReport> nat_report_;
  std::optional<control::NatReport> sent_nat_report_;
};

void CoordinatorClient::Core::start() {
  if (!stopped_) return;
  if (options_.addresses.empty()) {
    last_error_ = "no coordinator address";
    return;
  }
  stopped_ = false;
  begin_round();
}

void CoordinatorClient::Core::stop() {
  if (stopped_) return;
  stopped_ = true;
  listener_ = nullptr;
  ++generation_;
  close_connection();
  retry_timer_.cancel();
  state_ = State::stopped;
  forget_token();
}

void CoordinatorClient::Core::close_connection() {
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

void CoordinatorClient::Core::set_endpoints(std::vector<Endpoint> endpoints) {
  options_.endpoints = std::move(endpoints);
  if (state_ != State::connected || options_.endpoints == sent_endpoints_) return;
  sent_endpoints_ = options_.endpoints;
  if (auto frame = session_->seal(control::EndpointUpdate{sent_endpoints_})) send(std::move(*frame));
}

void CoordinatorClient::Core::set_nat_report(const control::NatReport& report) {
  nat_report_ = report;
  if (state_ != State::connected || nat_report_ == sent_nat_report_) return;
  sent_nat_report_ = nat_report_;
  if (auto frame = session_->seal(*nat_report_)) send(std::move(*frame));
}

void CoordinatorClient::Core::begin_round() {
  index_ = 0;
  round_errors_.clear();
  try_address();
}

void CoordinatorClient::Core::try_address() {
  if (index_ >= options_.addresses.size()) return round_failed();
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

void CoordinatorClient::Core::on_resolved(std::uint64_t gen, std::error_code ec,
                                          const asio::ip::tcp::resolver::results_type& results) {
  if (!current(gen)) return;
  if (ec) return address_failed(timed_out_ ? "timed out" : lower_first(ec.message()));
  asio::async_connect(socket_, results,
                      [self = shared_from_this(), gen](std::error_code error, const asio::ip::tcp::endpoint&) {
                        self->on_connected(gen, error);
                      });
}

void CoordinatorClient::Core::on_connected(std::uint64_t gen, std::error_code ec) {
  if (!current(gen)) return;
  if (ec) return address_failed(timed_out_ ? "timed out" : lower_first(ec.message()));
  std::error_code ignored;
  socket_.set_option(asio::ip::tcp::no_delay(true), ignored);

  control::RegisterRequest request;
  request.token = options_.token;
  request.disco_key = options_.disco_key;
  request.hostname = options_.hostname;
  request.os = options_.os;
  request.endpoints = options_.endpoints;
  request.version = options_.version;
  session_.emplace(node_key_, options_.coordinator_key);
  auto frame = session_->start(rng_, request);
  if (request.token) sodium_memzero(request.token->data(), request.token->size());
  if (!frame) return address_failed(session_->failure());
  sent_endpoints_ = options_.endpoints;
  arm_deadline(options_.handshake_timeout);
  send(std::move(*frame));
  read_next();
}

void CoordinatorClient::Core::address_failed(const std::string& why) {
  round_errors_.push_back("cannot reach the coordinator at " + here() + ": " + why);
  log(LogLevel::debug, "knitd", round_errors_.back());
  ++index_;
  try_address();
}

void CoordinatorClient::Core::round_failed() {
  close_connection();
  ++generation_;
  std::string error;
  for (const auto& line : round_errors_) error += (error.empty() ? "" : "; ") + line;
  last_error_ = error;
  const Duration delay = backoff_.next_delay(Clock::now());
  schedule_retry(delay);
  if (listener_ != nullptr) listener_->on_unreachable(error, delay);
}

void CoordinatorClient::Core::session_lost(const std::string& why) {
  close_connection();
  ++generation_;
  last_error_ = why;
  backoff_.on_session_lost(Clock::now());
  schedule_retry(backoff_.next_delay(Clock::now()));
  if (listener_ != nullptr) listener_->on_disconnected(why);
}

void CoordinatorClient::Core::schedule_retry(Duration delay) {
  if (stopped_) return;
  state_ = State::waiting;
  const std::uint64_t gen = generation_;
  retry_timer_.expires_after(delay);
  retry_timer_.async_wait([self = shared_from_this(), gen](std::error_code ec) {
    if (ec == asio::error::operation_aborted || !self->current(gen)) return;
    self->begin_round();
  });
}

// ---------------------------------------------------------------- the connection

std::string CoordinatorClient::Core::io_failure(std::error_code ec) const {
  if (ec == asio::error::eof) return "the coordinator closed the connection";
  return "the connection to the coordinator failed: " + lower_first(ec.message());
}

void CoordinatorClient::Core::send(Bytes frame) {
  output_.push_back(std::move(frame));
  if (!writing_) write_next();
}

void CoordinatorClient::Core::write_next() {
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
                        if (self->session_ && self->session_->registered()) return self->session_lost(why);
                        return self->address_failed(why);
                      }
                      self->output_.pop_front();
                      self->write_next();
                    });
}

void CoordinatorClient::Core::read_next() {
  const std::uint64_t gen = generation_;
  socket_.async_read_some(asio::buffer(read_buffer_),
                          [self = shared_from_this(), gen](std::error_code ec, std::size_t n) {
                            self->on_read(gen, ec, n);
                          });
}

void CoordinatorClient::Core::on_read(std::uint64_t gen, std::error_code ec, std::size_t n) {
  if (!current(gen)) return;
  const bool registered = session_ && session_->registered();
  if (ec) {
    std::string why = timed_out_ ? "timed out" : io_failure(ec);
    if (!registered) {
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
  for (SessionEvent& event : events_) {
    handle(event);
    if (!current(gen)) return;  // the event ended the connection, or a listener stopped us
  }
  read_next();
}

void CoordinatorClient::Core::handle(SessionEvent& event) {
  using Kind = SessionEvent::Kind;
  switch (event.kind) {
    case Kind::registered:
      return on_registered(event.response);
    case Kind::refused: {
      const bool retrying = event.response.error_code == control::ErrorCode::internal;
      last_error_ = control::human_message(event.response.error_code);
      close_connection();
      ++generation_;
      if (retrying) {
        schedule_retry(backoff_.next_delay(Clock::now()));
      } else {
        stopped_ = true;
        state_ = State::stopped;
      }
      Listener* listener = listener_;
      if (!retrying) listener_ = nullptr;
      if (listener != nullptr) listener->on_refused(event.response, retrying);
      return;
    }
    case Kind::peers_changed:
      if (listener_ != nullptr) listener_->on_peers(session_->peer_map());
      return;
    case Kind::relay_map:
      if (listener_ != nullptr) listener_->on_relay_map(event.relays);
      return;
    case Kind::pong:
      return;
    case Kind::coordinator_error:
      return session_lost("the coordinator ended the session (" +
                          std::string(control::to_string(event.error.code)) +
                          (event.error.message.empty() ? "" : ": " + event.error.message) + ")");
    case Kind::failed:
      if (!session_->registered()) return address_failed(event.failure);
      return session_lost(event.failure);
  }
}

void CoordinatorClient::Core::on_registered(const control::RegisterResponse& response) {
  state_ = State::connected;
  last_error_.clear();
  forget_token();  // from now on the node key is known: rejoins go without it
  backoff_.on_session();
  arm_deadline(options_.dead_after);
  arm_ping();
  log(LogLevel::info, "knitd", "connected to the coordinator at ", here(), " as ", response.node.name);
  if (listener_ != nullptr) listener_->on_registered(response);
  // Endpoints that changed during the handshake.
  if (state_ == State::connected && options_.endpoints != sent_endpoints_) set_endpoints(options_.endpoints);
  // A new session has not heard our NAT report yet.
  sent_nat_report_.reset();
  if (state_ == State::connected && nat_report_) set_nat_report(*nat_report_);
}

void CoordinatorClient::Core::arm_deadline(Duration after) {
  const std::uint64_t gen = generation_;
  deadline_.expires_after(after);
  deadline_.async_wait([self = shared_from_this(), gen](std::error_code ec) {
    if (ec == asio::error::operation_aborted || !self->current(gen)) return;
    self->on_deadline(gen);
  });
}

void CoordinatorClient::Core::on_deadline(std::uint64_t gen) {
  if (state_ == State::connected) {
    // Liveness: re-arm for whatever is left of dead_after since the last message.
    const Duration quiet = Clock::now() - last_received_;
    if (quiet < options_.dead_after) return arm_deadline(options_.dead_after - quiet);
    return session_lost("no message from the coordinator for " + seconds_text(options_.dead_after));
  }
  // Resolving, connecting or handshaking for too long: cancel, and let the handler say so.
  (void)gen;
  timed_out_ = true;
  std::error_code ignored;
  resolver_.cancel();
  socket_.close(ignored);
}

void CoordinatorClient::Core::arm_ping() {
  const std::uint64_t gen = generation_;
  ping_timer_.expires_after(options_.ping_interval);
  ping_timer_.async_wait([self = shared_from_this(), gen](std::error_code ec) {
    if (ec == asio::error::operation_aborted || !self->current(gen) || !self->session_) return;
    if (auto frame = self->session_->seal(control::Ping{++self->ping_seq_})) self->send(std::move(*frame));
    self->arm_ping();
  });
}

// ---------------------------------------------------------------- the facade

CoordinatorClient::CoordinatorClient(asio::io_context& io, const wg::PrivateKey& node_key,
                                     Options options, Listener& listener, Random& rng)
    : core_(std::make_shared<Core>(io, node_key, std::move(options), listener, rng)) {}

CoordinatorClient::~CoordinatorClient() { stop(); }

void CoordinatorClient::start() { core_->start(); }
void CoordinatorClient::stop() { core_->stop(); }
void CoordinatorClient::set_endpoints(std::vector<Endpoint> endpoints) {
  core_->set_endpoints(std::move(endpoints));
}

void CoordinatorClient::set_nat_report(const control::NatReport& report) { core_->set_nat_report(report); }
CoordinatorClient::State CoordinatorClient::state() const { return core_->state(); }
std::string CoordinatorClient::last_error() const { return core_->last_error(); }
std::string CoordinatorClient::address() const { return core_->address(); }

}  // namespace knit::agent
