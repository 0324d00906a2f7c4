// The mesh transport choosing a path per packet, on a manual clock: the published endpoint
// before anything is proven, the direct path once a disco pong proves it (the peer here is a
// real PathManager behind a loopback socket), the relay when the direct path's trust runs out,
// a hand-configured peer untouched, and what the relay delivers (WireGuard from the peer's
// stand-in endpoint, disco to the PathManager, strangers counted).
#include <gtest/gtest.h>

#include <asio.hpp>

#include <chrono>
#include <thread>
#include <vector>

#include "agent/mesh_transport.hpp"
#include "base/random.hpp"
#include "punch/path/disco.hpp"
#include "wg/peer.hpp"

namespace knit::agent {
namespace {

using namespace std::chrono_literals;

class FakeRelay final : public MeshTransport::RelayLink {
 public:
  bool connected() const override { return up; }
  bool send(const wg::PublicKey& to, ByteSpan packet) override {
    if (!up) return false;
    sent.push_back({to, Bytes(packet.begin(), packet.end())});
    return true;
  }
  struct Sent {
    wg::PublicKey to;
    Bytes bytes;
  };
  bool up = false;
  std::vector<Sent> sent;
};

class Received final : public WireGuardReceiver {
 public:
  void on_wireguard(wg::Now, std::span<const ReceivedDatagram> batch) override {
    for (const auto& d : batch) from.push_back(d.from);
  }
  std::vector<Endpoint> from;
};

Bytes wireguard_like(std::uint8_t tag) {
  Bytes b(48, tag);
  b[0] = 4;
  b[1] = b[2] = b[3] = 0;
  return b;
}

Endpoint loopback(std::uint16_t port) { return Endpoint(IpAddress::parse("127.0.0.1").value(), port); }

class MeshTransportTest : public ::testing::Test {
 protected:
  MeshTransportTest() : rng_(7), udp_(io_, {}) {
    udp_.start(received_);
    punch::generate_disco_key(disco_a_, disco_a_pub_, rng_);
    punch::generate_disco_key(disco_b_, disco_b_pub_, rng_);
    rng_.fill(node_a_);
    rng_.fill(node_b_);
    transport_ = std::make_unique<MeshTransport>(io_, udp_, relay_, received_, disco_a_, node_a_, rng_,
                                                 [this] { return now_; });
    // B: a PathManager of its own behind a loopback socket (the other agent).
    b_socket_.open(asio::ip::udp::v4());
    b_socket_.bind({asio::ip::make_address("127.0.0.1"), 0});
    b_socket_.non_blocking(true);
    b_ = std::make_unique<punch::PathManager>(disco_b_, node_b_, rng_, 1);
    b_->set_peer(now_, node_a_, disco_a_pub_, {loopback(udp_.port())});
    transport_->start();
  }
  ~MeshTransportTest() override {
    transport_->stop();
    udp_.stop();
  }

  Endpoint b_endpoint() const { return loopback(b_socket_.local_endpoint().port()); }

  void add_b(std::vector<Endpoint> endpoints) {
    control::PeerInfo info;
    info.name = "b";
    info.node_key = node_b_;
    info.disco_key = disco_b_pub_;
    info.endpoints = std::move(endpoints);
    transport_->set_peers({info});
  }

  // Everything that reached B's socket since the last call: disco goes to B's PathManager
  // (whose answers go back to A's socket), WireGuard is collected.
  std::vector<Bytes> pump_b() {
    std::vector<Bytes> wireguard;
    std::array<std::uint8_t, 2048> buffer{};
    for (int rounds = 0; rounds < 50; ++rounds) {
      io_.restart();
      io_.run_for(5ms);
      for (;;) {
        std::error_code ec;
        asio::ip::udp::endpoint from;
        const std::size_t n = b_socket_.receive_from(asio::buffer(buffer), from, 0, ec);
        if (ec) break;
        const ByteSpan d(buffer.data(), n);
        if (classify_datagram(d) == DatagramKind::disco)
          b_->handle_disco(now_, punch::DiscoSource::udp(punch::kMainSocket, loopback(from.port())), d);
        else
          wireguard.emplace_back(d.begin(), d.end());
      }
      for (auto& a : b_->take_actions()) {
        if (a.kind == punch::ActionKind::send_udp && a.endpoint.port() == udp_.port())
          b_socket_.send_to(asio::buffer(a.bytes), asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), udp_.port()));
      }
    }
    return wireguard;
  }

