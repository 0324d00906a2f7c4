// knit: the command line of the Knit agent. Every command is one request to knitd over its control
// socket (control_protocol.hpp); `ping` then sends ICMP echoes through the tunnel itself.
// Exit status: 0 ok, 1 error (one line on stderr saying what to do).
#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <iostream>
#include <thread>

#include "cli/client.hpp"
#include "cli/format.hpp"
#include "cli/ping.hpp"
#include "cli/routes.hpp"

using namespace knit;
using namespace knit::cli;
using json = nlohmann::ordered_json;

namespace {

constexpr std::chrono::seconds kRequestTimeout{10};
// knitd gives the coordinator 30 s to answer a join; leave room for its answer to arrive.
constexpr std::chrono::seconds kUpTimeout{45};

struct Globals {
  std::string socket = kDefaultControlSocket;
  bool json = false;
};

localapi::ControlResponse call(const Globals& g, const localapi::ControlRequest& request, std::chrono::seconds timeout = kRequestTimeout) {
  KnitdConnection connection(g.socket);
  return connection.call(request, timeout);
}

void print_json(const json& doc) { std::cout << doc.dump(2, ' ', false, json::error_handler_t::replace) << "\n"; }

int run_up(const Globals& g, const std::string& token, const std::string& hostname, bool shields_up,
           const std::optional<std::string>& operator_user, const RouteFlags& routes) {
  // Routes are checked (and saved) before the join: a refused one stops `up` with its reason.
  if (routes.any()) {
    const auto reply = expect<localapi::RoutesReply>(call(g, routes_request(routes)));
    if (auto warning = forwarding_warning(reply.routes)) std::cerr << *warning << "\n";
  }
  // The shields go up (and are saved) before the join, so no moment of the membership is open.
  if (shields_up || operator_user) {
    expect<localapi::SetReply>(call(
        g, localapi::SetRequest{shields_up ? std::optional<bool>(true) : std::nullopt, std::nullopt, std::nullopt, operator_user}));
  }
  auto reply = expect<localapi::UpReply>(call(g, localapi::UpRequest{token, hostname}, kUpTimeout));
  if (g.json) {
    print_json({{"name", reply.name}, {"ipv4", reply.ipv4.to_string()}, {"ipv6", reply.ipv6.to_string()},
                {"already_joined", reply.already_joined}});
  } else if (reply.already_joined) {
    std::cout << "already joined as " << reply.name << " (" << reply.ipv4.to_string() << ", "
              << reply.ipv6.to_string() << ")\n";
  } else {
    std::cout << "joined the mesh as " << reply.name << " (" << reply.ipv4.to_string() << ", "
              << reply.ipv6.to_string() << ")\n";
  }
  return 0;
}

int run_down(const Globals& g) {
  const auto reply = expect<localapi::DownReply>(call(g, localapi::DownRequest{}));
  if (g.json) print_json({{"was_joined", reply.was_joined}});
  else if (reply.was_joined) std::cout << "disconnected: still a member of the mesh (`knit up` reconnects, `knit logout` leaves it)\n";
  else std::cout << "not connected: nothing to do\n";
  return 0;
}

// The coordinator removes the node; when it cannot be told, the mesh is forgotten here anyway
// (exit 0) and a warning says what is left to do on the coordinator.
int run_logout(const Globals& g) {
  // knitd waits up to 15 s for the coordinator.
  const auto reply = expect<localapi::LogoutReply>(call(g, localapi::LogoutRequest{}, std::chrono::seconds(30)));
  if (g.json) {
    print_json({{"was_member", reply.was_member}, {"coordinator_told", reply.coordinator_told}, {"name", reply.name},
                {"detail", reply.detail}});
  } else if (!reply.was_member) {
    std::cout << "not a member of a mesh: nothing to leave\n";
  } else if (reply.coordinator_told) {
    std::cout << "logged out: " << reply.name << " was removed from the mesh\n";
  } else {
    std::cout << "left the mesh on this host; " << reply.name << " is forgotten here\n";
  }
  if (reply.was_member && !reply.coordinator_told) {
    std::cerr << "warning: the coordinator was not told (" << reply.detail << "): it still lists " << reply.name
              << "; remove it there with `knit-coordinator nodes remove " << reply.name << "`\n";
  }
  return 0;
}

int run_status(const Globals& g) {
  auto reply = expect<localapi::StatusReply>(call(g, localapi::StatusRequest{}));
  if (g.json) std::cout << localapi::encode_status(reply.status, 2) << "\n";
  else std::cout << format_status(reply, std::chrono::system_clock::now());
  return 0;
}

int run_ip(const Globals& g, bool only_v4, bool only_v6) {
  auto reply = expect<localapi::IpReply>(call(g, localapi::IpRequest{}));
  if (g.json) {
    json doc = json::object();
    if (!only_v6) doc["ipv4"] = reply.ipv4.to_string();
    if (!only_v4) doc["ipv6"] = reply.ipv6.to_string();
    print_json(doc);
    return 0;
  }
  if (!only_v6) std::cout << reply.ipv4.to_string() << "\n";
  if (!only_v4) std::cout << reply.ipv6.to_string() << "\n";
  return 0;
}

int run_netcheck(const Globals& g) {
  KnitdConnection connection(g.socket);
  // A netcheck waits for STUN answers (and their retransmissions) and the gateway's port
  // mapping protocols: a few seconds at worst.
  const auto reply = expect<localapi::NetcheckReply>(connection.call(localapi::NetcheckRequest{}, std::chrono::seconds(20)));
  if (g.json) {
    std::cout << localapi::encode_netcheck(reply, 2) << "\n";
    return 0;
  }
  const localapi::NatStatus& nat = reply.nat;
  auto endpoint = [](const std::optional<Endpoint>& e) { return e ? e->to_string() : std::string("none"); };
  std::cout << "UDP:           " << (nat.udp ? (*nat.udp ? "yes" : "no (blocked? peers are reached through the relay)")
                                           : "unknown (no relay with a STUN port to ask)")
            << "\n";
  std::cout << "IPv4:          " << endpoint(nat.public_v4) << "\n";
  std::cout << "IPv6:          " << endpoint(nat.public_v6) << "\n";
  std::string mapping = reply.mapping;
  if (nat.mapping_varies)
    mapping += *nat.mapping_varies ? " (varies by destination: a hard NAT)" : " (the same for every destination)";
  if (nat.mapping_source == "peers") mapping += ", seen by peers";
  std::cout << "Mapping:       " << mapping << "\n";
  std::cout << "Filtering:     " << nat.filtering << "\n";
  std::string portmap;
  for (const auto& p : reply.portmap) portmap += (portmap.empty() ? "" : ", ") + p;
  std::cout << "Port mapping:  " << (portmap.empty() ? std::string("none") : portmap);
  if (reply.portmapped) std::cout << " (mapped " << reply.portmapped->to_string() << ")";
  std::cout << "\n";
  std::cout << "Relays:        ";
  if (reply.relay_ms.empty()) std::cout << "none measured";
  bool first = true;
  for (const auto& [name, ms] : reply.relay_ms) {
    std::cout << (first ? "" : ", ") << name << " " << ms << " ms"
              << (reply.home_relay && *reply.home_relay == name ? " (home)" : "");
    first = false;
  }
  std::cout << "\n";
  return 0;
}

int run_version(const Globals& g) {
  std::optional<std::string> daemon;
  try {
    daemon = expect<localapi::VersionReply>(call(g, localapi::VersionRequest{})).version;
  } catch (const CliError&) {
    // The CLI's own version is worth printing even without knitd.
  }
  if (g.json) {
    print_json({{"knit", KNIT_VERSION}, {"knitd", daemon ? json(*daemon) : json(nullptr)}});
    return 0;
  }
  std::cout << "knit " << KNIT_VERSION << "\n";
  if (daemon) std::cout << "knitd " << *daemon << "\n";
  return 0;
}

int run_nat(const Globals& g) {
  const auto reply = expect<localapi::NatReply>(call(g, localapi::NatRequest{}));
  if (g.json) {
    std::cout << localapi::encode_snat(reply.nat, 2) << "\n";
  } else {
    std::cout << format_snat(reply.nat);
  }
  return 0;
}

int run_routes(const Globals& g, const RouteFlags& flags) {
  const auto reply = expect<localapi::RoutesReply>(call(g, routes_request(flags)));
  if (auto warning = forwarding_warning(reply.routes)) std::cerr << *warning << "\n";
  if (g.json) {
    json advertised = json::array();
    for (const IpPrefix& p : reply.routes.advertised) advertised.push_back(p.to_string());
    json out = {{"advertise_routes", advertised}, {"advertise_exit_node", reply.routes.exit_node},
                {"accept_routes", reply.routes.accept}, {"exit_node", reply.routes.use_exit},
                {"exit_node_allow_lan", reply.routes.exit_allow_lan}};
    if (reply.routes.snat) out["snat_routes"] = reply.routes.snat->enabled;
    print_json(out);
  } else {
    std::cout << describe(reply.routes);
  }
  return 0;
}

int run_set(const Globals& g, const localapi::SetRequest& request) {
  const auto reply = expect<localapi::SetReply>(call(g, request));
  if ((request.accept_dns || request.manage_resolv_conf) && !reply.accept_dns)
    throw CliError("this knitd does not resolve names (an older version?)");
  if (request.operator_user && !reply.operator_user) throw CliError("this knitd has no operator (an older version?)");
  if (g.json) {
    json out = {{"shields_up", reply.shields_up}};
    if (reply.accept_dns) out["accept_dns"] = *reply.accept_dns;
    if (reply.manage_resolv_conf) out["manage_resolv_conf"] = *reply.manage_resolv_conf;
    if (reply.operator_user) out["operator"] = *reply.operator_user;
    print_json(out);
    return 0;
  }
  std::cout << "shields " << (reply.shields_up ? "up" : "down") << "\n";
  if (reply.accept_dns) std::cout << "accept-dns " << (*reply.accept_dns ? "true" : "false") << "\n";
  if (reply.manage_resolv_conf)
    std::cout << "manage-resolv-conf " << (*reply.manage_resolv_conf ? "true" : "false") << "\n";
  if (reply.operator_user) std::cout << "operator " << (reply.operator_user->empty() ? "(none)" : *reply.operator_user) << "\n";
  return 0;
}

int run_dns_status(const Globals& g) {
  const auto reply = expect<localapi::DnsStatusReply>(call(g, localapi::DnsStatusRequest{}));
  if (g.json) {
    std::cout << localapi::encode_dns_status(reply.dns, 2) << "\n";
    return 0;
  }
  const localapi::DnsStatus& d = reply.dns;
  std::cout << "host integration: " << d.mode << (d.detail.empty() ? "" : " (" + d.detail + ")") << "\n";
  std::cout << "accept-dns: " << (d.accept_dns ? "true" : "false")
            << ", manage-resolv-conf: " << (d.manage_resolv_conf ? "true" : "false") << "\n";
  std::cout << "mesh domain: " << (d.domain.empty() ? "(none yet)" : d.domain) << ", " << d.names << " names\n";
  std::cout << "resolver:";
  for (const auto& a : d.listen) std::cout << " " << a;
  std::cout << "\nupstreams:";
  for (const auto& u : d.upstreams) std::cout << " " << u;
  if (d.upstreams.empty()) std::cout << " (none)";
  std::cout << "\n";
  for (const auto& [domain, resolvers] : d.split) {
    std::cout << "split " << domain << ":";
    for (const auto& r : resolvers) std::cout << " " << r;
    std::cout << "\n";
  }
  for (const auto& [name, value] : d.counters)
    if (value) std::cout << "  " << name << " " << value << "\n";
  return 0;
}

// "tcp" or "udp", and a port 1-65535, or a CliError saying what is wrong.
localapi::ForwardProtocol forward_protocol(const std::string& text) {
  auto protocol = localapi::parse_forward_protocol(text);
  if (!protocol) throw CliError("the protocol must be tcp or udp, not \"" + text + "\"");
  return *protocol;
}

int print_forwards(const Globals& g, const localapi::ForwardsReply& reply) {
  if (g.json) std::cout << localapi::encode_forwards(reply.forwards, 2) << "\n";
  else std::cout << format_forwards(reply.forwards);
  return 0;
}

int run_forward_add(const Globals& g, const std::string& proto, int mesh_port, const std::string& target) {
  auto endpoint = Endpoint::parse(target);
  if (!endpoint) throw CliError("the target must be HOST:PORT with an IPv4 address, e.g. 192.168.1.10:80");
  const localapi::ForwardRule rule{forward_protocol(proto), static_cast<std::uint16_t>(mesh_port), *endpoint};
  return print_forwards(g, expect<localapi::ForwardsReply>(call(g, localapi::ForwardAddRequest{rule})));
}

int run_forward_remove(const Globals& g, const std::string& proto, int mesh_port) {
  const localapi::ForwardRemoveRequest request{forward_protocol(proto), static_cast<std::uint16_t>(mesh_port)};
  return print_forwards(g, expect<localapi::ForwardsReply>(call(g, request)));
}

std::string path_text(const localapi::PeerStatus& peer) {
  if (peer.path == localapi::PathKind::direct && peer.endpoint) return "direct " + peer.endpoint->to_string();
  if (peer.path == localapi::PathKind::relay && peer.relay) return "relay " + *peer.relay;
  return std::string(to_string(peer.path));
}

int run_ping(const Globals& g, const std::string& target, int count, double timeout_s) {
  KnitdConnection connection(g.socket);
  localapi::PeerStatus peer = expect<localapi::PingInfoReply>(connection.call(localapi::PingInfoRequest{target}, kRequestTimeout)).peer;
  const auto asked = IpAddress::parse(target);
  const IpAddress address = asked && asked->is_v6() ? peer.ipv6 : peer.ipv4;
  IcmpPinger pinger(address);
  const auto timeout = std::chrono::milliseconds(static_cast<long>(timeout_s * 1000));
  const std::string who = peer.name + " (" + address.to_string() + ")";

  json pings = json::array();
  int received = 0;
  for (int seq = 1; seq <= count; ++seq) {
    const auto started = std::chrono::steady_clock::now();
    const auto rtt = pinger.echo(static_cast<std::uint16_t>(seq), timeout);
    // The path as knitd sees it now: the first echo may have just brought the tunnel up.
    try {
      peer = expect<localapi::PingInfoReply>(connection.call(localapi::PingInfoRequest{target}, kRequestTimeout)).peer;
    } catch (const CliError&) {
    }
    if (rtt) ++received;
    if (g.json) {
      pings.push_back({{"seq", seq},
                       {"rtt_ms", rtt ? json(*rtt) : json(nullptr)},
                       {"path", std::string(to_string(peer.path))},
                       {"endpoint", peer.endpoint ? json(peer.endpoint->to_string()) : json(nullptr)}});
    } else if (rtt) {
      std::cout << "pong from " << who << " via " << path_text(peer) << " in " << format_rtt(*rtt) << std::endl;
    } else {
      std::cout << "no pong from " << who << " within " << timeout_s << " s (path: " << path_text(peer) << ")"
                << std::endl;
    }
    if (seq < count) std::this_thread::sleep_until(started + std::chrono::seconds(1));
  }
  if (g.json) {
    print_json({{"peer", peer.name}, {"ip", address.to_string()}, {"sent", count}, {"received", received},
                {"pings", pings}});
  }
  if (received == 0) throw CliError("no reply from " + who + " to " + std::to_string(count) + " pings");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"knit: control the Knit mesh VPN agent (knitd)"};
  app.require_subcommand(1);
  app.fallthrough();  // global options may follow the command: `knit status --socket PATH`
  Globals g;
  app.add_option("--socket", g.socket, "knitd's control socket")->capture_default_str();
  app.set_version_flag("--version", std::string("knit ") + KNIT_VERSION);
  auto json_flag = [&g](CLI::App* sub) { sub->add_flag("--json", g.json, "print JSON instead of text"); };

