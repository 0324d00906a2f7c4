// Control messages: one message per channel frame (channel.hpp gives the length prefix). Peer-map
// pages and peer deltas are binary (peer_codec.hpp: they are most of the bytes at scale); every
// other message is a JSON object `{"v": 1, "type": ..., fields}`. A message with another "v" is refused as a whole
// (unsupported_version) so a future version can change anything; unknown fields are ignored.
// JSON stops here: parse_message() turns text into the validated structs below and nothing
// else in Knit sees JSON.
//
//   agent -> coordinator
//     register         {token?, disco_key, hostname, os, endpoints[], version, features[]?}
//                       (features: what this agent understands beyond the base protocol;
//                       "dns": send it dns_config)
//     endpoint_update  {endpoints[]}
//     ping             {seq}
//     nat_report       {udp, public_v4?, public_v6?, mapping_varies, filtering,
//                       relay_latency_ms{relay: ms}}
//     logout           {}  (`knit logout`: remove this node from the mesh for good; the
//                       coordinator answers by ending the session with an error
//                       {not_registered}. Sent only to a coordinator whose register_response
//                       listed the "logout" feature: an older one closes the session on a type
//                       it does not know)
//     route_advertise  {routes[], exit_node}  (what this node offers to route: subnets, and the
//                       default routes when exit_node; sent after every register_response that
//                       lists the "routes" feature and whenever `knit set` changes it. The
//                       coordinator publishes only what an admin or the token approved)
//   relay -> coordinator (knit-relay; its Noise static key is its relay key)
//     relay_register   {token?, name, addresses[], stun_port, version}
//                       (ping as an agent sends it; nothing else)
//   coordinator -> relay
//     relay_register_response {ok, error_code?, error_message?, name?}
//                       (error_* when !ok; name, as registered, when ok), then relay_map,
//                       peer_map, peer_delta, pong and error exactly as an agent gets them
//   coordinator -> agent
//     register_response {ok, error_code?, error_message?, node?{name, ipv4, ipv6, node_key},
//                        mesh?{ipv4_prefix, ipv6_prefix}, features[]?}
//                        (error_* when !ok; node and mesh when ok; features: what this
//                        coordinator understands beyond the base protocol: "logout")
//     peer_map_page    binary (peer_codec.hpp): version, index, count, peers[]
//     peer_delta       binary (peer_codec.hpp): version, added[], changed[], removed[] (keys)
//     relay_map        {relays[{name, node_key, addresses[], stun_port}]}
//     dns_config       {domain, split[{domain, resolvers[]}]}  (only to agents with the "dns"
//                       feature: an older agent would refuse an unknown type; sent after the
//                       relay map and again whenever the mesh's DNS settings change)
//     policy_rules     binary (peer_codec.hpp): the access policy's rules for traffic into
//                       this node (only to agents with the "policy" feature; on register and
//                       whenever that node's rules change)
//     self_update      {node{name, ipv4, ipv6, node_key}}  (only to agents with the "self"
//                       feature: the receiving node's own entry changed, e.g. an admin renamed
//                       it; a peer delta never carries a node's own entry)
//     pong             {seq}
//     error            {code, message}
//   peer             {name, node_key, disco_key, ipv4, ipv6, endpoints[], home_relay, online,
//                     last_seen, tags[], routes[]}
//
// Value spellings: keys are standard base64 of 32 bytes (44 characters, as `wg` shows them;
// all-zero keys are refused); endpoints "192.0.2.1:41641" / "[2001:db8::1]:41641" (no port 0,
// no unspecified address); relay addresses "host:port" (host_port.hpp); prefixes
// "100.64.0.0/10" with no host bits set; counters and seconds are JSON integers; names are
// 1..63 of [A-Za-z0-9_-], except a relay's own name in relay_register, which is a lowercase DNS
// label (a-z 0-9 and inner single '-', at most 63) as the coordinator stores it. Every list has a bound (constants.hpp); "?" marks a field that may be
// absent or null.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/ip.hpp"
#include "control/constants.hpp"
#include "control/error_code.hpp"
#include "control/host_port.hpp"
#include "wg/keys.hpp"

