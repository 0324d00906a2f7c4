// Peer-map deltas. The coordinator sends a full map with a version, then deltas, each turning
// version N - 1 into version N; an agent that cannot apply a delta (a gap, or a delta that does
// not fit its map) asks for the full map again instead of guessing.
//
// Peers are identified by node key; the order of a map carries no meaning. PeerTable is what a
// client keeps: applying a delta costs O(changed peers), whatever the size of the map. The free
// functions below are the plain O(N) definition, kept as the reference PeerTable is tested
// against.
#pragma once

#include <cstddef>
#include <unordered_map>
#include <vector>

#include "control/messages.hpp"

namespace knit::control {

// Hashes all 32 bytes of a node key.
struct NodeKeyHash {
  std::size_t operator()(const NodeKey& key) const noexcept;
};

// A peer map with an index by node key. Peers stay in one vector (what map() shows), in no
// particular order: a removed peer's place is taken by the last one.
class PeerTable {
 public:
  // Replaces everything: O(N). false (and the table untouched) when two peers share a key.
  bool reset(PeerMap map);
  // Checks the whole delta first and changes nothing when it does not fit (a gap in versions,
  // a removed or changed key not in the map, an added key already in it, a key listed twice);
  // then applies it in O(delta size).
  bool apply(const PeerDelta& delta);
  const PeerMap& map() const { return map_; }
  const PeerInfo* find(const NodeKey& key) const;
  std::size_t size() const { return map_.peers.size(); }

 private:
  PeerMap map_;
  std::unordered_map<NodeKey, std::size_t, NodeKeyHash> index_;
};

// The delta that turns `before` into `after`: added (only in after), removed (only in before),
// changed (in both, with any field different; the whole new entry). Each list is sorted by node
// key; version is 0 for the caller to stamp. Both maps are expected to have unique node keys.
PeerDelta compute_delta(const std::vector<PeerInfo>& before, const std::vector<PeerInfo>& after);

// Applies the delta's content. false, with the map untouched, when the delta does not fit: a
// removed or changed key that is not in the map, an added key that already is, or a key listed
// twice. On success the map is sorted by node key.
bool apply_delta(std::vector<PeerInfo>& map, const PeerDelta& delta);

// Also requires delta.version == map.version + 1, and moves the map to that version.
bool apply_delta(PeerMap& map, const PeerDelta& delta);

// Sorts peers by node key, the order apply_delta leaves.
void sort_by_node_key(std::vector<PeerInfo>& peers);

}  // namespace knit::control
