// The relay's counters as knit-relay --metrics renders them through the shared metrics registry:
// every knit_relay_* family, sample, label and value exactly as the relay's own Prometheus
// writer printed them before it was folded into base/metrics (the text below is that writer's
// output for these values).
#include <gtest/gtest.h>

#include "base/metrics.hpp"
#include "relay/stats.hpp"

namespace knit::relay {
namespace {

constexpr const char* kBefore = R"(# HELP knit_relay_clients Admitted client connections.
# TYPE knit_relay_clients gauge
knit_relay_clients 100
# HELP knit_relay_relay_links Open links to peer relays.
# TYPE knit_relay_relay_links gauge
knit_relay_relay_links 101
# HELP knit_relay_handshaking Connections not yet admitted.
# TYPE knit_relay_handshaking gauge
knit_relay_handshaking 102
# HELP knit_relay_remote_clients Clients announced by peer relays.
# TYPE knit_relay_remote_clients gauge
knit_relay_remote_clients 103
# HELP knit_relay_connections_accepted_total TCP connections accepted.
# TYPE knit_relay_connections_accepted_total counter
knit_relay_connections_accepted_total 104
# HELP knit_relay_connections_admitted_total Handshakes admitted.
# TYPE knit_relay_connections_admitted_total counter
knit_relay_connections_admitted_total 105
# HELP knit_relay_handshakes_refused_total Handshakes refused, by reason.
# TYPE knit_relay_handshakes_refused_total counter
knit_relay_handshakes_refused_total{reason="not_member"} 106
knit_relay_handshakes_refused_total{reason="not_relay"} 107
knit_relay_handshakes_refused_total{reason="membership_unknown"} 108
knit_relay_handshakes_refused_total{reason="bad_hello"} 109
knit_relay_handshakes_refused_total{reason="handshake_failed"} 110
knit_relay_handshakes_refused_total{reason="timeout"} 111
# HELP knit_relay_connections_closed_total Admitted connections the relay ended, by reason.
# TYPE knit_relay_connections_closed_total counter
knit_relay_connections_closed_total{reason="idle"} 112
knit_relay_connections_closed_total{reason="replaced"} 113
knit_relay_connections_closed_total{reason="removed"} 114
knit_relay_connections_closed_total{reason="error"} 115
# HELP knit_relay_packets_forwarded_total Packets forwarded, by path.
# TYPE knit_relay_packets_forwarded_total counter
knit_relay_packets_forwarded_total{path="local"} 116
knit_relay_packets_forwarded_total{path="to_mesh"} 118
knit_relay_packets_forwarded_total{path="from_mesh"} 120
# HELP knit_relay_bytes_forwarded_total Packet bytes forwarded, by path.
# TYPE knit_relay_bytes_forwarded_total counter
knit_relay_bytes_forwarded_total{path="local"} 117
knit_relay_bytes_forwarded_total{path="to_mesh"} 119
knit_relay_bytes_forwarded_total{path="from_mesh"} 121
# HELP knit_relay_peer_gone_sent_total peer_gone frames sent.
# TYPE knit_relay_peer_gone_sent_total counter
knit_relay_peer_gone_sent_total 122
# HELP knit_relay_drops_total Packets or frames dropped, by reason.
# TYPE knit_relay_drops_total counter
knit_relay_drops_total{reason="queue_full"} 123
knit_relay_drops_total{reason="no_route"} 124
knit_relay_drops_total{reason="mesh_no_client"} 125
knit_relay_drops_total{reason="malformed"} 126
knit_relay_drops_total{reason="unknown_type"} 127
knit_relay_drops_total{reason="not_allowed"} 128
knit_relay_drops_total{reason="oversize"} 129
)";

TEST(RelayStats, RenderTheSameMetricsAsBefore) {
  Stats s;
  s.clients = 100;
  s.relay_links = 101;
  s.handshaking = 102;
  s.remote_clients = 103;
  s.accepted = 104;
  s.admitted = 105;
  s.refused_not_member = 106;
  s.refused_not_relay = 107;
  s.refused_membership_unknown = 108;
  s.refused_bad_hello = 109;
  s.handshake_failed = 110;
  s.handshake_timeouts = 111;
  s.idle_timeouts = 112;
  s.replaced = 113;
  s.cut_off = 114;
  s.connection_errors = 115;
  s.packets_local = 116;
  s.bytes_local = 117;
  s.packets_to_mesh = 118;
  s.bytes_to_mesh = 119;
  s.packets_from_mesh = 120;
  s.bytes_from_mesh = 121;
  s.peer_gone_sent = 122;
  s.drop_queue_full = 123;
  s.drop_no_route = 124;
  s.drop_mesh_no_client = 125;
  s.drop_malformed = 126;
  s.drop_unknown_type = 127;
  s.drop_not_allowed = 128;
  s.drop_oversize = 129;
  metrics::Registry registry;
  register_metrics(registry, [&]() -> const Stats& { return s; });
  EXPECT_EQ(registry.render(), kBefore);
  // Rendering reads the counters anew each time.
  s.clients = 7;
  EXPECT_NE(registry.render().find("\nknit_relay_clients 7\n"), std::string::npos);
}

TEST(RelayStats, SummaryLineCountsEveryPath) {
  Stats s;
  s.clients = 3;
  s.packets_local = 1;
  s.packets_to_mesh = 2;
  s.packets_from_mesh = 3;
  EXPECT_NE(summary_line(s).find("clients=3"), std::string::npos) << summary_line(s);
  EXPECT_NE(summary_line(s).find("forwarded=6 packets"), std::string::npos) << summary_line(s);
}

}  // namespace
}  // namespace knit::relay
