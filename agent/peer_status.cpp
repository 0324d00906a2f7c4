#include "agent/peer_status.hpp"

#include <algorithm>

namespace knit::agent {

localapi::PeerStatus peer_status(const control::PeerInfo& info, const wg::Peer* device_peer, WallTime now) {
  localapi::PeerStatus out;
  out.name = info.name;
  out.ipv4 = info.ipv4;
  out.ipv6 = info.ipv6;
  out.node_key = info.node_key;
  out.online = info.online;
  if (!info.home_relay.empty()) out.relay = info.home_relay;
  if (device_peer == nullptr) return out;
  if (device_peer->endpoint) out.endpoint = Endpoint(device_peer->endpoint->address(), device_peer->endpoint->port());
  if (device_peer->last_handshake) {
    const WallTime at = *device_peer->last_handshake;
    out.last_handshake = std::chrono::duration_cast<std::chrono::seconds>(at.time_since_epoch()).count();
    // A clock stepped backwards makes `now - at` negative: still recent.
    if (out.endpoint && now - at < localapi::kDirectPathFreshness) out.path = localapi::PathKind::direct;
  }
  out.rx_bytes = device_peer->rx_bytes;
  out.tx_bytes = device_peer->tx_bytes;
  return out;
}

std::vector<localapi::PeerStatus> peer_statuses(const std::vector<control::PeerInfo>& peers, wg::Device& device,
                                      WallTime now) {
  std::vector<localapi::PeerStatus> out;
  out.reserve(peers.size());
  for (const control::PeerInfo& info : peers) {
    if (!device.identity().empty() && info.node_key == device.identity().public_key) continue;
    out.push_back(peer_status(info, device.find_peer(info.node_key), now));
  }
  std::sort(out.begin(), out.end(), [](const localapi::PeerStatus& a, const localapi::PeerStatus& b) {
    return a.name != b.name ? a.name < b.name : a.node_key < b.node_key;
  });
  return out;
}

}  // namespace knit::agent
