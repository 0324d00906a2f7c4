#include "coordinator/visibility.hpp"

#include <algorithm>
#include <utility>

namespace knit::coordinator {

namespace {

// A prefix that holds every address of its family (the policy's `*` compiles to 0/0 and ::/0).
bool whole_family(const IpPrefix& prefix) { return prefix.length == 0; }

}  // namespace

Visibility Visibility::build(const std::vector<Node>& nodes) {
  Visibility v;
  // Every node's addresses, sorted, to find the nodes inside a source prefix by range.
  std::vector<std::pair<IpAddress, std::size_t>> by_address;
  by_address.reserve(nodes.size() * 2);
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    by_address.emplace_back(nodes[i].ipv4, i);
    by_address.emplace_back(nodes[i].ipv6, i);
  }
  std::sort(by_address.begin(), by_address.end());
  std::vector<std::vector<std::uint32_t>> peers(nodes.size());
  std::vector<bool> everyone(nodes.size(), false);
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    if (nodes[i].carrier) everyone[i] = true;
    if (nodes[i].rules == nullptr) continue;
    for (const policy::CompiledRule& rule : nodes[i].rules->rules()) {
      for (const IpPrefix& src : rule.src) {
        if (whole_family(src)) {
          everyone[i] = true;
          continue;
        }
        // Addresses inside a prefix are contiguous in the sorted list (same family, the
        // leading bits fixed); the network address is at or before the first of them.
        auto it = std::lower_bound(by_address.begin(), by_address.end(), std::make_pair(src.address, std::size_t{0}));
        // src.address may carry host bits: step back over addresses of the prefix before it.
        while (it != by_address.begin() && policy::prefix_contains(src, std::prev(it)->first)) --it;
        for (; it != by_address.end() && policy::prefix_contains(src, it->first); ++it)
          if (it->second != i) {
            peers[i].push_back(static_cast<std::uint32_t>(it->second));
            peers[it->second].push_back(static_cast<std::uint32_t>(i));  // symmetric: i's rules let it in, so it sees i
          }
      }
    }
  }
  v.nodes_.reserve(nodes.size());
  for (std::size_t i = 0; i < nodes.size(); ++i) {
    State s;
    s.everyone = everyone[i];
    s.position = static_cast<std::uint32_t>(i);
    if (!s.everyone) {
      s.peers = std::move(peers[i]);
      std::sort(s.peers.begin(), s.peers.end());
      s.peers.erase(std::unique(s.peers.begin(), s.peers.end()), s.peers.end());
      s.peers.shrink_to_fit();
      v.pair_entries_ += s.peers.size();
    }
    std::vector<std::uint32_t>().swap(peers[i]);
    v.nodes_[nodes[i].key] = std::move(s);
  }
  return v;
}

bool Visibility::sees(const control::NodeKey& viewer, const control::NodeKey& peer) const {
  if (viewer == peer) return false;
  const auto p = nodes_.find(peer);
  if (p != nodes_.end() && p->second.everyone) return true;
  const auto v = nodes_.find(viewer);
  if (v == nodes_.end()) return false;
  if (v->second.everyone) return true;
  if (p == nodes_.end()) return false;  // unknown to the build and not open
  return std::binary_search(v->second.peers.begin(), v->second.peers.end(), p->second.position);
}

}  // namespace knit::coordinator
