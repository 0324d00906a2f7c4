// Server: lifecycle, the accept loop, sessions and which session owns which node key.
#include "coordinator/server.hpp"

#include <ctime>
#include <stdexcept>

#include "base/bytes.hpp"
#include "base/log.hpp"
#include "coordinator/control_view.hpp"
#include "wg/crypto.hpp"

namespace knit::coordinator {

namespace {

constexpr std::string_view kLog = "coordinator";

using control::NodeKey;
using control::PeerInfo;

std::string key_text(const NodeKey& key) { return to_base64(key); }
constexpr auto kAcceptRetryDelay = std::chrono::milliseconds(100);

}  // namespace

// ---- Server ----

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
      sweep_timer_(io),
      publish_timer_(io),
      lease_timer_(io),
      handshakes_(options_.max_handshakes, options_.max_handshakes_per_source),
      view_(v6_base_of(mesh)),
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

  store_.set_coordinator_id(options_.coordinator_id);
  // Nobody is connected yet: nodes a crash left online go offline as of now.
  if (auto r = store_.mark_all_offline(now()); !r)
    throw std::runtime_error("cannot update the nodes: " + r.error().message);
  // The lease first, then the nodes of coordinators that died meanwhile go offline, before the
  // nodes are read.
  if (!options_.coordinator_id.empty()) {
    if (auto r = store_.renew_lease(now(), options_.lease_duration); !r)
      throw std::runtime_error("cannot take this coordinator's lease: " + r.error().message);
    if (auto r = store_.expire_leases(now()); !r)
      throw std::runtime_error("cannot expire other coordinators' leases: " + r.error().message);
    else if (!r->coordinators.empty())
      log(LogLevel::info, kLog, r->coordinators.size(), " coordinators had stopped renewing their lease: ",
          r->nodes.size(), " of their nodes are offline now");
  }
  // Following changes before reading the nodes: one committed meanwhile is not missed.
  feed_ = options_.change_feed ? options_.change_feed(io_, store_) : make_change_feed(io_, store_);
  if (feed_) {
    feed_->start([this, alive = std::weak_ptr<char>(alive_)](std::vector<StoreChange> changes,
                                                            bool resync) {
      if (!alive.expired() && !stopped_) on_store_changes(std::move(changes), resync);
    });
  }
  auto nodes = store_.list_nodes();
  if (!nodes) throw std::runtime_error("cannot read the nodes: " + nodes.error().message);
  std::vector<PeerInfo> peers;
  peers.reserve(nodes->size());
  load_routes();
  for (const Node& node : *nodes) peers.push_back(routed_peer_info(node));
  view_.reset(peers);
  load_relays();
  load_dns();
  load_policy();
  started_ = true;
  const auto bound = acceptor_.local_endpoint();
  log(LogLevel::info, kLog, "listening on ", bound.address().to_string(), " port ", bound.port(),
      " (", view_.size(), " nodes, ", relays_.size(), " relays, coordinator key ",
      key_text(public_key_), ")");
  accept_next();
  arm(sweep_timer_, options_.sweep_interval, &Server::sweep);
  if (!options_.coordinator_id.empty())
    arm(lease_timer_, options_.lease_renew_interval, &Server::keep_lease);
}

void Server::stop() {
  if (stopped_) return;
  stopped_ = true;
  std::error_code ignored;
  acceptor_.close(ignored);
  accept_retry_timer_.cancel();
  if (feed_) feed_->stop();
  sweep_timer_.cancel();
  publish_timer_.cancel();
  lease_timer_.cancel();
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
  // Its nodes are offline: nothing is left for the others to take over.
  if (auto r = store_.release_lease(); !r)
    log(LogLevel::warn, kLog, "cannot release this coordinator's lease: ", r.error().message);
  for (const auto& [raw, session] : sessions_) session->close(CloseReason::shutdown);
  sessions_.clear();
  handshakes_.clear();
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
         std::to_string(c.refused_connections) + ", evicted handshakes " +
         std::to_string(c.evicted_handshakes);
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
  std::error_code peer_ec;
  const asio::ip::tcp::endpoint peer = socket.remote_endpoint(peer_ec);
  if (peer_ec || sessions_.size() >= options_.max_sessions) {
    ++counters_.refused_connections;  // gone already, or the descriptors are spoken for
    std::error_code ignored;
    socket.close(ignored);
  } else {
    std::error_code ignored;
    socket.set_option(asio::ip::tcp::no_delay(true), ignored);
    SessionHost& host = *this;
    auto session =
        std::make_shared<AgentSession>(std::move(socket), key_, rng_, host, options_.session);
    sessions_.emplace(session.get(), session);
    // A full table makes room rather than turning the newcomer away (base/handshake_slots.hpp).
    const asio::ip::address from = peer.address();
    const IpAddress source = from.is_v4() ? IpAddress::v4(from.to_v4().to_uint())
                                          : IpAddress::v6(from.to_v6().to_bytes().data());
    if (auto evicted = handshakes_.admit(session.get(), source_key(source))) {
      ++counters_.evicted_handshakes;
      (*evicted)->close(CloseReason::evicted);
    }
    session->start();
  }
  accept_next();
}

void Server::on_closed(AgentSession& session, CloseReason reason) {
  if (stopped_) return;
  handshakes_.release(&session);
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
  handshakes_.release(&session);
  auto [it, inserted] = owners_of(session).try_emplace(session.node_key(), &session);
  if (inserted || it->second == &session) return;
  AgentSession* older = it->second;
  it->second = &session;
  log(LogLevel::info, kLog, session.remote(), ": replaces the session from ", older->remote());
  older->close(CloseReason::replaced);
}

}  // namespace knit::coordinator
