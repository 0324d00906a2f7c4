#include "relay/coordinator_link.hpp"

#include <sodium.h>

#include <algorithm>
#include <deque>
#include <stdexcept>

#include "base/log.hpp"
#include "control/client_session.hpp"
#include "control/host_port.hpp"
#include "control/token.hpp"
#include "relay/coordinator_link_state.hpp"
#include "wg/crypto.hpp"

namespace knit::relay {

namespace {

constexpr std::string_view kLog = "knit-relay";
constexpr std::size_t kReadChunk = 64 * 1024;

std::string lower_first(std::string text) {
  if (!text.empty() && text[0] >= 'A' && text[0] <= 'Z') text[0] = static_cast<char>(text[0] - 'A' + 'a');
  return text;
}

std::vector<wg::PublicKey> member_keys(const control::PeerMap& map) {
  std::vector<wg::PublicKey> keys;
  keys.reserve(map.peers.size());
  for (const auto& peer : map.peers) keys.push_back(peer.node_key);
  std::sort(keys.begin(), keys.end());
  return keys;
}

}  // namespace

std::string relay_refusal_text(control::ErrorCode code, const std::string& detail) {
  using control::ErrorCode;
  std::string text;
  switch (code) {
    case ErrorCode::token_invalid:
      text = "the coordinator does not accept this relay token: check that you copied the right "
             "one, made with `knit-coordinator token create --relay`";
      break;
    case ErrorCode::token_expired:
      text = "the relay token has expired: create a new one with `knit-coordinator token create "
             "--relay`";
      break;
    case ErrorCode::token_revoked:
      text = "the relay token has been revoked: create a new one with `knit-coordinator token "
             "create --relay`";
      break;
    case ErrorCode::token_used:
      text = "the relay token has already been used, and it was a one-use token: create a new one "
             "with `knit-coordinator token create --relay`";
      break;
    case ErrorCode::not_registered:
      text = "the coordinator does not know this relay (it was removed, or its state was reset): "
             "start knit-relay with a new relay token (`knit-coordinator token create --relay`)";
      break;
    default:
      text = control::human_message(code);
      break;
  }
  if (!detail.empty()) text += " (" + detail + ")";
  return text;
}

// Everything the pending handlers touch, kept alive by them. A generation number tells a
// handler whether the connection it was started for is still the current one.
class CoordinatorLink::Core : public std::enable_shared_from_this<Core> {
 public:
  Core(asio::io_context& io, Options options, MembershipListener& listener);
  ~Core() { forget_token(); }

  void start();
  void stop();
  const wg::PrivateKey& relay_key() const { return key_; }
  bool connected() const { return connected_; }
  const std::string& last_error() const { return last_error_; }

 private:
  void begin_round();
  void try_address();
  void on_connected(std::uint64_t gen, std::error_code ec);
  void address_failed(const std::string& why);
  void session_lost(const std::string& why);
  void refused(control::ErrorCode code, const std::string& detail);
  void schedule_retry(Duration delay);
  void close_connection();

  void send(Bytes frame);
  void write_next();
  void read_next();
  void on_read(std::uint64_t gen, std::error_code ec, std::size_t n);
  void handle(control::ClientEvent& event);
  void on_answer(const control::RelayRegisterResponse& response);
  void on_members(const control::PeerMap& map);
  void on_relays(std::vector<control::RelayInfo> relays);
  void save_cache();
  void arm_deadline(Duration after);
  void arm_ping();
  void report(bool up, const std::string& detail) {
    if (listener_ != nullptr) listener_->on_coordinator(up, detail);
  }
  bool current(std::uint64_t gen) const { return !stopped_ && gen == generation_; }
  std::string here() const { return coordinator_.addresses[index_].to_string(); }
  void forget_token() {
    if (options_.token) sodium_memzero(options_.token->data(), options_.token->size());
    options_.token.reset();
  }

  Options options_;
  MembershipListener* listener_;  // null once stopped
  SystemRandom rng_;
  LinkState state_;
  wg::PrivateKey key_;
  CoordinatorRecord coordinator_;
  bool have_coordinator_ = false;
  std::vector<control::HostPort> advertise_;
  control::ReconnectBackoff backoff_;
  asio::ip::tcp::resolver resolver_;
  asio::ip::tcp::socket socket_;
  asio::steady_timer deadline_;  // resolve + connect, then the handshake, then liveness
  asio::steady_timer ping_timer_;
  asio::steady_timer retry_timer_;

  bool stopped_ = true;
  bool connected_ = false;
  bool timed_out_ = false;
  std::uint64_t generation_ = 0;
  std::size_t index_ = 0;
  std::vector<std::string> round_errors_;
  std::string last_error_;

