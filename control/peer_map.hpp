// Peer-map deltas. The coordinator sends a full map with a version, then deltas, each turning
// version N - 1 into version N; an agent that cannot apply a delta (a gap, or a delta that does
// not fit its map) asks for the full map again instead of guessing.
//
// Peers are identified by node key; the order of a map carries no meaning, and apply_delta
// leaves the map sorted by node key.
#pragma once

#include <vector>

#include "control/messages.hpp"

namespace knit::control {

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
