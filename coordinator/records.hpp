// What the coordinator remembers: the mesh's settings, join tokens, nodes and relays. Plain
// values; the Store reads and writes them, the server turns them into control messages.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/ip.hpp"
#include "wg/keys.hpp"

namespace knit::coordinator {

// Wall-clock seconds since the Unix epoch. Passed in by the caller, never read by the store.
using UnixSeconds = std::int64_t;

// control::secret_hash of a token's secret: the secret itself is never stored.
using SecretHash = std::array<std::uint8_t, 32>;

// How long an ephemeral node may stay disconnected before it is removed (serve can change it).
inline constexpr UnixSeconds kDefaultEphemeralGrace = 10 * 60;

// Fixed when the mesh is first used. The IPv6 prefix is a random ULA /48 (RFC 4193 §3.2).
struct MeshSettings {
  IpPrefix ipv4_prefix;
  IpPrefix ipv6_prefix;
  friend bool operator==(const MeshSettings&, const MeshSettings&) = default;
};

struct Token {
  std::string id;  // 16 hex digits, the public half of a join token
  SecretHash secret_hash{};
  bool reusable = false;   // otherwise one use only
  bool ephemeral = false;  // nodes joining with it are removed when they go away
  bool relay = false;      // for knit-relay, registering a relay rather than a node
  bool revoked = false;
  std::optional<UnixSeconds> expires_at;  // none: never expires
  std::vector<std::string> tags;
  std::uint64_t uses = 0;
  UnixSeconds created_at = 0;
};

struct Node {
  wg::PublicKey node_key{};
  wg::PublicKey disco_key{};
  std::string name;      // unique DNS label, derived from the hostname
  std::string hostname;  // as the host reported it
  std::string os;
  IpAddress ipv4;
  IpAddress ipv6;
  std::vector<std::string> tags;
  bool ephemeral = false;
  std::string token_id;  // the token it last joined with
  UnixSeconds created_at = 0;
  std::optional<UnixSeconds> last_seen;
  bool online = false;
  std::vector<Endpoint> endpoints;
  std::string home_relay;  // a relay name; empty when none is chosen yet
  std::optional<UnixSeconds> disconnected_at;
};

struct Relay {
  std::string name;
  wg::PublicKey node_key{};
  std::vector<std::string> addresses;  // "host:port" agents connect to
  std::uint16_t stun_port = 0;         // 0: no STUN responder
  UnixSeconds registered_at = 0;
  bool online = false;                  // connected to a coordinator now
  std::optional<UnixSeconds> last_seen{};  // when it last connected or went away
};

}  // namespace knit::coordinator
