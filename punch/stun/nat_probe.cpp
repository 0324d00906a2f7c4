#include "punch/stun/nat_probe.hpp"

#include <algorithm>

namespace knit::punch {

using namespace stun;

std::string_view to_string(NatMapping mapping) {
  switch (mapping) {
    case NatMapping::endpoint_independent: return "EIM";
    case NatMapping::address_dependent: return "ADM";
    case NatMapping::address_and_port_dependent: return "APDM";
    case NatMapping::unknown: break;
  }
  return "unknown";
}

std::string_view to_string(NatFiltering filtering) {
  switch (filtering) {
    case NatFiltering::endpoint_independent: return "EIF";
    case NatFiltering::address_dependent: return "ADF";
    case NatFiltering::address_and_port_dependent: return "APDF";
    case NatFiltering::unknown: break;
  }
  return "unknown";
}

namespace {

Endpoint plain(const Endpoint& e) { return Endpoint(e.address(), e.port()); }

}  // namespace

NatProbe::NatProbe(Random& random, NatProbeOptions options)
    : options_(std::move(options)),
      client_(random, StunClientOptions{.retransmit = options_.retransmit, .software = options_.software}) {}

void NatProbe::start(Instant now, std::span<const Endpoint> servers) {
  client_.cancel_all();
  client_.take_outgoing();
  client_.take_results();
  pending_.clear();
  behaviour_server_.reset();
  behaviour_one_ip_ = false;
  filter_both_answered_ = filter_port_answered_ = filter_refused_ = false;
  filter_answers_ok_ = true;
  mapping_test3_started_ = false;
  result_ = NatProbeResult{};
  phase_ = Phase::binding;
  for (const auto& s : servers) {
    result_.servers.push_back(NatProbeServer{.server = plain(s)});
    begin(now, Role::binding, result_.servers.size() - 1, s, std::nullopt, options_.retransmit);
  }
  advance(now);
}

void NatProbe::begin(Instant now, Role role, std::size_t server, const Endpoint& to,
                     std::optional<std::uint8_t> change, const StunRetransmit& retransmit) {
  if (auto id = client_.begin(now, plain(to), change, retransmit)) pending_.push_back({*id, role, server});
}

bool NatProbe::handle(Instant now, const Endpoint& from, ByteSpan datagram) {
  if (!client_.handle(now, from, datagram)) return false;
  collect(now);
  return true;
}

void NatProbe::on_timers(Instant now) {
  client_.on_timers(now);
  collect(now);
}

void NatProbe::collect(Instant now) {
  for (const auto& r : client_.take_results()) {
    auto it = std::find_if(pending_.begin(), pending_.end(), [&](const Pending& p) { return p.id == r.id; });
    if (it == pending_.end()) continue;
    const Pending p = *it;
    pending_.erase(it);
    record(p, r);
  }
  advance(now);
}

void NatProbe::record(const Pending& p, const StunResult& r) {
  const bool ok = r.outcome == StunOutcome::success;
  const auto mapped = ok ? r.response.reflexive() : std::nullopt;
  auto& s = result_.servers[p.server];
  switch (p.role) {
    case Role::binding:
      if (!ok) break;
      s.answered = true;
      s.mapped = mapped;
      s.rtt = r.rtt;
      s.software = r.response.software;
      if (r.response.other_address && r.response.other_address->address().family() == s.server.address().family())
        s.other_address = r.response.other_address;
      result_.udp = true;
      if (mapped && mapped->address().is_v4() && !result_.public_v4) result_.public_v4 = plain(*mapped);
      if (mapped && mapped->address().is_v6() && !result_.public_v6) result_.public_v6 = plain(*mapped);
      break;
    case Role::filter_both:
      if (r.outcome == StunOutcome::error_response) filter_refused_ = true;
      if (!ok) break;
      filter_both_answered_ = true;
      // An answer from the address we asked is a server ignoring CHANGE-REQUEST, not a proof.
      if (r.responder.address() == s.server.address() || r.responder.port() == s.server.port())
        filter_answers_ok_ = false;
      break;
    case Role::filter_port:
      if (r.outcome == StunOutcome::error_response) filter_refused_ = true;
      if (!ok) break;
      filter_port_answered_ = true;
      if (r.responder.port() == s.server.port()) filter_answers_ok_ = false;
      break;
    case Role::map_other_ip:
      if (mapped) result_.mapped_other_ip = plain(*mapped);
      break;
    case Role::map_other_ip_port:
      if (mapped) result_.mapped_other_ip_port = plain(*mapped);
      break;
    case Role::map_other_port:
      if (mapped) result_.mapped_other_port = plain(*mapped);
      break;
  }
}

void NatProbe::advance(Instant now) {
  // Each phase ends when all of its transactions have an outcome; phases may be skipped.
  while (phase_ != Phase::done && phase_ != Phase::idle && pending_.empty()) {
    switch (phase_) {
      case Phase::binding: {
        // The behaviour server: the first that answered with a usable OTHER-ADDRESS (IPv4 first,
        // where NATs are); one with another IP (RFC 5780 proper) before one with another port
        // only (a single relay host: responder.hpp).
        for (int pass = 0; pass < 4 && !behaviour_server_; ++pass) {
          const bool one_ip = pass >= 2;
          for (std::size_t i = 0; i < result_.servers.size(); ++i) {
            const auto& s = result_.servers[i];
            if (!s.answered || !s.mapped || !s.other_address) continue;
            const bool same_ip = s.other_address->address() == s.server.address();
            if (same_ip != one_ip) continue;
            if (same_ip && s.other_address->port() == s.server.port()) continue;
            if (pass % 2 == 0 && !s.server.address().is_v4()) continue;
            behaviour_server_ = i;
            behaviour_one_ip_ = one_ip;
            break;
          }
        }
        if (behaviour_one_ip_) {
          // One IP, two ports: only the mapping can be measured. Filtering would need a change
          // of port answered before we ever sent to A:q, and on a Linux router without a WAN
          // firewall that unanswered inbound packet leaves a conntrack entry for A:q that makes
          // masquerade give the mapping test another port: a port-restricted cone would read
          // as symmetric. The mapping matters more (it decides port prediction).
          phase_ = Phase::mapping;
          if (options_.test_mapping) start_mapping(now);
          break;
        }
        phase_ = Phase::filtering;
        if (behaviour_server_ && options_.test_filtering) start_filtering(now);
        break;
      }
      case Phase::filtering:
        if (behaviour_server_ && options_.test_filtering) {
          if (filter_refused_ || !filter_answers_ok_) result_.filtering = NatFiltering::unknown;
          else if (filter_both_answered_) result_.filtering = NatFiltering::endpoint_independent;
          else if (filter_port_answered_) result_.filtering = NatFiltering::address_dependent;
          else result_.filtering = NatFiltering::address_and_port_dependent;
        }
        phase_ = Phase::mapping;
        if (behaviour_server_ && options_.test_mapping) start_mapping(now);
        break;
      case Phase::mapping:
        // Test III only when test II differed (RFC 5780 §4.3). Sent regardless, it would meet
        // the stray state an unanswered filtering test leaves in some NATs (Linux conntrack
        // picks another port for B:q) and report a variation the mapping does not have.
        if (!mapping_test3_started_ && behaviour_server_ && !behaviour_one_ip_ && options_.test_mapping &&
            need_test3()) {
          mapping_test3_started_ = true;
          const auto& srv = result_.servers[*behaviour_server_];
          begin(now, Role::map_other_ip_port, *behaviour_server_, *srv.other_address, std::nullopt,
                options_.retransmit);
          break;
        }
        finish();
        break;
      default:
        break;
    }
  }
}

void NatProbe::start_filtering(Instant now) {
  const std::size_t i = *behaviour_server_;
  const Endpoint server = result_.servers[i].server;
  begin(now, Role::filter_both, i, server, kChangeIp | kChangePort, options_.filter_retransmit);
  begin(now, Role::filter_port, i, server, kChangePort, options_.filter_retransmit);
}

void NatProbe::start_mapping(Instant now) {
  const std::size_t i = *behaviour_server_;
  const auto& s = result_.servers[i];
  if (behaviour_one_ip_) {
    begin(now, Role::map_other_port, i, *s.other_address, std::nullopt, options_.retransmit);
    return;
  }
  begin(now, Role::map_other_ip, i, Endpoint(s.other_address->address(), s.server.port()), std::nullopt,
        options_.retransmit);
}

bool NatProbe::need_test3() const {
  const auto& s = result_.servers[*behaviour_server_];
  return result_.mapped_other_ip && s.mapped && *result_.mapped_other_ip != *s.mapped &&
         s.other_address->port() != s.server.port();
}

void NatProbe::finish() {
  phase_ = Phase::done;
  // Mapping behaviour from the RFC 5780 tests (§4.3).
  if (behaviour_server_ && behaviour_one_ip_ && options_.test_mapping) {
    // A:p → X1, A:q → X2: the same → no variation by destination port (EIM as far as one IP
    // can show: an address-dependent mapping looks the same); different → APDM.
    const auto& x1 = result_.servers[*behaviour_server_].mapped;
    const auto& x2 = result_.mapped_other_port;
    if (x1 && x2)
      result_.mapping = plain(*x1) == *x2 ? NatMapping::endpoint_independent
                                          : NatMapping::address_and_port_dependent;
  } else if (behaviour_server_ && options_.test_mapping) {
    const auto& x1 = result_.servers[*behaviour_server_].mapped;
    const auto& x2 = result_.mapped_other_ip;
    const auto& x3 = result_.mapped_other_ip_port;
    if (x1 && x2) {
      if (*x1 == *x2) result_.mapping = NatMapping::endpoint_independent;
      else if (x3 && *x3 == *x2) result_.mapping = NatMapping::address_dependent;
      else if (x3) result_.mapping = NatMapping::address_and_port_dependent;
      // x3 missing (server without an alternate port): varies, but not known how.
    }
  }
  // mapping_varies: does any destination of one family see another reflexive address?
  std::vector<Endpoint> seen;
  for (const auto& s : result_.servers)
    if (s.mapped) seen.push_back(plain(*s.mapped));
  if (result_.mapped_other_ip) seen.push_back(*result_.mapped_other_ip);
  if (result_.mapped_other_ip_port) seen.push_back(*result_.mapped_other_ip_port);
  if (result_.mapped_other_port) seen.push_back(*result_.mapped_other_port);
  for (const auto family : {IpAddress::Family::v4, IpAddress::Family::v6}) {
    std::optional<Endpoint> first;
    std::size_t n = 0;
    bool varies = false;
    for (const auto& e : seen) {
      if (e.address().family() != family) continue;
      ++n;
      if (!first) first = e;
      else if (*first != e) varies = true;
    }
    if (n >= 2 && (family == IpAddress::Family::v4 || !result_.mapping_varies))
      result_.mapping_varies = result_.mapping_varies.value_or(false) || varies;
  }
  if (result_.mapping == NatMapping::endpoint_independent && result_.mapping_varies.value_or(false))
    result_.mapping = NatMapping::unknown;  // RFC 5780 says EIM, another server disagrees
}

}  // namespace knit::punch
