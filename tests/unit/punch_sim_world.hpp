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
//
// A router without a WAN input firewall (Agent::unfirewalled), as Linux behaves: an inbound
// packet its NAT does not forward is taken by the router itself, and conntrack keeps that flow
// (30 s, refreshed by every further such packet). An inside flow to the same remote endpoint
// then cannot have that external port: masquerade gives it another one ("the inbound probe
// takes the port"). What the lab's conntrack showed (tests/netns/nat_grid_test.sh, pro) and
// is modelled here:
//  * the stolen entry keeps the port for that remote: its further packets to it are the
//    router's (and refresh the entry), never forwarded inside, even once our moved flow exists;
//  * Linux masquerade gives a new flow the mapping of the newest flow from the same inside
//    source (nf_nat's find_appropriate_src): while a moved flow lives, every NEW flow from that
//    socket leaves from the moved port too, so the port STUN saw and we published is wrong for
//    every peer we meet from then on (a symmetric peer's probe sockets aim at the wrong port).
// Moved flows end after kSimUdpTimeout without outbound packets, as conntrack entries do.
// A double NAT (Agent::double_nat) is modelled by its carrier NAT: TTL-2 openers die before it
// (an ICMP "time exceeded" from the carrier's inside address, kCarrierInside, tells the agent);
// unfirewalled, it is the carrier that takes ports. A packet with a TTL (PathAction::ttl) of 2
// (3 from behind a double NAT) crosses the agent's NATs and dies at the next hop (kNextHop).
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

inline IpAddress ip(const char* text) { return IpAddress::parse(text).value(); }
inline Endpoint ep(const char* text) { return Endpoint::parse(text).value(); }

