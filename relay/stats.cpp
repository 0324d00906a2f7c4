#include "relay/stats.hpp"

#include <sstream>

namespace knit::relay {
namespace {

void metric(std::ostringstream& out, const char* name, const char* type, const char* help,
            std::uint64_t value) {
  out << "# HELP knit_relay_" << name << ' ' << help << "\n# TYPE knit_relay_" << name << ' '
      << type << "\nknit_relay_" << name << ' ' << value << '\n';
}

// One counter family with a label per member.
struct Labeled {
  const char* label;
  std::uint64_t value;
};

void family(std::ostringstream& out, const char* name, const char* help, const char* key,
            std::initializer_list<Labeled> values) {
  out << "# HELP knit_relay_" << name << ' ' << help << "\n# TYPE knit_relay_" << name
      << " counter\n";
  for (const Labeled& v : values)
    out << "knit_relay_" << name << '{' << key << "=\"" << v.label << "\"} " << v.value << '\n';
}

}  // namespace

std::string to_prometheus(const Stats& s) {
  std::ostringstream out;
  metric(out, "clients", "gauge", "Admitted client connections.", s.clients);
  metric(out, "relay_links", "gauge", "Open links to peer relays.", s.relay_links);
  metric(out, "handshaking", "gauge", "Connections not yet admitted.", s.handshaking);
  metric(out, "remote_clients", "gauge", "Clients announced by peer relays.", s.remote_clients);
  metric(out, "connections_accepted_total", "counter", "TCP connections accepted.", s.accepted);
  metric(out, "connections_admitted_total", "counter", "Handshakes admitted.", s.admitted);
  family(out, "handshakes_refused_total", "Handshakes refused, by reason.", "reason",
         {{"not_member", s.refused_not_member},
          {"not_relay", s.refused_not_relay},
          {"membership_unknown", s.refused_membership_unknown},
          {"bad_hello", s.refused_bad_hello},
          {"handshake_failed", s.handshake_failed},
          {"timeout", s.handshake_timeouts}});
  family(out, "connections_closed_total", "Admitted connections the relay ended, by reason.",
         "reason",
         {{"idle", s.idle_timeouts},
          {"replaced", s.replaced},
          {"removed", s.cut_off},
          {"error", s.connection_errors}});
  family(out, "packets_forwarded_total", "Packets forwarded, by path.", "path",
         {{"local", s.packets_local}, {"to_mesh", s.packets_to_mesh},
          {"from_mesh", s.packets_from_mesh}});
  family(out, "bytes_forwarded_total", "Packet bytes forwarded, by path.", "path",
         {{"local", s.bytes_local}, {"to_mesh", s.bytes_to_mesh},
          {"from_mesh", s.bytes_from_mesh}});
  metric(out, "peer_gone_sent_total", "counter", "peer_gone frames sent.", s.peer_gone_sent);
  family(out, "drops_total", "Packets or frames dropped, by reason.", "reason",
         {{"queue_full", s.drop_queue_full},
          {"no_route", s.drop_no_route},
          {"mesh_no_client", s.drop_mesh_no_client},
          {"malformed", s.drop_malformed},
          {"unknown_type", s.drop_unknown_type},
          {"not_allowed", s.drop_not_allowed},
          {"oversize", s.drop_oversize}});
  return out.str();
}

std::string summary_line(const Stats& s) {
  std::ostringstream out;
  const std::uint64_t packets = s.packets_local + s.packets_to_mesh + s.packets_from_mesh;
  const std::uint64_t bytes = s.bytes_local + s.bytes_to_mesh + s.bytes_from_mesh;
  const std::uint64_t refused = s.refused_not_member + s.refused_not_relay +
                                s.refused_membership_unknown + s.refused_bad_hello +
                                s.handshake_failed + s.handshake_timeouts;
  out << "clients=" << s.clients << " links=" << s.relay_links << " accepted=" << s.accepted
      << " admitted=" << s.admitted << " refused=" << refused << " forwarded=" << packets
      << " packets/" << bytes << " bytes (local=" << s.packets_local
      << " to_mesh=" << s.packets_to_mesh << " from_mesh=" << s.packets_from_mesh
      << ") drops: queue_full=" << s.drop_queue_full << " no_route=" << s.drop_no_route
      << " mesh_no_client=" << s.drop_mesh_no_client << " malformed=" << s.drop_malformed
      << " oversize=" << s.drop_oversize << " idle=" << s.idle_timeouts
      << " cut_off=" << s.cut_off;
  return out.str();
}

}  // namespace knit::relay
