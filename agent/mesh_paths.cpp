#include "agent/mesh_paths.hpp"

#include <algorithm>

#include "base/log.hpp"
#include "punch/path/disco.hpp"
#include "punch/stun/message.hpp"

namespace knit::agent {

namespace {
constexpr const char* kLog = "paths";
constexpr std::size_t kProbeReceiveSize = 2048;
}  // namespace

// A secondary UDP socket for port prediction (the hard side of an easy <-> hard pair): a disco
// ping from it opens a NAT mapping of its own, and the one the peer hits carries the traffic.
struct MeshPaths::ProbeSocket {
  ProbeSocket(asio::io_context& io) : socket(io), buffer(kProbeReceiveSize) {}
  asio::ip::udp::socket socket;
  asio::ip::udp::endpoint from;
  Bytes buffer;
};

MeshPaths::MeshPaths(asio::io_context& io, DataPlane& plane, RelayLink& relay,
                     const wg::PrivateKey& disco_private, const wg::PublicKey& node_key)
    : io_(io),
      plane_(plane),
      relay_(relay),
      paths_(disco_private, node_key, rng_,
             static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                            std::chrono::system_clock::now().time_since_epoch())
                                            .count())),
      probe_(rng_),
      timer_(io) {}

MeshPaths::~MeshPaths() { stop(); }

void MeshPaths::start() {
  if (running_) return;
  running_ = true;
  plane_.set_path_hooks(this);
  const Instant now = mono_now();
  paths_.set_relay_available(now, relay_.connected());
  portmap_ = std::make_unique<punch::PortMapper>(io_, rng_);
  portmap_->start(plane_.port(), [this](const punch::PortMapEvent& e) { on_portmap(e); });
  start_netcheck(now);
  drain();
  schedule();
}

void MeshPaths::stop() {
  if (!running_) return;
  running_ = false;
  plane_.set_path_hooks(nullptr);
  timer_.cancel();
  probe_sockets_.clear();
  relay_.set_relay(std::nullopt);
  if (portmap_) {
    // Deleting the mapping at the router takes a round trip: the mapper lives until it is done,
    // and is released from a fresh handler, never from inside its own callback.
    std::shared_ptr<punch::PortMapper> mapper(std::move(portmap_));
    asio::io_context& io = io_;
    mapper->stop([mapper, &io]() mutable { asio::post(io, [m = std::move(mapper)] {}); });
  }
  for (auto& waiter : std::exchange(netcheck_waiters_, {}))
    if (netcheck_) waiter(*netcheck_);
}

// ---------------------------------------------------------------- membership input

void MeshPaths::set_peers(const std::vector<control::PeerInfo>& peers) {
  const Instant now = mono_now();
  std::map<wg::PublicKey, control::PeerInfo> next;
  for (const auto& peer : peers) next.emplace(peer.node_key, peer);
  for (const auto& [key, old] : managed_) {
    if (next.count(key) != 0) continue;
    paths_.remove_peer(now, key);
    virtual_.release(key);
  }
  for (const auto& [key, peer] : next) {
    auto it = managed_.find(key);
    if (it != managed_.end() && it->second.disco_key == peer.disco_key &&
        it->second.endpoints == peer.endpoints)
      continue;
    paths_.set_peer(now, key, peer.disco_key, peer.endpoints);
  }
  managed_ = std::move(next);
  after_work();
}

void MeshPaths::set_relays(const control::RelayMap& relays) {
  if (relays == relays_) return;
  relays_ = relays;
  const Instant now = mono_now();
  if (relays_.relays.empty()) {
    home_relay_.clear();
    relay_.set_relay(std::nullopt);
  } else {
    // A new relay map: measure the relays again before settling on one; meanwhile keep the
    // current home if it is still listed, else take the first one so peers are reachable now.
    const bool still_listed = std::any_of(relays_.relays.begin(), relays_.relays.end(),
                                          [&](const auto& r) { return r.name == home_relay_; });
    if (!still_listed) choose_home_relay(now);
    start_netcheck(now);
  }
  after_work();
}

void MeshPaths::set_interface_endpoints(const std::vector<Endpoint>& endpoints) {
  if (endpoints == interface_endpoints_) return;
  const bool first = interface_endpoints_.empty();
  interface_endpoints_ = endpoints;
  const Instant now = mono_now();
  if (!first) {
    log(LogLevel::info, kLog, "network changed: re-probing every path");
    paths_.network_changed(now);
    start_netcheck(now);
  }
  push_candidates(now);
  after_work();
}

