#include "agent/status.hpp"

#include <algorithm>

namespace knit::agent {

std::string_view to_string(PathKind path) {
  switch (path) {
    case PathKind::direct: return "direct";
    case PathKind::relay: return "relay";
    case PathKind::none: return "none";
  }
  return "none";
}

std::optional<PathKind> parse_path_kind(std::string_view text) {
  if (text == "direct") return PathKind::direct;
  if (text == "relay") return PathKind::relay;
  if (text == "none") return PathKind::none;
  return std::nullopt;
}

PeerStatus peer_status(const control::PeerInfo& info, const wg::Peer* device_peer, WallTime now) {
  PeerStatus out;
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
    if (out.endpoint && now - at < kDirectPathFreshness) out.path = PathKind::direct;
  }
  out.rx_bytes = device_peer->rx_bytes;
  out.tx_bytes = device_peer->tx_bytes;
  return out;
}

std::vector<PeerStatus> peer_statuses(const std::vector<control::PeerInfo>& peers, wg::Device& device,
                                      WallTime now) {
  std::vector<PeerStatus> out;
  out.reserve(peers.size());
  for (const control::PeerInfo& info : peers) {
    if (!device.identity().empty() && info.node_key == device.identity().public_key) continue;
    out.push_back(peer_status(info, device.find_peer(info.node_key), now));
  }
  std::sort(out.begin(), out.end(), [](const PeerStatus& a, const PeerStatus& b) {
    return a.name != b.name ? a.name < b.name : a.node_key < b.node_key;
  });
  return out;
}

}  // namespace knit::agent
