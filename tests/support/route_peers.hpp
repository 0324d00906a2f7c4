// Peers for the route tests (agent_routes_test, agent_exit_node_test): node N has a key made
// from seed N, the mesh addresses 100.64.0.N and fd7a:115c:a1e0::N, and the routes given.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "base/ip.hpp"
#include "base/random.hpp"
#include "control/messages.hpp"
#include "wg/crypto.hpp"

namespace knit::testing::routes {

inline wg::PublicKey key(std::uint8_t n) {
  SeededRandom rng(n);
  return wg::crypto::public_key_of(wg::crypto::generate_private_key(rng));
}

inline control::PeerInfo peer(std::uint8_t n, std::vector<IpPrefix> routes, bool online = true) {
  control::PeerInfo info;
  info.name = "node-" + std::to_string(n);
  info.node_key = key(n);
  info.disco_key = key(static_cast<std::uint8_t>(n + 100));
  info.ipv4 = IpAddress::parse("100.64.0." + std::to_string(n)).value();
  info.ipv6 = IpAddress::parse("fd7a:115c:a1e0::" + std::to_string(n)).value();
  info.online = online;
  info.routes = std::move(routes);
  return info;
}

}  // namespace knit::testing::routes
