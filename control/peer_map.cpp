#include "control/peer_map.hpp"

#include "base/bytes.hpp"

#include <algorithm>
#include <utility>

namespace knit::control {
namespace {

bool by_key(const PeerInfo* a, const PeerInfo* b) { return a->node_key < b->node_key; }

std::vector<const PeerInfo*> sorted_view(const std::vector<PeerInfo>& peers) {
  std::vector<const PeerInfo*> out;
  out.reserve(peers.size());
  for (const PeerInfo& peer : peers) out.push_back(&peer);
  std::sort(out.begin(), out.end(), by_key);
  return out;
}

// Node key -> position in the map, sorted by key.
using Index = std::vector<std::pair<NodeKey, std::size_t>>;

Index index_of(const std::vector<PeerInfo>& map) {
  Index out;
  out.reserve(map.size());
  for (std::size_t i = 0; i < map.size(); ++i) out.emplace_back(map[i].node_key, i);
  std::sort(out.begin(), out.end());
  return out;
}

const std::size_t* find(const Index& index, const NodeKey& key) {
  const auto it =
      std::lower_bound(index.begin(), index.end(), key,
                       [](const auto& entry, const NodeKey& k) { return entry.first < k; });
  return it != index.end() && it->first == key ? &it->second : nullptr;
}

// A key in two of the lists, or twice in one, makes the delta meaningless.
bool keys_unique(const PeerDelta& delta) {
  std::vector<NodeKey> keys(delta.removed);
  keys.reserve(keys.size() + delta.added.size() + delta.changed.size());
  for (const PeerInfo& peer : delta.added) keys.push_back(peer.node_key);
  for (const PeerInfo& peer : delta.changed) keys.push_back(peer.node_key);
  std::sort(keys.begin(), keys.end());
  return std::adjacent_find(keys.begin(), keys.end()) == keys.end();
}

}  // namespace

void sort_by_node_key(std::vector<PeerInfo>& peers) {
  std::sort(peers.begin(), peers.end(),
            [](const PeerInfo& a, const PeerInfo& b) { return a.node_key < b.node_key; });
}

PeerDelta compute_delta(const std::vector<PeerInfo>& before, const std::vector<PeerInfo>& after) {
  const auto old_peers = sorted_view(before);
  const auto new_peers = sorted_view(after);
  PeerDelta delta;
  std::size_t i = 0;
  std::size_t j = 0;
  // A merge walk over both maps in key order.
  while (i < old_peers.size() || j < new_peers.size()) {
    if (j == new_peers.size() ||
        (i < old_peers.size() && old_peers[i]->node_key < new_peers[j]->node_key)) {
      delta.removed.push_back(old_peers[i++]->node_key);
    } else if (i == old_peers.size() || new_peers[j]->node_key < old_peers[i]->node_key) {
      delta.added.push_back(*new_peers[j++]);
    } else {
      if (!(*old_peers[i] == *new_peers[j])) delta.changed.push_back(*new_peers[j]);
      ++i;
      ++j;
    }
  }
  return delta;
}

bool apply_delta(std::vector<PeerInfo>& map, const PeerDelta& delta) {
  if (!keys_unique(delta)) return false;
  const Index index = index_of(map);
  // Check everything before touching anything.
  for (const NodeKey& key : delta.removed) {
    if (find(index, key) == nullptr) return false;
  }
  for (const PeerInfo& peer : delta.changed) {
    if (find(index, peer.node_key) == nullptr) return false;
  }
  for (const PeerInfo& peer : delta.added) {
    if (find(index, peer.node_key) != nullptr) return false;
  }

  for (const PeerInfo& peer : delta.changed) map[*find(index, peer.node_key)] = peer;
  if (!delta.removed.empty()) {
    std::vector<bool> gone(map.size(), false);
    for (const NodeKey& key : delta.removed) gone[*find(index, key)] = true;
    std::size_t kept = 0;
    for (std::size_t i = 0; i < map.size(); ++i) {
      if (gone[i]) continue;
      if (kept != i) map[kept] = std::move(map[i]);
      ++kept;
    }
    map.resize(kept);
  }
  map.insert(map.end(), delta.added.begin(), delta.added.end());
  sort_by_node_key(map);
  return true;
}

std::size_t NodeKeyHash::operator()(const NodeKey& key) const noexcept {
  // Every byte counts, so keys that differ only at the end (as in tests) do not collide.
  std::uint64_t h = 0x9e3779b97f4a7c15u;
  for (std::size_t i = 0; i < key.size(); i += 8) {
    h ^= load_le64(key.data() + i);
    h *= 0xff51afd7ed558ccdu;
    h ^= h >> 33;
  }
  return static_cast<std::size_t>(h);
}

bool PeerTable::reset(PeerMap map) {
  std::unordered_map<NodeKey, std::size_t, NodeKeyHash> index;
  index.reserve(map.peers.size());
  for (std::size_t i = 0; i < map.peers.size(); ++i)
    if (!index.emplace(map.peers[i].node_key, i).second) return false;
  map_ = std::move(map);
  index_ = std::move(index);
  return true;
}

const PeerInfo* PeerTable::find(const NodeKey& key) const {
  const auto it = index_.find(key);
  return it == index_.end() ? nullptr : &map_.peers[it->second];
}

bool PeerTable::apply(const PeerDelta& delta) {
  if (map_.version == ~std::uint64_t{0} || delta.version != map_.version + 1) return false;
  if (!keys_unique(delta)) return false;
  for (const NodeKey& key : delta.removed)
    if (index_.count(key) == 0) return false;
  for (const PeerInfo& peer : delta.changed)
    if (index_.count(peer.node_key) == 0) return false;
  for (const PeerInfo& peer : delta.added)
    if (index_.count(peer.node_key) != 0) return false;

  std::vector<PeerInfo>& peers = map_.peers;
  for (const PeerInfo& peer : delta.changed) peers[index_.at(peer.node_key)] = peer;
  for (const NodeKey& key : delta.removed) {
    const auto it = index_.find(key);
    const std::size_t at = it->second;
    index_.erase(it);
    if (at != peers.size() - 1) {
      peers[at] = std::move(peers.back());
      index_[peers[at].node_key] = at;
    }
    peers.pop_back();
  }
  for (const PeerInfo& peer : delta.added) {
    index_.emplace(peer.node_key, peers.size());
    peers.push_back(peer);
  }
  map_.version = delta.version;
  return true;
}

bool apply_delta(PeerMap& map, const PeerDelta& delta) {
  if (map.version == ~std::uint64_t{0} || delta.version != map.version + 1) return false;
  if (!apply_delta(map.peers, delta)) return false;
  map.version = delta.version;
  return true;
}

}  // namespace knit::control
