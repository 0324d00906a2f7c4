// What `knit status` reports for a peer: path from the handshake age, counters, endpoint.
#include <gtest/gtest.h>

#include "agent/peer_status.hpp"
#include "base/random.hpp"
#include "wg/crypto.hpp"

namespace knit::agent {
namespace {

using namespace std::chrono_literals;

class NullIo : public wg::Transport, public wg::TunSink {
 public:
  void send(const wg::Peer&, std::span<const ByteSpan>) override {}
  void send_reply(const Endpoint&, ByteSpan) override {}
  void write_tun(MutableByteSpan) override {}
};

control::PeerInfo info(const wg::PublicKey& key, const char* name) {
  control::PeerInfo p;
  p.name = name;
  p.node_key = key;
  p.ipv4 = IpAddress::parse("100.64.0.2").value();
  p.ipv6 = IpAddress::parse("fd7a::2").value();
  p.online = true;
  p.home_relay = "fra";
  return p;
}

TEST(PeerStatus, PathIsDirectOnlyWithARecentHandshake) {
  SeededRandom rng(1);
  NullIo io;
  wg::Device device(io, io, rng);
  const wg::PublicKey key = wg::crypto::public_key_of(wg::crypto::generate_private_key(rng));
  wg::Peer* peer = device.add_peer(key, {});
  const WallTime now = WallTime{} + std::chrono::hours(480000);

  auto status = peer_status(info(key, "b"), peer, now);
  EXPECT_EQ(status.path, localapi::PathKind::none);
  EXPECT_EQ(status.endpoint, std::nullopt);
  EXPECT_EQ(status.last_handshake, std::nullopt);
  EXPECT_EQ(status.rtt_ms, std::nullopt);
  EXPECT_EQ(status.relay, std::optional<std::string>("fra"));

  device.set_endpoint(*peer, Endpoint::parse("192.0.2.2:41641").value());
  peer->last_handshake = now - 179s;
  peer->rx_bytes = 10;
  peer->tx_bytes = 20;
  status = peer_status(info(key, "b"), peer, now);
  EXPECT_EQ(status.path, localapi::PathKind::direct);
  EXPECT_EQ(status.endpoint, Endpoint::parse("192.0.2.2:41641"));
  EXPECT_EQ(status.last_handshake,
            std::chrono::duration_cast<std::chrono::seconds>((now - 179s).time_since_epoch()).count());
  EXPECT_EQ(status.rx_bytes, 10u);
  EXPECT_EQ(status.tx_bytes, 20u);

  peer->last_handshake = now - 181s;
  EXPECT_EQ(peer_status(info(key, "b"), peer, now).path, localapi::PathKind::none);
  // Without a device peer (removed by hand): known from the map, nothing measured.
  EXPECT_EQ(peer_status(info(key, "b"), nullptr, now).path, localapi::PathKind::none);
}

TEST(PeerStatus, ListIsSortedByNameAndSkipsUs) {
  SeededRandom rng(2);
  NullIo io;
  wg::Device device(io, io, rng);
  wg::PrivateKey own = wg::crypto::generate_private_key(rng);
  device.set_private_key(own);
  const auto a = wg::crypto::public_key_of(wg::crypto::generate_private_key(rng));
  const auto b = wg::crypto::public_key_of(wg::crypto::generate_private_key(rng));
  auto list = peer_statuses({info(b, "zeta"), info(wg::crypto::public_key_of(own), "me"), info(a, "alpha")},
                            device, WallTime{});
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0].name, "alpha");
  EXPECT_EQ(list[1].name, "zeta");
}

}  // namespace
}  // namespace knit::agent