  std::optional<control::ClientSession> session_;
  std::vector<control::ClientEvent> events_;
  Bytes read_buffer_;
  std::deque<Bytes> output_;
  bool writing_ = false;
  Instant last_received_{};
  std::uint64_t ping_seq_ = 0;

  MembershipCache cache_;
  bool have_members_ = false;
};

CoordinatorLink::Core::Core(asio::io_context& io, Options options, MembershipListener& listener)
    : options_(std::move(options)),
      listener_(&listener),
      state_(options_.state_dir),
      backoff_(rng_, options_.backoff),
      resolver_(io),
      socket_(io),
      deadline_(io),
      ping_timer_(io),
      retry_timer_(io),
      read_buffer_(kReadChunk) {
  if (!control::is_valid_relay_name(options_.name))
    throw std::runtime_error("the relay name '" + options_.name +
                             "' is not a DNS label: use a-z, 0-9 and '-', at most 63 characters");
  if (options_.advertise.empty() || options_.advertise.size() > control::kMaxRelayAddresses)
    throw std::runtime_error("a relay needs 1 to " + std::to_string(control::kMaxRelayAddresses) +
                             " addresses agents can dial (HOST:PORT)");
  for (const auto& text : options_.advertise) {
    auto address = control::HostPort::parse(text);
    if (!address) throw std::runtime_error("'" + text + "' is not HOST:PORT");
    advertise_.push_back(*address);
  }
  if (options_.token) {
    control::JoinToken token;  // its secret wipes itself
    if (auto error = control::decode_token(*options_.token, token); error != control::TokenError::ok)
      throw std::runtime_error(control::describe(error));
    coordinator_ = CoordinatorRecord{token.addresses, token.coordinator_key};
    have_coordinator_ = true;
  }
  try {
    key_ = state_.load_or_create_key(rng_);
  } catch (const LinkStateError& error) {
    throw std::runtime_error(error.what());
  }
}

void CoordinatorLink::Core::start() {
  if (!stopped_) return;
  try {
    if (have_coordinator_) {
      state_.save_coordinator(coordinator_);  // a restart without --token finds it
    } else if (auto saved = state_.load_coordinator()) {
      coordinator_ = std::move(*saved);
      have_coordinator_ = true;
    } else {
      throw std::runtime_error(
          "this relay has not joined a mesh yet: start it with --token (a relay token from "
          "`knit-coordinator token create --relay`)");
    }
    if (auto cached = state_.load_membership()) {
      cache_ = std::move(*cached);
      have_members_ = true;
      log(LogLevel::info, kLog, "loaded the cached membership: ", cache_.members.size(),
          " members, ", cache_.relays.size(), " relays");
      listener_->on_relays(cache_.relays);
      listener_->on_members(cache_.members);
    }
  } catch (const LinkStateError& error) {
    throw std::runtime_error(error.what());
  }
  stopped_ = false;
  begin_round();
}

void CoordinatorLink::Core::stop() {
  if (stopped_) return;
  stopped_ = true;
  listener_ = nullptr;
  ++generation_;
  close_connection();
  retry_timer_.cancel();
  connected_ = false;
  forget_token();
}

void CoordinatorLink::Core::close_connection() {
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

// ---- connecting ----

void CoordinatorLink::Core::begin_round() {
  index_ = 0;
  round_errors_.clear();
  try_address();
}

void CoordinatorLink::Core::try_address() {
  if (index_ >= coordinator_.addresses.size()) {
    close_connection();
    ++generation_;
    std::string error;
    for (const auto& line : round_errors_) error += (error.empty() ? "" : "; ") + line;
    last_error_ = error;
    const Duration delay = backoff_.next_delay(Clock::now());
    schedule_retry(delay);
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(delay).count();
    report(false, error + " (retrying in " + std::to_string(ms) + " ms)");
    return;
  }
  close_connection();
  const std::uint64_t gen = ++generation_;
  timed_out_ = false;
  arm_deadline(options_.connect_timeout);
  const control::HostPort& target = coordinator_.addresses[index_];
  resolver_.async_resolve(
      target.host, std::to_string(target.port), asio::ip::resolver_base::numeric_service,
      [self = shared_from_this(), gen](std::error_code ec,
                                       asio::ip::tcp::resolver::results_type results) {
        if (!self->current(gen)) return;
        if (ec) return self->address_failed(self->timed_out_ ? "timed out" : lower_first(ec.message()));
        asio::async_connect(self->socket_, results,
                            [self, gen](std::error_code error, const asio::ip::tcp::endpoint&) {
                              self->on_connected(gen, error);
                            });
      });
}

void CoordinatorLink::Core::on_connected(std::uint64_t gen, std::error_code ec) {
  if (!current(gen)) return;
  if (ec) return address_failed(timed_out_ ? "timed out" : lower_first(ec.message()));
  std::error_code ignored;
  socket_.set_option(asio::ip::tcp::no_delay(true), ignored);

  control::RelayRegister hello;
  hello.token = options_.token;
  hello.name = options_.name;
  hello.addresses = advertise_;
  hello.stun_port = options_.stun_port;
  hello.version = options_.version;
  control::Message message(std::move(hello));
  session_.emplace(key_, coordinator_.coordinator_key);
  auto frame = session_->start(rng_, message);
  // The message holds a copy of the token: wipe it.
  if (auto& token = std::get<control::RelayRegister>(message).token)
    sodium_memzero(token->data(), token->size());
  if (!frame) return address_failed(session_->failure());
  arm_deadline(options_.handshake_timeout);
  send(std::move(*frame));
  read_next();
}

void CoordinatorLink::Core::address_failed(const std::string& why) {
  round_errors_.push_back("cannot reach the coordinator at " + here() + ": " + why);
  log(LogLevel::debug, kLog, round_errors_.back());
  ++index_;
  try_address();
}

void CoordinatorLink::Core::session_lost(const std::string& why) {
  close_connection();
  ++generation_;
  connected_ = false;
  last_error_ = why;
  log(LogLevel::warn, kLog, "lost the coordinator: ", why, "; admitting members from the cache");
  backoff_.on_session_lost(Clock::now());
  schedule_retry(backoff_.next_delay(Clock::now()));
  report(false, why);
}

void CoordinatorLink::Core::refused(control::ErrorCode code, const std::string& detail) {
  close_connection();
  ++generation_;
  connected_ = false;
  last_error_ = relay_refusal_text(code, detail);
  if (code == control::ErrorCode::internal) {
    schedule_retry(backoff_.next_delay(Clock::now()));
    report(false, last_error_);
    return;
  }
  log(LogLevel::error, kLog, last_error_);
  MembershipListener* listener = listener_;
  stopped_ = true;
  listener_ = nullptr;
  forget_token();
  if (code == control::ErrorCode::not_registered) {
    // No longer part of the mesh: the cached membership must not keep admitting anyone.
    state_.forget_membership();
    cache_ = {};
    have_members_ = false;
    if (listener != nullptr) {
      listener->on_relays({});
      listener->on_members({});
    }
  }
  if (listener != nullptr) listener->on_coordinator(false, last_error_);
}

void CoordinatorLink::Core::schedule_retry(Duration delay) {
  if (stopped_) return;
  const std::uint64_t gen = generation_;
  retry_timer_.expires_after(delay);
  retry_timer_.async_wait([self = shared_from_this(), gen](std::error_code ec) {
    if (ec == asio::error::operation_aborted || !self->current(gen)) return;
    self->begin_round();
  });
}

// ---- the connection ----

void CoordinatorLink::Core::send(Bytes frame) {
  output_.push_back(std::move(frame));
  if (!writing_) write_next();
}

void CoordinatorLink::Core::write_next() {
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
                        const std::string why = "the connection failed: " + lower_first(ec.message());
                        if (self->connected_) return self->session_lost(why);
                        return self->address_failed(why);
                      }
                      self->output_.pop_front();
                      self->write_next();
                    });
}

