// ProbeSockets' counters: what every probe socket's system calls and error queue reported, kept
// when a socket closes, so knitd's shutdown line (MeshPaths::summary) counts the probe side of a
// whole run. On loopback: a datagram to a closed port comes back as ICMP port unreachable.
#include <gtest/gtest.h>

#include <asio.hpp>

#include <chrono>

#include "agent/probe_sockets.hpp"

namespace knit::agent {
namespace {

using namespace std::chrono_literals;

// A loopback port nobody listens on: bound, then closed.
std::uint16_t closed_port(asio::io_context& io) {
  asio::ip::udp::socket s(io, asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return s.local_endpoint().port();
}

}  // namespace

TEST(AgentProbeSockets, CountersCoverEverySocketAndOutliveItsClosing) {
  asio::io_context io;
  std::size_t received = 0;
  ProbeSockets probes(io, [&](punch::SocketId, const Endpoint&, MutableByteSpan) { ++received; });
  ASSERT_TRUE(probes.open(1, false));
  const Endpoint nobody(IpAddress::parse("127.0.0.1").value(), closed_port(io));
  const Bytes datagram(64, 0x42);
  ASSERT_TRUE(probes.send(1, nobody, datagram));
  probes.flush();
  // The port unreachable makes the socket readable; reading drains it from the error queue.
  for (int i = 0; i < 100 && probes.counters().errqueue_other == 0; ++i) io.run_for(10ms);
  ProbeSockets::Counters c = probes.counters();
  EXPECT_EQ(c.opened, 1u);
  EXPECT_EQ(c.errqueue_other, 1u);
  EXPECT_EQ(c.icmp_too_big, 0u);
  EXPECT_EQ(c.errqueue_malformed, 0u);
  EXPECT_EQ(received, 0u);
  // Closed: what it counted stays; a second socket adds to it.
  probes.close(1);
  EXPECT_EQ(probes.size(), 0u);
  EXPECT_EQ(probes.counters().errqueue_other, 1u);
  ASSERT_TRUE(probes.open(2, false));
  ASSERT_TRUE(probes.send(2, nobody, datagram));
  probes.flush();
  for (int i = 0; i < 100 && probes.counters().errqueue_other < 2; ++i) io.run_for(10ms);
  c = probes.counters();
  EXPECT_EQ(c.opened, 2u);
  EXPECT_EQ(c.errqueue_other, 2u);
  probes.close_all();
  EXPECT_EQ(probes.counters().opened, 2u);
}

}  // namespace knit::agent
