// The mesh's names: every node is NAME.<domain>, A/AAAA from its mesh addresses, PTR for the
// reverse names of those addresses. Built from the peer map and the node's own assignment; the
// resolver asks it first and forwards only what it says is not ours.
//
//   NAME.<domain>         A / AAAA / ANY -> the addresses; other types -> NODATA
//   unknown.<domain>      NXDOMAIN (also a.b.<domain>: nodes have one label)
//   <domain>              NODATA (the zone exists)
//   d.c.b.a.in-addr.arpa  PTR of a node's IPv4; NXDOMAIN inside the mesh prefix, else not ours
//   nibbles.ip6.arpa      PTR of a node's IPv6; likewise for the mesh's IPv6 prefix
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "base/ip.hpp"
#include "dns/message.hpp"

namespace knit::dns {

struct MeshNode {
  std::string name;  // one label, as the coordinator assigned it
  std::optional<IpAddress> ipv4;
  std::optional<IpAddress> ipv6;
};

class MeshTable {
 public:
  enum class Kind { not_ours, answer, nodata, nxdomain };
  struct Lookup {
    Kind kind = Kind::not_ours;
    std::vector<Record> answers;
  };

  // The domain in any case, with or without the trailing dot; empty turns the table off.
  void set_domain(std::string_view domain);
  const std::string& domain() const { return domain_; }
  // The prefixes whose reverse names are ours (NXDOMAIN for unassigned addresses in them).
  void set_prefixes(std::optional<IpPrefix> v4, std::optional<IpPrefix> v6);
  // Replaces every node (the peer map changed). Names compare case-insensitively.
  void set_nodes(const std::vector<MeshNode>& nodes);
  // Follows a change of a few nodes in O(changed · log n): each of `gone` (a node as it was:
  // removed, renamed or readdressed) leaves, then each of `came` (as it is now) enters. With
  // unique names and addresses the table is then what set_nodes of the whole new list makes.
  void update_nodes(const std::vector<MeshNode>& gone, const std::vector<MeshNode>& came);
  std::size_t size() const { return by_name_.size(); }

  // name as Query::name spells it (lowercase, no trailing dot).
  Lookup lookup(const std::string& name, std::uint16_t qtype) const;
  // The answer to a parsed query when the table has one (the zone's SOA with negatives).
  std::optional<Bytes> answer(const Query& query) const;

 private:
  Lookup lookup_address(const IpAddress& address, const std::string& name, std::uint16_t qtype) const;

  std::string domain_;
  std::optional<IpPrefix> v4_prefix_;
  std::optional<IpPrefix> v6_prefix_;
  std::map<std::string, MeshNode> by_name_;  // lowercase label -> node
  std::map<IpAddress, std::string> by_address_;
};

// Reverse-name parsing: "7.0.64.100.in-addr.arpa" -> 100.64.0.7; nullopt for anything else.
std::optional<IpAddress> parse_reverse_name(const std::string& name);
// "100.64.0.7" -> "7.0.64.100.in-addr.arpa"; IPv6 as 32 nibbles under ip6.arpa.
std::string reverse_name(const IpAddress& address);
bool prefix_contains(const IpPrefix& prefix, const IpAddress& address);

}  // namespace knit::dns
