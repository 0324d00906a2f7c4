// knitd: the Knit agent. A WireGuard interface configured through the cross-platform UAPI, exactly
// as wireguard-go is, with stock `wg`; and, once `knit up` joins it to a mesh (or a mesh is
// remembered in --state-dir), a mesh member that takes its peers from the coordinator.
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <asio.hpp>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <string_view>

#include "agent/control_server.hpp"
#include "agent/data_plane.hpp"
#include "agent/dns_control.hpp"
#include "agent/exit_routing.hpp"
#include "agent/filter_control.hpp"
#include "agent/mesh.hpp"
#include "agent/knitd_metrics.hpp"
#include "agent/local_api.hpp"
#include "agent/mesh_membership.hpp"
#include "agent/mesh_paths.hpp"
#include "agent/operator_control.hpp"
#include "agent/route_control.hpp"
#include "agent/uapi_device.hpp"
#include "agent/udp_transport.hpp"
#include "agent/snat_control.hpp"
#include "agent/snat_host.hpp"
#include "net/metrics_server.hpp"
#include "agent/uapi_server.hpp"
#include "base/log.hpp"
#include "base/socket_mark.hpp"
#include "tun/link_config.hpp"
#include "tun/tun_device.hpp"

namespace fs = std::filesystem;
using namespace knit;

namespace {

// The membership's view of the packet path.
class PlaneDevice final : public agent::MeshDevice {
 public:
  PlaneDevice(agent::DataPlane& plane, agent::UdpTransport& udp, agent::SnatHost& snat)
      : plane_(plane), udp_(udp), snat_(snat) {}
  void configure(const std::function<void(wg::Device&, wg::Now)>& change) override { plane_.configure(change); }
  wg::Device& device() override { return plane_.device(); }
  std::uint16_t port() const override { return udp_.port(); }
  void set_mesh_address(const std::optional<IpAddress>& ipv4) override { plane_.filter().set_mesh_address(ipv4); }
  void set_mesh_ipv6(const std::optional<IpAddress>& ipv6) override { plane_.filter().set_mesh_ipv6(ipv6); }
  void set_routed_prefixes(const std::vector<IpPrefix>& routes) override {
    plane_.filter().set_routed_prefixes(routes);
    snat_.set_routes(routes, snat_routes_);
  }
  void set_snat_routes(bool on) override { snat_routes_ = on; }
  void set_policy_rules(const control::PolicyRules& rules) override {
    std::string why;
    if (!plane_.filter().policy().apply(rules, &why)) {
      log(LogLevel::warn, "knitd", why, " (the rules in force stay)");
      return;
    }
    const auto& set = plane_.filter().policy().rules();
    log(LogLevel::info, "knitd", set ? "access policy version " + std::to_string(plane_.filter().policy().version()) +
                                           ": " + std::to_string(set->rules().size()) + " rules into this node"
                                     : std::string("no access policy: the mesh is open"));
  }

 private:
  agent::DataPlane& plane_;
  agent::UdpTransport& udp_;
  agent::SnatHost& snat_;
  bool snat_routes_ = true;
};

// The UDP port is kept across restarts so peers' configured endpoints stay valid.
std::optional<std::uint16_t> load_port(const fs::path& file) {
  std::ifstream in(file);
  std::string text;
  if (!(in >> text)) return std::nullopt;
  unsigned value = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || value == 0 || value > 65535) return std::nullopt;
  return static_cast<std::uint16_t>(value);
}

std::string to_hex_flags(unsigned flags) {
  char text[16];
  std::snprintf(text, sizeof text, "%x", flags);
  return text;
}