void CoordinatorLink::Core::read_next() {
  const std::uint64_t gen = generation_;
  socket_.async_read_some(asio::buffer(read_buffer_),
                          [self = shared_from_this(), gen](std::error_code ec, std::size_t n) {
                            self->on_read(gen, ec, n);
                          });
}

void CoordinatorLink::Core::on_read(std::uint64_t gen, std::error_code ec, std::size_t n) {
  if (!current(gen)) return;
  if (ec) {
    std::string why = ec == asio::error::eof ? "the coordinator closed the connection"
                                             : "the connection failed: " + lower_first(ec.message());
    if (!connected_) {
      if (timed_out_) why = "no answer to the handshake in time";
      else if (ec == asio::error::eof)
        why = "the coordinator closed the connection during the handshake (is the token for this "
              "coordinator?)";
      return address_failed(why);
    }
    return session_lost(why);
  }
  last_received_ = Clock::now();
  events_.clear();
  session_->feed(ByteSpan(read_buffer_.data(), n), events_);
  for (control::ClientEvent& event : events_) {
    handle(event);
    if (!current(gen)) return;  // the event ended the connection
  }
  read_next();
}

void CoordinatorLink::Core::handle(control::ClientEvent& event) {
  using Kind = control::ClientEvent::Kind;
  switch (event.kind) {
    case Kind::answered: {
      auto* response = std::get_if<control::RelayRegisterResponse>(&event.answer);
      if (response == nullptr)
        return address_failed("the coordinator answered with a node's register response");
      if (!response->ok) return refused(response->error_code, response->error_message);
      return on_answer(*response);
    }
    case Kind::peers_changed:
      return on_members(session_->peer_map());
    case Kind::relay_map:
      return on_relays(std::move(event.relays.relays));
    case Kind::pong:
      return;
    case Kind::coordinator_error:
      if (event.error.code == control::ErrorCode::not_registered)
        return refused(event.error.code, event.error.message);
      return session_lost("the coordinator ended the session (" +
                          std::string(control::to_string(event.error.code)) +
                          (event.error.message.empty() ? "" : ": " + event.error.message) + ")");
    case Kind::failed:
      if (!connected_) return address_failed(event.failure);
      return session_lost(event.failure);
  }
}

