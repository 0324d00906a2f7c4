// The local control protocol between the knit CLI and knitd, over knitd's unix socket: one JSON
// object per line each way, one answer per request, in order.
//
//   request                                            answer when ok ({"ok": true, "cmd": ..., ...})
//   {"cmd": "up", "token": T?, "hostname": H?}         "name", "ipv4", "ipv6", "already_joined"
//   {"cmd": "down"}                                    "was_joined" (was connected; the
//                                                      membership stays: `up` reconnects)
//   {"cmd": "logout"}                                  "was_member", "coordinator_told",
//                                                      "name", "detail" (why not told)
//   {"cmd": "status"}                                  "status": {the docs/ARCHITECTURE.md contract},
//                                                      "coordinator": {"state", "address", "error"}
//   {"cmd": "ip"}                                      "ipv4", "ipv6"
//   {"cmd": "ping-info", "peer": NAME-OR-MESH-IP}      "peer": {a peer of the status contract}
//   {"cmd": "version"}                                 "version"
//   {"cmd": "set", "shields_up": B?, "accept_dns": B?,  "shields_up", "accept_dns"?,
//    "manage_resolv_conf": B?, "operator": USER?}         "manage_resolv_conf"? (knitd with names),
//                                                         "operator"? ("" for none)
//   {"cmd": "routes", "advertise_routes": [CIDR]?,     "routes": {RouteSettingsStatus, status.hpp}
//    "advertise_exit_node": B?, "accept_routes": B?,     (after the change; "snat_routes"
//    "snat_routes": B?, "exit_node": NAME-OR-IP?,         inside "routes.snat")
//    "exit_node_allow_lan": B?}
//   {"cmd": "nat"}                                     "nat": {SnatStatus with "entries"}
//   {"cmd": "dns-status"}                              "dns": {DnsStatus below}
//   {"cmd": "forward-add", "proto": "tcp"|"udp",       "forwards": [{"proto", "mesh_port",
//    "mesh_port": N, "target": "HOST:PORT"}              "target", "active", "packets_in",
//   {"cmd": "forward-remove", "proto", "mesh_port"}       "packets_out", "connections"}]
//   {"cmd": "forward-list"}                              (every forward, after the change)
//   any failure                                        {"ok": false, "error": "what to do"}
//
// Who may ask (agent/control_access.hpp): read-only requests (status, ip, ping-info, version,
// netcheck, dns-status, forward-list) root, the operator and members of the group knit; the
// rest (up, down, logout, set, forward-add, forward-remove) root and the operator only.
//
// `knit status --json` prints encode_status() of what it got, so the contract has one writer:
//
//   {"self": {"name", "ipv4", "ipv6", "node_key", "endpoints": [...], "nat": {"udp",
//     "public_v4", "public_v6", "mapping_varies", "filtering"}, "relay"},
//    "peers": [{"name", "ipv4", "ipv6", "node_key", "online", "path": "direct"|"relay"|"none",
//               "endpoint", "relay", "rtt_ms", "last_handshake", "rx_bytes", "tx_bytes"}]}
//
// knitd adds "self.mtu" (the tunnel MTU) and "path_mtu" to each peer (when known: the tunnel MTU
// its path carries, punch/path/pmtu.hpp).
// knitd extends "self" with its shields and port forwards (filter_status.hpp): "shields_up",
// "forwards" and "filter" (the filter's counters); absent when talking to an older knitd.
//
// Node keys are base64; endpoint, relay, rtt_ms and last_handshake are null when unknown;
// last_handshake is unix seconds. JSON stops here: both sides see only the structs below.
#pragma once

#include <cstddef>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "localapi/status.hpp"

