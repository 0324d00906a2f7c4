// MappingEvidence: what peers' pongs say about our NAT's mapping, on a manual clock. A mapping
// that shows a new port for every destination is symmetric even when one STUN address saw
// nothing; one odd destination (an unfirewalled router's stolen port) is not enough.
#include <gtest/gtest.h>

#include "punch/path/mapping_evidence.hpp"

namespace knit::punch {
namespace {

Endpoint ep(const char* text) { return Endpoint::parse(text).value(); }

TEST(MappingEvidence, TheSamePortEverywhereIsNotVariation) {
  MappingEvidence e;
  const Instant t{};
  e.set_stun(ep("203.0.113.1:41641"));
  e.add(t, ep("198.51.100.1:41641"), ep("203.0.113.1:41641"));
  e.add(t, ep("198.51.100.2:41641"), ep("203.0.113.1:41641"));
  e.add(t, ep("198.51.100.3:41641"), ep("203.0.113.1:41641"));
  EXPECT_FALSE(e.varies(t));
}

TEST(MappingEvidence, ANewPortPerDestinationIsSymmetric) {
  MappingEvidence e;
  const Instant t{};
  e.set_stun(ep("203.0.113.1:1000"));
  e.add(t, ep("198.51.100.1:41641"), ep("203.0.113.1:2000"));
  EXPECT_FALSE(e.varies(t)) << "one odd destination may be a stolen port, not a symmetric NAT";
  e.add(t, ep("198.51.100.2:41641"), ep("203.0.113.1:3000"));
  EXPECT_TRUE(e.varies(t));
}

// A router without a WAN firewall moved one flow, and Linux gives every later flow the moved
// port: peers met afterwards all see it. Two of them at one port that is not STUN's, the newest
// among them: where new flows leave from (remapped); not a symmetric NAT. A third port, or the
// newest observation back at STUN's port, or a single peer: nothing to publish.
TEST(MappingEvidence, AMovedPortSeenByTwoPeersIsARemapNotVariation) {
  MappingEvidence e;
  Instant t{};
  e.set_stun(ep("203.0.113.1:41641"));
  EXPECT_FALSE(e.remapped(t));
  e.add(t, ep("198.51.100.9:41641"), ep("203.0.113.1:41641"));  // a peer from before the move
  t += std::chrono::seconds(1);
  e.add(t, ep("198.51.100.1:41641"), ep("203.0.113.1:61000"));
  EXPECT_FALSE(e.remapped(t)) << "one peer may be the one odd flow";
  t += std::chrono::seconds(1);
  e.add(t, ep("198.51.100.2:41641"), ep("203.0.113.1:61000"));
  EXPECT_FALSE(e.varies(t));
  ASSERT_TRUE(e.remapped(t));
  EXPECT_EQ(*e.remapped(t), ep("203.0.113.1:61000"));
  // The moved flows expired: new flows are back on STUN's port.
  t += std::chrono::seconds(1);
  e.add(t, ep("198.51.100.3:41641"), ep("203.0.113.1:41641"));
  EXPECT_FALSE(e.remapped(t));
  // A third port is a symmetric NAT, not a move.
  t += std::chrono::seconds(1);
  e.add(t, ep("198.51.100.4:41641"), ep("203.0.113.1:62000"));
  EXPECT_TRUE(e.varies(t));
  EXPECT_FALSE(e.remapped(t));
  // Observations age out; without STUN there is nothing to compare with.
  MappingEvidence f;
  f.add(t, ep("198.51.100.1:41641"), ep("203.0.113.1:61000"));
  f.add(t, ep("198.51.100.2:41641"), ep("203.0.113.1:61000"));
  EXPECT_FALSE(f.remapped(t));
  f.set_stun(ep("203.0.113.1:41641"));
  EXPECT_TRUE(f.remapped(t));
  EXPECT_FALSE(f.remapped(t + MappingEvidence::kLifetime + std::chrono::seconds(1)));
}

TEST(MappingEvidence, LanPeersAndOtherAddressesAreJudgedApart) {
  MappingEvidence e;
  const Instant t{};
  e.set_stun(ep("203.0.113.1:41641"));
  // LAN peers see our interface address; a peer over IPv6 sees another address: no variation.
  e.add(t, ep("10.1.0.3:41641"), ep("10.1.0.2:41641"));
  e.add(t, ep("10.1.0.4:41641"), ep("10.1.0.2:41641"));
  e.add(t, ep("[2001:db8::9]:41641"), ep("[2001:db8::2]:41641"));
  e.add(t, ep("198.51.100.1:41641"), ep("203.0.113.1:41641"));
  EXPECT_FALSE(e.varies(t));
}

TEST(MappingEvidence, OneDestinationCountsOnceAndOldEvidenceAgesOut) {
  MappingEvidence e;
  Instant t{};
  e.set_stun(ep("203.0.113.1:1000"));
  // The same peer seen at three ports over time (it roamed): one destination, the newest.
  e.add(t, ep("198.51.100.1:41641"), ep("203.0.113.1:2000"));
  e.add(t, ep("198.51.100.1:41642"), ep("203.0.113.1:3000"));
  e.add(t, ep("198.51.100.1:41643"), ep("203.0.113.1:4000"));
  EXPECT_FALSE(e.varies(t));
  EXPECT_EQ(e.size(), 1u);
  e.add(t, ep("198.51.100.2:41641"), ep("203.0.113.1:5000"));
  EXPECT_TRUE(e.varies(t));
  t += MappingEvidence::kLifetime + std::chrono::seconds(1);
  EXPECT_FALSE(e.varies(t));
  e.clear();
  EXPECT_EQ(e.size(), 0u);
}

TEST(MappingEvidence, Bounded) {
  MappingEvidence e;
  const Instant t{};
  for (int i = 0; i < 1000; ++i) {
    const Endpoint to(IpAddress::v4(0xC6336400u + static_cast<std::uint32_t>(i)), 41641);
    e.add(t, to, ep("203.0.113.1:41641"));
  }
  EXPECT_LE(e.size(), MappingEvidence::kMaxObservations);
  // Nonsense observations are ignored.
  e.add(t, ep("198.51.100.9:1"), Endpoint());
  EXPECT_LE(e.size(), MappingEvidence::kMaxObservations);
}

}  // namespace
}  // namespace knit::punch
