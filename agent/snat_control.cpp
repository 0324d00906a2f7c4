#include "agent/snat_control.hpp"

#include <algorithm>
#include <chrono>

namespace knit::agent {

namespace {

// "10.77.0.2:5001", "[2001:db8::2]:5001" (an IPv6 address in brackets, or its port would read
// as part of it).
std::string endpoint_text(const Endpoint& e) { return e.to_string(); }

}  // namespace

localapi::SnatStatus snat_status(const RouterNat& nat, bool enabled, const std::string& problem, Instant now,
                                 bool entries) {
  localapi::SnatStatus s;
  s.enabled = enabled;
  s.active = !nat.egress().empty();
  s.ports = std::to_string(nat.ports().min) + "-" + std::to_string(nat.ports().max);
  for (const SnatEgress& e : nat.egress()) s.egress[e.prefix.to_string()] = e.address.to_string();
  s.problem = enabled ? problem : "";
  const RouterNat::Totals t = nat.totals();
  s.counters = {{"mappings", t.mappings},
                {"sessions", t.sessions},
                {"mappings_created", t.mappings_created},
                {"sessions_created", t.sessions_created},
                {"packets_to_lan", t.to_lan_packets},
                {"packets_from_lan", t.from_lan_packets},
                {"translated_to_lan", t.translated_to_lan},
                {"translated_from_lan", t.translated_from_lan},
                {"dropped_to_lan", t.dropped_to_lan},
                {"dropped_from_lan", t.dropped_from_lan},
                {"icmp_errors_translated", t.icmp_errors_translated},
                {"table_full", t.drops[static_cast<std::size_t>(nat::DropReason::table_full)]},
                {"ports_exhausted", t.drops[static_cast<std::size_t>(nat::DropReason::ports_exhausted)]}};
  for (std::size_t i = 0; i < t.drops.size(); ++i) {
    if (t.drops[i] == 0) continue;
    s.counters[std::string("drop_") + nat::to_string(static_cast<nat::DropReason>(i))] = t.drops[i];
  }
  if (entries) {
    for (const RouterNat::Entry& e : nat.sessions()) {
      localapi::SnatEntry out;
      out.protocol = nat::to_string(e.session.protocol);
      out.internal = endpoint_text(e.session.internal);
      out.external = endpoint_text(e.session.external);
      out.remote = endpoint_text(e.session.remote);
      if (e.session.protocol == nat::Protocol::tcp) out.state = nat::to_string(e.session.tcp_state);
      out.expires_in = std::chrono::duration_cast<std::chrono::seconds>(e.session.expires - now).count();
      // Each packet sets the expiry to now + the timeout of the session's state (router_nat.hpp
      // keeps the engine's default timers), so what is left of it says when the last one came.
      const nat::Config timers;
      const Duration timeout = e.session.protocol == nat::Protocol::udp    ? timers.udp_timeout
                               : e.session.protocol == nat::Protocol::icmp ? timers.icmp_timeout
                               : nat::tcp_is_established(e.session.tcp_state) ? timers.tcp_established_timeout
                                                                              : timers.tcp_transitory_timeout;
      out.idle = std::max<std::int64_t>(
          0, std::chrono::duration_cast<std::chrono::seconds>(timeout).count() - out.expires_in);
      s.entries.push_back(std::move(out));
    }
  }
  return s;
}

void SnatControl::handle_request(localapi::ControlRequest request, Reply reply) {
  if (std::holds_alternative<localapi::NatRequest>(request))
    return reply(localapi::NatReply{snat_status(nat_, host_.enabled(), host_.problem(), Clock::now(), true)});
  const bool status = std::holds_alternative<localapi::StatusRequest>(request);
  const bool routes = std::holds_alternative<localapi::RoutesRequest>(request);
  if (!status && !routes) return next_.handle_request(std::move(request), std::move(reply));
  next_.handle_request(std::move(request), [this, reply](localapi::ControlResponse response) {
    localapi::RouteSettingsStatus* settings = nullptr;
    if (auto* s = std::get_if<localapi::StatusReply>(&response); s && s->status.self.routes) settings = &*s->status.self.routes;
    if (auto* r = std::get_if<localapi::RoutesReply>(&response)) settings = &r->routes;
    if (settings) settings->snat = snat_status(nat_, host_.enabled(), host_.problem(), Clock::now(), false);
    reply(std::move(response));
  });
}

}  // namespace knit::agent
