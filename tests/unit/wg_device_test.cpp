// Two WireGuard device cores talking through an in-memory network on a manual clock: sessions,
// key confirmation, rekey/reject timing, keepalives, retries, cookies, roaming and hostile input.
#include <gtest/gtest.h>

#include <cstring>
#include <deque>
#include <set>

#include "base/random.hpp"
#include "tests/support/ipv4_udp_packet.hpp"
#include "wg/crypto.hpp"
#include "wg/device.hpp"

namespace knit::wg {
namespace {

struct Sent {
  Endpoint to;
  Bytes bytes;
};

class RecordingIo : public Transport, public TunSink {
 public:
  void send(const Peer& peer, std::span<const ByteSpan> datagrams) override {
    for (ByteSpan datagram : datagrams) {
      peer_sends.push_back(peer.public_key);
      sent.push_back({*peer.endpoint, Bytes(datagram.begin(), datagram.end())});
    }
  }
  void send_reply(const Endpoint& to, ByteSpan datagram) override {
    sent.push_back({to, Bytes(datagram.begin(), datagram.end())});
  }
  void write_tun(MutableByteSpan packet) override { tun.emplace_back(packet.begin(), packet.end()); }
  std::deque<Sent> sent;
  std::vector<PublicKey> peer_sends;  // whose datagrams went through send()
  std::deque<Bytes> tun;
};

// A minimal IPv4/UDP packet from src to dst with `payload` bytes of payload.
Bytes ipv4_packet(std::uint32_t src, std::uint32_t dst, std::size_t payload = 20) {
  return testing::ipv4_udp_packet(src, dst, payload);
}

constexpr std::uint32_t kAddrA = 0x0a000001;  // 10.0.0.1
constexpr std::uint32_t kAddrB = 0x0a000002;  // 10.0.0.2

class DevicePair : public ::testing::Test {
 protected:
  DevicePair() : rng_a_(1), rng_b_(2), a_(io_a_, io_a_, rng_a_), b_(io_b_, io_b_, rng_b_) {
    SeededRandom keys(99);
    key_a_ = crypto::generate_private_key(keys);
    key_b_ = crypto::generate_private_key(keys);
    a_.set_private_key(key_a_);
    b_.set_private_key(key_b_);
    peer_b_ = a_.add_peer(b_.identity().public_key, now_);
    peer_a_ = b_.add_peer(a_.identity().public_key, now_);
    a_.set_endpoint(*peer_b_, ep_b_);
    b_.set_endpoint(*peer_a_, ep_a_);
    a_.add_allowed_ip(*peer_b_, IpPrefix::parse("10.0.0.2/32").value());
    b_.add_allowed_ip(*peer_a_, IpPrefix::parse("10.0.0.1/32").value());
  }

  void advance(Duration d) {
    now_.mono += d;
    now_.wall += std::chrono::duration_cast<std::chrono::system_clock::duration>(d);
  }

  // Sends a plaintext packet into a device as if read from its TUN.
  void send_from(Device& dev, const Bytes& packet) {
    Bytes frame(kFrameHeadroom + packet.size() + kFrameTailroom);
    std::memcpy(frame.data() + kFrameHeadroom, packet.data(), packet.size());
    dev.on_tun_packet(now_, frame, packet.size());
  }

  // Delivers every queued datagram, back and forth, until the network is quiet.
  int pump(int max_rounds = 20) {
    int delivered = 0;
    for (int round = 0; round < max_rounds; ++round) {
      if (io_a_.sent.empty() && io_b_.sent.empty()) break;
      auto from_a = std::exchange(io_a_.sent, {});
      auto from_b = std::exchange(io_b_.sent, {});
      for (auto& s : from_a) {
        b_.on_datagram(now_, source_a_, s.bytes);
        ++delivered;
      }
      for (auto& s : from_b) {
        a_.on_datagram(now_, ep_b_, s.bytes);
        ++delivered;
      }
    }
    return delivered;
  }

  int count_type(const std::deque<Sent>& sent, MessageType type) {
    int n = 0;
    for (auto& s : sent)
      if (!s.bytes.empty() && s.bytes[0] == static_cast<std::uint8_t>(type)) ++n;
    return n;
  }

