// Status rows built from knitd's live state: a peer of the map and its WireGuard peer.
#pragma once

#include <vector>

#include "control/messages.hpp"
#include "localapi/status.hpp"
#include "wg/device.hpp"

namespace knit::agent {

// One peer as status shows it. device_peer is the WireGuard peer of that key (null when it has
// none, e.g. removed by hand); now is the wall clock.
localapi::PeerStatus peer_status(const control::PeerInfo& info, const wg::Peer* device_peer, WallTime now);

// Every peer of the map (sorted by name, then key), from the device's current state.
std::vector<localapi::PeerStatus> peer_statuses(const std::vector<control::PeerInfo>& peers, wg::Device& device,
                                      WallTime now);

}  // namespace knit::agent
