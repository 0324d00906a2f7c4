// Server: agents and relays registering, and what agents report afterwards (endpoints, NAT).
#include <algorithm>
#include <memory>
#include <set>

#include "base/bytes.hpp"
#include "base/log.hpp"
#include "control/token.hpp"
#include "coordinator/control_view.hpp"
#include "coordinator/server.hpp"

namespace knit::coordinator {

namespace {

constexpr std::string_view kLog = "coordinator";

using control::NodeKey;
using control::PeerInfo;

std::string key_text(const NodeKey& key) { return to_base64(key); }

// A register answer (an agent's or a relay's) that refuses, saying why.
template <typename Response>
Response refusal(control::ErrorCode code, std::string message) {
  Response response;
  response.ok = false;
  response.error_code = code;
  response.error_message = std::move(message);
  return response;
}

}  // namespace

// ---- what agents say ----

std::optional<control::RegisterResponse> Server::on_register(
    AgentSession& session, const control::RegisterRequest& request) {
  const NodeKey& key = session.node_key();
  session.set_wants_dns(std::find(request.features.begin(), request.features.end(),
                                  control::kFeatureDns) != request.features.end());
  session.set_wants_policy(std::find(request.features.begin(), request.features.end(),
                                     control::kFeaturePolicy) != request.features.end());
  session.set_wants_self(std::find(request.features.begin(), request.features.end(),
                                   control::kFeatureSelf) != request.features.end());
  auto refuse = [&](control::ErrorCode code, std::string message) {
    log(LogLevel::info, kLog, session.remote(), ": refused ", key_text(key), ": ",
        control::to_string(code), " (", message, ")");
    return refusal<control::RegisterResponse>(code, std::move(message));
  };

  std::optional<PresentedToken> presented;
  if (std::string why; request.token && !read_token(*request.token, presented, why))
    return refuse(control::ErrorCode::token_invalid, why);
  // Stored with the others that arrive in this turn of the loop, in one transaction.
  auto it = sessions_.find(&session);
  if (it == sessions_.end()) return refuse(control::ErrorCode::internal, "the session is gone");
  pending_joins_.push_back(PendingJoin{
      it->second,
      BatchedJoin{NodeRegistration{key, request.disco_key, request.hostname, request.os},
                  std::move(presented), request.endpoints}});
  if (!joins_posted_) {
    joins_posted_ = true;
    asio::post(io_, [this, alive = std::weak_ptr<char>(alive_)] {
      if (!alive.expired()) store_joins();
    });
  }
  return std::nullopt;
}

void Server::store_joins() {
  joins_posted_ = false;
  std::vector<PendingJoin> pending;
  pending.swap(pending_joins_);
  if (stopped_) return;
  // Sessions that closed while they waited are not joined (nobody would take them offline).
  std::erase_if(pending, [](const PendingJoin& p) { return p.session->closing(); });
  if (pending.empty()) return;
  std::vector<BatchedJoin> joins;
  joins.reserve(pending.size());
  for (PendingJoin& p : pending) joins.push_back(std::move(p.join));
  auto results = store_.join_nodes(joins, now());
  for (std::size_t i = 0; i < pending.size(); ++i) {
    AgentSession& session = *pending[i].session;
    // Stored but gone meanwhile (answering another closed it): offline again, unless another
    // session holds the node now.
    if (session.closing()) {
      const bool joined = results[i] && results[i]->token == TokenCheck::ok;
      if (joined && owners_.count(session.node_key()) == 0)
        if (auto r = store_.set_node_online(session.node_key(), false, now()); !r)
          log(LogLevel::warn, kLog, "cannot mark a node offline: ", r.error().message);
      continue;
    }
    session.answer_register(finish_register(session, joins[i], results[i]));
  }
}

control::RegisterResponse Server::finish_register(AgentSession& session, const BatchedJoin& join,
                                                  Result<JoinResult>& joined) {
  const NodeKey& key = session.node_key();
  const bool presented = join.token.has_value();
  auto refuse = [&](control::ErrorCode code, std::string message) {
    log(LogLevel::info, kLog, session.remote(), ": refused ", key_text(key), ": ",
        control::to_string(code), " (", message, ")");
    return refusal<control::RegisterResponse>(code, std::move(message));
  };
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
  Node node = std::move(joined->node);  // with the endpoints it reported (join_nodes)
  take_ownership(session);
  log(LogLevel::info, kLog, session.remote(), ": ", node.name,
      joined->created ? " joined as " : " is back as ", node.ipv4.to_string());
  control::RegisterResponse response;
  response.ok = true;
  response.node = node_assignment(node);
  session.set_self_sent(response.node);
  response.mesh = mesh_info(mesh_);
  response.features = {std::string(control::kFeatureLogout), std::string(control::kFeatureRoutes)};
  view_.set(routed_peer_info(node));
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

void Server::on_open(AgentSession& session) {
  // The published map, at the current version: pending changes (this node's own arrival among
  // them) follow as the next delta.
  if (!session.send(relay_map_text_)) return;
  if (session.wants_dns() && !dns_config_text_.empty() && !session.send(dns_config_text_)) return;
  // The rules before the peers, so they are in force before any peer is configured. A node
  // not yet in the view gets them when its arrival is published.
  // Only this session's: O(1), where pushing to everybody would make each join O(N).
  if (session.wants_policy() && session.role() != AgentSession::Role::relay) {
    policy_.forget(session.node_key());
    if (auto message = policy_.message_for(session.node_key()); message && !session.send(*message)) return;
  }
  std::shared_ptr<const MapSnapshot> snapshot = view_.snapshot();
  // With an access policy in force the map holds only the peers this node may reach
  // (visibility.hpp); the session remembers which, so the deltas that follow keep to them.
  if (session.role() != AgentSession::Role::relay && policy_.in_force()) {
    if (const Visibility* visibility = policy_.visibility()) {
      auto only = std::make_shared<std::vector<NodeKey>>();
      for (const NodeKey& k : snapshot->keys())
        if (visibility->sees(session.node_key(), k)) only->push_back(k);
      session.set_trimmed(std::set<NodeKey>(only->begin(), only->end()), policy_.visibility_generation());
      session.send_map(std::move(snapshot), std::move(only));
      return;
    }
  }
  session.send_map(std::move(snapshot));
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

// `knit logout`: the node is removed as `nodes remove` would; its session ends with
// not_registered, which tells the agent it is done. A removal that fails ends the session with
// an internal error instead (the agent sees it was not removed).
void Server::on_logout(AgentSession& session) {
  if (!is_owner(session)) return;
  const NodeKey key = session.node_key();
  auto removed = store_.remove_node(key);
  if (!removed) {
    log(LogLevel::warn, kLog, "cannot remove ", key_text(key), " as it logs out: ", removed.error().message);
    control::ErrorMessage message{control::ErrorCode::internal,
                                  "the coordinator could not remove this node; try again later"};
    session.close_after(control::encode(message), CloseReason::io_error);
    return;
  }
  log(LogLevel::info, kLog, session.remote(), ": ", removed->name, " (", removed->ipv4.to_string(),
      ") logged out and was removed");
  forget_node(key, "this node logged out of the mesh");
}

void Server::update_node(const NodeKey& key, const std::vector<Endpoint>& endpoints,
                         const std::string& home_relay) {
  const UnixSeconds t = now();
  if (auto r = store_.set_node_endpoints(key, endpoints, home_relay, t); !r) {
    // not_found: removed by an admin a moment ago; the change feed tells everyone.
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

}  // namespace knit::coordinator
