// The coordinator's side of the membership (mesh_membership.hpp): its answers to a join or
// rejoin, the peer map and its deltas, and what they change here — the WireGuard device's
// peers, the mesh paths, subnet and exit routes, the endpoints we publish. The join state
// machine and the CLI's up/down/logout are in mesh_membership.cpp.
#include "agent/mesh_membership.hpp"

#include <algorithm>

#include "base/log.hpp"
#include "control/constants.hpp"
#include "control/route_rules.hpp"

namespace knit::agent {

namespace {

std::string refusal_text(const control::RegisterResponse& response) {
  std::string text = control::human_message(response.error_code);
  if (response.error_code == control::ErrorCode::unknown && !response.error_message.empty())
    text += " (the coordinator said: " + response.error_message + ")";
  return text;
}

bool same_place(const MeshRecord& record, const control::RegisterResponse& response) {
  return record.name == response.node.name && record.ipv4 == response.node.ipv4 &&
         record.ipv6 == response.node.ipv6 && record.ipv4_prefix == response.mesh.ipv4_prefix &&
         record.ipv6_prefix == response.mesh.ipv6_prefix;
}

}  // namespace

// ---------------------------------------------------------------- the coordinator

void Membership::start_client(const MeshRecord& record, std::optional<std::string> token, bool with_paths) {
  if (with_paths) start_paths();
  refresh_endpoints();
  CoordinatorClient::Options options = options_.client;
  options.addresses = record.coordinator_addresses;
  options.coordinator_key = record.coordinator_key;
  options.token = std::move(token);
  options.disco_key = identity_->disco.public_key;
  options.hostname = record.hostname;
  options.version = options_.version;
  options.endpoints = endpoints_;
  client_.reset();
  client_ = std::make_unique<CoordinatorClient>(io_, identity_->node.private_key, std::move(options),
                                                static_cast<CoordinatorClient::Listener&>(*this), rng_);
  client_->set_route_advertise(control::RouteAdvertise{routes_.advertise, routes_.exit_node});
  client_->start();
  arm_poll();
}

void Membership::on_registered(const control::RegisterResponse& response) {
  last_problem_.clear();
  last_logged_error_.clear();
  if (pending_logout_) return send_logout();
  if (joining_) {
    MeshRecord record = *joining_;
    record.name = response.node.name;
    record.ipv4 = response.node.ipv4;
    record.ipv6 = response.node.ipv6;
    record.ipv4_prefix = response.mesh.ipv4_prefix;
    record.ipv6_prefix = response.mesh.ipv6_prefix;
    try {
      state_.save_mesh(record);
    } catch (const StateError& e) {
      return fail_up(e.what());
    }
    joining_.reset();
    up_timer_.cancel();
    mesh_ = record;
    log(LogLevel::info, "knitd", "joined the mesh as ", record.name, " (", record.ipv4.to_string(), ", ",
        record.ipv6.to_string(), ")");
    device_.configure([&](wg::Device& device, wg::Now) { device.set_private_key(identity_->node.private_key); });
    apply_self();
    if (pending_up_) {
      auto reply = std::move(pending_up_);
      pending_up_ = nullptr;
      reply(localapi::UpReply{record.name, record.ipv4, record.ipv6, false});
    }
    return;
  }
  if (mesh_ && !same_place(*mesh_, response)) {
    // Stable addresses are the coordinator's promise; follow it if it ever breaks it.
    log(LogLevel::warn, "knitd", "the coordinator moved this node to ", response.node.name, " (",
        response.node.ipv4.to_string(), ")");
    mesh_->name = response.node.name;
    mesh_->ipv4 = response.node.ipv4;
    mesh_->ipv6 = response.node.ipv6;
    mesh_->ipv4_prefix = response.mesh.ipv4_prefix;
    mesh_->ipv6_prefix = response.mesh.ipv6_prefix;
    try {
      state_.save_mesh(*mesh_);
    } catch (const StateError& e) {
      log(LogLevel::error, "knitd", e.what());
    }
    apply_self();
  }
  if (reconnecting_ && mesh_)
    answer_up(localapi::UpReply{mesh_->name, mesh_->ipv4, mesh_->ipv6, false});
}

void Membership::on_refused(const control::RegisterResponse& response, bool retrying) {
  const std::string text = refusal_text(response);
  if (joining_) return fail_up(text);
  if (pending_logout_ && !retrying) {
    // Not a member there any more (removed already): nothing left to tell it.
    return finish_logout(response.error_code == control::ErrorCode::not_registered,
                         response.error_code == control::ErrorCode::not_registered ? "" : text);
  }
  if (retrying) {
    log(LogLevel::warn, "knitd", "the coordinator refused the rejoin for now: ", text);
    return;
  }
  // The coordinator no longer has this node: the membership is over.
  log(LogLevel::error, "knitd", "the coordinator refused the rejoin: ", text);
  last_problem_ = text;
  forget_mesh("refused by the coordinator");
  if (reconnecting_) answer_up(localapi::ErrorReply{"not joined: " + text});
}

void Membership::on_peers(const control::PeerMap& map) {
  if (!joined()) return;  // a session that only logs out
  if (!peers_.reset(map)) return;  // the session's table has unique keys: not reached
  apply_peers();
  notify_names();
}

// O(size of the delta) unless it touches routes: the device's peers, the paths and (only when
// a name or address changed, or a peer came or went) the names. Subnet and exit routes are a
// choice among all peers, so a delta that touches a peer with routes (before or after), the
// exit node, or comes while the chosen exit is not found yet, goes the whole way.
void Membership::on_peer_delta(const control::PeerMap& map, const control::PeerDelta& delta) {
  if (!joined()) return;
  const std::uint64_t version = peers_.map().version;
  if (delta.version <= version && map.version == version) return;  // already in (a full map)
  if (delta.version != version + 1) return on_peers(map);
  bool routing = !routes_.use_exit.empty() && !exit_.active();
  NamesChange names;
  auto touches = [&](const control::NodeKey& key, const control::PeerInfo* now) {
    const control::PeerInfo* before = peers_.find(key);
    if ((before != nullptr && !before->routes.empty()) || (now != nullptr && !now->routes.empty()) ||
        (exit_.node && *exit_.node == key))
      routing = true;
    const bool renamed = before != nullptr && now != nullptr &&
                         (before->name != now->name || before->ipv4 != now->ipv4 || before->ipv6 != now->ipv6);
    if (before != nullptr && (now == nullptr || renamed)) names.gone.push_back(*before);
    if (now != nullptr && (before == nullptr || renamed)) names.came.push_back(*now);
  };
  for (const control::PeerInfo& peer : delta.added) touches(peer.node_key, &peer);
  for (const control::PeerInfo& peer : delta.changed) touches(peer.node_key, &peer);
  for (const control::NodeKey& key : delta.removed) touches(key, nullptr);
  if (!peers_.apply(delta)) return on_peers(map);
  if (routing) {
    apply_peers();
    notify_names();
  } else {
    apply_peer_delta(delta);
    if (!names.gone.empty() || !names.came.empty()) notify_names(&names);
  }
}

void Membership::on_self_update(const control::NodeAssignment& self) {
  if (!mesh_ || !identity_ || self.node_key != identity_->node.public_key) return;
  if (self.name == mesh_->name && self.ipv4 == mesh_->ipv4 && self.ipv6 == mesh_->ipv6) return;
  log(LogLevel::info, "knitd", "the coordinator renamed this node from ", mesh_->name, " to ", self.name);
  const bool moved = self.ipv4 != mesh_->ipv4 || self.ipv6 != mesh_->ipv6;
  mesh_->name = self.name;
  mesh_->ipv4 = self.ipv4;
  mesh_->ipv6 = self.ipv6;
  try {
    state_.save_mesh(*mesh_);
  } catch (const StateError& e) {
    log(LogLevel::error, "knitd", e.what());
  }
  if (moved) apply_self();
  notify_names();
}

void Membership::on_dns_config(const control::DnsConfig& dns) {
  if (!joined() || dns_ == dns) return;
  log(LogLevel::info, "knitd", "mesh domain ", dns.domain, ", ", dns.split.size(), " split-DNS domains");
  dns_ = dns;
  notify_names();
}

void Membership::on_policy_rules(const control::PolicyRules& rules) {
  if (!joined()) return;
  device_.set_policy_rules(rules);
}

void Membership::on_relay_map(const control::RelayMap& relays) {
  if (!joined()) return;
  relays_ = relays;
  log(LogLevel::debug, "knitd", "relay map: ", relays.relays.size(), " relays");
  if (MeshPaths* paths = this->paths()) paths->set_relays(relays_);
}

void Membership::on_unreachable(const std::string& error, Duration retry_in) {
  if (joining_) return fail_up(error);
  // Said once at warn level while it stays the same, so a long outage does not flood the log.
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(retry_in).count();
  log(error == last_logged_error_ ? LogLevel::debug : LogLevel::warn, "knitd", error, " (retrying in ", ms, " ms)");
  last_logged_error_ = error;
}

void Membership::on_disconnected(const std::string& reason) {
  log(LogLevel::warn, "knitd", "lost the coordinator: ", reason, " (reconnecting; tunnels stay up)");
}

// ---------------------------------------------------------------- applying

void Membership::apply_self() {
  if (!joined()) return;
  device_.set_mesh_address(mesh_->ipv4);
  device_.set_mesh_ipv6(mesh_->ipv6);
  const SelfAddresses self{mesh_->ipv4, mesh_->ipv6, mesh_->ipv4_prefix, mesh_->ipv6_prefix};
  for (const auto& failure : configurator_.apply_self(link_, self))
    log(LogLevel::warn, "knitd", options_.tun_name, ": ", failure);
  notify_names();
}

void Membership::apply_peers() {
  if (!joined()) return;
  PeerChanges changes;
  MeshPaths* paths = this->paths();
  const control::NodeKey self = identity_ ? identity_->node.public_key : control::NodeKey{};
  // Carriers of a prefix several peers carry are watched (carrier_watch.hpp); one that went
  // silent is avoided, and the carrier in use is kept while it works (route_choice.hpp).
  watch_.watch(routes_.accept ? contested_carriers(peers_.map().peers, self, local_) : std::vector<control::NodeKey>{});
  const RouteCarriers previous = carriers_;
  carriers_ = routes_.accept ? choose_route_carriers(peers_.map().peers, self, local_,
                                                     CarrierPreference{&previous, watch_.health().down_carriers()})
                             : RouteCarriers{};
  log_carrier_changes(previous);
  // The exit node's default routes join its allowed IPs (and only its); the host's default
  // route follows in apply_exit().
  const ExitChoice previous_exit = exit_;
  exit_ = choose_exit(peers_.map().peers, self, routes_.use_exit, exit_.node);
  add_exit_routes(carriers_, exit_, peers_.map().peers);
  if (previous_exit.state != exit_.state || previous_exit.name != exit_.name)
    log(LogLevel::info, "knitd", "exit node ", routes_.use_exit.empty() ? std::string("none") : routes_.use_exit, ": ",
        to_string(exit_.state), exit_.active() ? " (default route through the mesh)" : "");
  const auto& all = peers_.map().peers;
  device_.configure([&](wg::Device& device, wg::Now now) {
    changes = configurator_.apply_peers(device, now, all, local_, &carriers_);
    if (paths == nullptr) return;
    // A peer that published no endpoint we could use is still reachable (relay, or a path a
    // probe finds): WireGuard gets its stand-in so it will start a handshake.
    for (const control::PeerInfo& info : all) {
      if (!configurator_.manages(info.node_key)) continue;
      wg::Peer* peer = device.find_peer(info.node_key);
      if (peer == nullptr || peer->endpoint) continue;
      if (auto stand_in = paths->stand_in(info.node_key)) device.set_endpoint(*peer, *stand_in);
    }
  });
  if (paths != nullptr) {
    std::vector<control::PeerInfo> managed;
    for (const control::PeerInfo& info : all)
      if (configurator_.manages(info.node_key)) managed.push_back(info);
    paths->set_peers(managed);
  }
  for (const auto& failure : configurator_.apply_routes(link_, carriers_))
    log(LogLevel::warn, "knitd", options_.tun_name, ": ", failure);
  // knitd's own datagrams follow the host's routes: an endpoint inside a subnet routed into
  // the TUN (a router's LAN address) would send them into the tunnel they carry.
  if (paths != nullptr) paths->set_tunnelled_prefixes(configurator_.routes());
  apply_exit();
  log_changes(changes);
}

void Membership::apply_peer_delta(const control::PeerDelta& delta) {
  PeerChanges changes;
  MeshPaths* paths = this->paths();
  std::vector<const control::PeerInfo*> upserts;
  upserts.reserve(delta.added.size() + delta.changed.size());
  for (const auto* list : {&delta.added, &delta.changed})
    for (const control::PeerInfo& peer : *list) upserts.push_back(&peer);
  device_.configure([&](wg::Device& device, wg::Now now) {
    changes = configurator_.apply_peer_changes(device, now, upserts, delta.removed, local_, &carriers_);
    if (paths == nullptr) return;
    for (const control::PeerInfo* info : upserts) {
      if (!configurator_.manages(info->node_key)) continue;
      wg::Peer* peer = device.find_peer(info->node_key);
      if (peer == nullptr || peer->endpoint) continue;
      if (auto stand_in = paths->stand_in(info->node_key)) device.set_endpoint(*peer, *stand_in);
    }
  });
  if (paths != nullptr) {
    std::vector<const control::PeerInfo*> managed;
    for (const control::PeerInfo* info : upserts)
      if (configurator_.manages(info->node_key)) managed.push_back(info);
    paths->update_peers(managed, delta.removed);
  }
  log_changes(changes);
}

void Membership::log_changes(const PeerChanges& changes) {
  last_changes_ = changes;
  if (changes.added + changes.updated + changes.removed + changes.refused > 0)
    log(LogLevel::info, "knitd", "peer map ", peers_.map().version, ": ", changes.added, " added, ",
        changes.updated, " changed, ", changes.removed, " removed", changes.refused ? ", some refused" : "",
        " (", configurator_.managed_count(), " peers)");
}

void Membership::on_carrier_health_changed() {
  if (!joined()) return;
  apply_peers();
}

void Membership::log_carrier_changes(const RouteCarriers& previous) const {
  const Instant now = watch_.now();
  const auto name_of = [&](const control::NodeKey& key) {
    for (const control::PeerInfo& peer : peers_.map().peers)
      if (peer.node_key == key) return peer.name;
    return std::string("?");
  };
  for (const auto& [route, carrier] : carriers_) {
    if (control::is_default_route(route)) continue;
    auto it = previous.find(route);
    if (it == previous.end() || it->second == carrier) continue;
    std::string why;
    const auto before = std::find_if(peers_.map().peers.begin(), peers_.map().peers.end(),
                                     [&](const control::PeerInfo& p) { return p.node_key == it->second; });
    if (before == peers_.map().peers.end())
      why = " (the previous carrier left the map)";
    else if (!before->online)
      why = " (" + before->name + " is offline at the coordinator)";
    else if (auto status = watch_.health().status(it->second, now); status && !status->reason.empty())
      why = " (" + before->name + ": " + status->reason + ")";
    log(LogLevel::info, "knitd", "route ", route.to_string(), ": now through ", name_of(carrier), why);
  }
}

void Membership::apply_exit() {
  if (exit_host_ == nullptr) return;
  const std::optional<bool> mode = exit_.active() && joined() ? std::optional<bool>(routes_.exit_allow_lan) : std::nullopt;
  for (const auto& failure : exit_host_->route_default(mode)) log(LogLevel::warn, "knitd", failure);
}

void Membership::refresh_endpoints() {
  std::vector<IpPrefix> mesh_ranges;
  if (mesh_) mesh_ranges = {mesh_->ipv4_prefix, mesh_->ipv6_prefix};
  auto addresses = interface_addresses();
  auto endpoints = endpoints_to_report(addresses, device_.port(), options_.tun_name, mesh_ranges, control::kMaxEndpoints);
  const bool local_changed = addresses != local_;
  local_ = std::move(addresses);
  if (MeshPaths* paths = this->paths()) {
    // Ours plus the STUN-reflexive and port-mapped ones (a change re-probes every path).
    paths->set_interface_endpoints(endpoints);
    endpoints = paths->endpoints();
    if (endpoints.size() > control::kMaxEndpoints) endpoints.resize(control::kMaxEndpoints);
  }
  if (endpoints != endpoints_) {
    endpoints_ = std::move(endpoints);
    if (client_) client_->set_endpoints(endpoints_);
  }
  if (local_changed) apply_peers();  // a new subnet may make another endpoint the better one
}

void Membership::start_paths() {
  if (paths_ == nullptr || paths_->running() || !identity_) return;
  paths_->on_candidates_changed = [this] { on_candidates_changed(); };
  paths_->start(*identity_);
  if (!relays_.relays.empty()) paths_->set_relays(relays_);
}

void Membership::stop_paths() {
  if (paths_ != nullptr) paths_->stop();
}

void Membership::on_candidates_changed() {
  if (paths() == nullptr) return;
  auto endpoints = paths_->endpoints();
  if (endpoints.size() > control::kMaxEndpoints) endpoints.resize(control::kMaxEndpoints);
  if (endpoints != endpoints_) {
    endpoints_ = std::move(endpoints);
    if (client_) client_->set_endpoints(endpoints_);
  }
  if (auto report = paths_->nat_report(); report && client_) client_->set_nat_report(*report);
}

void Membership::arm_poll() {
  poll_timer_.expires_after(options_.endpoint_poll);
  poll_timer_.async_wait([this](std::error_code ec) {
    if (ec == asio::error::operation_aborted || !running_ || !client_) return;
    refresh_endpoints();
    arm_poll();
  });
}

// ---------------------------------------------------------------- subnet routes

void Membership::set_route_settings(const RouteSettings& settings) {
  const bool use_changed = settings.accept != routes_.accept || settings.use_exit != routes_.use_exit ||
                           settings.exit_allow_lan != routes_.exit_allow_lan;
  if (settings.use_exit != routes_.use_exit) exit_ = {};  // another choice: look it up afresh
  routes_ = settings;
  device_.set_snat_routes(routes_.snat);
  // An exit node forwards peers' internet traffic: past its engine like a subnet's (the
  // packet filter keeps this host's own mesh address out of it).
  std::vector<IpPrefix> routed = routes_.advertise;
  if (routes_.exit_node) routed.insert(routed.end(), {*IpPrefix::parse("0.0.0.0/0"), *IpPrefix::parse("::/0")});
  device_.set_routed_prefixes(routed);
  if (client_) client_->set_route_advertise(control::RouteAdvertise{routes_.advertise, routes_.exit_node});
  if (use_changed) apply_peers();
}

std::vector<IpAddress> Membership::coordinator_ips() const {
  std::vector<IpAddress> out;
  const std::optional<MeshRecord>& record = mesh_ ? mesh_ : joining_;
  if (!record) return out;
  for (const control::HostPort& address : record->coordinator_addresses)
    if (auto ip = address.ip()) out.push_back(*ip);
  return out;
}

}  // namespace knit::agent