  std::string token;
  std::string hostname;
  auto* up = app.add_subcommand("up", "join a mesh with a join token (or rejoin the mesh knitd remembers)");
  up->add_option("--token", token, "the join token from `knit-coordinator token create`");
  up->add_option("--hostname", hostname, "the name to register (default: this host's name)");
  bool up_shields = false;
  up->add_flag("--shields-up", up_shields,
               "refuse connections from the mesh to this host (kept; `knit set --shields-up=false` lowers them)");
  std::optional<std::string> up_operator;
  up->add_option("--operator", up_operator, "as `knit set --operator`: USER may change knitd without root");
  RouteFlags up_routes;
  add_route_flags(up, up_routes, /*for_up=*/true);
  json_flag(up);

  std::optional<bool> set_shields;
  auto* set = app.add_subcommand("set", "change settings of the running knitd (kept across restarts)");
  set->add_option("--shields-up", set_shields,
                  "true: refuse connections from the mesh to this host, except replies and port forwards");
  std::optional<bool> set_accept_dns;
  std::optional<bool> set_manage_resolv_conf;
  set->add_option("--accept-dns", set_accept_dns,
                  "false: configure no resolver on this host (mesh names stop resolving here)");
  set->add_option("--manage-resolv-conf", set_manage_resolv_conf,
                  "true: without systemd-resolved, point /etc/resolv.conf at knitd (backed up, restored on down)");
  // `--operator=` (no value) clears it.
  std::string set_operator_text;
  auto* set_operator_option =
      set->add_option("--operator", set_operator_text,
                      "USER (a name or uid) may change knitd without root (up, down, set, forward, logout); "
                      "--operator= clears it")
          ->expected(0, 1);
  RouteFlags set_routes;
  add_route_flags(set, set_routes, /*for_up=*/false);
  json_flag(set);

