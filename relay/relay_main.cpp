// knit-relay: forwards sealed packets between mesh members by node key over TCP (TLS optional)
// and answers STUN on UDP (docs/ARCHITECTURE.md, "CLI and daemon").
//
//   knit-relay --token TOKEN --name NAME --listen HOST:PORT [--stun HOST:PORT]
//              [--stun-alt-port N] [--stun-alt-ip IP]
//
// STUN answers on a second port too (by default the next one; 0: none) and, when given, a
// second address: with them one relay host lets agents tell a symmetric NAT from an easy one
// (RFC 5780 OTHER-ADDRESS; punch/stun/nat_probe.hpp).
//              [--state-dir DIR] [--advertise HOST:PORT]... [--tls-cert FILE --tls-key FILE]
//              [--metrics HOST:PORT] [--log-level LEVEL]
//
// --token and --advertise are also read from KNIT_RELAY_TOKEN and KNIT_RELAY_ADVERTISE, which is
// how knit-relay.service passes them from /etc/knit/relay.conf (the token stays out of `ps`).
// The token is needed on the first start only: the relay key, the coordinator's address and the
// last membership are kept in the state directory, so a restarted relay serves from its cache
// while the coordinator is down. SIGINT/SIGTERM: closing frames to every client, a one-line
// summary of the counters, exit 0.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <asio.hpp>

#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/ip.hpp"
#include "base/log.hpp"
#include "base/metrics.hpp"
#include "base/random.hpp"
#include "net/systemd_notify.hpp"
#include "control/host_port.hpp"
#include "net/metrics_server.hpp"
#include "punch/stun/server.hpp"
#include "relay/coordinator_link.hpp"
#include "relay/server.hpp"
#include "relay/stats.hpp"
#include "relay/stream.hpp"
#include "wg/crypto.hpp"

using namespace knit;

namespace {

constexpr std::string_view kComponent = "knit-relay";

// A numeric "IP:PORT" ("[v6]:PORT") to bind; throws with a sentence naming the flag.
asio::ip::tcp::endpoint bind_address(const std::string& flag, const std::string& text) {
  const auto endpoint = Endpoint::parse(text);
  if (!endpoint)
    throw std::runtime_error(flag + " wants IP:PORT (e.g. 0.0.0.0:443 or [::]:443), not '" +
                             text + "'");
  return {asio::ip::make_address(endpoint->address().to_string()), endpoint->port()};
}

// Hands the coordinator's membership and relay map to the server.
class Membership final : public relay::MembershipListener {
 public:
  relay::Server* server = nullptr;

  void on_members(const std::vector<wg::PublicKey>& node_keys) override {
    log(LogLevel::info, kComponent, "membership: ", node_keys.size(), " nodes");
    if (server != nullptr) server->set_members(node_keys);
    members_ = node_keys;
  }
  void on_relays(const std::vector<control::RelayInfo>& relays) override {
    log(LogLevel::info, kComponent, "relay map: ", relays.size(), " relays");
    if (server != nullptr) server->set_relays(relays);
    relays_ = relays;
  }
  void on_coordinator(bool connected, const std::string& detail) override {
    // The link logs its own progress; this is for debugging the wiring.
    log(LogLevel::debug, kComponent, connected ? "coordinator up: " : "coordinator down: ", detail);
  }
  // What arrived before the server existed (the cache is read when the link starts).
  void replay() {
    if (server == nullptr) return;
    if (members_) server->set_members(*members_);
    if (relays_) server->set_relays(*relays_);
  }

