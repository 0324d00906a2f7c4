// How the human status table reads, and the ICMP echo codec `knit ping` uses.
#include <gtest/gtest.h>

#include "base/checksum.hpp"
#include "cli/format.hpp"
#include "cli/ping.hpp"

namespace knit::cli {
namespace {

TEST(CliFormat, Units) {
  EXPECT_EQ(format_bytes(0), "0 B");
  EXPECT_EQ(format_bytes(1023), "1023 B");
  EXPECT_EQ(format_bytes(1536), "1.50 KiB");
  EXPECT_EQ(format_bytes(20 * 1024 * 1024), "20.0 MiB");
  const WallTime now = WallTime{} + 100000s;
  EXPECT_EQ(format_age(std::nullopt, now), "never");
  EXPECT_EQ(format_age(100000, now), "just now");
  EXPECT_EQ(format_age(100000 - 12, now), "12s ago");
  EXPECT_EQ(format_age(100000 - 600, now), "10m ago");
  EXPECT_EQ(format_age(100000 - 3 * 3600, now), "3h ago");
  EXPECT_EQ(format_age(100000 - 3 * 86400, now), "3d ago");
  EXPECT_EQ(format_rtt(std::nullopt), "-");
  EXPECT_EQ(format_rtt(0.4234), "0.42 ms");
  EXPECT_EQ(format_rtt(12.34), "12.3 ms");
  EXPECT_EQ(format_rtt(123.4), "123 ms");
}

TEST(CliFormat, StatusTable) {
  localapi::StatusReply reply;
  reply.status.self.name = "host-a";
  reply.status.self.ipv4 = IpAddress::parse("100.64.0.1").value();
  reply.status.self.endpoints = {Endpoint::parse("192.0.2.1:41641").value()};
  localapi::PeerStatus b;
  b.name = "host-b";
  b.ipv4 = IpAddress::parse("100.64.0.2").value();
  b.online = true;
  b.path = localapi::PathKind::direct;
  b.endpoint = Endpoint::parse("192.0.2.2:41641");
  b.last_handshake = 99990;
  b.rx_bytes = 2048;
  b.tx_bytes = 100;
  localapi::PeerStatus c;
  c.name = "c";
  c.ipv4 = IpAddress::parse("100.64.0.30").value();
  reply.status.peers = {b, c};
  reply.coordinator.state = "connected";
  const std::string text = format_status(reply, WallTime{} + 100000s);
  EXPECT_EQ(text,
            "100.64.0.1   host-a  self    192.0.2.1:41641\n"
            "100.64.0.2   host-b  direct  192.0.2.2:41641  rtt -  handshake 10s ago  rx 2.00 KiB  tx 100 B\n"
            "100.64.0.30  c       none    -                rtt -  handshake never    rx 0 B       tx 0 B    offline\n");
  reply.coordinator = {"waiting", "", "cannot reach the coordinator at 192.0.2.9:443: connection refused"};
  EXPECT_NE(format_status(reply, WallTime{}).find(
                "# coordinator: waiting (cannot reach the coordinator at 192.0.2.9:443: connection refused)"),
            std::string::npos);
}

// A route several peers carry: which one is used and why not the others (route failover).
TEST(CliFormat, RouteCarriers) {
  localapi::StatusReply reply;
  reply.status.self.name = "host-a";
  reply.status.self.ipv4 = IpAddress::parse("100.64.0.1").value();
  reply.coordinator.state = "connected";
  localapi::RouteSettingsStatus routes;
  routes.accept = true;
  routes.carriers = {
      localapi::RouteCarrierStatus{IpPrefix::parse("10.77.0.0/24").value(), "r2",
                                   {localapi::RouteCarrierCandidate{"r1", {}, "down", "no answer for 4.4 s", 4400},
                                    localapi::RouteCarrierCandidate{"r2", {}, "active", "", 120},
                                    localapi::RouteCarrierCandidate{"r3", {}, "offline", "offline at the coordinator", {}}}},
      // One carrier only: its peer row says it already.
      localapi::RouteCarrierStatus{IpPrefix::parse("10.88.0.0/24").value(), "r1",
                                   {localapi::RouteCarrierCandidate{"r1", {}, "active", "", {}}}}};
  reply.status.self.routes = routes;
  const std::string text = format_status(reply, WallTime{});
  EXPECT_NE(text.find("# route 10.77.0.0/24 via r2 (r1: down, no answer for 4.4 s; r3: offline)\n"),
            std::string::npos)
      << text;
  EXPECT_EQ(text.find("# route 10.88.0.0/24"), std::string::npos);
}

// An exit node's `# routes:` line: translation of both families, with no subnet advertised.
TEST(CliFormat, ExitNodeSnatFamilies) {
  localapi::StatusReply reply;
  reply.status.self.name = "exit";
  reply.status.self.ipv4 = IpAddress::parse("100.64.0.1").value();
  reply.coordinator.state = "connected";
  localapi::RouteSettingsStatus routes;
  routes.exit_node = true;
  localapi::SnatStatus snat;
  snat.active = true;
  snat.egress = {{"0.0.0.0/0", "198.51.100.1"}, {"::/0", "2001:db8:100::1"}};
  snat.counters = {{"sessions", 3}};
  routes.snat = snat;
  reply.status.self.routes = routes;
  std::string text = format_status(reply, WallTime{});
  EXPECT_NE(text.find("# routes: advertising none, exit node, accept-routes false, snat on (IPv4 and IPv6, 3 sessions)\n"),
            std::string::npos)
      << text;
  reply.status.self.routes->snat->egress.erase("::/0");
  text = format_status(reply, WallTime{});
  EXPECT_NE(text.find("snat on (IPv4, 3 sessions)"), std::string::npos) << text;
  reply.status.self.routes->snat->active = false;
  text = format_status(reply, WallTime{});
  EXPECT_NE(text.find("exit node, accept-routes false, snat not active\n"), std::string::npos) << text;
}

TEST(IcmpEcho, RequestAndReply) {
  const std::string data = "abc";
  const ByteSpan payload(reinterpret_cast<const std::uint8_t*>(data.data()), data.size());
  Bytes v4 = make_echo_request(false, 0x1234, 7, payload);
  ASSERT_EQ(v4.size(), 11u);
  EXPECT_EQ(v4[0], 8);
  EXPECT_EQ(internet_checksum(v4), 0);  // a correct checksum sums to zero
  EXPECT_EQ(make_echo_request(true, 1, 2, payload)[0], 128);

  // A reply is the request with type 0 (v4) / 129 (v6).
  Bytes reply = v4;
  reply[0] = 0;
  EXPECT_TRUE(is_echo_reply(reply, false, false, true, 0x1234, 7));
  EXPECT_FALSE(is_echo_reply(reply, false, false, true, 0x1234, 8));
  EXPECT_FALSE(is_echo_reply(reply, false, false, true, 0x9999, 7));
  EXPECT_TRUE(is_echo_reply(reply, false, false, false, 0x9999, 7));  // a ping socket's id is the kernel's
  EXPECT_FALSE(is_echo_reply(v4, false, false, true, 0x1234, 7));     // our own request
  // Behind an IPv4 header (raw sockets).
  Bytes with_header(20, 0);
  with_header[0] = 0x45;
  with_header.insert(with_header.end(), reply.begin(), reply.end());
  EXPECT_TRUE(is_echo_reply(with_header, false, true, true, 0x1234, 7));
  with_header[0] = 0x4f;  // header claims 60 bytes
  EXPECT_FALSE(is_echo_reply(with_header, false, true, true, 0x1234, 7));
  EXPECT_FALSE(is_echo_reply(Bytes{}, false, true, true, 0, 0));
  EXPECT_FALSE(is_echo_reply(Bytes{0, 0, 0}, false, false, false, 0, 0));
  Bytes v6 = make_echo_request(true, 5, 6, payload);
  v6[0] = 129;
  EXPECT_TRUE(is_echo_reply(v6, true, false, true, 5, 6));
}

}  // namespace
}  // namespace knit::cli
