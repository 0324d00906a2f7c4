// knitd's UDP transport on loopback: the one classification of incoming datagrams (WireGuard
// in batches to the receiver, disco and STUN to the mesh, the rest counted), batched sends in
// order, and `wg set listen-port` rebinding without losing the socket on failure.
#include <gtest/gtest.h>

#include <asio.hpp>

#include <array>
#include <chrono>
#include <thread>
#include <string>
#include <vector>

#include "agent/udp_transport.hpp"
#include "base/random.hpp"
#include "punch/stun/message.hpp"
#include "wg/peer.hpp"

namespace knit::agent {
namespace {

using namespace std::chrono_literals;

class Received final : public WireGuardReceiver {
 public:
  void on_wireguard(wg::Now, std::span<const ReceivedDatagram> batch) override {
    ++batches;
    for (const auto& d : batch) {
      from.push_back(d.from);
      bytes.emplace_back(d.bytes.begin(), d.bytes.end());
    }
  }
  int batches = 0;
  std::vector<Endpoint> from;
  std::vector<Bytes> bytes;
};

class Other final : public UdpTransport::OtherDatagrams {
 public:
  void on_other(wg::Now, DatagramKind kind, const Endpoint&, MutableByteSpan) override { kinds.push_back(kind); }
  void after_receive() override { ++afters; }
  std::vector<DatagramKind> kinds;
  int afters = 0;
};

Bytes wireguard_like(std::uint32_t n) {
  Bytes b(32, 0);
  b[0] = 4;  // a data message; the transport only looks at the first four bytes
  store_le32(b.data() + 8, n);
  return b;
}

Bytes disco_like() {
  Bytes b = {'K', 'N', 'I', 'T', 0x44, 0x31};
  b.resize(80, 0x11);
  return b;
}

class UdpTransportTest : public ::testing::Test {
 protected:
  UdpTransportTest() : transport_(io_, {}) {
    transport_.start(received_);
    client_.open(asio::ip::udp::v4());
    client_.bind({asio::ip::make_address("127.0.0.1"), 0});
    to_transport_ = {asio::ip::make_address("127.0.0.1"), transport_.port()};
  }
  ~UdpTransportTest() override { transport_.stop(); }

  // Runs the loop until pred holds or 2 s pass.
  template <typename Pred>
  bool run_until(Pred pred) {
    const auto end = std::chrono::steady_clock::now() + 2s;
    while (!pred() && std::chrono::steady_clock::now() < end) {
      io_.restart();
      io_.run_for(10ms);
    }
    return pred();
  }

  Endpoint client_endpoint() const {
    return Endpoint(IpAddress::parse("127.0.0.1").value(), client_.local_endpoint().port());
  }

  asio::io_context io_;
  Received received_;
  UdpTransport transport_;
  asio::ip::udp::socket client_{io_};
  asio::ip::udp::endpoint to_transport_;
};

TEST_F(UdpTransportTest, ClassifiesEveryDatagramOnce) {
  Other other;
  transport_.set_other_datagrams(&other);
  punch::StunTransactionId txid{};
  txid[0] = 7;
  const Bytes stun = punch::build_binding_request(txid);
  for (std::uint32_t i = 0; i < 40; ++i) client_.send_to(asio::buffer(wireguard_like(i)), to_transport_);
  client_.send_to(asio::buffer(disco_like()), to_transport_);
  client_.send_to(asio::buffer(stun), to_transport_);
  client_.send_to(asio::buffer(std::string("GET / HTTP/1.0\r\n\r\n")), to_transport_);
  client_.send_to(asio::buffer(disco_like()), to_transport_);
  ASSERT_TRUE(run_until([&] { return received_.bytes.size() == 40 && other.kinds.size() == 3; }));
  for (std::uint32_t i = 0; i < 40; ++i) {
    EXPECT_EQ(load_le32(received_.bytes[i].data() + 8), i) << "arrival order kept";
    EXPECT_TRUE(received_.from[i].same_remote(client_endpoint())) << received_.from[i].to_string();
  }
  EXPECT_LE(received_.batches, 40) << "datagrams arrive in batches";
  EXPECT_EQ(other.kinds, (std::vector<DatagramKind>{DatagramKind::disco, DatagramKind::stun, DatagramKind::disco}));
  EXPECT_GE(other.afters, 1);
  EXPECT_EQ(transport_.other_dropped(), 1u);
}

TEST_F(UdpTransportTest, WithoutAMeshDiscoAndStunAreDropped) {
  client_.send_to(asio::buffer(disco_like()), to_transport_);
  client_.send_to(asio::buffer(wireguard_like(1)), to_transport_);
  ASSERT_TRUE(run_until([&] { return received_.bytes.size() == 1; }));
  EXPECT_TRUE(run_until([&] { return transport_.other_dropped() == 1; }));
}

TEST_F(UdpTransportTest, SendsAPeersBatchToItsEndpointInOrder) {
  SeededRandom rng(1);
  wg::Peer peer(wg::PublicKey{}, rng);
  peer.endpoint = client_endpoint();
  std::vector<Bytes> datagrams;
  for (std::uint32_t i = 0; i < 100; ++i) datagrams.push_back(wireguard_like(i));
  std::vector<ByteSpan> spans(datagrams.begin(), datagrams.end());
  transport_.send(peer, spans);
  transport_.flush();
  client_.non_blocking(true);
  std::vector<std::uint32_t> got;
  const auto end = std::chrono::steady_clock::now() + 2s;
  std::array<std::uint8_t, 2048> buffer{};
  while (got.size() < 100 && std::chrono::steady_clock::now() < end) {
    std::error_code ec;
    asio::ip::udp::endpoint from;
    const std::size_t n = client_.receive_from(asio::buffer(buffer), from, 0, ec);
    if (ec) {
      std::this_thread::sleep_for(1ms);
      continue;
    }
    ASSERT_EQ(n, 32u);
    got.push_back(load_le32(buffer.data() + 8));
  }
  ASSERT_EQ(got.size(), 100u);
  for (std::uint32_t i = 0; i < 100; ++i) EXPECT_EQ(got[i], i);
}

TEST_F(UdpTransportTest, ListenPortChangesAndAFailedChangeKeepsTheSocket) {
  asio::ip::udp::socket squatter(io_, asio::ip::udp::endpoint(asio::ip::udp::v6(), 0));
  const std::uint16_t before = transport_.port();
  EXPECT_TRUE(transport_.set_port(squatter.local_endpoint().port())) << "a taken port is refused";
  EXPECT_EQ(transport_.port(), before);
  client_.send_to(asio::buffer(wireguard_like(5)), to_transport_);
  ASSERT_TRUE(run_until([&] { return received_.bytes.size() == 1; })) << "still reading after the refusal";

  squatter.close();
  asio::ip::udp::socket probe(io_, asio::ip::udp::endpoint(asio::ip::udp::v6(), 0));
  const std::uint16_t free_port = probe.local_endpoint().port();
  probe.close();
  EXPECT_FALSE(transport_.set_port(free_port));
  EXPECT_EQ(transport_.port(), free_port);
  client_.send_to(asio::buffer(wireguard_like(6)), asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), free_port));
  ASSERT_TRUE(run_until([&] { return received_.bytes.size() == 2; })) << "reading the new socket";
}

}  // namespace
}  // namespace knit::agent
