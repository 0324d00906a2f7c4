// A deterministic world for path-discovery tests: agents running PathManager, each on a host
// with its own addresses, optionally behind Knit's NAT engine; a simulated internet with
// per-address latency and blackholes; two STUN servers; a relay. One manual clock, one event
// queue; nothing reads a real clock or opens a socket.
//
//     agent A (10.0.1.2)           internet                       agent B (10.0.2.2)
//     sockets 0, 1..n ── NatEngine A ── 203.0.113.1 ─┬─ 203.0.113.2 ── NatEngine B ── sockets
//                                    (one-way delay) │
//                          STUN 192.0.2.10 / .11:3478   relay (node key -> node key)
//
// Disco payloads travel as real IPv4/UDP packets (nat::make_udp) so the NAT engines translate
// and filter them exactly as they would any traffic.
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <set>
#include <string>
#include <vector>

#include "base/random.hpp"
#include "nat/nat_engine.hpp"
#include "nat/packet_builder.hpp"
#include "nat/wire.hpp"
#include "punch/path/disco.hpp"
#include "punch/path/manager.hpp"
#include "wg/crypto.hpp"

namespace knit::punch::sim {

inline IpAddress ip(const char* text) { return *IpAddress::parse(text); }
inline Endpoint ep(const char* text) { return *Endpoint::parse(text); }

inline const Endpoint kStun1 = ep("192.0.2.10:3478");
inline const Endpoint kStun2 = ep("192.0.2.11:3478");
inline constexpr std::uint16_t kWgPort = 51820;

struct SendRecord {
  Instant at{};
  SendPurpose purpose = SendPurpose::none;
  SocketId socket = kMainSocket;
  Endpoint to;
};

class World;

struct Agent {
  std::string name;
  std::vector<IpAddress> addresses;  // the host's own; [0] is the primary
  std::unique_ptr<SeededRandom> nat_rng;
  std::unique_ptr<nat::NatEngine> nat;  // null: a public host
  SeededRandom rng;
  wg::PrivateKey disco_private;
  DiscoKey disco_public{};
  NodeKey node_key{};
  std::unique_ptr<PathManager> pm;
  std::map<SocketId, std::uint16_t> sockets;
  std::map<std::uint16_t, SocketId> by_port;
  std::size_t max_sockets_seen = 0;
  std::vector<SendRecord> sends;
  std::vector<Endpoint> stun_seen;
  std::vector<Bytes> data_received;
  std::size_t path_changes = 0;

  explicit Agent(std::uint64_t seed) : rng(seed) {}
  bool behind_nat() const { return nat != nullptr; }
  bool owns(const IpAddress& a) const {
    for (const IpAddress& x : addresses)
      if (x == a) return true;
    return false;
  }
};

class World {
 public:
  Duration internet_delay = std::chrono::milliseconds(15);  // one way, per hop to the internet
  Duration relay_delay = std::chrono::milliseconds(40);     // one way through the relay
  std::map<IpAddress, Duration> extra_delay;  // added for packets to or from this address
  std::set<IpAddress> blackholed;             // packets to or from it vanish
  bool relay_up = true;
  Instant now{};

