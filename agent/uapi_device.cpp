#include "agent/uapi_device.hpp"

#include <cerrno>

namespace knit::agent {

wg::UapiDeviceState UapiDevice::uapi_get() {
  const wg::Device& device = plane_.device();
  wg::UapiDeviceState state;
  if (!device.identity().empty()) state.private_key = device.identity().private_key;
  state.listen_port = udp_.port();
  state.fwmark = udp_.mark();
  device.for_each_peer([&](const wg::Peer& peer) {
    wg::UapiPeerState p;
    p.public_key = peer.public_key;
    p.preshared_key = peer.preshared_key;
    p.endpoint = peer.endpoint;
    if (peer.last_handshake) {
      const auto since = peer.last_handshake->time_since_epoch();
      const auto sec = std::chrono::duration_cast<std::chrono::seconds>(since);
      p.last_handshake_sec = sec.count();
      p.last_handshake_nsec = std::chrono::duration_cast<std::chrono::nanoseconds>(since - sec).count();
    }
    p.rx_bytes = peer.rx_bytes;
    p.tx_bytes = peer.tx_bytes;
    p.persistent_keepalive_interval = static_cast<std::uint16_t>(peer.timers.persistent_keepalive().count());
    p.allowed_ips = device.allowed_ips_of(peer);
    state.peers.push_back(std::move(p));
  });
  return state;
}

int UapiDevice::uapi_set(const wg::UapiSet& request) {
  // Everything that can fail is checked before anything changes, so a set is all or nothing.
  wg::Device& current = plane_.device();
  std::size_t new_peers = 0;
  for (const auto& op : request.peers)
    if (!op.remove && !op.update_only && current.find_peer(op.public_key) == nullptr)
      ++new_peers;
  if (!request.replace_peers && current.peer_count() + new_peers > wg::DeviceConfig{}.max_peers)
    return -ENOMEM;
  if (request.listen_port && udp_.set_port(*request.listen_port)) return -EADDRINUSE;
  if (request.fwmark) udp_.set_mark(*request.fwmark);
  plane_.configure([&](wg::Device& device, wg::Now t) {
    if (request.private_key) device.set_private_key(*request.private_key);
    if (request.replace_peers) device.remove_all_peers();
    for (const auto& op : request.peers) {
      if (op.remove) {
        device.remove_peer(op.public_key);
        continue;
      }
      wg::Peer* peer = device.find_peer(op.public_key);
      if (peer == nullptr) {
        if (op.update_only) continue;
        peer = device.add_peer(op.public_key, t);
        if (peer == nullptr) continue;  // our own public key: ignored, as wireguard-go does
      }
      if (op.preshared_key) device.set_preshared_key(*peer, *op.preshared_key);
      if (op.endpoint) device.set_endpoint(*peer, *op.endpoint);
      if (op.replace_allowed_ips) device.clear_allowed_ips(*peer);
      for (const auto& prefix : op.allowed_ips) device.add_allowed_ip(*peer, prefix);
      if (op.persistent_keepalive_interval)
        device.set_persistent_keepalive(*peer, std::chrono::seconds(*op.persistent_keepalive_interval), t);
    }
  });
  return 0;
}

}  // namespace knit::agent