// ---------------------------------------------------------------- queries

PeerPath MeshPaths::path_of(const wg::PublicKey& key) const {
  PeerPath out;
  const punch::PathInfo info = paths_.path(key, mono_now());
  out.kind = info.kind;
  if (info.kind == punch::PathKind::direct) {
    out.endpoint = info.endpoint;
    out.rtt_ms = std::chrono::duration<double, std::milli>(info.rtt).count();
  } else if (info.kind == punch::PathKind::relay && !home_relay_.empty()) {
    out.relay = home_relay_;
  }
  return out;
}

std::vector<Endpoint> MeshPaths::endpoints() const {
  std::vector<Endpoint> out;
  auto add = [&](const Endpoint& e) {
    if (std::none_of(out.begin(), out.end(), [&](const Endpoint& o) { return o.same_remote(e); }))
      out.push_back(Endpoint(e.address(), e.port()));
  };
  if (netcheck_) {
    if (netcheck_->probe.public_v4) add(*netcheck_->probe.public_v4);
    if (netcheck_->probe.public_v6) add(*netcheck_->probe.public_v6);
    if (netcheck_->portmapped) add(*netcheck_->portmapped);
  }
  for (const Endpoint& e : interface_endpoints_) add(e);
  return out;
}

std::optional<control::NatReport> MeshPaths::nat_report() const {
  if (!netcheck_) return std::nullopt;
  control::NatReport report;
  report.udp = netcheck_->probe.udp;
  report.public_v4 = netcheck_->probe.public_v4;
  report.public_v6 = netcheck_->probe.public_v6;
  report.mapping_varies = netcheck_->probe.mapping_varies.value_or(false);
  switch (netcheck_->probe.filtering) {
    case punch::NatFiltering::endpoint_independent: report.filtering = control::NatFiltering::eif; break;
    case punch::NatFiltering::address_dependent: report.filtering = control::NatFiltering::adf; break;
    case punch::NatFiltering::address_and_port_dependent: report.filtering = control::NatFiltering::apdf; break;
    case punch::NatFiltering::unknown: report.filtering = control::NatFiltering::unknown; break;
  }
  report.relay_latency_ms = netcheck_->relay_latency_ms;
  return report;
}

void MeshPaths::netcheck(std::function<void(const NetcheckReport&)> done) {
  netcheck_waiters_.push_back(std::move(done));
  if (!netcheck_running_) start_netcheck(mono_now());
  after_work();
}

// ---------------------------------------------------------------- relay input

std::array<std::size_t, 3> MeshPaths::peers_by_path() const {
  std::array<std::size_t, 3> out{};
  const Instant now = mono_now();
  for (const auto& [key, info] : managed_) ++out[static_cast<std::size_t>(paths_.path(key, now).kind)];
  return out;
}

void MeshPaths::on_relay_packet(const wg::PublicKey& from, ByteSpan packet) {
  const Instant now = mono_now();
  ++traffic_.rx_relay_packets;
  traffic_.rx_relay_bytes += packet.size();
  if (punch::looks_like_disco(packet)) {
    paths_.handle_disco(now, punch::DiscoSource::relay(from), packet);
  } else if (managed_.count(from) != 0) {
    // WireGuard through the relay: the core hears it from the peer's stand-in endpoint, so a
    // cookie reply (the only thing the core sends to a source rather than to a peer) comes back
    // here.
    scratch_.assign(packet.begin(), packet.end());
    plane_.inject_datagram(DataPlane::now(), virtual_.assign(from), scratch_);
  }
  after_work();
}

void MeshPaths::on_relay_state(bool connected) {
  const Instant now = mono_now();
  paths_.set_relay_available(now, connected);
  if (connected) {
    relay_down_since_.reset();
    log(LogLevel::info, kLog, "home relay ", home_relay_, " connected");
  } else if (!relay_down_since_) {
    relay_down_since_ = now;
  }
  after_work();
}

// ---------------------------------------------------------------- PathHooks

