// Which local addresses are reported to the coordinator as endpoints.
#include <gtest/gtest.h>

#include "agent/local_endpoints.hpp"

namespace knit::agent {
namespace {

InterfaceAddress at(const char* interface, const char* prefix, bool loopback = false) {
  return InterfaceAddress{interface, IpPrefix::parse(prefix).value(), loopback};
}

TEST(LocalEndpoints, ReportsUsableAddressesIpv4First) {
  const std::vector<InterfaceAddress> addresses = {
      at("lo", "127.0.0.1/8", true),
      at("lo", "::1/128", true),
      at("eth0", "2001:db8::5/64"),
      at("eth0", "fe80::1/64"),
      at("eth0", "192.168.1.5/24"),
      at("eth1", "fd00:1::5/64"),
      at("eth1", "169.254.3.3/16"),
      at("knit0", "100.64.0.1/32"),
      at("other", "100.64.0.9/32"),
      at("eth2", "10.0.0.5/8"),
      at("eth2", "10.0.0.5/8"),  // listed twice
  };
  auto got = endpoints_to_report(addresses, 41641, "knit0", {IpPrefix::parse("100.64.0.0/10").value()}, 64);
  std::vector<std::string> text;
  for (const auto& e : got) text.push_back(e.to_string());
  EXPECT_EQ(text, (std::vector<std::string>{"192.168.1.5:41641", "10.0.0.5:41641", "[2001:db8::5]:41641",
                                            "[fd00:1::5]:41641"}));
  EXPECT_EQ(endpoints_to_report(addresses, 41641, "knit0", {}, 2).size(), 2u);
}

TEST(LocalEndpoints, PrefixContains) {
  auto p = [](const char* t) { return IpPrefix::parse(t).value(); };
  auto a = [](const char* t) { return IpAddress::parse(t).value(); };
  EXPECT_TRUE(prefix_contains(p("100.64.0.0/10"), a("100.127.255.255")));
  EXPECT_FALSE(prefix_contains(p("100.64.0.0/10"), a("100.128.0.0")));
  EXPECT_TRUE(prefix_contains(p("0.0.0.0/0"), a("1.2.3.4")));
  EXPECT_FALSE(prefix_contains(p("0.0.0.0/0"), a("::1")));
  EXPECT_TRUE(prefix_contains(p("fd7a:115c:a1e0::/48"), a("fd7a:115c:a1e0:ffff::1")));
  EXPECT_FALSE(prefix_contains(p("fd7a:115c:a1e0::/48"), a("fd7a:115c:a1e1::1")));
  EXPECT_TRUE(prefix_contains(p("192.168.1.5/32"), a("192.168.1.5")));
  EXPECT_FALSE(prefix_contains(p("192.168.1.5/32"), a("192.168.1.6")));
}

TEST(LocalEndpoints, ThisHostHasALoopback) {
  bool loopback = false;
  for (const auto& address : interface_addresses()) loopback = loopback || address.loopback;
  EXPECT_TRUE(loopback);
}

}  // namespace
}  // namespace knit::agent
