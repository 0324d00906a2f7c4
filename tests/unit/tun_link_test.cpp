// LinkConfig against the real kernel, on TUN links. Every test runs in a fresh network namespace
// of its own (unshare(CLONE_NEWNET) in SetUp, back to the original in TearDown), so the host's
// network is never touched.
//
//   [ private netns ]  lo (down)   knitlink0 (TUN, ours)   knitlink1 (TUN, for clashes)
//
// Routes are checked twice: by a netlink dump (LinkConfig::routes) and by the kernel's route
// lookup itself (a UDP connect() fails with ENETUNREACH when no route covers the address).
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>

#include "base/ip.hpp"
#include "tests/support/private_netns.hpp"
#include "tun/link_config.hpp"
#include "tun/tun_device.hpp"

namespace knit::tun {
namespace {

using knit::testing::PrivateNetns;

// Made inside the namespace, after PrivateNetns::SetUp.
class LinkConfigTest : public PrivateNetns {
 protected:
  void SetUp() override {
    PrivateNetns::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    device_.emplace(TunDevice::open({.name = kName}));
    links_.emplace();
  }
  void TearDown() override {
    links_.reset();
    device_.reset();
    PrivateNetns::TearDown();
  }

  static constexpr const char* kName = "knitlink0";
  std::optional<TunDevice> device_;
  std::optional<LinkConfig> links_;
};

IpPrefix prefix(const char* text) { return IpPrefix::parse(text).value(); }

bool contains(const std::vector<IpPrefix>& list, const IpPrefix& wanted) {
  return std::find(list.begin(), list.end(), wanted) != list.end();
}

// 0 when the kernel has a route to address, else the errno of a UDP connect() to it.
int route_lookup(const char* address) {
  const bool v6 = std::strchr(address, ':') != nullptr;
  const int sock = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock < 0) return errno;
  int result = 0;
  if (v6) {
    sockaddr_in6 to{};
    to.sin6_family = AF_INET6;
    to.sin6_port = htons(9);
    ::inet_pton(AF_INET6, address, &to.sin6_addr);
    if (::connect(sock, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) result = errno;
  } else {
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(9);
    ::inet_pton(AF_INET, address, &to.sin_addr);
    if (::connect(sock, reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) result = errno;
  }
  ::close(sock);
  return result;
}

std::error_code errno_code(int value) { return {value, std::system_category()}; }

TEST_F(LinkConfigTest, MtuRoundTrip) {
  EXPECT_EQ(links_->mtu(kName), 1500);  // a new TUN's default
  ASSERT_FALSE(links_->set_mtu(kName, 1280));
  EXPECT_EQ(links_->mtu(kName), 1280);
  ASSERT_FALSE(links_->set_mtu(kName, 1420));
  EXPECT_EQ(links_->mtu(kName), 1420);
  EXPECT_EQ(links_->set_mtu(kName, 10), errno_code(EINVAL));  // below IPv4's minimum of 68
  EXPECT_EQ(links_->set_mtu(kName, 0), errno_code(EINVAL));
  EXPECT_EQ(links_->mtu(kName), 1420);
}

TEST_F(LinkConfigTest, SetUpAndDown) {
  EXPECT_EQ(links_->is_up(kName), false);
  ASSERT_FALSE(links_->set_up(kName, true));
  EXPECT_EQ(links_->is_up(kName), true);
  ASSERT_FALSE(links_->set_up(kName, false));
  EXPECT_EQ(links_->is_up(kName), false);
}

TEST_F(LinkConfigTest, AddsAndRemovesIpv4Addresses) {
  const auto first = prefix("10.99.0.1/24");
  const auto second = prefix("10.98.7.9/32");
  ASSERT_FALSE(links_->add_address(kName, first));
  ASSERT_FALSE(links_->add_address(kName, second));
  EXPECT_FALSE(links_->add_address(kName, first));  // already present: success
  auto present = links_->addresses(kName);
  EXPECT_EQ(std::count(present.begin(), present.end(), first), 1);
  EXPECT_TRUE(contains(present, second));

  ASSERT_FALSE(links_->remove_address(kName, first));
  present = links_->addresses(kName);
  EXPECT_FALSE(contains(present, first));
  EXPECT_TRUE(contains(present, second));
  EXPECT_EQ(links_->remove_address(kName, first), errno_code(EADDRNOTAVAIL));
}

TEST_F(LinkConfigTest, AddsAndRemovesIpv6Addresses) {
  const auto address = prefix("fd99::1/64");
  ASSERT_FALSE(links_->add_address(kName, address));
  EXPECT_FALSE(links_->add_address(kName, address));  // already present: success
  ASSERT_FALSE(links_->set_up(kName, true));
  auto present = links_->addresses(kName);
  EXPECT_EQ(std::count(present.begin(), present.end(), address), 1);

  ASSERT_FALSE(links_->remove_address(kName, address));
  EXPECT_FALSE(contains(links_->addresses(kName), address));
  EXPECT_TRUE(links_->remove_address(kName, address));
}

TEST_F(LinkConfigTest, AddressPrefixRouteFollowsTheAddress) {
  ASSERT_FALSE(links_->set_up(kName, true));
  ASSERT_FALSE(links_->add_address(kName, prefix("10.99.0.1/24")));
  EXPECT_TRUE(contains(links_->routes(kName), prefix("10.99.0.0/24")));
  ASSERT_FALSE(links_->remove_address(kName, prefix("10.99.0.1/24")));
  EXPECT_FALSE(contains(links_->routes(kName), prefix("10.99.0.0/24")));
}

TEST_F(LinkConfigTest, AddsAndRemovesIpv4Routes) {
  ASSERT_FALSE(links_->set_up(kName, true));
  ASSERT_FALSE(links_->add_address(kName, prefix("10.99.0.1/24")));
  EXPECT_EQ(route_lookup("10.77.1.1"), ENETUNREACH);

  ASSERT_FALSE(links_->add_route(kName, prefix("10.77.0.0/16")));
  EXPECT_TRUE(contains(links_->routes(kName), prefix("10.77.0.0/16")));
  EXPECT_EQ(route_lookup("10.77.1.1"), 0);
  EXPECT_FALSE(links_->add_route(kName, prefix("10.77.0.0/16")));  // twice: success
  EXPECT_FALSE(links_->add_route(kName, prefix("10.77.3.4/16")));  // host bits are cleared

  ASSERT_FALSE(links_->remove_route(kName, prefix("10.77.0.0/16")));
  EXPECT_FALSE(contains(links_->routes(kName), prefix("10.77.0.0/16")));
  EXPECT_EQ(route_lookup("10.77.1.1"), ENETUNREACH);
  EXPECT_EQ(links_->remove_route(kName, prefix("10.77.0.0/16")), errno_code(ESRCH));
}

TEST_F(LinkConfigTest, AddsAndRemovesIpv6AndDefaultRoutes) {
  ASSERT_FALSE(links_->set_up(kName, true));
  ASSERT_FALSE(links_->add_address(kName, prefix("fd99::1/64")));
  EXPECT_EQ(route_lookup("fd77::5"), ENETUNREACH);

  ASSERT_FALSE(links_->add_route(kName, prefix("fd77::/48")));
  EXPECT_FALSE(links_->add_route(kName, prefix("fd77::/48")));
  EXPECT_TRUE(contains(links_->routes(kName), prefix("fd77::/48")));
  EXPECT_EQ(route_lookup("fd77::5"), 0);
  ASSERT_FALSE(links_->remove_route(kName, prefix("fd77::/48")));
  EXPECT_FALSE(contains(links_->routes(kName), prefix("fd77::/48")));
  EXPECT_EQ(route_lookup("fd77::5"), ENETUNREACH);

  ASSERT_FALSE(links_->add_address(kName, prefix("10.99.0.1/24")));
  ASSERT_FALSE(links_->add_route(kName, prefix("0.0.0.0/0")));
  EXPECT_TRUE(contains(links_->routes(kName), prefix("0.0.0.0/0")));
  EXPECT_EQ(route_lookup("192.0.2.1"), 0);
  ASSERT_FALSE(links_->remove_route(kName, prefix("0.0.0.0/0")));
  EXPECT_EQ(route_lookup("192.0.2.1"), ENETUNREACH);
}

TEST_F(LinkConfigTest, RouteDumpSpanningManyDatagramsIsComplete) {
  ASSERT_FALSE(links_->set_up(kName, true));
  constexpr int kCount = 600;  // tens of kilobytes of dump: several datagrams
  for (int i = 0; i < kCount; ++i) {
    const std::string route = "10.50." + std::to_string(i / 256) + "." + std::to_string(i % 256) + "/32";
    ASSERT_FALSE(links_->add_route(kName, IpPrefix::parse(route).value())) << route;
  }
  const auto present = links_->routes(kName);
  const auto ours = std::count_if(present.begin(), present.end(), [](const IpPrefix& p) {
    return p.address.is_v4() && p.length == 32 && p.address.bytes()[0] == 10 && p.address.bytes()[1] == 50;
  });
  EXPECT_EQ(ours, kCount);
}

TEST_F(LinkConfigTest, RouteThroughAnotherInterfaceIsNotOurs) {
  auto other = TunDevice::open({.name = "knitlink1"});
  ASSERT_FALSE(links_->set_up(kName, true));
  ASSERT_FALSE(links_->set_up(other.name(), true));
  ASSERT_FALSE(links_->add_route(other.name(), prefix("10.77.0.0/16")));
  EXPECT_EQ(links_->add_route(kName, prefix("10.77.0.0/16")), errno_code(EEXIST));
  EXPECT_FALSE(contains(links_->routes(kName), prefix("10.77.0.0/16")));
  // Removing it through our interface does not remove the other interface's route.
  EXPECT_EQ(links_->remove_route(kName, prefix("10.77.0.0/16")), errno_code(ESRCH));
  EXPECT_TRUE(contains(links_->routes(other.name()), prefix("10.77.0.0/16")));
}

TEST_F(LinkConfigTest, RouteNeedsTheLinkUp) {
  EXPECT_EQ(links_->add_route(kName, prefix("10.77.0.0/16")), errno_code(ENETDOWN));
}

TEST_F(LinkConfigTest, DeletesALink) {
  ASSERT_FALSE(links_->delete_link(kName));
  EXPECT_FALSE(links_->ifindex(kName));
  EXPECT_EQ(links_->delete_link(kName), errno_code(ENODEV));
  device_.reset();  // closing the fds of a deleted interface is harmless
}

TEST_F(LinkConfigTest, UnknownInterfacesAreErrorCodes) {
  const std::string missing = "nosuch0";
  const auto enodev = errno_code(ENODEV);
  EXPECT_EQ(links_->set_up(missing, true), enodev);
  EXPECT_EQ(links_->set_mtu(missing, 1280), enodev);
  EXPECT_EQ(links_->add_address(missing, prefix("10.99.0.1/24")), enodev);
  EXPECT_EQ(links_->remove_address(missing, prefix("10.99.0.1/24")), enodev);
  EXPECT_EQ(links_->add_route(missing, prefix("10.77.0.0/16")), enodev);
  EXPECT_EQ(links_->remove_route(missing, prefix("10.77.0.0/16")), enodev);
  EXPECT_EQ(links_->delete_link(missing), enodev);
  EXPECT_FALSE(links_->ifindex(missing));
  EXPECT_FALSE(links_->mtu(missing));
  EXPECT_FALSE(links_->is_up(missing));
  EXPECT_TRUE(links_->addresses(missing).empty());
  EXPECT_TRUE(links_->routes(missing).empty());

  const auto einval = errno_code(EINVAL);
  EXPECT_EQ(links_->set_up("", true), einval);
  EXPECT_EQ(links_->set_up("a-name-far-too-long", true), einval);
  EXPECT_EQ(links_->add_address(kName, IpPrefix{IpAddress::parse("10.0.0.1").value(), 33}), einval);
  EXPECT_EQ(links_->add_route(kName, IpPrefix{IpAddress::parse("fd00::").value(), 129}), einval);
}

}  // namespace
}  // namespace knit::tun
