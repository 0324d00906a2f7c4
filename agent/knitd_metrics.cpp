#include "agent/knitd_metrics.hpp"

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace knit::agent {

namespace {
constexpr const char* kPaths[3] = {"none", "relay", "direct"};
}  // namespace

void register_knitd_metrics(metrics::Registry& registry, const DataPlane& plane,
                            const Membership& membership) {
  using metrics::Counter;
  using metrics::Gauge;
  struct ByPath {
    Counter* tx_packets[3];
    Counter* tx_bytes[3];
    Gauge* peers[3];
  } by_path{};
  for (int i = 0; i < 3; ++i) {
    const metrics::Labels path{{"path", kPaths[i]}};
    by_path.tx_packets[i] = &registry.counter("knit_tx_packets_total",
                                              "WireGuard datagrams sent to mesh peers, by path.", path);
    by_path.tx_bytes[i] = &registry.counter("knit_tx_bytes_total",
                                            "WireGuard bytes sent to mesh peers, by path.", path);
    by_path.peers[i] = &registry.gauge("knit_peers", "Mesh peers by their current path.", path);
  }
  Counter& rx_datagrams = registry.counter("knit_rx_datagrams_total",
                                           "WireGuard datagrams received (UDP and relay).");
  Counter& rx_relay_packets = registry.counter("knit_rx_relay_packets_total",
                                               "Packets received through the home relay.");
  Counter& rx_relay_bytes = registry.counter("knit_rx_relay_bytes_total",
                                             "Bytes received through the home relay.");
  Counter& handshakes = registry.counter("knit_handshakes_total", "WireGuard handshakes completed.");
  Counter& initiations = registry.counter("knit_handshake_initiations_total",
                                          "WireGuard handshake initiations sent.");
  Counter& mss_clamped = registry.counter("knit_mss_clamped_total",
                                          "TCP SYNs and SYN-ACKs whose MSS was lowered to the peer's path MTU.");
  Counter& pmtu_probes = registry.counter("knit_pmtu_probes_total", "Path MTU probes (padded disco pings) sent.");
  Counter& icmp_used = registry.counter("knit_pmtu_icmp_too_big_total",
                                        "ICMP 'fragmentation needed' / 'packet too big' about knitd's datagrams: "
                                        "used as a path MTU hint, or about an address no search runs to.",
                                        {{"result", "used"}});
  Counter& icmp_unknown = registry.counter("knit_pmtu_icmp_too_big_total",
                                           "ICMP 'fragmentation needed' / 'packet too big' about knitd's datagrams: "
                                           "used as a path MTU hint, or about an address no search runs to.",
                                           {{"result", "unknown"}});
  Counter& too_big = registry.counter("knit_too_big_answered_total",
                                      "Packets larger than their peer's proven path, answered 'too big' to the host.");
  Counter& too_big_limited = registry.counter("knit_too_big_rate_limited_total",
                                              "Packets larger than their peer's proven path, dropped over the answer rate.");
  Gauge& nat_bytes = registry.gauge("knit_nat_table_bytes", "Memory of the IPv4 NAT/conntrack table.");
  Gauge& v6_flows = registry.gauge("knit_ipv6_flows", "IPv6 flows tracked by the packet filter.");
  Gauge& coordinator = registry.gauge("knit_control_connected",
                                      "Control connections up (1) or down (0).", {{"to", "coordinator"}});
  Gauge& relay = registry.gauge("knit_control_connected", "Control connections up (1) or down (0).",
                                {{"to", "relay"}});

  // Drops by reason: each reason is one labelled sample of one counter.
  using DeviceField = std::uint64_t wg::DeviceStats::*;
  const std::vector<std::pair<const char*, DeviceField>> device_drops = {
      {"too_short", &wg::DeviceStats::rx_too_short},
      {"unknown_type", &wg::DeviceStats::rx_unknown_type},
      {"bad_size", &wg::DeviceStats::rx_bad_size},
      {"invalid_mac", &wg::DeviceStats::rx_invalid_mac},
      {"handshake_failed", &wg::DeviceStats::rx_handshake_failed},
      {"unknown_peer", &wg::DeviceStats::rx_unknown_peer},
      {"replayed_handshake", &wg::DeviceStats::rx_replayed_handshake},
      {"handshake_flood", &wg::DeviceStats::rx_handshake_flood},
      {"unknown_index", &wg::DeviceStats::rx_unknown_index},
      {"expired_keypair", &wg::DeviceStats::rx_expired_keypair},
      {"decrypt_failed", &wg::DeviceStats::rx_decrypt_failed},
      {"replayed_data", &wg::DeviceStats::rx_replayed_data},
      {"bad_inner_packet", &wg::DeviceStats::rx_bad_inner_packet},
      {"disallowed_source", &wg::DeviceStats::rx_disallowed_source},
      {"no_route", &wg::DeviceStats::tx_no_route},
      {"no_endpoint", &wg::DeviceStats::tx_no_endpoint},
  };
  std::vector<std::pair<Counter*, DeviceField>> device_samples;
  for (const auto& [reason, field] : device_drops)
    device_samples.emplace_back(&registry.counter("knit_drops_total", "Packets dropped, by reason.",
                                                  {{"reason", reason}}),
                                field);
  auto filter_drop = [&](const char* reason) {
    return &registry.counter("knit_drops_total", "Packets dropped, by reason.", {{"reason", reason}});
  };
  Counter* refused_v4 = filter_drop("shields_refused_v4");
  Counter* refused_v6 = filter_drop("shields_refused_v6");
  Counter* filter_malformed = filter_drop("filter_malformed");
  Counter* no_path = filter_drop("no_path");
  Counter* disco_drops = filter_drop("disco");
  Counter* policy_denied = filter_drop("policy_denied");
  Gauge& policy_in_force = registry.gauge("knit_policy_in_force", "1 while an access policy is enforced on inbound flows.");
  Counter& policy_cut = registry.counter("knit_policy_cut_flows_total", "Established inbound flows a policy change cut.");
  Counter& policy_rejected =
      registry.counter("knit_policy_rejected_updates_total", "Pushed policy rule sets refused as malformed.");
  // Per rule, by its name; a bounded number of names over knitd's life (samples are never removed).
  auto policy_rules = std::make_shared<std::map<std::string, Counter*>>();

  registry.on_collect([&, by_path, device_samples, refused_v4, refused_v6, filter_malformed, no_path,
                       disco_drops, policy_denied, policy_rules] {
    const DataPlane& p = plane;
    const wg::DeviceStats& st = p.device().stats();
    for (const auto& [counter, field] : device_samples) counter->set(st.*field);
    rx_datagrams.set(st.rx_datagrams);
    handshakes.set(st.handshakes_completed);
    initiations.set(st.handshake_initiations_sent);
    mss_clamped.set(p.mss_clamp_stats().clamped);
    too_big.set(p.too_big_stats().answered);
    too_big_limited.set(p.too_big_stats().rate_limited);
    const localapi::FilterCounters fc = p.filter().counters();
    refused_v4->set(fc.refused_v4);
    refused_v6->set(fc.refused_v6);
    filter_malformed->set(fc.malformed);
    const PolicyCounters pc = p.filter().policy().counters();
    policy_in_force.set(pc.in_force ? 1 : 0);
    policy_denied->set(pc.denied);
    policy_cut.set(pc.cut);
    policy_rejected.set(pc.rejected_updates);
    for (auto& [name, counter] : *policy_rules) counter->set(0);
    for (const PolicyRuleCounters& r : pc.rules) {
      auto it = policy_rules->find(r.name);
      if (it == policy_rules->end()) {
        if (policy_rules->size() >= 256) continue;
        it = policy_rules->emplace(r.name, &registry.counter("knit_policy_accepted_flows_total",
                                                             "Inbound flows the access policy accepted, by rule.",
                                                             {{"rule", r.name}})).first;
      }
      it->second->set(it->second->value() + r.accepted_flows);
    }
    nat_bytes.set(static_cast<double>(p.filter().nat_table_bytes()));
    v6_flows.set(static_cast<double>(p.filter().ipv6_flows()));
    coordinator.set(membership.coordinator_connected() ? 1 : 0);
    const MeshPaths* paths = membership.paths();
    relay.set(paths != nullptr && paths->relay_connected() ? 1 : 0);
    if (const MeshTransport* transport = paths != nullptr ? paths->transport() : nullptr) {
      const auto& t = transport->traffic();
      const auto peers = transport->peers_by_path();
      for (int i = 0; i < 3; ++i) {
        by_path.tx_packets[i]->set(t.tx_packets[i]);
        by_path.tx_bytes[i]->set(t.tx_bytes[i]);
        by_path.peers[i]->set(static_cast<double>(peers[i]));
      }
      rx_relay_packets.set(t.rx_relay_packets);
      rx_relay_bytes.set(t.rx_relay_bytes);
      no_path->set(t.tx_dropped);
      std::uint64_t disco = 0;
      for (auto d : transport->stats().drops) disco += d;
      disco_drops->set(disco);
      pmtu_probes.set(transport->stats().pmtu_probes_sent);
      icmp_used.set(transport->stats().icmp_too_big_used);
      icmp_unknown.set(transport->stats().icmp_too_big_unknown);
    } else {
      for (int i = 0; i < 3; ++i) by_path.peers[i]->set(0);
    }
  });
}

}  // namespace knit::agent
