// net::UdpSocket on loopback: runs of same-size datagrams leave as one UDP_SEGMENT message and
// arrive through UDP_GRO as one buffer, split again into the datagrams that were queued, in
// order; mixed sizes and endpoints keep their order; with offloads off every datagram is its
// own message and nothing is coalesced; an ICMP error about an earlier datagram costs nothing.
#include <gtest/gtest.h>

#include <asio.hpp>

#include <chrono>
#include <thread>
#include <vector>

#include "net/udp_socket.hpp"

namespace knit::net {
namespace {

using namespace std::chrono_literals;

Bytes datagram(std::size_t size, std::uint8_t tag) {
  Bytes b(size);
  for (std::size_t i = 0; i < size; ++i) b[i] = static_cast<std::uint8_t>(tag + i);
  return b;
}

// Everything the socket receives within a second, until `want` datagrams are in.
std::vector<Bytes> receive(UdpSocket& socket, std::size_t want) {
  std::vector<Bytes> got;
  for (int i = 0; i < 1000 && got.size() < want; ++i) {
    const std::size_t n = socket.receive_batch();
    for (std::size_t j = 0; j < n; ++j) got.emplace_back(socket.received(j).begin(), socket.received(j).end());
    if (n == 0) std::this_thread::sleep_for(5ms);
  }
  return got;
}

Endpoint loopback(const UdpSocket& s) { return Endpoint(IpAddress::parse("127.0.0.1").value(), s.port()); }

class UdpSocketTest : public ::testing::TestWithParam<bool> {
 protected:
  UdpSocketTest() : a_(io_, UdpSocket::Options{GetParam()}), b_(io_, UdpSocket::Options{GetParam()}) {
    EXPECT_FALSE(a_.bind(0));
    EXPECT_FALSE(b_.bind(0));
  }
  asio::io_context io_;
  UdpSocket a_, b_;
};

TEST_P(UdpSocketTest, ARunOfSameSizeDatagramsArrivesWholeAndInOrder) {
  std::vector<Bytes> sent;
  for (int i = 0; i < 20; ++i) sent.push_back(datagram(1200, static_cast<std::uint8_t>(i)));
  sent.push_back(datagram(300, 0xee));  // a shorter last one ends the run
  for (const Bytes& d : sent) a_.queue(loopback(b_), d);
  a_.flush();
  EXPECT_EQ(receive(b_, sent.size()), sent);
  if (!GetParam()) {
    EXPECT_FALSE(a_.gso());
    EXPECT_FALSE(b_.gro());
    EXPECT_EQ(a_.gso_messages(), 0u);
    EXPECT_EQ(b_.gro_datagrams(), 0u);
  } else if (a_.gso()) {
    EXPECT_EQ(a_.gso_messages(), 1u) << "21 datagrams, one message";
    if (b_.gro()) {
      EXPECT_EQ(b_.gro_datagrams(), sent.size()) << "and one coalesced receive";
    }
  }
  EXPECT_EQ(a_.send_errors(), 0u);
}

TEST_P(UdpSocketTest, MixedSizesAndEndpointsKeepTheirOrder) {
  UdpSocket c(io_, UdpSocket::Options{GetParam()});
  ASSERT_FALSE(c.bind(0));
  std::vector<Bytes> to_b, to_c;
  for (int i = 0; i < 150; ++i) {
    const std::size_t size = i % 7 == 0 ? 100 : (i % 11 == 0 ? 1400 : 900);
    Bytes d = datagram(size, static_cast<std::uint8_t>(i));
    if (i % 5 == 0) {
      c.queue(loopback(c), d);  // c to itself: another endpoint, another socket
      to_c.push_back(d);
    } else {
      a_.queue(loopback(b_), d);
      to_b.push_back(d);
    }
  }
  a_.flush();
  c.flush();
  EXPECT_EQ(receive(b_, to_b.size()), to_b);
  EXPECT_EQ(receive(c, to_c.size()), to_c);
}

// An ICMP error about an earlier datagram (here: port unreachable, from loopback) is reported
// once by the next receive or send (IP_RECVERR): neither fails for it. The receive reads the
// error queue and then the datagrams behind the error; the send goes again.
TEST_P(UdpSocketTest, AnIcmpErrorCostsNoDatagramAndIsDrained) {
  std::uint16_t closed_port;
  {
    UdpSocket c(io_);
    ASSERT_FALSE(c.bind(0));
    closed_port = c.port();
  }
  const Endpoint closed(IpAddress::parse("127.0.0.1").value(), closed_port);
  std::size_t hints = 0;
  a_.set_too_big_handler([&](const Endpoint&, std::size_t) { ++hints; });

  a_.queue(closed, datagram(100, 1));
  a_.flush();
  std::this_thread::sleep_for(20ms);  // the port unreachable comes back
  const std::vector<Bytes> sent = {datagram(200, 2), datagram(200, 3), datagram(300, 4)};
  for (const Bytes& d : sent) b_.queue(loopback(a_), d);
  b_.flush();
  EXPECT_EQ(receive(a_, sent.size()), sent) << "the datagrams behind the error";
  EXPECT_EQ(a_.pending_errors(), 1u);
  EXPECT_EQ(a_.socket_errors_other(), 1u);
  EXPECT_EQ(a_.socket_errors_malformed(), 0u);
  EXPECT_EQ(a_.receive_errors(), 0u);
  EXPECT_EQ(a_.drain_errors(), 0u) << "nothing left in the queue";

  // The same on the send side: the error is reported to the next send, which goes again.
  a_.queue(closed, datagram(100, 5));
  a_.flush();
  std::this_thread::sleep_for(20ms);
  a_.queue(loopback(b_), datagram(150, 6));
  a_.flush();
  EXPECT_EQ(receive(b_, 1), std::vector<Bytes>{datagram(150, 6)});
  EXPECT_EQ(a_.send_errors(), 0u);
  EXPECT_EQ(a_.pending_errors(), 2u);
  EXPECT_EQ(a_.socket_errors_other(), 2u);
  EXPECT_EQ(hints, 0u) << "a port unreachable is no too-big hint";
}

INSTANTIATE_TEST_SUITE_P(Offloads, UdpSocketTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& p) { return p.param ? "on" : "off"; });

}  // namespace
}  // namespace knit::net
