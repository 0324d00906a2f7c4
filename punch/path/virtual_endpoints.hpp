// Stand-in endpoints for mesh peers. WireGuard needs an endpoint per peer before it will start a
// handshake, and its cookies bind to the sender's address; but a mesh peer's real path (direct
// UDP to some endpoint, a probe socket, or the relay) is chosen per packet by the path logic.
// So each mesh peer gets a stand-in from the discard-only prefix 100::/64 (RFC 6666), which
// never leaves knitd:
//
//   [100::<slot>]:1     slot = a small number handed out per node key, reused after release
//
// The data plane gives datagrams that came through the relay this endpoint as their source, and
// sends anything addressed to one through the path logic, never to the network.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "base/ip.hpp"
#include "wg/keys.hpp"

namespace knit::punch {

class VirtualEndpoints {
 public:
  static bool is_virtual(const Endpoint& endpoint);

  // The key's stand-in, allocating one on first use.
  Endpoint assign(const wg::PublicKey& key);
  std::optional<Endpoint> find(const wg::PublicKey& key) const;
  std::optional<wg::PublicKey> key_of(const Endpoint& endpoint) const;
  void release(const wg::PublicKey& key);
  std::size_t size() const { return by_key_.size(); }

 private:
  static Endpoint endpoint_of(std::uint32_t slot);

  std::map<wg::PublicKey, std::uint32_t> by_key_;
  std::map<std::uint32_t, wg::PublicKey> by_slot_;
  std::vector<std::uint32_t> free_;
  std::uint32_t next_ = 1;
};

}  // namespace knit::punch
