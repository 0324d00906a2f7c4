#include "coordinator/serve_command.hpp"

#include <asio.hpp>
#include <sys/resource.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <vector>

#include "base/log.hpp"
#include "base/metrics.hpp"
#include "control/constants.hpp"
#include "net/metrics_server.hpp"
#include "net/systemd_notify.hpp"
#include "control/host_port.hpp"
#include "coordinator/key_file.hpp"
#include "coordinator/server.hpp"
#include "coordinator/state_dir.hpp"
#include "coordinator/tokens.hpp"

namespace knit::coordinator {

namespace {

namespace fs = std::filesystem;

constexpr std::string_view kLog = "coordinator";

struct ServeOptions {
  std::string listen;
  std::vector<std::string> advertise;  // HOST:PORT agents dial; empty: the --listen address
  std::string ephemeral_grace = "10m";
  std::string lease = "30s";  // Server's lease_duration
  std::string metrics;  // HOST:PORT of the Prometheus endpoint; empty: none
  std::string dns_domain;  // the mesh domain at first serve; empty: knit.internal
};

// The mesh's settings. --ipv4-prefix only counts while the mesh has no node yet: after that the
// addresses handed out fix it, and serve goes on with the stored prefix.
MeshSettings fix_mesh(Store& store, const CliGlobals& globals, Random& rng) {
  std::optional<IpPrefix> prefix;
  if (!globals.ipv4_prefix.empty()) {
    prefix = IpPrefix::parse(globals.ipv4_prefix);
    if (!prefix || !prefix->address.is_v4())
      throw CliError("--ipv4-prefix " + globals.ipv4_prefix +
                     " is not an IPv4 prefix such as 100.64.0.0/10");
  }
  auto mesh = store.ensure_mesh(prefix, rng);
  if (!mesh && mesh.error().code == Errc::conflict && prefix) {
    MeshSettings current = take(store.ensure_mesh(std::nullopt, rng));
    log(LogLevel::warn, kLog, "--ipv4-prefix ", globals.ipv4_prefix,
        " ignored: the mesh already has nodes in ", current.ipv4_prefix.to_string());
    return current;
  }
  return take(std::move(mesh));
}

// --dns-domain counts at first serve; later `knit-coordinator dns domain` changes it.
void fix_dns_domain(Store& store, const std::string& domain, bool first_serve) {
  DnsSettings settings = take(store.dns_settings());
  if (domain.empty() || settings.domain == domain) return;
  if (!first_serve) {
    log(LogLevel::warn, kLog, "--dns-domain ", domain, " ignored: the mesh domain is ", settings.domain,
        " (change it with `knit-coordinator dns domain`)");
    return;
  }
  settings.domain = domain;
  check(store.set_dns_settings(settings));
}

asio::ip::tcp::endpoint listen_endpoint(asio::io_context& io, const control::HostPort& listen) {
  if (auto ip = listen.ip()) {
    std::error_code ec;
    const auto address = asio::ip::make_address(listen.host, ec);
    if (!ec) return asio::ip::tcp::endpoint(address, listen.port);
  }
  asio::ip::tcp::resolver resolver(io);
  std::error_code ec;
  const auto results = resolver.resolve(listen.host, std::to_string(listen.port),
                                        asio::ip::tcp::resolver::passive, ec);
  if (ec || results.empty())
    throw CliError("--listen: cannot resolve " + listen.host +
                   (ec ? ": " + ec.message() : std::string()));
  return results.begin()->endpoint();
}

std::string coordinator_id(const control::HostPort& listen) {
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  return std::string(host) + "/" + listen.to_string();
}

// Every agent holds a descriptor: take the whole hard limit rather than the usual 1024.
void raise_descriptor_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) != 0 || limit.rlim_cur >= limit.rlim_max) return;
  rlimit raised = limit;
  raised.rlim_cur = limit.rlim_max;
  if (::setrlimit(RLIMIT_NOFILE, &raised) != 0)
    log(LogLevel::warn, kLog, "cannot raise the open file limit from ", limit.rlim_cur,
        ": fewer agents can connect");
}

