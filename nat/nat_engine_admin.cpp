// The control side of NatEngine: static port forwards, counters, and the table as people see
// it (sessions(), dump()).
#include <algorithm>
#include <cstdio>
#include <stdexcept>
#include <string>
#include <tuple>

#include "nat/nat_engine.hpp"

namespace knit::nat {

const char* to_string(ForwardError error) {
  switch (error) {
    case ForwardError::none: return "ok";
    case ForwardError::bad_protocol: return "port forwards are for TCP and UDP";
    case ForwardError::not_ipv4: return "addresses must be IPv4";
    case ForwardError::not_external_address: return "not one of the external addresses";
    case ForwardError::bad_port: return "port 0";
    case ForwardError::port_in_use: return "external port in use";
    case ForwardError::table_full: return "mapping table full";
  }
  return "?";
}

const char* to_string(Verdict verdict) {
  switch (verdict) {
    case Verdict::forward: return "forward";
    case Verdict::drop: return "drop";
    case Verdict::reply: return "reply";
    case Verdict::hairpin: return "hairpin";
  }
  return "?";
}

const char* to_string(DropReason reason) {
  switch (reason) {
    case DropReason::none: return "none";
    case DropReason::malformed: return "malformed";
    case DropReason::not_ipv4: return "not_ipv4";
    case DropReason::bad_checksum: return "bad_checksum";
    case DropReason::martian: return "martian";
    case DropReason::not_inside: return "not_inside";
    case DropReason::not_external: return "not_external";
    case DropReason::fragment: return "fragment";
    case DropReason::unsupported_protocol: return "unsupported_protocol";
    case DropReason::unsupported_icmp: return "unsupported_icmp";
    case DropReason::ttl_expired: return "ttl_expired";
    case DropReason::no_mapping: return "no_mapping";
    case DropReason::filtered: return "filtered";
    case DropReason::syn_held: return "syn_held";
    case DropReason::tcp_no_session: return "tcp_no_session";
    case DropReason::tuple_conflict: return "tuple_conflict";
    case DropReason::icmp_error_no_match: return "icmp_error_no_match";
    case DropReason::hairpin_disabled: return "hairpin_disabled";
    case DropReason::table_full: return "table_full";
    case DropReason::ports_exhausted: return "ports_exhausted";
  }
  return "?";
}

// ---- port forwards ---------------------------------------------------------------------

void NatEngine::install_configured_forwards() {
  for (const PortForward& forward : config_.port_forwards) {
    if (const ForwardError e = add_port_forward(forward); e != ForwardError::none) {
      throw std::invalid_argument("port forward " + std::string(to_string(forward.protocol)) + "/" +
                                  std::to_string(forward.external_port) + ": " + to_string(e));
    }
  }
}

ForwardError NatEngine::add_port_forward(const PortForward& forward) {
  if (forward.protocol == Protocol::icmp) return ForwardError::bad_protocol;
  if (!forward.internal_address.is_v4() ||
      (forward.external_address && !forward.external_address->is_v4()))
    return ForwardError::not_ipv4;
  if (forward.external_port == 0 || forward.internal_port == 0) return ForwardError::bad_port;
  std::uint16_t external_index = 0;
  if (forward.external_address) {
    const auto index = table_.external_index_of(forward.external_address->v4_host_order());
    if (!index) return ForwardError::not_external_address;
    external_index = *index;
  }
  if (table_.port_taken(forward.protocol, external_index, forward.external_port))
    return ForwardError::port_in_use;
  std::size_t slot = 0;
  while (slot < forwards_.size() && forwards_[slot].live) ++slot;
  if (slot >= kNoForward) return ForwardError::table_full;
  const NatTable::Created created =
      table_.create_static_mapping(forward.protocol, external_index, forward.external_port,
                                   forward.internal_address.v4_host_order(), forward.internal_port,
                                   static_cast<std::uint16_t>(slot));
  if (created.error == DropReason::table_full) return ForwardError::table_full;
  if (created.error != DropReason::none) return ForwardError::port_in_use;
  if (slot == forwards_.size()) forwards_.emplace_back();
  ForwardSlot& s = forwards_[slot];
  s = ForwardSlot{};
  s.forward = forward;
  s.forward.external_address = IpAddress::v4(table_.external_address(external_index));
  s.mapping = created.index;
  s.live = true;
  return ForwardError::none;
}

bool NatEngine::remove_port_forward(Protocol protocol, std::uint16_t external_port,
                                    std::optional<IpAddress> external_address) {
  const IpAddress address = external_address.value_or(IpAddress::v4(table_.external_address(0)));
  for (ForwardSlot& s : forwards_) {
    if (s.live && s.forward.protocol == protocol && s.forward.external_port == external_port &&
        s.forward.external_address == address) {
      table_.release_static_mapping(s.mapping);
      s.live = false;
      return true;
    }
  }
  return false;
}

std::vector<PortForwardStatus> NatEngine::port_forwards() const {
  std::vector<PortForwardStatus> out;
  for (const ForwardSlot& s : forwards_) {
    if (!s.live) continue;
    out.push_back(
        PortForwardStatus{s.forward, s.inbound_packets, s.outbound_packets, s.sessions_opened});
  }
  return out;
}

// ---- counters and views ----------------------------------------------------------------

Stats NatEngine::stats() const {
  Stats s = stats_;
  s.mappings_created = table_.mappings_created();
  s.mappings_removed = table_.mappings_removed();
  s.sessions_created = table_.sessions_created();
  s.sessions_removed = table_.sessions_removed();
  s.mappings_live = table_.mappings_live();
  s.sessions_live = table_.sessions_live();
  return s;
}

namespace {

SessionInfo info_of(const NatTable& table, const SessionEntry& s) {
  SessionInfo info;
  info.protocol = s.protocol;
  info.internal = Endpoint(IpAddress::v4(s.internal_address), s.internal_port);
  info.external =
      Endpoint(IpAddress::v4(table.external_address(s.external_index)), s.external_port);
  info.remote = Endpoint(IpAddress::v4(s.remote_address), s.remote_port);
  info.tcp_state = s.tcp_state;
  info.expires = s.expires;
  info.port_forward = s.forward != kNoForward;
  info.opened_inbound = s.opened_inbound;
  return info;
}

}  // namespace

std::vector<SessionInfo> NatEngine::sessions() const {
  std::vector<SessionInfo> out;
  out.reserve(table_.sessions_live());
  for (std::uint32_t i = 0; i < table_.slab_size(); ++i)
    if (table_.session(i).live) out.push_back(info_of(table_, table_.session(i)));
  return out;
}

std::optional<SessionInfo> NatEngine::find_session(Protocol protocol, const Endpoint& internal,
                                                   const Endpoint& remote) const {
  if (!internal.address().is_v4() || !remote.address().is_v4()) return std::nullopt;
  const FlowTuple flow{protocol, internal.address().v4_host_order(), internal.port(),
                       remote.address().v4_host_order(), remote.port()};
  const std::uint32_t i = table_.find_session_outbound(flow);
  if (i == kNoIndex) return std::nullopt;
  return info_of(table_, table_.session(i));
}

std::string NatEngine::dump() const { return dump(last_now_); }

std::string NatEngine::dump(Instant now) const {
  struct Row {
    std::string protocol, internal, external, remote, state, expires;
  };
  std::vector<std::tuple<int, std::uint32_t, std::uint16_t, std::uint32_t, std::uint16_t, Row>>
      rows;
  for (std::uint32_t i = 0; i < table_.slab_size(); ++i) {
    const SessionEntry& s = table_.session(i);
    if (!s.live) continue;
    const SessionInfo info = info_of(table_, s);
    Row row{
        to_string(s.protocol),
        info.internal.to_string(),
        info.external.to_string(),
        s.protocol == Protocol::icmp ? info.remote.address().to_string() : info.remote.to_string(),
        s.protocol == Protocol::tcp ? to_string(s.tcp_state) : "-",
        ""};
    if (s.forward != kNoForward) row.state += " (forward)";
    const auto left = std::chrono::duration_cast<std::chrono::seconds>(s.expires - now);
    row.expires = left.count() <= 0 ? "expired" : std::to_string(left.count()) + "s";
    rows.emplace_back(static_cast<int>(s.protocol), s.internal_address, s.internal_port,
                      s.remote_address, s.remote_port, row);
  }
  // Port forwards nobody is using yet: the standing DNAT rules.
  for (const ForwardSlot& f : forwards_) {
    if (!f.live || table_.mapping(f.mapping).sessions != 0) continue;
    const MappingEntry& m = table_.mapping(f.mapping);
    Row row{to_string(m.protocol),
            Endpoint(IpAddress::v4(m.internal_address), m.internal_port).to_string(),
            Endpoint(IpAddress::v4(table_.external_address(m.external_index)), m.external_port)
                .to_string(),
            "*",
            "forward",
            "never"};
    rows.emplace_back(static_cast<int>(m.protocol), m.internal_address, m.internal_port, 0, 0, row);
  }
  std::sort(rows.begin(), rows.end(), [](const auto& a, const auto& b) {
    return std::tie(std::get<0>(a), std::get<1>(a), std::get<2>(a), std::get<3>(a),
                    std::get<4>(a)) <
           std::tie(std::get<0>(b), std::get<1>(b), std::get<2>(b), std::get<3>(b), std::get<4>(b));
  });

  std::string out =
      "NAT mapping " + std::string(to_string(config_.mapping)) + ", filtering " +
      to_string(config_.filtering) + ", hairpinning " + (config_.hairpinning ? "on" : "off") +
      "; " + std::to_string(table_.mappings_live()) + "/" + std::to_string(config_.max_mappings) +
      " mappings, " + std::to_string(table_.sessions_live()) + "/" +
      std::to_string(config_.max_sessions) + " sessions\n";
  char line[256];
  const char* format = "%-5s %-21s %-21s %-21s %-24s %s\n";
  std::snprintf(line, sizeof line, format, "proto", "internal", "external", "remote", "state",
                "expires in");
  out += line;
  for (const auto& entry : rows) {
    const Row& r = std::get<5>(entry);
    std::snprintf(line, sizeof line, format, r.protocol.c_str(), r.internal.c_str(),
                  r.external.c_str(), r.remote.c_str(), r.state.c_str(), r.expires.c_str());
    out += line;
  }
  return out;
}

}  // namespace knit::nat
