#include "agent/netcheck.hpp"

#include <algorithm>

#include "base/log.hpp"

namespace knit::agent {

namespace {
constexpr const char* kLog = "paths";
}

Netcheck::Netcheck(asio::io_context& io, UdpTransport& udp, Random& rng)
    : io_(io), udp_(udp), rng_(rng), probe_(rng), timer_(io, [this] { on_timer(); }) {}

Netcheck::~Netcheck() { stop(); }

void Netcheck::start() {
  if (running_) return;
  running_ = true;
  portmap_ = std::make_unique<punch::PortMapper>(io_, rng_);
  portmap_->start(udp_.port(), [this](const punch::PortMapEvent& e) { on_portmap(e); });
  start_run(Clock::now());
}

void Netcheck::stop() {
  if (!running_) return;
  running_ = false;
  timer_.cancel();
  probe_running_ = false;
  if (portmap_) {
    // Deleting the mapping at the router takes a round trip: the mapper lives until it is done,
    // and is released from a fresh handler, never from inside its own callback.
    std::shared_ptr<punch::PortMapper> mapper(std::move(portmap_));
    asio::io_context& io = io_;
    mapper->stop([mapper, &io]() mutable { asio::post(io, [m = std::move(mapper)] {}); });
  }
  for (auto& waiter : std::exchange(waiters_, {}))
    if (report_) waiter(*report_);
}

void Netcheck::set_relays(const control::RelayMap& relays) {
  if (relays == relays_) return;
  relays_ = relays;
  if (running_) start_run(Clock::now());
}

void Netcheck::run_now() {
  if (running_) start_run(Clock::now());
}

void Netcheck::run(std::function<void(const NetcheckReport&)> done) {
  waiters_.push_back(std::move(done));
  if (!probe_running_) start_run(Clock::now());
}

void Netcheck::set_home_relay(const std::string& name) {
  home_relay_ = name;
  if (report_) report_->home_relay = name;
}

std::vector<Endpoint> Netcheck::stun_servers() const {
  std::vector<Endpoint> out;
  for (const auto& relay : relays_.relays) {
    if (relay.stun_port == 0) continue;
    for (const auto& address : relay.addresses) {
      if (auto ip = address.ip()) {
        out.emplace_back(*ip, relay.stun_port);
        break;  // one address per relay: the first one agents dial
      }
    }
  }
  return out;
}

void Netcheck::start_run(Instant now) {
  if (!running_) return;
  next_run_ = now + kInterval;
  const auto servers = stun_servers();
  if (servers.empty()) {
    // Nothing to measure against: report what we know (no UDP evidence) at once.
    NetcheckReport report;
    report.finished = std::chrono::system_clock::now();
    report.home_relay = home_relay_;
    report.portmap_protocols = portmap_protocols_;
    report.portmapped = portmapped_;
    report_ = report;
    for (auto& waiter : std::exchange(waiters_, {})) waiter(*report_);
    timer_.arm(next_run_);
    return;
  }
  probe_running_ = true;
  probe_.start(now, servers);
  if (portmap_ && !portmap_probe_running_) {
    portmap_probe_running_ = true;
    portmap_->probe([this](const punch::PortMapAvailability& a) {
      portmap_probe_running_ = false;
      portmap_protocols_.clear();
      if (a.pcp) portmap_protocols_.push_back("pcp");
      if (a.natpmp) portmap_protocols_.push_back("natpmp");
      if (a.upnp) portmap_protocols_.push_back("upnp");
      if (report_) report_->portmap_protocols = portmap_protocols_;
      maybe_answer_waiters();
    });
  }
  for (auto& s : probe_.take_outgoing()) udp_.send_to(s.to, s.bytes);
  udp_.flush();
  timer_.arm(probe_.next_deadline());
}

void Netcheck::on_stun(Instant now, const Endpoint& from, ByteSpan datagram) {
  if (!probe_running_) return;
  probe_.handle(now, from, datagram);
  for (auto& s : probe_.take_outgoing()) udp_.send_to(s.to, s.bytes);
  if (probe_.done()) finish_run(now);
  else timer_.arm(probe_.next_deadline());
}

void Netcheck::on_timer() {
  if (!running_) return;
  const Instant now = Clock::now();
  if (probe_running_) {
    probe_.on_timers(now);
    for (auto& s : probe_.take_outgoing()) udp_.send_to(s.to, s.bytes);
    udp_.flush();
    if (probe_.done()) finish_run(now);
  }
  if (next_run_ && now >= *next_run_ && !probe_running_) start_run(now);
  std::optional<Instant> next = next_run_;
  if (probe_running_) {
    const auto p = probe_.next_deadline();
    if (p && (!next || *p < *next)) next = p;
  }
  timer_.arm(next);
}

void Netcheck::finish_run(Instant now) {
  (void)now;
  probe_running_ = false;
  NetcheckReport report;
  report.probe = probe_.result();
  report.finished = std::chrono::system_clock::now();
  report.portmap_protocols = portmap_protocols_;
  report.portmapped = portmapped_;
  report.home_relay = home_relay_;
  for (const auto& server : report.probe.servers) {
    if (!server.rtt) continue;
    for (const auto& relay : relays_.relays) {
      for (const auto& address : relay.addresses) {
        if (address.ip() == server.server.address() && relay.stun_port == server.server.port()) {
          report.relay_latency_ms[relay.name] = static_cast<std::uint32_t>(std::max<long long>(
              1, std::chrono::duration_cast<std::chrono::milliseconds>(*server.rtt).count()));
        }
      }
    }
  }
  report_ = std::move(report);
  timer_.arm(next_run_);
  if (on_changed) on_changed();
  maybe_answer_waiters();
}

void Netcheck::maybe_answer_waiters() {
  // `knit netcheck` waits for the STUN tests and the port-mapping probe both.
  if (probe_running_ || portmap_probe_running_ || !report_) return;
  for (auto& waiter : std::exchange(waiters_, {})) waiter(*report_);
}

void Netcheck::on_portmap(const punch::PortMapEvent& e) {
  using Kind = punch::PortMapEvent::Kind;
  std::optional<Endpoint> mapped;
  if ((e.kind == Kind::mapped || e.kind == Kind::renewed) && e.mapping) mapped = e.mapping->external;
  if (e.kind == Kind::mapped)
    log(LogLevel::info, kLog, "port mapping: ", e.mapping->external.to_string(), " (",
        punch::to_string(e.mapping->protocol), ")");
  if (mapped == portmapped_) return;
  portmapped_ = mapped;
  if (report_) report_->portmapped = portmapped_;
  if (on_changed) on_changed();
}

std::optional<control::NatReport> Netcheck::nat_report() const {
  if (!report_) return std::nullopt;
  control::NatReport out;
  out.udp = report_->probe.udp;
  out.public_v4 = report_->probe.public_v4;
  out.public_v6 = report_->probe.public_v6;
  out.mapping_varies = report_->probe.mapping_varies.value_or(false);
  switch (report_->probe.filtering) {
    case punch::NatFiltering::endpoint_independent: out.filtering = control::NatFiltering::eif; break;
    case punch::NatFiltering::address_dependent: out.filtering = control::NatFiltering::adf; break;
    case punch::NatFiltering::address_and_port_dependent: out.filtering = control::NatFiltering::apdf; break;
    case punch::NatFiltering::unknown: out.filtering = control::NatFiltering::unknown; break;
  }
  out.relay_latency_ms = report_->relay_latency_ms;
  return out;
}

}  // namespace knit::agent
