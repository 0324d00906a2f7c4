// Applying what the coordinator says to this host: our mesh addresses on the TUN, and one
// WireGuard peer per node of the peer map.
//
//   TUN    ipv4/32 + a route to the mesh IPv4 prefix, ipv6/128 + a route to the mesh IPv6 /48,
//          link up.
//   peers  keyed by node key; allowed IPs = its ipv4/32 and ipv6/128; endpoint = the best of its
//          reported endpoints (choose_endpoint); persistent keepalive 25 s. Peers that left the
//          map are removed. Peers configured by hand through the UAPI are never touched: the
//          configurator remembers which keys it added and only ever changes those.
//
// The configurator does no I/O of its own: it acts on a wg::Device and a LinkControl handed in,
// so tests drive it with a real Device (and a recording DeviceIo) and a recording link.
#pragma once

#include <chrono>
#include <map>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "agent/local_endpoints.hpp"
#include "agent/route_choice.hpp"
#include "base/ip.hpp"
#include "control/messages.hpp"
#include "tun/link_config.hpp"
#include "wg/device.hpp"

namespace knit::agent {

inline constexpr std::chrono::seconds kMeshPersistentKeepalive{25};

// The link operations the configurator needs, on one interface.
class LinkControl {
 public:
  virtual ~LinkControl() = default;
  virtual std::error_code set_up() = 0;
  virtual std::error_code add_address(const IpPrefix& prefix) = 0;
  virtual std::error_code remove_address(const IpPrefix& prefix) = 0;
  virtual std::error_code add_route(const IpPrefix& destination) = 0;
  virtual std::error_code remove_route(const IpPrefix& destination) = 0;
};

// LinkControl over rtnetlink (tun/link_config.hpp).
class NetlinkLinkControl final : public LinkControl {
 public:
  explicit NetlinkLinkControl(std::string ifname) : ifname_(std::move(ifname)) {}
  std::error_code set_up() override { return config_.set_up(ifname_, true); }
  std::error_code add_address(const IpPrefix& p) override { return config_.add_address(ifname_, p); }
  std::error_code remove_address(const IpPrefix& p) override { return config_.remove_address(ifname_, p); }
  std::error_code add_route(const IpPrefix& d) override { return config_.add_route(ifname_, d); }
  std::error_code remove_route(const IpPrefix& d) override { return config_.remove_route(ifname_, d); }

 private:
  std::string ifname_;
  tun::LinkConfig config_;
};

// Our own place in the mesh.
struct SelfAddresses {
  IpAddress ipv4;
  IpAddress ipv6;
  IpPrefix ipv4_prefix;  // the mesh's IPv4 range
  IpPrefix ipv6_prefix;  // the mesh's ULA /48
  friend bool operator==(const SelfAddresses&, const SelfAddresses&) = default;
};

// The endpoint to configure for a peer: IPv4 before IPv6; within a family, one inside a subnet
// of ours (a LAN neighbour) before the others; otherwise the peer's own order. nullopt when the
// peer reported none.
std::optional<Endpoint> choose_endpoint(const std::vector<Endpoint>& candidates,
                                        const std::vector<InterfaceAddress>& local);

struct PeerChanges {
  std::size_t added = 0;
  std::size_t updated = 0;  // allowed IPs or endpoint changed
  std::size_t removed = 0;
  std::size_t refused = 0;  // could not be added (our own key, or the device's peer limit)
  std::size_t examined = 0;  // peers compared with the device: the work done
};

class MeshConfigurator {
 public:
  // Addresses, routes and link state. Addresses of a previous different assignment are removed
  // first. Returns one line per failed step (empty when all went well); it goes on after a failure.
  std::vector<std::string> apply_self(LinkControl& link, const SelfAddresses& self);
  // Removes what apply_self added.
  std::vector<std::string> clear_self(LinkControl& link);
  const std::optional<SelfAddresses>& self() const { return self_; }

  // Makes the device's mesh peers match `peers` (any order). local: this host's interface
  // addresses, for the endpoint choice. carriers: the subnet routes this node accepts and who
  // carries each (route_choice.hpp), added to those peers' allowed IPs; null: none.
  PeerChanges apply_peers(wg::Device& device, wg::Now now, const std::vector<control::PeerInfo>& peers,
                          const std::vector<InterfaceAddress>& local, const RouteCarriers* carriers = nullptr);
  // The same for a peer-map delta, in O(size of the change): `upserts` are the delta's added
  // and changed peers as they are now, `removed` the keys it removed. The caller keeps the
  // carriers as they were (it goes through apply_peers when a delta touches routes).
  PeerChanges apply_peer_changes(wg::Device& device, wg::Now now,
                                 const std::vector<const control::PeerInfo*>& upserts,
                                 const std::vector<control::NodeKey>& removed,
                                 const std::vector<InterfaceAddress>& local,
                                 const RouteCarriers* carriers = nullptr);
  // Routes through the TUN for the accepted subnet routes (mesh_routes.cpp): adds the new,
  // removes the gone. Returns one line per failed step.
  std::vector<std::string> apply_routes(LinkControl& link, const RouteCarriers& carriers);
  std::vector<std::string> clear_routes(LinkControl& link) { return apply_routes(link, {}); }
  const std::vector<IpPrefix>& routes() const { return routes_; }
  // Removes every peer the configurator added.
  std::size_t clear_peers(wg::Device& device);

  bool manages(const wg::PublicKey& key) const { return managed_.count(key) != 0; }
  std::size_t managed_count() const { return managed_.size(); }

 private:
  struct Managed {
    std::optional<Endpoint> chosen;  // the endpoint we set last; WireGuard may roam away from it
    std::vector<IpPrefix> allowed;
  };

  // One peer of the map onto the device: added, or brought up to date.
  void configure_peer(wg::Device& device, wg::Now now, const control::PeerInfo& info,
                      const std::vector<InterfaceAddress>& local, const RouteCarriers* carriers,
                      PeerChanges& changes);

  std::map<wg::PublicKey, Managed> managed_;
  std::vector<IpPrefix> routes_;  // installed by apply_routes
  std::optional<SelfAddresses> self_;
};

}  // namespace knit::agent
