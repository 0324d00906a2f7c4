// knit-natbox: Knit's NAT engine as a router, to put lab hosts behind any RFC 4787 NAT type
// (mapping EIM/ADM/APDM x filtering EIF/ADF/APDF), including those netfilter cannot express.
//
//   knit-natbox --inside IFACE --outside IFACE --public-ip ADDR --mapping eim|adm|apdm
//               --filtering eif|adf|apdf [--hairpin] [--udp-timeout SECONDS]     (contract)
//               [--dump-interval SECONDS] [--log-level LEVEL]
//
// Runs in a router namespace that forwards between the two interfaces and has no NAT rules of
// its own; takes that traffic over through two TUNs (takeover.hpp) and translates it
// (forwarder.hpp); SIGINT/SIGTERM give everything back and print the counters; SIGUSR1 prints
// the translation table.
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <asio.hpp>
#include <cctype>
#include <chrono>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>

#include "base/log.hpp"
#include "base/random.hpp"
#include "nat/nat_engine.hpp"
#include "natbox/forwarder.hpp"
#include "natbox/takeover.hpp"
#include "tun/link_config.hpp"
#include "tun/tun_device.hpp"

using namespace knit;

namespace {

const std::map<std::string, nat::Mapping> kMappings = {
    {"eim", nat::Mapping::endpoint_independent},
    {"adm", nat::Mapping::address_dependent},
    {"apdm", nat::Mapping::address_and_port_dependent},
};
const std::map<std::string, nat::Filtering> kFilterings = {
    {"eif", nat::Filtering::endpoint_independent},
    {"adf", nat::Filtering::address_dependent},
    {"apdf", nat::Filtering::address_and_port_dependent},
};

std::string upper(std::string text) {
  for (char& c : text) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return text;
}

std::string join(const std::vector<IpPrefix>& prefixes) {
  std::string out;
  for (const IpPrefix& p : prefixes) out += (out.empty() ? "" : ", ") + p.to_string();
  return out;
}

void print_counters(const nat::Stats& s, const natbox::Forwarder::Counters& c) {
  std::cout << "natbox: outbound " << s.outbound_packets << " packets (forwarded "
            << s.forwarded_outbound << ", hairpinned " << s.hairpinned << ", dropped "
            << s.dropped_outbound << ", ICMP replies " << s.replied_outbound << "); inbound "
            << s.inbound_packets << " (forwarded " << s.forwarded_inbound << ", dropped "
            << s.dropped_inbound << ", ICMP replies " << s.replied_inbound << ")\n";
  std::cout << "natbox: mappings created " << s.mappings_created << ", removed "
            << s.mappings_removed << ", live " << s.mappings_live << "; sessions created "
            << s.sessions_created << ", removed " << s.sessions_removed << ", live "
            << s.sessions_live << "; ICMP errors translated " << s.icmp_errors_translated
            << ", generated " << s.icmp_errors_generated << "\n";
  std::ostringstream drops;
  for (std::size_t i = 0; i < nat::kDropReasonCount; ++i) {
    if (s.drops[i] == 0) continue;
    drops << " " << nat::to_string(static_cast<nat::DropReason>(i)) << "=" << s.drops[i];
  }
  std::cout << "natbox: drops:" << (drops.str().empty() ? " none" : drops.str()) << "\n";
  std::cout << "natbox: tun: read " << c.read_inside << " from inside, " << c.read_outside
            << " from outside; written " << c.written << ", write errors " << c.write_errors
            << ", read errors " << c.read_errors << "; unclaimed inbound handed to the router "
            << c.to_router << "\n"
            << std::flush;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"knit-natbox: the Knit NAT engine as a router between two interfaces"};
  std::string inside, outside, public_text, mapping_name, filtering_name;
  bool hairpin = false;
  unsigned udp_timeout = 300;
  unsigned dump_interval = 0;
  std::string level = "info";
  app.add_option("--inside", inside, "interface toward the hosts behind the NAT")->required();
  app.add_option("--outside", outside, "interface toward the outside world")->required();
  app.add_option("--public-ip", public_text, "the NAT's external IPv4 address")->required();
  app.add_option("--mapping", mapping_name, "eim, adm or apdm (RFC 4787 §4.1)")
      ->required()
      ->check(CLI::IsMember({"eim", "adm", "apdm"}, CLI::ignore_case));
  app.add_option("--filtering", filtering_name, "eif, adf or apdf (RFC 4787 §5)")
      ->required()
      ->check(CLI::IsMember({"eif", "adf", "apdf"}, CLI::ignore_case));
  app.add_flag("--hairpin", hairpin, "translate inside-to-public-address traffic (RFC 4787 REQ-9)");
  app.add_option("--udp-timeout", udp_timeout, "idle seconds before a UDP mapping expires")
      ->check(CLI::Range(1u, 86400u))
      ->capture_default_str();
  app.add_option("--dump-interval", dump_interval,
                 "print the translation table every SECONDS (0: only on SIGUSR1)")
      ->capture_default_str();
  app.add_option("--log-level", level, "debug, info, warn or error")->capture_default_str();
  app.add_flag_callback("--version", [] {
    std::cout << "knit-natbox " << KNIT_VERSION << "\n";
    std::exit(0);
  }, "print the version and exit");
  CLI11_PARSE(app, argc, argv);

