// What `knit status` shows: this node and each mesh peer, as knitd sees them right now. The JSON
// form is a contract (docs/ARCHITECTURE.md, control_protocol.hpp encodes it); this is the plain data, built
// from the peer map, the WireGuard device and the clock handed in.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "localapi/filter_status.hpp"
#include "base/ip.hpp"
#include "base/time.hpp"
#include "wg/keys.hpp"

namespace knit::localapi {

// A handshake this recent means the direct path works (WireGuard rekeys every 120 s and gives
// a session up after 180 s: REJECT_AFTER_TIME).
inline constexpr std::chrono::seconds kDirectPathFreshness{180};

// NAT discovery (netcheck) comes later; until then every field is unknown.
struct NatStatus {
  std::optional<bool> udp;
  std::optional<Endpoint> public_v4;
  std::optional<Endpoint> public_v6;
  std::optional<bool> mapping_varies;
  std::string filtering = "unknown";  // unknown | eif | adf | apdf
  // EIM | ADM | APDM (RFC 5780 tests, one relay host is enough for APDM), "varies" (peers'
  // pongs show a per-destination mapping, not how), unknown.
  std::string mapping = "unknown";
  std::string mapping_source;  // "stun", "peers" or empty (unknown)
  friend bool operator==(const NatStatus&, const NatStatus&) = default;
};

// The subnet router's SNAT (`knit nat`, agent/router_nat.hpp): one translation.
struct SnatEntry {
  std::string protocol;  // tcp | udp | icmp
  std::string internal;  // the peer's endpoint, "100.64.0.7:40000" (ICMP: the query id as port)
  std::string external;  // the router's, "10.77.0.1:61234"
  std::string remote;    // the LAN host's, "10.77.0.2:5001" (ICMP: port 0)
  std::string state;     // TCP state; "" for UDP and ICMP
  std::int64_t expires_in = 0;  // seconds until it expires without traffic
  std::int64_t idle = 0;        // seconds since its last packet (its timeout minus expires_in)
  friend bool operator==(const SnatEntry&, const SnatEntry&) = default;
};
// Its settings and counters ("self.routes.snat" in status; with entries in `knit nat`).
struct SnatStatus {
  bool enabled = true;  // --snat-routes
  bool active = false;  // translating now (enabled, and a route has an egress address: IPv4 or IPv6)
  std::string ports;    // the reserved range, "61000-61999"
  std::map<std::string, std::string> egress;  // routed prefix -> the router's address towards it
  std::string problem;                        // why not active although enabled, else ""
  std::map<std::string, std::uint64_t> counters;  // mappings, sessions, translated_*, drops_*, ...
  std::vector<SnatEntry> entries;                 // `knit nat` only
  friend bool operator==(const SnatStatus&, const SnatStatus&) = default;
};

// One accepted subnet route and the peers that carry it ("self.routes.carriers[]", knitd with
// route failover): {"prefix", "via" (the name of the carrier in use, "" for none), "candidates":
// [{"name", "node_key", "state", "reason", "silent_ms"}]}. state: "active" (traffic for the
// prefix goes to it), "standby" (alive, not used), "down" (nothing heard from it for
// seconds: agent/carrier_health.hpp), "recovering" (answering again, not trusted yet),
// "offline" (the coordinator says so). reason: why it is down, recovering or offline, else "".
// silent_ms: since the last thing heard from it, null when it is not watched (the only carrier)
// or never heard.
struct RouteCarrierCandidate {
  std::string name;
  wg::PublicKey node_key{};
  std::string state;
  std::string reason;
  std::optional<std::int64_t> silent_ms;
  friend bool operator==(const RouteCarrierCandidate&, const RouteCarrierCandidate&) = default;
};
struct RouteCarrierStatus {
  IpPrefix prefix;
  std::string via;
  std::vector<RouteCarrierCandidate> candidates;
  friend bool operator==(const RouteCarrierStatus&, const RouteCarrierStatus&) = default;
};

// What this node offers to route and whether it uses its peers' routes (`knit set
// --advertise-routes/--advertise-exit-node/--accept-routes`): "self.routes" {"advertised",
// "exit_node", "accept", "dropped_source", "snat"?}, absent from an older knitd. dropped_source: packets
// from peers whose inner source is outside the sender's allowed IPs (spoofed, or a subnet it
// does not carry for us), dropped by cryptokey routing.
// "snat": the subnet router's translation (SnatStatus above), absent from an older knitd.
// "carriers": who carries each accepted route and why others do not (RouteCarrierStatus above),
// present while accepting routes that some peer carries.
// Exit nodes (`knit set --exit-node`): "use_exit_node" (the name or IP the user chose, "" for
// none) and "exit_node_allow_lan", both absent from an older knitd.
struct RouteSettingsStatus {
  std::vector<IpPrefix> advertised;
  bool exit_node = false;
  bool accept = false;
  std::uint64_t dropped_source = 0;
  std::optional<SnatStatus> snat;  // knitd with subnet-router SNAT
  std::string use_exit;
  bool exit_allow_lan = false;
  std::vector<RouteCarrierStatus> carriers;  // "carriers" (above), absent when empty
  friend bool operator==(const RouteSettingsStatus&, const RouteSettingsStatus&) = default;
};

// The exit node this node uses: "self.exit_node" {"name", "ip", "active", "allow_lan", "state"},
// absent when none is chosen (and from an older knitd). name: the node's name once it is in the
// peer map (else what the user typed); ip: its mesh IPv4 or null; active: the default route
// goes through it now; state: "active", "unknown" (not in the peer map, pending), "not an exit
// node" (not approved) or "offline" (the host uses its own default route meanwhile).
struct ExitNodeStatus {
  std::string name;
  std::optional<IpAddress> ip;
  bool active = false;
  bool allow_lan = false;
  std::string state;
  friend bool operator==(const ExitNodeStatus&, const ExitNodeStatus&) = default;
};

struct SelfStatus {
  std::string name;
  IpAddress ipv4;
  IpAddress ipv6;
  wg::PublicKey node_key{};
  std::vector<Endpoint> endpoints;
  NatStatus nat;
  std::optional<std::string> relay;  // our home relay
  // knitd's shields and port forwards: "shields_up", "forwards", "filter" (filter_status.hpp).
  std::optional<FilterStatus> filter;
  std::optional<std::uint32_t> mtu;  // "mtu": the tunnel MTU (knitd adds it)
  std::optional<RouteSettingsStatus> routes;
  std::optional<ExitNodeStatus> exit_node;
  friend bool operator==(const SelfStatus&, const SelfStatus&) = default;
};

enum class PathKind { direct, relay, none };
std::string_view to_string(PathKind path);
std::optional<PathKind> parse_path_kind(std::string_view text);

struct PeerStatus {
  std::string name;
  IpAddress ipv4;
  IpAddress ipv6;
  wg::PublicKey node_key{};
  bool online = false;
  PathKind path = PathKind::none;
  std::optional<Endpoint> endpoint;  // where WireGuard sends to now
  std::optional<std::string> relay;  // the peer's home relay
  std::optional<double> rtt_ms;      // null until measured
  // "path_mtu": the tunnel MTU towards this peer, as path MTU discovery found it (below the
  // tunnel MTU when the path is smaller); null or absent when knitd does not know.
  std::optional<std::uint32_t> path_mtu;
  std::optional<std::int64_t> last_handshake;  // unix seconds
  std::uint64_t rx_bytes = 0;
  std::uint64_t tx_bytes = 0;
  // "routes": the approved subnet routes it carries ("0.0.0.0/0" and "::/0" for an exit node);
  // "routes_accepted": whether this node sends traffic for them through it. Both absent when it
  // carries none.
  std::vector<IpPrefix> routes;
  bool routes_accepted = false;
  friend bool operator==(const PeerStatus&, const PeerStatus&) = default;
};

struct StatusReport {
  SelfStatus self;
  std::vector<PeerStatus> peers;
  friend bool operator==(const StatusReport&, const StatusReport&) = default;
};

// How knitd's coordinator connection is doing; shown by `knit status` beside the report.
struct CoordinatorStatus {
  std::string state;    // connected | connecting | waiting | stopped
  std::string address;  // HOST:PORT while connected
  std::string error;    // the last failure, if any
  friend bool operator==(const CoordinatorStatus&, const CoordinatorStatus&) = default;
};

}  // namespace knit::localapi