void save_port(const fs::path& file, std::uint16_t port) {
  std::error_code ec;
  fs::create_directories(file.parent_path(), ec);
  ::chmod(file.parent_path().c_str(), 0700);
  std::ofstream out(file, std::ios::trunc);
  out << port << "\n";
  if (!out) log(LogLevel::warn, "knitd", "cannot save the UDP port to ", file.string());
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"knitd: the Knit mesh VPN agent"};
  std::string tun_name = "knit0";
  std::optional<std::uint16_t> port;
  std::string state_dir = "/var/lib/knit";
  std::string socket_path = "/run/knit/knitd.sock";
  std::string uapi_dir = "/var/run/wireguard";
  int mtu = 1420;
  std::string level = "info";
  std::string metrics_address;
  std::string resolver_address = "100.100.100.100";
  std::string resolv_conf = "/etc/resolv.conf";
  unsigned crypto_threads = 0;
  app.add_option("--tun", tun_name, "TUN interface name")->capture_default_str();
  app.add_option("--port", port, "UDP port (default: random, kept across restarts)")
      ->check(CLI::Range(1, 65535));
  app.add_option("--state-dir", state_dir, "state directory")->capture_default_str();
  app.add_option("--socket", socket_path, "control socket for the knit CLI")->capture_default_str();
  app.add_option("--mtu", mtu, "tunnel MTU")->check(CLI::Range(1280, 65535))->capture_default_str();
  app.add_option("--crypto-threads", crypto_threads,
                 "threads that seal and open WireGuard packets, the event loop's included; 1: the loop alone "
                 "(default: KNIT_CRYPTO_THREADS, else the number of cores, at most 8)")
      ->check(CLI::Range(1u, agent::CryptoWorkers::kMaxThreads));
  app.add_option("--log-level", level, "debug, info, warn or error")->capture_default_str();
  app.add_option("--metrics", metrics_address, "serve Prometheus metrics over HTTP on IP:PORT (off by default)");
  app.add_option("--resolver-address", resolver_address,
                 "the mesh resolver's IPv4 address, routed into the TUN (its IPv6 one is the mesh ULA with it as the last 32 bits)")
      ->capture_default_str();
  app.add_option("--resolv-conf", resolv_conf, "the resolv.conf knitd manages with `knit set --manage-resolv-conf=true`")
      ->capture_default_str();
  app.add_flag_callback("--version", [] {
    std::cout << "knitd " << KNIT_VERSION << "\n";
    std::exit(0);
  }, "print the version and exit");
  CLI11_PARSE(app, argc, argv);

  LogLevel parsed_level;
  if (!parse_log_level(level, parsed_level)) {
    std::cerr << "knitd: --log-level must be debug, info, warn or error\n";
    return 2;
  }
  set_log_level(parsed_level);
  if (tun_name.empty() || tun_name.size() > 15 || tun_name.find('/') != std::string::npos) {
    std::cerr << "knitd: --tun must be 1 to 15 characters without '/'\n";
    return 2;
  }

  const auto resolver_v4 = IpAddress::parse(resolver_address);
  if (!resolver_v4 || !resolver_v4->is_v4()) {
    std::cerr << "knitd: --resolver-address must be an IPv4 address\n";
    return 2;
  }

  try {
    const fs::path port_file = fs::path(state_dir) / ("listen-port." + tun_name);
    // Every socket knitd opens from here on carries the underlay mark, so an exit node's
    // default route (exit_plan.hpp) never takes knitd's own traffic into the tunnel.
    set_underlay_mark(kUnderlayMark);
    asio::io_context io;
    // KNIT_OFFLOADS=off keeps the TUN and the UDP socket to one packet per read and write, so
    // the fallback for kernels without offloads stays tested.
    const char* offload_env = std::getenv("KNIT_OFFLOADS");
    const bool offloads = offload_env == nullptr || std::string_view(offload_env) != "off";
    tun::TunDevice tun = [&] {
      if (::geteuid() != 0 && ::access("/dev/net/tun", R_OK | W_OK) != 0)
        throw tun::TunError(
            "cannot open /dev/net/tun: permission denied (run knitd as root or with CAP_NET_ADMIN)");
      return tun::TunDevice::open({tun_name, 1, offloads});
    }();
    log(LogLevel::info, "knitd", "TUN offloads ",
        tun.vnet_header() ? "on (flags 0x" + to_hex_flags(tun.offloads()) + ")" : std::string("off"));

    // An exit node's default route (`knit set --exit-node`): what a crashed run left goes
    // before anything else starts.
    agent::ExitRouting exit_routing(state_dir, tun.name());
    for (const auto& failure : exit_routing.remove_stale()) log(LogLevel::warn, "knitd", failure);

    tun::LinkConfig link;
    if (auto ec = link.set_mtu(tun.name(), mtu); ec)
      log(LogLevel::warn, "knitd", "cannot set MTU ", mtu, " on ", tun.name(), ": ", ec.message());

    // The packet path: the UDP transport beneath the device, the data plane above it.
    agent::UdpTransport::Options udp_options;
    udp_options.port = port ? *port : load_port(port_file).value_or(0);
    udp_options.on_port_changed = [port_file](std::uint16_t p) { save_port(port_file, p); };
    udp_options.offloads = offloads;
    agent::UdpTransport udp(io, udp_options);
    agent::CryptoWorkers::Options crypto;
    crypto.threads = agent::CryptoWorkers::resolve_threads(crypto_threads, std::getenv("KNIT_CRYPTO_THREADS"));
    log(LogLevel::info, "knitd", "sealing and opening on ", crypto.threads, crypto.threads == 1 ? " thread" : " threads");
    agent::DataPlane plane(io, tun, udp, mtu, crypto);
    agent::UapiDevice uapi_device(plane, udp);
    // Refuses to start when another live daemon already serves this interface name.
    auto uapi = std::make_unique<agent::UapiServer>(io, uapi_dir + "/" + tun.name() + ".sock", uapi_device);
    udp.start(plane);
    plane.start();
    uapi->start();

    // The mesh side: idle until `knit up`, or rejoining the mesh remembered in the state dir.
    agent::NetlinkLinkControl mesh_link(tun.name());
    // The subnet router's SNAT on the host (snat_host.hpp): first undo what a knitd that died left.
    agent::SnatHost snat_host(io, plane, tun.name(), state_dir);
    snat_host.recover();
    PlaneDevice plane_device(plane, udp, snat_host);
    agent::MeshPaths mesh_paths(io, plane, udp);
    // KNIT_PMTU=off: no path MTU discovery and no MSS clamping (what the netns test compares
    // against: a black hole on a path smaller than the tunnel).
    const char* pmtu_env = std::getenv("KNIT_PMTU");
    const bool pmtu = pmtu_env == nullptr || std::string_view(pmtu_env) != "off";
    plane.set_mss_clamp(pmtu);
    // Plain `wg` mode: what a router's ICMP says of a peer's path fits the MSS clamp to it
    // (data_plane.hpp); a mesh takes the handler over while it runs.
    plane.set_path_hints(pmtu);
    if (pmtu) udp.set_too_big_handler([&plane](const Endpoint& to, std::size_t path_mtu) { plane.on_path_too_big(to, path_mtu); });
    mesh_paths.set_pmtu_enabled(pmtu);
    if (!pmtu) log(LogLevel::info, "knitd", "path MTU discovery and MSS clamping off (KNIT_PMTU=off)");
    // KNIT_RELAY_SPLIT=off: relayed packets sealed whole on the relay hop too (the form before
    // split data frames; for comparison, and for a relay operator's stricter traffic analysis).
    const char* split_env = std::getenv("KNIT_RELAY_SPLIT");
    const bool relay_split = split_env == nullptr || std::string_view(split_env) != "off";
    mesh_paths.set_relay_split(relay_split);
    if (!relay_split) log(LogLevel::info, "knitd", "relay data frames sealed whole (KNIT_RELAY_SPLIT=off)");
    // KNIT_RELAY_RUNS=off: split frames one by one, no runs (for comparison).
    const char* runs_env = std::getenv("KNIT_RELAY_RUNS");
    const bool relay_runs = runs_env == nullptr || std::string_view(runs_env) != "off";
    mesh_paths.set_relay_runs(relay_runs);
    if (relay_split && !relay_runs) log(LogLevel::info, "knitd", "relay data runs off (KNIT_RELAY_RUNS=off)");
    agent::Membership::Options membership_options;
    membership_options.state_dir = state_dir;
    membership_options.tun_name = tun.name();
    membership_options.version = KNIT_VERSION;
    agent::Membership membership(io, plane_device, mesh_link, &mesh_paths, membership_options);
    membership.set_exit_host(&exit_routing);
    // The CLI's requests: shields and port forwards (`knit set`, `knit forward`, kept in the
    // state dir) in front of the mesh's questions and `up`/`down`.
    agent::LocalApi local_api(membership);
    // Subnet routes (`knit set --advertise-routes/--accept-routes`, kept in the state dir).
    agent::RouteControl route_control(membership, agent::RouteSettingsStore(state_dir), local_api);
    route_control.restore();
    // `knit nat` and self.routes.snat, in front of the route settings.
    agent::SnatControl snat_control(plane.filter().router_nat(), snat_host, route_control);
    agent::FilterControl filter_control(plane.filter(), agent::ForwardStore(state_dir), snat_control);
    filter_control.restore();
    // The mesh's names: a resolver answering packets to its address on the TUN, and the host
    // pointed at it (dns_control.hpp), in front of the other settings.
    agent::DnsService dns_service(io, [&plane](ByteSpan packet) { plane.write_local(packet); });
    plane.set_local_hook([&dns_service](ByteSpan packet) { return dns_service.on_tun_packet(packet); });
    agent::HostDnsOptions host_dns_options;
    host_dns_options.state_dir = state_dir;
    host_dns_options.resolv_conf = resolv_conf;
    agent::HostDns host_dns(host_dns_options);
    agent::DnsControl dns_control(membership, dns_service, host_dns, {state_dir, tun.name(), *resolver_v4, &mesh_link},
                                  filter_control);
    dns_control.start();
    // Who may ask what (control_access.hpp), and the operator (`knit set --operator`), in front.
    agent::OperatorControl operator_control(state_dir, dns_control);
    operator_control.restore();
    auto control = std::make_unique<agent::ControlServer>(
        io, socket_path, operator_control,
        [&operator_control](const std::optional<net::PeerCredentials>& caller, const localapi::ControlRequest& request) {
          return operator_control.check(caller, request);
        });
    control->start();
    log(LogLevel::info, "knitd", "TUN ", tun.name(), " ready (up once the node joins a mesh or `ip link set` "
        "brings it up), UDP port ", udp.port(), ", UAPI ", uapi->path(), ", control socket ", control->path());
    membership.start();

    // Opt-in: nothing listens unless --metrics is given.
    metrics::Registry registry;
    std::unique_ptr<net::MetricsServer> metrics_server;
    if (!metrics_address.empty()) {
      auto listen = net::parse_listen_address(metrics_address);
      if (!listen) throw std::runtime_error("--metrics " + metrics_address + " is not IP:PORT, such as 127.0.0.1:9102");
      agent::register_knitd_metrics(registry, plane, membership);
      metrics_server = std::make_unique<net::MetricsServer>(io, *listen, [&registry] { return registry.render(); });
      metrics_server->start();
      log(LogLevel::info, "knitd", "metrics on http://", metrics_address, "/metrics");
    }

    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](std::error_code ec, int signo) {
      if (ec) return;
      log(LogLevel::info, "knitd", "signal ", signo, ": shutting down (", plane.summary(), " ", udp.summary(), " ",
          mesh_paths.summary(), ")");
      control->stop();
      dns_control.stop();
      dns_service.stop();
      if (metrics_server) metrics_server->stop();
      membership.stop();
      snat_host.stop();  // rules, route and sysctls back as they were
      for (const auto& failure : exit_routing.clear()) log(LogLevel::warn, "knitd", failure);
      uapi->stop();
      plane.stop();
      udp.stop();
      io.stop();
    });
    io.run();
    control.reset();
    uapi.reset();
    // What must be undone is undone: both sockets are removed, and the TUN interface goes with
    // its descriptor when the process ends. A port-mapping worker may still be inside a blocking
    // UPnP call (miniupnpc cannot be cancelled, and its discovery waits seconds): exit now
    // rather than wait for it.
    std::cout.flush();
    std::cerr.flush();
    std::_Exit(0);
  } catch (const std::exception& e) {
    std::cerr << "knitd: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
