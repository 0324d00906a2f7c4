#include "relay/coordinator_link.hpp"

#include <sodium.h>

#include <algorithm>
#include <stdexcept>
#include <variant>

#include "base/log.hpp"
#include "control/host_port.hpp"
#include "control/token.hpp"
#include "net/coordinator_connection.hpp"
#include "relay/coordinator_link_state.hpp"

namespace knit::relay {

namespace {

constexpr std::string_view kLog = "knit-relay";

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

// The relay's side of the protocol; the connection does the I/O. Shared with the connection
// (which holds it weakly while it calls it).
class CoordinatorLink::Core : public net::CoordinatorConnection::Listener,
                              public std::enable_shared_from_this<Core> {
 public:
  Core(asio::io_context& io, Options options, MembershipListener& listener);
  ~Core() override { forget_token(); }

  void start();
  void stop();
  const wg::PrivateKey& relay_key() const { return key_; }
  bool connected() const {
    return connection_ && connection_->state() == net::CoordinatorConnection::State::connected;
  }
  std::string last_error() const { return connection_ ? connection_->last_error() : std::string(); }

 private:
  // net::CoordinatorConnection::Listener
  control::Message hello() override;
  void on_connected(const control::Message& answer) override;
  void on_refused(const control::Message& refusal, bool retrying) override;
  void on_peers(const control::PeerMap& map) override;
  void on_relay_map(control::RelayMap relays) override;
  void on_unreachable(const std::string& error, Duration retry_in) override;
  void on_disconnected(const std::string& reason) override;
  bool is_final(const control::ErrorMessage& error) const override {
    return error.code == control::ErrorCode::not_registered;
  }
  std::string refusal_text(control::ErrorCode code, const std::string& detail) const override {
    return relay_refusal_text(code, detail);
  }

  void save_cache();
  void report(bool up, const std::string& detail) {
    if (listener_ != nullptr) listener_->on_coordinator(up, detail);
  }
  void forget_token() {
    if (options_.token) sodium_memzero(options_.token->data(), options_.token->size());
    options_.token.reset();
  }

  asio::io_context& io_;
  Options options_;
  MembershipListener* listener_;  // null once stopped
  SystemRandom rng_;
  LinkState state_;
  wg::PrivateKey key_;
  CoordinatorRecord coordinator_;
  bool have_coordinator_ = false;
  std::vector<control::HostPort> advertise_;
  std::optional<net::CoordinatorConnection> connection_;
  MembershipCache cache_;
  bool have_members_ = false;
};

CoordinatorLink::Core::Core(asio::io_context& io, Options options, MembershipListener& listener)
    : io_(io), options_(std::move(options)), listener_(&listener), state_(options_.state_dir) {
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
  } catch (const StateDirError& error) {
    throw std::runtime_error(error.what());
  }
}

void CoordinatorLink::Core::start() {
  if (connection_ && connection_->state() != net::CoordinatorConnection::State::stopped) return;
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
      if (listener_ != nullptr) {
        listener_->on_relays(cache_.relays);
        listener_->on_members(cache_.members);
      }
    }
  } catch (const StateDirError& error) {
    throw std::runtime_error(error.what());
  }
  net::CoordinatorConnection::Options o;
  o.addresses = coordinator_.addresses;
  o.coordinator_key = coordinator_.coordinator_key;
  o.log_tag = std::string(kLog);
  static_cast<net::CoordinatorConnection::Timing&>(o) = options_;
  connection_.emplace(io_, key_, std::move(o), weak_from_this(), rng_);
  connection_->start();
}

void CoordinatorLink::Core::stop() {
  listener_ = nullptr;
  if (connection_) connection_->stop();
  forget_token();
}

// ---- the protocol ----

control::Message CoordinatorLink::Core::hello() {
  control::RelayRegister hello;
  hello.token = options_.token;  // the connection wipes this copy once sent
  hello.name = options_.name;
  hello.addresses = advertise_;
  hello.stun_port = options_.stun_port;
  hello.version = options_.version;
  return hello;
}

void CoordinatorLink::Core::on_connected(const control::Message& answer) {
  const auto& response = std::get<control::RelayRegisterResponse>(answer);
  forget_token();  // from now on the relay key is known: reconnects go without it
  const std::string where = connection_->address();
  log(LogLevel::info, kLog, "connected to the coordinator at ", where, " as relay ", response.name);
  report(true, "connected to the coordinator at " + where + " as relay " + response.name);
}

void CoordinatorLink::Core::on_refused(const control::Message& refusal, bool retrying) {
  const std::string text = connection_->last_error();
  if (retrying) return report(false, text);
  log(LogLevel::error, kLog, text);
  MembershipListener* listener = listener_;
  listener_ = nullptr;
  forget_token();
  const auto* error = std::get_if<control::ErrorMessage>(&refusal);
  const auto* response = std::get_if<control::RelayRegisterResponse>(&refusal);
  const auto code = error ? error->code : response ? response->error_code : control::ErrorCode::internal;
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
  if (listener != nullptr) listener->on_coordinator(false, text);
}

void CoordinatorLink::Core::on_unreachable(const std::string& error, Duration retry_in) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(retry_in).count();
  report(false, error + " (retrying in " + std::to_string(ms) + " ms)");
}

void CoordinatorLink::Core::on_disconnected(const std::string& reason) {
  log(LogLevel::warn, kLog, "lost the coordinator: ", reason, "; admitting members from the cache");
  report(false, reason);
}

// ---- membership ----

void CoordinatorLink::Core::on_peers(const control::PeerMap& map) {
  std::vector<wg::PublicKey> keys = member_keys(map);
  if (have_members_ && keys == cache_.members) return;  // an endpoint or presence change
  cache_.members = std::move(keys);
  have_members_ = true;
  save_cache();
  if (listener_ != nullptr) listener_->on_members(cache_.members);
}

void CoordinatorLink::Core::on_relay_map(control::RelayMap relays) {
  if (relays.relays == cache_.relays) return;
  cache_.relays = std::move(relays.relays);
  save_cache();
  if (listener_ != nullptr) listener_->on_relays(cache_.relays);
}

void CoordinatorLink::Core::save_cache() {
  try {
    state_.save_membership(cache_);
  } catch (const StateDirError& error) {
    // The relay keeps working; only a restart while the coordinator is down would miss it.
    log(LogLevel::warn, kLog, "cannot cache the membership: ", error.what());
  }
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