  void send_to_b(std::uint8_t tag) {
    const Bytes d = wireguard_like(tag);
    const ByteSpan span(d);
    transport_->send(*peer_b_, std::span(&span, 1));
    transport_->flush();
  }

  asio::io_context io_;
  SeededRandom rng_;
  Instant now_{std::chrono::hours(1)};
  Received received_;
  UdpTransport udp_;
  FakeRelay relay_;
  wg::PrivateKey disco_a_, disco_b_;
  punch::DiscoKey disco_a_pub_{}, disco_b_pub_{};
  wg::PublicKey node_a_{}, node_b_{};
  std::unique_ptr<MeshTransport> transport_;
  asio::ip::udp::socket b_socket_{io_};
  std::unique_ptr<punch::PathManager> b_;
  std::unique_ptr<wg::Peer> peer_b_ = std::make_unique<wg::Peer>(wg::PublicKey{}, rng_);
};

TEST_F(MeshTransportTest, PublishedEndpointFirstThenTheDirectPathAPongProves) {
  add_b({b_endpoint()});
  peer_b_->public_key = node_b_;
  peer_b_->endpoint = b_endpoint();  // what the configurator sets: the published endpoint
  EXPECT_EQ(transport_->path_of(node_b_).kind, punch::PathKind::none);

  send_to_b(0xa1);
  auto first = pump_b();
  ASSERT_EQ(first.size(), 1u) << "nothing proven yet: the published endpoint";
  EXPECT_EQ(first[0][4], 0xa1);
  EXPECT_EQ(transport_->traffic().tx_packets[0], 1u);

  // The send started probing; B's pong (through its PathManager) proves the path.
  for (int i = 0; i < 5 && transport_->path_of(node_b_).kind != punch::PathKind::direct; ++i) pump_b();
  const punch::PathInfo path = transport_->path_of(node_b_);
  ASSERT_EQ(path.kind, punch::PathKind::direct);
  EXPECT_EQ(path.endpoint, b_endpoint());

  send_to_b(0xa2);
  auto second = pump_b();
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(second[0][4], 0xa2);
  EXPECT_EQ(transport_->traffic().tx_packets[2], 1u) << "counted as direct";
}

TEST_F(MeshTransportTest, TrustRunsOutAndTheRelayTakesOver) {
  add_b({b_endpoint()});
  peer_b_->public_key = node_b_;
  peer_b_->endpoint = b_endpoint();
  send_to_b(1);
  for (int i = 0; i < 5 && transport_->path_of(node_b_).kind != punch::PathKind::direct; ++i) pump_b();
  ASSERT_EQ(transport_->path_of(node_b_).kind, punch::PathKind::direct);

  relay_.up = true;
  transport_->set_relay_available(true);
  b_socket_.close();  // B goes silent: no more pongs
  now_ += 30s;
  EXPECT_EQ(transport_->path_of(node_b_).kind, punch::PathKind::relay);
  send_to_b(0xb1);
  ASSERT_FALSE(relay_.sent.empty());
  EXPECT_EQ(relay_.sent.back().to, node_b_);
  EXPECT_EQ(relay_.sent.back().bytes[4], 0xb1);
}

TEST_F(MeshTransportTest, NoPathAndNoRelayIsCountedAsDropped) {
  add_b({});
  peer_b_->public_key = node_b_;
  peer_b_->endpoint = transport_->stand_in(node_b_);
  send_to_b(3);
  EXPECT_EQ(transport_->traffic().tx_dropped, 1u);
  relay_.up = true;
  transport_->set_relay_available(true);
  send_to_b(4);
  ASSERT_FALSE(relay_.sent.empty()) << "a stand-in endpoint means: through the relay";
  EXPECT_EQ(relay_.sent.back().bytes[4], 4);
}

Bytes initiation_like(std::uint8_t tag) {
  Bytes b(148, tag);
  b[0] = 1;
  b[1] = b[2] = b[3] = 0;
  return b;
}