bool MeshPaths::send_to_peer(const wg::Peer& peer, ByteSpan datagram) {
  const wg::PublicKey& key = peer.public_key;
  if (managed_.count(key) == 0) return false;
  const Instant now = mono_now();
  paths_.note_data_sent(now, key);
  const punch::PathInfo path = paths_.path(key, now);
  const auto kind = static_cast<std::size_t>(path.kind);
  ++traffic_.tx_packets[kind];
  traffic_.tx_bytes[kind] += datagram.size();
  switch (path.kind) {
    case punch::PathKind::direct:
      if (path.socket == punch::kMainSocket) {
        plane_.send_udp(path.endpoint, datagram);
      } else if (auto it = probe_sockets_.find(path.socket); it != probe_sockets_.end()) {
        std::error_code ec;
        const Endpoint& to = path.endpoint;
        const auto address = asio::ip::make_address(to.address().to_string(), ec);
        if (!ec) it->second->socket.send_to(asio::buffer(datagram.data(), datagram.size()),
                                            asio::ip::udp::endpoint(address, to.port()), 0, ec);
      }
      return true;
    case punch::PathKind::relay:
      relay_.send(key, datagram);
      return true;
    case punch::PathKind::none:
      // Nothing proven yet and no relay: the best endpoint the coordinator published, as a
      // plain WireGuard peer would (a LAN neighbour or a public host answers at once).
      if (peer.endpoint && !punch::VirtualEndpoints::is_virtual(*peer.endpoint))
        plane_.send_udp(*peer.endpoint, datagram);
      else if (relay_.connected())
        relay_.send(key, datagram);
      else
        ++traffic_.tx_dropped;
      return true;
  }
  return true;
}

void MeshPaths::send_to_virtual(const Endpoint& to, ByteSpan datagram) {
  if (auto key = virtual_.key_of(to)) relay_.send(*key, datagram);
}

void MeshPaths::on_other_datagram(wg::Now now, const Endpoint& from, ByteSpan datagram) {
  if (punch::looks_like_disco(datagram)) {
    paths_.handle_disco(now.mono, punch::DiscoSource::udp(punch::kMainSocket, from), datagram);
  } else if (punch::looks_like_stun(datagram)) {
    probe_.handle(now.mono, from, datagram);
    if (netcheck_running_ && probe_.done()) finish_netcheck(now.mono);
  }
  // Anything else is neither ours nor WireGuard's: the core would drop it too.
}

void MeshPaths::after_work() {
  if (!running_ || draining_) return;
  drain();
  schedule();
}

// ---------------------------------------------------------------- actions and time

void MeshPaths::drain() {
  draining_ = true;
  bool sent = false;
  for (auto& s : probe_.take_outgoing()) {
    plane_.send_udp(s.to, s.bytes);
    sent = true;
  }
  for (punch::PathAction& a : paths_.take_actions()) {
    switch (a.kind) {
      case punch::ActionKind::send_udp:
        if (a.socket == punch::kMainSocket) {
          plane_.send_udp(a.endpoint, a.bytes);
          sent = true;
        } else if (auto it = probe_sockets_.find(a.socket); it != probe_sockets_.end()) {
          std::error_code ec;
          const auto address = asio::ip::make_address(a.endpoint.address().to_string(), ec);
          if (!ec)
            it->second->socket.send_to(asio::buffer(a.bytes),
                                       asio::ip::udp::endpoint(address, a.endpoint.port()), 0, ec);
        }
        break;
      case punch::ActionKind::send_relay:
        relay_.send(a.peer, a.bytes);
        break;
      case punch::ActionKind::open_probe_socket:
        open_probe_socket(a.socket);
        break;
      case punch::ActionKind::close_probe_socket:
        probe_sockets_.erase(a.socket);
        break;
      case punch::ActionKind::path_changed: {
        const PeerPath p = path_of(a.peer);
        auto it = managed_.find(a.peer);
        log(LogLevel::info, kLog, it != managed_.end() ? it->second.name : std::string("?"), ": ",
            punch::to_string(p.kind),
            p.endpoint ? " " + p.endpoint->to_string() : (p.relay ? " " + *p.relay : std::string()));
        break;
      }
    }
  }
  draining_ = false;
  if (sent) plane_.flush();
}

void MeshPaths::schedule() {
  std::optional<Instant> next = paths_.next_deadline();
  auto lower = [&](std::optional<Instant> t) {
    if (t && (!next || *t < *next)) next = t;
  };
  lower(probe_.next_deadline());
  lower(next_netcheck_);
  if (relay_down_since_) lower(*relay_down_since_ + kRelayFailover);
  if (next == armed_) return;
  armed_ = next;
  if (!next) {
    timer_.cancel();
    return;
  }
  timer_.expires_at(*next);
  timer_.async_wait([this](std::error_code ec) {
    if (ec == asio::error::operation_aborted || !running_) return;
    armed_.reset();
    on_timer();
  });
}

