// RFC 4787 mapping and filtering behaviour (all nine combinations) and external port
// assignment: preservation, clashes, range, parity, well-known ports, no overloading, pairing.
#include <gtest/gtest.h>

#include <map>
#include <set>
#include <tuple>

#include "nat/nat_engine.hpp"
#include "nat/packet_builder.hpp"
#include "nat/wire.hpp"
#include "tests/support/nat_combinations.hpp"

namespace knit::nat {
namespace {

Endpoint ep(const char* text) { return Endpoint::parse(text).value(); }
IpAddress ip(const char* text) { return IpAddress::parse(text).value(); }

Config make_config(Mapping mapping, Filtering filtering) {
  Config c;
  c.external_addresses = {ip("203.0.113.1")};
  c.mapping = mapping;
  c.filtering = filtering;
  return c;
}

struct Nat {
  explicit Nat(Config config, std::uint64_t seed = 1) : rng(seed), engine(std::move(config), rng) {}
  // Sends X -> Y outbound; returns the external endpoint it left with (empty if not forwarded).
  Endpoint send(const Endpoint& from, const Endpoint& to) {
    Bytes p = make_udp(from, to, Bytes(4, 1));
    const Result r = engine.outbound(now, p, reply);
    if (r.verdict != Verdict::forward) return Endpoint();
    EXPECT_TRUE(verify_checksums(p).all());
    return summarize(p).source;
  }
  // Y -> external endpoint inbound; the result, and the packet's new destination.
  Result receive(const Endpoint& from, const Endpoint& to, Endpoint* delivered = nullptr) {
    Bytes p = make_udp(from, to, Bytes(4, 2));
    const Result r = engine.inbound(now, p, reply);
    if (r.verdict == Verdict::forward) {
      EXPECT_TRUE(verify_checksums(p).all());
      if (delivered) *delivered = summarize(p).destination;
    }
    return r;
  }
  SeededRandom rng;
  NatEngine engine;
  Instant now{};
  std::array<std::uint8_t, kIcmpErrorMaxSize> reply{};
};

using Combination = knit::testing::NatCombination;

class NatBehaviour : public ::testing::TestWithParam<Combination> {};

// RFC 4787 REQ-1 (and §4.1 for ADM/APDM): which remote endpoints share an external endpoint.
TEST_P(NatBehaviour, Rfc4787Req1MappingBehaviour) {
  const auto [mapping, filtering] = GetParam();
  Nat nat(make_config(mapping, filtering));
  const Endpoint x = ep("10.0.0.2:5000");
  const Endpoint e1 = nat.send(x, ep("198.51.100.1:3478"));
  const Endpoint e2 = nat.send(x, ep("198.51.100.1:3479"));  // same address, other port
  const Endpoint e3 = nat.send(x, ep("198.51.100.2:3478"));  // other address
  ASSERT_FALSE(e1.empty());
  ASSERT_FALSE(e2.empty());
  ASSERT_FALSE(e3.empty());
  EXPECT_EQ(e1.address(), ip("203.0.113.1"));
  EXPECT_EQ(e1.port(), 5000);  // the first one keeps its port (preservation)
  switch (mapping) {
    case Mapping::endpoint_independent:
      EXPECT_EQ(e1, e2);
      EXPECT_EQ(e1, e3);
      break;
    case Mapping::address_dependent:
      EXPECT_EQ(e1, e2);
      EXPECT_NE(e1, e3);
      break;
    case Mapping::address_and_port_dependent:
      EXPECT_NE(e1, e2);
      EXPECT_NE(e1, e3);
      EXPECT_NE(e2, e3);
      break;
  }
  // Every reply finds its way back to X, whatever the mapping behaviour.
  Endpoint delivered;
  EXPECT_EQ(nat.receive(ep("198.51.100.1:3479"), e2, &delivered).verdict, Verdict::forward);
  EXPECT_EQ(delivered, x);
  EXPECT_EQ(nat.receive(ep("198.51.100.2:3478"), e3, &delivered).verdict, Verdict::forward);
  EXPECT_EQ(delivered, x);
}

// RFC 4787 REQ-8 (§5): which senders a mapping admits.
TEST_P(NatBehaviour, Rfc4787Req8FilteringBehaviour) {
  const auto [mapping, filtering] = GetParam();
  Nat nat(make_config(mapping, filtering));
  const Endpoint x = ep("10.0.0.2:5000");
  const Endpoint e = nat.send(x, ep("198.51.100.1:3478"));
  ASSERT_FALSE(e.empty());
  Endpoint delivered;
  // The endpoint X contacted: always admitted.
  EXPECT_EQ(nat.receive(ep("198.51.100.1:3478"), e, &delivered).verdict, Verdict::forward);
  EXPECT_EQ(delivered, x);
  // Same address, another port.
  const Result other_port = nat.receive(ep("198.51.100.1:9999"), e, &delivered);
  // Another address.
  const Result other_address = nat.receive(ep("192.0.2.77:3478"), e, &delivered);
  switch (filtering) {
    case Filtering::endpoint_independent:
      EXPECT_EQ(other_port.verdict, Verdict::forward);
      EXPECT_EQ(other_address.verdict, Verdict::forward);
      EXPECT_EQ(delivered, x);
      break;
    case Filtering::address_dependent:
      EXPECT_EQ(other_port.verdict, Verdict::forward);
      EXPECT_EQ(other_address.reason, DropReason::filtered);
      break;
    case Filtering::address_and_port_dependent:
      EXPECT_EQ(other_port.reason, DropReason::filtered);
      EXPECT_EQ(other_address.reason, DropReason::filtered);
      break;
  }
  // Nobody holds this port: no mapping, whatever the filtering.
  EXPECT_EQ(nat.receive(ep("198.51.100.1:3478"), ep("203.0.113.1:6000")).reason,
            DropReason::no_mapping);
  const Stats s = nat.engine.stats();
  EXPECT_EQ(s.inbound_packets, s.forwarded_inbound + s.dropped_inbound + s.replied_inbound);
}

INSTANTIATE_TEST_SUITE_P(AllNine, NatBehaviour, knit::testing::all_nine_behaviours(), knit::testing::behaviour_name);

TEST(NatPorts, Rfc4787Sec421PortPreservationWhenFree) {
  Nat nat(make_config(Mapping::endpoint_independent, Filtering::address_and_port_dependent));
  EXPECT_EQ(nat.send(ep("10.0.0.2:41641"), ep("198.51.100.1:3478")).port(), 41641);
  EXPECT_EQ(nat.send(ep("10.0.0.3:41642"), ep("198.51.100.1:3478")).port(), 41642);
}

TEST(NatPorts, Rfc4787Req1ClashPicksAnotherPortStillEndpointIndependent) {
  Nat nat(make_config(Mapping::endpoint_independent, Filtering::address_and_port_dependent));
  const Endpoint a = nat.send(ep("10.0.0.2:5000"), ep("198.51.100.1:3478"));
  const Endpoint b = nat.send(ep("10.0.0.3:5000"), ep("198.51.100.1:3478"));
  EXPECT_EQ(a.port(), 5000);
  EXPECT_NE(b.port(), 5000);
  EXPECT_GE(b.port(), 1024);
  // The clashing host's mapping is still endpoint-independent.
  EXPECT_EQ(nat.send(ep("10.0.0.3:5000"), ep("192.0.2.9:53")), b);
}

TEST(NatPorts, Rfc4787Req3NoPortOverloading) {
  // 3000 hosts, one source port: 3000 distinct external ports, each reply to its own host.
  Nat nat(make_config(Mapping::endpoint_independent, Filtering::endpoint_independent));
  std::set<std::uint16_t> ports;
  std::map<std::uint16_t, Endpoint> owner;
  for (std::uint32_t i = 0; i < 3000; ++i) {
    const Endpoint host(IpAddress::v4(0x0a000000 + 2 + i), 4500);
    const Endpoint e = nat.send(host, ep("198.51.100.1:3478"));
    ASSERT_FALSE(e.empty());
    EXPECT_TRUE(ports.insert(e.port()).second) << "port " << e.port() << " handed out twice";
    owner[e.port()] = host;
  }
  for (const auto& [port, host] : owner) {
    Endpoint delivered;
    ASSERT_EQ(
        nat.receive(ep("198.51.100.1:3478"), Endpoint(ip("203.0.113.1"), port), &delivered).verdict,
        Verdict::forward);
    ASSERT_EQ(delivered, host);
  }
}

TEST(NatPorts, Rfc4787Req3aWellKnownPortsStayBelow1024) {
  Nat nat(make_config(Mapping::endpoint_independent, Filtering::endpoint_independent));
  EXPECT_EQ(nat.send(ep("10.0.0.2:53"), ep("198.51.100.1:53")).port(), 53);
  for (std::uint32_t i = 0; i < 200; ++i) {
    const Endpoint e = nat.send(Endpoint(IpAddress::v4(0x0a000100 + i), 53), ep("198.51.100.1:53"));
    ASSERT_FALSE(e.empty());
    EXPECT_GE(e.port(), 1);
    EXPECT_LE(e.port(), 1023);
    // And the other way: a high port never maps below 1024.
    const Endpoint h =
        nat.send(Endpoint(IpAddress::v4(0x0a000100 + i), 1024), ep("198.51.100.1:53"));
    EXPECT_GE(h.port(), 1024);
  }
}

TEST(NatPorts, Rfc4787Req4PortParityKept) {
  Nat nat(make_config(Mapping::endpoint_independent, Filtering::endpoint_independent));
  for (std::uint32_t i = 0; i < 300; ++i) {
    const std::uint16_t port = static_cast<std::uint16_t>(5000 + (i & 1));  // clash on 5000/5001
    const Endpoint e =
        nat.send(Endpoint(IpAddress::v4(0x0a000200 + i), port), ep("198.51.100.1:7"));
    ASSERT_FALSE(e.empty());
    EXPECT_EQ(e.port() & 1, port & 1) << "host " << i;
  }
}

TEST(NatPorts, ConfiguredPortRangeHonoured) {
  Config c = make_config(Mapping::address_and_port_dependent, Filtering::endpoint_independent);
  c.port_min = 20000;
  c.port_max = 20099;
  Nat nat(c);
  // Inside the range: preserved; outside: moved into it.
  EXPECT_EQ(nat.send(ep("10.0.0.2:20050"), ep("198.51.100.1:1")).port(), 20050);
  std::set<std::uint16_t> seen;
  for (std::uint16_t y = 1; y <= 99; ++y) {
    const Endpoint e = nat.send(ep("10.0.0.2:5000"), Endpoint(ip("198.51.100.1"), y));
    ASSERT_FALSE(e.empty()) << y;
    EXPECT_GE(e.port(), 20000);
    EXPECT_LE(e.port(), 20099);
    seen.insert(e.port());
  }
  EXPECT_EQ(seen.size(), 99u);  // every APDM mapping its own port: the range is now full
  Bytes p = make_udp(ep("10.0.0.2:5000"), ep("198.51.100.1:100"));
  std::array<std::uint8_t, kIcmpErrorMaxSize> reply{};
  const Result r = nat.engine.outbound(nat.now, p, reply);
  EXPECT_EQ(r.reason, DropReason::ports_exhausted);
}

TEST(NatPorts, Rfc4787Req2PairedAddressPooling) {
  Config c = make_config(Mapping::address_and_port_dependent, Filtering::endpoint_independent);
  c.external_addresses = {ip("203.0.113.1"), ip("203.0.113.2"), ip("203.0.113.3"),
                          ip("203.0.113.4")};
  Nat nat(c);
  std::set<IpAddress> used;
  for (std::uint32_t host = 0; host < 64; ++host) {
    std::set<IpAddress> of_host;
    for (std::uint16_t flow = 0; flow < 20; ++flow) {
      const Endpoint e = nat.send(Endpoint(IpAddress::v4(0x0a000300 + host), 6000 + flow),
                                  Endpoint(IpAddress::v4(0xc6336400 + flow), 443));
      ASSERT_FALSE(e.empty());
      of_host.insert(e.address());
    }
    Bytes ping = make_icmp_query(IpAddress::v4(0x0a000300 + host), ip("198.51.100.9"),
                                 kIcmpEchoRequest, 9, 1);
    ASSERT_EQ(nat.engine.outbound(nat.now, ping).verdict, Verdict::forward);
    of_host.insert(summarize(ping).source.address());
    EXPECT_EQ(of_host.size(), 1u) << "host " << host << " got several external addresses";
    used.insert(*of_host.begin());
  }
  EXPECT_GT(used.size(), 1u);  // and the pool is actually shared out
}

TEST(NatPorts, Rfc4787Req11DeterministicForOneSeed) {
  auto run = [](std::uint64_t seed) {
    Nat nat(make_config(Mapping::address_and_port_dependent, Filtering::endpoint_independent),
            seed);
    std::vector<std::uint16_t> ports;
    for (std::uint16_t y = 1; y < 50; ++y)
      ports.push_back(nat.send(ep("10.0.0.2:5000"), Endpoint(ip("198.51.100.1"), y)).port());
    return ports;
  };
  EXPECT_EQ(run(42), run(42));
  EXPECT_NE(run(42), run(43));  // clashes are resolved unpredictably (RFC 6056)
}

TEST(NatPorts, PreservationOffRandomises) {
  Config c = make_config(Mapping::endpoint_independent, Filtering::endpoint_independent);
  c.port_preservation = false;
  Nat nat(c);
  int preserved = 0;
  for (std::uint32_t i = 0; i < 50; ++i)
    if (nat.send(Endpoint(IpAddress::v4(0x0a000400 + i), 30000), ep("198.51.100.1:1")).port() ==
        30000)
      ++preserved;
  EXPECT_LE(preserved, 1);
}

}  // namespace
}  // namespace knit::nat
