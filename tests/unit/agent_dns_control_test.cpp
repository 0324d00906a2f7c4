// The rules of agent/dns_control.hpp that need no host: where the IPv6 resolver address comes
// from, and which --resolver-address values a mesh can use.
#include <gtest/gtest.h>

#include "agent/dns_control.hpp"

namespace knit::agent {
namespace {

IpAddress ip(const char* text) { return IpAddress::parse(text).value(); }
IpPrefix prefix(const char* text) { return IpPrefix::parse(text).value(); }

TEST(DnsControl, Ipv6ResolverIsTheUlaWithTheIpv4AsItsLast32Bits) {
  EXPECT_EQ(resolver_ipv6(prefix("fd7a:115c:a1e0::/48"), ip("100.100.100.100")), ip("fd7a:115c:a1e0::6464:6464"));
  EXPECT_EQ(resolver_ipv6(prefix("fd00:1:2::/48"), ip("10.99.0.53")), ip("fd00:1:2::a63:35"));
}

TEST(DnsControl, ResolverAddressInsideTheMeshPrefixIsRefusedUnlessReserved) {
  // The default is inside the default prefix, and the coordinator never hands it out.
  EXPECT_EQ(resolver_address_problem(ip("100.100.100.100"), prefix("100.64.0.0/10")), "");
  // Outside the prefix: routed into the TUN on its own, never a node's.
  EXPECT_EQ(resolver_address_problem(ip("100.100.100.53"), prefix("10.77.0.0/16")), "");
  EXPECT_EQ(resolver_address_problem(ip("192.0.2.53"), prefix("100.64.0.0/10")), "");
  // Inside, not reserved: a node may hold it.
  const std::string why = resolver_address_problem(ip("100.100.100.53"), prefix("100.64.0.0/10"));
  EXPECT_NE(why.find("inside the mesh prefix 100.64.0.0/10"), std::string::npos) << why;
  EXPECT_NE(why.find("--resolver-address"), std::string::npos) << why;
  EXPECT_NE(resolver_address_problem(ip("10.77.0.1"), prefix("10.77.0.0/16")), "");
}

}  // namespace
}  // namespace knit::agent