// The numbers a scrape of --metrics shows, read from the server (and the store) at scrape time.
void register_metrics(metrics::Registry& registry, const Server& server, Store& store) {
  struct Samples {
    metrics::Gauge* connections;
    metrics::Gauge* online;
    metrics::Gauge* nodes;
    metrics::Gauge* version;
    metrics::Counter* accepted;
    metrics::Counter* joins;
    metrics::Counter* refused;
    metrics::Counter* too_many;
    metrics::Counter* evicted;
    metrics::Counter* handshake;
    metrics::Counter* malformed;
    metrics::Counter* overflow;
    metrics::Counter* timeout;
    metrics::Counter* leases_expired;
    metrics::Counter* lease_nodes_offline;
    metrics::Counter* lease_lost;
  };
  const auto drop = [&registry](std::string_view reason) {
    return &registry.counter("knit_coordinator_connection_drops_total",
                             "Control connections closed by the coordinator, by reason.",
                             {{"reason", std::string(reason)}});
  };
  const Samples m{
      &registry.gauge("knit_coordinator_control_connections",
                      "Control connections open now (agents and relays)."),
      &registry.gauge("knit_coordinator_nodes_online", "Nodes connected now."),
      &registry.gauge("knit_coordinator_nodes", "Nodes in the mesh, online or not."),
      &registry.gauge("knit_coordinator_peer_map_version", "Version of the published peer map."),
      &registry.counter("knit_coordinator_connections_accepted_total", "TCP connections accepted."),
      &registry.counter("knit_coordinator_joins_total", "Register requests answered ok."),
      &registry.counter("knit_coordinator_joins_refused_total",
                        "Register requests refused (bad, used, expired or revoked token; "
                        "unknown key)."),
      drop("too_many_connections"),
      drop("handshake_evicted"),
      drop("handshake_failed"),
      drop("malformed"),
      drop("queue_overflow"),
      drop("timeout"),
      &registry.counter("knit_coordinator_leases_expired_total",
                        "Other coordinators' leases this one found run out (serve --lease)."),
      &registry.counter("knit_coordinator_lease_nodes_offline_total",
                        "Nodes of coordinators whose lease ran out, marked offline by this one."),
      &registry.counter("knit_coordinator_lease_lost_total",
                        "Times this coordinator found its own lease gone and took its nodes back."),
  };
  registry.on_collect([m, &server, &store] {
    const ServerCounters& c = server.counters();
    m.connections->set(static_cast<double>(server.session_count()));
    m.online->set(static_cast<double>(server.online_count()));
    if (auto all = store.list_nodes()) m.nodes->set(static_cast<double>(all.value().size()));
    m.version->set(static_cast<double>(server.map_version()));
    m.accepted->set(c.accepted);
    m.joins->set(c.registered);
    m.refused->set(c.rejected);
    m.too_many->set(c.refused_connections);
    m.evicted->set(c.evicted_handshakes);
    m.handshake->set(c.handshake_failures);
    m.malformed->set(c.malformed);
    m.overflow->set(c.queue_overflows);
    m.timeout->set(c.timeouts);
    m.leases_expired->set(c.leases_expired);
    m.lease_nodes_offline->set(c.lease_nodes_offline);
    m.lease_lost->set(c.lease_lost);
  });
}

// What `token create` puts into tokens from now on, saved in the store as one space-separated
// setting: the --advertise addresses when given, else the --listen address (token create
// refuses a wildcard one and says how to set an address agents can dial).
std::string token_default(const control::HostPort& listen,
                          const std::vector<std::string>& advertise) {
  if (advertise.empty()) return listen.to_string();
  if (advertise.size() > control::kMaxTokenAddresses)
    throw CliError("--advertise: a token carries at most " +
                   std::to_string(control::kMaxTokenAddresses) + " coordinator addresses");
  std::string saved;
  for (const auto& text : advertise) {
    const auto address = control::HostPort::parse(text);
    if (!address)
      throw CliError("--advertise " + text +
                     " is not HOST:PORT, such as coord.example.com:7443 or [2001:db8::1]:7443");
    if (auto ip = address->ip(); ip && ip->is_unspecified())
      throw CliError("--advertise " + text + " is a wildcard: give an address agents can dial");
    saved += (saved.empty() ? "" : " ") + address->to_string();
  }
  return saved;
}

