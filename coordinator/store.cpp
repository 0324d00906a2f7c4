// Store: what every backend shares.
#include "coordinator/store.hpp"

namespace knit::coordinator {

std::vector<Result<JoinResult>> Store::join_nodes(const std::vector<BatchedJoin>& joins,
                                                  UnixSeconds now) {
  std::vector<Result<JoinResult>> out;
  out.reserve(joins.size());
  for (const BatchedJoin& join : joins) {
    auto result = join_node(join.registration, join.token, now);
    if (result && result->token == TokenCheck::ok && result->node.endpoints != join.endpoints) {
      if (auto r = set_node_endpoints(join.registration.node_key, join.endpoints,
                                      result->node.home_relay, now)) {
        result->node.endpoints = join.endpoints;
        result->node.last_seen = now;
      }  // else: the join stands with the endpoints it had; the agent reports them again

    }
    out.push_back(std::move(result));
  }
  return out;
}

}  // namespace knit::coordinator