void CoordinatorLink::Core::on_answer(const control::RelayRegisterResponse& response) {
  connected_ = true;
  last_error_.clear();
  forget_token();  // from now on the relay key is known: reconnects go without it
  backoff_.on_session();
  arm_deadline(options_.dead_after);
  arm_ping();
  log(LogLevel::info, kLog, "connected to the coordinator at ", here(), " as relay ", response.name);
  report(true, "connected to the coordinator at " + here() + " as relay " + response.name);
}

// ---- membership ----

void CoordinatorLink::Core::on_members(const control::PeerMap& map) {
  std::vector<wg::PublicKey> keys = member_keys(map);
  if (have_members_ && keys == cache_.members) return;  // an endpoint or presence change
  cache_.members = std::move(keys);
  have_members_ = true;
  save_cache();
  if (listener_ != nullptr) listener_->on_members(cache_.members);
}

void CoordinatorLink::Core::on_relays(std::vector<control::RelayInfo> relays) {
  if (relays == cache_.relays) return;
  cache_.relays = std::move(relays);
  save_cache();
  if (listener_ != nullptr) listener_->on_relays(cache_.relays);
}

void CoordinatorLink::Core::save_cache() {
  try {
    state_.save_membership(cache_);
  } catch (const LinkStateError& error) {
    // The relay keeps working; only a restart while the coordinator is down would miss it.
    log(LogLevel::warn, kLog, "cannot cache the membership: ", error.what());
  }
}

// ---- timers ----

void CoordinatorLink::Core::arm_deadline(Duration after) {
  const std::uint64_t gen = generation_;
  deadline_.expires_after(after);
  deadline_.async_wait([self = shared_from_this(), gen](std::error_code ec) {
    if (ec == asio::error::operation_aborted || !self->current(gen)) return;
    if (self->connected_) {
      // Liveness: re-arm for whatever is left of dead_after since the last message.
      const Duration quiet = Clock::now() - self->last_received_;
      if (quiet < self->options_.dead_after) return self->arm_deadline(self->options_.dead_after - quiet);
      const auto s = std::chrono::duration_cast<std::chrono::seconds>(self->options_.dead_after);
      return self->session_lost("no message from the coordinator for " + std::to_string(s.count()) +
                                " s");
    }
    // Resolving, connecting or handshaking for too long: cancel, and let the handler say so.
    self->timed_out_ = true;
    std::error_code ignored;
    self->resolver_.cancel();
    self->socket_.close(ignored);
  });
}

void CoordinatorLink::Core::arm_ping() {
  const std::uint64_t gen = generation_;
  ping_timer_.expires_after(options_.ping_interval);
  ping_timer_.async_wait([self = shared_from_this(), gen](std::error_code ec) {
    if (ec == asio::error::operation_aborted || !self->current(gen) || !self->session_) return;
    if (auto frame = self->session_->seal(control::Ping{++self->ping_seq_})) self->send(std::move(*frame));
    self->arm_ping();
  });
}

// ---- the facade ----

CoordinatorLink::CoordinatorLink(asio::io_context& io, Options options, MembershipListener& listener)
    : core_(std::make_shared<Core>(io, std::move(options), listener)) {}

CoordinatorLink::~CoordinatorLink() { stop(); }

void CoordinatorLink::start() { core_->start(); }
void CoordinatorLink::stop() { core_->stop(); }
const wg::PrivateKey& CoordinatorLink::relay_key() const { return core_->relay_key(); }
bool CoordinatorLink::connected() const { return core_->connected(); }
std::string CoordinatorLink::last_error() const { return core_->last_error(); }

}  // namespace knit::relay
