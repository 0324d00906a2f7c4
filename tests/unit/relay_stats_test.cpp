// The relay's counters as knit-relay --metrics renders them through the shared metrics registry:
// every knit_relay_* family, sample, label and value exactly as the relay's own Prometheus
// writer printed them before it was folded into base/metrics (that writer's output for these
// values is tests/vectors/relay_metrics_before.txt, plus the samples added since:
// handshakes_refused_total{reason="evicted"} and drops_total{reason="split_not_data"}).
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <string>

#include "base/metrics.hpp"
#include "relay/stats.hpp"

namespace knit::relay {
namespace {

// What the relay's own writer printed for the values below (field i = 100 + i), kept as a vector.
std::string before() {
  std::ifstream in(std::string(KNIT_VECTORS_DIR) + "/relay_metrics_before.txt");
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Field i holds 100 + i.
Stats numbered() {
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
  s.drop_split_not_data = 130;
  return s;
}

TEST(RelayStats, RenderTheSameMetricsAsBefore) {
  Stats s = numbered();
  metrics::Registry registry;
  register_metrics(registry, [&]() -> const Stats& { return s; });
  const std::string expected = before();
  ASSERT_FALSE(expected.empty());
  EXPECT_EQ(registry.render(), expected);
  // Rendering reads the counters anew each time.
  s.clients = 7;
  EXPECT_NE(registry.render().find("\nknit_relay_clients 7\n"), std::string::npos);
}

TEST(RelayStats, SummaryLineCountsEveryPath) {
  const std::string line = summary_line(numbered());
  EXPECT_NE(line.find("clients=100 "), std::string::npos) << line;
  EXPECT_NE(line.find("forwarded=354 packets"), std::string::npos) << line;  // 116 + 118 + 120
}

}  // namespace
}  // namespace knit::relay
