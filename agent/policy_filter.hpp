// PolicyFilter: the access policy on knitd's packet path, inside the PacketFilter (between
// WireGuard and the TUN). No I/O, no clock: packets and `now` come in.
//
// The PacketFilter's engines (the NAT engine for IPv4, the IPv6 tracker) still decide first:
// a packet of a flow this host opened (or an ICMP error about one) passes as before, whatever
// the policy says, so replies to this node's own outbound flows always pass. What the engines
// call unsolicited comes here: it opens a flow into this node (or a subnet it routes) and must
// match a rule of the rule set the coordinator compiled for this node (policy/rule_set.hpp).
// An accepted flow is remembered (a bounded table keyed by the 5-tuple, idle entries retired),
// so its later packets pass with one lookup; when the rules change, every remembered flow is
// asked again and those the new rules refuse are cut (counted) — their next packet is dropped,
// also when the engine would have let it pass as a reply (a UDP flow the host answered). ICMP
// errors quoting a remembered flow pass with it. Non-first fragments pass (they are useless
// without the first, which was checked).
//
// Pushed rules are hostile input: decoded by policy/wire.hpp, refused (and counted) when
// malformed; the rules in force then stay. No policy: everything passes, nothing is kept.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/bytes.hpp"
#include "base/ip.hpp"
#include "base/time.hpp"
#include "control/messages.hpp"
#include "policy/rule_set.hpp"

namespace knit::agent {

struct PolicyRuleCounters {
  std::string name;
  std::uint64_t accepted_flows = 0;
  std::uint64_t accepted_packets = 0;
};

struct PolicyCounters {
  bool in_force = false;
  std::uint64_t version = 0;
  std::vector<PolicyRuleCounters> rules;  // in the rule set's order
  std::uint64_t denied = 0;     // inbound packets no rule accepted
  std::uint64_t cut = 0;        // remembered flows a new rule set refused
  std::uint64_t flows = 0;      // remembered now
  std::uint64_t rejected_updates = 0;  // pushed rule sets refused as malformed or stale
};

class PolicyFilter {
 public:
  enum class Verdict : std::uint8_t { pass, drop };
  static constexpr std::size_t kMaxFlows = 65536;
  static constexpr Duration kFlowIdle = std::chrono::minutes(5);

  // Applies pushed rules; false (counted, nothing changes) when they are malformed. `why`
  // says what was wrong.
  bool apply(const control::PolicyRules& pushed, std::string* why = nullptr);
  // The same with a rule set already decoded (tests, benchmarks).
  void apply(std::optional<policy::RuleSet> rules, std::uint64_t version);

  bool in_force() const { return rules_.has_value(); }
  const std::optional<policy::RuleSet>& rules() const { return rules_; }
  std::uint64_t version() const { return version_; }

  // An inbound packet the engines called unsolicited.
  Verdict unsolicited(Instant now, ByteSpan packet);
  // An inbound packet the engines passed: dropped only when it belongs to a cut flow.
  Verdict tracked(Instant now, ByteSpan packet);
  // A packet a host on a subnet this node routes sent to a peer (forwarded untranslated): the
  // flow is the LAN host's, so the peer's packets of it are replies, not new flows into the LAN,
  // and pass as replies to this host's own flows do (remembered while a policy is in force,
  // bounded like the accepted flows, never cut by a rule change).
  void routed_outbound(Instant now, ByteSpan packet);

  void expire(Instant now);
  PolicyCounters counters() const;
  // What `knit debug policy` prints.
  std::string describe() const;

 private:
  struct FlowKey {
    std::array<std::uint8_t, 16> src{}, dst{};
    std::uint16_t src_port = 0, dst_port = 0;
    std::uint8_t protocol = 0;
    bool v4 = false;
    friend bool operator==(const FlowKey&, const FlowKey&) = default;
  };
  struct FlowHash {
    std::size_t operator()(const FlowKey& k) const;
  };
  struct Flow {
    std::uint32_t rule = 0;  // index into rules_->rules()
    bool cut = false;
    Instant last_seen{};
  };
  enum class Parsed : std::uint8_t { flow, icmp_error, fragment, malformed };
  // The flow a packet belongs to (for an ICMP error: the flow its quoted packet belongs to,
  // seen from the other side, i.e. as its inbound packets are keyed).
  static Parsed parse(ByteSpan packet, FlowKey& key, FlowKey& quoted);
  static policy::FlowKey match_key(const FlowKey& key);
  std::optional<std::size_t> match(const FlowKey& key) const;

  std::optional<policy::RuleSet> rules_;
  std::uint64_t version_ = 0;
  std::unordered_map<FlowKey, Flow, FlowHash> flows_;
  // Flows LAN hosts behind this router opened towards peers, keyed as their replies come in.
  std::unordered_map<FlowKey, Instant, FlowHash> lan_opened_;
  std::vector<PolicyRuleCounters> per_rule_;
  std::uint64_t denied_ = 0;
  std::uint64_t cut_ = 0;
  std::uint64_t rejected_ = 0;
};

}  // namespace knit::agent
