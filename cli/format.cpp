#include "cli/format.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <vector>

namespace knit::cli {

namespace {

using Row = std::vector<std::string>;

std::string fixed(double value, int decimals) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", decimals, value);
  return text;
}

std::vector<std::size_t> column_widths(const std::vector<Row>& rows) {
  std::vector<std::size_t> widths;
  for (const Row& row : rows) {
    if (widths.size() < row.size()) widths.resize(row.size(), 0);
    for (std::size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
  }
  return widths;
}

// Columns padded to widths, two spaces apart; a cell past the known columns is written as is.
std::string render_row(const Row& row, const std::vector<std::size_t>& widths) {
  std::string line;
  for (std::size_t i = 0; i < row.size(); ++i) {
    line += row[i];
    if (i + 1 < row.size() && i < widths.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
  }
  while (!line.empty() && line.back() == ' ') line.pop_back();
  return line + "\n";
}

// ", snat on (IPv4 and IPv6, 3 sessions)" for the `# routes:` line: which families leave
// translated (an egress prefix of each family), or off / not active.
std::string snat_summary(const localapi::SnatStatus& snat) {
  std::string out = std::string(", snat ") + (!snat.enabled ? "off" : snat.active ? "on" : "not active");
  if (!snat.active) return out;
  bool v4 = false, v6 = false;
  for (const auto& [prefix, address] : snat.egress) (address.find(':') == std::string::npos ? v4 : v6) = true;
  const std::string families = v4 && v6 ? "IPv4 and IPv6, " : v6 ? "IPv6, " : "IPv4, ";
  const auto sessions = snat.counters.find("sessions");
  return out + " (" + families + std::to_string(sessions == snat.counters.end() ? 0 : sessions->second) + " sessions)";
}

}  // namespace

std::string format_bytes(std::uint64_t bytes) {
  static constexpr std::array<const char*, 6> kUnits = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024) return std::to_string(bytes) + " B";
  double value = static_cast<double>(bytes);
  std::size_t unit = 0;
  while (value >= 1024 && unit + 1 < kUnits.size()) {
    value /= 1024;
    ++unit;
  }
  return fixed(value, value < 10 ? 2 : 1) + " " + kUnits[unit];
}

std::string format_age(std::optional<std::int64_t> unix_seconds, WallTime now) {
  if (!unix_seconds) return "never";
  const auto now_s = std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
  const std::int64_t age = now_s - *unix_seconds;
  if (age < 1) return "just now";
  if (age < 120) return std::to_string(age) + "s ago";
  if (age < 7200) return std::to_string(age / 60) + "m ago";
  if (age < 172800) return std::to_string(age / 3600) + "h ago";
  return std::to_string(age / 86400) + "d ago";
}

std::string format_rtt(std::optional<double> rtt_ms) {
  if (!rtt_ms) return "-";
  if (*rtt_ms < 10) return fixed(*rtt_ms, 2) + " ms";
  if (*rtt_ms < 100) return fixed(*rtt_ms, 1) + " ms";
  return fixed(*rtt_ms, 0) + " ms";
}

std::string format_status(const localapi::StatusReply& reply, WallTime now) {
  const localapi::SelfStatus& self = reply.status.self;
  std::vector<Row> rows;
  // The self row's endpoint list is free text: it stays out of the column widths.
  rows.push_back({self.ipv4.to_string(), self.name, "self"});
  for (const localapi::PeerStatus& peer : reply.status.peers) {
    Row row = {peer.ipv4.to_string(),
               peer.name,
               std::string(to_string(peer.path)),
               peer.endpoint ? peer.endpoint->to_string() : "-",
               "rtt " + format_rtt(peer.rtt_ms),
               "handshake " + format_age(peer.last_handshake, now),
               "rx " + format_bytes(peer.rx_bytes),
               "tx " + format_bytes(peer.tx_bytes)};
    if (!peer.online) row.push_back("offline");
    // The path carries less than the tunnel: say so (TCP is clamped to it).
    if (peer.path_mtu && self.mtu && *peer.path_mtu < *self.mtu) row.push_back("mtu " + std::to_string(*peer.path_mtu));
    if (!peer.routes.empty()) {
      // The subnets it carries; "(not used)" when this node does not send them to it.
      std::string routes;
      for (const IpPrefix& p : peer.routes) routes += (routes.empty() ? "" : ",") + p.to_string();
      row.push_back("routes " + routes + (peer.routes_accepted ? "" : " (not used)"));
    }
    rows.push_back(std::move(row));
  }
  const auto widths = column_widths(rows);
  std::string endpoints;
  for (const Endpoint& endpoint : self.endpoints) endpoints += (endpoints.empty() ? "" : ", ") + endpoint.to_string();
  rows.front().push_back(endpoints.empty() ? "-" : endpoints);

  std::string out;
  for (const Row& row : rows) out += render_row(row, widths);
  if (const auto& filter = self.filter; filter && (filter->shields_up || !filter->forwards.empty())) {
    out += std::string("# shields ") + (filter->shields_up ? "up" : "down") + " (" +
           std::to_string(filter->counters.refused_v4 + filter->counters.refused_v6) + " refused)";
    for (const localapi::ForwardStatus& f : filter->forwards) {
      out += std::string(", forward ") + std::string(to_string(f.rule.protocol)) + "/" +
             std::to_string(f.rule.mesh_port) + " -> " + f.rule.target.to_string();
    }
    out += "\n";
  }
  if (const auto& routes = self.routes; routes && (!routes->advertised.empty() || routes->exit_node || routes->accept)) {
    std::string advertised;
    for (const IpPrefix& p : routes->advertised) advertised += (advertised.empty() ? "" : ",") + p.to_string();
    out += "# routes: advertising " + (advertised.empty() ? std::string("none") : advertised) +
           (routes->exit_node ? ", exit node" : "") + ", accept-routes " + (routes->accept ? "true" : "false") +
           (routes->snat && (!routes->advertised.empty() || routes->exit_node) ? snat_summary(*routes->snat) : std::string()) +
           "\n";
  }
  if (const auto& routes = self.routes) {
    // A route several peers carry: which one is in use, and why not the others.
    for (const localapi::RouteCarrierStatus& c : routes->carriers) {
      if (c.candidates.size() < 2) continue;
      std::string others;
      for (const localapi::RouteCarrierCandidate& k : c.candidates) {
        if (k.state == "active") continue;
        // "offline" says it all; "down" and "recovering" say why.
        const bool why = !k.reason.empty() && k.state != "offline";
        others += (others.empty() ? "" : "; ") + k.name + ": " + k.state + (why ? ", " + k.reason : std::string());
      }
      out += "# route " + c.prefix.to_string() + " via " + (c.via.empty() ? std::string("none") : c.via) +
             (others.empty() ? std::string() : " (" + others + ")") + "\n";
    }
  }
  if (const auto& exit = self.exit_node) {
    out += "# exit node: " + exit->name + (exit->ip ? " (" + exit->ip->to_string() + ")" : std::string()) + ", " +
           (exit->active ? std::string("active: the default route goes through it")
                         : exit->state + ": this host uses its own default route meanwhile") +
           ", allow-lan " + (exit->allow_lan ? "true" : "false") + "\n";
  }
  if (const auto& filter = self.filter; filter && filter->policy && filter->policy->in_force) {
    const localapi::PolicyStatus& p = *filter->policy;
    out += "# access policy in force (version " + std::to_string(p.version) + ", " + std::to_string(p.rules.size()) +
           " rules into this node): " + std::to_string(p.denied) + " inbound packets denied, " +
           std::to_string(p.cut) + " flows cut\n";
  }
  if (reply.coordinator.state != "connected") {
    out += "# coordinator: " + (reply.coordinator.state.empty() ? std::string("unknown") : reply.coordinator.state);
    if (!reply.coordinator.error.empty()) out += " (" + reply.coordinator.error + ")";
    out += "; tunnels keep working meanwhile\n";
  }
  return out;
}

std::string format_forwards(const std::vector<localapi::ForwardStatus>& forwards) {
  if (forwards.empty()) return "no port forwards\n";
  std::vector<Row> rows;
  rows.push_back({"PROTO", "MESH PORT", "TARGET", "STATE", "CONNECTIONS", "IN", "OUT"});
  for (const localapi::ForwardStatus& f : forwards) {
    rows.push_back({std::string(to_string(f.rule.protocol)), std::to_string(f.rule.mesh_port),
                    f.rule.target.to_string(), f.active ? "active" : "waiting for a mesh address",
                    std::to_string(f.connections), std::to_string(f.packets_in) + " pkts",
                    std::to_string(f.packets_out) + " pkts"});
  }
  const auto widths = column_widths(rows);
  std::string out;
  for (const Row& row : rows) out += render_row(row, widths);
  return out;
}

std::string format_snat(const localapi::SnatStatus& snat) {
  std::string out = std::string("snat-routes ") + (snat.enabled ? "true" : "false") + ", " +
                    (snat.active ? "translating" : "not translating") + ", ports " + snat.ports + "\n";
  for (const auto& [prefix, address] : snat.egress) out += "  " + prefix + " leaves as " + address + "\n";
  if (!snat.problem.empty()) out += "problem: " + snat.problem + "\n";
  std::string counters;
  for (const auto& [name, value] : snat.counters) counters += (counters.empty() ? "" : " ") + name + "=" + std::to_string(value);
  out += counters + "\n";
  if (snat.entries.empty()) return out + "no translations\n";
  char line[256];
  std::snprintf(line, sizeof line, "%-5s %-22s %-22s %-22s %-12s %-6s %s\n", "proto", "peer (internal)",
                "router (external)", "remote", "state", "idle", "expires");
  out += line;
  for (const localapi::SnatEntry& e : snat.entries) {
    std::snprintf(line, sizeof line, "%-5s %-22s %-22s %-22s %-12s %-6s %llds\n", e.protocol.c_str(),
                  e.internal.c_str(), e.external.c_str(), e.remote.c_str(), e.state.empty() ? "-" : e.state.c_str(),
                  (std::to_string(e.idle) + "s").c_str(), static_cast<long long>(e.expires_in));
    out += line;
  }
  return out;
}

}  // namespace knit::cli