int serve(const CliGlobals& globals, CliContext& ctx, const ServeOptions& o) {
  const auto listen = control::HostPort::parse(o.listen);
  if (!listen)
    throw CliError("--listen " + o.listen +
                   " is not HOST:PORT, such as 0.0.0.0:7400, [::]:7400 or coord.example.com:7400");
  const std::string token_addresses = token_default(*listen, o.advertise);
  const auto grace = parse_duration(o.ephemeral_grace);
  if (!grace)
    throw CliError("--ephemeral-grace " + o.ephemeral_grace +
                   " is not a duration such as 10m, 1h or 2d");

  const auto lease = parse_duration(o.lease);
  if (!lease || *lease < 3 || *lease > 3600)
    throw CliError("--lease " + o.lease + " is not a duration from 3s to 1h, such as 30s or 2m");

  std::optional<asio::ip::tcp::endpoint> metrics_listen;
  if (!o.metrics.empty()) {
    metrics_listen = net::parse_listen_address(o.metrics);
    if (!metrics_listen)
      throw CliError("--metrics " + o.metrics +
                     " is not IP:PORT, such as 127.0.0.1:9101 or [::1]:9101");
  }

  check(prepare_state_dir(globals.state_dir));
  auto store = take(open_store(store_location(globals)));
  const bool first_serve = !take(store->mesh_settings()).has_value();
  const MeshSettings mesh = fix_mesh(*store, globals, ctx.rng);
  fix_dns_domain(*store, o.dns_domain, first_serve);
  const auto key = take(load_or_create_key(fs::path(globals.state_dir) / kKeyFile, ctx.rng));

  raise_descriptor_limit();
  asio::io_context io;
  ServerOptions options;
  options.ephemeral_grace = *grace;
  options.now = ctx.now;
  // Who this is among several coordinators on one database: a restarted coordinator takes its
  // own nodes offline, not another's.
  options.coordinator_id = coordinator_id(*listen);
  // One that dies is found by its lease running out: renewed three times a lease.
  options.lease_duration = *lease;
  options.lease_renew_interval = std::chrono::seconds(*lease / 3);
  Server server(io, *store, key.private_key, mesh, ctx.rng, options);
  try {
    server.start(listen_endpoint(io, *listen));
  } catch (const std::system_error& e) {
    throw CliError("cannot listen on " + listen->to_string() + ": " + e.code().message());
  } catch (const std::runtime_error& e) {
    throw CliError(e.what());
  }
  // Only once listening works: the addresses tokens carry by default.
  check(store->set_listen_address(token_addresses));
  if (auto ip = listen->ip(); ip && ip->is_unspecified() && o.advertise.empty())
    log(LogLevel::warn, kLog, "listening on ", listen->to_string(),
        " with no address agents can dial: every token create needs --advertise HOST:PORT "
        "until serve runs with --advertise (KNIT_COORDINATOR_ADVERTISE in "
        "/etc/knit/coordinator.conf)");

  // Opt-in: nothing listens for scrapes without --metrics.
  metrics::Registry registry;
  std::unique_ptr<net::MetricsServer> metrics_server;
  if (metrics_listen) {
    register_metrics(registry, server, *store);
    metrics_server = std::make_unique<net::MetricsServer>(
        io, *metrics_listen, [&registry] { return registry.render(); });
    try {
      metrics_server->start();
    } catch (const std::system_error& e) {
      server.stop();
      throw CliError("cannot serve metrics on " + o.metrics + ": " + e.code().message());
    }
  }

  asio::signal_set signals(io, SIGINT, SIGTERM);
  signals.async_wait([&server, &metrics_server](std::error_code ec, int signal_number) {
    if (ec) return;  // operation_aborted: the loop is going away
    log(LogLevel::info, kLog, "signal ", signal_number, ": stopping");
    net::systemd_notify("STOPPING=1");
    if (metrics_server) metrics_server->stop();
    server.stop();
  });
  // Listening, with the token addresses saved: knit-coordinator.service (Type=notify) counts as
  // started only now, so `systemctl start` followed by `token create` never races.
  net::systemd_notify("READY=1");
  io.run();
  return 0;
}

}  // namespace

void add_serve_command(CLI::App& app, const CliGlobals& globals, CliContext& ctx,
                       CliAction& action) {
  auto options = std::make_shared<ServeOptions>();
  CLI::App* serve_app =
      app.add_subcommand("serve", "run the coordinator: agents connect to HOST:PORT");
  serve_app
      ->add_option("--listen", options->listen,
                   "HOST:PORT to listen on (saved: token create puts it into tokens unless "
                   "--advertise is given)")
      ->required();
  // Read from the environment too, so the unit takes it from /etc/knit/coordinator.conf.
  serve_app
      ->add_option("--advertise", options->advertise,
                   "HOST:PORT agents dial, saved for every later token create (repeatable or "
                   "comma-separated; default: the --listen address)")
      ->envname("KNIT_COORDINATOR_ADVERTISE")
      ->delimiter(',')
      ->allow_extra_args(false);
  serve_app->add_option("--ephemeral-grace", options->ephemeral_grace,
                        "how long an ephemeral node may stay offline before it is removed")
      ->capture_default_str();
  serve_app->add_option("--lease", options->lease,
                        "with several coordinators on one database: how long after this one "
                        "stops (a crash) the others take its nodes offline (3s to 1h)")
      ->capture_default_str();
  serve_app->add_option("--dns-domain", options->dns_domain,
                        "the mesh domain at first serve (default knit.internal; later: dns domain)");
  serve_app->add_option("--metrics", options->metrics,
                        "IP:PORT to serve Prometheus metrics on (GET /metrics; default: off)");
  serve_app->callback([&globals, &ctx, &action, options] {
    action = [&globals, &ctx, options] { return serve(globals, ctx, *options); };
  });
}

}  // namespace knit::coordinator
