// A node's inbound rules, compiled from the policy (compile.hpp) or decoded from the wire
// (wire.hpp), and the matcher the agent runs on packets that would open a flow into it.
// Rules keep the policy's order; the first that matches names the verdict (and its counter).
// Matching is indexed by destination port (see by_port_), so its cost follows the rules that
// name the flow's port, not the size of the policy.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/ip.hpp"
#include "policy/document.hpp"

namespace knit::policy {

// One accepted (source, destination, protocol, port) set: one rule's destination at one node.
struct CompiledRule {
  std::uint32_t rule = 0;  // the policy's rule index
  std::string name;        // rule_label(), for people
  std::uint8_t protocols = kAnyProtocol;
  std::vector<IpPrefix> src;
  std::vector<IpPrefix> dst;
  std::vector<PortRange> ports;  // {kAllPorts} for `*`
  friend bool operator==(const CompiledRule&, const CompiledRule&) = default;
};

// What a packet opening a flow is, for matching.
struct FlowKey {
  IpAddress src;
  IpAddress dst;
  std::uint8_t ip_protocol = 0;  // 6 TCP, 17 UDP, 1 ICMP, 58 ICMPv6, ...
  std::uint16_t dst_port = 0;    // TCP and UDP only
};

std::uint8_t protocol_bit(std::uint8_t ip_protocol);

class RuleSet {
 public:
  RuleSet() = default;
  explicit RuleSet(std::vector<CompiledRule> rules);

  // The index (into rules()) of the first rule accepting the flow, or nullopt: denied.
  std::optional<std::size_t> match(const FlowKey& flow) const;
  const std::vector<CompiledRule>& rules() const { return rules_; }
  std::size_t prefix_count() const;
  // One line per rule, as `knit debug policy` prints it.
  std::string describe() const;
  friend bool operator==(const RuleSet& a, const RuleSet& b) { return a.rules_ == b.rules_; }

 private:
  struct V4 { std::uint32_t net, mask; };
  struct V6 { std::uint64_t hi, lo, mask_hi, mask_lo; };
  struct Flat {
    std::uint8_t protocols = 0;
    bool all_ports = false;
    std::uint32_t src4 = 0, src4_end = 0, src6 = 0, src6_end = 0;  // ranges into v4_/v6_
    std::uint32_t dst4 = 0, dst4_end = 0, dst6 = 0, dst6_end = 0;
    std::uint32_t ports = 0, ports_end = 0;                        // range into ports_
  };
  bool matches(const Flat& f, bool v4, std::uint32_t s4, std::uint32_t d4, std::uint64_t sh, std::uint64_t sl,
               std::uint64_t dh, std::uint64_t dl) const;

  std::vector<CompiledRule> rules_;
  std::vector<Flat> flat_;
  // An index by destination port, so a new flow is checked against the rules that name its
  // port (ranges of up to kIndexedRange ports are indexed port by port) and the wide ones
  // (all ports, longer ranges), in rule order: first match wins as in a plain scan.
  static constexpr std::uint32_t kIndexedRange = 64;
  std::unordered_map<std::uint16_t, std::vector<std::uint32_t>> by_port_;
  std::vector<std::uint32_t> wide_;
  std::vector<V4> v4_;
  std::vector<V6> v6_;
  std::vector<PortRange> ports_;
};

bool prefix_contains(const IpPrefix& prefix, const IpAddress& address);
bool prefixes_overlap(const IpPrefix& a, const IpPrefix& b);

}  // namespace knit::policy