namespace knit::control {

using NodeKey = wg::PublicKey;
using DiscoKey = wg::PublicKey;

// ---- agent -> coordinator ----

struct RegisterRequest {
  std::optional<std::string> token;  // the join token as the user gave it; absent on a rejoin
  DiscoKey disco_key{};
  std::string hostname;  // 1..255 printable characters; the coordinator derives the node name
  std::string os;        // e.g. "linux"; at most 64
  std::vector<Endpoint> endpoints;
  std::string version;  // knitd's version; at most 64
  std::vector<std::string> features;  // at most kMaxFeatures names (see the header comment)
  friend bool operator==(const RegisterRequest&, const RegisterRequest&) = default;
};

struct EndpointUpdate {
  std::vector<Endpoint> endpoints;
  friend bool operator==(const EndpointUpdate&, const EndpointUpdate&) = default;
};

struct Ping {
  std::uint64_t seq = 0;
  friend bool operator==(const Ping&, const Ping&) = default;
};

// RFC 4787 filtering behaviour, as the natbox spells it.
enum class NatFiltering { unknown, eif, adf, apdf };

// `knit logout`: the node leaves the mesh for good (no fields).
struct Logout {
  friend bool operator==(const Logout&, const Logout&) = default;
};

struct NatReport {
  bool udp = false;                   // any STUN answer came back over UDP
  std::optional<Endpoint> public_v4;  // the STUN-mapped IPv4 endpoint
  std::optional<Endpoint> public_v6;
  bool mapping_varies = false;  // different mappings towards different servers (a hard NAT)
  NatFiltering filtering = NatFiltering::unknown;
  std::map<std::string, std::uint32_t> relay_latency_ms;  // relay name -> round trip
  friend bool operator==(const NatReport&, const NatReport&) = default;
};

// What a node offers to route (`knit up/set --advertise-routes`, `--advertise-exit-node`).
// Prefixes have no host bits set; at most kMaxRoutes.
struct RouteAdvertise {
  std::vector<IpPrefix> routes;
  bool exit_node = false;
  friend bool operator==(const RouteAdvertise&, const RouteAdvertise&) = default;
};

// ---- relay -> coordinator ----

// knit-relay registering itself. The relay key is the channel's static key, not a field.
struct RelayRegister {
  std::optional<std::string> token;  // a relay join token; absent when the relay key is known
  std::string name;                  // a lowercase DNS label (see the header comment)
  std::vector<HostPort> addresses;   // 1..8 "host:port" agents dial
  std::uint16_t stun_port = 0;       // 0: no STUN responder
  std::string version;               // knit-relay's version; at most 64
  friend bool operator==(const RelayRegister&, const RelayRegister&) = default;
};

// ---- coordinator -> relay ----

struct RelayRegisterResponse {
  bool ok = false;
  // When !ok:
  ErrorCode error_code = ErrorCode::internal;
  std::string error_message;
  // When ok: the relay's name in the relay map.
  std::string name;
  friend bool operator==(const RelayRegisterResponse&, const RelayRegisterResponse&) = default;
};

// ---- coordinator -> agent ----

struct NodeAssignment {
  std::string name;
  IpAddress ipv4;  // IPv4 family
  IpAddress ipv6;  // IPv6 family
  NodeKey node_key{};
  friend bool operator==(const NodeAssignment&, const NodeAssignment&) = default;
};

struct MeshInfo {
  IpPrefix ipv4_prefix;  // e.g. 100.64.0.0/10
  IpPrefix ipv6_prefix;  // the mesh's ULA /48
  friend bool operator==(const MeshInfo&, const MeshInfo&) = default;
};

struct RegisterResponse {
  bool ok = false;
  // When !ok:
  ErrorCode error_code = ErrorCode::internal;
  std::string error_message;  // the coordinator's detail; the agent leads with human_message()
  // When ok:
  NodeAssignment node;
  MeshInfo mesh;
  std::vector<std::string> features;  // at most kMaxFeatures names (see the header comment)
  friend bool operator==(const RegisterResponse&, const RegisterResponse&) = default;
};

struct PeerInfo {
  std::string name;
  NodeKey node_key{};
  DiscoKey disco_key{};
  IpAddress ipv4;
  IpAddress ipv6;
  std::vector<Endpoint> endpoints;
  std::string home_relay;  // a relay name; empty while it has none
  bool online = false;
  std::int64_t last_seen = 0;  // unix seconds; 0 = never
  std::vector<std::string> tags;
  std::vector<IpPrefix> routes;  // subnets it routes besides its own addresses
  friend bool operator==(const PeerInfo&, const PeerInfo&) = default;
};

// A whole peer map, as a client assembles it from pages. No two peers share a node key; the
// order of peers carries no meaning.
struct PeerMap {
  std::uint64_t version = 0;
  std::vector<PeerInfo> peers;
  friend bool operator==(const PeerMap&, const PeerMap&) = default;
};

// One page of the map at `version`: pages index 0..count-1 together hold every peer once.
struct PeerMapPage {
  std::uint64_t version = 0;
  std::uint32_t index = 0;
  std::uint32_t count = 1;
  std::vector<PeerInfo> peers;
  friend bool operator==(const PeerMapPage&, const PeerMapPage&) = default;
};

// Turns the map of version - 1 into the map of `version` (peer_map.hpp). A node key appears in
// at most one of the three lists.
struct PeerDelta {
  std::uint64_t version = 0;
  std::vector<PeerInfo> added;
  std::vector<PeerInfo> changed;  // the whole new entry
  std::vector<NodeKey> removed;
  friend bool operator==(const PeerDelta&, const PeerDelta&) = default;
};

struct RelayInfo {
  std::string name;
  NodeKey node_key{};
  std::vector<HostPort> addresses;  // 1..8
  std::uint16_t stun_port = 0;      // 0: no STUN
  friend bool operator==(const RelayInfo&, const RelayInfo&) = default;
};

struct RelayMap {
  std::vector<RelayInfo> relays;
  friend bool operator==(const RelayMap&, const RelayMap&) = default;
};

struct Pong {
  std::uint64_t seq = 0;
  friend bool operator==(const Pong&, const Pong&) = default;
};

// Names: every node is NAME.<domain>; names under a split domain go to its resolvers.
inline constexpr std::string_view kFeatureDns = "dns";
// In a register_response: the coordinator understands `logout`.
inline constexpr std::string_view kFeatureLogout = "logout";
// In a register_response: the coordinator understands `route_advertise`.
inline constexpr std::string_view kFeatureRoutes = "routes";
// Agent feature: it enforces the access policy (send it policy_rules).
inline constexpr std::string_view kFeaturePolicy = "policy";
// Agent feature: it follows changes to its own entry (send it self_update).
inline constexpr std::string_view kFeatureSelf = "self";
// The receiving node's own assignment, changed while it is connected (a rename).
struct SelfUpdate {
  NodeAssignment node;
  friend bool operator==(const SelfUpdate&, const SelfUpdate&) = default;
};
// The rules for traffic into the receiving node. `rules` is policy/wire.hpp's form, opaque to
// the control layer (the agent decodes it as hostile input); without in_force there is no
// policy and the mesh is open.
struct PolicyRules {
  bool in_force = false;
  std::string rules;
  friend bool operator==(const PolicyRules&, const PolicyRules&) = default;
};
struct SplitDns {
  std::string domain;               // lowercase, no trailing dot (is_valid_domain)
  std::vector<Endpoint> resolvers;  // 1..kMaxSplitResolvers "10.1.0.53:53"
  friend bool operator==(const SplitDns&, const SplitDns&) = default;
};
struct DnsConfig {
  std::string domain;  // the mesh domain, e.g. "knit.internal"
  std::vector<SplitDns> split;  // at most kMaxSplitDomains, no domain twice
  friend bool operator==(const DnsConfig&, const DnsConfig&) = default;
};

// The coordinator ends a session (or refuses a request) with a reason.
struct ErrorMessage {
  ErrorCode code = ErrorCode::internal;
  std::string message;
  friend bool operator==(const ErrorMessage&, const ErrorMessage&) = default;
};

// ---- parsing ----

enum class MessageError {
  too_large,  // longer than any frame
  too_deep,   // nested deeper than any message is
  not_json,
  not_object,
  unsupported_version,  // "v" is not 1
  unknown_type,
  missing_field,
  wrong_type,  // e.g. a string where a number belongs
  bad_value,   // the right type, but not a valid key, address, name, ...
  too_many,    // a list or map over its bound
  too_long,    // a string over its length
  duplicate,   // a node key listed twice
};

struct ParseError {
  MessageError kind = MessageError::not_json;
  std::string field;  // where: "peers[3].node_key"; empty for the message as a whole
  // e.g. "bad value in peers[3].node_key".
  std::string describe() const;
  friend bool operator==(const ParseError&, const ParseError&) = default;
};

using Message = std::variant<RegisterRequest, EndpointUpdate, Ping, NatReport, RegisterResponse,
                             PeerMapPage, PeerDelta, RelayMap, Pong, ErrorMessage, RelayRegister,
                             RelayRegisterResponse, DnsConfig, Logout, RouteAdvertise, PolicyRules,
                             SelfUpdate>;
using ParseResult = std::variant<RegisterRequest, EndpointUpdate, Ping, NatReport, RegisterResponse,
                                 PeerMapPage, PeerDelta, RelayMap, Pong, ErrorMessage, RelayRegister,
                                 RelayRegisterResponse, DnsConfig, Logout, RouteAdvertise, PolicyRules,
                                 SelfUpdate, ParseError>;

ParseResult parse_message(std::string_view text);
// The message, when parse_message did not fail.
std::optional<Message> to_message(ParseResult&& result);

// ---- encoding ----
// JSON strings that are not valid UTF-8 are written with U+FFFD in their place.

std::string encode(const RegisterRequest& message);
std::string encode(const EndpointUpdate& message);
std::string encode(const Ping& message);
std::string encode(const NatReport& message);
std::string encode(const RegisterResponse& message);
std::string encode(const PeerMapPage& message);  // binary (peer_codec.cpp)
std::string encode(const PeerDelta& message);    // binary (peer_codec.cpp)
std::string encode(const RelayMap& message);
std::string encode(const Pong& message);
std::string encode(const ErrorMessage& message);
std::string encode(const RelayRegister& message);
std::string encode(const RelayRegisterResponse& message);
std::string encode(const DnsConfig& message);
std::string encode(const Logout& message);
std::string encode(const RouteAdvertise& message);
std::string encode(const PolicyRules& message);  // binary (peer_codec.cpp)
std::string encode(const SelfUpdate& message);
std::string encode(const Message& message);

std::string_view to_string(NatFiltering filtering);
std::string_view to_string(MessageError error);

// A relay's name as relay_register carries it: [a-z0-9]+ joined by single '-', 1..63 long.
bool is_valid_relay_name(std::string_view name);
// A DNS domain as the mesh uses it: lowercase labels of [a-z0-9-] (no leading or trailing '-'),
// 1..63 each, joined by '.', at most 253 in all, no trailing dot.
bool is_valid_domain(std::string_view domain);

}  // namespace knit::control
