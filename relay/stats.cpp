#include "relay/stats.hpp"

#include <sstream>
#include <utility>
#include <vector>

#include "base/metrics.hpp"

namespace knit::relay {
namespace {

using Field = std::uint64_t Stats::*;

// One sample: its family (name, help, kind), its label if the family has one, and its field.
struct Sample {
  const char* name;
  const char* help;
  metrics::Kind kind;
  const char* label_name;  // nullptr: an unlabelled family
  const char* label_value;
  Field field;
};

constexpr metrics::Kind kGauge = metrics::Kind::gauge;
constexpr metrics::Kind kCounter = metrics::Kind::counter;
constexpr const char* kRefused = "Handshakes refused, by reason.";
constexpr const char* kClosed = "Admitted connections the relay ended, by reason.";
constexpr const char* kPackets = "Packets forwarded, by path.";
constexpr const char* kBytes = "Packet bytes forwarded, by path.";
constexpr const char* kDrops = "Packets or frames dropped, by reason.";

// In the order they are rendered (knit_relay_ is prefixed).
constexpr Sample kSamples[] = {
    {"clients", "Admitted client connections.", kGauge, nullptr, nullptr, &Stats::clients},
    {"relay_links", "Open links to peer relays.", kGauge, nullptr, nullptr, &Stats::relay_links},
    {"handshaking", "Connections not yet admitted.", kGauge, nullptr, nullptr, &Stats::handshaking},
    {"remote_clients", "Clients announced by peer relays.", kGauge, nullptr, nullptr, &Stats::remote_clients},
    {"connections_accepted_total", "TCP connections accepted.", kCounter, nullptr, nullptr, &Stats::accepted},
    {"connections_admitted_total", "Handshakes admitted.", kCounter, nullptr, nullptr, &Stats::admitted},
    {"handshakes_refused_total", kRefused, kCounter, "reason", "not_member", &Stats::refused_not_member},
    {"handshakes_refused_total", kRefused, kCounter, "reason", "not_relay", &Stats::refused_not_relay},
    {"handshakes_refused_total", kRefused, kCounter, "reason", "membership_unknown", &Stats::refused_membership_unknown},
    {"handshakes_refused_total", kRefused, kCounter, "reason", "bad_hello", &Stats::refused_bad_hello},
    {"handshakes_refused_total", kRefused, kCounter, "reason", "handshake_failed", &Stats::handshake_failed},
    {"handshakes_refused_total", kRefused, kCounter, "reason", "timeout", &Stats::handshake_timeouts},
    {"handshakes_refused_total", kRefused, kCounter, "reason", "evicted", &Stats::handshake_evicted},
    {"connections_closed_total", kClosed, kCounter, "reason", "idle", &Stats::idle_timeouts},
    {"connections_closed_total", kClosed, kCounter, "reason", "replaced", &Stats::replaced},
    {"connections_closed_total", kClosed, kCounter, "reason", "removed", &Stats::cut_off},
    {"connections_closed_total", kClosed, kCounter, "reason", "error", &Stats::connection_errors},
    {"packets_forwarded_total", kPackets, kCounter, "path", "local", &Stats::packets_local},
    {"packets_forwarded_total", kPackets, kCounter, "path", "to_mesh", &Stats::packets_to_mesh},
    {"packets_forwarded_total", kPackets, kCounter, "path", "from_mesh", &Stats::packets_from_mesh},
    {"bytes_forwarded_total", kBytes, kCounter, "path", "local", &Stats::bytes_local},
    {"bytes_forwarded_total", kBytes, kCounter, "path", "to_mesh", &Stats::bytes_to_mesh},
    {"bytes_forwarded_total", kBytes, kCounter, "path", "from_mesh", &Stats::bytes_from_mesh},
    {"peer_gone_sent_total", "peer_gone frames sent.", kCounter, nullptr, nullptr, &Stats::peer_gone_sent},
    {"drops_total", kDrops, kCounter, "reason", "queue_full", &Stats::drop_queue_full},
    {"drops_total", kDrops, kCounter, "reason", "no_route", &Stats::drop_no_route},
    {"drops_total", kDrops, kCounter, "reason", "mesh_no_client", &Stats::drop_mesh_no_client},
    {"drops_total", kDrops, kCounter, "reason", "malformed", &Stats::drop_malformed},
    {"drops_total", kDrops, kCounter, "reason", "unknown_type", &Stats::drop_unknown_type},
    {"drops_total", kDrops, kCounter, "reason", "not_allowed", &Stats::drop_not_allowed},
    {"drops_total", kDrops, kCounter, "reason", "oversize", &Stats::drop_oversize},
    {"drops_total", kDrops, kCounter, "reason", "split_not_data", &Stats::drop_split_not_data},
};

}  // namespace

void register_metrics(metrics::Registry& registry, std::function<const Stats&()> stats) {
  struct Bound {
    Field field;
    metrics::Counter* counter;  // one of the two
    metrics::Gauge* gauge;
  };
  std::vector<Bound> bound;
  for (const Sample& s : kSamples) {
    const std::string name = std::string("knit_relay_") + s.name;
    metrics::Labels labels;
    if (s.label_name != nullptr) labels = {{s.label_name, s.label_value}};
    if (s.kind == kGauge)
      bound.push_back({s.field, nullptr, &registry.gauge(name, s.help, labels)});
    else
      bound.push_back({s.field, &registry.counter(name, s.help, labels), nullptr});
  }
  registry.on_collect([bound = std::move(bound), stats = std::move(stats)] {
    const Stats& now = stats();
    for (const Bound& b : bound) {
      if (b.counter != nullptr) b.counter->set(now.*b.field);
      else b.gauge->set(static_cast<double>(now.*b.field));
    }
  });
}

std::string summary_line(const Stats& s) {
  std::ostringstream out;
  const std::uint64_t packets = s.packets_local + s.packets_to_mesh + s.packets_from_mesh;
  const std::uint64_t bytes = s.bytes_local + s.bytes_to_mesh + s.bytes_from_mesh;
  const std::uint64_t refused = s.refused_not_member + s.refused_not_relay +
                                s.refused_membership_unknown + s.refused_bad_hello +
                                s.handshake_failed + s.handshake_timeouts + s.handshake_evicted;
  out << "clients=" << s.clients << " links=" << s.relay_links << " accepted=" << s.accepted
      << " admitted=" << s.admitted << " refused=" << refused << " forwarded=" << packets
      << " packets/" << bytes << " bytes (local=" << s.packets_local
      << " to_mesh=" << s.packets_to_mesh << " from_mesh=" << s.packets_from_mesh
      << ") drops: queue_full=" << s.drop_queue_full << " no_route=" << s.drop_no_route
      << " mesh_no_client=" << s.drop_mesh_no_client << " malformed=" << s.drop_malformed
      << " oversize=" << s.drop_oversize << " split_not_data=" << s.drop_split_not_data
      << " idle=" << s.idle_timeouts
      << " cut_off=" << s.cut_off;
  return out.str();
}

}  // namespace knit::relay