 private:
  std::optional<std::vector<wg::PublicKey>> members_;
  std::optional<std::vector<control::RelayInfo>> relays_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"knit-relay: forwards sealed packets between mesh members; answers STUN"};
  std::string token, name, listen_text, stun_text, state_dir = "/var/lib/knit-relay";
  std::vector<std::string> advertise;
  std::string tls_cert, tls_key, metrics_text, level = "info";
  // Also read from KNIT_RELAY_TOKEN, so a service passes it without showing it in `ps`.
  app.add_option("--token", token, "relay join token (token create --relay); first start only")
      ->envname("KNIT_RELAY_TOKEN");
  app.add_option("--name", name, "relay name (one DNS label)")->required();
  app.add_option("--listen", listen_text, "TCP address to serve, IP:PORT")->required();
  app.add_option("--stun", stun_text, "UDP address to answer STUN on, IP:PORT");
  int stun_alt_port = -1;
  std::string stun_alt_ip_text;
  app.add_option("--stun-alt-port", stun_alt_port,
                 "second STUN port for NAT behaviour tests (default: --stun's port + 1; 0: none)");
  app.add_option("--stun-alt-ip", stun_alt_ip_text,
                 "second STUN address of this host for NAT behaviour tests (needs a specific --stun IP)");
  app.add_option("--state-dir", state_dir, "relay key, coordinator and membership cache")
      ->capture_default_str();
  // Also read from KNIT_RELAY_ADVERTISE, which the unit takes from /etc/knit/relay.conf.
  app.add_option("--advertise", advertise,
                 "HOST:PORT agents dial (repeatable or comma-separated; default: the --listen "
                 "address)")
      ->envname("KNIT_RELAY_ADVERTISE")
      ->delimiter(',')
      ->allow_extra_args(false);
  app.add_option("--tls-cert", tls_cert, "PEM certificate chain: also accept TLS on --listen");
  app.add_option("--tls-key", tls_key, "PEM private key for --tls-cert");
  app.add_option("--metrics", metrics_text, "serve Prometheus metrics over HTTP on IP:PORT");
  app.add_option("--log-level", level, "debug, info, warn or error")->capture_default_str();
  app.add_flag_callback("--version", [] {
    std::cout << "knit-relay " << KNIT_VERSION << "\n";
    std::exit(0);
  }, "print the version and exit");
  CLI11_PARSE(app, argc, argv);

  LogLevel parsed_level;
  if (!parse_log_level(level, parsed_level)) {
    std::cerr << "knit-relay: --log-level must be debug, info, warn or error\n";
    return 2;
  }
  set_log_level(parsed_level);