inline const Endpoint kStun1 = ep("192.0.2.10:3478");
inline const Endpoint kStun2 = ep("192.0.2.11:3478");
inline constexpr std::uint16_t kWgPort = 51820;
inline constexpr Duration kSimUdpTimeout = std::chrono::seconds(30);  // the lab routers' conntrack
inline const IpAddress kCarrierInside = IpAddress::parse("100.64.1.1").value();  // a double NAT's carrier
inline const IpAddress kNextHop = IpAddress::parse("192.0.2.254").value();       // the hop past our NATs

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
  bool unfirewalled = false;
  // Behind a home NAT behind this one (a carrier NAT, as the lab's double NAT): a TTL-2 opener
  // dies at the carrier before it is translated, so it opens nothing here.
  bool double_nat = false;
  // Unfirewalled router: (external port, remote) held by a router-local conntrack entry -> expiry.
  std::map<std::pair<std::uint16_t, Endpoint>, Instant> stolen;
  // Flows masquerade moved to another port: (inside port, remote) <-> external port.
  std::map<std::pair<std::uint16_t, Endpoint>, std::uint16_t> moved;
  std::map<std::pair<std::uint16_t, Endpoint>, std::uint16_t> moved_back;  // (ext port, remote) -> inside port
  std::map<std::pair<std::uint16_t, Endpoint>, Instant> moved_used;  // last outbound packet of a moved flow
  std::map<std::pair<std::uint16_t, Endpoint>, std::uint16_t> moved_from;  // the port it would have had
  // Flows from (inside port, remote) the router has seen, with their last outbound packet: a
  // packet to a remote not in here (or expired) starts a NEW flow.
  std::map<std::pair<std::uint16_t, Endpoint>, Instant> flows;
  std::uint16_t next_moved_port = 61000;
  std::size_t steals = 0;
  std::size_t spread = 0;  // new flows that inherited a moved port

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
  std::size_t path_mtu = 0;                   // IP packets larger than this vanish (0: none do)
  bool relay_up = true;
  std::set<NodeKey> relay_cut;  // nodes whose relay traffic vanishes (a host gone silent)
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

  // netcheck against one knit-relay (one address, STUN on two ports): EIM and ADM look alike.
  LocalCandidates discover_one_relay(Agent& a) {
    return discover_via(a, Endpoint(kStun1.address(), kStun1.port() + 1));
  }

  // netcheck, simulated: a datagram to each STUN server; what they saw comes back.
  LocalCandidates discover(Agent& a) { return discover_via(a, kStun2); }

  // A datagram to kStun1 and to `second`, from the main socket; the mapping varies when the two
  // saw different sources.
  LocalCandidates discover_via(Agent& a, const Endpoint& second) {
    a.stun_seen.clear();
    send_raw(a, kMainSocket, kStun1, Bytes{'S'});
    send_raw(a, kMainSocket, second, Bytes{'S'});
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
          send_raw(a, act.socket, act.endpoint, act.bytes, act.ttl);
          break;
        case ActionKind::send_relay: {
          if (!relay_up || relay_cut.count(a.node_key) || relay_cut.count(act.peer)) break;
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
  void send_raw(Agent& a, SocketId socket, const Endpoint& to, ByteSpan payload, std::uint8_t ttl = 0) {
    auto it = a.sockets.find(socket);
    if (it == a.sockets.end()) return;  // socket closed: the kernel would refuse
    const IpAddress src_ip = to.local() ? *to.local() : a.addresses[0];
    const Endpoint remote(to.address(), to.port());
    Bytes packet = nat::make_udp(Endpoint(src_ip, it->second), remote, payload);
    if (a.double_nat && ttl != 0 && ttl <= 2) {
      // Died at the carrier before its NAT: "time exceeded" from the carrier's inside address.
      if (socket == kMainSocket) time_exceeded(a, remote, kCarrierInside);
      return;
    }
    if (a.nat) {
      const nat::Result r = a.nat->outbound(now, packet);
      if (r.verdict != nat::Verdict::forward) return;
      packet.resize(r.length);
      const nat::PacketSummary s = nat::summarize(packet);
      const auto key = std::make_pair(it->second, remote);
      auto moved = a.moved.find(key);
      if (moved != a.moved.end() && now - a.moved_used[key] > kSimUdpTimeout) {
        // The moved flow's conntrack entry expired: this packet starts a new flow.
        a.moved_back.erase({moved->second, remote});
        a.moved_used.erase(key);
        a.moved_from.erase(key);
        a.moved.erase(moved);
        moved = a.moved.end();
      }
      const auto flow = a.flows.find(key);
      const bool new_flow = flow == a.flows.end() || now - flow->second > kSimUdpTimeout;
      auto held = a.stolen.find({s.source.port(), remote});
      if (moved == a.moved.end() && held != a.stolen.end() && held->second > now) {
        // The router holds (port, remote) for itself: this flow leaves from another port.
        moved = a.moved.emplace(key, a.next_moved_port++).first;
        a.moved_back[{moved->second, remote}] = it->second;
        ++a.steals;
      } else if (moved == a.moved.end() && new_flow && a.unfirewalled) {
        // A new flow takes the mapping of the newest live flow from this inside port, if that
        // one was moved (find_appropriate_src).
        std::optional<std::pair<Instant, std::uint16_t>> newest;
        for (const auto& [k, port] : a.moved) {
          if (k.first != it->second) continue;
          const Instant used = a.moved_used[k];
          if (now - used > kSimUdpTimeout) continue;
          if (!newest || used > newest->first) newest = std::make_pair(used, port);
        }
        if (newest && !a.stolen.count({newest->second, remote}) &&
            !a.moved_back.count({newest->second, remote})) {
          moved = a.moved.emplace(key, newest->second).first;
          a.moved_back[{moved->second, remote}] = it->second;
          ++a.spread;
        }
      }
      a.flows[key] = now;
      if (moved != a.moved.end()) {
        a.moved_used[key] = now;
        a.moved_from[key] = s.source.port();
        packet = nat::make_udp(Endpoint(s.source.address(), moved->second), remote, payload);
      }
    }
    if (ttl != 0 && ttl <= (a.double_nat ? 3 : a.nat ? 2 : 1)) {
      // Expired at the next hop, past every NAT of ours: it answers from a public address.
      if (socket == kMainSocket) time_exceeded(a, remote, kNextHop);
      return;
    }
    to_internet(std::move(packet));
  }

  // An ICMP "time exceeded" about a datagram of a's main socket to `to`, from `offender`.
  void time_exceeded(Agent& a, const Endpoint& to, const IpAddress& offender) {
    at(now + std::chrono::milliseconds(1), [this, &a, to, offender] {
      a.pm->on_time_exceeded(now, to, offender);
      drain(a);
    });
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
    if (path_mtu != 0 && packet.size() > path_mtu) return;  // no ICMP: a black hole
    at(now + delay_of(s), [this, packet = std::move(packet)]() mutable { arrive(std::move(packet)); });
  }

  void arrive(Bytes packet) {
    const nat::PacketSummary s = nat::summarize(packet);
    if (s.destination.address() == kStun1.address() || s.destination.same_remote(kStun2)) {
      for (auto& a : agents_)
        if (a->owns(s.source.address()) ||
            (a->nat && a->nat->config().external_addresses[0] == s.source.address()))
          a->stun_seen.push_back(s.source);
      return;
    }
    for (auto& a : agents_) {
      if (a->nat && a->nat->config().external_addresses[0] == s.destination.address()) {
        const std::size_t ihl = static_cast<std::size_t>(packet[0] & 0x0f) * 4;
        const Bytes payload(packet.begin() + static_cast<std::ptrdiff_t>(ihl + nat::kUdpHeader), packet.end());
        if (auto back = a->moved_back.find({s.destination.port(), s.source}); back != a->moved_back.end()) {
          // The reply direction of a moved flow.
          deliver(*a, nat::make_udp(s.source, Endpoint(a->addresses[0], back->second), payload));
          return;
        }
        if (auto held = a->stolen.find({s.destination.port(), s.source});
            held != a->stolen.end() && held->second > now) {
          // The router's own flow: it takes the packet, and the entry lives on.
          held->second = now + kSimUdpTimeout;
          return;
        }
        // A remote whose flow from us was moved reaches that flow at the moved port only (handled
        // above); at the port the flow would have had it matches no flow (the NAT engine would let
        // it in): the router takes it (or drops it).
        for (const auto& [k, port] : a->moved) {
          if (!(k.second == s.source) || now - a->moved_used[k] > kSimUdpTimeout) continue;
          if (a->moved_from[k] != s.destination.port()) continue;
          if (a->unfirewalled) a->stolen[{s.destination.port(), s.source}] = now + kSimUdpTimeout;
          return;
        }
        const nat::Result r = a->nat->inbound(now, packet);
        if (r.verdict != nat::Verdict::forward) {
          // Not for the inside: an unfirewalled router takes it and keeps the flow.
          if (a->unfirewalled) a->stolen[{s.destination.port(), s.source}] = now + kSimUdpTimeout;
          return;
        }
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