// The first packet: an initiation sent while the relay still refused us goes out the moment
// it admits us, once, and not after REKEY_TIMEOUT (WireGuard sends a fresh one by then).
TEST_F(MeshTransportTest, AnInitiationLostBeforeTheRelayAdmittedUsGoesOutOnAdmission) {
  add_b({});
  peer_b_->public_key = node_b_;
  peer_b_->endpoint = transport_->stand_in(node_b_);
  const Bytes init = initiation_like(0x11);
  const ByteSpan span(init);
  transport_->send(*peer_b_, std::span(&span, 1));
  transport_->flush();
  EXPECT_EQ(transport_->traffic().tx_dropped, 1u);
  now_ += 300ms;
  relay_.up = true;
  transport_->set_relay_available(true);
  std::size_t copies = 0;
  for (const auto& s : relay_.sent) copies += (s.to == node_b_ && s.bytes == init);
  EXPECT_EQ(copies, 1u) << "the lost initiation goes out on admission";
  EXPECT_EQ(transport_->traffic().initiations_resent, 1u);
  // Lost link and back: not again (WireGuard's own retry comes soon enough).
  relay_.up = false;
  transport_->set_relay_available(false);
  relay_.up = true;
  transport_->set_relay_available(true);
  EXPECT_EQ(transport_->traffic().initiations_resent, 1u);
}

// ... and once more when the peer's own call-me-maybe through the relay proves that it knows us:
// the copy sent on admission can reach it before the coordinator's delta about us does (it drops
// an initiation from an unknown peer), and its call-me-maybe is the first sign it has us now.
// Only once, and only from the side with the lower node key (both sides initiate to a new peer:
// copies both sent at the same event would cross). A copy it already took is refused as a replay.
TEST_F(MeshTransportTest, AnInitiationGoesOnceMoreWhenThePeerShowsItKnowsUs) {
  add_b({});
  peer_b_->public_key = node_b_;
  peer_b_->endpoint = transport_->stand_in(node_b_);
  const Bytes init = initiation_like(0x13);
  const ByteSpan span(init);
  transport_->send(*peer_b_, std::span(&span, 1));
  transport_->flush();
  now_ += 300ms;
  relay_.up = true;
  transport_->set_relay_available(true);
  const auto copies = [&] {
    std::size_t n = 0;
    for (const auto& s : relay_.sent) n += (s.to == node_b_ && s.bytes == init);
    return n;
  };
  ASSERT_EQ(copies(), 1u);
  // B's call-me-maybe (its relay comes up: a full probe) arrives through the relay.
  const auto deliver_b_relay = [&] {
    for (auto& a : b_->take_actions()) {
      if (a.kind != punch::ActionKind::send_relay) continue;
      Bytes m = a.bytes;
      transport_->on_relay_packet(node_b_, MutableByteSpan(m));
    }
  };
  now_ += 200ms;
  b_->set_relay_available(now_, true);
  deliver_b_relay();
  const std::size_t after = node_a_ < node_b_ ? 2 : 1;  // the tie-break
  EXPECT_EQ(copies(), after);
  EXPECT_EQ(transport_->traffic().initiations_resent, after);
  now_ += 1s;
  b_->network_changed(now_);  // another call-me-maybe
  deliver_b_relay();
  EXPECT_EQ(copies(), after);
  // Something B's key did not seal proves nothing.
  Bytes junk(120, 0);
  std::copy(punch::kDiscoMagic.begin(), punch::kDiscoMagic.end(), junk.begin());
  transport_->on_relay_packet(node_b_, MutableByteSpan(junk));
  EXPECT_EQ(copies(), after);
}

// The peer's own initiation through the relay: it knows us and its handshake is under way; a copy
// of ours sent now would cross it (each answer replaces the answering side's own handshake), so
// nothing of ours is resent after it.
TEST_F(MeshTransportTest, ThePeersInitiationEndsOurResends) {
  add_b({});
  peer_b_->public_key = node_b_;
  peer_b_->endpoint = transport_->stand_in(node_b_);
  const Bytes init = initiation_like(0x14);
  const ByteSpan span(init);
  transport_->send(*peer_b_, std::span(&span, 1));
  transport_->flush();
  Bytes theirs = initiation_like(0x15);
  transport_->on_relay_packet(node_b_, MutableByteSpan(theirs));
  transport_->on_relay_batch_end();
  relay_.up = true;
  transport_->set_relay_available(true);
  for (const auto& s : relay_.sent) EXPECT_NE(s.bytes, init);
  EXPECT_EQ(transport_->traffic().initiations_resent, 0u);
}

