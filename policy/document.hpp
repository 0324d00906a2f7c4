// The access policy document as the coordinator keeps it, parsed and checked for shape (names,
// ports, protocols, prefixes); which names exist is checked against the mesh (compile.hpp).
//
//   {
//     "groups": {"group:ops": ["alice-laptop", "tag:admin"]},   // node names and tags
//     "hosts":  {"office": "10.1.0.0/16", "nas": ["10.1.2.3", "fd00::3"]},
//     "rules": [
//       {"action": "accept", "src": ["tag:web"], "dst": ["tag:db:5432"], "proto": "tcp"},
//       {"action": "accept", "src": ["group:ops"], "dst": ["*:*"], "name": "ops anywhere"},
//       {"action": "accept", "src": ["*"], "dst": ["office:22,80-90", "[fd00::1]:443"]},
//     ],
//     "tests": [
//       {"src": "web-1", "proto": "tcp", "accept": ["db-1:5432"], "deny": ["db-1:22"]},
//     ],
//   }
//
// A selector is `*`, `tag:NAME`, `group:NAME`, a host name (from "hosts"), a node name, or an
// address or CIDR. A destination is a selector, `:`, and ports: `*` or a list of N and N-M
// (an IPv6 address before the ports goes in brackets, or carries a /length). Ports apply to TCP
// and UDP; ICMP (and any other protocol, under "any") matches only destinations with port `*`.
// "proto" is tcp, udp, icmp or any (the default). Anything no rule accepts is denied.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "base/ip.hpp"
#include "policy/json_reader.hpp"

namespace knit::policy {

// Protocols as a bit set.
enum ProtocolBits : std::uint8_t {
  kTcp = 1,
  kUdp = 2,
  kIcmp = 4,
  kOtherProtocols = 8,
  kAnyProtocol = kTcp | kUdp | kIcmp | kOtherProtocols,
};
std::string protocols_name(std::uint8_t bits);

struct PortRange {
  std::uint16_t first = 0;
  std::uint16_t last = 0;
  friend auto operator<=>(const PortRange&, const PortRange&) = default;
};
inline constexpr PortRange kAllPorts{0, 65535};

struct Selector {
  enum class Kind : std::uint8_t { any, tag, group, name, prefix };
  Kind kind = Kind::any;
  std::string name;  // tag, group, host or node name (without "tag:"/"group:")
  IpPrefix prefix;   // Kind::prefix
  Position at;
  std::string spelling;
};

struct Destination {
  Selector target;
  std::vector<PortRange> ports;  // {kAllPorts} for `*`
  Position at;
  std::string spelling;
  bool all_ports() const { return ports.size() == 1 && ports[0] == kAllPorts; }
};

struct Group {
  std::string name;
  std::vector<Selector> members;  // Kind::name (node) or Kind::tag
  Position at;
};

struct Host {
  std::string name;
  std::vector<IpPrefix> prefixes;
  Position at;
};

struct Rule {
  std::string name;  // "name", or empty
  std::uint8_t protocols = kAnyProtocol;
  std::vector<Selector> src;
  std::vector<Destination> dst;
  Position at;
};

struct PolicyTest {
  Selector src;
  std::uint8_t protocols = kTcp;  // exactly one bit
  std::vector<Destination> accept;
  std::vector<Destination> deny;
  Position at;
};

struct Document {
  std::vector<Group> groups;
  std::vector<Host> hosts;
  std::vector<Rule> rules;
  std::vector<PolicyTest> tests;

  const Group* group(std::string_view name) const;
  const Host* host(std::string_view name) const;
};

struct PolicyError {
  Position at;
  std::string message;
  // "line 3, column 7: unknown group 'ops'"
  std::string describe() const;
  friend bool operator==(const PolicyError&, const PolicyError&) = default;
};

std::variant<Document, PolicyError> parse_document(std::string_view text);

// A rule's name for people: its "name", else "rule N (line L)", N counted from 1.
std::string rule_label(const Document& doc, std::size_t index);

// Pieces, exposed for tests and the CLI: nullopt (and *why) when not valid.
std::optional<Selector> parse_selector(std::string_view text, std::string* why);
std::optional<Destination> parse_destination(std::string_view text, std::string* why);
bool valid_name(std::string_view name);  // 1..63 of a-z A-Z 0-9 - _ (a DNS label or a tag)

}  // namespace knit::policy