  auto* forward = app.add_subcommand("forward", "port forwards: a mesh port of this node to HOST:PORT");
  forward->require_subcommand(1);
  std::string forward_proto;
  int forward_port = 0;
  std::string forward_target;
  auto* forward_add = forward->add_subcommand("add", "forward PROTO MESHPORT of this node's mesh IPv4 to HOST:PORT");
  forward_add->add_option("proto", forward_proto, "tcp or udp")->required();
  forward_add->add_option("meshport", forward_port, "the port peers connect to")->required()->check(CLI::Range(1, 65535));
  forward_add->add_option("target", forward_target,
                          "HOST:PORT: an address of this host other than loopback, or a host routing the mesh through it")
      ->required();
  json_flag(forward_add);
  auto* forward_list = forward->add_subcommand("list", "the port forwards and their traffic");
  json_flag(forward_list);
  auto* forward_remove = forward->add_subcommand("remove", "remove the forward of PROTO MESHPORT");
  forward_remove->add_option("proto", forward_proto, "tcp or udp")->required();
  forward_remove->add_option("meshport", forward_port, "the forwarded mesh port")->required()->check(CLI::Range(1, 65535));
  json_flag(forward_remove);

  auto* down = app.add_subcommand("down", "disconnect from the mesh, staying a member (`knit up` reconnects)");
  json_flag(down);

