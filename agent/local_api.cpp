#include "agent/local_api.hpp"

#include <algorithm>
#include <cctype>
#include <type_traits>

#include "agent/peer_status.hpp"

namespace knit::agent {

namespace {

// observed_varies: peers' pongs show a per-destination mapping (MeshPaths::observed_mapping_varies).
localapi::NatStatus nat_status(const NetcheckReport& check, bool observed_varies) {
  localapi::NatStatus nat;
  // Without a STUN server to ask (no relay with STUN), whether UDP works is unknown.
  if (!check.probe.servers.empty()) nat.udp = check.probe.udp;
  nat.public_v4 = check.probe.public_v4;
  nat.public_v6 = check.probe.public_v6;
  nat.mapping_varies = check.probe.mapping_varies;
  switch (check.probe.filtering) {
    case punch::NatFiltering::endpoint_independent: nat.filtering = "eif"; break;
    case punch::NatFiltering::address_dependent: nat.filtering = "adf"; break;
    case punch::NatFiltering::address_and_port_dependent: nat.filtering = "apdf"; break;
    case punch::NatFiltering::unknown: nat.filtering = "unknown"; break;
  }
  nat.mapping = std::string(punch::to_string(check.probe.mapping));
  if (check.probe.mapping != punch::NatMapping::unknown || check.probe.mapping_varies) nat.mapping_source = "stun";
  // One STUN address cannot show a mapping that varies by address (an ADM NAT reads EIM):
  // the peers' view wins when it shows a variation STUN did not.
  if (observed_varies && !check.probe.mapping_varies.value_or(false)) {
    nat.mapping_varies = true;
    nat.mapping = "varies";
    nat.mapping_source = "peers";
  }
  return nat;
}

// The path knitd actually uses for a peer, replacing what the WireGuard state alone suggests.
void apply_path(localapi::PeerStatus& peer, const PeerPath& path) {
  switch (path.kind) {
    case punch::PathKind::direct:
      peer.path = localapi::PathKind::direct;
      peer.endpoint = path.endpoint;
      peer.rtt_ms = path.rtt_ms;
      peer.path_mtu = path.path_mtu;
      break;
    case punch::PathKind::relay:
      peer.path = localapi::PathKind::relay;
      peer.relay = path.relay;
      peer.endpoint.reset();
      peer.path_mtu = path.path_mtu;
      break;
    case punch::PathKind::none:
      // Nothing proven by a probe: a fresh handshake to a real endpoint still means direct.
      if (peer.endpoint && punch::VirtualEndpoints::is_virtual(*peer.endpoint)) {
        peer.endpoint.reset();
        peer.path = localapi::PathKind::none;
      }
      break;
  }
}

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return std::tolower(c); });
  return s;
}

}  // namespace

void LocalApi::handle_request(localapi::ControlRequest request, Reply reply) {
  std::visit(
      [&](auto& r) {
        using T = std::decay_t<decltype(r)>;
        if constexpr (std::is_same_v<T, localapi::UpRequest>) membership_.up(std::move(r), std::move(reply));
        else if constexpr (std::is_same_v<T, localapi::DownRequest>) reply(membership_.down());
        else if constexpr (std::is_same_v<T, localapi::LogoutRequest>) membership_.logout(std::move(reply));
        else if constexpr (std::is_same_v<T, localapi::StatusRequest>) reply(status());
        else if constexpr (std::is_same_v<T, localapi::IpRequest>) reply(ip());
        else if constexpr (std::is_same_v<T, localapi::PingInfoRequest>) reply(ping_info(r.peer));
        else if constexpr (std::is_same_v<T, localapi::NetcheckRequest>) netcheck(std::move(reply));
        else if constexpr (std::is_same_v<T, localapi::VersionRequest>) reply(localapi::VersionReply{membership_.version()});
        else reply(localapi::ErrorReply{"knitd cannot answer this request"});
      },
      request);
}

localapi::ControlResponse LocalApi::status() {
  if (auto error = membership_.not_joined_error()) return localapi::ErrorReply{*error};
  const MeshRecord& mesh = *membership_.mesh();
  localapi::StatusReply reply;
  localapi::SelfStatus& self = reply.status.self;
  self.name = mesh.name;
  self.ipv4 = mesh.ipv4;
  self.ipv6 = mesh.ipv6;
  if (membership_.identity()) self.node_key = membership_.identity()->node.public_key;
  self.endpoints = membership_.endpoints();
  reply.status.peers = peer_statuses(membership_.peers().peers, membership_.device(), std::chrono::system_clock::now());
  if (const MeshPaths* paths = membership_.paths()) {
    // Our home relay while the link to it is up (docs/ARCHITECTURE.md: self.relay).
    if (paths->relay_connected() && !paths->home_relay().empty()) self.relay = paths->home_relay();
    self.mtu = static_cast<std::uint32_t>(paths->tunnel_mtu());
    if (const auto& check = paths->last_netcheck()) self.nat = nat_status(*check, paths->observed_mapping_varies());
    for (localapi::PeerStatus& peer : reply.status.peers) apply_path(peer, paths->path_of(peer.node_key));
  }
  reply.coordinator = membership_.coordinator_status();
  return reply;
}

localapi::ControlResponse LocalApi::ip() const {
  if (auto error = membership_.not_joined_error()) return localapi::ErrorReply{*error};
  return localapi::IpReply{membership_.mesh()->ipv4, membership_.mesh()->ipv6};
}

localapi::ControlResponse LocalApi::ping_info(const std::string& query) {
  if (auto error = membership_.not_joined_error()) return localapi::ErrorReply{*error};
  const auto address = IpAddress::parse(query);
  for (const control::PeerInfo& peer : membership_.peers().peers) {
    const bool match = address ? (peer.ipv4 == *address || peer.ipv6 == *address) : lower(peer.name) == lower(query);
    if (!match) continue;
    localapi::PeerStatus status = peer_status(peer, membership_.device().find_peer(peer.node_key),
                                              std::chrono::system_clock::now());
    if (const MeshPaths* paths = membership_.paths()) apply_path(status, paths->path_of(peer.node_key));
    return localapi::PingInfoReply{status};
  }
  const MeshRecord& mesh = *membership_.mesh();
  if (address && (*address == mesh.ipv4 || *address == mesh.ipv6))
    return localapi::ErrorReply{query + " is this node's own address"};
  return localapi::ErrorReply{"no peer named or addressed " + query + " in the mesh: `knit status` lists them"};
}

void LocalApi::netcheck(Reply reply) {
  if (auto error = membership_.not_joined_error()) return reply(localapi::ErrorReply{*error});
  MeshPaths* paths = membership_.paths();
  if (paths == nullptr) return reply(localapi::ErrorReply{"netcheck needs knitd's data plane (not available in this process)"});
  paths->netcheck([reply = std::move(reply), paths](const NetcheckReport& report) {
    localapi::NetcheckReply out;
    out.nat = nat_status(report, paths->observed_mapping_varies());
    out.mapping = out.nat.mapping;
    out.portmap = report.portmap_protocols;
    out.portmapped = report.portmapped;
    out.relay_ms = report.relay_latency_ms;
    if (!report.home_relay.empty()) out.home_relay = report.home_relay;
    reply(std::move(out));
  });
}

}  // namespace knit::agent