namespace knit::localapi {

// A request line longer than this is refused (a join token is well under 1 KiB).
inline constexpr std::size_t kMaxRequestLine = 64 * 1024;
// The CLI's bound on an answer line: a status of 30k peers fits.
inline constexpr std::size_t kMaxResponseLine = 64 * 1024 * 1024;
inline constexpr std::size_t kMaxTokenText = 4096;
inline constexpr std::size_t kMaxPeerQuery = 255;
inline constexpr std::size_t kMaxUserName = 64;  // `knit set --operator`: a user name or uid

// ---- requests ----
struct UpRequest {
  std::string token;     // empty: rejoin the mesh knitd remembers
  std::string hostname;  // empty: knitd uses the host's name
  friend bool operator==(const UpRequest&, const UpRequest&) = default;
};
struct DownRequest {
  friend bool operator==(const DownRequest&, const DownRequest&) = default;
};
// `knit logout`: leave the mesh for good (the coordinator removes the node).
struct LogoutRequest {
  friend bool operator==(const LogoutRequest&, const LogoutRequest&) = default;
};
struct StatusRequest {
  friend bool operator==(const StatusRequest&, const StatusRequest&) = default;
};
struct IpRequest {
  friend bool operator==(const IpRequest&, const IpRequest&) = default;
};
struct PingInfoRequest {
  std::string peer;  // a node name or a mesh IP
  friend bool operator==(const PingInfoRequest&, const PingInfoRequest&) = default;
};
struct VersionRequest {
  friend bool operator==(const VersionRequest&, const VersionRequest&) = default;
};
// `knit set`: runtime settings; an unset field is left as it is. (`knit up --shields-up` sends
// a set before its up.)
struct SetRequest {
  std::optional<bool> shields_up;
  std::optional<bool> accept_dns;          // false: no resolver set up on the host at all
  std::optional<bool> manage_resolv_conf;  // without systemd-resolved: write /etc/resolv.conf
  // The user (a name or a numeric uid) who may change knitd without root; "" for none.
  std::optional<std::string> operator_user;
  friend bool operator==(const SetRequest&, const SetRequest&) = default;
};
struct ForwardAddRequest {
  ForwardRule rule;
  friend bool operator==(const ForwardAddRequest&, const ForwardAddRequest&) = default;
};
struct ForwardRemoveRequest {
  ForwardProtocol protocol = ForwardProtocol::tcp;
  std::uint16_t mesh_port = 0;
  friend bool operator==(const ForwardRemoveRequest&, const ForwardRemoveRequest&) = default;
};
struct ForwardListRequest {
  friend bool operator==(const ForwardListRequest&, const ForwardListRequest&) = default;
};
// `knit up/set --advertise-routes, --advertise-exit-node, --accept-routes`; unset: unchanged.
struct RoutesRequest {
  std::optional<std::vector<IpPrefix>> advertise_routes;
  std::optional<bool> advertise_exit_node;
  std::optional<bool> accept_routes;
  std::optional<bool> snat_routes;  // `--snat-routes`: the router translates routed IPv4
  // `--exit-node NAME|IP` ("" for none) and `--exit-node-allow-lan`.
  std::optional<std::string> exit_node;
  std::optional<bool> exit_node_allow_lan;
  friend bool operator==(const RoutesRequest&, const RoutesRequest&) = default;
};
// `knit nat`: the subnet router's translation table.
struct NatRequest {
  friend bool operator==(const NatRequest&, const NatRequest&) = default;
};
// `knit dns status`: what knitd configured, where.
struct DnsStatusRequest {
  friend bool operator==(const DnsStatusRequest&, const DnsStatusRequest&) = default;
};
// `knit netcheck`: a fresh NAT and relay measurement.
// `knit debug policy`: the rules this node enforces, as text.
struct PolicyDebugRequest {
  friend bool operator==(const PolicyDebugRequest&, const PolicyDebugRequest&) = default;
};
struct NetcheckRequest {
  friend bool operator==(const NetcheckRequest&, const NetcheckRequest&) = default;
};
using ControlRequest =
    std::variant<UpRequest, DownRequest, StatusRequest, IpRequest, PingInfoRequest, VersionRequest,
                 SetRequest, ForwardAddRequest, ForwardRemoveRequest, ForwardListRequest,
                 NetcheckRequest, DnsStatusRequest, LogoutRequest, RoutesRequest, PolicyDebugRequest,
                 NatRequest>;

// ---- answers ----
struct ErrorReply {
  std::string message;
  friend bool operator==(const ErrorReply&, const ErrorReply&) = default;
};
struct UpReply {
  std::string name;
  IpAddress ipv4;
  IpAddress ipv6;
  bool already_joined = false;
  friend bool operator==(const UpReply&, const UpReply&) = default;
};
struct DownReply {
  bool was_joined = false;  // false: it was not connected (down already, or not a member)
  friend bool operator==(const DownReply&, const DownReply&) = default;
};
struct LogoutReply {
  bool was_member = false;        // false: there was no mesh to leave
  bool coordinator_told = false;  // the coordinator removed the node (else: forgotten here only)
  std::string name;               // the node's name in the mesh it left
  std::string detail;             // when not told: why
  friend bool operator==(const LogoutReply&, const LogoutReply&) = default;
};
struct StatusReply {
  StatusReport status;
  CoordinatorStatus coordinator;
  friend bool operator==(const StatusReply&, const StatusReply&) = default;
};
struct IpReply {
  IpAddress ipv4;
  IpAddress ipv6;
  friend bool operator==(const IpReply&, const IpReply&) = default;
};
struct PingInfoReply {
  PeerStatus peer;
  friend bool operator==(const PingInfoReply&, const PingInfoReply&) = default;
};
struct VersionReply {
  std::string version;
  friend bool operator==(const VersionReply&, const VersionReply&) = default;
};
struct SetReply {
  bool shields_up = false;
  std::optional<bool> accept_dns;  // absent from a knitd without names
  std::optional<bool> manage_resolv_conf;
  std::optional<std::string> operator_user;  // "" for none; absent from an older knitd
  friend bool operator==(const SetReply&, const SetReply&) = default;
};
// The answer to every forward command: the forwards as they are now.
struct ForwardsReply {
  std::vector<ForwardStatus> forwards;
  friend bool operator==(const ForwardsReply&, const ForwardsReply&) = default;
};
// What `knit netcheck` reports.
struct NetcheckReply {
  NatStatus nat;                     // udp, public addresses, mapping_varies, filtering
  // EIM | ADM | APDM | varies | unknown. On the wire it is the one "mapping" field, shared with
  // nat.mapping (netcheck_from sets both): keep them equal.
  std::string mapping = "unknown";
  std::vector<std::string> portmap;  // port-mapping protocols the gateway offers: pcp, natpmp, upnp
  std::optional<Endpoint> portmapped;               // our mapped endpoint, when one is held
  std::map<std::string, std::uint32_t> relay_ms;    // relay name -> STUN round trip
  std::optional<std::string> home_relay;
  friend bool operator==(const NetcheckReply&, const NetcheckReply&) = default;
};
struct RoutesReply {
  RouteSettingsStatus routes;
  friend bool operator==(const RoutesReply&, const RoutesReply&) = default;
};
// What `knit dns status` shows.
struct DnsStatus {
  bool accept_dns = true;
  bool manage_resolv_conf = false;
  std::string mode = "off";  // "resolved" | "resolv.conf" | "off" (nothing configured on the host)
  std::string detail;        // where: the link and domains, or the file and its backup; why off
  std::string domain;        // the mesh domain ("" until the coordinator says)
  std::vector<std::string> listen;     // the resolver addresses ("100.100.100.100", ...)
  std::vector<std::string> upstreams;  // where other names go
  std::map<std::string, std::vector<std::string>> split;  // domain -> resolvers
  std::uint64_t names = 0;             // mesh names it answers
  std::map<std::string, std::uint64_t> counters;
  friend bool operator==(const DnsStatus&, const DnsStatus&) = default;
};
struct DnsStatusReply {
  DnsStatus dns;
  friend bool operator==(const DnsStatusReply&, const DnsStatusReply&) = default;
};
struct PolicyDebugReply {
  std::string text;
  friend bool operator==(const PolicyDebugReply&, const PolicyDebugReply&) = default;
};
struct NatReply {
  SnatStatus nat;
  friend bool operator==(const NatReply&, const NatReply&) = default;
};
using ControlResponse = std::variant<ErrorReply, UpReply, DownReply, StatusReply, IpReply,
                                     PingInfoReply, VersionReply, SetReply, ForwardsReply,
                                     NetcheckReply, DnsStatusReply, LogoutReply, RoutesReply,
                                     PolicyDebugReply, NatReply>;

// A failure to parse, as a sentence.
struct ProtocolError {
  std::string message;
  friend bool operator==(const ProtocolError&, const ProtocolError&) = default;
};

// One line each, without the newline.
std::string encode_request(const ControlRequest& request);
std::variant<ControlRequest, ProtocolError> parse_request(std::string_view line);
std::string encode_response(const ControlResponse& response);
std::variant<ControlResponse, ProtocolError> parse_response(std::string_view line);

// The status contract as text: indent < 0 for one line, else pretty-printed.
std::string encode_status(const StatusReport& status, int indent = -1);
// One peer of the contract, as `knit ping --json` shows it.
std::string encode_peer(const PeerStatus& peer, int indent = -1);
// The forwards as `knit forward list --json` shows them (a list of the objects above).
std::string encode_forwards(const std::vector<ForwardStatus>& forwards, int indent = -1);
// `knit netcheck --json`.
std::string encode_dns_status(const DnsStatus& dns, int indent = -1);
std::string encode_netcheck(const NetcheckReply& netcheck, int indent = -1);
// `knit nat --json`.
std::string encode_snat(const SnatStatus& snat, int indent = -1);

}  // namespace knit::localapi