  auto* logout = app.add_subcommand(
      "logout", "leave the mesh for good: the coordinator removes this node, and knitd forgets the mesh");
  json_flag(logout);

  auto* status = app.add_subcommand("status", "this node and every peer: path, endpoint, handshake, traffic");
  json_flag(status);

  bool only_v4 = false;
  bool only_v6 = false;
  auto* ip = app.add_subcommand("ip", "this node's mesh addresses");
  auto* v4 = ip->add_flag("-4", only_v4, "only the IPv4 address");
  ip->add_flag("-6", only_v6, "only the IPv6 address")->excludes(v4);
  json_flag(ip);

  std::string peer;
  int count = 4;
  double timeout_s = 2.0;
  auto* ping = app.add_subcommand("ping", "ping a peer through the mesh and show the path it takes");
  ping->add_option("peer", peer, "a peer's name or mesh IP")->required();
  ping->add_option("-c,--count", count, "how many echoes to send")->check(CLI::Range(1, 100000))->capture_default_str();
  ping->add_option("--timeout", timeout_s, "seconds to wait for each reply")->check(CLI::Range(0.1, 60.0))->capture_default_str();
  json_flag(ping);

  auto* netcheck = app.add_subcommand(
      "netcheck", "measure this node's network: UDP, public addresses, NAT behaviour, port mapping, relay latency");
  json_flag(netcheck);