  // A host at `address` (a NAT's inside if `nat_config` is set, else public).
  Agent& add_agent(const std::string& name, std::vector<IpAddress> addresses,
                   std::optional<nat::Config> nat_config, std::uint64_t seed) {
    auto a = std::make_unique<Agent>(seed);
    a->name = name;
    a->addresses = std::move(addresses);
    if (nat_config) {
      a->nat_rng = std::make_unique<SeededRandom>(seed * 7919 + 1);
      a->nat = std::make_unique<nat::NatEngine>(*nat_config, *a->nat_rng);
    }
    generate_disco_key(a->disco_private, a->disco_public, a->rng);
    a->rng.fill(a->node_key);
    a->pm = std::make_unique<PathManager>(a->disco_private, a->node_key, a->rng,
                                          1'000'000'000ULL * (seed + 1));
    a->sockets[kMainSocket] = kWgPort;
    a->by_port[kWgPort] = kMainSocket;
    agents_.push_back(std::move(a));
    return *agents_.back();
  }

  // netcheck, simulated: a datagram to each STUN server; what they saw comes back.
  LocalCandidates discover(Agent& a) {
    a.stun_seen.clear();
    send_raw(a, kMainSocket, kStun1, Bytes{'S'});
    send_raw(a, kMainSocket, kStun2, Bytes{'S'});
    run_for(4 * internet_delay);
    LocalCandidates c;
    c.local.push_back(Endpoint(a.addresses[0], kWgPort));
    if (a.stun_seen.size() == 2) {
      c.reflexive = a.stun_seen[0];
      c.mapping_varies = !a.stun_seen[0].same_remote(a.stun_seen[1]);
    }
    return c;
  }

  // Every agent learns every other from the "coordinator": its local and reflexive endpoints.
  void introduce(Agent& a, const LocalCandidates& ca, Agent& b, const LocalCandidates& cb) {
    std::vector<Endpoint> eb = cb.local, ea = ca.local;
    if (cb.reflexive) eb.push_back(*cb.reflexive);
    if (ca.reflexive) ea.push_back(*ca.reflexive);
    a.pm->set_peer(now, b.node_key, b.disco_public, eb);
    drain(a);
    b.pm->set_peer(now, a.node_key, a.disco_public, ea);
    drain(b);
  }

  void set_relay(bool up) {
    relay_up = up;
    for (auto& a : agents_) {
      a->pm->set_relay_available(now, up);
      drain(*a);
    }
  }

  // Runs the world until `end`, calling `tick` (if any) every `tick_every`.
  void run_until(Instant end, const std::function<void()>& tick = {},
                 Duration tick_every = std::chrono::milliseconds(200)) {
    Instant next_tick = now;
    int same_instant = 0;
    Instant last = now;
    for (;;) {
      std::optional<Instant> t;
      auto consider = [&](std::optional<Instant> x) {
        if (x && (!t || *x < *t)) t = x;
      };
      if (!queue_.empty()) consider(queue_.top().at);
      for (auto& a : agents_) consider(a->pm->next_deadline());
      if (tick) consider(next_tick);
      if (!t || *t > end) break;
      now = std::max(now, *t);
      if (now == last) {
        ASSERT_LT(++same_instant, 100000) << "the world makes no progress";
      } else {
        same_instant = 0;
        last = now;
      }
      while (!queue_.empty() && queue_.top().at <= now) {
        auto fn = queue_.top().fn;
        queue_.pop();
        fn();
      }
      for (auto& a : agents_) {
        auto d = a->pm->next_deadline();
        if (d && *d <= now) {
          a->pm->on_timers(now);
          drain(*a);
        }
      }
      if (tick && next_tick <= now) {
        tick();
        next_tick = now + tick_every;
      }
    }
    now = std::max(now, end);
  }
  void run_for(Duration d, const std::function<void()>& tick = {}) { run_until(now + d, tick); }

  // Carries out what a PathManager asked for.
  void drain(Agent& a) {
    for (PathAction& act : a.pm->take_actions()) {
      switch (act.kind) {
        case ActionKind::send_udp:
          a.sends.push_back(SendRecord{now, act.purpose, act.socket, act.endpoint});
          send_raw(a, act.socket, act.endpoint, act.bytes);
          break;
        case ActionKind::send_relay: {
          if (!relay_up) break;
          Agent* to = find(act.peer);
          if (!to) break;
          const NodeKey from = a.node_key;
          Bytes bytes = std::move(act.bytes);
          at(now + relay_delay, [this, to, from, bytes] {
            to->pm->handle_disco(now, DiscoSource::relay(from), bytes);
            drain(*to);
          });
          break;
        }
        case ActionKind::open_probe_socket: {
          std::uint16_t port;
          do {
            port = static_cast<std::uint16_t>(20000 + a.rng.uniform(40000));
          } while (a.by_port.count(port));
          a.sockets[act.socket] = port;
          a.by_port[port] = act.socket;
          a.max_sockets_seen = std::max(a.max_sockets_seen, a.sockets.size() - 1);
          break;
        }
        case ActionKind::close_probe_socket: {
          auto it = a.sockets.find(act.socket);
          EXPECT_NE(it, a.sockets.end()) << a.name << " closes an unknown socket";
          if (it != a.sockets.end()) {
            a.by_port.erase(it->second);
            a.sockets.erase(it);
          }
          break;
        }
        case ActionKind::path_changed:
          ++a.path_changes;
          break;
      }
    }
  }

  // A datagram from one of a's sockets (disco, data or a STUN probe).
  void send_raw(Agent& a, SocketId socket, const Endpoint& to, ByteSpan payload) {
    auto it = a.sockets.find(socket);
    if (it == a.sockets.end()) return;  // socket closed: the kernel would refuse
    const IpAddress src_ip = to.local() ? *to.local() : a.addresses[0];
    Bytes packet = nat::make_udp(Endpoint(src_ip, it->second), Endpoint(to.address(), to.port()),
                                 payload);
    if (a.nat) {
      const nat::Result r = a.nat->outbound(now, packet);
      if (r.verdict != nat::Verdict::forward) return;
      packet.resize(r.length);
    }
    to_internet(std::move(packet));
  }

  Agent* find(const NodeKey& key) {
    for (auto& a : agents_)
      if (a->node_key == key) return a.get();
    return nullptr;
  }
  std::vector<std::unique_ptr<Agent>>& agents() { return agents_; }

 private:
  struct Event {
    Instant at;
    std::uint64_t seq;
    std::function<void()> fn;
    bool operator>(const Event& o) const { return at != o.at ? at > o.at : seq > o.seq; }
  };

  void at(Instant t, std::function<void()> fn) { queue_.push(Event{t, seq_++, std::move(fn)}); }

  Duration delay_of(const nat::PacketSummary& s) const {
    Duration d = internet_delay;
    if (auto it = extra_delay.find(s.source.address()); it != extra_delay.end()) d += it->second;
    if (auto it = extra_delay.find(s.destination.address()); it != extra_delay.end())
      d += it->second;
    return d;
  }

  void to_internet(Bytes packet) {
    const nat::PacketSummary s = nat::summarize(packet);
    if (blackholed.count(s.source.address()) || blackholed.count(s.destination.address())) return;
    at(now + delay_of(s), [this, packet = std::move(packet)]() mutable { arrive(std::move(packet)); });
  }

  void arrive(Bytes packet) {
    const nat::PacketSummary s = nat::summarize(packet);
    if (s.destination.same_remote(kStun1) || s.destination.same_remote(kStun2)) {
      for (auto& a : agents_)
        if (a->owns(s.source.address()) ||
            (a->nat && a->nat->config().external_addresses[0] == s.source.address()))
          a->stun_seen.push_back(s.source);
      return;
    }
    for (auto& a : agents_) {
      if (a->nat && a->nat->config().external_addresses[0] == s.destination.address()) {
        const nat::Result r = a->nat->inbound(now, packet);
        if (r.verdict != nat::Verdict::forward) return;
        packet.resize(r.length);
        deliver(*a, packet);
        return;
      }
      if (!a->nat && a->owns(s.destination.address())) {
        deliver(*a, packet);
        return;
      }
    }
  }

  void deliver(Agent& a, ByteSpan packet) {
    const nat::PacketSummary s = nat::summarize(packet);
    auto it = a.by_port.find(s.destination.port());
    if (it == a.by_port.end()) return;  // no socket: ICMP port unreachable, ignored here
    const std::size_t ihl = static_cast<std::size_t>(packet[0] & 0x0f) * 4;
    const ByteSpan payload = packet.subspan(ihl + nat::kUdpHeader);
    Endpoint from = s.source;
    if (!a.nat) from.set_local(s.destination.address());  // IP_PKTINFO: reply from it
    if (looks_like_disco(payload)) {
      a.pm->handle_disco(now, DiscoSource::udp(it->second, from), payload);
      drain(a);
    } else {
      a.data_received.emplace_back(payload.begin(), payload.end());
    }
  }

  std::vector<std::unique_ptr<Agent>> agents_;
  std::priority_queue<Event, std::vector<Event>, std::greater<Event>> queue_;
  std::uint64_t seq_ = 0;
};

// The largest number of sends matching `pred` in any window [t, t + window).
template <typename Pred>
std::size_t max_in_window(const std::vector<SendRecord>& sends, Duration window, Pred pred) {
  std::vector<Instant> t;
  for (const SendRecord& s : sends)
    if (pred(s)) t.push_back(s.at);
  std::size_t best = 0, lo = 0;
  for (std::size_t hi = 0; hi < t.size(); ++hi) {
    while (t[hi] - t[lo] >= window) ++lo;
    best = std::max(best, hi - lo + 1);
  }
  return best;
}

}  // namespace knit::punch::sim
