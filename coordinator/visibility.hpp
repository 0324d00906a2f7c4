// Who sees whom in the peer map while an access policy is in force: a node's map is trimmed to
// the peers it may exchange traffic with at all (issue 16's "map trimmed to the peers it may
// talk to", issue 18's "a node's map is trimmed to the peers it may reach"). Sans-I/O.
//
// A and B see each other when a rule compiled for A accepts flows from one of B's addresses, or
// one compiled for B accepts flows from one of A's (replies need the WireGuard peer both ways,
// so visibility is symmetric). A node that carries subnet routes or an exit is seen by everyone
// (traffic through it is judged by its own rules, which name the routed prefixes, not it). A
// node whose rules accept sources covering the whole mesh (`*`) is "open": everyone sees it and
// it sees everyone, without a list; the lists hold only the pairs the rules name, so a policy of
// a few wide rules costs little.
//
//   build(nodes)            from each node's addresses, carrier flag and compiled rule set
//   sees(viewer, peer)      O(log n)
//
// A viewer or a peer the build did not know (joined since) sees, and is seen by, only the open
// nodes and the carriers, until the next build.
#pragma once

#include <cstdint>
#include <unordered_map>
#include <vector>

#include "base/ip.hpp"
#include "control/peer_map.hpp"
#include "policy/rule_set.hpp"

namespace knit::coordinator {

class Visibility {
 public:
  struct Node {
    control::NodeKey key{};
    IpAddress ipv4;
    IpAddress ipv6;
    bool carrier = false;  // approved subnet routes or an exit
    const policy::RuleSet* rules = nullptr;  // compiled for traffic into this node
  };

  static Visibility build(const std::vector<Node>& nodes);
  bool sees(const control::NodeKey& viewer, const control::NodeKey& peer) const;
  // How many explicit pairs the lists hold (each counted once per side): what the trimming costs.
  std::size_t pair_entries() const { return pair_entries_; }

 private:
  // The lists hold positions in the build's node list, not keys: a mesh-wide rule names every
  // pair, and sorting and searching 4-byte positions costs a fraction of 32-byte keys (at 2,000
  // nodes under such a rule, sorting keys with memcmp was half of the coordinator's CPU).
  struct State {
    bool everyone = false;              // open, or a carrier: seen by all (and sees all)
    std::uint32_t position = 0;         // in the build's node list
    std::vector<std::uint32_t> peers;   // sorted: the others it sees by name of a rule
  };
  std::unordered_map<control::NodeKey, State, control::NodeKeyHash> nodes_;
  std::size_t pair_entries_ = 0;
};

}  // namespace knit::coordinator
