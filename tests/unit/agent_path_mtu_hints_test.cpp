// PathMtuHints: what ICMP and the kernel's route cache say of the outer path to an address, as a
// tunnel MTU for the MSS clamp of peers configured through `wg`.
#include <gtest/gtest.h>

#include "agent/path_mtu_hints.hpp"

namespace knit::agent {
namespace {

IpAddress ip(const char* text) { return IpAddress::parse(text).value(); }
Endpoint ep(const char* text) { return Endpoint::parse(text).value(); }

}  // namespace

TEST(AgentPathMtuHints, TunnelMtuIsThePathLessTheOuterHeadersOnWireGuardsPadding) {
  PathMtuHints h;
  const Instant t0{};
  EXPECT_EQ(h.tunnel_mtu(t0, ep("192.0.2.7:51820")), 0u);  // nothing known
  EXPECT_TRUE(h.record_icmp(t0, ip("192.0.2.7"), 1280));
  EXPECT_EQ(h.tunnel_mtu(t0, ep("192.0.2.7:51820")), 1216u);  // 1280 - 60 = 1220, down to 16
  EXPECT_EQ(h.tunnel_mtu(t0, ep("192.0.2.7:9")), 1216u);      // any port of that address
  EXPECT_EQ(h.tunnel_mtu(t0, ep("192.0.2.8:51820")), 0u);
  EXPECT_TRUE(h.record_icmp(t0, ip("2001:db8::7"), 1280));
  EXPECT_EQ(h.tunnel_mtu(t0, ep("[2001:db8::7]:51820")), 1200u);  // 1280 - 80
  // A dual-stack socket reports IPv4 peers as mapped addresses: the same entry.
  EXPECT_FALSE(h.record_icmp(t0, ip("::ffff:192.0.2.7"), 1400));
  EXPECT_EQ(h.tunnel_mtu(t0, ep("[::ffff:192.0.2.7]:51820")), 1216u);
}

TEST(AgentPathMtuHints, IcmpOnlyLowersIsRefusedWhenNonsenseAndExpiresWithTheKernelsCache) {
  PathMtuHints h;
  const Instant t0{};
  EXPECT_TRUE(h.record_icmp(t0, ip("192.0.2.7"), 1400));
  EXPECT_FALSE(h.record_icmp(t0, ip("192.0.2.7"), 1492));  // larger: a refresh, not news
  EXPECT_EQ(h.tunnel_mtu(t0, ep("192.0.2.7:1")), 1328u);
  EXPECT_TRUE(h.record_icmp(t0, ip("192.0.2.7"), 1300));
  EXPECT_EQ(h.tunnel_mtu(t0, ep("192.0.2.7:1")), 1232u);
  EXPECT_FALSE(h.record_icmp(t0, ip("192.0.2.9"), 68));      // legal in RFC 1191, not believed
  EXPECT_FALSE(h.record_icmp(t0, ip("2001:db8::9"), 1200));  // IPv6 paths carry 1280
  EXPECT_EQ(h.size(), 1u);
  const Instant later = t0 + PathMtuHints::kIcmpLifetime;
  EXPECT_EQ(h.tunnel_mtu(later, ep("192.0.2.7:1")), 0u);    // forgotten, as the kernel forgets
  EXPECT_TRUE(h.record_icmp(later, ip("192.0.2.7"), 1500));  // news again once expired
  EXPECT_EQ(h.tunnel_mtu(later, ep("192.0.2.7:1")), 1440u);
}

// What the kernel learned before knitd ran (or knitd missed) comes from its route cache, asked
// at most every kAskInterval; the smaller of that and a live ICMP wins; a path that grew back
// shows when the kernel's answer does.
TEST(AgentPathMtuHints, TheKernelsRouteCacheIsAskedRarelyAndCombinedWithIcmp) {
  PathMtuHints h;
  const Instant t0{};
  const IpAddress a = ip("192.0.2.7");
  EXPECT_TRUE(h.should_ask(t0, a));
  h.record_kernel(t0, a, 1280);
  EXPECT_FALSE(h.should_ask(t0 + std::chrono::seconds(9), a));
  EXPECT_TRUE(h.should_ask(t0 + PathMtuHints::kAskInterval, a));
  EXPECT_EQ(h.tunnel_mtu(t0, ep("192.0.2.7:51820")), 1216u);
  const Instant t1 = t0 + PathMtuHints::kAskInterval;
  h.record_kernel(t1, a, 1500);  // the kernel forgot: the path carries the full size again
  EXPECT_EQ(h.tunnel_mtu(t1, ep("192.0.2.7:51820")), 1440u);
  EXPECT_TRUE(h.record_icmp(t1, a, 1400));  // an ICMP between two questions counts at once
  EXPECT_EQ(h.tunnel_mtu(t1, ep("192.0.2.7:51820")), 1328u);
  h.record_kernel(t1, a, std::nullopt);  // no route: only the ICMP is left
  EXPECT_EQ(h.tunnel_mtu(t1, ep("192.0.2.7:51820")), 1328u);
  h.record_kernel(t1, ip("192.0.2.8"), 60);  // nonsense from anyone: ignored
  EXPECT_EQ(h.tunnel_mtu(t1, ep("192.0.2.8:51820")), 0u);
  EXPECT_FALSE(h.should_ask(t1, ip("::ffff:192.0.2.8")));  // mapped: the same address
}

TEST(AgentPathMtuHints, BoundedTheStalestGoes) {
  PathMtuHints h;
  Instant t{};
  for (std::size_t i = 0; i < PathMtuHints::kMaxEntries + 10; ++i) {
    const std::uint32_t a = 0x0a000000u + static_cast<std::uint32_t>(i);
    ASSERT_TRUE(h.record_icmp(t, IpAddress::v4(a), 1280));
    t += std::chrono::milliseconds(1);
  }
  EXPECT_EQ(h.size(), PathMtuHints::kMaxEntries);
  EXPECT_EQ(h.tunnel_mtu(t, Endpoint(IpAddress::v4(0x0a000000u), 1)), 0u);  // the stalest went
  EXPECT_EQ(h.tunnel_mtu(t, Endpoint(IpAddress::v4(0x0a000000u + PathMtuHints::kMaxEntries + 9), 1)), 1216u);
}

}  // namespace knit::agent
