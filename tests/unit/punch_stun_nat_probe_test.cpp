// NatProbe against simulated servers behind a simulated NAT, on a manual clock: every RFC 4787
// mapping × filtering pair must be classified as what the NAT does, plus the degraded cases (no
// RFC 5780 server, two plain servers, UDP blocked, IPv6).
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <tuple>

#include "base/random.hpp"
#include "punch/stun/nat_probe.hpp"
#include "punch/stun/responder.hpp"

namespace knit::punch {
namespace {

using std::chrono::milliseconds;

Endpoint ep(const char* text) { return Endpoint::parse(text).value(); }

// A deliberately small NAT model: a mapping per key (the key depends on the mapping
// behaviour), external ports handed out in order, and per-mapping filters.
class SimNat {
 public:
  SimNat(NatMapping mapping, NatFiltering filtering, IpAddress public_ip)
      : mapping_(mapping), filtering_(filtering), public_ip_(public_ip) {}

  Endpoint outbound(const Endpoint& inside, const Endpoint& to) {
    std::tuple<Endpoint, IpAddress, std::uint16_t> key{inside, IpAddress{}, 0};
    if (mapping_ != NatMapping::endpoint_independent) std::get<1>(key) = to.address();
    if (mapping_ == NatMapping::address_and_port_dependent) std::get<2>(key) = to.port();
    auto it = mappings_.find(key);
    if (it != mappings_.end() && clashes_[it->second].count(to)) {
      // Linux conntrack: an unanswered inbound packet from `to` holds the tuple, so this flow
      // gets another port (the mapping itself stays).
      const std::uint16_t port = next_port_++;
      inside_of_[port] = inside;
      contacted_[port].insert(to);
      return Endpoint(public_ip_, port);
    }
    if (it == mappings_.end()) {
      it = mappings_.emplace(key, next_port_++).first;
      inside_of_[it->second] = inside;
    }
    contacted_[it->second].insert(to);
    return Endpoint(public_ip_, it->second);
  }

  // The inside endpoint an inbound datagram goes to, if the filter lets it in.
  std::optional<Endpoint> inbound(const Endpoint& from, const Endpoint& to) {
    if (to.address() != public_ip_ || !inside_of_.count(to.port())) return std::nullopt;
    const auto& seen = contacted_[to.port()];
    bool ok = filtering_ == NatFiltering::endpoint_independent;
    for (const auto& c : seen) {
      if (filtering_ == NatFiltering::address_dependent && c.address() == from.address()) ok = true;
      if (filtering_ == NatFiltering::address_and_port_dependent && c == from) ok = true;
    }
    if (!ok) {
      if (conntrack_clash) clashes_[to.port()].insert(from);
      ++filtered;
      return std::nullopt;
    }
    return inside_of_[to.port()];
  }
  int filtered = 0;
  bool conntrack_clash = false;  // model the stray state an unsolicited packet leaves

