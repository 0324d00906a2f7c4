// SnatHost: makes the host carry the subnet router's SNAT (router_nat.hpp): the rules, routes
// and sysctls of snat_plan.hpp (IPv4, and with `ip -6` for IPv6 egress addresses: an exit
// node's ::/0), and raw ICMP and ICMPv6 sockets whose echo replies and errors addressed to an
// egress address go through the data plane as if read from the TUN. Everything it
// changes is undone by stop() (and by recover() at the next start, after a crash).
//
// set_routes() takes effect at once and is re-checked every kRecheck: the egress addresses
// follow the host's routes and addresses (DHCP), and the table's route comes back after the TUN
// went down and up (the kernel drops it with the link).
#pragma once

#include <asio.hpp>

#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "agent/data_plane.hpp"
#include "agent/router_nat.hpp"
#include "base/ip.hpp"
#include "net/policy_routing.hpp"

namespace knit::agent {

// The address the kernel uses as the source towards `prefix` (a UDP connect to
// egress_probe_target, nothing sent). IPv6: never unspecified or link-local.
std::optional<IpAddress> egress_address(const IpPrefix& prefix);

class SnatHost {
 public:
  static constexpr std::chrono::seconds kRecheck{2};
  // ICMP messages read per wake-up of a raw socket (the rest wait for the next turn).
  static constexpr int kMaxIcmpPerWake = 64;

  SnatHost(asio::io_context& io, DataPlane& plane, std::string tun, std::filesystem::path state_dir);
  ~SnatHost();
  SnatHost(const SnatHost&) = delete;
  SnatHost& operator=(const SnatHost&) = delete;

  // Undoes what an earlier knitd that died left: sysctls from its state file, its rules, the
  // moved `lookup local`. Problems are logged.
  void recover();
  // The routes this node advertises and `--snat-routes`.
  void set_routes(std::vector<IpPrefix> routes, bool snat);
  bool enabled() const { return snat_; }
  // Why translation is not working although wanted ("" when it is, or not wanted).
  const std::string& problem() const { return problem_; }
  // Everything undone (idempotent).
  void stop();

 private:
  void reconcile();
  bool set_up();
  void tear_down();
  void apply_rules(const std::vector<net::Rule>& existing, bool restore, const std::vector<IpAddress>& addresses,
                   std::uint8_t family);
  void restore_sysctls();
  void open_icmp();
  void read_icmp();
  void open_icmp6();
  void read_icmp6();
  void arm();
  net::PolicyRouting& routing();

  DataPlane& plane_;
  std::string tun_;
  std::filesystem::path state_file_;
  std::vector<IpPrefix> routes_;
  bool snat_ = true;
  bool active_ = false;  // host changes in place
  bool stopped_ = false;
  std::string problem_;
  std::vector<std::pair<std::string, std::string>> before_;  // sysctls as found
  std::unique_ptr<net::PolicyRouting> routing_;
  asio::steady_timer timer_;
  bool routes6_ = false;  // the IPv6 default route of the table is in place
  asio::posix::stream_descriptor icmp_;
  asio::posix::stream_descriptor icmp6_;
  std::vector<std::uint8_t> icmp_buffer_;  // (IPv6: the header rebuilt in its first 40 bytes)
};

}  // namespace knit::agent
