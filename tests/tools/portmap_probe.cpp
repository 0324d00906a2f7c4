// portmap_probe: asks the gateway for a UDP port mapping with Knit's PortMapper and prints the
// result as one JSON line, holds the mapping, deletes it and exits. Used by
// tests/netns/portmap_test.sh.
//
//   portmap_probe --port 40000 [--gateway 10.0.0.1] [--protocol pcp|natpmp|upnp|any]
//                 [--hold SECONDS] [--lifetime SECONDS]
//     {"ok":true,"protocol":"pcp","external":"198.18.0.1:40000","external_address":...,
//      "external_port":40000,"internal_port":40000,"lifetime_s":7200,"gateway":"10.0.0.1"}
//     ... SECONDS later, after deleting the mapping:
//     {"stopped":true,"counters":{...}}
//   portmap_probe --available [--gateway ADDR]
//     {"gateway":"10.0.0.1","pcp":true,"natpmp":true,"upnp":true,"external_address":...}
// Exit status: 0 mapped (or probed), 1 no protocol could map, 2 usage or deadline.
#include <CLI/CLI.hpp>
#include <asio.hpp>
#include <iostream>
#include <nlohmann/json.hpp>

#include "base/log.hpp"
#include "base/random.hpp"
#include "punch/portmap/mapper.hpp"

using namespace knit;
using namespace knit::punch;

namespace {

nlohmann::json failures_json(const std::vector<PortMapFailure>& failures) {
  nlohmann::json out = nlohmann::json::array();
  for (const auto& f : failures) {
    out.push_back({{"protocol", to_string(f.protocol)},
                   {"error", to_string(f.error)},
                   {"detail", f.detail},
                   {"text", f.to_string()}});
  }
  return out;
}

nlohmann::json counters_json(const PortMapCounters& c) {
  return {{"requests_sent", c.requests_sent},     {"answers_accepted", c.answers_accepted},
          {"dropped_size", c.dropped_size},       {"dropped_version", c.dropped_version},
          {"dropped_opcode", c.dropped_opcode},   {"dropped_nonce", c.dropped_nonce},
          {"dropped_mismatch", c.dropped_mismatch}, {"dropped_source", c.dropped_source},
          {"renewals", c.renewals},               {"renewal_failures", c.renewal_failures},
          {"epoch_resets", c.epoch_resets},       {"mappings_lost", c.mappings_lost}};
}

void print(const nlohmann::json& j) { std::cout << j.dump() << std::endl; }

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Ask the gateway for a UDP port mapping (PCP, NAT-PMP, UPnP IGD)"};
  int port = 0;
  std::string gateway_text, protocol_text = "any";
  int hold_s = 0, lifetime_s = 7200, deadline_s = 30;
  bool available = false, verbose = false;
  app.add_option("--port", port, "local UDP port to map")->check(CLI::Range(1, 65535));
  app.add_option("--gateway", gateway_text, "gateway address (default: from /proc/net/route)");
  app.add_option("--protocol", protocol_text, "pcp, natpmp, upnp or any");
  app.add_option("--hold", hold_s, "seconds to keep the mapping before deleting it");
  app.add_option("--lifetime", lifetime_s, "lifetime to ask for, seconds");
  app.add_option("--deadline", deadline_s, "give up after this many seconds");
  app.add_flag("--available", available, "only report which protocols the gateway answers");
  app.add_flag("-v,--verbose", verbose, "debug log on stderr");
  CLI11_PARSE(app, argc, argv);
  set_log_level(verbose ? LogLevel::debug : LogLevel::warn);

  PortMapperOptions options;
  if (!gateway_text.empty()) {
    options.gateway = IpAddress::parse(gateway_text);
    if (!options.gateway) {
      std::cerr << "portmap_probe: bad --gateway '" << gateway_text << "'\n";
      return 2;
    }
  }
  if (protocol_text != "any") {
    const auto p = parse_port_map_protocol(protocol_text);
    if (!p) {
      std::cerr << "portmap_probe: --protocol must be pcp, natpmp, upnp or any\n";
      return 2;
    }
    options.protocols = {*p};
  }
  options.lifetime = std::chrono::seconds(lifetime_s);
  if (!available && port == 0) {
    std::cerr << "portmap_probe: --port is required\n";
    return 2;
  }

  asio::io_context io;
  SystemRandom random;
  PortMapper mapper(io, random, options);
  int status = 2;
  asio::steady_timer deadline(io), hold(io);
  deadline.expires_after(std::chrono::seconds(deadline_s));
  deadline.async_wait([&](std::error_code ec) {
    if (ec) return;
    print({{"ok", false}, {"error", "deadline"}});
    io.stop();
  });

  if (available) {
    mapper.probe([&](const PortMapAvailability& a) {
      nlohmann::json j{{"gateway", a.gateway ? a.gateway->to_string() : ""},
                       {"pcp", a.pcp},
                       {"natpmp", a.natpmp},
                       {"upnp", a.upnp},
                       {"failures", failures_json(a.failures)},
                       {"counters", counters_json(mapper.counters())}};
      if (a.external_address) j["external_address"] = a.external_address->to_string();
      print(j);
      status = 0;
      deadline.cancel();
    });
    io.run();
    return status;
  }

  auto finish = [&](int code) {
    status = code;
    mapper.stop([&] {
      print({{"stopped", true}, {"counters", counters_json(mapper.counters())}});
      deadline.cancel();
      hold.cancel();
    });
  };
  bool reported = false;
  mapper.start(static_cast<std::uint16_t>(port), [&](const PortMapEvent& e) {
    if (reported) return;
    reported = true;
    if (e.kind != PortMapEvent::Kind::mapped || !e.mapping) {
      print({{"ok", false},
             {"event", to_string(e.kind)},
             {"failures", failures_json(e.failures)},
             {"gateway", mapper.gateway() ? mapper.gateway()->to_string() : ""}});
      return finish(1);
    }
    const PortMapping& m = *e.mapping;
    print({{"ok", true},
           {"protocol", to_string(m.protocol)},
           {"external", m.external.to_string()},
           {"external_address", m.external.address().to_string()},
           {"external_port", m.external.port()},
           {"internal_port", m.internal_port},
           {"lifetime_s", std::chrono::duration_cast<std::chrono::seconds>(m.lifetime).count()},
           {"gateway", mapper.gateway() ? mapper.gateway()->to_string() : ""}});
    deadline.cancel();
    hold.expires_after(std::chrono::seconds(hold_s));
    hold.async_wait([&](std::error_code ec) {
      if (!ec) finish(0);
    });
  });
  io.run();
  return status;
}
