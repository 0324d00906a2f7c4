// The mesh's names on this host: keeps the resolver's table (DnsService) in step with the
// membership, points the host at it (HostDns) when the user lets it, and answers the CLI's
// `knit set --accept-dns/--manage-resolv-conf` and `knit dns status`, in front of the rest of
// the CLI's requests. The two settings are kept in STATE/dns.conf across restarts.
#pragma once

#include <filesystem>

#include "agent/control_server.hpp"
#include "agent/dns_service.hpp"
#include "agent/host_dns.hpp"
#include "agent/mesh_membership.hpp"

namespace knit::agent {

// 100.100.100.100: the default resolver address (never a node's: coordinator/ipam.hpp).
inline constexpr std::uint32_t kDefaultResolverIpv4 = 0x64646464;

struct DnsSettings {
  bool accept_dns = true;
  bool manage_resolv_conf = false;
  friend bool operator==(const DnsSettings&, const DnsSettings&) = default;
};
std::string encode_dns_settings(const DnsSettings& settings);
DnsSettings parse_dns_settings(const std::string& text);  // unknown lines ignored
// The IPv6 resolver address: the mesh ULA /48 with the IPv4 resolver as its last 32 bits, as
// the coordinator maps every node's IPv4 to its IPv6 (so it is never a node's either).
IpAddress resolver_ipv6(const IpPrefix& ula, const IpAddress& resolver_v4);
// Why `resolver` (--resolver-address) cannot serve a mesh on `mesh_v4`, as a sentence; empty
// when it can. The coordinator reserves only 100.100.100.100: another address inside the mesh
// prefix may be, or become, a node's, whose traffic this host would then answer itself.
std::string resolver_address_problem(const IpAddress& resolver, const IpPrefix& mesh_v4);

class DnsControl final : public ControlHandler {
 public:
  struct Options {
    std::filesystem::path state_dir;
    std::string tun_name;
    IpAddress resolver_v4 = IpAddress::v4(kDefaultResolverIpv4);
    // Routes the resolver address into the TUN when the mesh prefix does not cover it (a mesh
    // on 10.77.0.0/16, or --resolver-address outside it). May be null (tests).
    LinkControl* link = nullptr;
  };

  DnsControl(Membership& membership, DnsService& service, HostDns& host, Options options, ControlHandler& next);

  // Restores a resolv.conf a crashed knitd left, reads the settings and the host's resolvers,
  // and follows the membership from now on.
  void start();
  // knitd is exiting: the host's DNS configuration goes back to what it was.
  void stop();

  void handle_request(localapi::ControlRequest request, Reply reply) override;
  localapi::DnsStatus status() const;

 private:
  void refresh();
  void update_names(const Membership::NamesChange& change);
  localapi::ControlResponse set(const localapi::SetRequest& request, localapi::ControlResponse next_answer);
  std::filesystem::path settings_path() const { return options_.state_dir / "dns.conf"; }

  Membership& membership_;
  DnsService& service_;
  HostDns& host_;
  Options options_;
  ControlHandler& next_;
  DnsSettings settings_;
  std::vector<Endpoint> upstreams_;
  std::optional<std::pair<HostDnsWish, bool>> applied_;  // what the host was last told
  bool stopped_ = false;
  bool routed_ = false;  // we added the resolver's own route
  std::string problem_;  // resolver_address_problem() for the current mesh; logged once
};

}  // namespace knit::agent