 private:
  NatMapping mapping_;
  NatFiltering filtering_;
  IpAddress public_ip_;
  std::uint16_t next_port_ = 40000;
  std::map<std::tuple<Endpoint, IpAddress, std::uint16_t>, std::uint16_t> mappings_;
  std::map<std::uint16_t, Endpoint> inside_of_;
  std::map<std::uint16_t, std::set<Endpoint>> contacted_;
  std::map<std::uint16_t, std::set<Endpoint>> clashes_;
};

struct World {
  std::vector<StunResponder> servers;
  std::optional<SimNat> nat;  // none: the host is public
  Endpoint host = ep("10.1.0.2:51820");
  bool udp_blocked = false;
  Duration one_way = milliseconds(10);
};

// Servers: an RFC 5780 one (A, B × 3478, 3479) and a plain one.
StunResponder rfc5780_server() {
  return StunResponder({.primary = ep("198.51.100.1:3478"), .alternate_ip = IpAddress::parse("198.51.100.2"),
                        .alternate_port = 3479});
}
StunResponder plain_server() { return StunResponder({.primary = ep("192.0.2.77:3478")}); }

// A responder only answers what is addressed to one of its sockets.
bool owns(const StunResponder& s, const Endpoint& to) {
  const auto& g = s.group();
  const bool ip = to.address() == g.primary.address() || (g.alternate_ip && to.address() == *g.alternate_ip);
  const bool port = to.port() == g.primary.port() || (g.alternate_port && to.port() == *g.alternate_port);
  return ip && port;
}

Duration run_routed(World& w, NatProbe& probe, const std::vector<Endpoint>& targets) {
  const Instant t0{};
  Instant now = t0;
  probe.start(now, targets);
  for (int step = 0; step < 1000 && !probe.done(); ++step) {
    std::vector<StunReply> arrivals;
    for (auto& d : probe.take_outgoing()) {
      if (w.udp_blocked) continue;
      const Endpoint src = w.nat ? w.nat->outbound(w.host, d.to) : w.host;
      for (auto& s : w.servers) {
        if (!owns(s, d.to)) continue;
        if (auto reply = s.handle(src, d.to, d.bytes)) arrivals.push_back(*reply);
      }
    }
    if (!arrivals.empty()) {
      now += 2 * w.one_way;
      for (auto& reply : arrivals) {
        const auto inside = w.nat ? w.nat->inbound(reply.from, reply.to) : std::optional<Endpoint>(reply.to);
        if (inside) {
          EXPECT_TRUE(probe.handle(now, reply.from, reply.datagram));
        }
      }
      continue;
    }
    const auto next = probe.next_deadline();
    if (!next) break;
    now = std::max(now, *next);
    probe.on_timers(now);
  }
  EXPECT_TRUE(probe.done());
  return now - t0;
}

class NatProbeGrid : public ::testing::TestWithParam<std::tuple<NatMapping, NatFiltering>> {};

TEST_P(NatProbeGrid, ClassifiesTheNat) {
  const auto [mapping, filtering] = GetParam();
  World w;
  w.servers.push_back(rfc5780_server());
  w.servers.push_back(plain_server());
  w.nat.emplace(mapping, filtering, IpAddress::parse("203.0.113.1").value());
  SeededRandom rng(11);
  NatProbe probe(rng);
  const Duration took = run_routed(w, probe, {ep("198.51.100.1:3478"), ep("192.0.2.77:3478")});
  const auto& r = probe.result();
  EXPECT_TRUE(r.udp);
  ASSERT_TRUE(r.public_v4);
  EXPECT_EQ(r.public_v4->address(), IpAddress::parse("203.0.113.1").value());
  EXPECT_FALSE(r.public_v6);
  EXPECT_EQ(r.mapping, mapping) << to_string(r.mapping);
  EXPECT_EQ(r.filtering, filtering) << to_string(r.filtering);
  ASSERT_TRUE(r.mapping_varies);
  EXPECT_EQ(*r.mapping_varies, mapping != NatMapping::endpoint_independent);
  ASSERT_EQ(r.servers.size(), 2u);
  for (const auto& s : r.servers) {
    EXPECT_TRUE(s.answered);
    EXPECT_EQ(s.rtt, milliseconds(20));
  }
  EXPECT_EQ(r.servers[0].other_address, ep("198.51.100.2:3479"));
  EXPECT_FALSE(r.servers[1].other_address);
  // Bounded: binding + one filtering timeout + mapping, with the default short schedules.
  EXPECT_LT(took, std::chrono::seconds(3)) << std::chrono::duration_cast<milliseconds>(took).count() << " ms";
  std::printf("  %s/%s: %lld ms, %llu datagrams\n", std::string(to_string(mapping)).c_str(),
              std::string(to_string(filtering)).c_str(),
              static_cast<long long>(std::chrono::duration_cast<milliseconds>(took).count()),
              static_cast<unsigned long long>(probe.counters().sent));
}

INSTANTIATE_TEST_SUITE_P(
    AllPairs, NatProbeGrid,
    ::testing::Combine(::testing::Values(NatMapping::endpoint_independent, NatMapping::address_dependent,
                                         NatMapping::address_and_port_dependent),
                       ::testing::Values(NatFiltering::endpoint_independent, NatFiltering::address_dependent,
                                         NatFiltering::address_and_port_dependent)));

// Found in the lab: behind Linux masquerade the filtering test's unanswered B:q reply leaves a
// conntrack entry, and a later request to B:q leaves from another port. RFC 5780 sends test
// III only when test II differed, so an EIM NAT is still reported as EIM.
TEST(NatProbe, StrayStateAfterFilteringTestDoesNotFakeVariation) {
  World w;
  w.servers.push_back(rfc5780_server());
  w.nat.emplace(NatMapping::endpoint_independent, NatFiltering::address_and_port_dependent,
                IpAddress::parse("203.0.113.1").value());
  w.nat->conntrack_clash = true;
  SeededRandom rng(18);
  NatProbe probe(rng);
  run_routed(w, probe, {ep("198.51.100.1:3478")});
  EXPECT_EQ(probe.result().mapping, NatMapping::endpoint_independent);
  EXPECT_EQ(probe.result().filtering, NatFiltering::address_and_port_dependent);
  EXPECT_EQ(probe.result().mapping_varies, false);
  EXPECT_FALSE(probe.result().mapped_other_ip_port);  // test III not needed
}

// One knit-relay host: one address, STUN on two ports (A:p, A:q), OTHER-ADDRESS = A:q. Every
// mapping × filtering, behind a router with and without a WAN firewall (conntrack_clash: an
// unsolicited inbound packet takes the port, as on an unfirewalled Linux router). The mapping
// test runs first and alone: a port-dependent mapping reads APDM; EIM and ADM both read EIM,
// because one IP cannot show a variation by address (the pongs of peers can: mapping_evidence).
class NatProbeOneRelay
    : public ::testing::TestWithParam<std::tuple<NatMapping, NatFiltering, bool>> {};

TEST_P(NatProbeOneRelay, TellsSymmetricFromOneAddress) {
  const auto [mapping, filtering, unfirewalled] = GetParam();
  World w;
  w.servers.push_back(StunResponder({.primary = ep("198.51.100.1:3478"), .alternate_port = 3479}));
  w.nat.emplace(mapping, filtering, IpAddress::parse("203.0.113.1").value());
  w.nat->conntrack_clash = unfirewalled;
  SeededRandom rng(21);
  NatProbe probe(rng);
  const Duration took = run_routed(w, probe, {ep("198.51.100.1:3478")});
  const auto& r = probe.result();
  ASSERT_EQ(r.servers.size(), 1u);
  EXPECT_EQ(r.servers[0].other_address, ep("198.51.100.1:3479"));
  const NatMapping expected = mapping == NatMapping::address_and_port_dependent
                                  ? NatMapping::address_and_port_dependent
                                  : NatMapping::endpoint_independent;
  EXPECT_EQ(r.mapping, expected) << to_string(r.mapping);
  ASSERT_TRUE(r.mapping_varies);
  EXPECT_EQ(*r.mapping_varies, expected != NatMapping::endpoint_independent);
  EXPECT_EQ(r.filtering, NatFiltering::unknown);  // not measurable from one IP (nat_probe.cpp)
  ASSERT_TRUE(r.mapped_other_port);
  EXPECT_FALSE(r.mapped_other_ip);
  // Two round trips: binding, then the mapping test.
  EXPECT_EQ(took, milliseconds(40));
}

INSTANTIATE_TEST_SUITE_P(
    AllPairs, NatProbeOneRelay,
    ::testing::Combine(::testing::Values(NatMapping::endpoint_independent, NatMapping::address_dependent,
                                         NatMapping::address_and_port_dependent),
                       ::testing::Values(NatFiltering::endpoint_independent, NatFiltering::address_dependent,
                                         NatFiltering::address_and_port_dependent),
                       ::testing::Bool()));

// A real RFC 5780 server (another IP) is preferred over a one-IP one listed first.
TEST(NatProbe, PrefersAServerWithAnotherAddress) {
  World w;
  w.servers.push_back(StunResponder({.primary = ep("192.0.2.77:3478"), .alternate_port = 3479}));
  w.servers.push_back(rfc5780_server());
  w.nat.emplace(NatMapping::address_dependent, NatFiltering::address_dependent, IpAddress::parse("203.0.113.1").value());
  SeededRandom rng(22);
  NatProbe probe(rng);
  run_routed(w, probe, {ep("192.0.2.77:3478"), ep("198.51.100.1:3478")});
  EXPECT_EQ(probe.result().mapping, NatMapping::address_dependent);
  EXPECT_EQ(probe.result().filtering, NatFiltering::address_dependent);
  EXPECT_FALSE(probe.result().mapped_other_port);
}

TEST(NatProbe, PublicHost) {
  World w;
  w.servers.push_back(rfc5780_server());
  SeededRandom rng(12);
  NatProbe probe(rng);
  run_routed(w, probe, {ep("198.51.100.1:3478")});
  const auto& r = probe.result();
  EXPECT_EQ(r.public_v4, w.host);
  EXPECT_EQ(r.mapping, NatMapping::endpoint_independent);
  EXPECT_EQ(r.filtering, NatFiltering::endpoint_independent);
}

TEST(NatProbe, TwoPlainServersOnlyTellWhetherMappingVaries) {
  for (auto mapping : {NatMapping::endpoint_independent, NatMapping::address_and_port_dependent}) {
    World w;
    w.servers.push_back(plain_server());
    w.servers.push_back(StunResponder({.primary = ep("192.0.2.88:3478")}));
    w.nat.emplace(mapping, NatFiltering::address_and_port_dependent, IpAddress::parse("203.0.113.1").value());
    SeededRandom rng(13);
    NatProbe probe(rng);
    run_routed(w, probe, {ep("192.0.2.77:3478"), ep("192.0.2.88:3478")});
    const auto& r = probe.result();
    EXPECT_EQ(r.mapping, NatMapping::unknown);
    EXPECT_EQ(r.filtering, NatFiltering::unknown);
    ASSERT_TRUE(r.mapping_varies);
    EXPECT_EQ(*r.mapping_varies, mapping != NatMapping::endpoint_independent);
  }
}

TEST(NatProbe, OneServerWithoutAlternate) {
  World w;
  w.servers.push_back(plain_server());
  w.nat.emplace(NatMapping::endpoint_independent, NatFiltering::endpoint_independent, IpAddress::parse("203.0.113.1").value());
  SeededRandom rng(14);
  NatProbe probe(rng);
  run_routed(w, probe, {ep("192.0.2.77:3478")});
  const auto& r = probe.result();
  EXPECT_TRUE(r.udp);
  EXPECT_EQ(r.mapping, NatMapping::unknown);
  EXPECT_FALSE(r.mapping_varies);
  EXPECT_EQ(r.filtering, NatFiltering::unknown);
}

TEST(NatProbe, UdpBlocked) {
  World w;
  w.servers.push_back(rfc5780_server());
  w.udp_blocked = true;
  SeededRandom rng(15);
  NatProbe probe(rng);
  const Duration took = run_routed(w, probe, {ep("198.51.100.1:3478")});
  const auto& r = probe.result();
  EXPECT_FALSE(r.udp);
  EXPECT_FALSE(r.public_v4);
  EXPECT_FALSE(r.servers[0].answered);
  EXPECT_EQ(took, NatProbeOptions{}.retransmit.total());
  EXPECT_EQ(probe.counters().sent, NatProbeOptions{}.retransmit.max_sends);
}

TEST(NatProbe, Ipv6AndIpv4Servers) {
  World w;
  w.host = ep("[2001:db8:1::5]:51820");
  w.servers.push_back(StunResponder({.primary = ep("[2001:db8:9::1]:3478"),
                                     .alternate_ip = IpAddress::parse("2001:db8:9::2"), .alternate_port = 3479}));
  SeededRandom rng(16);
  NatProbe probe(rng);
  run_routed(w, probe, {ep("[2001:db8:9::1]:3478")});
  const auto& r = probe.result();
  EXPECT_EQ(r.public_v6, w.host);
  EXPECT_FALSE(r.public_v4);
  EXPECT_EQ(r.mapping, NatMapping::endpoint_independent);  // no NAT66: tested on v6 when alone
}

TEST(NatProbe, StrangersAreCountedNotTrusted) {
  SeededRandom rng(17);
  NatProbe probe(rng);
  const Endpoint server = ep("198.51.100.1:3478");
  probe.start(Instant{}, std::vector<Endpoint>{server});
  auto out = probe.take_outgoing();
  ASSERT_EQ(out.size(), 1u);
  StunResponder s = rfc5780_server();
  // An answer to someone else's transaction: consumed, counted, no effect.
  auto forged = s.handle(ep("6.6.6.6:6666"), server, build_binding_request({0x42}));
  EXPECT_TRUE(probe.handle(Instant{}, forged->from, forged->datagram));
  EXPECT_EQ(probe.counters().drop_unknown_id, 1u);
  EXPECT_FALSE(probe.result().udp);
  Bytes not_stun = {1, 0, 0, 0};
  EXPECT_FALSE(probe.handle(Instant{}, server, not_stun));
}

}  // namespace
}  // namespace knit::punch
