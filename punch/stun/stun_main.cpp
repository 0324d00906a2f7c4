// knit-stun: Knit's STUN server on its own (knit-relay embeds the same StunServer).
//
//   knit-stun --listen 198.51.100.1:3478 --alt-ip 198.51.100.2 --alt-port 3479
//
// With --alt-ip and --alt-port it listens on four sockets and supports RFC 5780 behaviour
// discovery (CHANGE-REQUEST, OTHER-ADDRESS); without them it is a plain RFC 8489 binding server
// (and answers CHANGE-REQUEST with 420). RFC 3489 clients are answered too. SIGINT/SIGTERM stop
// it; it prints its counters on the way out.
#include <signal.h>

#include <CLI/CLI.hpp>
#include <asio.hpp>
#include <iostream>
#include <string>

#include "base/ip.hpp"
#include "base/log.hpp"
#include "punch/stun/server.hpp"

using namespace knit;

int main(int argc, char** argv) {
  CLI::App app{"knit-stun: a STUN server (RFC 8489 binding, RFC 5780 behaviour discovery, RFC 3489 clients)"};
  std::string listen_text, alt_ip_text, level = "info", software = "knit-stun " KNIT_VERSION;
  unsigned alt_port = 0;
  bool no_classic = false;
  app.add_option("--listen", listen_text, "primary address and port, HOST:PORT ([v6]:PORT)")->required();
  app.add_option("--alt-ip", alt_ip_text, "alternate IP address (same family as --listen) for RFC 5780");
  app.add_option("--alt-port", alt_port, "alternate port for RFC 5780")->check(CLI::Range(1u, 65535u));
  app.add_option("--software", software, "SOFTWARE attribute in answers (empty: none)")->capture_default_str();
  app.add_flag("--no-classic", no_classic, "do not answer RFC 3489 (no magic cookie) requests");
  app.add_option("--log-level", level, "debug, info, warn or error")->capture_default_str();
  app.add_flag_callback("--version", [] {
    std::cout << "knit-stun " << KNIT_VERSION << "\n";
    std::exit(0);
  }, "print the version and exit");
  CLI11_PARSE(app, argc, argv);

  LogLevel parsed_level;
  if (!parse_log_level(level, parsed_level)) {
    std::cerr << "knit-stun: --log-level must be debug, info, warn or error\n";
    return 2;
  }
  set_log_level(parsed_level);
  const auto listen = Endpoint::parse(listen_text);
  if (!listen) {
    std::cerr << "knit-stun: --listen wants HOST:PORT with a numeric address, not '" << listen_text << "'\n";
    return 2;
  }
  punch::StunAddressGroup group{.primary = *listen};
  if (!alt_ip_text.empty()) {
    group.alternate_ip = IpAddress::parse(alt_ip_text);
    if (!group.alternate_ip) {
      std::cerr << "knit-stun: --alt-ip wants an IP address, not '" << alt_ip_text << "'\n";
      return 2;
    }
  }
  if (alt_port != 0) group.alternate_port = static_cast<std::uint16_t>(alt_port);

  try {
    asio::io_context io;
    punch::StunServer server(io, {group}, {.software = software, .answer_classic = !no_classic});
    if (auto ec = server.start()) {
      std::cerr << "knit-stun: " << server.error_context() << ": " << ec.message() << "\n";
      return 1;
    }
    asio::signal_set stop_signals(io, SIGINT, SIGTERM);
    stop_signals.async_wait([&](std::error_code ec, int signo) {
      if (ec) return;
      log(LogLevel::info, "stun", "signal ", signo, ": exiting");
      server.stop();
      io.stop();
    });
    std::cout << "knit-stun: serving";
    for (const auto& e : server.local_endpoints()) std::cout << " " << e.to_string();
    std::cout << (group.alternate_ip && group.alternate_port ? " (RFC 5780)" : "") << std::endl;
    io.run();
    const auto c = server.counters();
    const auto& r = c.responder;
    std::cout << "knit-stun: received " << c.received << ", answered " << r.answered << " (classic "
              << r.classic << ", changed " << r.changed << "), 420 " << r.error_420 << ", sent " << c.sent
              << ", send errors " << c.send_errors << "\n"
              << "knit-stun: drops: not-stun " << r.drop_not_stun << ", malformed " << r.drop_malformed
              << ", bad-fingerprint " << r.drop_bad_fingerprint << ", not-request " << r.drop_not_request
              << ", method " << r.drop_method << ", classic " << r.drop_classic << ", bad-port "
              << r.drop_bad_port << ", no-socket " << c.drop_no_socket << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "knit-stun: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