void MeshPaths::on_timer() {
  const Instant now = mono_now();
  paths_.on_timers(now);
  if (netcheck_running_) {
    probe_.on_timers(now);
    if (probe_.done()) finish_netcheck(now);
  }
  if (next_netcheck_ && now >= *next_netcheck_) start_netcheck(now);
  if (relay_down_since_ && now - *relay_down_since_ >= kRelayFailover && relays_.relays.size() > 1) {
    log(LogLevel::warn, kLog, "home relay ", home_relay_, " unreachable for ",
        std::chrono::duration_cast<std::chrono::seconds>(now - *relay_down_since_).count(),
        " s: choosing another");
    choose_home_relay(now);
  }
  drain();
  schedule();
}

// ---------------------------------------------------------------- netcheck and relays

std::vector<Endpoint> MeshPaths::stun_servers() const {
  std::vector<Endpoint> out;
  for (const auto& relay : relays_.relays) {
    if (relay.stun_port == 0) continue;
    for (const auto& address : relay.addresses) {
      if (auto ip = address.ip()) {
        out.emplace_back(*ip, relay.stun_port);
        break;  // one address per relay: the first one agents dial
      }
    }
  }
  return out;
}

void MeshPaths::start_netcheck(Instant now) {
  next_netcheck_ = now + kNetcheckInterval;
  const auto servers = stun_servers();
  if (servers.empty()) {
    // Nothing to measure against: report what we know (no UDP evidence) at once.
    NetcheckReport report;
    report.finished = std::chrono::system_clock::now();
    report.home_relay = home_relay_;
    report.portmap_protocols = portmap_protocols_;
    report.portmapped = portmapped_;
    netcheck_ = report;
    for (auto& waiter : std::exchange(netcheck_waiters_, {})) waiter(*netcheck_);
    return;
  }
  netcheck_running_ = true;
  probe_.start(now, servers);
  if (portmap_ && !portmap_probe_running_) {
    portmap_probe_running_ = true;
    portmap_->probe([this](const punch::PortMapAvailability& a) {
      portmap_probe_running_ = false;
      portmap_protocols_.clear();
      if (a.pcp) portmap_protocols_.push_back("pcp");
      if (a.natpmp) portmap_protocols_.push_back("natpmp");
      if (a.upnp) portmap_protocols_.push_back("upnp");
      if (netcheck_) netcheck_->portmap_protocols = portmap_protocols_;
      maybe_finish_netcheck(mono_now());
      after_work();
    });
  }
}

void MeshPaths::maybe_finish_netcheck(Instant now) {
  (void)now;
  // `knit netcheck` waits for the STUN tests and the port-mapping probe both.
  if (netcheck_running_ || portmap_probe_running_ || !netcheck_) return;
  for (auto& waiter : std::exchange(netcheck_waiters_, {})) waiter(*netcheck_);
}

void MeshPaths::on_portmap(const punch::PortMapEvent& e) {
  using Kind = punch::PortMapEvent::Kind;
  std::optional<Endpoint> mapped;
  if ((e.kind == Kind::mapped || e.kind == Kind::renewed) && e.mapping) mapped = e.mapping->external;
  if (e.kind == Kind::mapped)
    log(LogLevel::info, kLog, "port mapping: ", e.mapping->external.to_string(), " (",
        punch::to_string(e.mapping->protocol), ")");
  if (mapped == portmapped_) return;
  portmapped_ = mapped;
  if (netcheck_) netcheck_->portmapped = portmapped_;
  push_candidates(mono_now());
  after_work();
}

void MeshPaths::finish_netcheck(Instant now) {
  netcheck_running_ = false;
  NetcheckReport report;
  report.probe = probe_.result();
  report.finished = std::chrono::system_clock::now();
  report.portmap_protocols = portmap_protocols_;
  report.portmapped = portmapped_;
  const auto servers = stun_servers();
  for (const auto& server : report.probe.servers) {
    if (!server.rtt) continue;
    for (const auto& relay : relays_.relays) {
      for (const auto& address : relay.addresses) {
        if (address.ip() == server.server.address() && relay.stun_port == server.server.port()) {
          report.relay_latency_ms[relay.name] = static_cast<std::uint32_t>(
              std::max<long long>(1, std::chrono::duration_cast<std::chrono::milliseconds>(*server.rtt).count()));
        }
      }
    }
  }
  netcheck_ = std::move(report);
  choose_home_relay(now);
  netcheck_->home_relay = home_relay_;
  push_candidates(now);
  maybe_finish_netcheck(now);
}