  auto* dns = app.add_subcommand("dns", "the mesh's names");
  dns->require_subcommand(1);
  auto* dns_status = dns->add_subcommand("status", "what knitd configured for names, and where");
  json_flag(dns_status);

  auto* version = app.add_subcommand("version", "knit's and knitd's versions");
  json_flag(version);
  auto* nat = app.add_subcommand("nat", "the subnet router's address translations (--snat-routes) and counters");
  json_flag(nat);

  auto* debug = app.add_subcommand("debug", "knitd's internals, for people");
  debug->require_subcommand(1);
  auto* debug_policy = debug->add_subcommand("policy", "the access policy's rules this node enforces on inbound flows");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e) == 0 ? 0 : 1;
  }

  try {
    if (*up) return run_up(g, token, hostname, up_shields, up_operator, up_routes);
    if (*set) {
      std::optional<std::string> set_operator;
      if (set_operator_option->count() > 0) set_operator = set_operator_text;
      const bool other = set_shields || set_accept_dns || set_manage_resolv_conf || set_operator;
      if (set_routes.any() && !other) return run_routes(g, set_routes);
      if (set_routes.any()) expect<localapi::RoutesReply>(call(g, routes_request(set_routes)));
      if (!other && !set_routes.any())
        throw CliError("nothing to set: pass --shields-up, --accept-dns or --manage-resolv-conf (=true or =false), "
                       "--operator USER, --advertise-routes CIDR,..., --advertise-exit-node, --accept-routes, "
                       "--snat-routes, --exit-node NAME|IP or --exit-node-allow-lan");
      return run_set(g, localapi::SetRequest{set_shields, set_accept_dns, set_manage_resolv_conf, set_operator});
    }
    if (*forward_add) return run_forward_add(g, forward_proto, forward_port, forward_target);
    if (*forward_list) return print_forwards(g, expect<localapi::ForwardsReply>(call(g, localapi::ForwardListRequest{})));
    if (*forward_remove) return run_forward_remove(g, forward_proto, forward_port);
    if (*down) return run_down(g);
    if (*logout) return run_logout(g);
    if (*status) return run_status(g);
    if (*ip) return run_ip(g, only_v4, only_v6);
    if (*ping) return run_ping(g, peer, count, timeout_s);
    if (*netcheck) return run_netcheck(g);
    if (*dns_status) return run_dns_status(g);
    if (*version) return run_version(g);
    if (*nat) return run_nat(g);
    if (*debug_policy) {
      std::cout << expect<localapi::PolicyDebugReply>(call(g, localapi::PolicyDebugRequest{})).text;
      return 0;
    }
  } catch (const CliError& e) {
    std::cout.flush();
    std::cerr << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "knit: " << e.what() << "\n";
    return 1;
  }
  return 1;
}
