#include "coordinator/server.hpp"

#include <algorithm>
#include <ctime>
#include <stdexcept>
#include <unordered_set>

#include "base/log.hpp"
#include "control/token.hpp"
#include "coordinator/control_view.hpp"
#include "wg/crypto.hpp"

namespace knit::coordinator {

namespace {

constexpr std::string_view kLog = "coordinator";
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(100);

using control::NodeKey;
using control::PeerInfo;

std::string key_text(const NodeKey& key) { return to_base64(key); }

// ---- splicing encoded messages ----
// control::encode writes an empty list as "[]"; entries encoded on their own go between the
// brackets, joined by ','. Checked against the encoder once (splicing_matches_encoder).

// The pieces of an encoded message around its empty lists: list i goes between piece i and i+1.
std::vector<std::string> pieces(const std::string& text) {
  std::vector<std::string> out;
  std::size_t from = 0;
  for (std::size_t at = text.find("[]"); at != std::string::npos; at = text.find("[]", at + 2)) {
    out.push_back(text.substr(from, at + 1 - from));
    from = at + 1;
  }
  out.push_back(text.substr(from));
  return out;
}

// A peer as it appears inside a peer_map's or peer_delta's list.
std::string peer_json(const PeerInfo& peer) {
  static const std::vector<std::string> empty = pieces(control::encode(control::PeerMap{}));
  const std::string text = control::encode(control::PeerMap{0, {peer}});
  const std::size_t head = empty.front().size();
  const std::size_t tail = empty.back().size();
  if (empty.size() != 2 || text.size() < head + tail) return {};
  return text.substr(head, text.size() - head - tail);
}

// A register answer (an agent's or a relay's) that refuses, saying why.
template <typename Response>
Response refusal(control::ErrorCode code, std::string message) {
  Response response;
  response.ok = false;
  response.error_code = code;
  response.error_message = std::move(message);
  return response;
}

std::string removed_json(const NodeKey& key) { return "\"" + key_text(key) + "\""; }

template <typename Items>
void append_joined(std::string& out, const Items& items, const NodeKey* skip) {
  bool first = true;
  for (const auto& item : items) {
    if (skip != nullptr && item.key == *skip) continue;
    if (!first) out += ',';
    first = false;
    out += item.json;
  }
}

bool splicing_matches_encoder() {
  auto peer = [](std::uint8_t n) {
    PeerInfo p;
    p.name = "node-" + std::to_string(n);
    p.node_key.fill(n);
    p.disco_key.fill(static_cast<std::uint8_t>(n + 1));
    p.ipv4 = *IpAddress::parse("100.64.0." + std::to_string(n));
    p.ipv6 = *IpAddress::parse("fd00::" + std::to_string(n));
    p.endpoints = {*Endpoint::parse("192.0.2.1:41641"), *Endpoint::parse("[2001:db8::1]:9")};
    p.home_relay = "relay-1";
    p.online = n % 2 == 0;
    p.last_seen = 1700000000 + n;
    p.tags = {"server", "x_y"};
    p.routes = {*IpPrefix::parse("10.0.0.0/24")};
    return p;
  };
  const PeerInfo a = peer(2);
  const PeerInfo b = peer(3);
  const auto map = pieces(control::encode(control::PeerMap{7, {}}));
  const auto delta = pieces(control::encode(control::PeerDelta{7, {}, {}, {}}));
  if (map.size() != 2 || delta.size() != 4) return false;
  const std::string map_text = map[0] + peer_json(a) + "," + peer_json(b) + map[1];
  const std::string delta_text = delta[0] + peer_json(a) + delta[1] + peer_json(b) + delta[2] +
                                 removed_json(a.node_key) + "," + removed_json(b.node_key) +
                                 delta[3];
  return map_text == control::encode(control::PeerMap{7, {a, b}}) &&
         delta_text ==
             control::encode(control::PeerDelta{7, {a}, {b}, {a.node_key, b.node_key}});
}

}  // namespace

// ---- PeerView ----

PeerView::PeerView() {
  static const bool kSplice = splicing_matches_encoder();
  splice_ = kSplice;
  if (!splice_)
    log(LogLevel::warn, kLog, "the message encoder changed its layout: encoding peer maps whole");
}

void PeerView::reset(const std::vector<PeerInfo>& peers) {
  version_ = 1;
  published_.clear();
  pending_.clear();
  added_.clear();
  changed_.clear();
  removed_.clear();
  last_delta_ = {};
  json_bytes_ = 0;
  for (const PeerInfo& peer : peers) {
    std::string json = splice_ ? peer_json(peer) : std::string();
    json_bytes_ += json.size();
    published_[peer.node_key] = Entry{peer, std::move(json)};
  }
}

const PeerInfo* PeerView::find(const NodeKey& key) const {
  if (auto it = pending_.find(key); it != pending_.end())
    return it->second ? &*it->second : nullptr;
  auto it = published_.find(key);
  return it == published_.end() ? nullptr : &it->second.info;
}

std::vector<NodeKey> PeerView::keys() const {
  std::vector<NodeKey> out;
  out.reserve(published_.size() + pending_.size());
  for (const auto& [key, entry] : published_) {
    auto it = pending_.find(key);
    if (it == pending_.end() || it->second) out.push_back(key);
  }
  for (const auto& [key, state] : pending_)
    if (state && published_.count(key) == 0) out.push_back(key);
  return out;
}

void PeerView::set(PeerInfo peer) {
  const NodeKey key = peer.node_key;
  pending_[key] = std::move(peer);
}

void PeerView::remove(const NodeKey& key) { pending_[key] = std::nullopt; }

std::optional<PeerView::Published> PeerView::publish() {
  if (pending_.empty()) return std::nullopt;
  added_.clear();
  changed_.clear();
  removed_.clear();
  last_delta_ = {};
  Published out;
  for (auto& [key, state] : pending_) {
    auto it = published_.find(key);
    if (state) {
      if (it != published_.end() && it->second.info == *state) continue;
      std::string json = splice_ ? peer_json(*state) : std::string();
      json_bytes_ += json.size();
      if (it == published_.end()) {
        added_.push_back(Item{key, json});
        last_delta_.added.push_back(*state);
        published_[key] = Entry{std::move(*state), std::move(json)};
      } else {
        changed_.push_back(Item{key, json});
        last_delta_.changed.push_back(*state);
        json_bytes_ -= it->second.json.size();
        it->second = Entry{std::move(*state), std::move(json)};
      }
    } else {
      if (it == published_.end()) continue;
      removed_.push_back(Item{key, removed_json(key)});
      last_delta_.removed.push_back(key);
      json_bytes_ -= it->second.json.size();
      published_.erase(it);
    }
    out.keys.push_back(key);  // pending_ is ordered by key, so keys is sorted
  }
  pending_.clear();
  if (out.keys.empty()) return std::nullopt;
  out.version = ++version_;
  last_delta_.version = version_;
  out.text = delta_text(nullptr);
  return out;
}

std::string PeerView::delta_text(const NodeKey* skip) const {
  if (!splice_) {
    control::PeerDelta delta = last_delta_;
    if (skip != nullptr) {
      std::erase_if(delta.added, [&](const PeerInfo& p) { return p.node_key == *skip; });
      std::erase_if(delta.changed, [&](const PeerInfo& p) { return p.node_key == *skip; });
      std::erase(delta.removed, *skip);
    }
    return control::encode(delta);
  }
  const auto frame = pieces(control::encode(control::PeerDelta{version_, {}, {}, {}}));
  std::string out = frame[0];
  append_joined(out, added_, skip);
  out += frame[1];
  append_joined(out, changed_, skip);
  out += frame[2];
  append_joined(out, removed_, skip);
  out += frame[3];
  return out;
}

std::string PeerView::delta_text_for(const NodeKey& own) const { return delta_text(&own); }

std::string PeerView::map_text_for(const NodeKey& own) const {
  if (!splice_) {
    control::PeerMap map{version_, {}};
    map.peers.reserve(published_.size());
    for (const auto& [key, entry] : published_)
      if (key != own) map.peers.push_back(entry.info);
    return control::encode(map);
  }
  const auto frame = pieces(control::encode(control::PeerMap{version_, {}}));
  std::string out;
  out.reserve(frame[0].size() + json_bytes_ + published_.size() + frame[1].size());
  out += frame[0];
  bool first = true;
  for (const auto& [key, entry] : published_) {
    if (key == own) continue;
    if (!first) out += ',';
    first = false;
    out += entry.json;
  }
  out += frame[1];
  return out;
}

// ---- Server ----

std::size_t Server::KeyHash::operator()(const NodeKey& key) const noexcept {
  // Node keys are public keys an agent must hold the private half of: uniformly random bytes.
  std::size_t out = 0;
  for (std::size_t i = 0; i < sizeof out; ++i) out = (out << 8) | key[i];
  return out;
}

Server::Server(asio::io_context& io, Store& store, const wg::PrivateKey& coordinator_key,
               const MeshSettings& mesh, Random& rng, ServerOptions options)
    : io_(io),
      store_(store),
      key_(coordinator_key),
      public_key_(wg::crypto::public_key_of(coordinator_key)),
      mesh_(mesh),
      rng_(rng),
      options_(std::move(options)),
      acceptor_(io),
      accept_retry_timer_(io),
      poll_timer_(io),
      sweep_timer_(io),
      publish_timer_(io),
      relay_map_text_(control::encode(control::RelayMap{})) {
  if (!options_.now) options_.now = [] { return static_cast<UnixSeconds>(std::time(nullptr)); };
}

Server::~Server() { stop(); }

void Server::start(const asio::ip::tcp::endpoint& listen) {
  if (started_ || stopped_) return;
  // Listening first: a second server started on the same state by mistake fails here, before
  // it touches the nodes.
  acceptor_.open(listen.protocol());
  acceptor_.set_option(asio::ip::tcp::acceptor::reuse_address(true));
  acceptor_.bind(listen);
  acceptor_.listen(asio::socket_base::max_listen_connections);

  // Nobody is connected yet: nodes a crash left online go offline as of now.
  if (auto r = store_.mark_all_offline(now()); !r)
    throw std::runtime_error("cannot update the nodes: " + r.error().message);
  // The version before the nodes: a change committed while loading is seen by the next poll.
  if (auto version = store_.change_version()) change_version_ = *version;
  auto nodes = store_.list_nodes();
  if (!nodes) throw std::runtime_error("cannot read the nodes: " + nodes.error().message);
  std::vector<PeerInfo> peers;
  peers.reserve(nodes->size());
  for (const Node& node : *nodes) peers.push_back(peer_info(node));
  view_.reset(peers);
  load_relays();
  started_ = true;
  const auto bound = acceptor_.local_endpoint();
  log(LogLevel::info, kLog, "listening on ", bound.address().to_string(), " port ", bound.port(),
      " (", view_.size(), " nodes, ", relays_.size(), " relays, coordinator key ",
      key_text(public_key_), ")");
  accept_next();
  arm(poll_timer_, options_.poll_interval, &Server::poll);
  arm(sweep_timer_, options_.sweep_interval, &Server::sweep);
}

void Server::stop() {
  if (stopped_) return;
  stopped_ = true;
  std::error_code ignored;
  acceptor_.close(ignored);
  accept_retry_timer_.cancel();
  poll_timer_.cancel();
  sweep_timer_.cancel();
  publish_timer_.cancel();
  if (!started_) return;
  const UnixSeconds t = now();
  for (const auto& [key, session] : owners_) {
    if (auto r = store_.set_node_online(key, false, t); !r && r.error().code != Errc::not_found)
      log(LogLevel::warn, kLog, "cannot mark a node offline: ", r.error().message);
  }
  for (const auto& [key, session] : relay_owners_) {
    if (auto r = store_.set_relay_online(key, false, t); !r && r.error().code != Errc::not_found)
      log(LogLevel::warn, kLog, "cannot mark a relay offline: ", r.error().message);
  }
  for (const auto& [raw, session] : sessions_) session->close(CloseReason::shutdown);
  sessions_.clear();
  owners_.clear();
  relay_owners_.clear();
  closed_.clear();
  log(LogLevel::info, kLog, "stopped: ", summary());
}

asio::ip::tcp::endpoint Server::local_endpoint() const {
  std::error_code ec;
  return acceptor_.local_endpoint(ec);
}

std::string Server::summary() const {
  const ServerCounters& c = counters_;
  return "accepted " + std::to_string(c.accepted) + ", registered " +
         std::to_string(c.registered) + ", rejected " + std::to_string(c.rejected) +
         ", handshake failures " + std::to_string(c.handshake_failures) + ", malformed " +
         std::to_string(c.malformed) + ", queue overflows " + std::to_string(c.queue_overflows) +
         ", timeouts " + std::to_string(c.timeouts) + ", refused connections " +
         std::to_string(c.refused_connections);
}

void Server::arm(asio::steady_timer& timer, std::chrono::steady_clock::duration after,
                 void (Server::*handler)()) {
  timer.expires_after(after);
  timer.async_wait([this, alive = std::weak_ptr<char>(alive_), handler](std::error_code ec) {
    if (ec == asio::error::operation_aborted || alive.expired() || stopped_) return;
    (this->*handler)();
  });
}

// ---- connections ----

void Server::accept_next() {
  acceptor_.async_accept([this, alive = std::weak_ptr<char>(alive_)](
                             std::error_code ec, asio::ip::tcp::socket socket) {
    if (alive.expired()) return;
    on_accept(ec, std::move(socket));
  });
}

void Server::on_accept(std::error_code ec, asio::ip::tcp::socket socket) {
  if (stopped_ || ec == asio::error::operation_aborted) return;
  if (ec) {
    // Out of descriptors or memory: wait a little rather than spin on the error.
    log(LogLevel::warn, kLog, "accept failed: ", ec.message());
    accept_retry_timer_.expires_after(kAcceptRetryDelay);
    accept_retry_timer_.async_wait(
        [this, alive = std::weak_ptr<char>(alive_)](std::error_code wait_ec) {
          if (wait_ec == asio::error::operation_aborted || alive.expired() || stopped_) return;
          accept_next();
        });
    return;
  }
  ++counters_.accepted;
  const std::size_t handshaking = sessions_.size() - owners_.size() - relay_owners_.size();
  if (sessions_.size() >= options_.max_sessions || handshaking >= options_.max_handshakes) {
    ++counters_.refused_connections;
    std::error_code ignored;
    socket.close(ignored);
  } else {
    std::error_code ignored;
    socket.set_option(asio::ip::tcp::no_delay(true), ignored);
    SessionHost& host = *this;
    auto session =
        std::make_shared<AgentSession>(std::move(socket), key_, rng_, host, options_.session);
    sessions_.emplace(session.get(), session);
    session->start();
  }
  accept_next();
}

void Server::on_closed(AgentSession& session, CloseReason reason) {
  if (stopped_) return;
  if (session.registered() && session.role() == AgentSession::Role::relay) {
    log(LogLevel::info, kLog, session.remote(), ": relay ", key_text(session.node_key()),
        " disconnected (", to_string(reason), ")");
  } else if (session.registered()) {
    const PeerInfo* peer = view_.find(session.node_key());
    log(LogLevel::info, kLog, session.remote(), ": ", peer ? peer->name : key_text(session.node_key()),
        " disconnected (", to_string(reason), ")");
  } else {
    log(LogLevel::debug, kLog, session.remote(), ": closed (", to_string(reason), ")");
  }
  // Forgotten on the next turn of the loop: this may run while the server walks its sessions.
  closed_.push_back(&session);
  if (reap_posted_) return;
  reap_posted_ = true;
  asio::post(io_, [this, alive = std::weak_ptr<char>(alive_)] {
    if (!alive.expired()) reap();
  });
}

void Server::reap() {
  reap_posted_ = false;
  if (stopped_) return;
  std::vector<AgentSession*> closed;
  closed.swap(closed_);
  for (AgentSession* session : closed) {
    if (session->registered()) {
      Owners& owners = owners_of(*session);
      auto it = owners.find(session->node_key());
      if (it != owners.end() && it->second == session) {
        owners.erase(it);
        if (session->role() == AgentSession::Role::agent) {
          mark_offline(session->node_key());
        } else if (auto r = store_.set_relay_online(session->node_key(), false, now());
                   !r && r.error().code != Errc::not_found) {
          log(LogLevel::warn, kLog, "cannot mark a relay offline: ", r.error().message);
        }
      }
    }
    sessions_.erase(session);  // its last handlers hold it until they have run
  }
}

Server::Owners& Server::owners_of(const AgentSession& session) {
  return session.role() == AgentSession::Role::relay ? relay_owners_ : owners_;
}

const Server::Owners& Server::owners_of(const AgentSession& session) const {
  return session.role() == AgentSession::Role::relay ? relay_owners_ : owners_;
}

bool Server::is_owner(const AgentSession& session) const {
  const Owners& owners = owners_of(session);
  auto it = owners.find(session.node_key());
  return it != owners.end() && it->second == &session;
}

void Server::take_ownership(AgentSession& session) {
  auto [it, inserted] = owners_of(session).try_emplace(session.node_key(), &session);
  if (inserted || it->second == &session) return;
  AgentSession* older = it->second;
  it->second = &session;
  log(LogLevel::info, kLog, session.remote(), ": replaces the session from ", older->remote());
  older->close(CloseReason::replaced);
}

// ---- what agents say ----

control::RegisterResponse Server::on_register(AgentSession& session,
                                              const control::RegisterRequest& request) {
  const NodeKey& key = session.node_key();
  auto refuse = [&](control::ErrorCode code, std::string message) {
    log(LogLevel::info, kLog, session.remote(), ": refused ", key_text(key), ": ",
        control::to_string(code), " (", message, ")");
    return refusal<control::RegisterResponse>(code, std::move(message));
  };

  std::optional<PresentedToken> presented;
  if (std::string why; request.token && !read_token(*request.token, presented, why))
    return refuse(control::ErrorCode::token_invalid, why);
  const UnixSeconds t = now();
  auto joined = store_.join_node(
      NodeRegistration{key, request.disco_key, request.hostname, request.os}, presented, t);
  if (!joined) {
    if (joined.error().code == Errc::mesh_full)
      return refuse(control::ErrorCode::mesh_full, joined.error().message);
    if (joined.error().code == Errc::conflict)  // a relay's key
      return refuse(control::ErrorCode::key_in_use, joined.error().message);
    log(LogLevel::error, kLog, "cannot register a node: ", joined.error().message);
    return refuse(control::ErrorCode::internal,
                  "the coordinator could not register the node; try again later");
  }
  if (joined->token != TokenCheck::ok) {
    if (!presented)
      return refuse(control::ErrorCode::not_registered,
                    "this node key is not registered: join with a token");
    return refuse(error_code(joined->token),
                  "the join token was refused (" + std::string(to_string(joined->token)) + ")");
  }
  Node node = std::move(joined->node);
  if (node.endpoints != request.endpoints) {
    if (auto r = store_.set_node_endpoints(key, request.endpoints, node.home_relay, t)) {
      node.endpoints = request.endpoints;
      node.last_seen = t;
    } else {
      log(LogLevel::warn, kLog, "cannot store endpoints: ", r.error().message);
    }
  }
  take_ownership(session);
  log(LogLevel::info, kLog, session.remote(), ": ", node.name,
      joined->created ? " joined as " : " is back as ", node.ipv4.to_string());
  control::RegisterResponse response;
  response.ok = true;
  response.node = node_assignment(node);
  response.mesh = mesh_info(mesh_);
  view_.set(peer_info(node));
  schedule_publish();
  return response;
}

bool Server::read_token(const std::string& text, std::optional<PresentedToken>& out,
                        std::string& why) const {
  control::JoinToken token;  // its secret wipes itself
  if (auto error = control::decode_token(text, token); error != control::TokenError::ok) {
    why = control::describe(error);
    return false;
  }
  if (token.coordinator_key != public_key_) {
    why = "the token was made for another coordinator";
    return false;
  }
  out = presented_token(token);
  return true;
}

control::RelayRegisterResponse Server::on_relay_register(AgentSession& session,
                                                         const control::RelayRegister& request) {
  const NodeKey& key = session.node_key();
  auto refuse = [&](control::ErrorCode code, std::string message) {
    log(LogLevel::info, kLog, session.remote(), ": refused relay ", request.name, " (",
        key_text(key), "): ", control::to_string(code), " (", message, ")");
    return refusal<control::RelayRegisterResponse>(code, std::move(message));
  };

  std::optional<PresentedToken> presented;
  if (std::string why; request.token && !read_token(*request.token, presented, why))
    return refuse(control::ErrorCode::token_invalid, why);
  RelayRegistration registration{request.name, key, {}, request.stun_port};
  for (const control::HostPort& address : request.addresses)
    registration.addresses.push_back(address.to_string());
  auto joined = store_.join_relay(registration, presented, now());
  if (!joined) {
    if (joined.error().code == Errc::conflict)  // a node's key
      return refuse(control::ErrorCode::key_in_use, joined.error().message);
    log(LogLevel::error, kLog, "cannot register a relay: ", joined.error().message);
    return refuse(control::ErrorCode::internal,
                  "the coordinator could not register the relay; try again later");
  }
  if (joined->token != TokenCheck::ok) {
    if (!presented)
      return refuse(control::ErrorCode::not_registered,
                    "this relay key is not registered: start knit-relay with a relay token "
                    "(`knit-coordinator token create --relay`)");
    if (joined->token == TokenCheck::wrong_kind)
      return refuse(control::ErrorCode::token_invalid,
                    "this is a node's join token: a relay needs one made with `token create "
                    "--relay`");
    return refuse(error_code(joined->token),
                  "the relay token was refused (" + std::string(to_string(joined->token)) + ")");
  }
  take_ownership(session);
  log(LogLevel::info, kLog, session.remote(), ": relay ", joined->relay.name,
      joined->created ? " joined" : " is back");
  // A new relay, or new addresses: every agent and relay learns at once. This session is not
  // open yet; on_open sends it the map.
  if (load_relays()) push_relay_map();
  control::RelayRegisterResponse response;
  response.ok = true;
  response.name = joined->relay.name;
  return response;
}

void Server::push_relay_map() {
  std::vector<AgentSession*> removed;
  for (const auto& [key, session] : relay_owners_) {
    const bool listed = std::any_of(relays_.begin(), relays_.end(),
                                    [&](const control::RelayInfo& r) { return r.node_key == key; });
    if (!listed) removed.push_back(session);
  }
  for (AgentSession* session : removed) {
    log(LogLevel::info, kLog, "relay ", key_text(session->node_key()), " was removed");
    control::ErrorMessage message{control::ErrorCode::not_registered,
                                  "this relay was removed from the mesh"};
    session->close_after(control::encode(message), CloseReason::removed);
  }
  for (const auto& [key, session] : owners_) session->send(relay_map_text_);
  for (const auto& [key, session] : relay_owners_) session->send(relay_map_text_);
}

void Server::on_open(AgentSession& session) {
  // The published map, at the current version: pending changes (this node's own arrival among
  // them) follow as the next delta.
  if (!session.send(relay_map_text_)) return;
  session.send_map(view_.map_text_for(session.node_key()));
}

void Server::on_endpoints(AgentSession& session, const control::EndpointUpdate& update) {
  if (!is_owner(session)) return;
  const PeerInfo* peer = view_.find(session.node_key());
  if (peer == nullptr || peer->endpoints == update.endpoints) return;
  update_node(session.node_key(), update.endpoints, peer->home_relay);
}

void Server::on_nat_report(AgentSession& session, const control::NatReport& report) {
  if (!is_owner(session)) return;
  const PeerInfo* peer = view_.find(session.node_key());
  if (peer == nullptr) return;
  // Home relay: the nearest known relay, switching only for one 20% nearer than the current,
  // so two relays at about the same distance do not make the node flap between them.
  const control::RelayInfo* best = nullptr;
  std::uint32_t best_ms = 0;
  std::optional<std::uint32_t> current_ms;
  for (const control::RelayInfo& relay : relays_) {
    auto it = report.relay_latency_ms.find(relay.name);
    if (it == report.relay_latency_ms.end()) continue;
    if (relay.name == peer->home_relay) current_ms = it->second;
    if (best == nullptr || it->second < best_ms) {
      best = &relay;
      best_ms = it->second;
    }
  }
  if (best == nullptr || best->name == peer->home_relay) return;
  if (current_ms && std::uint64_t{best_ms} * 5 >= std::uint64_t{*current_ms} * 4) return;
  const std::vector<Endpoint> endpoints = peer->endpoints;
  update_node(session.node_key(), endpoints, best->name);
}

void Server::update_node(const NodeKey& key, const std::vector<Endpoint>& endpoints,
                         const std::string& home_relay) {
  const UnixSeconds t = now();
  if (auto r = store_.set_node_endpoints(key, endpoints, home_relay, t); !r) {
    // not_found: removed by an admin a moment ago; the next poll tells everyone.
    if (r.error().code != Errc::not_found)
      log(LogLevel::warn, kLog, "cannot store endpoints: ", r.error().message);
    return;
  }
  PeerInfo peer = *view_.find(key);
  peer.endpoints = endpoints;
  peer.home_relay = home_relay;
  peer.last_seen = t;
  view_.set(std::move(peer));
  schedule_publish();
}

void Server::mark_offline(const NodeKey& key) {
  const UnixSeconds t = now();
  if (auto r = store_.set_node_online(key, false, t); !r && r.error().code != Errc::not_found)
    log(LogLevel::warn, kLog, "cannot mark a node offline: ", r.error().message);
  const PeerInfo* current = view_.find(key);
  if (current == nullptr) return;
  PeerInfo peer = *current;
  peer.online = false;
  peer.last_seen = t;
  view_.set(std::move(peer));
  schedule_publish();
}

void Server::forget_node(const NodeKey& key, std::string_view why) {
  view_.remove(key);
  schedule_publish();
  if (auto it = owners_.find(key); it != owners_.end()) {
    control::ErrorMessage message{control::ErrorCode::not_registered, std::string(why)};
    it->second->close_after(control::encode(message), CloseReason::removed);
  }
}

// ---- publishing ----

void Server::schedule_publish() {
  if (publish_armed_ || stopped_ || !started_) return;
  publish_armed_ = true;
  arm(publish_timer_, options_.publish_delay, &Server::publish);
}

void Server::publish() {
  publish_armed_ = false;
  auto published = view_.publish();
  if (!published) return;
  std::size_t sent = 0;
  for (const auto& [key, session] : owners_) {
    if (session->closing()) continue;
    const bool about_it =
        std::binary_search(published->keys.begin(), published->keys.end(), key);
    session->send(about_it ? view_.delta_text_for(key) : published->text);
    ++sent;
  }
  // A relay is never in the map: it gets the delta as it is.
  for (const auto& [key, session] : relay_owners_) {
    if (session->closing()) continue;
    session->send(published->text);
    ++sent;
  }
  log(LogLevel::debug, kLog, "peer map version ", published->version, ": ",
      published->keys.size(), " nodes changed, sent to ", sent, " agents");
}

// ---- changes made by others ----

void Server::poll() {
  auto version = store_.change_version();
  if (!version) {
    log(LogLevel::warn, kLog, "cannot poll the store: ", version.error().message);
  } else if (!change_version_ || *version != *change_version_) {
    change_version_ = *version;
    reload();
  }
  arm(poll_timer_, options_.poll_interval, &Server::poll);
}

void Server::reload() {
  auto nodes = store_.list_nodes();
  if (!nodes) {
    log(LogLevel::warn, kLog, "cannot reload the nodes: ", nodes.error().message);
    change_version_.reset();  // try again on the next poll
    return;
  }
  std::unordered_set<NodeKey, KeyHash> present;
  present.reserve(nodes->size());
  for (const Node& node : *nodes) {
    present.insert(node.node_key);
    PeerInfo peer = peer_info(node);
    const PeerInfo* current = view_.find(node.node_key);
    if (current == nullptr || !(*current == peer)) {
      view_.set(std::move(peer));
      schedule_publish();
    }
  }
  for (const NodeKey& key : view_.keys()) {
    if (present.count(key) != 0) continue;
    log(LogLevel::info, kLog, "node ", key_text(key), " was removed");
    forget_node(key, "this node was removed from the mesh");
  }
  if (load_relays()) push_relay_map();
}

bool Server::load_relays() {
  auto relays = store_.list_relays();
  if (!relays) {
    log(LogLevel::warn, kLog, "cannot read the relays: ", relays.error().message);
    return false;
  }
  std::vector<control::RelayInfo> infos;
  for (const Relay& relay : *relays) {
    control::RelayInfo info = relay_info(relay);
    // What an agent's parser accepts: 1..8 addresses, at most kMaxRelays relays.
    if (info.addresses.empty()) continue;
    if (info.addresses.size() > control::kMaxRelayAddresses)
      info.addresses.resize(control::kMaxRelayAddresses);
    if (infos.size() == control::kMaxRelays) break;
    infos.push_back(std::move(info));
  }
  if (infos == relays_) return false;
  relays_ = std::move(infos);
  relay_map_text_ = control::encode(control::RelayMap{relays_});
  return true;
}

void Server::sweep() {
  auto gone = store_.expire_ephemeral(now(), options_.ephemeral_grace);
  if (!gone) {
    log(LogLevel::warn, kLog, "cannot expire ephemeral nodes: ", gone.error().message);
  } else {
    for (const Node& node : *gone) {
      log(LogLevel::info, kLog, "ephemeral node ", node.name, " removed after ",
          options_.ephemeral_grace, " s offline");
      forget_node(node.node_key, "this ephemeral node was removed after being offline");
    }
  }
  arm(sweep_timer_, options_.sweep_interval, &Server::sweep);
}

}  // namespace knit::coordinator
