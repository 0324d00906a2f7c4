// stun_probe: Knit's STUN client core (NatProbe, or one StunClient transaction) over a plain UDP
// socket, printing JSON — so netns tests can run Knit's client against coturn's turnserver
// and against knit-stun.
//
//   stun_probe --server 198.51.100.1:3478 [--server 192.0.2.9:3478] [--bind 0.0.0.0:40000]
//   stun_probe --binding --change 6 --server ...         # one request, its answer as JSON
//
// Output (probe): {"udp", "public_v4", "public_v6", "mapping", "mapping_varies", "filtering",
//   "mapped_other_ip", "mapped_other_ip_port", "servers": [{"server", "answered", "mapped",
//   "other_address", "rtt_ms", "software"}], "elapsed_ms", "counters": {...}}
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "base/ip.hpp"
#include "base/random.hpp"
#include "base/time.hpp"
#include "punch/stun/client.hpp"
#include "punch/stun/nat_probe.hpp"

using namespace knit;
using json = nlohmann::json;

namespace {

json endpoint_json(const std::optional<Endpoint>& e) { return e ? json(e->to_string()) : json(nullptr); }

double ms(Duration d) { return std::chrono::duration<double, std::milli>(d).count(); }

json counters_json(const punch::StunClientCounters& c) {
  return {{"requests", c.requests}, {"sent", c.sent}, {"retransmits", c.retransmits},
          {"responses", c.responses}, {"timeouts", c.timeouts}, {"error_responses", c.error_responses},
          {"drop_unknown_id", c.drop_unknown_id}, {"drop_malformed", c.drop_malformed},
          {"drop_bad_fingerprint", c.drop_bad_fingerprint}};
}

class Socket {
 public:
  explicit Socket(const Endpoint& bind) {
    fd_ = ::socket(bind.address().is_v4() ? AF_INET : AF_INET6, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (fd_ < 0) throw std::runtime_error("socket: " + std::string(std::strerror(errno)));
    sockaddr_storage ss;
    const unsigned len = bind.to_sockaddr(ss);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&ss), len) < 0)
      throw std::runtime_error("bind " + bind.to_string() + ": " + std::strerror(errno));
  }
  ~Socket() { ::close(fd_); }
  void send(const punch::StunDatagram& d) {
    sockaddr_storage ss;
    const unsigned len = d.to.to_sockaddr(ss);
    ::sendto(fd_, d.bytes.data(), d.bytes.size(), 0, reinterpret_cast<sockaddr*>(&ss), len);
  }
  // Waits until a datagram arrives or the deadline passes.
  std::optional<std::pair<Endpoint, Bytes>> receive(std::optional<Instant> deadline) {
    int timeout = 1000;
    if (deadline) {
      const auto left = std::chrono::ceil<std::chrono::milliseconds>(*deadline - Clock::now()).count();
      timeout = static_cast<int>(std::clamp<long long>(left, 0, 1000));
    }
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, timeout) <= 0) return std::nullopt;
    Bytes buf(65536);
    sockaddr_storage ss{};
    socklen_t sl = sizeof ss;
    const ssize_t n = ::recvfrom(fd_, buf.data(), buf.size(), 0, reinterpret_cast<sockaddr*>(&ss), &sl);
    if (n < 0) return std::nullopt;
    buf.resize(static_cast<std::size_t>(n));
    auto from = Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss));
    if (!from) return std::nullopt;
    return std::make_pair(*from, std::move(buf));
  }
  Endpoint local() const {
    sockaddr_storage ss{};
    socklen_t sl = sizeof ss;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&ss), &sl);
    return Endpoint::from_sockaddr(reinterpret_cast<sockaddr*>(&ss)).value_or(Endpoint{});
  }

 private:
  int fd_ = -1;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"stun_probe: Knit's STUN client / NAT behaviour probe over a UDP socket, as JSON"};
  std::vector<std::string> server_texts;
  std::string bind_text;
  bool binding = false, no_filtering = false;
  int change = -1;
  unsigned rto_ms = 250, sends = 4, filter_sends = 3, last_wait = 4;
  app.add_option("--server", server_texts, "STUN server HOST:PORT (repeatable)")->required();
  app.add_option("--bind", bind_text, "local ADDR:PORT (default: any address of the first server's family, any port)");
  app.add_flag("--binding", binding, "one binding transaction to the first server instead of the NAT probe");
  app.add_option("--change", change, "with --binding: CHANGE-REQUEST flags (4 = IP, 2 = port)");
  app.add_option("--rto-ms", rto_ms, "initial retransmission timeout")->capture_default_str();
  app.add_option("--sends", sends, "requests per transaction")->capture_default_str();
  app.add_option("--filter-sends", filter_sends, "requests per filtering-test transaction")->capture_default_str();
  app.add_option("--last-wait", last_wait, "wait after the last request, in RTOs")->capture_default_str();
  app.add_flag("--no-filtering", no_filtering, "skip the filtering test");
  CLI11_PARSE(app, argc, argv);

  try {
    std::vector<Endpoint> servers;
    for (const auto& t : server_texts) {
      auto e = Endpoint::parse(t);
      if (!e) throw std::runtime_error("--server wants a numeric HOST:PORT, not '" + t + "'");
      servers.push_back(*e);
    }
    Endpoint bind = servers[0].address().is_v4() ? Endpoint(IpAddress::v4(0u), 0) : Endpoint::parse("[::]:0").value();
    if (!bind_text.empty()) {
      auto e = Endpoint::parse(bind_text);
      if (!e) throw std::runtime_error("--bind wants ADDR:PORT");
      bind = *e;
    }
    Socket socket(bind);
    SystemRandom rng;
    const punch::StunRetransmit rt{.rto = std::chrono::milliseconds(rto_ms), .max_sends = sends, .last_wait_rtos = last_wait};
    const Instant t0 = Clock::now();
    json out;
    out["local"] = socket.local().to_string();

    if (binding) {
      punch::StunClient client(rng, {.retransmit = rt});
      std::optional<std::uint8_t> flags;
      if (change >= 0) flags = static_cast<std::uint8_t>(change);
      client.begin(Clock::now(), servers[0], flags);
      std::vector<punch::StunResult> results;
      while (results.empty()) {
        for (const auto& d : client.take_outgoing()) socket.send(d);
        if (auto got = socket.receive(client.next_deadline())) client.handle(Clock::now(), got->first, got->second);
        client.on_timers(Clock::now());
        results = client.take_results();
      }
      const auto& r = results[0];
      out["outcome"] = std::string(punch::to_string(r.outcome));
      out["server"] = r.server.to_string();
      if (r.outcome != punch::StunOutcome::timeout) {
        out["responder"] = r.responder.to_string();
        out["mapped"] = endpoint_json(r.response.reflexive());
        out["xor_mapped"] = endpoint_json(r.response.xor_mapped);
        out["response_origin"] = endpoint_json(r.response.response_origin);
        out["other_address"] = endpoint_json(r.response.other_address);
        out["software"] = r.response.software;
        out["fingerprint"] = r.response.has_fingerprint;
        out["error_code"] = r.response.error_code ? json(r.response.error_code->code) : json(nullptr);
        out["rtt_ms"] = ms(r.rtt);
      }
      out["counters"] = counters_json(client.counters());
    } else {
      punch::NatProbe probe(rng, {.retransmit = rt,
                                  .filter_retransmit = {.rto = rt.rto, .max_sends = filter_sends, .last_wait_rtos = last_wait},
                                  .test_filtering = !no_filtering});
      probe.start(Clock::now(), servers);
      while (!probe.done()) {
        for (const auto& d : probe.take_outgoing()) socket.send(d);
        if (probe.done()) break;
        if (auto got = socket.receive(probe.next_deadline())) probe.handle(Clock::now(), got->first, got->second);
        probe.on_timers(Clock::now());
      }
      const auto& r = probe.result();
      out["udp"] = r.udp;
      out["public_v4"] = endpoint_json(r.public_v4);
      out["public_v6"] = endpoint_json(r.public_v6);
      out["mapping"] = std::string(punch::to_string(r.mapping));
      out["mapping_varies"] = r.mapping_varies ? json(*r.mapping_varies) : json(nullptr);
      out["filtering"] = std::string(punch::to_string(r.filtering));
      out["mapped_other_ip"] = endpoint_json(r.mapped_other_ip);
      out["mapped_other_ip_port"] = endpoint_json(r.mapped_other_ip_port);
      out["servers"] = json::array();
      for (const auto& s : r.servers)
        out["servers"].push_back({{"server", s.server.to_string()}, {"answered", s.answered},
                                  {"mapped", endpoint_json(s.mapped)}, {"other_address", endpoint_json(s.other_address)},
                                  {"rtt_ms", s.rtt ? json(ms(*s.rtt)) : json(nullptr)}, {"software", s.software}});
      out["counters"] = counters_json(probe.counters());
    }
    out["elapsed_ms"] = ms(Clock::now() - t0);
    std::cout << out.dump() << std::endl;
  } catch (const std::exception& e) {
    std::cerr << "stun_probe: " << e.what() << "\n";
    return 1;
  }
  return 0;
}
