// The policy against the mesh: which names exist, what each node may receive, and the
// document's own tests. `Mesh` is what the coordinator knows of its nodes (tags from their
// tokens and from admins; approved routes where the routing issue provides them).
#pragma once

#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "policy/document.hpp"
#include "policy/rule_set.hpp"

namespace knit::policy {

struct MeshNode {
  std::string name;
  std::vector<std::string> tags;  // without "tag:"
  std::vector<IpAddress> addresses;
  std::vector<IpPrefix> routes;  // subnets this node routes into the mesh
};

struct Mesh {
  std::vector<MeshNode> nodes;
  const MeshNode* find(std::string_view name) const;
};

// Unknown groups, hosts and node names (tags need no node yet: tokens give them out later).
std::optional<PolicyError> check_names(const Document& doc, const Mesh& mesh);

// The rules for traffic into `node` (its own addresses and its routes).
RuleSet compile_for(const Document& doc, const Mesh& mesh, const MeshNode& node);
// A compiled rule's name: rule_label(), shortened (the name, on a UTF-8 boundary, ending in
// "...") to the kMaxRuleNameLength bytes the wire carries, so agents see what was compiled.
std::string wire_label(const Document& doc, std::size_t index);

// The same question asked directly of the document, one packet at a time (no compilation):
// the first rule that accepts a flow into `node`, or nullopt. The differential tests hold the
// compiled sets to it; `policy check` and the document's tests use it.
std::optional<std::size_t> evaluate(const Document& doc, const Mesh& mesh, const MeshNode& node, const FlowKey& flow);

// A question as `policy check SRC DST PORT/PROTO` asks it, and its answer per destination node.
struct CheckAnswer {
  std::string node;        // the destination node
  IpAddress src, dst;
  std::optional<std::size_t> rule;  // accepting rule, nullopt: denied
};
// SRC and DST: a node name, tag, host or address; `why` says what could not be resolved.
std::vector<CheckAnswer> check(const Document& doc, const Mesh& mesh, const Selector& src, const Selector& dst,
                               std::uint8_t protocol, std::uint16_t port, std::string* why);

// Runs the document's tests: the first failure, with its position.
std::optional<PolicyError> run_tests(const Document& doc, const Mesh& mesh);

// check_names, then run_tests.
std::optional<PolicyError> validate(const Document& doc, const Mesh& mesh);

// "5432/tcp", "icmp": the CLI's PORT/PROTO. nullopt when not valid.
std::optional<std::pair<std::uint8_t, std::uint16_t>> parse_port_protocol(std::string_view text);

}  // namespace knit::policy