TEST_F(MeshTransportTest, AStaleInitiationIsNotResent) {
  add_b({});
  peer_b_->public_key = node_b_;
  peer_b_->endpoint = transport_->stand_in(node_b_);
  const Bytes init = initiation_like(0x12);
  const ByteSpan span(init);
  transport_->send(*peer_b_, std::span(&span, 1));
  now_ += 5s;  // REKEY_TIMEOUT: WireGuard's own retry is due
  relay_.up = true;
  transport_->set_relay_available(true);
  EXPECT_EQ(transport_->traffic().initiations_resent, 0u);
  for (const auto& s : relay_.sent) EXPECT_NE(s.bytes, init);
}

TEST_F(MeshTransportTest, HandConfiguredPeersGoToTheirEndpoint) {
  add_b({});
  wg::Peer stranger(wg::PublicKey{9}, rng_);
  stranger.endpoint = b_endpoint();
  const Bytes d = wireguard_like(0xc1);
  const ByteSpan span(d);
  relay_.up = true;
  transport_->send(stranger, std::span(&span, 1));
  transport_->flush();
  auto got = pump_b();
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0][4], 0xc1);
  EXPECT_TRUE(relay_.sent.empty());
  EXPECT_EQ(transport_->traffic().tx_packets[0] + transport_->traffic().tx_packets[2], 0u) << "not a mesh peer";
}

TEST_F(MeshTransportTest, RelayDeliveriesAndCookieRepliesUseTheStandIn) {
  add_b({});
  Bytes wg = wireguard_like(0xd1);
  transport_->on_relay_packet(node_b_, wg);
  EXPECT_EQ(received_.from.size(), 0u) << "the relay's packets wait for the end of their batch";
  transport_->on_relay_batch_end();
  ASSERT_EQ(received_.from.size(), 1u);
  EXPECT_TRUE(punch::VirtualEndpoints::is_virtual(received_.from[0]));
  EXPECT_EQ(received_.from[0], transport_->stand_in(node_b_));

  wg::PublicKey stranger{};
  stranger[0] = 0x55;
  transport_->on_relay_packet(stranger, wg);
  transport_->on_relay_batch_end();
  EXPECT_EQ(received_.from.size(), 1u) << "WireGuard from a node that is not our peer is dropped";
  Bytes junk = {1, 2, 3};
  transport_->on_relay_packet(node_b_, junk);
  EXPECT_EQ(transport_->traffic().rx_not_ours, 2u);

  relay_.up = true;
  const Bytes cookie(64, 3);
  transport_->send_reply(transport_->stand_in(node_b_), cookie);
  ASSERT_EQ(relay_.sent.size(), 1u);
  EXPECT_EQ(relay_.sent[0].to, node_b_);
}

TEST_F(MeshTransportTest, AForgedPongChangesNoPath) {
  add_b({b_endpoint()});
  // A pong that claims to be B's (B's key in its header) but is sealed with a stranger's key.
  wg::PrivateKey stranger;
  punch::DiscoKey stranger_pub{};
  punch::generate_disco_key(stranger, stranger_pub, rng_);
  punch::DiscoSession forger;
  ASSERT_TRUE(forger.init(stranger, disco_b_pub_, disco_a_pub_));
  punch::DiscoMessage pong;
  pong.type = punch::DiscoType::pong;
  pong.pong.observed = loopback(udp_.port());
  const Bytes sealed = forger.seal(pong, 1, rng_);
  b_socket_.send_to(asio::buffer(sealed), asio::ip::udp::endpoint(asio::ip::make_address("127.0.0.1"), udp_.port()));
  for (int i = 0; i < 20; ++i) {
    io_.restart();
    io_.run_for(5ms);
  }
  EXPECT_EQ(transport_->path_of(node_b_).kind, punch::PathKind::none);
  std::uint64_t drops = 0;
  for (auto d : transport_->stats().drops) drops += d;
  EXPECT_GE(drops, 1u);
}

}  // namespace
}  // namespace knit::agent
