// The membership's own states (mesh_membership.hpp): rejoining at start, `knit up` with a
// token or after `knit down`, `knit down`, `knit logout`, and what the CLI is told about them.
// What the coordinator answers, and applying its peer map, are in mesh_membership_session.cpp.
#include "agent/mesh_membership.hpp"

#include <sodium.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <type_traits>

#include "base/log.hpp"
#include "control/constants.hpp"
#include "control/token.hpp"

namespace knit::agent {

namespace {

constexpr const char* kNotJoined = "not joined: run `knit up --token TOKEN` (a token comes from `knit-coordinator token create`)";

std::string system_hostname() {
  char name[256] = {};
  if (::gethostname(name, sizeof name - 1) != 0 || name[0] == '\0') return "knit-node";
  return name;
}

bool valid_hostname(const std::string& name) {
  if (name.empty() || name.size() > control::kMaxHostnameLength) return false;
  return std::all_of(name.begin(), name.end(), [](unsigned char c) { return c >= 0x20 && c < 0x7f; });
}

}  // namespace

Membership::Membership(asio::io_context& io, MeshDevice& device, LinkControl& link, MeshPaths* paths,
                       Options options)
    : io_(io),
      device_(device),
      link_(link),
      paths_(paths),
      options_(std::move(options)),
      state_(options_.state_dir),
      watch_(io, CarrierWatch::Hooks{
                     [this](const control::NodeKey& key) {
                       const MeshPaths* p = this->paths();
                       return p ? p->last_heard(key) : std::nullopt;
                     },
                     [this](const control::NodeKey& key) -> std::uint64_t {
                       const wg::Peer* peer = device_.device().find_peer(key);
                       return peer ? peer->rx_bytes : 0;
                     },
                     [this](const control::NodeKey& key) {
                       if (MeshPaths* p = this->paths()) p->ping_peer(key);
                     },
                     [this] { on_carrier_health_changed(); }}),
      up_timer_(io),
      logout_timer_(io),
      poll_timer_(io) {}

Membership::~Membership() { stop(); }

void Membership::start() {
  running_ = true;
  std::optional<MeshRecord> saved;
  try {
    saved = state_.load_mesh();
    if (!saved) return;
    identity_ = state_.load_or_create_identity(rng_);
  } catch (const StateError& e) {
    log(LogLevel::error, "knitd", "cannot rejoin the mesh: ", e.what());
    return;
  }
  mesh_ = std::move(saved);
  if (mesh_->down) {
    log(LogLevel::info, "knitd", "a member of the mesh as ", mesh_->name, ", but down: `knit up` reconnects");
    return;
  }
  log(LogLevel::info, "knitd", "rejoining the mesh as ", mesh_->name, " (", mesh_->ipv4.to_string(), ")");
  device_.configure([&](wg::Device& device, wg::Now) { device.set_private_key(identity_->node.private_key); });
  apply_self();
  start_client(*mesh_, std::nullopt);
}

void Membership::stop() {
  running_ = false;
  client_.reset();
  stop_paths();
  up_timer_.cancel();
  logout_timer_.cancel();
  poll_timer_.cancel();
  reconnecting_ = false;
  if (pending_up_) {
    auto reply = std::move(pending_up_);
    pending_up_ = nullptr;
    reply(localapi::ErrorReply{"knitd is shutting down"});
  }
  if (pending_logout_) {
    auto reply = std::move(pending_logout_);
    pending_logout_ = nullptr;
    reply(localapi::ErrorReply{"knitd is shutting down: the node is still a member (`knit logout` again)"});
  }
}

// ---------------------------------------------------------------- up and down

void Membership::up(localapi::UpRequest request, ControlHandler::Reply reply) {
  if (pending_up_)
    return reply(localapi::ErrorReply{"another `knit up` is still waiting for the coordinator: wait for it, or cancel it with `knit down`"});
  if (pending_logout_) return reply(localapi::ErrorReply{"`knit logout` is in progress: wait for it"});
  if (request.token.empty()) {
    if (mesh_ && mesh_->down) return reconnect(std::move(reply));
    if (mesh_) return reply(localapi::UpReply{mesh_->name, mesh_->ipv4, mesh_->ipv6, true});
    return reply(localapi::ErrorReply{kNotJoined});
  }
  control::JoinToken token;
  const control::TokenError token_error = control::decode_token(request.token, token);
  if (token_error != control::TokenError::ok) return reply(localapi::ErrorReply{control::describe(token_error)});
  if (mesh_) {
    sodium_memzero(request.token.data(), request.token.size());
    if (mesh_->coordinator_key != token.coordinator_key)
      return reply(localapi::ErrorReply{"already a member of another mesh as " + mesh_->name +
                                        ": run `knit logout` first to leave it"});
    if (mesh_->down) return reconnect(std::move(reply));  // a member already: no token needed
    return reply(localapi::UpReply{mesh_->name, mesh_->ipv4, mesh_->ipv6, true});
  }
  const std::string hostname = request.hostname.empty() ? system_hostname() : request.hostname;
  if (!valid_hostname(hostname))
    return reply(localapi::ErrorReply{"the hostname must be 1 to 255 printable ASCII characters: pass --hostname NAME"});
  try {
    identity_ = state_.load_or_create_identity(rng_);
  } catch (const StateError& e) {
    return reply(localapi::ErrorReply{e.what()});
  }

  MeshRecord record;
  record.coordinator_addresses = token.addresses;
  record.coordinator_key = token.coordinator_key;
  record.hostname = hostname;
  joining_ = record;
  pending_up_ = std::move(reply);
  up_timer_.expires_after(options_.up_timeout);
  up_timer_.async_wait([this](std::error_code ec) {
    if (ec == asio::error::operation_aborted || !joining_) return;
    std::string why = client_ ? client_->last_error() : std::string();
    fail_up("no answer from the coordinator within " +
            std::to_string(std::chrono::duration_cast<std::chrono::seconds>(options_.up_timeout).count()) +
            " s" + (why.empty() ? "" : " (" + why + ")") + ": check that it is running and reachable");
  });
  // The token as the user gave it, without the surrounding whitespace.
  std::string text = request.token;
  const auto first = text.find_first_not_of(" \t\r\n");
  const auto last = text.find_last_not_of(" \t\r\n");
  text = first == std::string::npos ? std::string() : text.substr(first, last - first + 1);
  sodium_memzero(request.token.data(), request.token.size());
  log(LogLevel::info, "knitd", "joining the mesh through ", record.coordinator_addresses.front().to_string());
  start_client(record, std::move(text));
}

void Membership::fail_up(const std::string& message) {
  client_.reset();
  joining_.reset();
  up_timer_.cancel();
  log(LogLevel::warn, "knitd", "join failed: ", message);
  answer_up(localapi::ErrorReply{message});
}

void Membership::answer_up(localapi::ControlResponse response) {
  reconnecting_ = false;
  up_timer_.cancel();
  if (!pending_up_) return;
  auto reply = std::move(pending_up_);
  pending_up_ = nullptr;
  reply(std::move(response));
}

void Membership::reconnect(ControlHandler::Reply reply) {
  MeshRecord record = *mesh_;
  record.down = false;
  try {
    identity_ = state_.load_or_create_identity(rng_);
    state_.save_mesh(record);
  } catch (const StateError& e) {
    return reply(localapi::ErrorReply{e.what()});
  }
  mesh_ = record;
  last_problem_.clear();
  log(LogLevel::info, "knitd", "reconnecting to the mesh as ", mesh_->name, " (`knit up`)");
  device_.configure([&](wg::Device& device, wg::Now) { device.set_private_key(identity_->node.private_key); });
  apply_self();
  pending_up_ = std::move(reply);
  reconnecting_ = true;
  up_timer_.expires_after(options_.up_timeout);
  up_timer_.async_wait([this](std::error_code ec) {
    if (ec == asio::error::operation_aborted || !reconnecting_) return;
    const std::string why = client_ ? client_->last_error() : std::string();
    // Up it is (and saved so): knitd goes on trying, as after a restart.
    answer_up(localapi::ErrorReply{
        "not connected yet: no answer from the coordinator within " +
        std::to_string(std::chrono::duration_cast<std::chrono::seconds>(options_.up_timeout).count()) + " s" +
        (why.empty() ? "" : " (" + why + ")") + "; knitd keeps trying (`knit status` shows when it is back)"});
  });
  start_client(*mesh_, std::nullopt);
}

localapi::ControlResponse Membership::down() {
  if (joining_) fail_up("cancelled by `knit down`");
  if (reconnecting_) answer_up(localapi::ErrorReply{"cancelled by `knit down`"});
  last_problem_.clear();
  if (pending_logout_) return localapi::ErrorReply{"`knit logout` is in progress: wait for it"};
  if (!mesh_ || mesh_->down) return localapi::DownReply{false};
  MeshRecord record = *mesh_;
  record.down = true;
  std::string unsaved;
  try {
    state_.save_mesh(record);
  } catch (const StateError& e) {
    unsaved = e.what();
  }
  mesh_ = record;
  log(LogLevel::info, "knitd", "disconnecting from the mesh (`knit down`; still a member as ", mesh_->name, ")");
  disconnect();
  if (!unsaved.empty())
    return localapi::ErrorReply{"disconnected, but a restarted knitd will reconnect (not saved: " + unsaved + ")"};
  return localapi::DownReply{true};
}

void Membership::disconnect() {
  client_.reset();
  stop_paths();
  device_.configure([&](wg::Device& device, wg::Now) { configurator_.clear_peers(device); });
  for (const auto& failure : configurator_.clear_routes(link_)) log(LogLevel::warn, "knitd", failure);
  carriers_.clear();
  watch_.watch({});
  exit_ = {};
  apply_exit();
  for (const auto& failure : configurator_.clear_self(link_)) log(LogLevel::warn, "knitd", failure);
  device_.set_mesh_address(std::nullopt);
  device_.set_mesh_ipv6(std::nullopt);
  device_.set_policy_rules({});
  peers_.reset({});
  relays_ = {};
  dns_.reset();
  endpoints_.clear();
  poll_timer_.cancel();
  notify_names();
}

void Membership::forget_mesh(const std::string& why) {
  log(LogLevel::info, "knitd", "leaving the mesh (", why, ")");
  try {
    state_.forget_mesh();
  } catch (const StateError& e) {
    log(LogLevel::error, "knitd", e.what());
  }
  mesh_.reset();
  disconnect();
}

// ---------------------------------------------------------------- logout

void Membership::logout(ControlHandler::Reply reply) {
  if (pending_logout_) return reply(localapi::ErrorReply{"`knit logout` is already in progress: wait for it"});
  if (joining_) fail_up("cancelled by `knit logout`");
  if (reconnecting_) answer_up(localapi::ErrorReply{"cancelled by `knit logout`"});
  if (!mesh_) return reply(localapi::LogoutReply{false, false, {}, {}});
  pending_logout_ = std::move(reply);
  log(LogLevel::info, "knitd", "logging out of the mesh (`knit logout`) as ", mesh_->name);
  logout_timer_.expires_after(options_.logout_timeout);
  logout_timer_.async_wait([this](std::error_code ec) {
    if (ec == asio::error::operation_aborted || !pending_logout_) return;
    const std::string why = client_ ? client_->last_error() : std::string();
    finish_logout(false, "no answer from the coordinator within " +
                             std::to_string(std::chrono::duration_cast<std::chrono::seconds>(options_.logout_timeout).count()) +
                             " s" + (why.empty() ? "" : " (" + why + ")"));
  });
  if (!client_) {
    // Down: a session only to say goodbye, without the data plane's paths.
    try {
      if (!identity_) identity_ = state_.load_or_create_identity(rng_);
    } catch (const StateError& e) {
      return finish_logout(false, e.what());
    }
    start_client(*mesh_, std::nullopt, /*with_paths=*/false);
  }
  send_logout();
}

void Membership::send_logout() {
  if (!pending_logout_ || !client_) return;
  if (!client_->logout())
    finish_logout(false, "the coordinator is an older version that cannot be told");
}

void Membership::on_logged_out() { finish_logout(true, {}); }

void Membership::finish_logout(bool told, const std::string& detail) {
  logout_timer_.cancel();
  localapi::LogoutReply answer{true, told, mesh_ ? mesh_->name : std::string(), detail};
  if (told) log(LogLevel::info, "knitd", "the coordinator removed this node");
  else log(LogLevel::warn, "knitd", "the coordinator was not told of the logout: ", detail);
  if (mesh_) forget_mesh("`knit logout`");
  if (!pending_logout_) return;
  auto reply = std::move(pending_logout_);
  pending_logout_ = nullptr;
  reply(std::move(answer));
}

std::optional<std::string> Membership::not_joined_error() const {
  if (mesh_ && mesh_->down)
    return "down: still a member of the mesh as " + mesh_->name + "; `knit up` reconnects (`knit logout` leaves it)";
  if (mesh_) return std::nullopt;
  if (joining_) return std::string("not joined yet: a `knit up` is waiting for the coordinator");
  if (!last_problem_.empty()) return "not joined: " + last_problem_;
  return std::string(kNotJoined);
}

bool Membership::coordinator_connected() const {
  return client_ && client_->state() == CoordinatorClient::State::connected;
}

localapi::CoordinatorStatus Membership::coordinator_status() const {
  localapi::CoordinatorStatus out;
  if (!client_) {
    out.state = "stopped";
    return out;
  }
  out.state = std::string(to_string(client_->state()));
  out.address = client_->address();
  out.error = client_->last_error();
  return out;
}

}  // namespace knit::agent