  LogLevel parsed_level;
  if (!parse_log_level(level, parsed_level)) {
    std::cerr << "knit-natbox: --log-level must be debug, info, warn or error\n";
    return 2;
  }
  set_log_level(parsed_level);
  for (char& c : mapping_name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  for (char& c : filtering_name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  const auto public_address = IpAddress::parse(public_text);
  if (!public_address || !public_address->is_v4() || public_address->is_unspecified()) {
    std::cerr << "knit-natbox: --public-ip must be an IPv4 address, not '" << public_text << "'\n";
    return 2;
  }
  std::cout << std::unitbuf;
  // SIGINT/SIGTERM wait (blocked) until the signal_set below can take them, so a stop request
  // that comes early still ends in restoring the router.
  sigset_t stop_mask;
  sigemptyset(&stop_mask);
  sigaddset(&stop_mask, SIGINT);
  sigaddset(&stop_mask, SIGTERM);
  ::sigprocmask(SIG_BLOCK, &stop_mask, nullptr);

  try {
    const std::string pid = std::to_string(::getpid());
    natbox::Takeover::Plan plan{inside, outside, *public_address, "nbx" + pid + "i", "nbx" + pid + "o"};
    const natbox::Takeover::Survey survey = natbox::Takeover::survey(plan);

    nat::Config config;
    config.external_addresses = {*public_address};
    config.mapping = kMappings.at(mapping_name);
    config.filtering = kFilterings.at(filtering_name);
    config.hairpinning = hairpin;
    config.udp_timeout = std::chrono::seconds(udp_timeout);
    config.inside_prefixes = survey.inside_networks;
    config.inside_address = survey.inside_address;
    // The kernel already decrements the TTL (twice: forwarding into the TUN and out of it, so
    // traceroute shows the router twice) and answers an expired one with ICMP time exceeded.
    config.decrement_ttl = false;
    SystemRandom rng;
    nat::NatEngine engine(config, rng);

    // Signals are caught from before the first change to the router, so a SIGTERM that comes
    // during set-up still ends in restore().
    asio::io_context io;
    bool stopping = false;
    asio::signal_set stop_signals(io, SIGINT, SIGTERM);
    ::sigprocmask(SIG_UNBLOCK, &stop_mask, nullptr);
    asio::signal_set dump_signal(io, SIGUSR1);
    asio::steady_timer dump_timer(io);

    // TUNSETIFF attaches to an existing TUN of the same name instead of making a new one: refuse
    // to take over a device this run did not make (a persistent TUN, or one still held open).
    {
      tun::LinkConfig links;
      for (const std::string& name : {plan.tun_inside, plan.tun_outside}) {
        if (links.ifindex(name))
          throw std::runtime_error("an interface named " + name +
                                   " exists already in this namespace: remove it (ip link del " +
                                   name + ") and start again");
      }
    }
    tun::TunDevice tun_inside = tun::TunDevice::open({plan.tun_inside, 1});
    tun::TunDevice tun_outside = tun::TunDevice::open({plan.tun_outside, 1});
    plan.tun_inside = tun_inside.name();
    plan.tun_outside = tun_outside.name();
    natbox::Takeover takeover(plan, survey);
    natbox::Forwarder forwarder(io, tun_inside, tun_outside, engine,
                                {.unclaimed_to_router = survey.public_is_local});

    stop_signals.async_wait([&](std::error_code ec, int signo) {
      if (ec) return;
      log(LogLevel::info, "natbox", "signal ", signo, ": restoring the router and exiting");
      stopping = true;
      forwarder.stop();
      io.stop();
    });
    auto print_dump = [&] { std::cout << engine.dump(Clock::now()) << std::flush; };
    std::function<void()> arm_dump_signal = [&] {
      dump_signal.async_wait([&](std::error_code ec, int) {
        if (ec) return;
        print_dump();
        arm_dump_signal();
      });
    };
    arm_dump_signal();
    std::function<void()> arm_dump_timer = [&] {
      if (dump_interval == 0) return;
      dump_timer.expires_after(std::chrono::seconds(dump_interval));
      dump_timer.async_wait([&](std::error_code ec) {
        if (ec) return;
        print_dump();
        arm_dump_timer();
      });
    };
    arm_dump_timer();

    forwarder.start();
    std::cout << "natbox: " << upper(mapping_name) << "/" << upper(filtering_name) << ", public "
              << public_address->to_string() << ", inside " << inside << " ("
              << join(survey.inside_networks) << "), outside " << outside << "\n";
    std::cout << "natbox: hairpinning " << (hairpin ? "on" : "off") << ", UDP timeout "
              << udp_timeout << " s; " << takeover.summary() << "\n";

    io.run();
    if (!stopping) log(LogLevel::error, "natbox", "the packet loop ended unexpectedly");
    takeover.restore();
    print_counters(engine.stats(), forwarder.counters());
  } catch (const std::exception& e) {
    std::cerr << "knit-natbox: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
