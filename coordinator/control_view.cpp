#include "coordinator/control_view.hpp"

#include <algorithm>

namespace knit::coordinator {

control::PeerInfo peer_info(const Node& node) {
  control::PeerInfo peer;
  peer.name = node.name;
  peer.node_key = node.node_key;
  peer.disco_key = node.disco_key;
  peer.ipv4 = node.ipv4;
  peer.ipv6 = node.ipv6;
  peer.endpoints = node.endpoints;
  peer.home_relay = node.home_relay;
  peer.online = node.online;
  peer.last_seen = node.last_seen.value_or(0);
  peer.tags = node.tags;
  return peer;
}

control::NodeAssignment node_assignment(const Node& node) {
  return control::NodeAssignment{node.name, node.ipv4, node.ipv6, node.node_key};
}

control::MeshInfo mesh_info(const MeshSettings& mesh) {
  return control::MeshInfo{mesh.ipv4_prefix, mesh.ipv6_prefix};
}

control::V6Base v6_base_of(const MeshSettings& mesh) {
  control::V6Base base{};
  if (mesh.ipv6_prefix.address.is_v6())
    std::copy(mesh.ipv6_prefix.address.bytes(), mesh.ipv6_prefix.address.bytes() + 6, base.begin());
  return base;
}

control::RelayInfo relay_info(const Relay& relay) {
  control::RelayInfo info;
  info.name = relay.name;
  info.node_key = relay.node_key;
  info.stun_port = relay.stun_port;
  for (const auto& text : relay.addresses)
    if (auto address = control::HostPort::parse(text)) info.addresses.push_back(*address);
  return info;
}

control::ErrorCode error_code(TokenCheck check) {
  switch (check) {
    case TokenCheck::expired: return control::ErrorCode::token_expired;
    case TokenCheck::revoked: return control::ErrorCode::token_revoked;
    case TokenCheck::used: return control::ErrorCode::token_used;
    case TokenCheck::ok:  // not a refusal; callers do not ask
    case TokenCheck::unknown:
    case TokenCheck::wrong_kind: return control::ErrorCode::token_invalid;
  }
  return control::ErrorCode::token_invalid;
}

PresentedToken presented_token(const control::JoinToken& token) {
  return PresentedToken{control::token_id_hex(token.id), control::secret_hash(token.secret)};
}

}  // namespace knit::coordinator
