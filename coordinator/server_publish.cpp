// Server: publishing the peer map and the relay map, changes made by others (the change feed),
// coordinators' leases, and the sweep that removes ephemeral nodes (and hands freed memory back).
#include <malloc.h>

#include <algorithm>
#include <set>
#include <unordered_set>

#include "base/bytes.hpp"
#include "base/log.hpp"
#include "coordinator/control_view.hpp"
#include "coordinator/server.hpp"

namespace knit::coordinator {

namespace {

constexpr std::string_view kLog = "coordinator";
// A publish may take at most this share of the loop's time: the next one waits kFanOutShare - 1
// times what the last one cost. At 10,000 sessions a publish (a seal and a write per session)
// costs tens of milliseconds, so a join storm goes out as a few versions a second instead of
// twenty, each delta carrying more joins; the entries sent stay the same, the messages, seals,
// system calls and agents' wake-ups fall several-fold. An idle mesh's first change still goes
// out after publish_delay alone.
constexpr int kFanOutShare = 5;

using control::NodeKey;
using control::PeerInfo;

std::string key_text(const NodeKey& key) { return to_base64(key); }

}  // namespace

void Server::push_relay_map() {
  std::vector<AgentSession*> removed;
  for (const auto& owner : relay_owners_) {
    // Not a structured binding: clang before 16 cannot capture one in a lambda.
    const NodeKey& key = owner.first;
    const bool listed = std::any_of(relays_.begin(), relays_.end(),
                                    [&](const control::RelayInfo& r) { return r.node_key == key; });
    if (!listed) removed.push_back(owner.second);
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

void Server::forget_node(const NodeKey& key, std::string_view why) {
  view_.remove(key);
  policy_.forget(key);
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
  auto delay = options_.publish_delay;
  const auto spacing = std::min<std::chrono::steady_clock::duration>(
      options_.max_publish_spacing, last_publish_cost_ * (kFanOutShare - 1));
  const auto wait = last_publish_started_ + last_publish_cost_ + spacing -
                    std::chrono::steady_clock::now();
  if (wait > delay) delay = wait;
  arm(publish_timer_, delay, &Server::publish);
}

void Server::publish() {
  publish_armed_ = false;
  const auto started = std::chrono::steady_clock::now();
  auto published = view_.publish();
  // With an access policy in force each agent's map holds only the peers it may reach
  // (visibility.hpp). Who sees whom can change with no peer changing (a policy set or cleared, a
  // tag): the trimmed maps then step to a version of their own.
  const bool in_force = policy_.in_force();
  if (in_force) update_policy_peers();
  const Visibility* visibility = in_force ? policy_.visibility() : nullptr;
  const std::uint64_t generation = policy_.visibility_generation();
  const bool regroup = generation != published_generation_;
  if (!published && regroup &&
      (visibility != nullptr ||
       std::any_of(owners_.begin(), owners_.end(), [](const auto& o) { return o.second->trimmed() != nullptr; })))
    published = view_.bump();
  if (!published) return;
  published_generation_ = generation;
  last_publish_started_ = started;
  // One plaintext for every session that gets the delta as it is; each seals it as it writes.
  const auto text = std::make_shared<const std::string>(std::move(published->text));
  std::size_t sent = 0;
  std::size_t trimmed = 0;
  for (const auto& [key, session] : owners_) {
    if (session->closing()) continue;
    const bool about_it =
        std::binary_search(published->keys.begin(), published->keys.end(), key);
    if (visibility != nullptr || session->trimmed() != nullptr) {
      session->send(trimmed_delta(*session, visibility, generation, regroup, *published));
      ++trimmed;
    } else if (about_it) {
      session->send(view_.delta_text_for(key));
    } else {
      session->send(text);
    }
    ++sent;
    // The delta leaves its own entry out; an agent that follows it hears of a rename here.
    if (about_it && session->wants_self()) {
      const PeerInfo* self = view_.find(key);
      control::NodeAssignment now{};
      if (self != nullptr) now = {self->name, self->ipv4, self->ipv6, self->node_key};
      if (self != nullptr && !(now == session->self_sent())) {
        session->send(control::encode(control::SelfUpdate{now}));
        session->set_self_sent(std::move(now));
      }
    }
  }
  // A relay is never in the map: it gets the delta as it is.
  for (const auto& [key, session] : relay_owners_) {
    if (session->closing()) continue;
    session->send(text);
    ++sent;
  }
  log(LogLevel::debug, kLog, "peer map version ", published->version, ": ",
      published->keys.size(), " nodes changed, sent to ", sent, " agents (", trimmed, " trimmed by the policy)");
  push_policy(in_force);
  last_publish_cost_ = std::chrono::steady_clock::now() - started;
  // A change too large for one delta goes out as several versions.
  if (view_.has_pending()) schedule_publish();
}

std::string Server::trimmed_delta(AgentSession& session, const Visibility* visibility, std::uint64_t generation,
                                  bool regroup, const PeerView::Published& published) {
  const NodeKey own = session.node_key();
  auto visible = [&](const NodeKey& k) { return k != own && (visibility == nullptr || visibility->sees(own, k)); };
  std::set<NodeKey> held;
  bool everything = regroup || session.trimmed_generation() != generation;
  // Who-sees-whom changed since this session's last delta: when the compilations in between
  // say for which nodes (policy_publisher.hpp), and this node is not one of them, only those
  // can have come into or gone out of its view, so a join storm costs O(changed) per session.
  const std::vector<NodeKey>* changes = nullptr;
  if (everything && visibility != nullptr && session.trimmed() != nullptr) {
    changes = policy_.visibility_changes(session.trimmed_generation());
    if (changes != nullptr && !std::binary_search(changes->begin(), changes->end(), own))
      everything = false;
    else
      changes = nullptr;
  }
  if (std::set<NodeKey>* mine = session.trimmed()) {
    held = std::move(*mine);
  } else {
    // It held every peer of the last version: the view now, less what this version added, plus
    // what it removed.
    view_.for_each_published([&](const NodeKey& k) {
      if (k != own && !std::binary_search(published.added.begin(), published.added.end(), k)) held.insert(k);
    });
    for (const NodeKey& k : published.keys)
      if (view_.entry(k) == nullptr && k != own) held.insert(k);
    everything = true;
  }
  std::vector<const std::string*> added, changed;
  std::vector<NodeKey> removed;
  auto consider = [&](const NodeKey& k) {
    const std::string* entry = view_.entry(k);
    const bool want = entry != nullptr && visible(k);
    const bool has = held.count(k) != 0;
    if (want && !has) {
      added.push_back(entry);
      held.insert(k);
    } else if (!want && has) {
      removed.push_back(k);
      held.erase(k);
    } else if (want && std::binary_search(published.keys.begin(), published.keys.end(), k)) {
      changed.push_back(entry);
    }
  };
  if (everything) {
    view_.for_each_published(consider);
    std::vector<NodeKey> gone;
    for (const NodeKey& k : held)
      if (view_.entry(k) == nullptr) gone.push_back(k);
    for (const NodeKey& k : gone) consider(k);
  } else {
    for (const NodeKey& k : published.keys) consider(k);
    if (changes != nullptr)
      for (const NodeKey& k : *changes)
        if (!std::binary_search(published.keys.begin(), published.keys.end(), k)) consider(k);
  }
  if (visibility == nullptr) session.set_trimmed(std::nullopt, generation);  // holds every peer again
  else session.set_trimmed(std::move(held), generation);
  return view_.delta_text_of(added, changed, removed);
}

// ---- changes made by others ----

void Server::on_store_changes(std::vector<StoreChange> changes, bool resync) {
  if (resync) return reload();
  bool relays = false;
  bool dns = false;
  bool policy = false;
  for (const StoreChange& change : changes) {
    switch (change.kind) {
      case StoreChange::Kind::node: refresh_node(change.node_key); break;
      case StoreChange::Kind::relays: relays = true; break;
      case StoreChange::Kind::nodes: return reload();
      case StoreChange::Kind::dns: dns = true; break;
      case StoreChange::Kind::policy: policy = true; break;
    }
  }
  if (relays && load_relays()) push_relay_map();
  if (dns && load_dns()) push_dns();
  if (policy && load_policy()) {
    push_policy();
    schedule_publish();  // who sees whom may have changed: the trimmed maps follow
  }
}

// One node, read again: O(log N) in the store, O(1) to publish.
void Server::refresh_node(const NodeKey& key) {
  auto node = store_.find_node(key);
  if (!node) {
    log(LogLevel::warn, kLog, "cannot read a changed node: ", node.error().message);
    return reload();
  }
  if (!*node) {
    if (view_.find(key) == nullptr) return;
    log(LogLevel::info, kLog, "node ", key_text(key), " was removed");
    return forget_node(key, "this node was removed from the mesh");
  }
  load_routes();
  PeerInfo peer = routed_peer_info(**node);
  // Presence is this coordinator's to say for its own sessions.
  if (owners_.count(key) != 0) peer.online = true;
  const PeerInfo* current = view_.find(key);
  if (current != nullptr && *current == peer) return;
  view_.set(std::move(peer));
  schedule_publish();
}

void Server::reload() {
  auto nodes = store_.list_nodes();
  if (!nodes) {
    log(LogLevel::warn, kLog, "cannot reload the nodes: ", nodes.error().message);
    return;
  }
  load_routes();
  std::unordered_set<NodeKey, control::NodeKeyHash> present;
  present.reserve(nodes->size());
  for (const Node& node : *nodes) {
    present.insert(node.node_key);
    PeerInfo peer = routed_peer_info(node);
    if (owners_.count(node.node_key) != 0) peer.online = true;  // as in refresh_node
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
  if (load_dns()) push_dns();
  if (load_policy()) {
    push_policy();
    schedule_publish();
  }
}

bool Server::load_policy() {
  auto settings = store_.policy_settings();
  if (!settings) {
    log(LogLevel::warn, kLog, "cannot read the access policy: ", settings.error().message);
    return false;
  }
  std::string why;
  const bool changed = policy_.set_settings(*settings, &why);
  if (!why.empty()) log(LogLevel::warn, kLog, why);
  if (changed)
    log(LogLevel::info, kLog, policy_.in_force() ? "access policy version " + std::to_string(policy_.version())
                                                 : std::string("no access policy: the mesh is open"));
  return changed;
}

void Server::update_policy_peers() {
  std::vector<const PeerInfo*> peers;
  for (const NodeKey& key : view_.keys())
    if (const PeerInfo* p = view_.find(key)) peers.push_back(p);
  policy_.set_peers(peers);
}

void Server::push_policy(bool peers_fresh) {
  // The mesh the rules are compiled against matters only while a policy is in force; without
  // one this costs a lookup per policy-aware session, not a walk of the whole view.
  if (policy_.in_force() && !peers_fresh) update_policy_peers();
  std::size_t sent = 0;
  for (const auto& [key, session] : owners_) {
    if (session->closing() || !session->wants_policy()) continue;
    if (auto message = policy_.message_for(key)) {
      session->send(*message);
      ++sent;
    }
  }
  if (sent > 0) log(LogLevel::debug, kLog, "access policy rules sent to ", sent, " agents");
}

bool Server::load_dns() {
  auto settings = store_.dns_settings();
  if (!settings) {
    log(LogLevel::warn, kLog, "cannot read the DNS settings: ", settings.error().message);
    return false;
  }
  std::string text = control::encode(*settings);
  if (text == dns_config_text_) return false;
  dns_config_text_ = std::move(text);
  log(LogLevel::info, kLog, "mesh domain ", settings->domain, ", ", settings->split.size(), " split-DNS domains");
  return true;
}

void Server::push_dns() {
  for (const auto& [key, session] : owners_)
    if (session->wants_dns()) session->send(dns_config_text_);
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

void Server::keep_lease() {
  const UnixSeconds t = now();
  if (auto held = store_.renew_lease(t, options_.lease_duration); !held) {
    log(LogLevel::warn, kLog, "cannot renew this coordinator's lease: ", held.error().message);
  } else if (!*held && !owners_.empty()) {
    // This loop stalled past its lease (or the database was away that long), and another
    // coordinator took these nodes offline: they are still connected here.
    log(LogLevel::warn, kLog, "this coordinator's lease had run out and another coordinator took its nodes "
        "offline: marking its ", owners_.size(), " connected nodes online again");
    ++counters_.lease_lost;
    for (const auto& owner : owners_)
      if (auto r = store_.set_node_online(owner.first, true, t); !r && r.error().code != Errc::not_found)
        log(LogLevel::warn, kLog, "cannot mark a node online: ", r.error().message);
  }
  auto expired = store_.expire_leases(t);
  if (!expired) {
    log(LogLevel::warn, kLog, "cannot expire other coordinators' leases: ", expired.error().message);
  } else if (!expired->coordinators.empty()) {
    std::string ids;
    for (const std::string& id : expired->coordinators) ids += (ids.empty() ? "" : ", ") + id;
    log(LogLevel::info, kLog, "coordinator ", ids, " stopped renewing its lease: ",
        expired->nodes.size(), " of its nodes are offline now");
    counters_.leases_expired += expired->coordinators.size();
    counters_.lease_nodes_offline += expired->nodes.size();
    // This coordinator's own notes do not come back through the feed: its view, directly.
    for (const NodeKey& key : expired->nodes) {
      const PeerInfo* current = view_.find(key);
      if (current == nullptr || !current->online || owners_.count(key) != 0) continue;
      PeerInfo peer = *current;
      peer.online = false;
      view_.set(std::move(peer));
      schedule_publish();
    }
  }
  arm(lease_timer_, options_.lease_renew_interval, &Server::keep_lease);
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
  // A join storm leaves glibc holding the freed buffers of map pages and queued deltas (tens of
  // MiB at 10,000 nodes); give them back to the system rather than keep the peak for ever.
  ::malloc_trim(0);
  arm(sweep_timer_, options_.sweep_interval, &Server::sweep);
}

}  // namespace knit::coordinator
