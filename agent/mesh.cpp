#include "agent/mesh.hpp"

#include <algorithm>

namespace knit::agent {

namespace {

IpPrefix host_prefix(const IpAddress& address) {
  return IpPrefix{address, static_cast<std::uint8_t>(address.is_v4() ? 32 : 128)};
}

void note(std::vector<std::string>& failures, std::error_code ec, const std::string& what) {
  if (ec) failures.push_back("cannot " + what + ": " + ec.message());
}

bool on_our_subnet(const Endpoint& candidate, const std::vector<InterfaceAddress>& local) {
  return std::any_of(local.begin(), local.end(), [&](const InterfaceAddress& entry) {
    // A host prefix (the TUN's /32, a point-to-point link) says nothing about neighbours.
    const std::size_t host_length = entry.prefix.address.is_v4() ? 32 : 128;
    return !entry.loopback && entry.prefix.length < host_length &&
           prefix_contains(entry.prefix, candidate.address());
  });
}

// Its own addresses, and the subnet routes it carries for us (none unless we accept routes).
std::vector<IpPrefix> allowed_ips_of(const control::PeerInfo& peer, const RouteCarriers* carriers) {
  std::vector<IpPrefix> out;
  if (!peer.ipv4.is_unspecified()) out.push_back(host_prefix(peer.ipv4));
  if (!peer.ipv6.is_unspecified()) out.push_back(host_prefix(peer.ipv6));
  if (carriers != nullptr)
    for (const IpPrefix& route : routes_carried_by(*carriers, peer.node_key)) out.push_back(route);
  return out;
}

}  // namespace

std::optional<Endpoint> choose_endpoint(const std::vector<Endpoint>& candidates,
                                        const std::vector<InterfaceAddress>& local) {
  std::optional<Endpoint> best;
  int best_rank = 4;
  for (const Endpoint& candidate : candidates) {
    if (candidate.port() == 0 || candidate.address().is_unspecified()) continue;
    // Lower is better: the family first, then neighbourhood.
    const int rank = (candidate.address().is_v4() ? 0 : 2) + (on_our_subnet(candidate, local) ? 0 : 1);
    if (rank < best_rank) {
      best_rank = rank;
      best = Endpoint(candidate.address(), candidate.port());
    }
  }
  return best;
}

// ---------------------------------------------------------------- the TUN

std::vector<std::string> MeshConfigurator::apply_self(LinkControl& link, const SelfAddresses& self) {
  std::vector<std::string> failures;
  if (self_ && *self_ != self) {
    // The coordinator moved us (a different mesh, or a re-numbered one): take the old away.
    auto cleared = clear_self(link);
    failures.insert(failures.end(), cleared.begin(), cleared.end());
  }
  note(failures, link.set_up(), "bring the link up");
  note(failures, link.add_address(host_prefix(self.ipv4)), "add " + host_prefix(self.ipv4).to_string());
  note(failures, link.add_address(host_prefix(self.ipv6)), "add " + host_prefix(self.ipv6).to_string());
  note(failures, link.add_route(self.ipv4_prefix), "add a route to " + self.ipv4_prefix.to_string());
  note(failures, link.add_route(self.ipv6_prefix), "add a route to " + self.ipv6_prefix.to_string());
  self_ = self;
  return failures;
}

std::vector<std::string> MeshConfigurator::clear_self(LinkControl& link) {
  std::vector<std::string> failures;
  if (!self_) return failures;
  const SelfAddresses old = *self_;
  self_.reset();
  // Missing pieces are fine: someone may have removed them by hand already.
  auto tolerate = [&](std::error_code ec, const std::string& what) {
    if (ec && ec != std::errc::no_such_process && ec != std::errc::address_not_available &&
        ec != std::errc::no_such_device)
      note(failures, ec, what);
  };
  tolerate(link.remove_route(old.ipv4_prefix), "remove the route to " + old.ipv4_prefix.to_string());
  tolerate(link.remove_route(old.ipv6_prefix), "remove the route to " + old.ipv6_prefix.to_string());
  tolerate(link.remove_address(host_prefix(old.ipv4)), "remove " + host_prefix(old.ipv4).to_string());
  tolerate(link.remove_address(host_prefix(old.ipv6)), "remove " + host_prefix(old.ipv6).to_string());
  return failures;
}

// ---------------------------------------------------------------- peers

PeerChanges MeshConfigurator::apply_peers(wg::Device& device, wg::Now now,
                                          const std::vector<control::PeerInfo>& peers,
                                          const std::vector<InterfaceAddress>& local,
                                          const RouteCarriers* carriers) {
  PeerChanges changes;
  std::map<wg::PublicKey, const control::PeerInfo*> wanted;
  for (const control::PeerInfo& peer : peers) {
    // The coordinator may list us among the peers; WireGuard cannot peer with itself.
    if (!device.identity().empty() && peer.node_key == device.identity().public_key) continue;
    wanted.emplace(peer.node_key, &peer);
  }

  for (auto it = managed_.begin(); it != managed_.end();) {
    if (wanted.count(it->first) != 0) {
      ++it;
      continue;
    }
    device.remove_peer(it->first);
    it = managed_.erase(it);
    ++changes.removed;
  }

  for (const auto& [key, info] : wanted) configure_peer(device, now, *info, local, carriers, changes);
  return changes;
}

PeerChanges MeshConfigurator::apply_peer_changes(wg::Device& device, wg::Now now,
                                                 const std::vector<const control::PeerInfo*>& upserts,
                                                 const std::vector<control::NodeKey>& removed,
                                                 const std::vector<InterfaceAddress>& local,
                                                 const RouteCarriers* carriers) {
  PeerChanges changes;
  for (const control::NodeKey& key : removed) {
    auto it = managed_.find(key);
    if (it == managed_.end()) continue;  // never ours (our own key, a refused one)
    device.remove_peer(key);
    managed_.erase(it);
    ++changes.removed;
  }
  for (const control::PeerInfo* info : upserts) {
    if (!device.identity().empty() && info->node_key == device.identity().public_key) continue;
    configure_peer(device, now, *info, local, carriers, changes);
  }
  return changes;
}

void MeshConfigurator::configure_peer(wg::Device& device, wg::Now now, const control::PeerInfo& info,
                                      const std::vector<InterfaceAddress>& local,
                                      const RouteCarriers* carriers, PeerChanges& changes) {
  ++changes.examined;
  const wg::PublicKey& key = info.node_key;
  const std::vector<IpPrefix> allowed = allowed_ips_of(info, carriers);
  const std::optional<Endpoint> chosen = choose_endpoint(info.endpoints, local);
  wg::Peer* peer = device.find_peer(key);
  auto known = managed_.find(key);
  if (peer == nullptr || known == managed_.end()) {
    // New to us: a newcomer, one removed by hand since, or a hand-made peer the map now names
    // (the map is authoritative for its own keys).
    const bool existed = peer != nullptr;
    if (peer == nullptr) peer = device.add_peer(key, now);
    if (peer == nullptr) {
      managed_.erase(key);
      ++changes.refused;
      return;
    }
    device.clear_allowed_ips(*peer);
    for (const IpPrefix& prefix : allowed) device.add_allowed_ip(*peer, prefix);
    if (chosen) device.set_endpoint(*peer, *chosen);
    device.set_persistent_keepalive(*peer, kMeshPersistentKeepalive, now);
    managed_[key] = Managed{chosen, allowed};
    ++(existed ? changes.updated : changes.added);
    return;
  }
  Managed& managed = known->second;
  bool changed = false;
  if (managed.allowed != allowed) {
    device.clear_allowed_ips(*peer);
    for (const IpPrefix& prefix : allowed) device.add_allowed_ip(*peer, prefix);
    managed.allowed = allowed;
    changed = true;
  }
  // Only a new choice moves the endpoint: WireGuard roams to wherever authenticated packets
  // come from, and a map that says nothing new must not undo that.
  if (chosen && chosen != managed.chosen) {
    device.set_endpoint(*peer, *chosen);
    changed = true;
  }
  managed.chosen = chosen;
  if (changed) ++changes.updated;
}

std::size_t MeshConfigurator::clear_peers(wg::Device& device) {
  const std::size_t count = managed_.size();
  for (const auto& [key, managed] : managed_) device.remove_peer(key);
  managed_.clear();
  return count;
}

}  // namespace knit::agent