  Now now_{Instant{} + 1000s, WallTime{} + std::chrono::hours(24 * 365 * 50)};
  RecordingIo io_a_, io_b_;
  SeededRandom rng_a_, rng_b_;
  Device a_, b_;
  PrivateKey key_a_, key_b_;
  Peer* peer_a_ = nullptr;  // A as seen by B
  Peer* peer_b_ = nullptr;  // B as seen by A
  Endpoint ep_a_ = Endpoint::parse("192.0.2.1:1000").value();
  Endpoint ep_b_ = Endpoint::parse("192.0.2.2:2000").value();
  Endpoint source_a_ = ep_a_;  // where A's datagrams appear to come from (roaming changes it)
};

TEST_F(DevicePair, HandshakeOnFirstPacketThenDataBothWays) {
  send_from(a_, ipv4_packet(kAddrA, kAddrB));
  ASSERT_EQ(io_a_.sent.size(), 1u);
  EXPECT_EQ(io_a_.sent[0].bytes.size(), kInitiationSize);
  EXPECT_EQ(io_a_.sent[0].to, ep_b_);
  pump();
  ASSERT_EQ(io_b_.tun.size(), 1u) << "the staged packet arrives once the session exists";
  EXPECT_EQ(io_b_.tun[0], ipv4_packet(kAddrA, kAddrB));
  send_from(b_, ipv4_packet(kAddrB, kAddrA, 100));
  pump();
  ASSERT_EQ(io_a_.tun.size(), 1u);
  EXPECT_EQ(io_a_.tun[0], ipv4_packet(kAddrB, kAddrA, 100));
  EXPECT_EQ(a_.stats().handshakes_completed, 1u);
  EXPECT_EQ(b_.stats().handshakes_completed, 1u);
  EXPECT_TRUE(peer_b_->last_handshake.has_value());
  EXPECT_GT(peer_b_->tx_bytes, 0u);
  EXPECT_GT(peer_a_->rx_bytes, 0u);
}

// knitd picks each mesh peer's path (direct or relay) itself: every datagram of a configured
// peer (initiation, response, data) reaches the adapter with that peer; cookie replies to
// strangers do not.
TEST_F(DevicePair, EveryPeerDatagramGoesThroughSendToPeer) {
  send_from(a_, ipv4_packet(kAddrA, kAddrB));
  pump();
  ASSERT_EQ(io_b_.tun.size(), 1u);
  ASSERT_GE(io_a_.peer_sends.size(), 2u);  // initiation + data
  for (const auto& key : io_a_.peer_sends) EXPECT_EQ(key, b_.identity().public_key);
  ASSERT_EQ(io_b_.peer_sends.size(), 1u);  // the response
  EXPECT_EQ(io_b_.peer_sends[0], a_.identity().public_key);
}

TEST_F(DevicePair, DataIsPaddedToSixteenAndKeepaliveIs32Bytes) {
  send_from(a_, ipv4_packet(kAddrA, kAddrB, 1));  // 29-byte packet
  pump();
  send_from(a_, ipv4_packet(kAddrA, kAddrB, 1));
  ASSERT_EQ(io_a_.sent.size(), 1u);
  EXPECT_EQ(io_a_.sent[0].bytes.size(), kDataHeaderSize + 32 + kAuthTagSize);
  pump();
  EXPECT_EQ(io_b_.tun.back().size(), 29u) << "the receiver trims padding by the IP length";
}

TEST_F(DevicePair, ResponderSendsNothingOnTheNewSessionBeforeConfirmation) {
  a_.initiate_handshake(*peer_b_, now_);
  // Deliver the initiation only; B answers with a response but must not use the session yet.
  auto init = std::exchange(io_a_.sent, {});
  b_.on_datagram(now_, ep_a_, init[0].bytes);
  ASSERT_EQ(count_type(io_b_.sent, MessageType::response), 1);
  io_b_.sent.clear();
  send_from(b_, ipv4_packet(kAddrB, kAddrA));
  EXPECT_EQ(count_type(io_b_.sent, MessageType::data), 0) << "unconfirmed session used";
  EXPECT_EQ(b_.peer_count(), 1u);
}

TEST_F(DevicePair, RekeyAfter120SecondsOfSending) {
  send_from(a_, ipv4_packet(kAddrA, kAddrB));
  pump();
  const auto initiations = a_.stats().handshake_initiations_sent;
  advance(119s);
  send_from(a_, ipv4_packet(kAddrA, kAddrB));
  EXPECT_EQ(a_.stats().handshake_initiations_sent, initiations);
  pump();
  advance(2s);
  send_from(a_, ipv4_packet(kAddrA, kAddrB));
  EXPECT_EQ(count_type(io_a_.sent, MessageType::data), 1) << "still sends on the old session";
  EXPECT_EQ(a_.stats().handshake_initiations_sent, initiations + 1) << "and starts a rekey";
  pump();
  EXPECT_EQ(a_.stats().handshakes_completed, 2u);
}

TEST_F(DevicePair, RejectAfter180SecondsStagesAndRehandshakes) {
  send_from(a_, ipv4_packet(kAddrA, kAddrB));
  pump();
  io_b_.tun.clear();
  advance(181s);
  send_from(a_, ipv4_packet(kAddrA, kAddrB));
  EXPECT_EQ(count_type(io_a_.sent, MessageType::data), 0) << "an expired session never sends";
  EXPECT_EQ(count_type(io_a_.sent, MessageType::initiation), 1);
  pump();
  EXPECT_EQ(io_b_.tun.size(), 1u) << "the staged packet goes out on the new session";
}

TEST_F(DevicePair, ExpiredSessionIsRejectedOnReceive) {
  send_from(a_, ipv4_packet(kAddrA, kAddrB));
  pump();
  send_from(a_, ipv4_packet(kAddrA, kAddrB));
  auto data = std::exchange(io_a_.sent, {});
  advance(181s);
  b_.on_datagram(now_, ep_a_, data[0].bytes);
  EXPECT_EQ(b_.stats().rx_expired_keypair, 1u);
}

TEST_F(DevicePair, KeepaliveTenSecondsAfterReceivingWithNothingSent) {
  send_from(a_, ipv4_packet(kAddrA, kAddrB));
  pump();
  // B received data and has sent nothing since: after 10 s it sends a keepalive.
  advance(9s);
  b_.on_timers(now_);
  EXPECT_EQ(count_type(io_b_.sent, MessageType::data), 0);
  advance(1s + 1ms);
  b_.on_timers(now_);
  ASSERT_EQ(count_type(io_b_.sent, MessageType::data), 1);
  EXPECT_EQ(io_b_.sent.back().bytes.size(), kKeepaliveSize);
  pump();
  EXPECT_EQ(a_.stats().rx_keepalives, 1u);
}

TEST_F(DevicePair, InitiationRetriesWithJitterAndGivesUpAfter90Seconds) {
  send_from(a_, ipv4_packet(kAddrA, kAddrB));  // B never answers
  io_a_.sent.clear();
  std::vector<Instant> sent_at;
  Instant start = now_.mono;
  for (int i = 0; i < 20000 && now_.mono - start < 200s; ++i) {
    advance(10ms);
    a_.on_timers(now_);
    while (!io_a_.sent.empty()) {
      EXPECT_EQ(io_a_.sent.front().bytes[0], 1);
      sent_at.push_back(now_.mono);
      io_a_.sent.pop_front();
    }
  }
  ASSERT_EQ(sent_at.size(), static_cast<std::size_t>(kMaxTimerHandshakes));
  std::set<long> gaps;
  Instant prev = start;
  for (Instant t : sent_at) {
    auto gap = std::chrono::duration_cast<std::chrono::milliseconds>(t - prev).count();
    EXPECT_GE(gap, 5000);
    EXPECT_LE(gap, 5000 + 334 + 10);
    gaps.insert(gap);
    prev = t;
  }
  EXPECT_GT(gaps.size(), 3u) << "retries are jittered";
  EXPECT_LE(sent_at.back() - start, 95s + 334ms * 18);
  EXPECT_TRUE(peer_b_->staged.empty()) << "staged packets dropped on giving up";
}

TEST_F(DevicePair, CookieReplyUnderLoadThenHandshakeWithMac2) {
  b_.force_under_load(true);
  send_from(a_, ipv4_packet(kAddrA, kAddrB));
  auto init = std::exchange(io_a_.sent, {});
  b_.on_datagram(now_, ep_a_, init[0].bytes);
  ASSERT_EQ(io_b_.sent.size(), 1u);
  EXPECT_EQ(io_b_.sent[0].bytes.size(), kCookieReplySize);
  EXPECT_EQ(b_.stats().tx_cookie_replies, 1u);
  EXPECT_EQ(b_.stats().handshakes_completed, 0u);
  a_.on_datagram(now_, ep_b_, io_b_.sent[0].bytes);
  io_b_.sent.clear();
  EXPECT_EQ(a_.stats().rx_bad_cookie_reply, 0u);
  // The retry carries mac2 from the cookie and is accepted even under load.
  advance(kRekeyTimeout + 400ms);
  a_.on_timers(now_);
  ASSERT_EQ(count_type(io_a_.sent, MessageType::initiation), 1);
  pump();
  EXPECT_EQ(io_b_.tun.size(), 1u);
  EXPECT_EQ(b_.stats().tx_cookie_replies, 1u);
}

TEST_F(DevicePair, ReplayedDataIsDropped) {
  send_from(a_, ipv4_packet(kAddrA, kAddrB));
  pump();
  send_from(a_, ipv4_packet(kAddrA, kAddrB));
  auto data = std::exchange(io_a_.sent, {});
  Bytes copy = data[0].bytes;
  b_.on_datagram(now_, ep_a_, data[0].bytes);
  b_.on_datagram(now_, ep_a_, copy);
  EXPECT_EQ(b_.stats().rx_replayed_data, 1u);
}

TEST_F(DevicePair, InnerSourceOutsideAllowedIpsIsDropped) {
  send_from(a_, ipv4_packet(kAddrA, kAddrB));
  pump();
  io_b_.tun.clear();
  a_.add_allowed_ip(*peer_b_, IpPrefix::parse("10.9.0.0/16").value());
  send_from(a_, ipv4_packet(0x0a630001 /* 10.99.0.1, not A's */, kAddrB));
  pump();
  EXPECT_TRUE(io_b_.tun.empty());
  EXPECT_EQ(b_.stats().rx_disallowed_source, 1u);
}

TEST_F(DevicePair, RoamingFollowsTheLatestAuthenticatedSource) {
  send_from(a_, ipv4_packet(kAddrA, kAddrB));
  pump();
  source_a_ = Endpoint::parse("198.51.100.7:4444").value();
  send_from(a_, ipv4_packet(kAddrA, kAddrB));
  pump();
  EXPECT_EQ(peer_a_->endpoint, source_a_);
  send_from(b_, ipv4_packet(kAddrB, kAddrA));
  EXPECT_EQ(io_b_.sent.back().to, source_a_);
}

TEST_F(DevicePair, ForgedDataFromAStrangerChangesNothing) {
  send_from(a_, ipv4_packet(kAddrA, kAddrB));
  pump();
  send_from(a_, ipv4_packet(kAddrA, kAddrB));
  auto data = std::exchange(io_a_.sent, {});
  data[0].bytes[20] ^= 1;
  b_.on_datagram(now_, Endpoint::parse("203.0.113.9:9").value(), data[0].bytes);
  EXPECT_EQ(b_.stats().rx_decrypt_failed, 1u);
  EXPECT_EQ(peer_a_->endpoint, ep_a_) << "a forged packet must not move the endpoint";
}

TEST_F(DevicePair, NoRouteAndNoEndpointAreCounted) {
  send_from(a_, ipv4_packet(kAddrA, 0x0b000001));
  EXPECT_EQ(a_.stats().tx_no_route, 1u);
  Bytes garbage = {0x00, 0x01};
  Bytes frame(kFrameHeadroom + garbage.size() + kFrameTailroom);
  a_.on_tun_packet(now_, frame, garbage.size());
  EXPECT_EQ(a_.stats().tx_bad_packet, 1u);
}

TEST_F(DevicePair, HostileDatagramsOfEveryTypeAreCountedNeverCrash) {
  send_from(a_, ipv4_packet(kAddrA, kAddrB));
  pump();
  io_b_.tun.clear();
  SeededRandom noise(7);
  std::uint64_t before = b_.stats().rx_datagrams;
  for (int i = 0; i < 20000; ++i) {
    std::size_t size = noise.uniform(i % 3 == 0 ? 200 : 2000);
    Bytes junk(size);
    noise.fill(junk);
    if (!junk.empty()) {
      junk[0] = static_cast<std::uint8_t>(noise.uniform(6));  // mostly plausible types
      if (junk.size() >= 4 && noise.uniform(2)) junk[1] = junk[2] = junk[3] = 0;
      if (noise.uniform(4) == 0) {
        static constexpr std::size_t kSizes[] = {kInitiationSize, kResponseSize, kCookieReplySize, 32, 48};
        junk.resize(kSizes[noise.uniform(5)]);
      }
    }
    b_.on_datagram(now_, ep_a_, junk);
  }
  const DeviceStats& s = b_.stats();
  EXPECT_EQ(s.rx_datagrams - before, 20000u);
  const std::uint64_t dropped = s.rx_too_short + s.rx_unknown_type + s.rx_bad_reserved + s.rx_bad_size +
                                s.rx_invalid_mac + s.rx_unknown_index + s.rx_decrypt_failed +
                                s.rx_handshake_failed + s.rx_bad_cookie_reply;
  EXPECT_EQ(dropped, 20000u) << "every hostile datagram is dropped with a reason";
  EXPECT_TRUE(io_b_.tun.empty());
  // And the real session still works.
  send_from(a_, ipv4_packet(kAddrA, kAddrB));
  pump();
  EXPECT_EQ(io_b_.tun.size(), 1u);
}

TEST_F(DevicePair, RemovingAPeerForgetsItsSessions) {
  send_from(a_, ipv4_packet(kAddrA, kAddrB));
  pump();
  send_from(a_, ipv4_packet(kAddrA, kAddrB));
  auto data = std::exchange(io_a_.sent, {});
  b_.remove_peer(a_.identity().public_key);
  b_.on_datagram(now_, ep_a_, data[0].bytes);
  EXPECT_EQ(b_.stats().rx_unknown_index, 1u);
  EXPECT_FALSE(b_.next_deadline().has_value());
}

}  // namespace
}  // namespace knit::wg
