#include "agent/coordinator_client.hpp"

#include <sodium.h>

#include <algorithm>
#include <variant>

#include "base/log.hpp"

namespace knit::agent {

// The agent's side of the protocol; the connection does the I/O. Shared with the connection
// (which holds it weakly while it calls it), so a listener that drops the client from a callback
// is safe.
class CoordinatorClient::Core : public net::CoordinatorConnection::Listener,
                                public std::enable_shared_from_this<Core> {
 public:
  Core(asio::io_context& io, const wg::PrivateKey& node_key, Options options,
       CoordinatorClient::Listener& listener, Random& rng)
      : io_(io), node_key_(node_key), options_(std::move(options)), listener_(&listener), rng_(rng) {}
  ~Core() override { forget_token(); }

  void start();
  void stop();
  void set_endpoints(std::vector<Endpoint> endpoints);
  void set_nat_report(const control::NatReport& report);
  bool logout();
  void set_route_advertise(const control::RouteAdvertise& ad);
  bool can_route() const {
    return std::find(features_.begin(), features_.end(), control::kFeatureRoutes) != features_.end();
  }
  bool can_logout() const {
    return std::find(features_.begin(), features_.end(), control::kFeatureLogout) != features_.end();
  }

  State state() const { return connection_ ? connection_->state() : State::stopped; }
  std::string last_error() const { return connection_ ? connection_->last_error() : std::string(); }
  std::string address() const { return connection_ ? connection_->address() : std::string(); }

 private:
  // net::CoordinatorConnection::Listener
  control::Message hello() override;
  void on_connected(const control::Message& answer) override;
  void on_refused(const control::Message& refusal, bool retrying) override;
  void on_peers(const control::PeerMap& map) override;
  void on_peer_delta(const control::PeerMap& map, const control::PeerDelta& delta) override;
  void on_relay_map(control::RelayMap relays) override;
  void on_dns_config(control::DnsConfig dns) override;
  void on_policy_rules(control::PolicyRules rules) override;
  void on_self_update(const control::NodeAssignment& self) override;
  void on_unreachable(const std::string& error, Duration retry_in) override;
  void on_disconnected(const std::string& reason) override;
  // While logging out, the coordinator's not_registered is the answer, not a loss to recover.
  bool is_final(const control::ErrorMessage& error) const override {
    return logging_out_ && error.code == control::ErrorCode::not_registered;
  }

  void forget_token() {
    if (options_.token) sodium_memzero(options_.token->data(), options_.token->size());
    options_.token.reset();
  }

  asio::io_context& io_;
  wg::PrivateKey node_key_;
  Options options_;
  CoordinatorClient::Listener* listener_;  // null once stopped
  Random& rng_;
  std::optional<net::CoordinatorConnection> connection_;
  std::vector<Endpoint> sent_endpoints_;
  std::optional<control::NatReport> nat_report_;
  std::optional<control::NatReport> sent_nat_report_;
  std::vector<std::string> features_;  // the current session's coordinator's
  control::RouteAdvertise routes_;      // what we offer to route (route_settings.hpp)
  std::optional<control::RouteAdvertise> sent_routes_;  // in the current session
  bool logging_out_ = false;
  bool logout_sent_ = false;  // in the current session
};

void CoordinatorClient::Core::start() {
  if (connection_ && connection_->state() != State::stopped) return;
  net::CoordinatorConnection::Options o;
  o.addresses = options_.addresses;
  o.coordinator_key = options_.coordinator_key;
  o.log_tag = "knitd";
  static_cast<net::CoordinatorConnection::Timing&>(o) = options_;
  connection_.emplace(io_, node_key_, std::move(o), weak_from_this(), rng_);
  connection_->start();
}

void CoordinatorClient::Core::stop() {
  listener_ = nullptr;
  if (connection_) connection_->stop();
  forget_token();
}

void CoordinatorClient::Core::set_endpoints(std::vector<Endpoint> endpoints) {
  options_.endpoints = std::move(endpoints);
  if (state() != State::connected || options_.endpoints == sent_endpoints_) return;
  sent_endpoints_ = options_.endpoints;
  connection_->send(control::EndpointUpdate{sent_endpoints_});
}

void CoordinatorClient::Core::set_nat_report(const control::NatReport& report) {
  nat_report_ = report;
  if (state() != State::connected || nat_report_ == sent_nat_report_) return;
  sent_nat_report_ = nat_report_;
  connection_->send(*nat_report_);
}

bool CoordinatorClient::Core::logout() {
  logging_out_ = true;
  if (state() != State::connected) return true;  // sent once a session opens
  if (!can_logout()) return false;
  if (!logout_sent_) logout_sent_ = connection_->send(control::Logout{});
  return true;
}

void CoordinatorClient::Core::set_route_advertise(const control::RouteAdvertise& ad) {
  routes_ = ad;
  // A coordinator without the feature would close the session on an unknown type.
  if (state() != State::connected || !can_route() || sent_routes_ == routes_) return;
  if (connection_->send(routes_)) sent_routes_ = routes_;
}

control::Message CoordinatorClient::Core::hello() {
  control::RegisterRequest request;
  request.token = options_.token;  // the connection wipes this copy once sent
  request.disco_key = options_.disco_key;
  request.hostname = options_.hostname;
  request.os = options_.os;
  request.endpoints = options_.endpoints;
  request.version = options_.version;
  request.features = {std::string(control::kFeatureDns), std::string(control::kFeaturePolicy),
                      std::string(control::kFeatureSelf)};
  sent_endpoints_ = options_.endpoints;
  return request;
}

void CoordinatorClient::Core::on_connected(const control::Message& answer) {
  const auto& response = std::get<control::RegisterResponse>(answer);
  forget_token();  // from now on the node key is known: rejoins go without it
  features_ = response.features;
  logout_sent_ = false;
  log(LogLevel::info, "knitd", "connected to the coordinator at ", address(), " as ", response.node.name);
  if (listener_ != nullptr) listener_->on_registered(response);
  // Endpoints that changed during the handshake.
  if (state() == State::connected && options_.endpoints != sent_endpoints_) set_endpoints(options_.endpoints);
  // A new session has not heard our NAT report yet.
  sent_nat_report_.reset();
  if (state() == State::connected && nat_report_) set_nat_report(*nat_report_);
  // Every session hears what we route (also "nothing": a withdrawal made while away).
  sent_routes_.reset();
  if (state() == State::connected) set_route_advertise(routes_);
}

void CoordinatorClient::Core::on_refused(const control::Message& refusal, bool retrying) {
  CoordinatorClient::Listener* listener = listener_;
  if (!retrying) listener_ = nullptr;  // the connection has stopped
  if (std::holds_alternative<control::ErrorMessage>(refusal) && logging_out_) {
    if (listener != nullptr) listener->on_logged_out();
    return;
  }
  if (const auto* response = std::get_if<control::RegisterResponse>(&refusal); response && listener)
    listener->on_refused(*response, retrying);
}

void CoordinatorClient::Core::on_peers(const control::PeerMap& map) {
  if (listener_ != nullptr) listener_->on_peers(map);
}

void CoordinatorClient::Core::on_peer_delta(const control::PeerMap& map, const control::PeerDelta& delta) {
  if (listener_ != nullptr) listener_->on_peer_delta(map, delta);
}

void CoordinatorClient::Core::on_relay_map(control::RelayMap relays) {
  if (listener_ != nullptr) listener_->on_relay_map(relays);
}

void CoordinatorClient::Core::on_dns_config(control::DnsConfig dns) {
  if (listener_ != nullptr) listener_->on_dns_config(dns);
}

void CoordinatorClient::Core::on_self_update(const control::NodeAssignment& self) {
  if (listener_ != nullptr) listener_->on_self_update(self);
}

void CoordinatorClient::Core::on_policy_rules(control::PolicyRules rules) {
  if (listener_ != nullptr) listener_->on_policy_rules(rules);
}

void CoordinatorClient::Core::on_unreachable(const std::string& error, Duration retry_in) {
  if (listener_ != nullptr) listener_->on_unreachable(error, retry_in);
}

void CoordinatorClient::Core::on_disconnected(const std::string& reason) {
  if (listener_ != nullptr) listener_->on_disconnected(reason);
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
bool CoordinatorClient::logout() { return core_->logout(); }
void CoordinatorClient::set_route_advertise(const control::RouteAdvertise& ad) { core_->set_route_advertise(ad); }
bool CoordinatorClient::coordinator_can_route() const { return core_->can_route(); }
bool CoordinatorClient::coordinator_can_logout() const { return core_->can_logout(); }
CoordinatorClient::State CoordinatorClient::state() const { return core_->state(); }
std::string CoordinatorClient::last_error() const { return core_->last_error(); }
std::string CoordinatorClient::address() const { return core_->address(); }

}  // namespace knit::agent