void MeshPaths::choose_home_relay(Instant now) {
  if (relays_.relays.empty()) return;
  const control::RelayInfo* best = nullptr;
  std::uint32_t best_ms = 0;
  const bool avoid_current = relay_down_since_ && now - *relay_down_since_ >= kRelayFailover;
  for (const auto& relay : relays_.relays) {
    if (avoid_current && relay.name == home_relay_) continue;
    std::uint32_t ms = 60'000;  // unmeasured: after every measured relay
    if (netcheck_) {
      if (auto it = netcheck_->relay_latency_ms.find(relay.name); it != netcheck_->relay_latency_ms.end())
        ms = it->second;
    }
    // Hysteresis: the current home keeps its place unless another is clearly nearer.
    if (relay.name == home_relay_ && !avoid_current) ms = ms * 4 / 5;
    if (best == nullptr || ms < best_ms) {
      best = &relay;
      best_ms = ms;
    }
  }
  if (best == nullptr) return;
  if (best->name == home_relay_ && !avoid_current) return;
  log(LogLevel::info, kLog, "home relay: ", best->name);
  home_relay_ = best->name;
  relay_down_since_.reset();
  paths_.set_relay_available(now, false);
  relay_.set_relay(*best);
}

void MeshPaths::push_candidates(Instant now) {
  punch::LocalCandidates c;
  c.local = interface_endpoints_;
  if (netcheck_) {
    c.reflexive = netcheck_->probe.public_v4 ? netcheck_->probe.public_v4 : netcheck_->probe.public_v6;
    c.portmapped = netcheck_->portmapped;
    c.mapping_varies = netcheck_->probe.mapping_varies.value_or(false);
  }
  paths_.set_local_candidates(now, c);
  if (on_candidates_changed) on_candidates_changed();
}

// ---------------------------------------------------------------- probe sockets

void MeshPaths::open_probe_socket(punch::SocketId id) {
  auto probe = std::make_unique<ProbeSocket>(io_);
  std::error_code ec;
  const bool v6 = plane_.dual_stack();
  probe->socket.open(v6 ? asio::ip::udp::v6() : asio::ip::udp::v4(), ec);
  if (!ec && v6) probe->socket.set_option(asio::ip::v6_only(false), ec);
  if (!ec) probe->socket.bind(asio::ip::udp::endpoint(v6 ? asio::ip::udp::v6() : asio::ip::udp::v4(), 0), ec);
  if (!ec) probe->socket.non_blocking(true, ec);
  if (ec) {
    log(LogLevel::debug, kLog, "probe socket ", id, ": ", ec.message());
    return;
  }
  ProbeSocket& s = *probe;
  probe_sockets_.emplace(id, std::move(probe));
  // Reads until the socket is closed (erased from the map, which cancels the read).
  auto read = std::make_shared<std::function<void()>>();
  *read = [this, id, &s, read] {
    s.socket.async_receive_from(asio::buffer(s.buffer), s.from,
                                [this, id, &s, read](std::error_code rec, std::size_t n) {
      if (rec == asio::error::operation_aborted || !running_) return;
      if (probe_sockets_.find(id) == probe_sockets_.end()) return;
      if (!rec) {
        auto from = Endpoint::from_sockaddr(s.from.data());
        if (from) on_probe_datagram(id, *from, MutableByteSpan(s.buffer.data(), n));
      }
      if (probe_sockets_.find(id) != probe_sockets_.end()) (*read)();
    });
  };
  (*read)();
}

void MeshPaths::on_probe_datagram(punch::SocketId id, const Endpoint& from, MutableByteSpan datagram) {
  const Instant now = mono_now();
  // A v4-mapped source on a dual-stack socket is the IPv4 peer it stands for.
  Endpoint source = from;
  if (source.address().is_v6()) {
    const std::uint8_t* b = source.address().bytes();
    static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (std::equal(b, b + 12, kMapped)) source = Endpoint(IpAddress::v4(b + 12), source.port());
  }
  if (punch::looks_like_disco(datagram)) {
    paths_.handle_disco(now, punch::DiscoSource::udp(id, source), datagram);
    after_work();
  } else if (datagram.size() >= 4 && datagram[0] >= 1 && datagram[0] <= 4) {
    plane_.inject_datagram(DataPlane::now(), source, datagram);
  }
}

}  // namespace knit::agent
