// The default gateway from /proc/net/route text (sample lines as the kernel prints them).
#include <gtest/gtest.h>

#include <bit>
#include <cstdio>
#include <fstream>

#include "punch/portmap/gateway.hpp"

namespace knit::punch {
namespace {

constexpr const char* kHeader =
    "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n";

// The kernel prints addresses as host-order hex of the network-order bytes.
std::string hex_of(const char* dotted) {
  const auto a = IpAddress::parse(dotted);
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) {
    if constexpr (std::endian::native == std::endian::little) v |= std::uint32_t{a->bytes()[i]} << (8 * i);
    else v |= std::uint32_t{a->bytes()[i]} << (24 - 8 * i);
  }
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08X", v);
  return buf;
}

TEST(PortMapGateway, TypicalHomeHost) {
  const std::string text = std::string(kHeader) +
      "eth0\t00000000\t" + hex_of("192.168.1.1") + "\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
      "eth0\t" + hex_of("192.168.1.0") + "\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n";
  const auto g = parse_proc_net_route(text);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->interface, "eth0");
  EXPECT_EQ(g->address.to_string(), "192.168.1.1");
  EXPECT_EQ(g->metric, 100u);
}

TEST(PortMapGateway, KernelSampleBytes) {
  // Verbatim from an x86-64 host: default via 10.0.2.2 dev enp0s3.
  const std::string text = std::string(kHeader) +
      "enp0s3\t00000000\t0202000A\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
  if constexpr (std::endian::native == std::endian::little) {
    ASSERT_TRUE(parse_proc_net_route(text));
    EXPECT_EQ(parse_proc_net_route(text)->address.to_string(), "10.0.2.2");
  }
}

TEST(PortMapGateway, LowestMetricWins) {
  const std::string text = std::string(kHeader) +
      "wlan0\t00000000\t" + hex_of("10.9.0.1") + "\t0003\t0\t0\t600\t00000000\t0\t0\t0\n"
      "eth0\t00000000\t" + hex_of("10.8.0.1") + "\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"
      "eth1\t00000000\t" + hex_of("10.7.0.1") + "\t0003\t0\t0\t100\t00000000\t0\t0\t0\n";
  const auto g = parse_proc_net_route(text);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->interface, "eth0");
  EXPECT_EQ(g->address.to_string(), "10.8.0.1");
}

TEST(PortMapGateway, IgnoresWhatIsNotADefaultRouteViaAGateway) {
  const std::string text = std::string(kHeader) +
      // down (no RTF_UP)
      "eth0\t00000000\t" + hex_of("10.0.0.1") + "\t0002\t0\t0\t0\t00000000\t0\t0\t0\n"
      // a default route without a gateway (point-to-point, e.g. a VPN device)
      "tun0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n"
      // not a default route
      "eth1\t" + hex_of("10.1.0.0") + "\t" + hex_of("10.1.0.1") + "\t0003\t0\t0\t0\t0000FFFF\t0\t0\t0\n"
      // garbage
      "eth2\tzzzzzzzz\t" + hex_of("10.2.0.1") + "\t0003\t0\t0\t0\t00000000\t0\t0\t0\n"
      "eth3\t00000000\n"
      "\n";
  EXPECT_FALSE(parse_proc_net_route(text));
  EXPECT_FALSE(parse_proc_net_route(""));
  EXPECT_FALSE(parse_proc_net_route(kHeader));
}

TEST(PortMapGateway, ReadsAFile) {
  const std::string path = ::testing::TempDir() + "/portmap_route_sample";
  {
    std::ofstream out(path);
    out << kHeader << "veth0\t00000000\t" << hex_of("10.44.0.1")
        << "\t0003\t0\t0\t0\t00000000\t0\t0\t0\n";
  }
  const auto g = read_default_gateway(path);
  ASSERT_TRUE(g);
  EXPECT_EQ(g->address.to_string(), "10.44.0.1");
  EXPECT_FALSE(read_default_gateway(path + ".missing"));
  std::remove(path.c_str());
}

}  // namespace
}  // namespace knit::punch
