#include "agent/mesh_paths.hpp"

#include <algorithm>
#include <sstream>

#include "base/log.hpp"

namespace knit::agent {

MeshPaths::MeshPaths(asio::io_context& io, DataPlane& plane, UdpTransport& udp)
    : io_(io), plane_(plane), udp_(udp) {}

MeshPaths::~MeshPaths() { stop(); }

void MeshPaths::start(const NodeIdentity& identity) {
  if (transport_) return;
  relay_ = std::make_unique<HomeRelay>(io_, identity.node.private_key, rng_, relay_split_, relay_runs_);
  transport_ = std::make_unique<MeshTransport>(io_, udp_, *relay_, plane_, identity.disco.private_key,
                                               identity.node.public_key, rng_);
  netcheck_ = std::make_unique<Netcheck>(io_, udp_, rng_);
  relay_->set_handlers(
      [this](const wg::PublicKey& from, MutableByteSpan packet) { transport_->on_relay_packet(from, packet); },
      [this](bool up) { transport_->set_relay_available(up); }, [this] { transport_->on_relay_batch_end(); });
  transport_->set_stun_handler(
      [this](Instant now, const Endpoint& from, ByteSpan datagram) { netcheck_->on_stun(now, from, datagram); });
  netcheck_->on_changed = [this] { on_netcheck_changed(); };
  transport_->set_pmtu(pmtu_enabled_, plane_.device().mtu());
  if (pmtu_enabled_) {
    if (auto ec = udp_.set_pmtu_probe(true))
      log(LogLevel::warn, "paths", "cannot set DF on the UDP socket (path MTU probes may be fragmented): ", ec.message());
  }
  transport_->start();
  plane_.configure([this](wg::Device& device, wg::Now) { device.set_transport(*transport_); });
  plane_.set_peer_mtu([this](const wg::PublicKey& key) -> std::size_t {
    return transport_ ? transport_->tunnel_mtu_of(key) : 0;
  });
  transport_->set_mtu_limits_handler([this](const MeshTransport::MtuLimits& limits) {
    plane_.set_mtu_limits(limits);
    std::size_t smallest = 0;
    for (const auto& entry : limits) smallest = smallest == 0 ? entry.second : std::min(smallest, entry.second);
    if (limits.empty()) log(LogLevel::info, "paths", "every direct path carries the tunnel MTU");
    else
      log(LogLevel::info, "paths", limits.size(), " peer path(s) proven smaller than the tunnel MTU (smallest ",
          smallest, "): larger packets to them are answered 'too big'");
  });
  netcheck_->start();
}

void MeshPaths::stop() {
  if (!transport_) return;
  // Peers go back to where their endpoints say, until the membership removes them.
  plane_.configure([this](wg::Device& device, wg::Now) { device.set_transport(udp_); });
  plane_.set_peer_mtu(nullptr);
  plane_.set_mtu_limits({});
  udp_.set_pmtu_probe(false);
  netcheck_->stop();
  transport_->stop();
  relay_->stop();
  netcheck_.reset();
  retired_probes_ += transport_->probe_counters();
  retired_fragmentable_ += transport_->traffic().tx_fragmentable;
  retired_too_big_ += transport_->traffic().tx_too_big;
  transport_.reset();
  relay_.reset();
  interface_endpoints_.clear();
}

std::string MeshPaths::summary() const {
  ProbeSockets::Counters c = retired_probes_;
  std::uint64_t fragmentable = retired_fragmentable_, too_big = retired_too_big_;
  if (transport_) {
    c += transport_->probe_counters();
    fragmentable += transport_->traffic().tx_fragmentable;
    too_big += transport_->traffic().tx_too_big;
  }
  std::ostringstream out;
  out << "tx_fragmentable=" << fragmentable << " tx_too_big=" << too_big << " probe_sockets=" << c.opened << " probe_send_errors=" << c.send_errors
      << " probe_receive_errors=" << c.receive_errors << " probe_gso_messages=" << c.gso_messages
      << " probe_icmp_too_big=" << c.icmp_too_big << " probe_errqueue_other=" << c.errqueue_other
      << " probe_errqueue_malformed=" << c.errqueue_malformed << " probe_pending_errors=" << c.pending_errors;
  return out.str();
}

void MeshPaths::set_peers(const std::vector<control::PeerInfo>& peers) {
  if (transport_) transport_->set_peers(peers);
}

void MeshPaths::update_peers(const std::vector<const control::PeerInfo*>& upserts,
                             const std::vector<wg::PublicKey>& removed) {
  if (transport_) transport_->update_peers(upserts, removed);
}

void MeshPaths::set_relays(const control::RelayMap& relays) {
  if (!transport_) return;
  // Before the relay admits us, probes only open our NAT (punch/path/manager.hpp).
  transport_->set_relay_expected(!relays.relays.empty());
  relay_->set_relays(relays);
  netcheck_->set_home_relay(relay_->name());
  netcheck_->set_relays(relays);
}

void MeshPaths::set_interface_endpoints(const std::vector<Endpoint>& endpoints) {
  if (!transport_ || endpoints == interface_endpoints_) return;
  const bool first = interface_endpoints_.empty();
  interface_endpoints_ = endpoints;
  if (!first) {
    log(LogLevel::info, "paths", "network changed: re-probing every path");
    transport_->network_changed();
    netcheck_->run_now();
  }
  push_candidates();
}

std::optional<Endpoint> MeshPaths::stand_in(const wg::PublicKey& key) {
  if (!transport_) return std::nullopt;
  return transport_->stand_in(key);
}

PeerPath MeshPaths::path_of(const wg::PublicKey& key) const {
  PeerPath out;
  if (!transport_) return out;
  const punch::PathInfo info = transport_->path_of(key);
  out.kind = info.kind;
  if (transport_->manages(key)) {
    const std::size_t mtu = transport_->tunnel_mtu_of(key);
    out.path_mtu = mtu != 0 ? mtu : plane_.device().mtu();
  }
  if (info.kind == punch::PathKind::direct) {
    out.endpoint = info.endpoint;
    out.rtt_ms = std::chrono::duration<double, std::milli>(info.rtt).count();
  } else if (info.kind == punch::PathKind::relay && !relay_->name().empty()) {
    out.relay = relay_->name();
  }
  return out;
}

std::vector<Endpoint> MeshPaths::endpoints() const {
  std::vector<Endpoint> out;
  auto add = [&](const Endpoint& e) {
    if (std::none_of(out.begin(), out.end(), [&](const Endpoint& o) { return o.same_remote(e); }))
      out.push_back(Endpoint(e.address(), e.port()));
  };
  if (const auto& report = last_netcheck()) {
    if (report->probe.public_v4) add(*report->probe.public_v4);
    if (report->probe.public_v6) add(*report->probe.public_v6);
    if (report->portmapped) add(*report->portmapped);
  }
  for (const Endpoint& e : interface_endpoints_) add(e);
  return out;
}

std::optional<control::NatReport> MeshPaths::nat_report() const {
  auto report = netcheck_ ? netcheck_->nat_report() : std::nullopt;
  if (report && observed_mapping_varies()) report->mapping_varies = true;
  return report;
}

const std::optional<NetcheckReport>& MeshPaths::last_netcheck() const {
  return netcheck_ ? netcheck_->last() : no_report_;
}

void MeshPaths::netcheck(std::function<void(const NetcheckReport&)> done) {
  if (netcheck_) netcheck_->run(std::move(done));
}

void MeshPaths::on_netcheck_changed() {
  if (const auto& report = netcheck_->last()) {
    relay_->choose(report->relay_latency_ms);
    netcheck_->set_home_relay(relay_->name());
  }
  push_candidates();
}

void MeshPaths::push_candidates() {
  punch::LocalCandidates c;
  c.local = interface_endpoints_;
  if (const auto& report = netcheck_->last()) {
    c.reflexive = report->probe.public_v4 ? report->probe.public_v4 : report->probe.public_v6;
    c.portmapped = report->portmapped;
    c.mapping_varies = report->probe.mapping_varies.value_or(false);
    c.open_filter = report->probe.filtering == punch::NatFiltering::endpoint_independent ||
                    report->probe.filtering == punch::NatFiltering::address_dependent;
  }
  transport_->set_local_candidates(c);
  if (on_candidates_changed) on_candidates_changed();
}

}  // namespace knit::agent
