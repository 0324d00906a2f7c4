// What the shields and port forwards look like from outside knitd: plain data shared by the
// packet filter, the settings file, the control protocol and `knit status --json`, where it
// extends "self" (docs/ARCHITECTURE.md's fields stay as they are):
//
//   "shields_up": bool,
//   "forwards": [{"proto": "tcp"|"udp", "mesh_port": N, "target": "HOST:PORT", "active": bool,
//                 "packets_in": N, "packets_out": N, "connections": N}],
//   "filter": {"refused_v4", "refused_v6", "malformed", "untracked", "forwarded_in", "forwarded_out"}
//   "policy": {"in_force": bool, "version": N, "denied": N, "cut": N, "flows": N,
//              "rejected_updates": N, "rules": [{"name", "accepted_flows", "accepted_packets"}]}
//              (the access policy this node enforces on inbound flows; absent from older knitd)
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/ip.hpp"

namespace knit::localapi {

enum class ForwardProtocol : std::uint8_t { tcp, udp };
std::string_view to_string(ForwardProtocol protocol);
std::optional<ForwardProtocol> parse_forward_protocol(std::string_view text);

// `knit forward add PROTO MESHPORT HOST:PORT`: connections to this node's mesh IPv4 on
// mesh_port go to target.
struct ForwardRule {
  ForwardProtocol protocol = ForwardProtocol::tcp;
  std::uint16_t mesh_port = 0;
  Endpoint target;
  friend bool operator==(const ForwardRule&, const ForwardRule&) = default;
};

struct ForwardStatus {
  ForwardRule rule;
  bool active = false;  // installed in the translator (false until this node has a mesh address)
  std::uint64_t packets_in = 0;
  std::uint64_t packets_out = 0;
  std::uint64_t connections = 0;
  friend bool operator==(const ForwardStatus&, const ForwardStatus&) = default;
};

// What the filter did, since knitd started.
struct FilterCounters {
  std::uint64_t refused_v4 = 0;  // inbound IPv4 refused by the shields
  std::uint64_t refused_v6 = 0;  // inbound IPv6 refused by the shields
  std::uint64_t malformed = 0;   // dropped in either direction: not a well-formed packet
  std::uint64_t untracked = 0;   // outbound, passed without state (table full, not a flow)
  std::uint64_t forwarded_in = 0;   // translated by a port forward, mesh -> target
  std::uint64_t forwarded_out = 0;  // and back
  friend bool operator==(const FilterCounters&, const FilterCounters&) = default;
};

// The access policy as this node enforces it, since the rules last changed (per rule) or since
// knitd started (the rest).
struct PolicyRuleStatus {
  std::string name;
  std::uint64_t accepted_flows = 0;
  std::uint64_t accepted_packets = 0;
  friend bool operator==(const PolicyRuleStatus&, const PolicyRuleStatus&) = default;
};
struct PolicyStatus {
  bool in_force = false;
  std::uint64_t version = 0;
  std::vector<PolicyRuleStatus> rules;
  std::uint64_t denied = 0;            // inbound packets no rule accepted
  std::uint64_t cut = 0;               // established flows a rule change refused
  std::uint64_t flows = 0;             // inbound flows remembered now
  std::uint64_t rejected_updates = 0;  // pushed rule sets refused as malformed
  friend bool operator==(const PolicyStatus&, const PolicyStatus&) = default;
};

// All of it, as `knit status --json` shows it under "self" (absent from older knitd).
struct FilterStatus {
  bool shields_up = false;
  std::vector<ForwardStatus> forwards;
  FilterCounters counters;
  std::optional<PolicyStatus> policy;
  friend bool operator==(const FilterStatus&, const FilterStatus&) = default;
};

// Why a forward rule is refused, as a sentence for the CLI; empty when it is fine.
std::string check_forward_rule(const ForwardRule& rule);

}  // namespace knit::localapi