  try {
    if (tls_cert.empty() != tls_key.empty())
      throw std::runtime_error("--tls-cert and --tls-key go together");
    const asio::ip::tcp::endpoint listen = bind_address("--listen", listen_text);
    std::optional<Endpoint> stun;
    if (!stun_text.empty()) {
      stun = Endpoint::parse(stun_text);
      if (!stun) throw std::runtime_error("--stun wants IP:PORT, not '" + stun_text + "'");
    }
    // The service passes its settings from /etc/knit/relay.conf: the messages name them.
    if (name.empty())
      throw std::runtime_error("no relay name: set KNIT_RELAY_NAME in /etc/knit/relay.conf "
                               "(--name NAME), for example the region, fra1");
    punch::StunAddressGroup stun_group;
    if (stun) {
      stun_group.primary = *stun;
      if (stun_alt_port < -1 || stun_alt_port > 65535)
        throw std::runtime_error("--stun-alt-port wants 0..65535");
      if (stun_alt_port == -1 && stun->port() != 0 && stun->port() != 65535)
        stun_group.alternate_port = static_cast<std::uint16_t>(stun->port() + 1);
      else if (stun_alt_port > 0)
        stun_group.alternate_port = static_cast<std::uint16_t>(stun_alt_port);
      if (stun_group.alternate_port && *stun_group.alternate_port == stun->port())
        throw std::runtime_error("--stun-alt-port must differ from --stun's port");
      if (!stun_alt_ip_text.empty()) {
        stun_group.alternate_ip = IpAddress::parse(stun_alt_ip_text);
        if (!stun_group.alternate_ip)
          throw std::runtime_error("--stun-alt-ip wants an IP address, not '" + stun_alt_ip_text + "'");
      }
    } else if (stun_alt_port > 0 || !stun_alt_ip_text.empty()) {
      throw std::runtime_error("--stun-alt-port and --stun-alt-ip need --stun");
    }
    if (advertise.empty()) {
      if (listen.address().is_unspecified())
        throw std::runtime_error("--listen " + listen_text +
                                 " is a wildcard, so agents need to be told what to dial: set "
                                 "KNIT_RELAY_ADVERTISE=HOST:PORT in /etc/knit/relay.conf "
                                 "(--advertise HOST:PORT), for example relay.example.net:443");
      advertise.push_back(listen_text);
    }
    for (const std::string& a : advertise)
      if (!control::HostPort::parse(a))
        throw std::runtime_error("--advertise wants HOST:PORT, not '" + a + "'");

    asio::io_context io;
    SystemRandom rng;
    Membership membership;

    relay::CoordinatorLink::Options link_options;
    if (!token.empty()) link_options.token = token;
    link_options.state_dir = state_dir;
    link_options.name = name;
    link_options.advertise = advertise;
    link_options.stun_port = stun ? stun->port() : 0;
    relay::CoordinatorLink link(io, link_options, membership);

    relay::Server::Options server_options;
    server_options.listen = listen;
    if (!tls_cert.empty()) server_options.tls = relay::make_server_tls(tls_cert, tls_key);
    relay::Server server(io, link.relay_key(), server_options, rng);
    try {
      server.start();
    } catch (const std::system_error& e) {
      throw std::runtime_error("cannot listen on " + listen_text + ": " + e.code().message());
    }
    membership.server = &server;

    std::unique_ptr<punch::StunServer> stun_server;
    if (stun) {
      stun_server = std::make_unique<punch::StunServer>(
          io, std::vector<punch::StunAddressGroup>{stun_group},
          punch::StunResponderOptions{.software = "knit-relay " KNIT_VERSION});
      if (auto ec = stun_server->start())
        throw std::runtime_error("cannot serve STUN: " + stun_server->error_context() + ": " +
                                 ec.message());
    }
    // Opt-in: nothing listens unless --metrics is given (GET /metrics, as knitd and the
    // coordinator serve it).
    metrics::Registry registry;
    std::unique_ptr<net::MetricsServer> metrics_server;
    if (!metrics_text.empty()) {
      relay::register_metrics(registry, [&server]() -> const relay::Stats& { return server.stats(); });
      metrics_server = std::make_unique<net::MetricsServer>(
          io, bind_address("--metrics", metrics_text), [&registry] { return registry.render(); },
          net::ServerLimits{.max_connections = 16, .max_head = 4096, .deadline = std::chrono::seconds(5)});
      try {
        metrics_server->start();
      } catch (const std::system_error& e) {
        throw std::runtime_error("cannot serve metrics on " + metrics_text + ": " +
                                 e.code().message());
      }
    }

    link.start();  // calls the listener at once when a cache exists
    membership.replay();

    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](std::error_code ec, int signo) {
      if (ec) return;
      log(LogLevel::info, kComponent, "signal ", signo, ": shutting down");
      net::systemd_notify("STOPPING=1");
      link.stop();
      if (stun_server) stun_server->stop();
      if (metrics_server) metrics_server->stop();
      server.stop();
    });
    std::string where = "serving " + server.local_endpoint().address().to_string() + ":" +
                        std::to_string(server.local_endpoint().port()) +
                        (server_options.tls ? " (TCP and TLS)" : " (TCP)");
    if (stun_server)
      for (const auto& e : stun_server->local_endpoints()) where += ", STUN " + e.to_string();
    if (metrics_server) where += ", metrics " + metrics_text;
    log(LogLevel::info, kComponent, where, "; relay key ",
        to_base64(wg::crypto::public_key_of(link.relay_key())));
    // Serving: knit-relay.service (Type=notify) counts as started only now, and a relay that
    // exits before (a missing setting) makes `systemctl start` fail with that message.
    net::systemd_notify("READY=1");
    io.run();
    std::cout << "knit-relay: " << relay::summary_line(server.stats()) << std::endl;
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "knit-relay: " << e.what() << "\n";
    return 1;
  }
}
